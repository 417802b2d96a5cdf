//! Storage calls as values: what a connection asks its driver to run, and
//! what it is resumed with. Both own everything they carry, so a step can
//! run on any thread.

use std::io;
use std::os::fd::BorrowedFd;

use hftp_proto::response::BASE64_CHUNK;
use hftp_proto::{FileName, Range, SliceMode};

use std::time::Instant;

use super::{shrank, ListPage, RangeReader, StepDone, Storage, StorageError};
use crate::metrics::{self, StorageOp};

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
    /// Move the next bytes of an open range, at most `want`, into its
    /// (empty) pipe.
    FillPipe {
        reader: Box<dyn RangeReader>,
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
    /// How many bytes are now in the reader's pipe.
    PipeFilled {
        reader: Box<dyn RangeReader>,
        filled: io::Result<usize>,
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
            StorageStep::FillPipe { want, .. } => write!(f, "fill pipe {want}"),
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
            StorageReply::PipeFilled { filled, .. } => write!(f, "pipe filled {filled:?}"),
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
            StorageReply::PipeFilled { filled, .. } => filled.is_err(),
        }
    }
}

/// Bytes of a body to read in the next step: the reader's block size (at
/// least `floor`), and for base64 a multiple of 3 unless it is the end
/// (every base64 chunk but the last must be whole).
pub fn next_block(
    reader: &dyn RangeReader,
    remaining: u64,
    mode: SliceMode,
    floor: usize,
) -> usize {
    let block = reader.block_size().max(floor).max(BASE64_CHUNK);
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
        let op = self.op();
        let started = metrics::get().is_some().then(Instant::now);
        let reply = self.execute(storage);
        if let Some(started) = started {
            metrics::storage(op, !reply.failed(), started.elapsed());
        }
        reply
    }

    /// Starts the step on a backend that [`Storage::spawns_steps`]: `done`
    /// gets the reply from one of the backend's threads, and the step is
    /// counted in the metrics as [`StorageStep::run`] counts it.
    pub fn spawn(self, storage: &dyn Storage, done: StepDone) {
        let op = self.op();
        let started = metrics::get().is_some().then(Instant::now);
        storage.spawn_step(
            self,
            Box::new(move |reply| {
                if let Some(started) = started {
                    metrics::storage(op, !reply.failed(), started.elapsed());
                }
                done(reply);
            }),
        );
    }

    fn op(&self) -> StorageOp {
        match self {
            StorageStep::ListPage { .. } => StorageOp::List,
            StorageStep::Size(_) => StorageOp::Size,
            StorageStep::Open { .. } => StorageOp::Open,
            StorageStep::Read { .. } | StorageStep::FillPipe { .. } => StorageOp::Read,
        }
    }

    /// Runs the step here, blocking as long as the backend does (not
    /// counted: [`StorageStep::run`] counts).
    pub(crate) fn execute<S: Storage + ?Sized>(self, storage: &S) -> StorageReply {
        match self {
            StorageStep::ListPage { cursor } => {
                StorageReply::Listing(storage.list_page(cursor.as_deref()))
            }
            StorageStep::Size(name) => StorageReply::Size(storage.size(&name)),
            StorageStep::Open { name, range, mode } => {
                StorageReply::Opened(open(storage, &name, range, mode).and_then(|mut reader| {
                    let first = next_block(&*reader, range.size, mode, BASE64_CHUNK);
                    let mut buf = Vec::new();
                    reader.read_block(&mut buf, first)?;
                    Ok((reader, buf))
                }))
            }
            StorageStep::Read {
                mut reader,
                mut buf,
                want,
            } => {
                let result = reader.read_block(&mut buf, want).map(|()| buf);
                StorageReply::Read {
                    reader,
                    buf: result,
                }
            }
            StorageStep::FillPipe { mut reader, want } => {
                let filled = reader.fill_pipe(want);
                StorageReply::PipeFilled { reader, filled }
            }
        }
    }
}

