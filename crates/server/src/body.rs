//! Streaming an answer's body with bounded memory: a slice, or a listing.
//!
//! An answer whose size is not bounded goes out as a body after its
//! `0 OK`: the connection asks [`Body::next`] for the next piece, sends it,
//! and runs the storage step the body asks for when it needs more. A
//! [`ListingBody`] holds one page of names at a time (a storage step per
//! page); a [`SliceBody`] one block of the file.
//!
//! A [`SliceBody`] turns one opened range into wire bytes a block at a
//! time: it holds one block read from storage (the reader's block size,
//! 48 KiB for a local file; 192 KiB for the few long base64 bodies that
//! hold a slot of [`crate::wide`]) whatever `SIZE` is, encodes base64 from
//! it a block at a time, hands raw bytes out directly, and asks for
//! the next block as a storage step. Raw bodies of local files go straight
//! from the page cache to the socket with `sendfile` instead, and raw
//! bodies of a reader with a pipe (a remote store's socket spliced into
//! it) are spliced from that pipe: a storage step fills the pipe, the
//! driver empties it into its socket.

use std::io;
use std::os::fd::BorrowedFd;

use hftp_proto::response::{encode_base64, slice_tail, BASE64_CHUNK};
use hftp_proto::{Range, SliceMode};

use crate::storage::next_block;
use crate::storage::{
    shrank, ListPage, RangeReader, StorageError, StorageReply, StorageStep, Unlisted,
};
use crate::wide::{Wide, WIDE_BLOCK};

/// Bytes handed to one `sendfile` call.
/// Answers are batched up to this size before being written (a listing
/// page too); see [`crate::connection::ConnectionConfig::write_batch`].
pub const WRITE_BATCH: usize = 64 * 1024;

const SENDFILE_CHUNK: usize = 1 << 20;

/// What a body needs next.
pub enum BodyNext {
    /// Raw bytes of the current block are ready: see [`SliceBody::block`].
    Block,
    /// The rest can go with `sendfile`: see [`SliceBody::file_range`].
    File,
    /// Bytes are in the reader's pipe: see [`SliceBody::pipe_range`].
    Pipe,
    /// Wire bytes were appended to the output.
    Filled,
    /// The next block must be read: run this step, then [`SliceBody::resume`].
    Read(StorageStep),
    /// A read step is outstanding.
    Waiting,
    /// Every byte (and the tail) has been produced.
    Done,
}

/// The rest of an answer, to be produced after its `0 OK`.
pub enum Body {
    Slice(SliceBody),
    Listing(ListingBody),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Slice(b) => b.fmt(f),
            Body::Listing(b) => b.fmt(f),
        }
    }
}

impl Body {
    /// Produces the next piece: appends wire bytes to `out`, or says which
    /// raw bytes to send, or which storage step to run.
    pub fn next(&mut self, out: &mut Vec<u8>) -> BodyNext {
        match self {
            Body::Slice(b) => b.next(out),
            Body::Listing(b) => b.next(out),
        }
    }

    /// The raw bytes to send after [`BodyNext::Block`].
    pub fn block(&self) -> &[u8] {
        match self {
            Body::Slice(b) => b.block(),
            Body::Listing(_) => &[],
        }
    }

    /// Descriptor, offset and length for `sendfile` after [`BodyNext::File`].
    pub fn file_range(&self) -> Option<(BorrowedFd<'_>, u64, usize)> {
        match self {
            Body::Slice(b) => b.file_range(),
            Body::Listing(_) => None,
        }
    }

    /// The pipe's read end and the bytes in it, after [`BodyNext::Pipe`].
    pub fn pipe_range(&self) -> Option<(BorrowedFd<'_>, usize)> {
        match self {
            Body::Slice(b) => b.pipe_range(),
            Body::Listing(_) => None,
        }
    }

    /// `n` bytes of a block, a `sendfile` or the pipe went out.
    pub fn sent(&mut self, n: usize) -> io::Result<()> {
        match self {
            Body::Slice(b) => b.sent(n),
            Body::Listing(_) => Ok(()),
        }
    }

