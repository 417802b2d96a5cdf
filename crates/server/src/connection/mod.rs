//! One client connection as a state machine without I/O, owned by every
//! driver (the shape of `quinn-proto`'s connection).
//!
//! **The connection's job.** Everything between the bytes and the socket
//! calls: feeding input to the [`Session`], batching answers, streaming a
//! body (a slice, or a listing page by page), running storage as a step,
//! the close after `quit` or a fatal error (flush, shut down writing, drain
//! input briefly, close), the turn budget that keeps one fast client from
//! starving the others, and the idle, write and drain deadlines, computed
//! from a `now` passed in.
//!
//! **The driver's job.** Moving bytes and time: it asks [`Connection::poll`]
//! what to do next and does exactly that, then reports back:
//!
//! | [`Action`] | the driver | then calls |
//! |---|---|---|
//! | `Send(bytes)` | writes what the socket takes | [`Connection::sent`] |
//! | `SendFile{..}` | `sendfile` | [`Connection::sent`] |
//! | `SplicePipe{..}` | `splice` from the pipe to the socket | [`Connection::sent`] |
//! | `Storage(step)` | runs the step (inline, awaited or offloaded) | [`Connection::storage_done`] |
//! | `ShutdownWrite` | `shutdown(SHUT_WR)` | [`Connection::write_shut`] |
//! | `Receive` | reads | [`Connection::handle_input`] / [`Connection::handle_eof`] |
//! | `Yield` | lets other clients run, then polls again | |
//! | `Sleep` | waits until [`Connection::poll_timeout`] (`--limit-rate`) | [`Connection::handle_timeout`] |
//! | `Park` | waits for the storage reply | |
//! | `Close(end)` | closes the socket, [`Connection::finish`] | |
//!
//! When the driver has to wait for the socket (a read or write would
//! block), the turn is over: it calls [`Connection::new_turn`] before it
//! polls again, so the turn budget counts work done without waiting.
//!
//! A socket error goes to [`Connection::io_failed`]; when the deadline of
//! [`Connection::poll_timeout`] passes, [`Connection::handle_timeout`].
//! Nothing here reads the clock, so the whole logic can be driven by a
//! test with a virtual clock and no socket (`tests/connection.rs`).
//!
//! **Bytes stay put until they are reported.** The bytes of a `Send` (and
//! the descriptor of a `SendFile` or a `SplicePipe`) stay valid, unchanged and at the same
//! address until the driver reports on them with [`Connection::sent`] or
//! [`Connection::io_failed`], or drops the connection. Meanwhile the driver
//! may call [`Connection::stop`], [`Connection::handle_timeout`],
//! [`Connection::poll_timeout`], [`Connection::is_idle`],
//! [`Connection::describe`] and [`Connection::ended`]: none of them touches
//! the output buffers. A completion-based driver (`--model uring`) relies on
//! this: it hands the kernel a pointer to the bytes and learns only later
//! how many went out.

mod config;
mod end;
mod throttle;

use std::io;
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

pub use config::ConnectionConfig;
pub use end::{ConnStats, End};

use hftp_proto::response::base64_len;
use hftp_proto::SliceMode;

use crate::body::{Body, BodyNext};
use crate::metrics::Metrics;
use crate::session::{CloseReason, Outcome, Session};
use crate::storage::{StorageReply, StorageStep};
use crate::transport::tls::{Received, TlsLayer};
use throttle::Throttle;

/// Buffers above this size are released when a connection goes idle.
const KEEP_CAPACITY: usize = 4096;

/// How long a closing connection's unread input is drained so that the
/// final answer is not destroyed by a reset.
pub const DRAIN_TIME: Duration = Duration::from_millis(500);

/// The most input drained on close.
pub const DRAIN_BYTES: usize = 64 << 20;

/// Actions one connection may take per turn (a chunk written, a
/// `sendfile` or `splice`, a read, a storage step): a fast client must not
/// starve the others, hence [`Action::Yield`]. In bytes that is about
/// 2 MiB of base64 (written in chunks of 64 KiB; 8 MiB for one of the few
/// bodies with wide blocks, [`crate::wide`]) and
/// up to 32 MiB of a raw slice (a `sendfile` or `splice` moves up to 1 MiB,
/// and the kernel copies nothing through user space): a few milliseconds
/// either way. A turn ends when the driver
/// waits for the socket, and the next begins with [`Connection::new_turn`]:
/// a client that waits for each answer never yields, only one whose work
/// is ready without waiting does.
const TURN_BUDGET: u32 = 32;

