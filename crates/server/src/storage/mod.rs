//! The served files, behind one small interface, so that other backends
//! (an object store shared by many servers) can replace the local directory.
//!
//! A connection never calls storage itself: it asks its driver to run a
//! [`StorageStep`] and is resumed with the [`StorageReply`]. Drivers whose
//! threads may block (`threads`, `fork`) run the step inline. When the
//! backend says its calls may block ([`Storage::may_block`]), the others
//! never wait for it: a backend with a runtime of its own (the object
//! store) runs the step as a task ([`Storage::spawn_step`]) and wakes the
//! driver (the `async` model's task, a loop's waker, a ring's mailbox);
//! any other runs on a small blocking pool ([`offload`]) or in
//! `spawn_blocking`. A slow backend never stalls a loop, and a step stalled
//! on the store costs a task, not a thread.
//!
//! The seam is shaped for remote stores: a ranged read is one sequential
//! body read ahead in large blocks ([`RangeReader::block_size`]), opening
//! checks existence and range in one operation, the listing comes in pages
//! ([`Storage::list_page`]) so that no backend holds a whole directory or
//! bucket in memory, a descriptor for `sendfile` exists only for local
//! files, and "not found", "out of range" and "unavailable" are distinct
//! errors.
//!
//! Backends: [`LocalDir`] (a directory), [`ObjectStorage`] (a bucket of an
//! S3-compatible store), and [`StatCache`], which may wrap either to answer
//! sizes and listings from a short-lived cache.

mod cache;
mod held;
mod local;
mod object;
pub(crate) mod offload;
mod step;
mod unlisted;

use std::io;
use std::os::fd::BorrowedFd;

use hftp_proto::{FileName, Range};

pub use cache::StatCache;
pub use held::HeldStore;
pub use local::LocalDir;
pub use object::floor::LowSpeed;
pub use object::{ObjectStorage, ObjectUrl};
pub(crate) use step::next_block;
pub use step::{FileRead, Prepared, StorageReply, StorageStep};
pub use unlisted::Unlisted;

/// Why a file could not be listed, measured or read.
#[derive(Debug)]
pub enum StorageError {
    /// No servable file of that name: answered `202`.
    NotFound,
    /// The file exists but is shorter than the range: answered `203`.
    OutOfRange,
    /// Something that should have worked did not (an I/O error, a store
    /// that cannot be reached): answered `199`.
    Unavailable(io::Error),
}

impl From<io::Error> for StorageError {
    fn from(e: io::Error) -> Self {
        StorageError::Unavailable(e)
    }
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::NotFound => f.write_str("not found"),
            StorageError::OutOfRange => f.write_str("range beyond the end of the file"),
            StorageError::Unavailable(e) => write!(f, "unavailable: {e}"),
        }
    }
}

/// One opened range of one file, read front to back.
pub trait RangeReader: Send {
    /// Reads the next bytes of the range; `Ok(0)` before the range's end
    /// means the file shrank (or was replaced) since it was opened.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Fills `buf` with the next block, at most `want` bytes. By default all
    /// `want` of them (a local file has them at once). A reader of a remote
    /// store returns as soon as it has some (what has arrived, in whole
    /// groups of 3 bytes unless it is all of `want`, so that a base64 body
    /// stays whole), so that a slow store still reaches the client as its
    /// bytes come, and `0 OK` is not held back for a whole block.
    fn read_block(&mut self, buf: &mut Vec<u8>, want: usize) -> io::Result<()> {
        // No clear: the read overwrites every byte, and zeroing a block per
        // step showed in profiles (memset, 1.3%).
        buf.resize(want, 0);
        read_exact(self, buf)
    }
    /// Bytes worth asking for in one storage step: small for a local file
    /// (one page-cache copy), large for a remote store (one request).
    fn block_size(&self) -> usize;
    /// The file's descriptor, for zero-copy `sendfile` at explicit offsets
    /// (local files only).
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    /// The descriptor and the file offset of the next byte, for a driver
    /// that reads the file itself (an io_uring `READ`) and then reports the
    /// bytes it read with [`RangeReader::advance`] (local files only).
    fn positioned_fd(&self) -> Option<(BorrowedFd<'_>, u64)> {
        None
    }
    /// Moves past `n` bytes read through [`RangeReader::positioned_fd`]
    /// (never called on a reader without one).
    fn advance(&mut self, _n: u64) {}
    /// The read end of a pipe that [`RangeReader::fill_pipe`] fills, for a
    /// driver to splice to its socket: raw bytes of a remote store that
    /// never pass through user space (readers opened by
    /// [`Storage::open_raw_range`] only).
    fn pipe(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    /// Moves the next bytes of the range, at most `want`, into the empty
    /// [`RangeReader::pipe`], blocking as [`RangeReader::read`] does;
    /// `Ok(0)` before the range's end means the file shrank.
    fn fill_pipe(&mut self, _want: usize) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this reader has no pipe",
        ))
    }
    /// The reader as its backend's own type, for a backend that reads it
    /// without blocking in [`Storage::spawn_step`].
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }
}

