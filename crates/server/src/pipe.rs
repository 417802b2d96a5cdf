//! A kernel pipe between a source and a socket, for `splice`: the bytes
//! it holds are references to pages (of the page cache, or of a socket's
//! buffers), not copies. The uring driver splices raw slices of local
//! files through one; the object store splices a store's answer into one
//! whose read end a driver drains into the client's socket.

use std::io;
use std::os::fd::OwnedFd;

use rustix::pipe::PipeFlags;

/// A pipe and the room it really has.
pub struct Pipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
    /// Bytes it holds at most: what was asked, or less when the kernel
    /// refused (beyond the user's pipe quota the default size does).
    pub capacity: usize,
}

impl Pipe {
    /// A pipe of about `wanted` bytes; both ends non-blocking if asked.
    pub fn new(wanted: usize, nonblocking: bool) -> io::Result<Pipe> {
        let mut flags = PipeFlags::CLOEXEC;
        if nonblocking {
            flags |= PipeFlags::NONBLOCK;
        }
        let (read, write) = rustix::pipe::pipe_with(flags)?;
        let _ = rustix::pipe::fcntl_setpipe_size(&write, wanted);
        let capacity = rustix::pipe::fcntl_getpipe_size(&write).unwrap_or(64 * 1024);
        Ok(Pipe {
            read,
            write,
            capacity: capacity.max(4096),
        })
    }
}
