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
//! only reads its PROXY header (an [`Opening`] of the endpoint); once it
//! admits the client, the slot gets its [`Conn`]. The sweep hands late
//! openings their deadline (so the header timeout is enforced to within a
//! [`TICK`]).
//!
//! **Time is passed in.** [`Reactor::handle`] takes `now`; the loop reads no
//! clock of its own, so a test drives many connections through one loop
//! in virtual time (sweeps, grace periods) over real sockets (the tests
//! below).

use std::io::{self, Read};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::config::{Config, ACCEPT_BURST, READ_BUF};
use crate::connection::End;
use crate::drivers::readiness::{Conn, Step, StorageMode};
use crate::drivers::OnReady;
use crate::endpoint::{Accept, Endpoint, Opened, Opening};
use crate::listen::AcceptFailures;
use crate::signals::Signals;
use crate::storage::offload::{self, Offload};
use crate::storage::StorageReply;

const SIGNALS: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);
/// Listener tokens count down from here; connections count up from 0.
const LISTENER_BASE: usize = usize::MAX - 2;

/// How often timeouts are checked.
const TICK: Duration = Duration::from_millis(500);

/// Where connections are advanced.
pub trait Executor {
    /// Advances `conn` at `now`. An inline executor returns the result at
    /// once; a threaded one returns `None` and delivers it later through
    /// [`Executor::finished`] after waking the loop.
    fn dispatch(&mut self, key: usize, conn: Box<Conn>, now: Instant) -> Option<(Box<Conn>, Step)>;
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
    opening: Opening,
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
    let mut reactor = Reactor::new(config, listeners, make_executor)?;
    let signal_fd = signals.fd().as_raw_fd();
    reactor
        .poll
        .registry()
        .register(&mut SourceFd(&signal_fd), SIGNALS, Interest::READABLE)?;
    // Everything is set up (signals, epoll, listeners, workers).
    on_ready();
    while !reactor.finished(Instant::now()) {
        reactor.wait(None)?;
        reactor.handle(Instant::now());
        if std::mem::take(&mut reactor.signalled) {
            signals.drain();
            if signals.stop_requested() {
                reactor.stop(Instant::now());
            }
        }
    }
    reactor.report_unfinished();
    Ok(())
}

/// The loop's state: what one turn reads and changes.
pub struct Reactor<E: Executor> {
    poll: Poll,
    events: Events,
    listeners: Vec<mio::net::TcpListener>,
    endpoint: Arc<Endpoint>,
    executor: E,
    replies: Receiver<(usize, StorageReply)>,
    slots: Slab<Slot>,
    /// Set at shutdown: when the answers in flight must be done.
    stop_deadline: Option<Instant>,
    shutdown_grace: Duration,
    last_sweep: Instant,
    /// The signal descriptor was readable in the last turn.
    signalled: bool,
    /// Connections sleeping on their rate limit, and until when.
    sleepers: Vec<(Instant, usize)>,
    /// The `now` of the last [`Reactor::handle`]: what `wait` measures the
    /// sleepers' time from.
    last_now: Instant,
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

impl<E: Executor> Reactor<E> {
    /// The loop over `listeners`, not yet turning.
    pub fn new(
        config: &Config,
        listeners: Vec<TcpListener>,
        make_executor: impl FnOnce(Arc<Waker>, StorageMode) -> io::Result<E>,
    ) -> io::Result<Reactor<E>> {
        let poll = Poll::new()?;
        // One waker per epoll instance: workers and the offload pool share it.
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mode = StorageMode::new(config);
        let executor = make_executor(Arc::clone(&waker), mode.clone())?;
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
        Ok(Reactor {
            poll,
            events: Events::with_capacity(1024),
            listeners,
            endpoint: Endpoint::new(config),
            executor,
            replies,
            slots: Slab::new(),
            stop_deadline: None,
            shutdown_grace: config.shutdown_grace,
            last_sweep: Instant::now(),
            signalled: false,
            sleepers: Vec::new(),
            last_now: Instant::now(),
            again: Vec::new(),
            retry_accept: false,
            accept_again: false,
            accept_failures: AcceptFailures::default(),
            offload,
        })
    }

