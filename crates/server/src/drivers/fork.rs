//! # `--model fork`: one process per connection
//!
//! **How it works.** The parent only accepts. For every connection it calls
//! `fork()`: the child, a copy of the parent, serves that one client with
//! blocking calls and exits; the parent closes its copy of the socket, keeps
//! no per-client state but the child's pid, and reaps children when SIGCHLD
//! wakes it, so no zombie remains.
//!
//! **What it costs.** A fork copies the page tables and, lazily, every page
//! either side writes; a child costs a whole process (hundreds of KiB of
//! kernel and resident memory) and creating one costs far more than a
//! thread. Children share nothing: a crash, a leak or a hostile client stays
//! inside one child and never takes the server down.
//!
//! **Where it breaks.** Thousands of clients are thousands of processes:
//! memory and process-table limits come first, and short connections spend
//! most of their time being forked. `fork()` must happen in a process with a
//! single thread (a child gets only the forking thread; locks held by others
//! would stay locked forever), which is why `hftp` starts no runtime or
//! thread before the model is chosen.

use std::collections::HashMap;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use rustix::event::{poll, PollFd, PollFlags};

use crate::admission::{Admission, Ticket};
use crate::blocking::{accept_loop, serve_connection};
use crate::config::Config;
use crate::signals::Signals;
use crate::OnReady;

/// The child's client socket, for its SIGTERM handler.
static CHILD_SOCKET: AtomicI32 = AtomicI32::new(-1);

/// In a child, SIGTERM/SIGINT stop reading: the answer in flight finishes,
/// then the child sees end of input and exits.
extern "C" fn child_stop(_: libc::c_int) {
    let fd = CHILD_SOCKET.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: shutdown(2) is async-signal-safe.
        unsafe { libc::shutdown(fd, libc::SHUT_RD) };
    }
}

pub fn serve(config: Config, listeners: Vec<TcpListener>, on_ready: OnReady) -> io::Result<()> {
    let signals = Signals::install()?;
    on_ready();
    let inherited: Vec<RawFd> = listeners.iter().map(AsRawFd::as_raw_fd).collect();
    let admission = Admission::new(config.max_connections, config.max_per_ip);
    // The parent's only per-client state: which child holds which place.
    let children = std::cell::RefCell::new(HashMap::<Pid, Ticket>::new());
    accept_loop(
        &listeners,
        &signals,
        &admission,
        |stream, _peer, ticket| {
            // SAFETY: this process has a single thread (see the module docs).
            match unsafe { fork() } {
                Ok(ForkResult::Child) => run_child(stream, &config, &inherited),
                Ok(ForkResult::Parent { child }) => {
                    children.borrow_mut().insert(child, ticket);
                }
                Err(e) => tracing::warn!(error = %e, "fork failed, closing the connection"),
            }
        },
        || reap(&mut children.borrow_mut()),
    )?;
    drop(listeners);
    let mut children = children.into_inner();
    for &pid in children.keys() {
        let _ = kill(pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + config.shutdown_grace;
    while !children.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let timeout = rustix::time::Timespec::try_from(left.min(Duration::from_millis(100))).ok();
        let mut fds = [PollFd::from_borrowed_fd(signals.fd(), PollFlags::IN)];
        let _ = poll(&mut fds, timeout.as_ref());
        signals.drain();
        reap(&mut children);
    }
    for &pid in children.keys() {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
    }
    tracing::info!(unfinished = children.len(), "shut down");
    Ok(())
}

fn run_child(stream: TcpStream, config: &Config, inherited: &[RawFd]) -> ! {
    for &fd in inherited {
        // SAFETY: the child does not use the listeners.
        unsafe { libc::close(fd) };
    }
    CHILD_SOCKET.store(stream.as_raw_fd(), Ordering::SeqCst);
    let stop = SigAction::new(
        SigHandler::Handler(child_stop),
        SaFlags::empty(),
        SigSet::empty(),
    );
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: the handler only calls an async-signal-safe function.
    unsafe {
        let _ = sigaction(Signal::SIGTERM, &stop);
        let _ = sigaction(Signal::SIGINT, &stop);
        let _ = sigaction(Signal::SIGCHLD, &default);
    }
    let mut stream = stream;
    serve_connection(&mut stream, config);
    drop(stream);
    // SAFETY: leave without running the parent's exit handlers.
    unsafe { libc::_exit(0) }
}

/// Collects every child that has exited.
fn reap(children: &mut HashMap<Pid, Ticket>) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                if code != 0 {
                    tracing::warn!(pid = pid.as_raw(), code, "connection process failed");
                }
                children.remove(&pid);
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) => {
                tracing::warn!(pid = pid.as_raw(), %signal, "connection process killed");
                children.remove(&pid);
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
