//! Storage calls as values: what a connection asks its driver to run, and
//! what it is resumed with. Both own everything they carry, so a step can
//! run on any thread.

use std::io;

use hftp_proto::response::BASE64_CHUNK;
use hftp_proto::{FileName, Range, SliceMode};

use std::time::Instant;

use super::{read_exact, RangeReader, Storage, StorageError};
use crate::metrics::{self, StorageOp};

/// A storage operation a connection waits for.
pub enum StorageStep {
    /// The listing.
    List,
    /// One file's size.
    Size(FileName),
    /// Open a range and read its first block (all of it when it is small),
    /// so that a file that cannot be read is still answered `199`.
    Open {
        name: FileName,
        range: Range,
        mode: SliceMode,
    },
    /// Read the next block of an open range into `buf`.
    Read {
        reader: Box<dyn RangeReader>,
        buf: Vec<u8>,
        want: usize,
    },
}

/// The result of a [`StorageStep`].
pub enum StorageReply {
    Listing(Result<Vec<String>, StorageError>),
    Size(Result<u64, StorageError>),
    Opened(Result<(Box<dyn RangeReader>, Vec<u8>), StorageError>),
    Read {
        reader: Box<dyn RangeReader>,
        buf: io::Result<Vec<u8>>,
    },
}

impl std::fmt::Debug for StorageStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageStep::List => f.write_str("list"),
            StorageStep::Size(name) => write!(f, "size {name}"),
            StorageStep::Open { name, range, mode } => {
                write!(f, "open {name} {}+{} {mode:?}", range.offset, range.size)
            }
            StorageStep::Read { want, .. } => write!(f, "read {want}"),
        }
    }
}

impl std::fmt::Debug for StorageReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageReply::Listing(r) => write!(f, "listing {:?}", r.as_ref().map(Vec::len)),
            StorageReply::Size(r) => write!(f, "size {r:?}"),
            StorageReply::Opened(r) => write!(f, "opened {:?}", r.as_ref().map(|(_, b)| b.len())),
            StorageReply::Read { buf, .. } => write!(f, "read {:?}", buf.as_ref().map(Vec::len)),
        }
    }
}

impl StorageReply {
    /// Whether the backend failed (not found and out of range are answers).
    fn failed(&self) -> bool {
        let unavailable = |e: &StorageError| matches!(e, StorageError::Unavailable(_));
        match self {
            StorageReply::Listing(r) => r.as_ref().err().is_some_and(unavailable),
            StorageReply::Size(r) => r.as_ref().err().is_some_and(unavailable),
            StorageReply::Opened(r) => r.as_ref().err().is_some_and(unavailable),
            StorageReply::Read { buf, .. } => buf.is_err(),
        }
    }
}

/// Bytes of a body to read in the next step: the reader's block size, and
/// for base64 a multiple of 3 unless it is the end (every base64 chunk but
/// the last must be whole).
pub fn next_block(reader: &dyn RangeReader, remaining: u64, mode: SliceMode) -> usize {
    let block = reader.block_size().max(BASE64_CHUNK);
    let block = match mode {
        SliceMode::Base64 => block - block % 3,
        SliceMode::Raw => block,
    };
    remaining.min(block as u64) as usize
}

impl StorageStep {
    /// Runs the step against `storage`, blocking as long as the backend
    /// does, and counts it in the metrics.
    pub fn run(self, storage: &dyn Storage) -> StorageReply {
        let op = match &self {
            StorageStep::List => StorageOp::List,
            StorageStep::Size(_) => StorageOp::Size,
            StorageStep::Open { .. } => StorageOp::Open,
            StorageStep::Read { .. } => StorageOp::Read,
        };
        let counting = metrics::get().is_some();
        let started = counting.then(Instant::now);
        let reply = self.execute(storage);
        if let Some(started) = started {
            metrics::storage(op, !reply.failed(), started.elapsed());
        }
        reply
    }

    fn execute(self, storage: &dyn Storage) -> StorageReply {
        match self {
            StorageStep::List => StorageReply::Listing(storage.list()),
            StorageStep::Size(name) => StorageReply::Size(storage.size(&name)),
            StorageStep::Open { name, range, mode } => {
                StorageReply::Opened(storage.open_range(&name, range).and_then(|mut reader| {
                    let first = next_block(&*reader, range.size, mode);
                    let mut buf = vec![0; first];
                    read_exact(&mut *reader, &mut buf)?;
                    Ok((reader, buf))
                }))
            }
            StorageStep::Read {
                mut reader,
                mut buf,
                want,
            } => {
                buf.clear();
                buf.resize(want, 0);
                let result = read_exact(&mut *reader, &mut buf).map(|()| buf);
                StorageReply::Read {
                    reader,
                    buf: result,
                }
            }
        }
    }
}
