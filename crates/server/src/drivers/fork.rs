//! # `--model fork`: one process per connection
//!
//! **How it works.** The parent only accepts. For every connection it calls
//! `fork()`: the child, a copy of the parent, serves that one client with
//! blocking calls and exits; the parent closes its copy of the socket, keeps
//! no per-client state but the child's pid, and reaps children when SIGCHLD
//! wakes it, so no zombie remains.
//!
//! **Behind a proxy** (`--proxy-protocol`) the parent reads each new
//! connection's PROXY header itself, multiplexed in its accept loop (see
//! `blocking::accept_loop`), and admits the client it names
//! before forking: admission lives in the parent.
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
//!
//! **Over an object store** (`--storage s3://`) the same rule costs more:
//! the parent never touches the store, so each child builds the backend's
//! small runtime and HTTP client on its first storage call, and every
//! connection opens its own connection to the store (plus a TLS handshake
//! for `https`) where the other models reuse a pool. Fine for a few
//! long downloads; for many short connections another model serves better.
//!
//! **Signals and children.** SIGINT/SIGTERM are blocked across `fork()`: a
//! child must not receive the shutdown signal before it has installed its
//! own handler (it would run the parent's, which only wakes the parent, and
//! the child would then serve on until its client left). The child installs
//! its handler, then unblocks, and a signal that came meanwhile is delivered
//! to it. Children also ask the kernel to kill them if the parent dies
//! (`PR_SET_PDEATHSIG`), so a forced stop (a second signal) leaves none
//! behind.

use std::collections::HashMap;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{
    kill, sigaction, sigprocmask, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use rustix::event::{poll, PollFd, PollFlags};

use crate::admission::Ticket;
use crate::config::Config;
use crate::connection::Connection;
use crate::drivers::blocking::{accept_loop, serve_connection};
use crate::drivers::OnReady;
use crate::endpoint::Endpoint;
use crate::signals::Signals;

/// The child's client socket, for its SIGTERM handler.
static CHILD_SOCKET: AtomicI32 = AtomicI32::new(-1);

/// Raised in a child by its SIGTERM/SIGINT handler.
static CHILD_STOP: AtomicBool = AtomicBool::new(false);

/// In a child, SIGTERM/SIGINT raise the stop flag, then shut the reading
/// side so that a blocked read returns: the connection is told to stop
/// (see `blocking`), finishes the answer in flight if any, and the child
/// exits.
extern "C" fn child_stop(_: libc::c_int) {
    CHILD_STOP.store(true, Ordering::SeqCst);
    let fd = CHILD_SOCKET.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: shutdown(2) is async-signal-safe.
        unsafe { libc::shutdown(fd, libc::SHUT_RD) };
    }
}

pub fn serve(config: Config, listeners: Vec<TcpListener>, on_ready: OnReady) -> io::Result<()> {
    let signals = Signals::install()?;
    on_ready();
    let mut inherited: Vec<RawFd> = listeners.iter().map(AsRawFd::as_raw_fd).collect();
    let endpoint = Endpoint::new(&config);
    // The parent's only per-client state: which child holds which place.
    let children = std::cell::RefCell::new(HashMap::<Pid, Ticket>::new());
    let metrics = match &config.metrics {
        Some(l) => Some(l.try_clone()?),
        None => None,
    };
    // Children close every listener, the metrics one (and its clone) too.
    inherited.extend(config.metrics.iter().map(|l| l.as_raw_fd()));
    inherited.extend(metrics.iter().map(AsRawFd::as_raw_fd));
    // A scrape is served the fork way too: the parent stays single-threaded.
    let mut scrape = |stream: TcpStream| fork_scrape(stream, &inherited);
    let side = metrics
        .as_ref()
        .map(|l| (l, &mut scrape as &mut dyn FnMut(TcpStream)));
    accept_loop(
        &listeners,
        &signals,
        &endpoint,
        side,
        |stream, conn, ticket| {
            let parent = nix::unistd::getpid();
            let unblock = block_stop_signals();
            // SAFETY: this process has a single thread (see the module docs).
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    run_child(stream, conn, &config, &inherited, parent, &unblock)
                }
                Ok(ForkResult::Parent { child }) => {
                    restore_mask(&unblock);
                    children.borrow_mut().insert(child, ticket);
                }
                Err(e) => {
                    restore_mask(&unblock);
                    tracing::warn!(error = %e, "fork failed, closing the connection");
                }
            }
        },
        || reap(&mut children.borrow_mut()),
    )?;
    drop(listeners);
    let mut children = children.into_inner();
    tracing::info!(
        open = children.len(),
        "stopping: no new connections; answers in flight finish"
    );
    for &pid in children.keys() {
        tracing::debug!(pid = pid.as_raw(), "asking a connection process to finish");
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
        tracing::info!(pid = pid.as_raw(), "unfinished at shutdown: killed");
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
    }
    tracing::info!(unfinished = children.len(), "shut down");
    Ok(())
}

/// Blocks SIGINT and SIGTERM; returns the previous mask.
fn block_stop_signals() -> SigSet {
    let mut stop = SigSet::empty();
    stop.add(Signal::SIGINT);
    stop.add(Signal::SIGTERM);
    let mut previous = SigSet::empty();
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&stop), Some(&mut previous));
    previous
}

fn restore_mask(previous: &SigSet) {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(previous), None);
}

fn run_child(
    stream: TcpStream,
    conn: Connection,
    config: &Config,
    inherited: &[RawFd],
    parent: Pid,
    mask: &SigSet,
) -> ! {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if nix::unistd::getppid() != parent {
        // The parent died before the request above took effect.
        // SAFETY: leave without running the parent's exit handlers.
        unsafe { libc::_exit(1) }
    }
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
    // A stop signal that arrived since the fork is delivered now, to the
    // handler above.
    restore_mask(mask);
    let mut stream = stream;
    serve_connection(&mut stream, conn, config, &CHILD_STOP);
    drop(stream);
    // SAFETY: leave without running the parent's exit handlers.
    unsafe { libc::_exit(0) }
}

/// Serves one metrics scrape in a child of its own; the counters it reads
/// are the shared ones (see [`crate::metrics`]).
fn fork_scrape(stream: TcpStream, inherited: &[RawFd]) {
    let unblock = block_stop_signals();
    // SAFETY: this process has a single thread (see the module docs).
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of this process.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            for &fd in inherited {
                // SAFETY: the child does not use the listeners.
                unsafe { libc::close(fd) };
            }
            let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
            // SAFETY: restoring default dispositions.
            unsafe {
                let _ = sigaction(Signal::SIGTERM, &default);
                let _ = sigaction(Signal::SIGINT, &default);
            }
            restore_mask(&unblock);
            let _ = crate::metrics::endpoint::serve_one(stream);
            // SAFETY: leave without running the parent's exit handlers.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { .. }) => restore_mask(&unblock),
        Err(e) => {
            restore_mask(&unblock);
            tracing::warn!(error = %e, "fork failed, dropping a metrics scrape");
        }
    }
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
