//! One client's protocol session, independent of how bytes move.
//!
//! Every driver owns a [`Session`] per connection, feeds it the bytes it
//! reads and writes what it produces. The session applies the spec's order
//! of checks and talks to [`Storage`]; it never touches a socket, so the five
//! concurrency strategies share all protocol behaviour.

use std::sync::Arc;

use hftp_proto::response::{
    encode_base64, slice_tail, write_help, write_listing, write_metadata, write_slice_head,
    write_status, BASE64_CHUNK,
};
use hftp_proto::{Event, FileName, Range, Request, Scanner, SliceMode, Status};

use crate::body::{read_exact_at, SliceBody};
use crate::storage::{SliceSource, Storage, StorageError};

/// Slices up to this size are answered in one piece, so pipelined small
/// requests are batched into one write.
const INLINE_SLICE: u64 = BASE64_CHUNK as u64;

/// What the driver must do after a call to [`Session::on_input`].
#[derive(Debug)]
pub enum Outcome {
    /// No complete request yet: read more.
    NeedInput,
    /// An answer was appended to the output: go on with the input.
    Replied,
    /// A slice head was appended; send `out`, then stream the body.
    Stream(SliceBody),
    /// The answer was appended; send it, then close gracefully (quit or a
    /// fatal error): shut down writing, drain input briefly, close.
    Close(CloseReason),
}

/// Why the server ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Quit,
    Fatal(Status),
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Quit => f.write_str("quit"),
            CloseReason::Fatal(s) => write!(f, "fatal {}", s.code()),
        }
    }
}

/// Settings every session shares.
#[derive(Clone)]
pub struct SessionConfig {
    pub storage: Arc<dyn Storage>,
    pub max_line: usize,
}

/// The protocol state of one connection.
pub struct Session {
    scanner: Scanner,
    storage: Arc<dyn Storage>,
    /// Requests answered so far.
    pub requests: u64,
}

impl Session {
    pub fn new(config: &SessionConfig) -> Session {
        Session {
            scanner: Scanner::new(config.max_line),
            storage: Arc::clone(&config.storage),
            requests: 0,
        }
    }

    /// Whether a request line is partly received.
    pub fn in_request(&self) -> bool {
        self.scanner.in_line()
    }

    /// Scans `input` up to the end of the next request and appends its answer
    /// to `out`. Returns the bytes consumed and what to do next.
    pub fn on_input(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Outcome) {
        let (used, event) = self.scanner.feed(input);
        let Some(event) = event else {
            return (used, Outcome::NeedInput);
        };
        self.requests += 1;
        let outcome = match event {
            Event::Fatal(status) => close_with(out, status),
            Event::Reject(status) => {
                write_status(out, status);
                Outcome::Replied
            }
            Event::Request(request) => {
                tracing::debug!(%request, "request");
                self.execute(request, out)
            }
        };
        (used, outcome)
    }

    fn execute(&mut self, request: Request, out: &mut Vec<u8>) -> Outcome {
        match request {
            Request::GetFileListing => match self.storage.list() {
                Ok(names) => {
                    write_listing(out, names.iter().map(String::as_str));
                    Outcome::Replied
                }
                Err(e) => storage_failure(out, e),
            },
            Request::GetMetadata { name } => match self.storage.stat(&name) {
                Ok(size) => {
                    write_metadata(out, size);
                    Outcome::Replied
                }
                Err(e) => storage_failure(out, e),
            },
            Request::GetSlice { name, range, mode } => self.slice(&name, range, mode, out),
            Request::Help => {
                write_help(out);
                Outcome::Replied
            }
            Request::Quit => {
                write_status(out, Status::Ok);
                Outcome::Close(CloseReason::Quit)
            }
        }
    }

    fn slice(
        &mut self,
        name: &FileName,
        range: Range,
        mode: SliceMode,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let source = match self.storage.open(name) {
            Ok(source) => source,
            // Existence and range come before I/O in the order of checks: a
            // file we may not read still gets 202/203 when those apply.
            Err(StorageError::Io(e)) => {
                return match self.storage.stat(name) {
                    Ok(size) if !range.fits(size) => reject(out, Status::OffsetExceedsFileSize),
                    Ok(_) => storage_failure(out, StorageError::Io(e)),
                    Err(e) => storage_failure(out, e),
                }
            }
            Err(e) => return storage_failure(out, e),
        };
        if !range.fits(source.size()) {
            return reject(out, Status::OffsetExceedsFileSize);
        }
        if range.size <= INLINE_SLICE {
            return inline_slice(&*source, range, mode, out);
        }
        // Read the first piece before the status line goes out, so that a
        // file that cannot be read is still answered 199.
        let start = out.len();
        write_slice_head(out, mode, range.size);
        let mut body = SliceBody::new(source, range.offset, range.size, mode);
        if let Err(e) = body.fill(out) {
            out.truncate(start);
            return storage_failure(out, StorageError::Io(e));
        }
        Outcome::Stream(body)
    }
}

fn reject(out: &mut Vec<u8>, status: Status) -> Outcome {
    write_status(out, status);
    Outcome::Replied
}

fn close_with(out: &mut Vec<u8>, status: Status) -> Outcome {
    write_status(out, status);
    Outcome::Close(CloseReason::Fatal(status))
}

fn storage_failure(out: &mut Vec<u8>, error: StorageError) -> Outcome {
    match error {
        StorageError::NotFound => reject(out, Status::FileNotFound),
        StorageError::Io(e) => {
            tracing::warn!(error = %e, "storage failure, answering 199");
            close_with(out, Status::InternalError)
        }
    }
}

/// Answers a small slice in one piece. The bytes are read before the status
/// line is written, so a read failure can still be answered `199`.
fn inline_slice(
    source: &dyn SliceSource,
    range: Range,
    mode: SliceMode,
    out: &mut Vec<u8>,
) -> Outcome {
    let size = range.size as usize;
    let start = out.len();
    write_slice_head(out, mode, range.size);
    let head_end = out.len();
    out.resize(head_end + size, 0);
    if let Err(e) = read_exact_at(source, &mut out[head_end..], range.offset) {
        out.truncate(start);
        return storage_failure(out, StorageError::Io(e));
    }
    if mode == SliceMode::Base64 {
        // Encode from a copy of the tail: base64 cannot be encoded in place.
        let raw = out.split_off(head_end);
        encode_base64(&raw, out);
    }
    out.extend_from_slice(slice_tail(mode));
    Outcome::Replied
}
