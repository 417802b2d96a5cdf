//! # `--model poll`: one thread, non-blocking sockets, a readiness loop
//!
//! **How it works.** Every socket is non-blocking and registered with epoll
//! (through `mio`). One thread asks the kernel "which sockets are ready?",
//! then for each ready one does only what can be done without waiting: read
//! what arrived, answer the complete requests, write what the socket
//! accepts. A connection's progress lives in its [`Conn`] record (pending
//! output, the slice being streamed, leftover input), not on a stack, so a
//! large slice is produced chunk by chunk as the socket becomes writable and
//! never blocks the other clients.
//!
//! **What it costs.** No thread or stack per client: an idle connection is
//! a small record (its buffers are freed while it is idle), so tens of
//! thousands fit in a few tens of MiB. No context switches between clients.
//!
//! **Where it breaks.** Everything runs on one core: CPU-heavy work (base64
//! of large slices) on behalf of one client delays all others, and the
//! server cannot use a second core. Every step must be written as an
//! explicit state machine, which is what async/await automates.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::admission::{Admission, Ticket};
use crate::blocking::write_error;
use crate::body::SliceBody;
use crate::config::{Config, DRAIN_BYTES, DRAIN_TIME, READ_BUF, WRITE_BATCH};
use crate::connection::{ConnStats, End};
use crate::session::{Outcome, Session};
use crate::signals::Signals;

const SIGNALS: Token = Token(usize::MAX);
/// Listener tokens count down from here; connections count up from 0.
const LISTENER_BASE: usize = usize::MAX - 1;

/// How often timeouts are checked.
const TICK: Duration = Duration::from_millis(500);

/// Buffers above this size are released when a connection goes idle.
const KEEP_CAPACITY: usize = 4096;

/// One connection's state between readiness events.
struct Conn {
    stream: TcpStream,
    session: Session,
    stats: ConnStats,
    /// Input read but not yet answered (kept while output is pending).
    pending: Vec<u8>,
    out: Vec<u8>,
    written: usize,
    body: Option<SliceBody>,
    /// Set after quit or a fatal error: close once the output is sent.
    closing: Option<End>,
    /// Set once the write side is shut down: drain input until then.
    draining_until: Option<Instant>,
    drained: usize,
    last_read: Instant,
    last_write: Instant,
    _ticket: Ticket,
}

enum Step {
    /// Wait for the socket to become readable (and writable if asked).
    Wait { writable: bool },
    Done(End),
}

pub fn serve(config: Config, listeners: Vec<TcpListener>) -> io::Result<()> {
    let signals = Signals::install()?;
    let mut poll = Poll::new()?;
    let mut listeners: Vec<mio::net::TcpListener> = listeners
        .into_iter()
        .map(|l| {
            l.set_nonblocking(true)?;
            Ok(mio::net::TcpListener::from_std(l))
        })
        .collect::<io::Result<_>>()?;
    for (i, l) in listeners.iter_mut().enumerate() {
        poll.registry().register(l, Token(LISTENER_BASE - i), Interest::READABLE)?;
    }
    let signal_fd = std::os::fd::AsRawFd::as_raw_fd(&signals.fd());
    poll.registry().register(&mut SourceFd(&signal_fd), SIGNALS, Interest::READABLE)?;

    let mut conns: Slab<Conn> = Slab::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; READ_BUF];
    let admission = Admission::new(config.max_connections, config.max_per_ip);
    let mut stop_deadline: Option<Instant> = None;
    let mut last_sweep = Instant::now();

    loop {
        if let Some(deadline) = stop_deadline {
            if conns.is_empty() || Instant::now() >= deadline {
                break;
            }
        }
        let timeout = if conns.is_empty() && stop_deadline.is_none() { None } else { Some(TICK) };
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            match event.token() {
                SIGNALS => {
                    signals.drain();
                    if signals.stop_requested() && stop_deadline.is_none() {
                        stop_deadline = Some(Instant::now() + config.shutdown_grace);
                        for l in &mut listeners {
                            let _ = poll.registry().deregister(l);
                        }
                        // Idle connections end now; answers in flight finish.
                        let idle: Vec<usize> = conns
                            .iter()
                            .filter(|(_, c)| c.is_idle())
                            .map(|(k, _)| k)
                            .collect();
                        for key in idle {
                            finish(&mut poll, &mut conns, key, End::Shutdown);
                        }
                    }
                }
                Token(t) if t > LISTENER_BASE - listeners.len() && stop_deadline.is_none() => {
                    let listener = &listeners[LISTENER_BASE - t];
                    accept_all(listener, &mut poll, &mut conns, &config, &admission);
                }
                Token(key) => {
                    if conns.contains(key) {
                        drive(&mut poll, &mut conns, key, &mut buf);
                    }
                    if stop_deadline.is_some() && conns.get(key).is_some_and(Conn::is_idle) {
                        finish(&mut poll, &mut conns, key, End::Shutdown);
                    }
                }
            }
        }
        if last_sweep.elapsed() >= TICK {
            last_sweep = Instant::now();
            sweep(&mut poll, &mut conns, &config, &mut buf);
        }
    }
    tracing::info!(unfinished = conns.len(), "shut down");
    Ok(())
}

