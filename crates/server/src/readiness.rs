//! A connection driven by readiness: the state machine that the `poll`
//! and `pool` drivers share.
//!
//! A [`Conn`] never blocks: [`Conn::advance`] does all the work its socket
//! allows (write pending output, stream the next piece of a slice, answer
//! complete requests, read) and says what to wait for next. Its progress
//! lives in the record, not on a stack, so any thread may advance it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Instant;

use mio::net::TcpStream;

use crate::admission::Ticket;
use crate::blocking::write_error;
use crate::body::SliceBody;
use crate::config::{Config, DRAIN_BYTES, DRAIN_TIME, WRITE_BATCH};
use crate::connection::{ConnStats, End};
use crate::session::{Outcome, Session};

/// Buffers above this size are released when a connection goes idle.
const KEEP_CAPACITY: usize = 4096;

/// One connection's state between readiness events.
pub struct Conn {
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

pub enum Step {
    /// Wait for the socket to become readable (and writable if asked).
    Wait {
        writable: bool,
    },
    /// More can be done at once, but this turn's budget is spent: advance
    /// the connection again after the others had their turn.
    Again,
    Done(End),
}

/// Steps (a chunk written, a `sendfile`, a read) one connection may take
/// per turn, about 2 MiB: a fast client must not starve the others, and the
/// readiness loop never sees an event for work left undone (edge-triggered),
/// hence [`Step::Again`].
const TURN_BUDGET: u32 = 32;

impl Conn {
    pub fn new(stream: TcpStream, peer: SocketAddr, config: &Config, ticket: Ticket) -> Conn {
        let _ = stream.set_nodelay(true);
        let now = Instant::now();
        Conn {
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
        }
    }

    /// Who the client is and what the connection is doing, for the logs.
    pub fn describe(&self) -> String {
        let peer = self
            .stats
            .peer
            .map_or_else(|| "?".to_string(), |p| p.to_string());
        let state = if self.draining_until.is_some() {
            "closing"
        } else if self.has_output() {
            "answering"
        } else if !self.pending.is_empty() {
            "mid-request"
        } else {
            "idle"
        };
        format!("{peer} {state}")
    }

    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Logs the connection's summary line.
    pub fn finish(self, end: &End) {
        self.stats.finish(self.session.requests, end);
    }

    /// Whether a timeout has run out: drain time, write timeout, or idle.
    pub fn expired(&self, now: Instant, config: &Config) -> Option<End> {
        if let Some(until) = self.draining_until {
            (now >= until).then(|| self.closing.clone().unwrap_or(End::ClientClosed))
        } else {
            // Both timeouts count from the last progress either way: idle
            // starts when the last answer was sent, not when its request came.
            let quiet = now.duration_since(self.last_read.max(self.last_write));
            if self.has_output() {
                (quiet >= config.write_timeout).then_some(End::WriteTimeout)
            } else {
                (quiet >= config.idle_timeout).then_some(End::IdleTimeout)
            }
        }
    }

    fn has_output(&self) -> bool {
        self.written < self.out.len() || self.body.is_some()
    }

    /// Nothing in flight: no output, no partial request.
    /// Nothing being answered: waiting for (the rest of) a request. Such a
    /// connection is closed at shutdown, as in the other models.
    pub fn is_idle(&self) -> bool {
        !self.has_output()
            && self.pending.is_empty()
            && self.closing.is_none()
            && self.draining_until.is_none()
    }

    pub fn advance(&mut self, buf: &mut [u8]) -> Step {
        match self.advance_inner(buf) {
            Ok(step) => step,
            Err(e) => Step::Done(write_error(e)),
        }
    }

    fn advance_inner(&mut self, buf: &mut [u8]) -> io::Result<Step> {
        let mut budget = TURN_BUDGET;
        loop {
            if budget == 0 {
                return Ok(Step::Again);
            }
            budget -= 1;
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
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(Step::Wait { writable: true })
                    }
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
                        if budget == 0 {
                            return Ok(Step::Again);
                        }
                        budget -= 1;
                        match body.send_raw(&self.stream) {
                            Ok(n) => {
                                self.stats.bytes_sent += n as u64;
                                self.last_write = Instant::now();
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                return Ok(Step::Wait { writable: true })
                            }
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
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Step::Wait { writable: false })
                }
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
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Step::Wait { writable: false }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Done(end()),
            }
        }
    }
}
