//! The epoll readiness loop shared by the `poll` and `pool` drivers.
//!
//! One thread owns the listeners and the registry of connections. When a
//! connection's socket is ready, the loop hands its [`Conn`] to an
//! [`Executor`]: `poll` advances it right there, on the loop's own thread;
//! `pool` sends it to a worker thread, which advances it and sends it back.
//! Either way a connection is advanced by one thread at a time and never
//! blocks that thread.
//!
//! A storage step of a backend whose calls may block is not run by the
//! advancing thread: the connection is parked in its slot, the step goes to
//! the [`Offload`] pool, and the reply wakes the loop (the same `Waker` the
//! pool's workers use), which resumes the connection. Idle, write and
//! drain deadlines are the connection's own; the loop checks them every
//! [`TICK`].
//!
//! Under `--proxy-protocol` a new connection first occupies a slot that
//! only reads its PROXY header ([`PendingHeader`]); when the header is
//! complete, admission is asked for the client it names, and the slot gets
//! its [`Conn`], fed the bytes that came after the header. The sweep closes
//! slots whose header is late (so the header timeout is enforced to within
//! a [`TICK`]).

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::admission::Admission;
use crate::config::{Config, ACCEPT_BURST, READ_BUF};
use crate::connection::End;
use crate::listen::AcceptFailures;
use crate::readiness::{Conn, Step, StorageMode};
use crate::signals::Signals;
use crate::storage::offload::{self, Offload};
use crate::storage::StorageReply;
use crate::transport::proxy_header::{self, Progress, ProxyHeaderReader};
use crate::OnReady;

const SIGNALS: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);
/// Listener tokens count down from here; connections count up from 0.
const LISTENER_BASE: usize = usize::MAX - 2;

/// How often timeouts are checked.
const TICK: Duration = Duration::from_millis(500);

/// Where connections are advanced.
pub trait Executor {
    /// Advances `conn`. An inline executor returns the result at once; a
    /// threaded one returns `None` and delivers it later through
    /// [`Executor::finished`] after waking the loop.
    fn dispatch(&mut self, key: usize, conn: Box<Conn>) -> Option<(Box<Conn>, Step)>;
    /// Results delivered since the last call.
    fn finished(&mut self) -> Vec<(usize, Box<Conn>, Step)>;
}

/// A connection slot: the connection is absent while an executor has it.
/// Boxed, so that handing it to a worker moves a pointer.
struct Slot {
    conn: Option<Box<Conn>>,
    /// A readiness event arrived while the connection was away.
    missed: bool,
    /// Waiting for a storage step in the offload pool.
    parked: bool,
    /// `--proxy-protocol`: still reading the PROXY header (no `conn` yet).
    header: Option<Box<PendingHeader>>,
}

/// A connection whose PROXY header is not complete yet; not admitted yet.
struct PendingHeader {
    stream: mio::net::TcpStream,
    /// The proxy's address (the socket's peer).
    proxy: SocketAddr,
    reader: ProxyHeaderReader,
    deadline: Instant,
}