    /// Resumes after the storage step asked for by [`BodyNext::Read`]. An
    /// error means the answer cannot be finished: the connection closes.
    pub fn resume(&mut self, reply: StorageReply) -> io::Result<()> {
        match (self, reply) {
            (Body::Slice(b), StorageReply::Read { reader, buf }) => b.resume(reader, buf),
            (Body::Slice(b), StorageReply::PipeFilled { reader, filled }) => {
                b.resume_piped(reader, filled)
            }
            (Body::Listing(b), StorageReply::Listing(page)) => b.resume(page),
            (_, reply) => Err(io::Error::other(format!(
                "storage reply {reply:?} does not match the body"
            ))),
        }
    }
}

/// The rest of a listing after its `0 OK`: one page of names at a time,
/// then the empty line that ends the listing.
pub struct ListingBody {
    names: std::vec::IntoIter<String>,
    /// Continuation of the next page; `None` once the last page is held.
    next: Option<String>,
    /// A page step is outstanding.
    waiting: bool,
    /// The final empty line was appended.
    ended: bool,
    /// Names the pages so far left out, logged when the listing ends.
    unlisted: Unlisted,
}

impl std::fmt::Debug for ListingBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListingBody")
            .field("buffered", &self.names.len())
            .field("more_pages", &self.next.is_some())
            .finish()
    }
}

impl ListingBody {
    /// A listing whose first page is `first` (its `0 OK` already written).
    pub fn new(first: ListPage) -> ListingBody {
        ListingBody {
            names: first.names.into_iter(),
            next: first.next,
            unlisted: first.unlisted,
            waiting: false,
            ended: false,
        }
    }

    fn next(&mut self, out: &mut Vec<u8>) -> BodyNext {
        if self.ended {
            return BodyNext::Done;
        }
        if self.waiting {
            return BodyNext::Waiting;
        }
        let before = out.len();
        while out.len() < WRITE_BATCH {
            let Some(name) = self.names.next() else { break };
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if out.len() > before {
            return BodyNext::Filled;
        }
        match self.next.take() {
            Some(cursor) => {
                self.waiting = true;
                BodyNext::Read(StorageStep::ListPage {
                    cursor: Some(cursor),
                })
            }
            None => {
                out.extend_from_slice(b"\r\n");
                self.ended = true;
                self.unlisted.report();
                BodyNext::Filled
            }
        }
    }

    fn resume(&mut self, page: Result<ListPage, StorageError>) -> io::Result<()> {
        self.waiting = false;
        let page = page.map_err(|e| match e {
            StorageError::Unavailable(e) => e,
            other => io::Error::other(other.to_string()),
        })?;
        self.names = page.names.into_iter();
        self.next = page.next;
        self.unlisted.add(page.unlisted);
        Ok(())
    }
}

/// The rest of a slice body, to be written after its head.
pub struct SliceBody {
    /// Absent while a read step holds it.
    reader: Option<Box<dyn RangeReader>>,
    mode: SliceMode,
    /// File offset of the next byte to send.
    offset: u64,
    /// Bytes not read from storage yet.
    unread: u64,
    block: Vec<u8>,
    /// Bytes of `block` already sent or encoded.
    pos: usize,
    /// Bytes in the reader's pipe, not sent yet.
    piped: usize,
    /// The tail was appended: the body is finished for good.
    tail_sent: bool,
    /// A slot of the wide-block pool: blocks of [`WIDE_BLOCK`].
    wide: Option<Wide>,
}

impl std::fmt::Debug for SliceBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SliceBody")
            .field("offset", &self.offset)
            .field("unread", &self.unread)
            .field("buffered", &(self.block.len() - self.pos))
            .field("mode", &self.mode)
            .finish()
    }
}

impl SliceBody {
    /// A body for `range`, whose first bytes `first` are already read.
    pub fn new(
        reader: Box<dyn RangeReader>,
        first: Vec<u8>,
        range: Range,
        mode: SliceMode,
    ) -> SliceBody {
        SliceBody {
            reader: Some(reader),
            mode,
            offset: range.offset,
            unread: range.size - first.len() as u64,
            block: first,
            pos: 0,
            piped: 0,
            tail_sent: false,
            // Only a long base64 body gains from wide blocks (raw ones go by
            // sendfile or straight from the block).
            wide: (mode == SliceMode::Base64 && range.size > 2 * WIDE_BLOCK as u64)
                .then(Wide::take)
                .flatten(),
        }
    }

