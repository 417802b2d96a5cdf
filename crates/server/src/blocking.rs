//! What the blocking drivers (`threads`, `fork`) share: driving one
//! [`Connection`] over a blocking socket, and an accept loop that wakes on
//! signals.
//!
//! Storage steps run inline (the thread or process may block; it serves
//! one client). Timeouts use the socket's own `SO_RCVTIMEO` (the
//! connection's idle or drain deadline) and `SO_SNDTIMEO` (write timeout),
//! so a blocked thread or process always gets its time back.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};

use crate::admission::{Admission, Ticket};
use crate::config::{Config, ACCEPT_BURST, READ_BUF};
use crate::connection::{Action, Connection, End};
use crate::listen::AcceptFailures;
use crate::signals::Signals;
use crate::transport::proxy_header::{self, Header, Progress, ProxyHeaderReader};

/// Who an admitted connection is from, and what was read of it already.
pub struct Accepted {
    /// The client: the socket's peer, or the one its PROXY header named.
    pub peer: SocketAddr,
    /// The proxy it came through (`--proxy-protocol`).
    pub via: Option<SocketAddr>,
    /// Bytes read past the PROXY header: the first HFTP input.
    pub first: Vec<u8>,
}

/// Serves one connection until it ends; logs its summary line. The caller
/// closes the socket (after forgetting it wherever it was registered).
pub fn serve_connection(stream: &mut TcpStream, accepted: Accepted, config: &Config) -> End {
    let mut conn = Connection::new(config, Some(accepted.peer), Instant::now()).via(accepted.via);
    conn.handle_input(&accepted.first, Instant::now());
    let end = match setup(stream, config) {
        Ok(()) => run(stream, &mut conn, config),
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
fn run(stream: &mut TcpStream, conn: &mut Connection, config: &Config) -> End {
    let storage = &*config.session.storage;
    let mut buf = vec![0u8; READ_BUF];
    let mut read_timer = ReadTimer::default();
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
                if let Err(e) = read_timer.arm(stream, conn.poll_timeout(), Instant::now()) {
                    conn.io_failed(e);
                    continue;
                }
                match stream.read(&mut buf) {
                    Ok(0) => conn.handle_eof(Instant::now()),
                    Ok(n) => conn.handle_input(&buf[..n], Instant::now()),
                    Err(e) if is_timeout(&e) => conn.handle_timeout(Instant::now()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => conn.io_failed(e),
                }
            }
            Action::Yield => {}
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
    proxy: SocketAddr,
    reader: ProxyHeaderReader,
    deadline: Instant,
}

/// Accepts connections on every listener until SIGINT/SIGTERM, handing each
/// admitted one to `on_accept` (the others are closed at once, see
/// [`Admission`]). `on_wake` runs after every wake-up (the fork driver reaps
/// children there).
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
    admission: &Arc<Admission>,
    config: &Config,
    mut side: Option<SideListener<'_>>,
    mut on_accept: impl FnMut(TcpStream, Accepted, Ticket),
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
            .map(|p| p.deadline)
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
        let now = Instant::now();
        let mut still = Vec::with_capacity(pending.len());
        for (mut p, readable) in pending.into_iter().zip(readable) {
            let outcome = if readable { read_header(&mut p) } else { None };
            match outcome {
                None if now >= p.deadline => {
                    proxy_header::refuse(p.proxy, "no complete PROXY header in time");
                }
                None => still.push(p),
                Some(Err(reason)) => proxy_header::refuse(p.proxy, &reason),
                Some(Ok(header)) => {
                    let peer = header.origin.client(p.proxy);
                    if let Some(ticket) = admission.admit(peer) {
                        let accepted = Accepted {
                            peer,
                            via: Some(p.proxy),
                            first: header.leftover,
                        };
                        on_accept(p.stream, accepted, ticket);
                    }
                }
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
                    Ok((stream, peer)) => match config.proxy_protocol {
                        None => {
                            if let Some(ticket) = admission.admit(peer) {
                                let accepted = Accepted {
                                    peer,
                                    via: None,
                                    first: Vec::new(),
                                };
                                on_accept(stream, accepted, ticket);
                            }
                        }
                        Some(timeout) => {
                            if pending.len() >= config.max_connections {
                                proxy_header::refuse(
                                    peer,
                                    "too many connections waiting for their PROXY header",
                                );
                            } else if let Err(e) = stream.set_nonblocking(true) {
                                tracing::warn!(error = %e, "cannot set up a connection");
                            } else {
                                pending.push(PendingHeader {
                                    stream,
                                    proxy: peer,
                                    reader: ProxyHeaderReader::new(),
                                    deadline: Instant::now() + timeout,
                                });
                            }
                        }
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
    Ok(())
}

/// Reads what arrived of a PROXY header without blocking: None while it is
/// incomplete, else the header or why the connection is refused.
fn read_header(p: &mut PendingHeader) -> Option<Result<Header, String>> {
    let mut buf = [0u8; 1024];
    loop {
        match p.stream.read(&mut buf) {
            Ok(0) => return Some(Err("connection closed before its PROXY header ended".into())),
            Ok(n) => match p.reader.feed(&buf[..n]) {
                Progress::Incomplete => {}
                Progress::Done(header) => return Some(Ok(header)),
                Progress::Invalid(reason) => return Some(Err(reason)),
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Some(Err(e.to_string())),
        }
    }
}