/// Opens a range the way its body goes out: raw bodies may get a pipe.
fn open<S: Storage + ?Sized>(
    storage: &S,
    name: &FileName,
    range: Range,
    mode: SliceMode,
) -> Result<Box<dyn RangeReader>, StorageError> {
    match mode {
        SliceMode::Raw => storage.open_raw_range(name, range),
        SliceMode::Base64 => storage.open_range(name, range),
    }
}

/// A step run up to its file read, for a driver that reads files itself
/// (`--model uring` reads them through its ring, not with `pread`).
pub enum Prepared {
    /// Nothing left to do (no file read, or a reader without a descriptor).
    Done(StorageReply),
    /// Read [`FileRead::want`] bytes of [`FileRead::fd`] at
    /// [`FileRead::offset`] into [`FileRead::buf_mut`], then
    /// [`FileRead::filled`].
    FileRead(FileRead),
}

/// Which reply a [`FileRead`] completes.
enum ReadFor {
    Open,
    Read,
}

/// The file read of an `Open` or `Read` step, done by the driver; its
/// buffer lives here, so it stays put while the kernel fills it.
pub struct FileRead {
    reader: Box<dyn RangeReader>,
    buf: Vec<u8>,
    filled: usize,
    for_step: ReadFor,
    /// When the step started, while the metrics count.
    started: Option<Instant>,
}

impl StorageStep {
    /// Runs the step against `storage`, except a read of a local file,
    /// which is handed back to the caller to do. The reply is the one
    /// [`StorageStep::run`] would give.
    pub fn run_until_file_read(self, storage: &dyn Storage) -> Prepared {
        let started = metrics::get().is_some().then(Instant::now);
        let (reader, buf, want, for_step) = match self {
            StorageStep::Open { name, range, mode } => match open(storage, &name, range, mode) {
                Ok(reader) => {
                    let want = next_block(&*reader, range.size, mode, BASE64_CHUNK);
                    (reader, Vec::new(), want, ReadFor::Open)
                }
                Err(e) => {
                    let reply = StorageReply::Opened(Err(e));
                    if let Some(started) = started {
                        metrics::storage(StorageOp::Open, !reply.failed(), started.elapsed());
                    }
                    return Prepared::Done(reply);
                }
            },
            StorageStep::Read { reader, buf, want } => (reader, buf, want, ReadFor::Read),
            other => return Prepared::Done(other.run(storage)),
        };
        let read = FileRead {
            reader,
            buf,
            filled: 0,
            for_step,
            started,
        };
        if read.reader.positioned_fd().is_none() || want == 0 {
            return Prepared::Done(read.run_inline(want));
        }
        let mut read = read;
        read.buf.resize(want, 0);
        Prepared::FileRead(read)
    }
}

