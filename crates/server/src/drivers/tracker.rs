//! Live connections of the thread-based drivers, so that shutdown can tell
//! threads blocked in `read` to stop and wait for them to finish.

use std::collections::HashMap;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::drivers::blocking::StopFlag;

#[derive(Default)]
pub struct Tracker {
    live: Mutex<Live>,
    changed: Condvar,
    /// Raised at shutdown, before any reading side is shut.
    stop: StopFlag,
}

#[derive(Default)]
struct Live {
    next_id: u64,
    fds: HashMap<u64, RawFd>,
}

/// Removes its connection from the tracker when dropped (before the socket
/// is closed, so shutdown never touches a reused descriptor).
pub struct Registration {
    tracker: Arc<Tracker>,
    id: u64,
}

impl Tracker {
    /// Records a live connection until the returned registration is dropped.
    pub fn register(self: &Arc<Self>, stream: &TcpStream) -> Registration {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.next_id += 1;
        let id = live.next_id;
        live.fds.insert(id, stream.as_raw_fd());
        Registration {
            tracker: Arc::clone(self),
            id,
        }
    }

    /// How many connections are live.
    pub fn live(&self) -> usize {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fds
            .len()
    }

    /// What connection threads check when a read returns nothing.
    pub fn stop_flag(&self) -> &StopFlag {
        &self.stop
    }

    /// Raises the stop flag, then shuts down the reading side of every live
    /// connection: a thread waiting for a request wakes, sees the flag and
    /// stops its connection (see `blocking`); one sending an answer finishes
    /// it first.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        for &fd in live.fds.values() {
            // SAFETY: the fd stays open while registered (see Registration).
            let stream = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let _ = rustix::net::shutdown(stream, rustix::net::Shutdown::Read);
        }
    }

    /// Waits until no connection is live, at most `grace`. Returns how many
    /// are still live.
    pub fn wait_idle(&self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        while !live.fds.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            live = match self.changed.wait_timeout(live, left) {
                Ok((l, _)) => l,
                Err(e) => e.into_inner().0,
            };
        }
        live.fds.len()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut live = self.tracker.live.lock().unwrap_or_else(|e| e.into_inner());
        live.fds.remove(&self.id);
        self.tracker.changed.notify_all();
    }
}