/// What the driver must do next; see the table in the module docs.
pub enum Action<'a> {
    Send(&'a [u8]),
    SendFile {
        fd: BorrowedFd<'a>,
        offset: u64,
        len: usize,
    },
    /// Splice `len` bytes (or what the socket takes) from the read end of
    /// a pipe, which holds them, to the socket.
    SplicePipe {
        pipe: BorrowedFd<'a>,
        len: usize,
    },
    Storage(StorageStep),
    ShutdownWrite,
    Receive,
    Yield,
    /// Nothing to do before [`Connection::poll_timeout`]: the body's rate
    /// limit (`--limit-rate`) is spent for now.
    Sleep,
    Park,
    Close(End),
}

/// The same, without borrows, while the state machine moves.
enum Next {
    SendOut,
    SendBlock,
    SendFile,
    SplicePipe,
    Storage(StorageStep),
    ShutdownWrite,
    Receive,
    Yield,
    Sleep,
    Park,
    Close(End),
}

/// Who waits for the outstanding storage step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiter {
    Session,
    Body,
}

#[derive(Debug)]
struct Drain {
    until: Instant,
    drained: usize,
}

/// The state of one client connection.
pub struct Connection {
    session: Session,
    idle_timeout: Duration,
    write_timeout: Duration,
    write_batch: usize,
    metrics: Option<&'static Metrics>,
    /// Input read but not yet answered (while output or storage is pending).
    input: Vec<u8>,
    out: Vec<u8>,
    written: usize,
    body: Option<Body>,
    /// A step to hand to the driver, and who waits for its reply.
    step: Option<StorageStep>,
    waiter: Option<Waiter>,
    /// The backend may block: send pending answers before a step.
    flush_before_storage: bool,
    /// Set after quit or a fatal error: close once the output is sent.
    closing: Option<CloseReason>,
    /// Set once the write side is shut down.
    drain: Option<Drain>,
    done: Option<End>,
    stopping: bool,
    /// The last read, write or storage reply: deadlines count from here.
    last_progress: Instant,
    /// When the request now waiting for storage was read (for the metrics).
    request_at: Instant,
    /// The slice being streamed, for the metrics: mode, wire bytes, start.
    slice: Option<(SliceMode, u64, Instant)>,
    budget: u32,
    stats: ConnStats,
    /// `--tls-cert`: the bytes on the socket are TLS records (see
    /// [`TlsLayer`]); boxed, so that a plain connection stays small.
    tls: Option<Box<Tls>>,
    /// `--limit-rate`, and when the connection sleeps until.
    throttle: Option<Throttle>,
    sleeping: Option<Instant>,
    /// The latest time a driver gave (the throttle's clock).
    now: Instant,
}

/// A connection's TLS layer and what the connection needs around it.
struct Tls {
    layer: TlsLayer,
    /// The handshake must be complete by then.
    handshake_until: Instant,
    /// A fatal TLS error: its alert goes out, then the connection ends so.
    failed: Option<End>,
    /// The client sent close_notify: its end of input, once what came
    /// before it is answered.
    peer_closed: bool,
}

impl Connection {
    pub fn new(config: &ConnectionConfig, peer: Option<SocketAddr>, now: Instant) -> Connection {
        Connection {
            session: Session::new(config.max_line),
            idle_timeout: config.idle_timeout,
            write_timeout: config.write_timeout,
            write_batch: config.write_batch,
            metrics: config.metrics,
            input: Vec::new(),
            out: Vec::new(),
            written: 0,
            body: None,
            step: None,
            waiter: None,
            flush_before_storage: config.flush_before_storage,
            closing: None,
            drain: None,
            done: None,
            stopping: false,
            last_progress: now,
            request_at: now,
            slice: None,
            budget: TURN_BUDGET,
            stats: ConnStats::new(peer, now),
            tls: None,
            throttle: config.limit_rate.map(|rate| Throttle::new(rate, now)),
            sleeping: None,
            now,
        }
    }