    /// The block size asked of storage, and encoded at a time.
    fn block_floor(&self) -> usize {
        if self.wide.is_some() {
            WIDE_BLOCK
        } else {
            BASE64_CHUNK
        }
    }

    pub fn mode(&self) -> SliceMode {
        self.mode
    }

    /// File bytes not sent yet.
    pub fn remaining(&self) -> u64 {
        self.unread + (self.block.len() - self.pos) as u64 + self.piped as u64
    }

    /// Produces the next piece: appends base64 to `out`, or says which raw
    /// bytes to send, or which storage step to run.
    pub fn next(&mut self, out: &mut Vec<u8>) -> BodyNext {
        if self.pos < self.block.len() {
            if self.mode == SliceMode::Raw {
                return BodyNext::Block;
            }
            let end = self.block.len().min(self.pos + self.block_floor());
            encode_base64(&self.block[self.pos..end], out);
            self.pos = end;
            if self.pos == self.block.len() && self.unread == 0 {
                self.finish(out);
            }
            return BodyNext::Filled;
        }
        if self.piped > 0 {
            return BodyNext::Pipe;
        }
        if self.unread == 0 {
            if self.tail_sent {
                return BodyNext::Done;
            }
            self.finish(out);
            return BodyNext::Filled;
        }
        let Some(reader) = self.reader.take() else {
            return BodyNext::Waiting;
        };
        if self.mode == SliceMode::Raw && reader.fd().is_some() {
            self.reader = Some(reader);
            self.block = Vec::new();
            self.pos = 0;
            return BodyNext::File;
        }
        if self.mode == SliceMode::Raw && reader.pipe().is_some() {
            let want = next_block(&*reader, self.unread, self.mode, self.block_floor());
            self.block = Vec::new();
            self.pos = 0;
            return BodyNext::Read(StorageStep::FillPipe { reader, want });
        }
        let want = next_block(&*reader, self.unread, self.mode, self.block_floor());
        self.pos = 0;
        BodyNext::Read(StorageStep::Read {
            reader,
            buf: std::mem::take(&mut self.block),
            want,
        })
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(slice_tail(self.mode));
        self.tail_sent = true;
        self.block = Vec::new();
        self.pos = 0;
        self.wide = None;
    }

    /// The raw bytes to send after [`BodyNext::Block`].
    pub fn block(&self) -> &[u8] {
        &self.block[self.pos..]
    }

    /// Descriptor, offset and length for `sendfile` after [`BodyNext::File`].
    pub fn file_range(&self) -> Option<(BorrowedFd<'_>, u64, usize)> {
        let fd = self.reader.as_ref()?.fd()?;
        Some((
            fd,
            self.offset,
            self.unread.min(SENDFILE_CHUNK as u64) as usize,
        ))
    }

    /// The pipe's read end and the bytes in it, after [`BodyNext::Pipe`].
    pub fn pipe_range(&self) -> Option<(BorrowedFd<'_>, usize)> {
        let fd = self.reader.as_ref()?.pipe()?;
        (self.piped > 0).then_some((fd, self.piped))
    }

    /// `n` bytes of a block, a `sendfile` or the pipe went out.
    pub fn sent(&mut self, n: usize) -> io::Result<()> {
        if self.pos < self.block.len() {
            self.pos += n.min(self.block.len() - self.pos);
        } else if self.piped > 0 {
            if n == 0 {
                return Err(io::Error::other("splicing from the pipe sent nothing"));
            }
            self.piped -= n.min(self.piped);
        } else {
            if n == 0 && self.unread > 0 {
                return Err(shrank());
            }
            self.unread -= (n as u64).min(self.unread);
        }
        self.offset += n as u64;
        Ok(())
    }

    /// Resumes after a read step.
    pub fn resume(
        &mut self,
        reader: Box<dyn RangeReader>,
        buf: io::Result<Vec<u8>>,
    ) -> io::Result<()> {
        self.reader = Some(reader);
        let buf = buf?;
        self.unread -= (buf.len() as u64).min(self.unread);
        self.block = buf;
        self.pos = 0;
        Ok(())
    }

