//! `--hold N`: open N connections, send nothing for a while, then check
//! that every one of them still answers `quit` with `0 OK` and a close.
//! With TLS, each connection's handshake is done before it is held.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hftp_proto::reply::{Expect, Reply, ReplyDecoder};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;

use crate::engine::MAX_CONNECTING;
use crate::stats::Stats;
use crate::wire::Wire;

/// What `--hold` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HoldReport {
    /// Connections asked for.
    pub conns: u64,
    /// Connections that were established.
    pub connected: u64,
    /// Seconds until the last one was established (the client side of the
    /// handshake: the kernel's backlog, then the server's accept loop).
    pub connect_s: f64,
    /// Seconds the connections were held idle.
    pub held_s: f64,
    /// Connections the server closed (or sent something on) while idle.
    pub lost_while_idle: u64,
    /// Connections that answered `quit` with `0 OK` and then closed.
    pub answered_quit: u64,
    /// Seconds from sending the `quit`s to the last answer.
    pub quit_s: f64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum St {
    Connecting,
    /// TLS: connected, the handshake under way.
    Handshaking,
    Open,
    /// `quit` sent.
    Quitting,
    /// `0 OK` received, waiting for the close.
    Answered,
    Done,
    Dead,
}

struct Held {
    stream: Option<Wire>,
    st: St,
    decoder: ReplyDecoder,
    out_pos: usize,
}

const QUIT: &[u8] = b"quit\r\n";

/// Runs the hold test on one thread. `between` is called once the
/// connections are open and idle, just before the `quit`s are sent (the
/// caller samples the server's memory there). With `tls`, every
/// connection speaks TLS as that endpoint says.
#[allow(clippy::too_many_arguments)]
pub fn hold(
    addr: SocketAddr,
    tls: Option<&hftp_client::Endpoint>,
    n: usize,
    hold_for: Duration,
    timeout: Duration,
    stats: &mut Stats,
    mut on_held: impl FnMut(),
) -> io::Result<HoldReport> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let mut conns: Vec<Held> = Vec::with_capacity(n);
    let mut report = HoldReport {
        conns: n as u64,
        ..HoldReport::default()
    };
    let mut buf = vec![0u8; 4096];
    let mut sink = Vec::new();

    // Connect, at most MAX_CONNECTING at once.
    let t0 = Instant::now();
    let mut connecting = 0usize;
    let mut last_progress = Instant::now();
    loop {
        while connecting < MAX_CONNECTING && conns.len() < n {
            let i = conns.len();
            let mut held = Held {
                stream: None,
                st: St::Dead,
                decoder: ReplyDecoder::new(Expect::Quit),
                out_pos: 0,
            };
            let session = match tls.map(hftp_client::Endpoint::tls_session).transpose() {
                Ok(session) => session.flatten(),
                Err(e) => {
                    stats.error("tls", || e.to_string());
                    conns.push(held);
                    continue;
                }
            };
            match TcpStream::connect(addr) {
                Ok(s) => {
                    let mut s = Wire::new(s, session);
                    poll.registry().register(
                        s.tcp_mut(),
                        Token(i),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    held.stream = Some(s);
                    held.st = St::Connecting;
                    connecting += 1;
                }
                Err(e) => stats.error("connect", || e.to_string()),
            }
            conns.push(held);
        }
        if connecting == 0 && conns.len() == n {
            break;
        }
        if last_progress.elapsed() > timeout {
            stats.error("timeout", || {
                format!("{connecting} connection(s) still connecting after {timeout:?}")
            });
            break;
        }
        poll_retry(&mut poll, &mut events, Some(Duration::from_millis(50)))?;
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if !matches!(c.st, St::Connecting | St::Handshaking) {
                continue;
            }
            let Some(s) = c.stream.as_mut() else { continue };
            let result = if c.st == St::Handshaking {
                s.handshake().map_err(|e| ("tls", tls_error(tls, e)))
            } else {
                let tcp = s.tcp();
                match tcp.take_error() {
                    Ok(Some(e)) | Err(e) => Err(("connect", e.to_string())),
                    Ok(None) => match tcp.peer_addr() {
                        Ok(_) if s.handshaking() => {
                            c.st = St::Handshaking;
                            s.handshake().map_err(|e| ("tls", tls_error(tls, e)))
                        }
                        Ok(_) => Ok(true),
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                        Err(e) => Err(("connect", e.to_string())),
                    },
                }
            };
            match result {
                Ok(false) => {
                    last_progress = Instant::now();
                    continue;
                }
                Ok(true) => {
                    c.st = St::Open;
                    report.connected += 1;
                }
                Err((kind, e)) => {
                    stats.error(kind, || e);
                    c.st = St::Dead;
                    c.stream = None;
                }
            }
            connecting -= 1;
            last_progress = Instant::now();
        }
    }
    report.connect_s = t0.elapsed().as_secs_f64();

    // Hold: anything arriving now is a loss (the server closed or spoke).
    let t1 = Instant::now();
    let until = t1 + hold_for;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        poll_retry(&mut poll, &mut events, Some(left))?;
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if c.st != St::Open || !(ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                continue;
            }
            let Some(s) = c.stream.as_mut() else { continue };
            let what = match s.read(&mut buf) {
                Ok(0) => "the server closed an idle connection".to_string(),
                Ok(k) => format!(
                    "the server sent {:?} unasked",
                    buf[..k].escape_ascii().to_string()
                ),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => format!("read: {e}"),
            };
            stats.error("lost while idle", || what);
            report.lost_while_idle += 1;
            c.st = St::Dead;
            c.stream = None;
        }
    }
    report.held_s = t1.elapsed().as_secs_f64();
    on_held();

    // Quit every connection and wait for `0 OK` and the close.
    let t2 = Instant::now();
    let mut pending = 0usize;
    for c in conns.iter_mut().filter(|c| c.st == St::Open) {
        c.st = St::Quitting;
        write_quit(c, stats);
        if c.st != St::Dead {
            pending += 1;
        }
    }
    let mut last_progress = Instant::now();
    while pending > 0 {
        if last_progress.elapsed() > timeout {
            stats.error("timeout", || {
                format!("{pending} connection(s) did not answer quit within {timeout:?}")
            });
            break;
        }
        poll_retry(&mut poll, &mut events, Some(Duration::from_millis(50)))?;
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if !matches!(c.st, St::Quitting | St::Answered) {
                continue;
            }
            if ev.is_writable() {
                write_quit(c, stats);
            }
            if c.st != St::Dead && (ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                read_quit(c, &mut buf, &mut sink, stats);
            }
            if matches!(c.st, St::Done | St::Dead) {
                if c.st == St::Done {
                    report.answered_quit += 1;
                }
                if let Some(mut s) = c.stream.take() {
                    let _ = poll.registry().deregister(s.tcp_mut());
                }
                pending -= 1;
                last_progress = Instant::now();
            }
        }
    }
    report.quit_s = t2.elapsed().as_secs_f64();
    stats.tx += report.connected * QUIT.len() as u64;
    Ok(report)
}