    /// Stopped, and every connection done or the grace period over.
    pub fn finished(&self, now: Instant) -> bool {
        self.stop_deadline
            .is_some_and(|deadline| self.slots.is_empty() || now >= deadline)
    }

    /// Waits for events: at most `max_wait`, or a [`TICK`] when something
    /// has a deadline. Then read the clock and [`Reactor::handle`] them.
    pub fn wait(&mut self, max_wait: Option<Duration>) -> io::Result<()> {
        let own = if !self.again.is_empty() || self.accept_again {
            Some(Duration::ZERO)
        } else if self.slots.is_empty() && self.stop_deadline.is_none() && !self.retry_accept {
            None
        } else {
            Some(TICK)
        };
        let own = match self.sleepers.iter().map(|(at, _)| *at).min() {
            Some(wake) => {
                let left = wake.saturating_duration_since(self.last_now);
                Some(own.map_or(left, |t| t.min(left)))
            }
            None => own,
        };
        let timeout = match (own, max_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Handles at `now` what the last wait brought, the connections whose
    /// turn came again, and the sweep when a tick has passed.
    pub fn handle(&mut self, now: Instant) {
        self.last_now = now;
        let tokens: Vec<Token> = self.events.iter().map(|e| e.token()).collect();
        for token in tokens {
            match token {
                SIGNALS => self.signalled = true,
                WAKER => {}
                Token(t) if t > LISTENER_BASE - self.listeners.len() => {
                    self.accept_all(LISTENER_BASE - t, now);
                }
                Token(key) => self.ready(key, now),
            }
        }
        for (key, conn, step) in self.executor.finished() {
            self.settle(key, conn, step, now);
        }
        let replies: Vec<_> = self.replies.try_iter().collect();
        for (key, reply) in replies {
            self.resume(key, reply, now);
        }
        // Their turn came after everyone who was ready meanwhile.
        for key in std::mem::take(&mut self.again) {
            self.ready(key, now);
        }
        if !self.sleepers.is_empty() {
            let (due, still): (Vec<_>, Vec<_>) =
                self.sleepers.drain(..).partition(|(at, _)| *at <= now);
            self.sleepers = still;
            for (_, key) in due {
                if let Some(conn) = self.slots.get_mut(key).and_then(|s| s.conn.as_mut()) {
                    conn.connection().handle_timeout(now);
                    self.ready(key, now);
                }
            }
        }
        if std::mem::take(&mut self.accept_again) {
            for i in 0..self.listeners.len() {
                self.accept_all(i, now);
            }
        }
        if now.saturating_duration_since(self.last_sweep) >= TICK {
            self.last_sweep = now;
            self.sweep(now);
            // Accepting failed (out of descriptors): the listeners are
            // edge-triggered, so nothing would wake us for the clients still
            // queued. Try again now that descriptors may have been freed.
            if std::mem::take(&mut self.retry_accept) {
                for i in 0..self.listeners.len() {
                    self.accept_all(i, now);
                }
            }
        }
    }

    fn accept_all(&mut self, listener: usize, now: Instant) {
        // Bounded, so that signals and ready clients get their turn under a
        // connect flood; the listener is edge-triggered, so what is left is
        // retried on the next round.
        for _ in 0..ACCEPT_BURST {
            let Some(l) = self.listeners.get(listener) else {
                return;
            };
            let (stream, peer) = match l.accept() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.accept_failures.report(&e);
                    self.retry_accept = true;
                    return;
                }
            };
            match self.endpoint.accept(peer, now) {
                Accept::Refused => {}
                Accept::Admitted(admitted) => {
                    let (conn, ticket) = self.endpoint.start(admitted, now);
                    let conn = Box::new(Conn::new(stream, conn, ticket));
                    // Registering a socket that is already readable reports it.
                    self.insert(Slot::serving(conn));
                }
                Accept::Opening(opening) => {
                    let pending = Box::new(PendingHeader { stream, opening });
                    self.insert(Slot::opening(pending));
                }
            }
        }
        self.accept_again = true;
    }