    /// Puts TLS between the socket and this connection (`--tls-cert`): the
    /// handshake must be complete within `handshake_timeout` of `now`.
    pub fn tls(
        mut self,
        layer: Result<TlsLayer, String>,
        handshake_timeout: Duration,
        now: Instant,
    ) -> Connection {
        match layer {
            Ok(layer) => {
                self.tls = Some(Box::new(Tls {
                    layer,
                    handshake_until: now + handshake_timeout,
                    failed: None,
                    peer_closed: false,
                }))
            }
            Err(e) => self.done = Some(End::Error(format!("cannot start TLS: {e}"))),
        }
        self
    }

    /// Notes that the connection came through `proxy` (`--proxy-protocol`):
    /// the peer given to [`Connection::new`] is the client it named.
    pub fn via(mut self, proxy: Option<SocketAddr>) -> Connection {
        self.stats.via = proxy;
        self
    }

    /// The driver waited for the socket (or takes the connection up after
    /// an event): the turn budget starts again. A connection that yields
    /// is one that had a turn's worth of work to do without waiting.
    pub fn new_turn(&mut self) {
        self.budget = TURN_BUDGET;
    }

    /// The next thing the driver must do.
    pub fn poll(&mut self) -> Action<'_> {
        if self.tls.is_some() {
            return self.poll_tls();
        }
        match self.next() {
            Next::SendOut => {
                let cap = self.out_allowance();
                let pending = &self.out[self.written..];
                Action::Send(&pending[..pending.len().min(cap)])
            }
            Next::SendBlock => {
                let cap = self.body_allowance();
                match &self.body {
                    Some(body) => {
                        let block = body.block();
                        Action::Send(&block[..block.len().min(cap)])
                    }
                    None => Action::Park,
                }
            }
            Next::SendFile => {
                let cap = self.body_allowance();
                match self.body.as_ref().and_then(|b| b.file_range()) {
                    Some((fd, offset, len)) => Action::SendFile {
                        fd,
                        offset,
                        len: len.min(cap),
                    },
                    None => Action::Park,
                }
            }
            Next::SplicePipe => {
                let cap = self.body_allowance();
                match self.body.as_ref().and_then(|b| b.pipe_range()) {
                    Some((pipe, len)) => Action::SplicePipe {
                        pipe,
                        len: len.min(cap),
                    },
                    None => Action::Park,
                }
            }
            Next::Storage(step) => Action::Storage(step),
            Next::ShutdownWrite => Action::ShutdownWrite,
            Next::Receive => Action::Receive,
            Next::Yield => Action::Yield,
            Next::Sleep => Action::Sleep,
            Next::Park => Action::Park,
            Next::Close(end) => Action::Close(end),
        }
    }

    /// Bytes of `out` that may go now: a body's bytes (its head and the
    /// base64 it fills `out` with) count against the rate limit.
    fn out_allowance(&mut self) -> usize {
        if self.body.is_some() {
            self.body_allowance()
        } else {
            usize::MAX
        }
    }

    /// Body bytes that may go now (`--limit-rate`; unlimited without it).
    fn body_allowance(&mut self) -> usize {
        match &mut self.throttle {
            Some(t) => usize::try_from(t.allowance(self.now)).unwrap_or(usize::MAX),
            None => usize::MAX,
        }
    }

    /// [`Connection::poll`] under TLS: what would be written is encrypted
    /// first, and the driver sends the records; `sendfile` and `splice`
    /// become reads and encryption (the kernel would send clear text).
    fn poll_tls(&mut self) -> Action<'_> {
        let Some(mut tls) = self.tls.take() else {
            return Action::Close(End::Error("TLS state lost".into()));
        };
        let action = loop {
            // Ended (a socket error, a deadline): what is still encrypted
            // can never go out.
            if let Some(end) = &self.done {
                break Some(Action::Close(end.clone()));
            }
            if tls.layer.has_pending() {
                break None;
            }
            if let Some(end) = tls.failed.take() {
                self.done = Some(end);
            }
            match self.next() {
                Next::SendOut => {
                    let cap = self.out_allowance();
                    let pending = &self.out[self.written..];
                    let n = tls.layer.encrypt(&pending[..pending.len().min(cap)]);
                    self.written += n;
                    if self.body.is_some() {
                        if let Some(t) = &mut self.throttle {
                            t.spend(n);
                        }
                    }
                }
                Next::SendBlock => {
                    let cap = self.body_allowance();
                    match &self.body {
                        Some(body) => {
                            let block = body.block();
                            let n = tls.layer.encrypt(&block[..block.len().min(cap)]);
                            self.body_sent(n);
                        }
                        None => break Some(Action::Park),
                    }
                }
                Next::SendFile => {
                    let cap = self.body_allowance();
                    let read = match self.body.as_ref().and_then(|b| b.file_range()) {
                        Some((fd, offset, len)) => {
                            tls.layer.encrypt_from(fd, Some(offset), len.min(cap))
                        }
                        None => break Some(Action::Park),
                    };
                    match read {
                        Ok(n) => self.body_sent(n),
                        Err(e) => self.fail_body(e),
                    }
                }
                Next::SplicePipe => {
                    let cap = self.body_allowance();
                    let read = match self.body.as_ref().and_then(|b| b.pipe_range()) {
                        Some((pipe, len)) => tls.layer.encrypt_from(pipe, None, len.min(cap)),
                        None => break Some(Action::Park),
                    };
                    match read {
                        Ok(n) => self.body_sent(n),
                        Err(e) => self.fail_body(e),
                    }
                }
                Next::ShutdownWrite => {
                    if !tls.layer.notify_close() {
                        break Some(Action::ShutdownWrite);
                    }
                }
                // The client's close_notify came with its last requests:
                // now that they are answered, it is the end of input.
                Next::Receive if tls.peer_closed => {
                    self.done = Some(if self.drain.is_some() {
                        self.closed()
                    } else {
                        End::ClientClosed
                    });
                }
                Next::Receive => break Some(Action::Receive),
                Next::Storage(step) => break Some(Action::Storage(step)),
                Next::Yield => break Some(Action::Yield),
                Next::Sleep => break Some(Action::Sleep),
                Next::Park => break Some(Action::Park),
                Next::Close(end) => break Some(Action::Close(end)),
            }
        };
        self.tls = Some(tls);
        match (action, &self.tls) {
            (Some(action), _) => action,
            (None, Some(tls)) => Action::Send(tls.layer.pending()),
            (None, None) => Action::Park,
        }
    }

    /// `n` bytes of the body were taken (encrypted): as [`Connection::sent`]
    /// reports them for the plain path.
    fn body_sent(&mut self, n: usize) {
        if let Some(t) = &mut self.throttle {
            t.spend(n);
        }
        if let Some(body) = &mut self.body {
            if let Err(e) = body.sent(n) {
                self.fail_body(e);
            }
        }
    }

    fn next(&mut self) -> Next {
        loop {
            if let Some(end) = &self.done {
                return Next::Close(end.clone());
            }
            if self.budget == 0 {
                self.budget = TURN_BUDGET;
                return Next::Yield;
            }
            self.budget -= 1;
            if self.waiter.is_some() {
                // Answers already made go out before a step that may take a
                // network round trip; a local step is batched with them.
                if self.flush_before_storage && self.written < self.out.len() {
                    return Next::SendOut;
                }
                return match self.step.take() {
                    Some(step) => Next::Storage(step),
                    None => Next::Park,
                };
            }
            if self.drain.is_some() {
                return Next::Receive;
            }
            // A body streams only as fast as the rate limit allows.
            if self.body.is_some() && self.throttle.is_some() && self.body_allowance() == 0 {
                if let Some(t) = &self.throttle {
                    self.sleeping = Some(t.wake_at());
                    return Next::Sleep;
                }
            }
            // 1. Send what is pending.
            if self.written < self.out.len() {
                return Next::SendOut;
            }
            self.out.clear();
            self.written = 0;
            // 2. Produce the next piece of the slice being streamed.
            if let Some(body) = &mut self.body {
                match body.next(&mut self.out) {
                    BodyNext::Block => return Next::SendBlock,
                    BodyNext::File => return Next::SendFile,
                    BodyNext::Pipe => return Next::SplicePipe,
                    BodyNext::Filled => {}
                    BodyNext::Read(step) => {
                        self.waiter = Some(Waiter::Body);
                        return Next::Storage(step);
                    }
                    BodyNext::Waiting => return Next::Park,
                    BodyNext::Done => {
                        self.body = None;
                        self.count_slice();
                    }
                }
                continue;
            }
            // 3. After quit or a fatal error: shut down writing, then drain.
            if self.closing.is_some() {
                return Next::ShutdownWrite;
            }
            // 4. Answer the input already read.
            if !self.input.is_empty() {
                let input = std::mem::take(&mut self.input);
                let used = self.answer(&input);
                self.keep_input(&input[used..]);
                continue;
            }
            // 5. Nothing in flight.
            if self.stopping {
                self.done = Some(End::Shutdown);
                continue;
            }
            if self.out.capacity() > KEEP_CAPACITY {
                self.out = Vec::new();
            }
            return Next::Receive;
        }
    }

    /// Keeps unanswered input for later, in a buffer no larger than needed.
    fn keep_input(&mut self, rest: &[u8]) {
        if rest.is_empty() {
            if self.input.capacity() > KEEP_CAPACITY {
                self.input = Vec::new();
            }
        } else {
            self.input.extend_from_slice(rest);
        }
    }

    /// Answers complete requests in `input` until output must be sent or
    /// storage consulted first; returns the bytes consumed.
    fn answer(&mut self, input: &[u8]) -> usize {
        let mut used = 0;
        while used < input.len() && self.out.len() < self.write_batch {
            let (n, outcome) = self.session.on_input(&input[used..], &mut self.out);
            used += n;
            let now = self.last_progress;
            self.request_at = now;
            self.record(now);
            if !self.settle(outcome) {
                break;
            }
        }
        if self.closing.is_some() {
            // Whatever came after quit or a fatal request is ignored.
            return input.len();
        }
        used
    }

    /// Takes in what the session decided; false when input must wait.
    fn settle(&mut self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::NeedInput => true,
            Outcome::Replied => {
                // A small slice is answered whole, its body with its head.
                self.count_slice();
                true
            }
            Outcome::Storage(step) => {
                self.step = Some(step);
                self.waiter = Some(Waiter::Session);
                false
            }
            Outcome::Stream(body) => {
                self.body = Some(body);
                false
            }
            Outcome::Close(reason) => {
                self.closing = Some(reason);
                false
            }
        }
    }

    /// Bytes read from the client.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        self.now = now;
        if self.done.is_some() || bytes.is_empty() {
            return;
        }
        let Some(mut tls) = self.tls.take() else {
            return self.handle_plain(bytes, now);
        };
        if tls.failed.is_some() || tls.peer_closed {
            // Nothing after a fatal error or a close_notify is read.
            self.tls = Some(tls);
            return;
        }
        if self.drain.is_some() {
            // Closing: what comes now is only counted (and dropped).
            self.tls = Some(tls);
            return self.handle_plain(bytes, now);
        }
        let was_handshaking = tls.layer.is_handshaking();
        self.last_progress = now;
        let received = tls
            .layer
            .receive(bytes, |plain| self.handle_plain(plain, now));
        match received {
            Received::Open => {}
            Received::Closed => tls.peer_closed = true,
            Received::Failed(e) => {
                let end = if was_handshaking {
                    self.refused_handshake(&e, now)
                } else {
                    End::Error(format!("TLS: {e}"))
                };
                tls.failed = Some(end);
            }
        }
        if was_handshaking && !tls.layer.is_handshaking() {
            self.stats.tls = Some(tls.layer.describe());
        }
        self.tls = Some(tls);
    }

    /// A handshake that failed or did not end in time: counted and logged
    /// as a refusal (the connection's own line says why too).
    fn refused_handshake(&mut self, why: &str, now: Instant) -> End {
        crate::metrics::connection_refused(crate::metrics::Refusal::TlsHandshake);
        crate::endpoint::log_refusal(
            self.peer_addr(),
            &format!("TLS handshake: {why}"),
            "--tls-cert",
            now,
        );
        End::Error(format!("TLS handshake: {why}"))
    }

    fn peer_addr(&self) -> std::net::SocketAddr {
        self.stats
            .peer
            .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Plaintext from the client (its bytes, or what TLS decrypted).
    fn handle_plain(&mut self, bytes: &[u8], now: Instant) {
        if self.done.is_some() || bytes.is_empty() {
            return;
        }
        if let Some(drain) = &mut self.drain {
            drain.drained += bytes.len();
            if drain.drained >= DRAIN_BYTES {
                self.done = Some(self.closed());
            }
            return;
        }
        self.last_progress = now;
        if self.input.is_empty() && self.is_clear() {
            let used = self.answer(bytes);
            self.keep_input(&bytes[used..]);
        } else if self.closing.is_none() {
            self.input.extend_from_slice(bytes);
        }
    }

    /// The client closed its side.
    pub fn handle_eof(&mut self, now: Instant) {
        self.now = now;
        if self.done.is_none() && self.handshake_deadline().is_some() {
            // A client that gives up on the handshake (one that rejects
            // the certificate closes without an alert) is a failed one.
            let end = self.refused_handshake("closed by the client before it ended", now);
            self.done = Some(end);
            return;
        }
        if self.done.is_none() {
            self.done = Some(if self.drain.is_some() {
                self.closed()
            } else {
                End::ClientClosed
            });
        }
    }

    /// `n` bytes of the last `Send`, `SendFile` or `SplicePipe` went out.
    pub fn sent(&mut self, n: usize, now: Instant) {
        self.now = now;
        self.last_progress = now;
        self.stats.bytes_sent += n as u64;
        if let Some(tls) = &mut self.tls {
            if tls.layer.has_pending() {
                if n == 0 {
                    return self.io_failed(io::ErrorKind::WriteZero.into());
                }
                return tls.layer.sent(n);
            }
        }
        if self.written < self.out.len() {
            if n == 0 {
                return self.io_failed(io::ErrorKind::WriteZero.into());
            }
            self.written += n.min(self.out.len() - self.written);
            if self.body.is_some() {
                if let Some(t) = &mut self.throttle {
                    t.spend(n);
                }
            }
        } else if self.body.is_some() {
            self.body_sent(n);
        }
    }

    /// The reply to the last `Storage` step.
    pub fn storage_done(&mut self, reply: StorageReply, now: Instant) {
        self.now = now;
        self.last_progress = now;
        match self.waiter.take() {
            Some(Waiter::Session) => {
                let outcome = self.session.resume(reply, &mut self.out);
                self.record(now);
                self.settle(outcome);
                if self.closing.is_some() {
                    self.input = Vec::new();
                }
            }
            Some(Waiter::Body) => match &mut self.body {
                Some(body) => {
                    if let Err(e) = body.resume(reply) {
                        self.fail_body(e);
                    }
                }
                None => self.done = Some(End::Error("storage reply without a body".into())),
            },
            None => self.done = Some(End::Error("storage reply nobody waited for".into())),
        }
    }

    /// Counts the answer the session just made (`now`: when it was made).
    fn record(&mut self, now: Instant) {
        let Some(metrics) = self.metrics else {
            return;
        };
        let Some(answered) = self.session.take_answered() else {
            return;
        };
        let took = now.saturating_duration_since(self.request_at);
        metrics.request(answered.command, answered.status, took);
        if let Some((mode, size)) = answered.slice {
            let bytes = match mode {
                SliceMode::Base64 => base64_len(size) + 2,
                SliceMode::Raw => size,
            };
            // Counted when its body is sent (see `settle` and `next`).
            self.slice = Some((mode, bytes, self.request_at));
        }
    }

    /// The slice being streamed was sent whole: count it.
    fn count_slice(&mut self) {
        if let (Some(metrics), Some((mode, bytes, started))) = (self.metrics, self.slice.take()) {
            let took = self.last_progress.saturating_duration_since(started);
            metrics.slice_sent(mode, bytes, took);
        }
    }

    /// The file or the listing failed after its `0 OK` went out: nothing
    /// can be said in band, the connection is closed (the client sees a
    /// short body).
    fn fail_body(&mut self, e: io::Error) {
        tracing::warn!(error = %e, "answer cut short after 0 OK, closing the connection");
        self.done = Some(End::Error(e.to_string()));
    }

    /// The write side was shut down (`ok`), or could not be.
    pub fn write_shut(&mut self, ok: bool, now: Instant) {
        self.now = now;
        if ok {
            self.drain = Some(Drain {
                until: now + DRAIN_TIME,
                drained: 0,
            });
        } else {
            self.done = Some(self.closed());
        }
    }

    /// A socket call failed.
    pub fn io_failed(&mut self, e: io::Error) {
        if self.done.is_some() {
            return;
        }
        self.done = Some(if self.drain.is_some() {
            self.closed()
        } else {
            end_of_error(e)
        });
    }

    /// When [`Connection::handle_timeout`] must be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done.is_some() || (self.waiter.is_some() && self.written >= self.out.len()) {
            return None;
        }
        if let Some(drain) = &self.drain {
            return Some(drain.until);
        }
        let limit = if self.has_output() {
            self.write_timeout
        } else {
            self.idle_timeout
        };
        let deadline = self.last_progress.checked_add(limit);
        let deadline = match self.sleeping {
            Some(wake) => Some(deadline.map_or(wake, |d| d.min(wake))),
            None => deadline,
        };
        match self.handshake_deadline() {
            Some(handshake) => Some(deadline.map_or(handshake, |d| d.min(handshake))),
            None => deadline,
        }
    }

    /// While a TLS handshake is under way: when it must be complete.
    fn handshake_deadline(&self) -> Option<Instant> {
        self.tls
            .as_ref()
            .filter(|tls| tls.layer.is_handshaking() && tls.failed.is_none())
            .map(|tls| tls.handshake_until)
    }

    /// Ends the connection if its deadline has passed by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if self.sleeping.is_some_and(|wake| now >= wake) {
            // Slept on the rate limit, not for want of progress.
            self.sleeping = None;
            self.last_progress = now;
        }
        let Some(deadline) = self.poll_timeout() else {
            return;
        };
        if now < deadline {
            return;
        }
        if self.handshake_deadline().is_some_and(|d| now >= d) {
            self.done = Some(self.refused_handshake("not complete in time", now));
            return;
        }
        self.done = Some(if self.drain.is_some() {
            self.closed()
        } else if self.has_output() {
            End::WriteTimeout
        } else {
            End::IdleTimeout
        });
    }

    /// The server is shutting down: answers in flight finish, then the
    /// connection ends instead of reading the next request.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// Nothing being answered: waiting for (the rest of) a request. Such a
    /// connection is closed at once at shutdown.
    pub fn is_idle(&self) -> bool {
        self.input.is_empty()
            && self.is_clear()
            && self.closing.is_none()
            && self.drain.is_none()
            && self.done.is_none()
    }

    /// No output pending and no storage step outstanding.
    fn is_clear(&self) -> bool {
        !self.has_output() && self.waiter.is_none()
    }

    fn has_output(&self) -> bool {
        self.written < self.out.len()
            || self.body.is_some()
            || self.closing.is_some()
            || self.tls.as_ref().is_some_and(|t| t.layer.has_pending())
    }

    /// How the connection ends after quit or a fatal error.
    fn closed(&self) -> End {
        self.closing.map_or(End::ClientClosed, End::Closed)
    }

    /// Who the client is and what the connection is doing, for the logs.
    pub fn describe(&self) -> String {
        let peer = self
            .stats
            .peer
            .map_or_else(|| "?".to_string(), |p| p.to_string());
        let state = if self.drain.is_some() || self.closing.is_some() {
            "closing"
        } else if self.waiter.is_some() {
            "waiting for storage"
        } else if self.has_output() {
            "answering"
        } else if !self.input.is_empty() || self.session.in_request() {
            "mid-request"
        } else {
            "idle"
        };
        format!("{peer} {state}")
    }

    /// How the connection ended, once it has.
    pub fn ended(&self) -> Option<&End> {
        self.done.as_ref()
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.session.requests
    }

    pub fn peer(&self) -> Option<SocketAddr> {
        self.stats.peer
    }

    /// Logs the connection's summary line.
    pub fn finish(&self, end: &End, now: Instant) {
        self.stats.finish(self.session.requests, end, now);
    }
}

/// Maps a socket error to how the connection ended.
pub fn end_of_error(e: io::Error) -> End {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::WriteZero => {
            End::WriteTimeout
        }
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => End::ClientClosed,
        _ => End::Error(e.to_string()),
    }
}
