//! The load loop: each generator thread owns a mio `Poll` (epoll) and a
//! share of the connections, keeps `pipeline` requests in flight on each,
//! and decodes every reply strictly as it arrives.
//!
//! Replies are parsed with [`hftp_proto::reply::ReplyDecoder`], the same
//! strict decoder the client uses: it validates every byte (status line,
//! sizes, listing names, base64 alphabet, padding and canonical form, raw
//! `Content-Length`) and decodes base64 with base64-simd, so it costs less
//! than the server's encoding and does not make the generator the
//! bottleneck (see BENCHMARKS.md for how that was checked). Small replies
//! go through its byte-at-a-time line path, which is a few dozen
//! nanoseconds for a metadata reply.
//!
//! With TLS (`--tls`), each connection runs its handshake in the loop
//! after its TCP connect, and its bytes go through [`Wire`] (rustls).

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hftp_proto::reply::{Expect, Reply, ReplyDecoder};
use hftp_proto::{Request, Status};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::stats::{Live, Stats};
use crate::wire::Wire;
use crate::workload::{Mix, Rng, Workload};

/// When a run ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stop {
    /// After this long (requests in flight then are neither counted nor errors).
    Duration(Duration),
    /// After this many requests (answered or failed).
    Requests(u64),
}

/// Read buffer of one generator thread.
const READ_BUF: usize = 256 * 1024;
/// How long a connection waits before connecting again after a failure.
const RETRY_DELAY: Duration = Duration::from_millis(20);
/// Housekeeping (timeouts, reconnects, progress) interval.
const TICK: Duration = Duration::from_millis(20);
/// Connections a thread has in the middle of connecting at once.
pub const MAX_CONNECTING: usize = 256;

/// Local copies of the files a workload names, to compare replies with.
#[derive(Debug)]
pub struct Verifier {
    /// Per op of the mix: the local file and its size.
    files: Vec<Option<(File, u64)>>,
}

impl Verifier {
    pub fn new(dir: &Path, mix: &Mix) -> Result<Verifier, String> {
        let mut files = Vec::new();
        for p in &mix.ops {
            let Some(name) = p.op.name() else {
                files.push(None);
                continue;
            };
            let path = dir.join(name);
            let file = File::open(&path)
                .map_err(|e| format!("--verify: cannot open {}: {e}", path.display()))?;
            let size = file
                .metadata()
                .map_err(|e| format!("--verify: {}: {e}", path.display()))?
                .len();
            files.push(Some((file, size)));
        }
        Ok(Verifier { files })
    }
}

/// Opens a connection some other way than a direct connect (through a
/// SOCKS5 proxy): a blocking call that returns a stream ready for HFTP.
/// The engine calls it from its loop, so each proxied connect holds the
/// thread for its handshake: fine for the few connections a proxy path
/// carries, not for thousands.
#[derive(Clone)]
pub struct Dialer(Arc<dyn Fn() -> io::Result<std::net::TcpStream> + Send + Sync>);

impl Dialer {
    pub fn new(
        open: impl Fn() -> io::Result<std::net::TcpStream> + Send + Sync + 'static,
    ) -> Dialer {
        Dialer(Arc::new(open))
    }

    /// A connected, non-blocking stream for the loop.
    fn open(&self) -> io::Result<TcpStream> {
        let stream = (self.0)()?;
        stream.set_nonblocking(true)?;
        Ok(TcpStream::from_std(stream))
    }
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dialer")
    }
}

/// Where the connections go.
pub struct Target {
    pub addr: SocketAddr,
    /// How the server was named, for messages.
    pub label: String,
    pub dial: Option<Dialer>,
    /// Speak TLS on every connection, as this endpoint says (its name for
    /// SNI and the certificate, whom to trust, our certificate).
    pub tls: Option<hftp_client::Endpoint>,
}

impl Target {
    /// A new TLS session for one connection, if TLS is on.
    fn tls_session(&self) -> Result<Option<rustls::ClientConnection>, String> {
        match &self.tls {
            None => Ok(None),
            Some(endpoint) => endpoint.tls_session().map_err(|e| e.to_string()),
        }
    }