    /// Gives a new connection a slot, registered for readiness.
    fn insert(&mut self, mut slot: Slot) -> Option<usize> {
        let entry = self.slots.vacant_entry();
        let stream = match (&mut slot.conn, &mut slot.header) {
            (Some(conn), _) => conn.stream_mut(),
            (None, Some(pending)) => &mut pending.stream,
            (None, None) => return None,
        };
        if let Err(e) =
            self.poll
                .registry()
                .register(stream, Token(entry.key()), Interest::READABLE)
        {
            tracing::warn!(error = %e, "cannot register a connection");
            return None;
        }
        let key = entry.key();
        entry.insert(slot);
        Some(key)
    }

    /// Reads what arrived of a connection's PROXY header; once the endpoint
    /// admits the client, serves it in the same slot.
    fn read_header(&mut self, key: usize, now: Instant) {
        let Some(pending) = self.slots.get_mut(key).and_then(|s| s.header.as_mut()) else {
            return;
        };
        let mut buf = [0u8; 1024];
        let opened = loop {
            match pending.stream.read(&mut buf) {
                Ok(0) => break pending.opening.handle_eof(now),
                Ok(n) => match pending.opening.handle_input(&buf[..n], now) {
                    Opened::Incomplete => {}
                    opened => break opened,
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break pending.opening.io_failed(e, now),
            }
        };
        self.opened(key, opened, now);
    }

    /// The opening of slot `key` admitted or refused its client.
    fn opened(&mut self, key: usize, opened: Opened, now: Instant) {
        if let Opened::Incomplete = opened {
            return;
        }
        let Some(pending) = self.slots.get_mut(key).and_then(|s| s.header.take()) else {
            return;
        };
        let PendingHeader { mut stream, .. } = *pending;
        let Opened::Admitted(admitted) = opened else {
            let _ = self.poll.registry().deregister(&mut stream);
            self.slots.remove(key);
            return;
        };
        let (conn, ticket) = self.endpoint.start(admitted, now);
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        // The same slot and token: the registration stays as it is.
        slot.conn = Some(Box::new(Conn::new(stream, conn, ticket)));
        // Edge-triggered: what is already readable, or already read past
        // the header, must be handled now.
        self.ready(key, now);
    }

    /// A connection's socket is ready: advance it, unless an executor has it.
    fn ready(&mut self, key: usize, now: Instant) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if slot.header.is_some() {
            return self.read_header(key, now);
        }
        if slot.parked {
            slot.missed = true;
            return;
        }
        match slot.conn.take() {
            Some(conn) => {
                if let Some((conn, step)) = self.executor.dispatch(key, conn, now) {
                    self.settle(key, conn, step, now);
                }
            }
            None => slot.missed = true,
        }
    }

    /// Puts an advanced connection back, or ends it.
    fn settle(&mut self, key: usize, mut conn: Box<Conn>, step: Step, now: Instant) {
        // Stopped while a worker had it: the connection decides what that
        // means, the next time it is advanced.
        let told_now = self.stop_deadline.is_some() && conn.tell_stop();
        let writable = match step {
            Step::Done(end) => return self.end(key, conn, end, now),
            Step::Wait { .. } if told_now => {
                if let Some(slot) = self.slots.get_mut(key) {
                    slot.conn = Some(conn);
                    self.again.push(key);
                }
                return;
            }
            Step::Wait { writable } => writable,
            Step::Again => {
                if let Some(slot) = self.slots.get_mut(key) {
                    slot.conn = Some(conn);
                    self.again.push(key);
                }
                return;
            }
            Step::Sleep(until) => {
                if let Some(slot) = self.slots.get_mut(key) {
                    slot.conn = Some(conn);
                    self.sleepers.push((until, key));
                }
                return;
            }
            Step::Storage(step) => {
                let Some(offload) = &self.offload else {
                    return self.end(key, conn, End::Error("no storage pool".into()), now);
                };
                if offload.submit(key, step).is_err() {
                    return self.end(key, conn, End::Error("storage pool stopped".into()), now);
                }
                if let Some(slot) = self.slots.get_mut(key) {
                    slot.conn = Some(conn);
                    slot.parked = true;
                }
                return;
            }
        };
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
            return self.end(key, conn, End::Error(e.to_string()), now);
        }
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        slot.conn = Some(conn);
        if std::mem::take(&mut slot.missed) {
            self.ready(key, now);
        }
    }

