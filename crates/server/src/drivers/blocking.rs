//! What the blocking drivers (`threads`, `fork`) share: driving one
//! [`Connection`] over a blocking socket, and an accept loop that wakes on
//! signals.
//!
//! Storage steps run inline (the thread or process may block; it serves
//! one client). Timeouts use the socket's own `SO_RCVTIMEO` (the
//! connection's idle or drain deadline) and `SO_SNDTIMEO` (write timeout),
//! so a blocked thread or process always gets its time back.
//!
//! **Shutdown.** A thread blocked in `read` cannot be told anything, so
//! the driver raises a [`StopFlag`] and then shuts the socket's reading
//! side: the read returns, the loop sees the flag and calls
//! [`Connection::stop`], and the connection decides, as in every model,
//! whether it ends now (`server shutdown`) or after the answer in flight.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};

use crate::admission::Ticket;
use crate::config::{Config, ACCEPT_BURST, READ_BUF};
use crate::connection::{Action, Connection, End};
use crate::endpoint::{Accept, Endpoint, Opened, Opening};
use crate::listen::AcceptFailures;
use crate::signals::Signals;

/// Raised, before the reading side is shut, when the server stops.
pub type StopFlag = AtomicBool;

/// Serves one connection until it ends; logs its summary line. The caller
/// closes the socket (after forgetting it wherever it was registered).
pub fn serve_connection(
    stream: &mut TcpStream,
    mut conn: Connection,
    config: &Config,
    stop: &StopFlag,
) -> End {
    let end = match setup(stream, config) {
        Ok(()) => run(stream, &mut conn, config, stop),
        Err(e) => End::Error(e.to_string()),
    };
    conn.finish(&end, Instant::now());
    end
}

fn setup(stream: &TcpStream, config: &Config) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    // A write that the client accepts no byte of for this long fails.
    stream.set_write_timeout(Some(config.write_timeout))?;
    Ok(())
}