    /// A TLS failure of a connection, in a line.
    fn tls_error(&self, err: io::Error, handshaking: bool) -> String {
        let identity = self
            .tls
            .as_ref()
            .and_then(|e| e.tls.as_ref())
            .is_some_and(|t| t.identity().is_some());
        let peer = self
            .tls
            .as_ref()
            .map_or_else(|| self.label.clone(), ToString::to_string);
        hftp_client::tls::error_of(&peer, err, handshaking, identity).to_string()
    }
}

/// Everything the threads share.
pub struct Shared {
    pub target: Target,
    pub churn: bool,
    pub mix: Mix,
    pub pipeline: usize,
    pub stop: Stop,
    pub timeout: Duration,
    pub verifier: Option<Verifier>,
    pub live: Arc<Live>,
    /// Requests claimed so far (for [`Stop::Requests`]).
    pub claimed: AtomicU64,
    /// A thread could not open its connections: the others give up too.
    pub abort: AtomicBool,
}

impl Shared {
    pub fn new(
        target: Target,
        workload: &Workload,
        pipeline: usize,
        stop: Stop,
        timeout: Duration,
        verify: Option<&Path>,
        live: Arc<Live>,
    ) -> Result<Shared, String> {
        let (churn, mix) = match workload {
            Workload::Churn => (true, Mix::new(&[])),
            Workload::Requests(ops) => (false, Mix::new(ops)),
        };
        let verifier = match verify {
            Some(dir) if !churn => Some(Verifier::new(dir, &mix)?),
            _ => None,
        };
        Ok(Shared {
            target,
            churn,
            mix,
            pipeline: pipeline.max(1),
            stop,
            timeout,
            verifier,
            live,
            claimed: AtomicU64::new(0),
            abort: AtomicBool::new(false),
        })
    }

    fn requests_left(&self) -> bool {
        match self.stop {
            Stop::Requests(n) => self.claimed.load(Ordering::Relaxed) < n,
            Stop::Duration(_) => true,
        }
    }