    /// A storage step finished: resume its connection.
    fn resume(&mut self, key: usize, reply: StorageReply, now: Instant) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if let Some(conn) = &mut slot.conn {
            conn.storage_done(reply, now);
        }
        slot.parked = false;
        slot.missed = false;
        self.ready(key, now);
    }

    fn end(&mut self, key: usize, mut conn: Box<Conn>, end: End, now: Instant) {
        let _ = self.poll.registry().deregister(conn.stream_mut());
        if self.slots.contains(key) {
            self.slots.remove(key);
        }
        (*conn).finish(&end, now);
    }

    /// Shutdown at `now`: no new connections; every connection is told to
    /// stop and advanced, so that idle ones end at once and answers in
    /// flight finish within the grace period.
    pub fn stop(&mut self, now: Instant) {
        if self.stop_deadline.is_some() {
            return;
        }
        self.stop_deadline = Some(now + self.shutdown_grace);
        for l in &mut self.listeners {
            let _ = self.poll.registry().deregister(l);
        }
        // Closed, so that new clients are refused at once.
        self.listeners.clear();
        let open = self.slots.len();
        let keys: Vec<usize> = self.slots.iter().map(|(key, _)| key).collect();
        for key in keys {
            let Some(slot) = self.slots.get_mut(key) else {
                continue;
            };
            if let Some(pending) = &mut slot.header {
                let opened = pending.opening.stop(now);
                self.opened(key, opened, now);
                continue;
            }
            let parked = slot.parked;
            // With a worker: told when it comes back; parked: told now,
            // advanced when its storage step is done.
            let told = slot.conn.as_mut().is_some_and(|conn| conn.tell_stop());
            if told && !parked {
                self.ready(key, now);
            }
        }
        tracing::info!(
            open,
            closed_now = open - self.slots.len(),
            "stopping: no new connections; answers in flight finish"
        );
        for (_, slot) in &self.slots {
            match &slot.conn {
                Some(conn) => tracing::debug!(conn = %conn.describe(), "finishing"),
                None => tracing::debug!("finishing: a connection held by a worker"),
            }
        }
    }

    /// Ends connections whose idle, write or drain time is up, and refuses
    /// openings whose header is late.
    fn sweep(&mut self, now: Instant) {
        let keys: Vec<usize> = self.slots.iter().map(|(key, _)| key).collect();
        let mut expired = Vec::new();
        for key in keys {
            let Some(slot) = self.slots.get_mut(key) else {
                continue;
            };
            if let Some(pending) = &mut slot.header {
                let opened = pending.opening.handle_timeout(now);
                self.opened(key, opened, now);
            } else if let Some(conn) = &mut slot.conn {
                conn.connection().handle_timeout(now);
                if let Some(end) = conn.connection().ended() {
                    expired.push((key, end.clone()));
                }
            }
        }
        for (key, end) in expired {
            if let Some(conn) = self.slots.get_mut(key).and_then(|s| s.conn.take()) {
                self.end(key, conn, end, now);
            }
        }
    }

    /// Logs what the grace period left unfinished.
    fn report_unfinished(&self) {
        for (_, slot) in &self.slots {
            match &slot.conn {
                Some(conn) => tracing::info!(conn = %conn.describe(), "unfinished at shutdown"),
                None => tracing::info!("unfinished at shutdown: a connection held by a worker"),
            }
        }
        tracing::info!(unfinished = self.slots.len(), "shut down");
    }
}

impl Slot {
    fn serving(conn: Box<Conn>) -> Slot {
        Slot {
            conn: Some(conn),
            missed: false,
            parked: false,
            header: None,
        }
    }