pub fn run<E: Executor>(
    config: &Config,
    listeners: Vec<TcpListener>,
    on_ready: OnReady,
    make_executor: impl FnOnce(Arc<Waker>, StorageMode) -> io::Result<E>,
) -> io::Result<()> {
    let signals = Signals::install()?;
    if let Some(l) = &config.metrics {
        // Scrapes are rare and short: a thread of their own, not the loop.
        crate::metrics::endpoint::spawn_thread(l.try_clone()?)?;
    }
    let poll = Poll::new()?;
    // One waker per epoll instance: workers and the offload pool share it.
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let mode = StorageMode::new(config);
    let mut executor = make_executor(Arc::clone(&waker), mode.clone())?;
    let (replies_tx, replies) = mpsc::channel::<(usize, StorageReply)>();
    let offload = if mode.offload {
        let waker = Arc::clone(&waker);
        Some(Offload::start(
            offload::THREADS,
            Arc::clone(&mode.storage),
            move |key, reply| {
                if replies_tx.send((key, reply)).is_ok() {
                    let _ = waker.wake();
                }
            },
        )?)
    } else {
        None
    };
    let mut listeners: Vec<mio::net::TcpListener> = listeners
        .into_iter()
        .map(|l| {
            l.set_nonblocking(true)?;
            Ok(mio::net::TcpListener::from_std(l))
        })
        .collect::<io::Result<_>>()?;
    for (i, l) in listeners.iter_mut().enumerate() {
        poll.registry()
            .register(l, Token(LISTENER_BASE - i), Interest::READABLE)?;
    }
    let signal_fd = signals.fd().as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&signal_fd), SIGNALS, Interest::READABLE)?;

    let admission = Admission::new(config.max_connections, config.max_per_ip);
    let mut loop_ = Loop {
        poll,
        admission: Arc::clone(&admission),
        config: config.clone(),
        waiting_headers: 0,
        slots: Slab::new(),
        stopping: false,
        again: Vec::new(),
        retry_accept: false,
        accept_again: false,
        accept_failures: AcceptFailures::default(),
        offload,
    };
    let mut events = Events::with_capacity(1024);
    // Everything is set up (signals, epoll, listeners, workers).
    on_ready();
    let mut stop_deadline: Option<Instant> = None;
    let mut last_sweep = Instant::now();

    loop {
        if let Some(deadline) = stop_deadline {
            if loop_.slots.is_empty() || Instant::now() >= deadline {
                break;
            }
        }
        let timeout = if !loop_.again.is_empty() || loop_.accept_again {
            Some(Duration::ZERO)
        } else if loop_.slots.is_empty() && stop_deadline.is_none() && !loop_.retry_accept {
            None
        } else {
            Some(TICK)
        };
        match loop_.poll.poll(&mut events, timeout) {
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
                            let _ = loop_.poll.registry().deregister(l);
                        }
                        // Closed, so that new clients are refused at once.
                        listeners.clear();
                        loop_.stop();
                    }
                }
                WAKER => {}
                Token(t) if t > LISTENER_BASE - listeners.len() => {
                    loop_.accept_all(&listeners[LISTENER_BASE - t], config, &admission);
                }
                Token(key) => loop_.ready(key, &mut executor),
            }
        }
        for (key, conn, step) in executor.finished() {
            loop_.settle(key, conn, step, &mut executor);
        }
        for (key, reply) in replies.try_iter() {
            loop_.resume(key, reply, &mut executor);
        }
        // Their turn came after everyone who was ready meanwhile.
        for key in std::mem::take(&mut loop_.again) {
            loop_.ready(key, &mut executor);
        }
        if std::mem::take(&mut loop_.accept_again) {
            for l in &listeners {
                loop_.accept_all(l, config, &admission);
            }
        }
        if last_sweep.elapsed() >= TICK {
            last_sweep = Instant::now();
            loop_.sweep();
            // Accepting failed (out of descriptors): the listeners are
            // edge-triggered, so nothing would wake us for the clients still
            // queued. Try again now that descriptors may have been freed.
            if std::mem::take(&mut loop_.retry_accept) {
                for l in &listeners {
                    loop_.accept_all(l, config, &admission);
                }
            }
        }
    }
    for (_, slot) in &loop_.slots {
        match &slot.conn {
            Some(conn) => tracing::info!(conn = %conn.describe(), "unfinished at shutdown"),
            None => tracing::info!("unfinished at shutdown: a connection held by a worker"),
        }
    }
    tracing::info!(unfinished = loop_.slots.len(), "shut down");
    Ok(())
}

struct Loop {
    poll: Poll,
    admission: Arc<Admission>,
    config: Config,
    /// Slots still reading their PROXY header.
    waiting_headers: usize,
    slots: Slab<Slot>,
    stopping: bool,
    /// Connections that used up their turn and have more to do now.
    again: Vec<usize>,
    /// An accept failed (EMFILE...): retry at the next tick.
    retry_accept: bool,
    /// A burst of accepts ended with clients still queued: accept again on
    /// the next round.
    accept_again: bool,
    accept_failures: AcceptFailures,
    /// Runs storage steps that may block (absent for the local directory).
    offload: Option<Offload>,
}

