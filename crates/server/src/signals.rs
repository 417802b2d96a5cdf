//! SIGINT/SIGTERM for the drivers without a runtime, without threads.
//!
//! The handlers set a flag and write a byte to a pipe (the self-pipe
//! trick), so an accept loop blocked in `poll` wakes up. No thread is
//! started, which the fork driver needs. SIGCHLD wakes the loop too, so the
//! fork driver can reap children as soon as they exit.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};

/// Wakes the accept loop on SIGINT, SIGTERM and SIGCHLD.
pub struct Signals {
    wake: UnixStream,
    stop: Arc<AtomicBool>,
    ids: Vec<signal_hook::SigId>,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        let (wake, notify) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        notify.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut ids = Vec::new();
        for sig in [SIGINT, SIGTERM] {
            ids.push(signal_hook::flag::register(sig, Arc::clone(&stop))?);
        }
        for sig in [SIGINT, SIGTERM, SIGCHLD] {
            ids.push(signal_hook::low_level::pipe::register(
                sig,
                notify.try_clone()?,
            )?);
        }
        Ok(Signals { wake, stop, ids })
    }

    /// Whether SIGINT or SIGTERM arrived.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The descriptor that becomes readable when a signal arrives.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Empties the wake-up pipe.
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
    }

    /// Restores the default handlers (in a forked child).
    pub fn uninstall(self) {
        for id in self.ids {
            signal_hook::low_level::unregister(id);
        }
    }
}