    /// Takes the right to send one more request.
    fn claim(&self) -> bool {
        match self.stop {
            Stop::Requests(n) => {
                self.requests_left() && self.claimed.fetch_add(1, Ordering::Relaxed) < n
            }
            Stop::Duration(_) => true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No socket; connect again at the given instant (if load is still wanted).
    Idle(Instant),
    Connecting,
    /// TLS: connected, the handshake under way.
    Handshaking,
    Open,
    /// Churn: `0 OK` to `quit` received, waiting for the server's close.
    AwaitEof,
}

/// A request sent and not yet answered.
#[derive(Debug)]
struct Inflight {
    /// Index into the mix (unused for churn).
    op: usize,
    sent: Instant,
    /// Slice bytes received so far.
    got: u64,
}

struct Conn {
    stream: Option<Wire>,
    state: State,
    started: Instant,
    out: Vec<u8>,
    out_pos: usize,
    inflight: VecDeque<Inflight>,
    decoder: ReplyDecoder,
    last_progress: Instant,
    served: bool,
    rng: Rng,
}

/// Why a connection is dropped: an error kind for the report and a message.
struct Failure {
    kind: String,
    message: String,
}

impl Failure {
    fn new(kind: &str, message: impl Into<String>) -> Failure {
        Failure {
            kind: kind.to_owned(),
            message: message.into(),
        }
    }
}

fn status_kind(status: Status) -> String {
    format!("status {} {}", status.code(), status.text())
}

/// One generator thread's result.
pub struct ThreadResult {
    pub stats: Stats,
    /// How long opening this thread's connections took.
    pub connect: Duration,
    pub error: Option<String>,
}

pub struct Worker {
    shared: Arc<Shared>,
    poll: Poll,
    conns: Vec<Conn>,
    buf: Vec<u8>,
    body: Vec<u8>,
    scratch: Vec<u8>,
    stats: Stats,
    loaded: bool,
    deadline: Option<Instant>,
}

impl Worker {
    pub fn new(shared: Arc<Shared>, conns: usize, seed: u64) -> io::Result<Worker> {
        let now = Instant::now();
        let conns = (0..conns)
            .map(|i| Conn {
                stream: None,
                state: State::Idle(now),
                started: now,
                out: Vec::new(),
                out_pos: 0,
                inflight: VecDeque::new(),
                decoder: {
                    // Without --verify, raw bytes are only counted: a copy
                    // of every byte less in the generator.
                    let mut d = ReplyDecoder::new(Expect::Quit);
                    d.discard_raw(shared.verifier.is_none());
                    d
                },
                last_progress: now,
                served: false,
                rng: Rng::new(seed.wrapping_add(i as u64 * 7919)),
            })
            .collect();
        Ok(Worker {
            shared,
            poll: Poll::new()?,
            conns,
            buf: vec![0; READ_BUF],
            body: Vec::with_capacity(READ_BUF),
            scratch: Vec::new(),
            stats: Stats::default(),
            loaded: false,
            deadline: None,
        })
    }

    /// Opens every connection (except for churn), waits at `ready`, then at
    /// `go`, then runs the load until the stop condition.
    pub fn run(mut self, ready: &Barrier, go: &Barrier) -> ThreadResult {
        let t0 = Instant::now();
        let error = if self.shared.churn {
            Ok(())
        } else {
            self.connect_all()
        };
        let connect = t0.elapsed();
        let error = error.err();
        if error.is_some() {
            self.shared.abort.store(true, Ordering::Relaxed);
        }
        ready.wait();
        go.wait();
        if error.is_some() || self.shared.abort.load(Ordering::Relaxed) {
            return ThreadResult {
                stats: self.stats,
                connect,
                error,
            };
        }
        self.load();
        self.stats.served = self.conns.iter().filter(|c| c.served).count() as u64;
        self.stats.flush(&self.shared.live);
        ThreadResult {
            stats: self.stats,
            connect,
            error: None,
        }
    }

    fn connect_all(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + self.shared.timeout;
        let mut events = Events::with_capacity(1024);
        let mut next = 0;
        loop {
            let connecting = self
                .conns
                .iter()
                .filter(|c| c.state == State::Connecting)
                .count();
            let mut room = MAX_CONNECTING.saturating_sub(connecting);
            while room > 0 && next < self.conns.len() {
                self.start_connect(next, Instant::now());
                next += 1;
                room -= 1;
            }
            if let Some(i) = self
                .conns
                .iter()
                .position(|c| matches!(c.state, State::Idle(_)))
            {
                if i < next {
                    let err = self.stats.errors.values().next().map(|e| e.example.clone());
                    return Err(format!(
                        "cannot connect to {}: {}",
                        self.shared.target.label,
                        err.unwrap_or_else(|| "failed".into())
                    ));
                }
            }
            if next == self.conns.len() && self.conns.iter().all(|c| c.state == State::Open) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "connecting to {} timed out",
                    self.shared.target.label
                ));
            }
            self.poll_once(&mut events, Some(TICK))
                .map_err(|e| format!("poll: {e}"))?;
        }
    }

    fn load(&mut self) {
        self.loaded = true;
        let start = Instant::now();
        if let Stop::Duration(d) = self.shared.stop {
            self.deadline = Some(start + d);
        }
        for i in 0..self.conns.len() {
            if self.shared.churn {
                self.reconnect(i, start);
            } else {
                self.fill(i, start);
            }
        }
        let mut events = Events::with_capacity(1024);
        let mut last_tick = start;
        loop {
            let now = Instant::now();
            if self.finished(now) {
                break;
            }
            let mut wait = TICK;
            if let Some(d) = self.deadline {
                wait = wait.min(d.saturating_duration_since(now));
            }
            if let Err(e) = self.poll_once(&mut events, Some(wait)) {
                self.stats.error("poll", || e.to_string());
                break;
            }
            let now = Instant::now();
            if now.duration_since(last_tick) >= TICK {
                last_tick = now;
                self.tick(now);
            }
        }
    }

    fn finished(&self, now: Instant) -> bool {
        match self.deadline {
            Some(d) => now >= d,
            None => {
                !self.shared.requests_left() && self.conns.iter().all(|c| c.inflight.is_empty())
            }
        }
    }

    fn poll_once(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        match self.poll.poll(events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            let i = ev.token().0;
            if i >= self.conns.len() {
                continue;
            }
            if self.conns[i].state == State::Connecting {
                self.on_connecting(i);
                continue;
            }
            if self.conns[i].state == State::Handshaking {
                self.on_handshake(i);
                continue;
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                self.on_readable(i);
            }
            if ev.is_writable() && self.conns[i].stream.is_some() {
                self.flush(i);
            }
        }
        self.stats.flush(&self.shared.live);
        Ok(())
    }

    /// Timeouts and reconnects.
    fn tick(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            match c.state {
                State::Idle(at) if at <= now => {
                    let wanted =
                        self.deadline.is_some_and(|d| now < d) || self.shared.requests_left();
                    if wanted {
                        self.reconnect(i, now);
                    }
                }
                State::Connecting | State::Handshaking | State::Open | State::AwaitEof
                    if (!c.inflight.is_empty() || c.state != State::Open)
                        && now.duration_since(c.last_progress) > self.shared.timeout =>
                {
                    let what = match c.state {
                        State::Connecting => "connecting",
                        State::Handshaking => "in the TLS handshake",
                        State::AwaitEof => "waiting for the close after quit",
                        _ => "waiting for a reply",
                    };
                    let msg = format!(
                        "nothing received for {:?} while {what}",
                        self.shared.timeout
                    );
                    self.fail(i, Failure::new("timeout", msg), now);
                }
                _ => {}
            }
        }
    }

    fn start_connect(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        c.started = now;
        c.last_progress = now;
        c.out.clear();
        c.out_pos = 0;
        let session = match self.shared.target.tls_session() {
            Ok(session) => session,
            Err(e) => return self.fail(i, Failure::new("tls", e), now),
        };
        let stream = match &self.shared.target.dial {
            None => TcpStream::connect(self.shared.target.addr),
            Some(dial) => dial.open(),
        };
        match stream {
            Ok(stream) => {
                let mut stream = Wire::new(stream, session);
                match self.poll.registry().register(
                    stream.tcp_mut(),
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    Ok(()) => {
                        c.stream = Some(stream);
                        c.state = State::Connecting;
                    }
                    Err(e) => self.fail(i, Failure::new("connect", format!("register: {e}")), now),
                }
            }
            Err(e) => self.fail(i, Failure::new("connect", e.to_string()), now),
        }
    }

    /// Connects a slot again: for churn each connection is one request.
    fn reconnect(&mut self, i: usize, now: Instant) {
        if self.shared.churn {
            if !self.shared.claim() {
                self.conns[i].state = State::Idle(now + Duration::from_secs(3600));
                return;
            }
            self.conns[i].inflight.push_back(Inflight {
                op: 0,
                sent: now,
                got: 0,
            });
            self.conns[i].decoder.reset(Expect::Quit);
        }
        if self.loaded && self.conns[i].served {
            self.stats.reconnects += 1;
        }
        self.start_connect(i, now);
    }

    fn on_connecting(&mut self, i: usize) {
        let now = Instant::now();
        let Some(stream) = self.conns[i].stream.as_ref() else {
            return;
        };
        let tcp = stream.tcp();
        let result = match tcp.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match tcp.peer_addr() {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(false) => {}
            Ok(true) => {
                let _ = tcp.set_nodelay(true);
                if stream.handshaking() {
                    let c = &mut self.conns[i];
                    c.state = State::Handshaking;
                    c.last_progress = now;
                    self.on_handshake(i);
                } else {
                    self.opened(i, now);
                }
            }
            Err(e) => self.connect_failed(i, "connect", e.to_string(), now),
        }
    }

    /// TLS: drives the handshake; the connection opens once it is done.
    fn on_handshake(&mut self, i: usize) {
        let now = Instant::now();
        let Some(stream) = self.conns[i].stream.as_mut() else {
            return;
        };
        match stream.handshake() {
            Ok(false) => self.conns[i].last_progress = now,
            Ok(true) => self.opened(i, now),
            Err(e) => {
                let message = self.shared.target.tls_error(e, true);
                self.connect_failed(i, "tls", message, now);
            }
        }
    }

    /// The connection is ready for requests.
    fn opened(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        c.state = State::Open;
        c.last_progress = now;
        if self.shared.churn {
            c.out.extend_from_slice(b"quit\r\n");
            self.flush(i);
        } else if self.loaded {
            self.fill(i, now);
        }
    }

    /// A connect (or its TLS handshake) failed.
    fn connect_failed(&mut self, i: usize, kind: &str, message: String, now: Instant) {
        if self.shared.churn || !self.loaded {
            self.fail(i, Failure::new(kind, message), now);
        } else {
            // A failed reconnect counts as a failed request, so that
            // a run of N requests ends even when the server is gone.
            let kind = if self.shared.claim() { kind } else { "" };
            self.fail(i, Failure::new(kind, message), now);
        }
    }

    /// Sends requests until `pipeline` are in flight (while load is wanted).
    fn fill(&mut self, i: usize, now: Instant) {
        if self.conns[i].state != State::Open || self.deadline.is_some_and(|d| now >= d) {
            return;
        }
        let shared = &*self.shared;
        let c = &mut self.conns[i];
        while c.inflight.len() < shared.pipeline && shared.claim() {
            let op = shared.mix.pick(c.rng.next_u64());
            let p = &shared.mix.ops[op];
            if c.inflight.is_empty() {
                c.decoder.reset(p.expect);
                c.last_progress = now;
            }
            c.out.extend_from_slice(&p.line);
            c.inflight.push_back(Inflight {
                op,
                sent: now,
                got: 0,
            });
        }
        self.flush(i);
    }

    fn flush(&mut self, i: usize) {
        let c = &mut self.conns[i];
        let Some(stream) = c.stream.as_mut() else {
            return;
        };
        if matches!(c.state, State::Connecting | State::Handshaking) {
            return;
        }
        if let Err(e) = stream.push() {
            let now = Instant::now();
            return self.fail(i, Failure::new("io", format!("write: {e}")), now);
        }
        while c.out_pos < c.out.len() {
            match stream.write(&c.out[c.out_pos..]) {
                Ok(n) => {
                    c.out_pos += n;
                    self.stats.tx += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let now = Instant::now();
                    return self.fail(i, Failure::new("io", format!("write: {e}")), now);
                }
            }
        }
        c.out.clear();
        c.out_pos = 0;
    }

    fn on_readable(&mut self, i: usize) {
        loop {
            let Some(stream) = self.conns[i].stream.as_mut() else {
                return;
            };
            let n = match stream.read(&mut self.buf) {
                Ok(0) => return self.on_eof(i),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if hftp_client::tls::is_tls_error(&e) => {
                    let now = Instant::now();
                    let message = self.shared.target.tls_error(e, false);
                    return self.fail(i, Failure::new("tls", message), now);
                }
                Err(e) => {
                    let now = Instant::now();
                    return self.fail(i, Failure::new("io", format!("read: {e}")), now);
                }
            };
            self.stats.rx += n as u64;
            let now = Instant::now();
            if self.deadline.is_some_and(|d| now >= d) {
                // Past the end of the run: nothing more is counted.
                return;
            }
            if let Err(f) = self.consume(i, n, now) {
                return self.fail(i, f, now);
            }
        }
        let now = Instant::now();
        self.fill(i, now);
    }

    /// Feeds `self.buf[..n]` to the connection's replies in flight.
    fn consume(&mut self, i: usize, n: usize, now: Instant) -> Result<(), Failure> {
        let shared = &*self.shared;
        let c = &mut self.conns[i];
        c.last_progress = now;
        let mut data = &self.buf[..n];
        while !data.is_empty() {
            let Some(front) = c.inflight.front_mut() else {
                let what = if c.state == State::AwaitEof {
                    "the answer to quit"
                } else {
                    "the last reply"
                };
                return Err(Failure::new(
                    "protocol",
                    format!(
                        "{} unexpected byte(s) after {what}: {:?}",
                        data.len(),
                        preview(data)
                    ),
                ));
            };
            self.body.clear();
            let (used, reply) = c
                .decoder
                .feed(data, &mut self.body)
                .map_err(|e| Failure::new("protocol", e.to_string()))?;
            // Listing names are checked by the decoder and not needed
            // here: dropping them as they come keeps memory bounded
            // however long a server's listing is.
            drop(c.decoder.take_lines());
            data = &data[used..];
            let discarded = c.decoder.take_discarded();
            self.stats.payload += discarded;
            front.got += discarded;
            if !self.body.is_empty() {
                self.stats.payload += self.body.len() as u64;
                if let Some(v) = &shared.verifier {
                    check_slice(v, &shared.mix, front, &self.body, &mut self.scratch)?;
                }
                front.got += self.body.len() as u64;
            }
            let Some(reply) = reply else { continue };
            // Still in `inflight` when an error returns, so that `fail`
            // counts it under the error's kind.
            let (op, sent) = (front.op, front.sent);
            match reply {
                Reply::Error(status) if status.is_fatal() => {
                    return Err(Failure::new(
                        &status_kind(status),
                        "fatal status: the server closes",
                    ));
                }
                Reply::Error(status) => {
                    let line = shared.mix.ops.get(op).map(|p| p.op.request.to_string());
                    self.stats.error(&status_kind(status), || {
                        format!("answer to {:?}", line.unwrap_or_default())
                    });
                }
                Reply::Size(size) => {
                    if let Some(Some((_, local))) = shared.verifier.as_ref().map(|v| &v.files[op]) {
                        if size != *local {
                            return Err(Failure::new(
                                "verify",
                                format!(
                                    "get_metadata said {size}, the local file has {local} bytes"
                                ),
                            ));
                        }
                    }
                    self.stats.record(now - sent);
                }
                _ => self.stats.record(now - sent),
            }
            c.inflight.pop_front();
            c.served = true;
            if shared.churn {
                c.state = State::AwaitEof;
            } else if let Some(next) = c.inflight.front() {
                c.decoder.reset(shared.mix.ops[next.op].expect);
            }
        }
        Ok(())
    }

    fn on_eof(&mut self, i: usize) {
        let now = Instant::now();
        let c = &mut self.conns[i];
        if c.state == State::AwaitEof {
            // Churn: one connect-quit-close cycle done.
            if let Some(stream) = c.stream.as_mut() {
                let _ = self.poll.registry().deregister(stream.tcp_mut());
            }
            c.stream = None;
            c.state = State::Idle(now);
            self.reconnect(i, now);
            return;
        }
        let failure = if c.inflight.is_empty() {
            Failure::new("closed", "the server closed an idle connection")
        } else {
            let err = c.decoder.eof();
            Failure::new("truncated", err.to_string())
        };
        self.fail(i, failure, now);
    }

    /// Drops a connection: its requests in flight fail (the first with the
    /// failure's kind, the others as `aborted`), and it connects again soon.
    fn fail(&mut self, i: usize, f: Failure, now: Instant) {
        let c = &mut self.conns[i];
        // An empty kind: a failure that costs no request (a reconnect
        // failing after the last request was claimed).
        if !f.kind.is_empty() {
            self.stats.error(&f.kind, || f.message.clone());
            for _ in 1..c.inflight.len() {
                self.stats.error("aborted", || {
                    format!("in flight on a connection that failed with {}", f.kind)
                });
            }
        }
        c.inflight.clear();
        if let Some(mut stream) = c.stream.take() {
            let _ = self.poll.registry().deregister(stream.tcp_mut());
        }
        c.out.clear();
        c.out_pos = 0;
        let delay = if f.kind == "connect" || f.kind == "tls" {
            RETRY_DELAY * 5
        } else {
            RETRY_DELAY
        };
        c.state = State::Idle(now + delay);
    }
}

/// Compares slice bytes with the local file.
fn check_slice(
    v: &Verifier,
    mix: &Mix,
    front: &Inflight,
    body: &[u8],
    scratch: &mut Vec<u8>,
) -> Result<(), Failure> {
    let Some(Some((file, _))) = v.files.get(front.op) else {
        return Ok(());
    };
    let Request::GetSlice { range, .. } = &mix.ops[front.op].op.request else {
        return Ok(());
    };
    let at = range.offset + front.got;
    scratch.resize(body.len(), 0);
    file.read_exact_at(scratch, at)
        .map_err(|e| Failure::new("verify", format!("cannot read the local file at {at}: {e}")))?;
    if scratch[..] != *body {
        let first = scratch
            .iter()
            .zip(body)
            .position(|(a, b)| a != b)
            .unwrap_or(0) as u64;
        return Err(Failure::new(
            "verify",
            format!(
                "slice byte {} (file offset {}) differs from the local file",
                front.got + first,
                at + first
            ),
        ));
    }
    Ok(())
}

fn preview(data: &[u8]) -> String {
    data[..data.len().min(40)].escape_ascii().to_string()
}