/// Hands a step's reply back to the driver that asked for it.
pub type StepDone = Box<dyn FnOnce(StorageReply) + Send>;

/// One page of the listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Servable names, sorted in byte order, all after those of the
    /// previous pages. May be empty even when more pages follow.
    pub names: Vec<String>,
    /// Where the next page starts (opaque, backend-defined); `None` after
    /// the last page.
    pub next: Option<String>,
    /// Names this page left out because HFTP cannot carry them; a backend
    /// that reads the whole directory for every page counts them on the
    /// first page alone.
    pub unlisted: Unlisted,
}

/// What every backend offers.
pub trait Storage: Send + Sync {
    /// A page of servable names, in byte order: the first page for `None`,
    /// else the page that follows the one whose [`ListPage::next`] was
    /// `cursor`. Every page is bounded in size, whatever the number of files.
    fn list_page(&self, cursor: Option<&str>) -> Result<ListPage, StorageError>;
    /// Size of a servable file.
    fn size(&self, name: &FileName) -> Result<u64, StorageError>;
    /// Opens `range` of a servable file: fails with `NotFound` or
    /// `OutOfRange` (in the protocol's order of checks) before any byte is
    /// read.
    fn open_range(
        &self,
        name: &FileName,
        range: Range,
    ) -> Result<Box<dyn RangeReader>, StorageError>;
    /// Opens `range` for a body sent raw, as [`Storage::open_range`] does;
    /// a backend may return a reader with a [`RangeReader::pipe`].
    fn open_raw_range(
        &self,
        name: &FileName,
        range: Range,
    ) -> Result<Box<dyn RangeReader>, StorageError> {
        self.open_range(name, range)
    }
    /// Whether a call may take long enough (a network round trip) that a
    /// readiness loop must not wait for it. The local directory answers
    /// from the page cache in microseconds and says no, as nginx serves
    /// files without `aio threads` by default.
    fn may_block(&self) -> bool {
        false
    }
    /// Whether the backend runs steps itself, without a thread each
    /// ([`Storage::spawn_step`]): an async client on a runtime of its own,
    /// where a step waiting for the store costs a task, not a thread.
    fn spawns_steps(&self) -> bool {
        false
    }
    /// Runs `step` and hands its reply to `done`. A backend that
    /// [`Storage::spawns_steps`] starts a task and returns at once (`done`
    /// is then called from one of its threads); any other runs the step
    /// here, blocking, which is why drivers only call this on the former.
    fn spawn_step(&self, step: StorageStep, done: StepDone) {
        done(step.execute(self));
    }
    /// The backend's name in the metrics (`local`, `s3`).
    fn backend(&self) -> &'static str;
}

/// Every servable name, all pages collected: for tests and small tools, not
/// for serving (the server streams pages).
pub fn list_all(storage: &dyn Storage) -> Result<Vec<String>, StorageError> {
    let mut names = Vec::new();
    let mut cursor = None;
    loop {
        let page = storage.list_page(cursor.as_deref())?;
        names.extend(page.names);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(names),
        }
    }
}

/// Reads exactly `buf.len()` bytes, or fails with "file shrank".
pub fn read_exact<R: RangeReader + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match reader.read(&mut buf[done..]) {
            Ok(0) => return Err(shrank()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How many bytes a partial block of `want` holds once `got` have been
/// read: `got` rounded up to whole groups of 3 (the caller reads the one
/// or two bytes more), at most `want`. Bytes read are never dropped.
pub fn partial_block(got: usize, want: usize) -> usize {
    got.div_ceil(3).saturating_mul(3).min(want)
}

/// [`RangeReader::read_block`] for a reader whose `read` returns what has
/// arrived: one read, then up to a whole group of 3.
pub fn read_some_block<R: RangeReader + ?Sized>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    want: usize,
) -> io::Result<()> {
    buf.resize(want, 0);
    if want == 0 {
        return Ok(());
    }
    let got = loop {
        match reader.read(buf) {
            Ok(0) => return Err(shrank()),
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    let keep = partial_block(got, want);
    if got < keep {
        read_exact(reader, &mut buf[got..keep])?;
    }
    buf.truncate(keep);
    Ok(())
}

/// The file ended before the slice did: it shrank after `0 OK` was sent.
pub fn shrank() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "file shrank while its slice was being sent",
    )
}

#[cfg(test)]
mod tests {
    use super::partial_block;

    #[test]
    fn partial_blocks_round_up_to_whole_groups_of_three_within_want() {
        assert_eq!(partial_block(1, 1 << 20), 3);
        assert_eq!(partial_block(3, 1 << 20), 3);
        assert_eq!(partial_block(16_385, 1 << 20), 16_386);
        assert_eq!(partial_block(4, 5), 5, "the last piece need not be whole");
        assert_eq!(partial_block(7, 7), 7);
        assert_eq!(partial_block(9, 7), 7);
    }
}