    /// Resumes after a pipe fill.
    pub fn resume_piped(
        &mut self,
        reader: Box<dyn RangeReader>,
        filled: io::Result<usize>,
    ) -> io::Result<()> {
        self.reader = Some(reader);
        let filled = filled?;
        if filled == 0 {
            return Err(shrank());
        }
        self.unread -= (filled as u64).min(self.unread);
        self.piped = filled;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageReply;

    struct Bytes {
        data: Vec<u8>,
        pos: usize,
    }

    impl RangeReader for Bytes {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let rest = self.data.get(self.pos..).unwrap_or(&[]);
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.pos += n;
            Ok(n)
        }
        fn block_size(&self) -> usize {
            100_000
        }
    }

    /// Drives a body to its end, running read steps inline.
    fn drain(mut body: SliceBody) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            match body.next(&mut out) {
                BodyNext::Block => {
                    let b = body.block().to_vec();
                    out.extend_from_slice(&b);
                    body.sent(b.len())?;
                }
                BodyNext::File | BodyNext::Pipe => unreachable!("no descriptor, no pipe"),
                BodyNext::Filled => {}
                BodyNext::Read(StorageStep::Read {
                    mut reader,
                    mut buf,
                    want,
                }) => {
                    let r = reader.read_block(&mut buf, want).map(|()| buf);
                    body.resume(reader, r)?;
                }
                BodyNext::Read(_) | BodyNext::Waiting => unreachable!(),
                BodyNext::Done => return Ok(out),
            }
        }
    }

    fn body(data: &[u8], offset: usize, size: usize, first: usize, mode: SliceMode) -> SliceBody {
        let reader = Bytes {
            data: data.to_vec(),
            pos: offset + first,
        };
        let range = Range {
            offset: offset as u64,
            size: size as u64,
        };
        SliceBody::new(
            Box::new(reader),
            data[offset..offset + first].to_vec(),
            range,
            mode,
        )
    }

    #[test]
    fn base64_body_is_one_line_with_its_tail_once() {
        let data: Vec<u8> = (0..400_000u32).map(|i| (i % 253) as u8).collect();
        let out = drain(body(&data, 5, 350_000, 49_152, SliceMode::Base64)).unwrap();
        let mut want = Vec::new();
        encode_base64(&data[5..350_005], &mut want);
        want.extend_from_slice(b"\r\n");
        assert!(out == want);
    }

    #[test]
    fn a_long_base64_body_is_whole_in_wide_or_narrow_blocks() {
        // Long enough for a wide slot (taken when one is free): blocks of
        // 192 KiB encoded whole, after a first one of 48 KiB.
        let data: Vec<u8> = (0..1_200_000u32).map(|i| (i * 7 % 255) as u8).collect();
        let body = body(&data, 5, 1_000_003, 49_152, SliceMode::Base64);
        let out = drain(body).unwrap();
        let mut want = Vec::new();
        encode_base64(&data[5..1_000_008], &mut want);
        want.extend_from_slice(b"\r\n");
        assert!(out == want);
    }

    #[test]
    fn raw_body_is_the_bytes() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let out = drain(body(&data, 7, 250_000, 1000, SliceMode::Raw)).unwrap();
        assert!(out == data[7..250_007]);
    }

    #[test]
    fn a_file_that_shrank_is_an_error() {
        let data = vec![1u8; 60_000];
        let err = drain(body(&data, 0, 100_000, 49_152, SliceMode::Raw)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn replies_are_plain_values() {
        // A read step can be run anywhere and its reply sent back.
        let data = vec![7u8; 10];
        let reader = Bytes { data, pos: 0 };
        let step = StorageStep::Read {
            reader: Box::new(reader),
            buf: Vec::new(),
            want: 4,
        };
        let storage = crate::storage::LocalDir::new(std::env::temp_dir(), false).unwrap();
        match step.run(&storage) {
            StorageReply::Read { buf, .. } => assert_eq!(buf.unwrap(), vec![7; 4]),
            other => panic!("unexpected {other:?}"),
        }
    }
}