fn accept_all(listener: &mio::net::TcpListener, poll: &mut Poll, conns: &mut Slab<Conn>, config: &Config, admission: &Arc<Admission>) {
    loop {
        let (mut stream, peer) = match listener.accept() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                return;
            }
        };
        let Some(ticket) = admission.admit(peer) else { continue };
        let _ = stream.set_nodelay(true);
        let entry = conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = poll.registry().register(&mut stream, Token(key), Interest::READABLE) {
            tracing::warn!(error = %e, "cannot register a connection");
            continue;
        }
        let now = Instant::now();
        entry.insert(Conn {
            stream,
            session: Session::new(&config.session),
            stats: ConnStats::new(Some(peer)),
            pending: Vec::new(),
            out: Vec::new(),
            written: 0,
            body: None,
            closing: None,
            draining_until: None,
            drained: 0,
            last_read: now,
            last_write: now,
            _ticket: ticket,
        });
    }
}

/// Makes all the progress a connection can make without waiting.
fn drive(poll: &mut Poll, conns: &mut Slab<Conn>, key: usize, buf: &mut [u8]) {
    let step = match conns.get_mut(key) {
        Some(conn) => conn.advance(buf),
        None => return,
    };
    match step {
        Step::Done(end) => finish(poll, conns, key, end),
        Step::Wait { writable } => {
            let interest = if writable { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            let conn = &mut conns[key];
            if let Err(e) = poll.registry().reregister(&mut conn.stream, Token(key), interest) {
                finish(poll, conns, key, End::Error(e.to_string()));
            }
        }
    }
}

fn finish(poll: &mut Poll, conns: &mut Slab<Conn>, key: usize, end: End) {
    let mut conn = conns.remove(key);
    let _ = poll.registry().deregister(&mut conn.stream);
    conn.stats.finish(conn.session.requests, &end);
}

/// Closes connections whose idle, write or drain time is up.
fn sweep(poll: &mut Poll, conns: &mut Slab<Conn>, config: &Config, buf: &mut [u8]) {
    let now = Instant::now();
    let expired: Vec<(usize, End)> = conns
        .iter()
        .filter_map(|(key, c)| {
            if let Some(until) = c.draining_until {
                (now >= until).then(|| (key, c.closing.clone().unwrap_or(End::ClientClosed)))
            } else if c.has_output() {
                (now.duration_since(c.last_write) >= config.write_timeout).then_some((key, End::WriteTimeout))
            } else {
                (now.duration_since(c.last_read) >= config.idle_timeout).then_some((key, End::IdleTimeout))
            }
        })
        .collect();
    for (key, end) in expired {
        finish(poll, conns, key, end);
    }
    let _ = buf;
}

impl Conn {
    fn has_output(&self) -> bool {
        self.written < self.out.len() || self.body.is_some()
    }

    /// Nothing in flight: no output, no partial request.
    fn is_idle(&self) -> bool {
        !self.has_output() && self.pending.is_empty() && self.closing.is_none() && !self.session.in_request()
    }

    fn advance(&mut self, buf: &mut [u8]) -> Step {
        match self.advance_inner(buf) {
            Ok(step) => step,
            Err(e) => Step::Done(write_error(e)),
        }
    }

    fn advance_inner(&mut self, buf: &mut [u8]) -> io::Result<Step> {
        loop {
            if self.draining_until.is_some() {
                return Ok(self.drain(buf));
            }
            // 1. Send what is pending.
            while self.written < self.out.len() {
                match self.stream.write(&self.out[self.written..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        self.written += n;
                        self.stats.bytes_sent += n as u64;
                        self.last_write = Instant::now();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Wait { writable: true }),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.out.clear();
            self.written = 0;
            // 2. Produce the next piece of the slice being streamed.
            if let Some(body) = &mut self.body {
                if body.can_sendfile() {
                    while !body.is_complete() {
                        match body.send_raw(&self.stream) {
                            Ok(n) => {
                                self.stats.bytes_sent += n as u64;
                                self.last_write = Instant::now();
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Wait { writable: true }),
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    }
                    self.body = None;
                } else if body.fill(&mut self.out)? {
                    self.body = None;
                }
                continue;
            }
            // 3. After quit or a fatal error: shut down writing, then drain.
            if self.closing.is_some() {
                let _ = self.stream.shutdown(Shutdown::Write);
                self.draining_until = Some(Instant::now() + DRAIN_TIME);
                continue;
            }
            // 4. Answer the input already read.
            if !self.pending.is_empty() {
                let input = std::mem::take(&mut self.pending);
                let used = self.answer(&input);
                if used < input.len() {
                    self.pending = input[used..].to_vec();
                }
                continue;
            }
            // 5. Nothing left to do: release buffers while idle, then read.
            if self.out.capacity() > KEEP_CAPACITY {
                self.out = Vec::new();
            }
            match self.stream.read(buf) {
                Ok(0) => return Ok(Step::Done(End::ClientClosed)),
                Ok(n) => {
                    self.last_read = Instant::now();
                    let used = self.answer(&buf[..n]);
                    if used < n {
                        self.pending = buf[used..n].to_vec();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Wait { writable: false }),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Answers complete requests in `input` until output must be sent
    /// first; returns the bytes consumed.
    fn answer(&mut self, input: &[u8]) -> usize {
        let mut used = 0;
        while used < input.len() {
            let (n, outcome) = self.session.on_input(&input[used..], &mut self.out);
            used += n;
            match outcome {
                Outcome::NeedInput => {}
                Outcome::Replied => {
                    if self.out.len() >= WRITE_BATCH {
                        return used;
                    }
                }
                Outcome::Stream(body) => {
                    self.body = Some(body);
                    return used;
                }
                Outcome::Close(reason) => {
                    self.closing = Some(End::Closed(reason));
                    return input.len();
                }
            }
        }
        used
    }

    /// Reads and discards input after the final answer, until EOF, the
    /// drain limit or the sweep's deadline.
    fn drain(&mut self, buf: &mut [u8]) -> Step {
        let end = || self.closing.clone().unwrap_or(End::ClientClosed);
        loop {
            match self.stream.read(buf) {
                Ok(0) => return Step::Done(end()),
                Ok(n) => {
                    self.drained += n;
                    if self.drained >= DRAIN_BYTES {
                        return Step::Done(end());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait { writable: false },
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Done(end()),
            }
        }
    }
}
