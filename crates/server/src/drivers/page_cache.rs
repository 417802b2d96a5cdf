//! Whether a file's bytes are in the page cache, so that `sendfile` on
//! them cannot wait for the disk.
//!
//! The uring loop never blocks: a raw slice it cannot send at once goes
//! through a splice pair that the kernel runs on its `io-wq` threads. That
//! hand-off costs a thread wake-up per chunk, which is most of what
//! separated `uring` from `poll` on one fast connection. When every page
//! of the next chunk is cached, `sendfile` into the (non-blocking) socket
//! only moves page references and returns at once, so the loop does it
//! itself. `cachestat(2)` (Linux 6.5) tells, for a range, how many of its
//! pages are cached, without touching them; on older kernels every chunk
//! takes the splice pair, as before.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// `cachestat`'s number on every Linux architecture (the unified table).
const SYS_CACHESTAT: libc::c_long = 451;

/// Set once the kernel said it has no `cachestat`.
static MISSING: AtomicBool = AtomicBool::new(false);

#[repr(C)]
struct Range {
    offset: u64,
    len: u64,
}

#[repr(C)]
#[derive(Default)]
struct Stat {
    cached: u64,
    dirty: u64,
    writeback: u64,
    evicted: u64,
    recently_evicted: u64,
}

/// True when every page of `len` bytes of `file` from `offset` is cached.
/// False when one is not, when the range passes the end of the file, or
/// when the kernel cannot tell.
pub fn holds(file: BorrowedFd<'_>, offset: u64, len: usize) -> bool {
    if len == 0 || MISSING.load(Ordering::Relaxed) {
        return false;
    }
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64,
        _ => return false,
    };
    let Some(end) = offset.checked_add(len as u64) else {
        return false;
    };
    let pages = end.div_ceil(page) - offset / page;
    let range = Range {
        offset,
        len: len as u64,
    };
    let mut stat = Stat::default();
    // SAFETY: `range` and `stat` are live, properly laid out values for
    // the duration of the call; the kernel writes only into `stat`.
    let r = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const Range,
            &mut stat as *mut Stat,
            0u32,
        )
    };
    if r != 0 {
        if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
            MISSING.store(true, Ordering::Relaxed);
        }
        return false;
    }
    stat.cached >= pages
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    // Quick tier: a file just written is in the page cache (the kernel
    // keeps what it wrote); a range beyond its end is not.
    #[test]
    fn a_file_just_written_is_cached_and_its_end_is_not() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![7u8; 256 * 1024]).unwrap();
        let fd = f.as_fd();
        let cached = holds(fd, 0, 256 * 1024);
        if MISSING.load(Ordering::Relaxed) {
            // A kernel without cachestat (before 6.5): nothing is "cached",
            // every chunk takes the splice pair.
            assert!(!cached);
            return;
        }
        assert!(cached);
        assert!(holds(fd, 5000, 100_000));
        assert!(!holds(fd, 200 * 1024, 1 << 20), "past the end");
        assert!(!holds(fd, u64::MAX - 10, 100));
        assert!(!holds(fd, 0, 0));
    }
}
