//! What the blocking drivers (`threads`, `pool`, `fork`) share: serving one
//! connection on a blocking socket, and an accept loop that wakes on signals.
//!
//! Timeouts use the socket's own `SO_RCVTIMEO` (idle timeout) and
//! `SO_SNDTIMEO` (write timeout), so a blocked thread or process always
//! gets its time back.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Instant;

use rustix::event::{poll, PollFd, PollFlags};

use crate::admission::{Admission, Ticket};
use crate::body::SliceBody;
use crate::config::{Config, ACCEPT_BURST, DRAIN_BYTES, DRAIN_TIME, READ_BUF, WRITE_BATCH};
use crate::connection::{ConnStats, End};
use crate::session::{Outcome, Session};
use crate::signals::Signals;

/// Serves one connection until it ends; logs its summary line. The caller
/// closes the socket (after forgetting it wherever it was registered).
pub fn serve_connection(stream: &mut TcpStream, config: &Config) -> End {
    let mut stats = ConnStats::new(stream.peer_addr().ok());
    let mut session = Session::new(&config.session);
    let end = match setup(stream, config) {
        Ok(()) => run(stream, &mut session, &mut stats),
        Err(e) => End::Error(e.to_string()),
    };
    stats.finish(session.requests, &end);
    end
}

fn setup(stream: &TcpStream, config: &Config) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(config.idle_timeout))?;
    stream.set_write_timeout(Some(config.write_timeout))?;
    Ok(())
}

fn run(stream: &mut TcpStream, session: &mut Session, stats: &mut ConnStats) -> End {
    let mut buf = vec![0u8; READ_BUF];
    let mut out = Vec::new();
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return End::ClientClosed,
            Ok(n) => n,
            Err(e) if is_timeout(&e) => return End::IdleTimeout,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return write_error(e),
        };
        let mut input = &buf[..n];
        while !input.is_empty() {
            let (used, outcome) = session.on_input(input, &mut out);
            input = &input[used..];
            let result = match outcome {
                Outcome::NeedInput => Ok(()),
                Outcome::Replied if out.len() < WRITE_BATCH => Ok(()),
                Outcome::Replied => flush(stream, &mut out, stats),
                Outcome::Stream(body) => flush(stream, &mut out, stats)
                    .and_then(|()| stream_body(stream, body, &mut out, stats)),
                Outcome::Close(reason) => {
                    return match flush(stream, &mut out, stats) {
                        Ok(()) => {
                            close_gracefully(stream);
                            End::Closed(reason)
                        }
                        Err(e) => write_error(e),
                    };
                }
            };
            if let Err(e) = result {
                return write_error(e);
            }
        }
        if let Err(e) = flush(stream, &mut out, stats) {
            return write_error(e);
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Maps an error met while answering to how the connection ended.
pub fn write_error(e: io::Error) -> End {
    match e.kind() {
        k if is_timeout(&e) || k == io::ErrorKind::WriteZero => End::WriteTimeout,
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => End::ClientClosed,
        _ => End::Error(e.to_string()),
    }
}

fn flush(stream: &mut TcpStream, out: &mut Vec<u8>, stats: &mut ConnStats) -> io::Result<()> {
    if !out.is_empty() {
        stream.write_all(out)?;
        stats.bytes_sent += out.len() as u64;
        out.clear();
    }
    Ok(())
}

fn stream_body(
    stream: &mut TcpStream,
    mut body: SliceBody,
    out: &mut Vec<u8>,
    stats: &mut ConnStats,
) -> io::Result<()> {
    if body.can_sendfile() {
        while !body.is_complete() {
            match body.send_raw(stream.as_fd()) {
                Ok(n) => stats.bytes_sent += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        return Ok(());
    }
    loop {
        let done = body.fill(out)?;
        flush(stream, out, stats)?;
        if done {
            return Ok(());
        }
    }
}

/// After the last answer: shut down writing, so the client sees EOF at once,
/// then read and discard what the client already sent (briefly), so that
/// closing does not turn into a reset that destroys the answer in flight.
pub fn close_gracefully(stream: &mut TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + DRAIN_TIME;
    let mut buf = [0u8; 16 * 1024];
    let mut drained = 0;
    while drained < DRAIN_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Accepts connections on every listener until SIGINT/SIGTERM, handing each
/// admitted one to `on_accept` (the others are closed at once, see
/// [`Admission`]). `on_wake` runs after every wake-up (the fork driver reaps
/// children there).
pub fn accept_loop(
    listeners: &[TcpListener],
    signals: &Signals,
    admission: &Arc<Admission>,
    mut on_accept: impl FnMut(TcpStream, SocketAddr, Ticket),
    mut on_wake: impl FnMut(),
) -> io::Result<()> {
    for l in listeners {
        l.set_nonblocking(true)?;
    }
    let mut accept_warned: Option<Instant> = None;
    while !signals.stop_requested() {
        let mut fds: Vec<PollFd<'_>> = listeners
            .iter()
            .map(|l| PollFd::new(l, PollFlags::IN))
            .collect();
        fds.push(PollFd::from_borrowed_fd(signals.fd(), PollFlags::IN));
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        signals.drain();
        on_wake();
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
                        // try again shortly instead of spinning; say so at
                        // most once a second.
                        if accept_warned.is_none_or(|t: Instant| t.elapsed().as_secs() >= 1) {
                            tracing::warn!(error = %e, "accept failed, retrying");
                            accept_warned = Some(Instant::now());
                        }
                        std::thread::sleep(std::time::Duration::from_millis(10));
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}