impl Loop {
    fn accept_all(
        &mut self,
        listener: &mio::net::TcpListener,
        config: &Config,
        admission: &Arc<Admission>,
    ) {
        // Bounded, so that signals and ready clients get their turn under a
        // connect flood; the listener is edge-triggered, so what is left is
        // retried on the next round.
        for _ in 0..ACCEPT_BURST {
            let (mut stream, peer) = match listener.accept() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.accept_failures.report(&e);
                    self.retry_accept = true;
                    return;
                }
            };
            if let Some(timeout) = config.proxy_protocol {
                self.wait_for_header(stream, peer, timeout);
                continue;
            }
            let Some(ticket) = admission.admit(peer) else {
                continue;
            };
            let entry = self.slots.vacant_entry();
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut stream, Token(entry.key()), Interest::READABLE)
            {
                tracing::warn!(error = %e, "cannot register a connection");
                continue;
            }
            entry.insert(Slot {
                conn: Some(Box::new(Conn::new(stream, peer, None, config, ticket))),
                missed: false,
                parked: false,
                header: None,
            });
        }
        self.accept_again = true;
    }

    /// Gives a new connection a slot that reads its PROXY header; its
    /// readiness events then go to [`Loop::read_header`].
    fn wait_for_header(
        &mut self,
        mut stream: mio::net::TcpStream,
        proxy: SocketAddr,
        timeout: Duration,
    ) {
        if self.waiting_headers >= self.config.max_connections {
            proxy_header::refuse(proxy, "too many connections waiting for their PROXY header");
            return;
        }
        let entry = self.slots.vacant_entry();
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut stream, Token(entry.key()), Interest::READABLE)
        {
            tracing::warn!(error = %e, "cannot register a connection");
            return;
        }
        self.waiting_headers += 1;
        entry.insert(Slot {
            conn: None,
            missed: false,
            parked: false,
            header: Some(Box::new(PendingHeader {
                stream,
                proxy,
                reader: ProxyHeaderReader::new(),
                deadline: Instant::now() + timeout,
            })),
        });
    }

    /// Reads what arrived of a connection's PROXY header; once complete,
    /// admits the client it names and serves it.
    fn read_header<E: Executor>(&mut self, key: usize, executor: &mut E) {
        let Some(pending) = self.slots.get_mut(key).and_then(|s| s.header.as_mut()) else {
            return;
        };
        let mut buf = [0u8; 1024];
        let outcome = loop {
            match pending.stream.read(&mut buf) {
                Ok(0) => break Err("connection closed before its PROXY header ended".to_string()),
                Ok(n) => match pending.reader.feed(&buf[..n]) {
                    Progress::Incomplete => {}
                    Progress::Done(header) => break Ok(header),
                    Progress::Invalid(reason) => break Err(reason),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e.to_string()),
            }
        };
        let Some(pending) = self.drop_pending(key) else {
            return;
        };
        let pending_proxy = pending.proxy;
        let header = match outcome {
            Ok(header) => header,
            Err(reason) => {
                self.close_pending(key, pending.stream);
                return proxy_header::refuse(pending_proxy, &reason);
            }
        };
        let client = header.origin.client(pending.proxy);
        let Some(ticket) = self.admission.admit(client) else {
            return self.close_pending(key, pending.stream);
        };
        let mut conn = Box::new(Conn::new(
            pending.stream,
            client,
            Some(pending.proxy),
            &self.config,
            ticket,
        ));
        conn.connection()
            .handle_input(&header.leftover, Instant::now());
        // The same slot and token: the registration stays as it is.
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        slot.conn = Some(conn);
        // Edge-triggered: what is already readable, or already read past
        // the header, must be handled now.
        self.ready(key, executor);
    }

    /// Closes a connection refused before it had a `Conn`.
    fn close_pending(&mut self, key: usize, mut stream: mio::net::TcpStream) {
        let _ = self.poll.registry().deregister(&mut stream);
        if self.slots.contains(key) {
            self.slots.remove(key);
        }
    }

    /// Takes a slot's pending header out (the slot stays, empty).
    fn drop_pending(&mut self, key: usize) -> Option<Box<PendingHeader>> {
        let pending = self.slots.get_mut(key)?.header.take()?;
        self.waiting_headers -= 1;
        Some(pending)
    }

    /// A connection's socket is ready: advance it, unless an executor has it.
    fn ready<E: Executor>(&mut self, key: usize, executor: &mut E) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if slot.header.is_some() {
            return self.read_header(key, executor);
        }
        if slot.parked {
            slot.missed = true;
            return;
        }
        match slot.conn.take() {
            Some(conn) => {
                if let Some((conn, step)) = executor.dispatch(key, conn) {
                    self.settle(key, conn, step, executor);
                }
            }
            None => slot.missed = true,
        }
    }

    /// Puts an advanced connection back, or ends it.
    fn settle<E: Executor>(
        &mut self,
        key: usize,
        mut conn: Box<Conn>,
        step: Step,
        executor: &mut E,
    ) {
        if self.stopping {
            conn.connection().stop();
        }
        let writable = match step {
            Step::Done(end) => return self.end(key, conn, end),
            Step::Wait { writable } => writable,
            Step::Again => {
                if let Some(slot) = self.slots.get_mut(key) {
                    slot.conn = Some(conn);
                    self.again.push(key);
                }
                return;
            }
            Step::Storage(step) => {
                let Some(offload) = &self.offload else {
                    return self.end(key, conn, End::Error("no storage pool".into()));
                };
                if offload.submit(key, step).is_err() {
                    return self.end(key, conn, End::Error("storage pool stopped".into()));
                }
                if let Some(slot) = self.slots.get_mut(key) {
                    slot.conn = Some(conn);
                    slot.parked = true;
                }
                return;
            }
        };
        if self.stopping && conn.connection().is_idle() {
            return self.end(key, conn, End::Shutdown);
        }
        let interest = if writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        // Re-arming also reports readiness that arrived meanwhile.
        if let Err(e) = self
            .poll
            .registry()
            .reregister(conn.stream_mut(), Token(key), interest)
        {
            return self.end(key, conn, End::Error(e.to_string()));
        }
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        slot.conn = Some(conn);
        if std::mem::take(&mut slot.missed) {
            self.ready(key, executor);
        }
    }

    /// A storage step finished: resume its connection.
    fn resume<E: Executor>(&mut self, key: usize, reply: StorageReply, executor: &mut E) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if let Some(conn) = &mut slot.conn {
            conn.storage_done(reply);
        }
        slot.parked = false;
        slot.missed = false;
        self.ready(key, executor);
    }

    fn end(&mut self, key: usize, mut conn: Box<Conn>, end: End) {
        let _ = self.poll.registry().deregister(conn.stream_mut());
        if self.slots.contains(key) {
            self.slots.remove(key);
        }
        (*conn).finish(&end);
    }

    /// Shutdown: idle connections end now; answers in flight finish.
    fn stop(&mut self) {
        self.stopping = true;
        // Not admitted yet: nothing in flight to finish.
        let waiting: Vec<usize> = self
            .slots
            .iter()
            .filter(|(_, s)| s.header.is_some())
            .map(|(key, _)| key)
            .collect();
        for key in waiting {
            if let Some(pending) = self.drop_pending(key) {
                self.close_pending(key, pending.stream);
            }
        }
        let mut idle = Vec::new();
        for (key, slot) in &mut self.slots {
            if let Some(conn) = &mut slot.conn {
                conn.connection().stop();
                if conn.connection().is_idle() {
                    idle.push(key);
                }
            }
        }
        tracing::info!(
            open = self.slots.len(),
            closed_now = idle.len(),
            "stopping: no new connections; answers in flight finish"
        );
        for key in idle {
            if let Some(conn) = self.slots.get_mut(key).and_then(|s| s.conn.take()) {
                self.end(key, conn, End::Shutdown);
            }
        }
        for (_, slot) in &self.slots {
            match &slot.conn {
                Some(conn) => tracing::debug!(conn = %conn.describe(), "finishing"),
                None => tracing::debug!("finishing: a connection held by a worker"),
            }
        }
    }

    /// Ends connections whose idle, write or drain time is up.
    fn sweep(&mut self) {
        let now = Instant::now();
        let late: Vec<usize> = self
            .slots
            .iter()
            .filter(|(_, s)| s.header.as_ref().is_some_and(|h| now >= h.deadline))
            .map(|(key, _)| key)
            .collect();
        for key in late {
            if let Some(pending) = self.drop_pending(key) {
                let proxy = pending.proxy;
                self.close_pending(key, pending.stream);
                proxy_header::refuse(proxy, "no complete PROXY header in time");
            }
        }
        let mut expired = Vec::new();
        for (key, slot) in &mut self.slots {
            if let Some(conn) = &mut slot.conn {
                conn.connection().handle_timeout(now);
                if let Some(end) = conn.connection().ended() {
                    expired.push((key, end.clone()));
                }
            }
        }
        for (key, end) in expired {
            if let Some(conn) = self.slots.get_mut(key).and_then(|s| s.conn.take()) {
                self.end(key, conn, end);
            }
        }
    }
}

