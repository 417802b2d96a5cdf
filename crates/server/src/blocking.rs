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

/// Serves one connection until it ends; logs its summary line. The caller
/// closes the socket (after forgetting it wherever it was registered).
pub fn serve_connection(stream: &mut TcpStream, config: &Config) -> End {
    let mut conn = Connection::new(config, stream.peer_addr().ok(), Instant::now());
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

/// Accepts connections on every listener until SIGINT/SIGTERM, handing each
/// admitted one to `on_accept` (the others are closed at once, see
/// [`Admission`]). `on_wake` runs after every wake-up (the fork driver reaps
/// children there).
pub fn accept_loop(
    listeners: &[TcpListener],
    signals: &Signals,
    admission: &Arc<Admission>,
    mut side: Option<SideListener<'_>>,
    mut on_accept: impl FnMut(TcpStream, SocketAddr, Ticket),
    mut on_wake: impl FnMut(),
) -> io::Result<()> {
    for l in listeners {
        l.set_nonblocking(true)?;
    }
    if let Some((l, _)) = &side {
        l.set_nonblocking(true)?;
    }
    let mut accept_failures = AcceptFailures::default();
    while !signals.stop_requested() {
        let mut fds: Vec<PollFd<'_>> = listeners
            .iter()
            .map(|l| PollFd::new(l, PollFlags::IN))
            .collect();
        fds.push(PollFd::from_borrowed_fd(signals.fd(), PollFlags::IN));
        if let Some((l, _)) = &side {
            fds.push(PollFd::new(*l, PollFlags::IN));
        }
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        signals.drain();
        on_wake();
        if let Some((l, on_side)) = &mut side {
            while let Ok((stream, _)) = l.accept() {
                on_side(stream);
            }
        }
        for l in listeners {
            // A bounded burst, and none once a stop is asked for: under a
            // connect flood the queue never empties, and the loop must still
            // see the signal. Clients left queued wake `poll` again.
            for _ in 0..ACCEPT_BURST {
                if signals.stop_requested() {
                    break;
                }
                match l.accept() {
                    Ok((stream, peer)) => {
                        if let Some(ticket) = admission.admit(peer) {
                            on_accept(stream, peer, ticket);
                        }
                    }
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
