//! Streaming a slice body with bounded memory.
//!
//! A [`SliceBody`] produces the wire bytes of one slice a piece at a time:
//! at most [`BASE64_CHUNK`] file bytes are held at once, whatever `SIZE` is.
//! Raw bodies can instead go straight from the page cache to the socket with
//! `sendfile` ([`SliceBody::send_raw`]).

use std::cell::RefCell;
use std::io;
use std::os::fd::AsFd;

use hftp_proto::response::{encode_base64, slice_tail, BASE64_CHUNK};
use hftp_proto::SliceMode;

use crate::storage::SliceSource;

/// File bytes read per raw piece when `sendfile` is not used.
const RAW_CHUNK: usize = 64 * 1024;

/// Bytes handed to one `sendfile` call.
const SENDFILE_CHUNK: usize = 1 << 20;

thread_local! {
    /// Scratch space for base64 input: one per thread, not per connection.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; BASE64_CHUNK]);
}

/// The rest of a slice body, to be written after its head.
pub struct SliceBody {
    source: Box<dyn SliceSource>,
    offset: u64,
    remaining: u64,
    mode: SliceMode,
    /// The tail was appended: the body is finished for good.
    tail_sent: bool,
}

impl std::fmt::Debug for SliceBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SliceBody")
            .field("offset", &self.offset)
            .field("remaining", &self.remaining)
            .field("mode", &self.mode)
            .finish()
    }
}

/// The file ended before the slice did: it shrank after `0 OK` was sent.
fn shrank() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "file shrank while its slice was being sent",
    )
}

impl SliceBody {
    pub fn new(source: Box<dyn SliceSource>, offset: u64, size: u64, mode: SliceMode) -> SliceBody {
        SliceBody {
            source,
            offset,
            remaining: size,
            mode,
            tail_sent: false,
        }
    }

    pub fn mode(&self) -> SliceMode {
        self.mode
    }

    /// File bytes still to send.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Appends the next piece of wire bytes to `out`; the last piece carries
    /// the body's tail. Returns `true` when the body is complete.
    pub fn fill(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        if self.tail_sent {
            return Ok(true);
        }
        if self.remaining > 0 {
            match self.mode {
                SliceMode::Base64 => self.fill_base64(out)?,
                SliceMode::Raw => self.fill_raw(out)?,
            }
        }
        if self.remaining == 0 {
            out.extend_from_slice(slice_tail(self.mode));
            self.tail_sent = true;
            return Ok(true);
        }
        Ok(false)
    }

    fn fill_base64(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let want = self.remaining.min(BASE64_CHUNK as u64) as usize;
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let buf = &mut scratch[..want];
            // Every chunk but the last must be whole (a multiple of 3 bytes).
            read_exact_at(&*self.source, buf, self.offset)?;
            encode_base64(buf, out);
            Ok::<_, io::Error>(())
        })?;
        self.advance(want as u64);
        Ok(())
    }

    fn fill_raw(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let want = self.remaining.min(RAW_CHUNK as u64) as usize;
        let start = out.len();
        out.resize(start + want, 0);
        let n = self.source.read_at(&mut out[start..], self.offset);
        let n = match n {
            Ok(0) => Err(shrank()),
            Ok(n) => Ok(n),
            Err(e) => Err(e),
        };
        let n = n.inspect_err(|_| out.truncate(start))?;
        out.truncate(start + n);
        self.advance(n as u64);
        Ok(())
    }

    fn advance(&mut self, n: u64) {
        self.offset += n;
        self.remaining -= n;
    }

    /// Whether [`SliceBody::send_raw`] can be used.
    pub fn can_sendfile(&self) -> bool {
        self.mode == SliceMode::Raw && self.source.fd().is_some()
    }

    /// Sends raw bytes from the file to `socket` with `sendfile`. Returns the
    /// bytes sent (`WouldBlock` on a full non-blocking socket). Only for
    /// bodies where [`SliceBody::can_sendfile`] holds; raw bodies have no tail.
    pub fn send_raw(&mut self, socket: impl AsFd) -> io::Result<usize> {
        let Some(file) = self.source.fd() else {
            return Err(io::Error::other("no descriptor to send from"));
        };
        let mut offset = self.offset;
        let count = self.remaining.min(SENDFILE_CHUNK as u64) as usize;
        let n = rustix::fs::sendfile(socket, file, Some(&mut offset), count)?;
        if n == 0 && count > 0 {
            return Err(shrank());
        }
        self.advance(n as u64);
        Ok(n)
    }

    pub fn is_complete(&self) -> bool {
        self.remaining == 0
    }
}

/// Reads exactly `buf.len()` bytes at `offset`, or fails with "file shrank".
pub fn read_exact_at(source: &dyn SliceSource, buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match source.read_at(&mut buf[done..], offset) {
            Ok(0) => return Err(shrank()),
            Ok(n) => {
                done += n;
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Bytes(Vec<u8>);

    impl SliceSource for Bytes {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            let data = self.0.get(offset as usize..).unwrap_or(&[]);
            let n = data.len().min(buf.len());
            buf[..n].copy_from_slice(&data[..n]);
            Ok(n)
        }
    }

    #[test]
    fn tail_is_sent_once_and_body_is_one_base64_line() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let mut body = SliceBody::new(Box::new(Bytes(data.clone())), 5, 150_000, SliceMode::Base64);
        let mut out = Vec::new();
        while !body.fill(&mut out).unwrap() {}
        assert!(body.fill(&mut out).unwrap(), "stays complete");
        let mut want = Vec::new();
        encode_base64(&data[5..150_005], &mut want);
        want.extend_from_slice(b"\r\n");
        assert!(out == want);
    }

    #[test]
    fn a_file_that_shrank_is_an_error() {
        let mut body = SliceBody::new(Box::new(Bytes(vec![1; 10])), 0, 100, SliceMode::Raw);
        let mut out = Vec::new();
        assert!(body.fill(&mut out).is_ok());
        let err = body.fill(&mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