    fn opening(pending: Box<PendingHeader>) -> Slot {
        Slot {
            conn: None,
            missed: false,
            parked: false,
            header: Some(pending),
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
    fn dispatch(
        &mut self,
        _key: usize,
        mut conn: Box<Conn>,
        now: Instant,
    ) -> Option<(Box<Conn>, Step)> {
        let step = conn.advance(&mut self.buf, &self.mode, now);
        Some((conn, step))
    }
    fn finished(&mut self) -> Vec<(usize, Box<Conn>, Step)> {
        Vec::new()
    }
}

type Job = (usize, Box<Conn>, Instant);

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
                            let Ok((key, mut conn, now)) = job else {
                                return;
                            };
                            let step = conn.advance(&mut buf, &mode, now);
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
    fn dispatch(&mut self, key: usize, conn: Box<Conn>, now: Instant) -> Option<(Box<Conn>, Step)> {
        match self.jobs.as_ref().map(|j| j.send((key, conn, now))) {
            Some(Ok(())) => None,
            Some(Err(mpsc::SendError((_, conn, _)))) => {
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

/// One loop, many real loopback connections, and a virtual clock: what
/// needs time (sweeps, the grace period) takes none.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::virtual_time::{self, received, GRACE, IDLE, MAX_ROUNDS};
    use std::io::Write;
    use std::net::{SocketAddr, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Rig {
        reactor: Reactor<Inline>,
        addr: SocketAddr,
        now: Instant,
        _dir: tempfile::TempDir,
    }

    impl Rig {
        fn new(files: &[(&str, usize)]) -> Rig {
            Rig::with_store(files, |local| Arc::new(local))
        }

        /// The files served through the store `wrap` makes of them.
        fn with_store(
            files: &[(&str, usize)],
            wrap: impl FnOnce(crate::storage::LocalDir) -> Arc<dyn crate::storage::Storage>,
        ) -> Rig {
            let (dir, mut config) = virtual_time::served(crate::Model::Poll, files);
            let local = crate::storage::LocalDir::new(dir.path(), false).unwrap();
            config.session.storage = wrap(local);
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let reactor =
                Reactor::new(&config, vec![listener], |_, mode| Ok(Inline::new(mode))).unwrap();
            Rig {
                reactor,
                addr,
                now: Instant::now(),
                _dir: dir,
            }
        }

        /// One round at the virtual `now`, waiting at most 10 ms of real
        /// time for events.
        fn round(&mut self) {
            self.reactor.wait(Some(Duration::from_millis(10))).unwrap();
            self.reactor.handle(self.now);
        }

        /// Lets `d` of virtual time pass, then runs a round.
        fn after(&mut self, d: Duration) {
            self.now += d;
            self.round();
        }

        fn client(&self) -> TcpStream {
            virtual_time::client(self.addr)
        }
    }

    #[test]
    fn a_fast_reader_cannot_starve_a_hundred_others() {
        const BIG: usize = 16 << 20;
        let mut rig = Rig::new(&[("big.bin", BIG), ("a.txt", 5)]);
        let mut fast = TcpStream::connect(rig.addr).unwrap();
        fast.write_all(format!("get_slice big.bin 0 {BIG}\r\n").as_bytes())
            .unwrap();
        // The fast reader reads as fast as it can, on its own thread.
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut total = 0usize;
                let mut buf = vec![0u8; 1 << 20];
                while let Ok(n) = fast.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    total += n;
                    // `0 OK\r\n`, the base64 body, `\r\n`.
                    if total >= 6 + BIG.div_ceil(3) * 4 + 2 {
                        break;
                    }
                }
                done.store(true, Ordering::SeqCst);
                total
            })
        };
        // Its answer is streaming.
        for _ in 0..3 {
            rig.round();
        }
        let mut others: Vec<(TcpStream, Vec<u8>)> = (0..100)
            .map(|_| {
                let mut s = rig.client();
                s.write_all(b"get_metadata a.txt\r\n").unwrap();
                (s, Vec::new())
            })
            .collect();
        let mut rounds = 0;
        while others
            .iter()
            .any(|(_, got)| got.len() < b"0 OK\r\n5\r\n".len())
        {
            assert!(rounds < MAX_ROUNDS, "the others were not all answered");
            rig.round();
            for (s, got) in &mut others {
                received(s, got).expect("closed before its answer");
            }
            rounds += 1;
        }
        assert!(
            !done.load(Ordering::SeqCst),
            "the fast reader was served whole before the 100 others were answered"
        );
        for (_, got) in &others {
            assert_eq!(got, b"0 OK\r\n5\r\n");
        }
        while !done.load(Ordering::SeqCst) {
            assert!(
                rounds < MAX_ROUNDS,
                "the fast reader was never served whole"
            );
            rig.round();
            rounds += 1;
        }
        assert_eq!(reader.join().unwrap(), 6 + BIG.div_ceil(3) * 4 + 2);
    }

    #[test]
    fn idle_clients_are_swept_in_virtual_time() {
        let mut rig = Rig::new(&[]);
        let mut quiet = rig.client();
        let mut busy = rig.client();
        quiet.write_all(b"help\r\n").unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n\r\n") {
            rig.round();
            received(&mut quiet, &mut got).expect("closed before its answer");
        }
        // Just short of the idle timeout: both stay.
        rig.after(IDLE - TICK);
        rig.round();
        assert!(received(&mut quiet, &mut got).is_some(), "closed early");
        // The other one speaks: its idle time starts again.
        busy.write_all(b"help\r\n").unwrap();
        rig.round();
        rig.after(2 * TICK);
        assert!(received(&mut quiet, &mut got).is_none(), "not swept");
        let mut busy_got = Vec::new();
        assert!(
            received(&mut busy, &mut busy_got).is_some(),
            "a client that spoke was swept"
        );
    }