/// Does what the connection asks, with blocking calls, until it ends.
fn run(stream: &mut TcpStream, conn: &mut Connection, config: &Config, stop: &StopFlag) -> End {
    let storage = &*config.session.storage;
    let mut buf = vec![0u8; READ_BUF];
    let mut read_timer = ReadTimer::default();
    let mut stop_told = false;
    loop {
        match conn.poll() {
            Action::Send(bytes) => match stream.write(bytes) {
                Ok(n) => conn.sent(n, Instant::now()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => conn.io_failed(e),
            },
            Action::SendFile { fd, offset, len } => {
                let mut offset = offset;
                match rustix::fs::sendfile(stream.as_fd(), fd, Some(&mut offset), len) {
                    Ok(n) => conn.sent(n, Instant::now()),
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => conn.io_failed(e.into()),
                }
            }
            Action::SplicePipe { pipe, len } => {
                // The pipe holds the bytes; the socket's own timeout
                // bounds the wait for the client, as for `sendfile`.
                match rustix::pipe::splice(
                    pipe,
                    None,
                    stream.as_fd(),
                    None,
                    len,
                    rustix::pipe::SpliceFlags::MOVE,
                ) {
                    Ok(n) => conn.sent(n, Instant::now()),
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => conn.io_failed(e.into()),
                }
            }
            Action::Storage(step) => {
                let reply = step.run(storage);
                conn.storage_done(reply, Instant::now());
            }
            Action::ShutdownWrite => {
                let ok = stream.shutdown(Shutdown::Write).is_ok();
                conn.write_shut(ok, Instant::now());
            }
            Action::Receive => {
                if !stop_told && stop.load(Ordering::SeqCst) {
                    stop_told = true;
                    conn.stop();
                    continue;
                }
                if let Err(e) = read_timer.arm(stream, conn.poll_timeout(), Instant::now()) {
                    conn.io_failed(e);
                    continue;
                }
                match stream.read(&mut buf) {
                    // The reading side was shut to wake this read: the
                    // connection decides what a stop means now.
                    Ok(0) if !stop_told && stop.load(Ordering::SeqCst) => {
                        stop_told = true;
                        conn.stop();
                    }
                    Ok(0) => conn.handle_eof(Instant::now()),
                    Ok(n) => conn.handle_input(&buf[..n], Instant::now()),
                    Err(e) if is_timeout(&e) => conn.handle_timeout(Instant::now()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => conn.io_failed(e),
                }
            }
            Action::Yield => {}
            // `--limit-rate`: this thread serves one client; it may sleep.
            Action::Sleep => {
                if let Some(wake) = conn.poll_timeout() {
                    std::thread::sleep(wake.saturating_duration_since(Instant::now()));
                }
                conn.handle_timeout(Instant::now());
            }
            Action::Park => return End::Error("waiting for a storage step never run".into()),
            Action::Close(end) => return end,
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The socket's receive timeout (`SO_RCVTIMEO`), set from the connection's
/// deadline only when it changes noticeably: one system call per request
/// would cost more than the request.
#[derive(Default)]
struct ReadTimer {
    current: Option<Duration>,
}

/// A read may wake this much after the deadline instead of re-arming.
const TIMER_SLACK: Duration = Duration::from_millis(10);

impl ReadTimer {
    fn arm(
        &mut self,
        stream: &TcpStream,
        deadline: Option<Instant>,
        now: Instant,
    ) -> io::Result<()> {
        // A zero SO_RCVTIMEO means "forever": wake at once instead, and the
        // connection sees its deadline has passed.
        let want = deadline.map(|d| {
            d.saturating_duration_since(now)
                .max(Duration::from_millis(1))
        });
        let close_enough = match (self.current, want) {
            (Some(cur), Some(want)) => cur >= want && cur - want <= TIMER_SLACK,
            (None, None) => true,
            _ => false,
        };
        if !close_enough {
            stream.set_read_timeout(want)?;
            self.current = want;
        }
        Ok(())
    }
}

/// A listener served beside the HFTP ones, outside admission (the
/// metrics endpoint of the fork model), and what to do with its clients.
pub type SideListener<'a> = (&'a TcpListener, &'a mut dyn FnMut(TcpStream));

/// A connection whose PROXY header is not complete yet (not admitted yet).
struct PendingHeader {
    stream: TcpStream,
    opening: Opening,
}

/// Accepts connections on every listener until SIGINT/SIGTERM, handing each
/// admitted one, with its connection, to `on_accept` (the others are closed
/// at once, see [`Endpoint`]). `on_wake` runs after every wake-up (the fork
/// driver reaps children there).
///
/// Under `--proxy-protocol` admission needs the client the PROXY header
/// names, and the fork parent must admit before forking (its admission
/// state lives in the parent), so headers are read here: new sockets wait,
/// non-blocking, in this loop's `poll` set until their header is complete
/// (then admitted and handed over with the bytes read past it), invalid,
/// or late. One slow client never blocks the loop.
pub fn accept_loop(
    listeners: &[TcpListener],
    signals: &Signals,
    endpoint: &Arc<Endpoint>,
    mut side: Option<SideListener<'_>>,
    mut on_accept: impl FnMut(TcpStream, Connection, Ticket),
    mut on_wake: impl FnMut(),
) -> io::Result<()> {
    for l in listeners {
        l.set_nonblocking(true)?;
    }
    if let Some((l, _)) = &side {
        l.set_nonblocking(true)?;
    }
    let mut accept_failures = AcceptFailures::default();
    let mut pending: Vec<PendingHeader> = Vec::new();
    let mut start = |stream: TcpStream, opened: Opened| {
        if let Opened::Admitted(admitted) = opened {
            let (conn, ticket) = endpoint.start(admitted, Instant::now());
            on_accept(stream, conn, ticket);
        }
    };
    while !signals.stop_requested() {
        let mut fds: Vec<PollFd<'_>> = listeners
            .iter()
            .map(|l| PollFd::new(l, PollFlags::IN))
            .collect();
        fds.push(PollFd::from_borrowed_fd(signals.fd(), PollFlags::IN));
        if let Some((l, _)) = &side {
            fds.push(PollFd::new(*l, PollFlags::IN));
        }
        let first_pending = fds.len();
        fds.extend(
            pending
                .iter()
                .map(|p| PollFd::new(&p.stream, PollFlags::IN)),
        );
        let timeout = pending
            .iter()
            .map(|p| p.opening.deadline())
            .min()
            .map(|d| d.saturating_duration_since(Instant::now()))
            .and_then(|left| rustix::time::Timespec::try_from(left).ok());
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let readable: Vec<bool> = fds[first_pending..]
            .iter()
            .map(|fd| !fd.revents().is_empty())
            .collect();
        drop(fds);
        signals.drain();
        on_wake();
        if let Some((l, on_side)) = &mut side {
            while let Ok((stream, _)) = l.accept() {
                on_side(stream);
            }
        }
        // Headers first: their sockets are the ones `poll` reported.
        let mut still = Vec::with_capacity(pending.len());
        for (mut p, readable) in pending.into_iter().zip(readable) {
            let mut opened = if readable {
                read_header(&mut p)
            } else {
                Opened::Incomplete
            };
            if let Opened::Incomplete = opened {
                opened = p.opening.handle_timeout(Instant::now());
            }
            match opened {
                Opened::Incomplete => still.push(p),
                opened => start(p.stream, opened),
            }
        }
        pending = still;
        for l in listeners {
            // A bounded burst, and none once a stop is asked for: under a
            // connect flood the queue never empties, and the loop must still
            // see the signal. Clients left queued wake `poll` again.
            for _ in 0..ACCEPT_BURST {
                if signals.stop_requested() {
                    break;
                }
                match l.accept() {
                    Ok((stream, peer)) => match endpoint.accept(peer, Instant::now()) {
                        Accept::Admitted(admitted) => start(stream, Opened::Admitted(admitted)),
                        Accept::Refused => {}
                        Accept::Opening(mut opening) => match stream.set_nonblocking(true) {
                            Ok(()) => pending.push(PendingHeader { stream, opening }),
                            Err(e) => {
                                opening.io_failed(e, Instant::now());
                            }
                        },
                    },
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        // EMFILE and friends: leave the connection queued and
                        // try again shortly instead of spinning.
                        accept_failures.report(&e);
                        std::thread::sleep(Duration::from_millis(10));
                        break;
                    }
                }
            }
        }
    }
    // Not admitted yet: nothing in flight to finish.
    for mut p in pending {
        p.opening.stop(Instant::now());
    }
    Ok(())
}

/// Reads what arrived of a PROXY header without blocking.
fn read_header(p: &mut PendingHeader) -> Opened {
    let mut buf = [0u8; 1024];
    loop {
        let now = Instant::now();
        match p.stream.read(&mut buf) {
            Ok(0) => return p.opening.handle_eof(now),
            Ok(n) => match p.opening.handle_input(&buf[..n], now) {
                Opened::Incomplete => {}
                opened => return opened,
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Opened::Incomplete,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return p.opening.io_failed(e, now),
        }
    }
}
