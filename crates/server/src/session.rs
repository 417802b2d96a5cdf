//! One client's protocol session, independent of how bytes move and of
//! where files live.
//!
//! A [`Session`] scans requests, applies the spec's order of checks and
//! writes answers. When an answer needs the files it does not call storage:
//! it returns [`Outcome::Storage`] with the step to run, and the
//! connection resumes it with the reply ([`Session::resume`]). It never
//! touches a socket, so the concurrency strategies share all protocol
//! behaviour, and it can be tested with no socket and no disk.

use hftp_proto::response::{
    encode_base64, slice_tail, write_help, write_listing, write_metadata, write_slice_head,
    write_status, BASE64_CHUNK,
};
use hftp_proto::{Event, Range, Request, Scanner, SliceMode, Status};

use crate::body::{Body, ListingBody, SliceBody};
use crate::storage::{StorageError, StorageReply, StorageStep};

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
    /// The answer needs storage: run the step, then [`Session::resume`].
    Storage(StorageStep),
    /// A slice head or a listing's `0 OK` was appended; send `out`, then
    /// stream the body.
    Stream(Body),
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
    pub storage: std::sync::Arc<dyn crate::storage::Storage>,
    pub max_line: usize,
}

/// What an answer was, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    pub command: &'static str,
    pub status: Status,
    /// For a slice: its mode and size.
    pub slice: Option<(SliceMode, u64)>,
}

impl Answered {
    fn new(command: &'static str, status: Status) -> Option<Answered> {
        Some(Answered {
            command,
            status,
            slice: None,
        })
    }
}

/// What a session waits for from storage.
#[derive(Debug, Clone, Copy)]
enum Waiting {
    Listing,
    Size,
    Slice { range: Range, mode: SliceMode },
}

/// The protocol state of one connection.
pub struct Session {
    scanner: Scanner,
    waiting: Option<Waiting>,
    /// What the answer made last was, for the metrics.
    answered: Option<Answered>,
    /// Requests answered so far.
    pub requests: u64,
}

impl Session {
    pub fn new(max_line: usize) -> Session {
        Session {
            scanner: Scanner::new(max_line),
            waiting: None,
            answered: None,
            requests: 0,
        }
    }

    /// Whether a request line is partly received.
    pub fn in_request(&self) -> bool {
        self.scanner.in_line()
    }

    /// Scans `input` up to the end of the next request and appends its answer
    /// to `out`. Returns the bytes consumed and what to do next. Not to be
    /// called while a storage step is outstanding.
    pub fn on_input(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Outcome) {
        let (used, event) = self.scanner.feed(input);
        let Some(event) = event else {
            return (used, Outcome::NeedInput);
        };
        self.requests += 1;
        let outcome = match event {
            Event::Fatal(status) => {
                self.answered = Answered::new("none", status);
                close_with(out, status)
            }
            Event::Reject(status) => {
                let command = self.scanner.last_command().unwrap_or("unknown");
                self.answered = Answered::new(command, status);
                reject(out, status)
            }
            Event::Request(request) => {
                tracing::debug!(%request, "request");
                self.execute(request, out)
            }
        };
        (used, outcome)
    }

    fn execute(&mut self, request: Request, out: &mut Vec<u8>) -> Outcome {
        let (waiting, step) = match request {
            Request::GetFileListing => (Waiting::Listing, StorageStep::ListPage { cursor: None }),
            Request::GetMetadata { name } => (Waiting::Size, StorageStep::Size(name)),
            Request::GetSlice { name, range, mode } => (
                Waiting::Slice { range, mode },
                StorageStep::Open { name, range, mode },
            ),
            Request::Help => {
                self.answered = Answered::new("help", Status::Ok);
                write_help(out);
                return Outcome::Replied;
            }
            Request::Quit => {
                self.answered = Answered::new("quit", Status::Ok);
                write_status(out, Status::Ok);
                return Outcome::Close(CloseReason::Quit);
            }
        };
        self.waiting = Some(waiting);
        Outcome::Storage(step)
    }

    /// What the last answer was, once.
    pub fn take_answered(&mut self) -> Option<Answered> {
        self.answered.take()
    }

    /// Finishes the answer that waited for `reply`.
    pub fn resume(&mut self, reply: StorageReply, out: &mut Vec<u8>) -> Outcome {
        let waiting = self.waiting.take();
        let (command, slice) = match waiting {
            Some(Waiting::Listing) => ("get_file_listing", None),
            Some(Waiting::Size) => ("get_metadata", None),
            Some(Waiting::Slice { range, mode }) => ("get_slice", Some((mode, range.size))),
            None => ("none", None),
        };
        let start = out.len();
        let outcome = self.finish(waiting, reply, out);
        let status = status_of(&out[start..]);
        self.answered = Some(Answered {
            command,
            status,
            slice: slice.filter(|_| status == Status::Ok),
        });
        outcome
    }

    fn finish(
        &mut self,
        waiting: Option<Waiting>,
        reply: StorageReply,
        out: &mut Vec<u8>,
    ) -> Outcome {
        match (waiting, reply) {
            // Only the first page can still fail with a status; the others
            // come as a body after `0 OK`.
            (Some(Waiting::Listing), StorageReply::Listing(result)) => match result {
                Ok(page) if page.next.is_none() => {
                    write_listing(out, page.names.iter().map(String::as_str));
                    page.unlisted.report();
                    Outcome::Replied
                }
                Ok(page) => {
                    write_status(out, Status::Ok);
                    Outcome::Stream(Body::Listing(ListingBody::new(page)))
                }
                Err(e) => storage_failure(out, e),
            },
            (Some(Waiting::Size), StorageReply::Size(result)) => match result {
                Ok(size) => {
                    write_metadata(out, size);
                    Outcome::Replied
                }
                Err(e) => storage_failure(out, e),
            },
            (Some(Waiting::Slice { range, mode }), StorageReply::Opened(result)) => match result {
                Ok((reader, first)) => slice(reader, first, range, mode, out),
                Err(e) => storage_failure(out, e),
            },
            (waiting, reply) => {
                // A driver bug, not a client's: answer 199 rather than panic.
                tracing::error!(?waiting, ?reply, "storage reply does not match the request");
                close_with(out, Status::InternalError)
            }
        }
    }
}

/// The status of an answer from its first bytes.
fn status_of(answer: &[u8]) -> Status {
    Status::ALL
        .into_iter()
        .find(|s| answer.starts_with(s.line()))
        .unwrap_or(Status::InternalError)
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
        StorageError::OutOfRange => reject(out, Status::OffsetExceedsFileSize),
        StorageError::Unavailable(e) => {
            tracing::warn!(error = %e, "storage failure, answering 199");
            close_with(out, Status::InternalError)
        }
    }
}

/// The head of a slice whose first block is read: small slices are
/// answered whole, larger ones go on as a streamed body.
fn slice(
    reader: Box<dyn crate::storage::RangeReader>,
    first: Vec<u8>,
    range: Range,
    mode: SliceMode,
    out: &mut Vec<u8>,
) -> Outcome {
    write_slice_head(out, mode, range.size);
    if range.size <= INLINE_SLICE && first.len() as u64 == range.size {
        match mode {
            SliceMode::Base64 => encode_base64(&first, out),
            SliceMode::Raw => out.extend_from_slice(&first),
        }
        out.extend_from_slice(slice_tail(mode));
        return Outcome::Replied;
    }
    Outcome::Stream(Body::Slice(SliceBody::new(reader, first, range, mode)))
}