    #[test]
    fn shutdown_ends_idle_clients_at_once_and_waits_out_answers_in_flight() {
        const BIG: usize = 32 << 20;
        let mut rig = Rig::new(&[("big.bin", BIG)]);
        let mut idle = rig.client();
        let mut stuck = rig.client();
        // Far more than the socket buffers hold, and never read.
        stuck
            .write_all(format!("get_slice big.bin 0 {BIG} raw\r\n").as_bytes())
            .unwrap();
        for _ in 0..3 {
            rig.round();
        }
        rig.reactor.stop(rig.now);
        rig.round();
        let mut got = Vec::new();
        let mut rounds = 0;
        while received(&mut idle, &mut got).is_some() {
            assert!(rounds < MAX_ROUNDS, "the idle client was never closed");
            rig.round();
            rounds += 1;
        }
        assert!(got.is_empty());
        assert!(!rig.reactor.finished(rig.now), "an answer is in flight");
        rig.after(GRACE - TICK);
        assert!(
            !rig.reactor.finished(rig.now),
            "finished before the grace period"
        );
        rig.now += TICK;
        assert!(rig.reactor.finished(rig.now), "the grace period is over");
        assert_eq!(rig.reactor.slots.len(), 1, "the stuck answer is unfinished");
    }

    #[test]
    fn a_connection_parked_on_slow_storage_holds_nobody_and_no_deadline() {
        let store = Arc::new(std::sync::OnceLock::<Arc<crate::storage::HeldStore>>::new());
        let mut rig = Rig::with_store(&[("slow", 3), ("a.txt", 5)], |files| {
            let held = Arc::new(crate::storage::HeldStore::new(files, "slow"));
            let _ = store.set(Arc::clone(&held));
            held
        });
        let store = store.get().unwrap();
        let mut parked = rig.client();
        parked.write_all(b"get_metadata slow\r\n").unwrap();
        let mut rounds = 0;
        while store.held() == 0 {
            assert!(rounds < MAX_ROUNDS, "the store never got the call");
            rig.round();
            rounds += 1;
        }
        // Another client is answered while the call is held.
        let mut other = rig.client();
        other.write_all(b"get_metadata a.txt\r\n").unwrap();
        let mut got = Vec::new();
        while got.len() < b"0 OK\r\n5\r\n".len() {
            assert!(rounds < MAX_ROUNDS, "held behind the parked connection");
            rig.round();
            received(&mut other, &mut got).expect("closed");
            rounds += 1;
        }
        assert_eq!(got, b"0 OK\r\n5\r\n");
        // Waiting for storage is not idleness: no sweep ends it.
        rig.after(IDLE * 3);
        let mut answer = Vec::new();
        assert!(
            received(&mut parked, &mut answer).is_some(),
            "swept while parked"
        );
        assert!(answer.is_empty());
        store.release();
        while answer.len() < b"0 OK\r\n3\r\n".len() {
            assert!(rounds < MAX_ROUNDS, "never resumed");
            rig.round();
            received(&mut parked, &mut answer).expect("closed");
            rounds += 1;
        }
        assert_eq!(answer, b"0 OK\r\n3\r\n");
    }
}
