//! SIGINT/SIGTERM for the drivers without a runtime, without threads.
//!
//! The handlers set a flag and write a byte to a pipe (the self-pipe
//! trick), so an accept loop blocked in `poll` wakes up. No thread is
//! started, which the fork driver needs. SIGCHLD wakes the loop too, so the
//! fork driver can reap children as soon as they exit.
//!
//! The first SIGINT/SIGTERM asks for a graceful stop; a second one, while
//! the server is still finishing answers, ends the process at once (exit
//! status 128 + the signal number, as a shell reports a process killed by
//! that signal), like nginx's `stop` after `quit`. That exit is taken inside
//! the signal handler itself, so it works however busy or stuck the server
//! is.

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
        let mut ids = exit_on_second_signal(&stop)?;
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
}

impl Drop for Signals {
    fn drop(&mut self) {
        for &id in &self.ids {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Registers, for SIGINT and SIGTERM, a handler that sets `stop`, preceded
/// by one that exits the process at once when `stop` is already set: the
/// first signal asks for a graceful stop, the second forces it.
pub fn exit_on_second_signal(stop: &Arc<AtomicBool>) -> io::Result<Vec<signal_hook::SigId>> {
    let mut ids = Vec::new();
    for sig in [SIGINT, SIGTERM] {
        // Order matters: the exit check runs before the flag is set.
        ids.push(signal_hook::flag::register_conditional_shutdown(
            sig,
            128 + sig,
            Arc::clone(stop),
        )?);
        ids.push(signal_hook::flag::register(sig, Arc::clone(stop))?);
    }
    Ok(ids)
}
