//! Storage calls as values: what a connection asks its driver to run, and
//! what it is resumed with. Both own everything they carry, so a step can
//! run on any thread.

use std::io;

use hftp_proto::response::BASE64_CHUNK;
use hftp_proto::{FileName, Range, SliceMode};

use super::{read_exact, ListPage, RangeReader, Storage, StorageError};

/// A storage operation a connection waits for.
pub enum StorageStep {
    /// A page of the listing: the first for `None`, else the one after the
    /// page whose continuation `cursor` is.
    ListPage { cursor: Option<String> },
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
    Listing(Result<ListPage, StorageError>),
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
            StorageStep::ListPage { cursor: None } => f.write_str("list"),
            StorageStep::ListPage { cursor: Some(_) } => f.write_str("list (next page)"),
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
            StorageReply::Listing(r) => {
                write!(f, "listing {:?}", r.as_ref().map(|page| page.names.len()))
            }
            StorageReply::Size(r) => write!(f, "size {r:?}"),
            StorageReply::Opened(r) => write!(f, "opened {:?}", r.as_ref().map(|(_, b)| b.len())),
            StorageReply::Read { buf, .. } => write!(f, "read {:?}", buf.as_ref().map(Vec::len)),
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
    /// Runs the step against `storage`, blocking as long as the backend does.
    pub fn run(self, storage: &dyn Storage) -> StorageReply {
        match self {
            StorageStep::ListPage { cursor } => {
                StorageReply::Listing(storage.list_page(cursor.as_deref()))
            }
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