/// Advances connections on the loop's own thread (`--model poll`).
pub struct Inline {
    buf: Vec<u8>,
    mode: StorageMode,
}

impl Inline {
    pub fn new(mode: StorageMode) -> Inline {
        Inline {
            buf: vec![0; READ_BUF],
            mode,
        }
    }
}

impl Executor for Inline {
    fn dispatch(&mut self, _key: usize, mut conn: Box<Conn>) -> Option<(Box<Conn>, Step)> {
        let step = conn.advance(&mut self.buf, &self.mode);
        Some((conn, step))
    }
    fn finished(&mut self) -> Vec<(usize, Box<Conn>, Step)> {
        Vec::new()
    }
}

type Job = (usize, Box<Conn>);

/// Advances connections on a fixed set of worker threads (`--model pool`).
pub struct Workers {
    jobs: Option<Sender<Job>>,
    done: Receiver<(usize, Box<Conn>, Step)>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    pub fn start(count: usize, waker: Arc<Waker>, mode: StorageMode) -> io::Result<Workers> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let (done_tx, done) = mpsc::channel();
        let threads = (0..count.max(1))
            .map(|i| {
                let (queue, done_tx, waker, mode) = (
                    Arc::clone(&queue),
                    done_tx.clone(),
                    Arc::clone(&waker),
                    mode.clone(),
                );
                std::thread::Builder::new()
                    .name(format!("hftp-worker-{i}"))
                    .stack_size(crate::drivers::threads::STACK_SIZE)
                    .spawn(move || {
                        let mut buf = vec![0u8; READ_BUF];
                        loop {
                            let job = match queue.lock() {
                                Ok(q) => q.recv(),
                                Err(_) => return,
                            };
                            let Ok((key, mut conn)) = job else { return };
                            let step = conn.advance(&mut buf, &mode);
                            if done_tx.send((key, conn, step)).is_err() {
                                return;
                            }
                            let _ = waker.wake();
                        }
                    })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Workers {
            jobs: Some(jobs),
            done,
            threads,
        })
    }
}

impl Executor for Workers {
    fn dispatch(&mut self, key: usize, conn: Box<Conn>) -> Option<(Box<Conn>, Step)> {
        match self.jobs.as_ref().map(|j| j.send((key, conn))) {
            Some(Ok(())) => None,
            Some(Err(mpsc::SendError((_, conn)))) => {
                Some((conn, Step::Done(End::Error("no worker left".into()))))
            }
            None => None,
        }
    }
    fn finished(&mut self) -> Vec<(usize, Box<Conn>, Step)> {
        self.done.try_iter().collect()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