impl FileRead {
    /// The descriptor to read.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.reader.positioned_fd().map(|(fd, _)| fd)
    }

    /// File offset of the next byte to read.
    pub fn offset(&self) -> u64 {
        self.reader.positioned_fd().map_or(0, |(_, pos)| pos)
    }

    /// The part of the buffer still to fill; it does not move until this
    /// read is dropped or completed.
    pub fn buf_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.filled..]
    }

    /// `n` bytes were read into [`FileRead::buf_mut`]: the reply once the
    /// buffer is full (or the file ended early), or the read back when more
    /// is wanted.
    pub fn filled(mut self, n: usize) -> Result<StorageReply, FileRead> {
        let n = n.min(self.buf.len() - self.filled);
        if n == 0 {
            return Ok(self.failed(shrank()));
        }
        self.reader.advance(n as u64);
        self.filled += n;
        if self.filled < self.buf.len() {
            return Err(self);
        }
        Ok(self.reply(Ok(())))
    }

    /// The read failed.
    pub fn failed(self, e: io::Error) -> StorageReply {
        self.reply(Err(e))
    }

    fn run_inline(mut self, want: usize) -> StorageReply {
        let result = self.reader.read_block(&mut self.buf, want);
        self.reply(result)
    }

    fn reply(self, result: io::Result<()>) -> StorageReply {
        let FileRead {
            reader,
            buf,
            for_step,
            started,
            ..
        } = self;
        if let Some(started) = started {
            let op = match for_step {
                ReadFor::Open => StorageOp::Open,
                ReadFor::Read => StorageOp::Read,
            };
            metrics::storage(op, result.is_ok(), started.elapsed());
        }
        match for_step {
            ReadFor::Open => StorageReply::Opened(
                result
                    .map(|()| (reader, buf))
                    .map_err(StorageError::Unavailable),
            ),
            ReadFor::Read => StorageReply::Read {
                reader,
                buf: result.map(|()| buf),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalDir;
    use std::os::unix::fs::FileExt;

    /// Does a [`FileRead`] the way a driver would, `chunk` bytes at a time
    /// (short reads), with positioned reads of its descriptor.
    fn complete(mut read: FileRead, chunk: usize) -> StorageReply {
        loop {
            let file = std::fs::File::from(read.fd().unwrap().try_clone_to_owned().unwrap());
            let offset = read.offset();
            let buf = read.buf_mut();
            let len = buf.len().min(chunk);
            let n = file.read_at(&mut buf[..len], offset).unwrap();
            match read.filled(n) {
                Ok(reply) => return reply,
                Err(more) => read = more,
            }
        }
    }

    #[test]
    fn a_file_read_done_by_the_driver_gives_the_reply_run_gives() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 249) as u8).collect();
        std::fs::write(dir.path().join("f"), &data).unwrap();
        let storage = LocalDir::new(dir.path(), false).unwrap();
        let open = || StorageStep::Open {
            name: FileName::new("f").unwrap(),
            range: Range {
                offset: 10,
                size: 150_000,
            },
            mode: SliceMode::Base64,
        };
        let Prepared::FileRead(read) = open().run_until_file_read(&storage) else {
            panic!("a local file is read by the driver");
        };
        let StorageReply::Opened(Ok((reader, first))) = complete(read, 1000) else {
            panic!("open failed");
        };
        let StorageReply::Opened(Ok((_, want))) = open().run(&storage) else {
            panic!("open failed");
        };
        assert!(first == want && first == data[10..10 + first.len()]);
        // The next block continues where the first ended.
        let step = StorageStep::Read {
            reader,
            buf: first,
            want: 5000,
        };
        let Prepared::FileRead(read) = step.run_until_file_read(&storage) else {
            panic!("a local file is read by the driver");
        };
        let StorageReply::Read { buf, .. } = complete(read, 4096) else {
            panic!("not a read reply");
        };
        let start = 10 + want.len();
        assert!(buf.unwrap() == data[start..start + 5000]);
    }

    #[test]
    fn a_file_that_ends_early_is_the_shrank_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![1u8; 100]).unwrap();
        let storage = LocalDir::new(dir.path(), false).unwrap();
        let step = StorageStep::Open {
            name: FileName::new("f").unwrap(),
            range: Range {
                offset: 0,
                size: 100,
            },
            mode: SliceMode::Raw,
        };
        let Prepared::FileRead(read) = step.run_until_file_read(&storage) else {
            panic!("a local file is read by the driver");
        };
        std::fs::write(dir.path().join("f"), b"").unwrap();
        let StorageReply::Opened(Err(StorageError::Unavailable(e))) = complete(read, 4096) else {
            panic!("a shrunk file must fail");
        };
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn steps_without_a_file_read_run_at_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"abc").unwrap();
        let storage = LocalDir::new(dir.path(), false).unwrap();
        let step = StorageStep::Size(FileName::new("f").unwrap());
        assert!(matches!(
            step.run_until_file_read(&storage),
            Prepared::Done(StorageReply::Size(Ok(3)))
        ));
    }
}