fn poll_retry(poll: &mut Poll, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
    match poll.poll(events, timeout) {
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        other => other,
    }
}

/// A TLS failure, in a line.
fn tls_error(tls: Option<&hftp_client::Endpoint>, err: io::Error) -> String {
    let identity = tls
        .and_then(|e| e.tls.as_ref())
        .is_some_and(|t| t.identity().is_some());
    let peer = tls.map(ToString::to_string).unwrap_or_default();
    hftp_client::tls::error_of(&peer, err, true, identity).to_string()
}

fn write_quit(c: &mut Held, stats: &mut Stats) {
    let Some(s) = c.stream.as_mut() else { return };
    if let Err(e) = s.push() {
        stats.error("io", || format!("write quit: {e}"));
        c.st = St::Dead;
        return;
    }
    while c.out_pos < QUIT.len() {
        match s.write(&QUIT[c.out_pos..]) {
            Ok(k) => c.out_pos += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                stats.error("io", || format!("write quit: {e}"));
                c.st = St::Dead;
                return;
            }
        }
    }
}

fn read_quit(c: &mut Held, buf: &mut [u8], sink: &mut Vec<u8>, stats: &mut Stats) {
    let Some(s) = c.stream.as_mut() else { return };
    loop {
        let k = match s.read(buf) {
            Ok(0) => {
                if c.st == St::Answered {
                    c.st = St::Done;
                } else {
                    let err = c.decoder.eof();
                    stats.error("truncated", || err.to_string());
                    c.st = St::Dead;
                }
                return;
            }
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                stats.error("io", || format!("read: {e}"));
                c.st = St::Dead;
                return;
            }
        };
        stats.rx += k as u64;
        if c.st == St::Answered {
            stats.error("protocol", || "bytes after the answer to quit".into());
            c.st = St::Dead;
            return;
        }
        match c.decoder.feed(&buf[..k], sink) {
            Ok((used, Some(reply))) => {
                if reply != Reply::Ok {
                    stats.error("protocol", || format!("quit answered {reply:?}"));
                    c.st = St::Dead;
                    return;
                }
                if used < k {
                    stats.error("protocol", || "bytes after the answer to quit".into());
                    c.st = St::Dead;
                    return;
                }
                c.st = St::Answered;
                stats.completed += 1;
            }
            Ok((_, None)) => {}
            Err(e) => {
                stats.error("protocol", || e.to_string());
                c.st = St::Dead;
                return;
            }
        }
    }
}
