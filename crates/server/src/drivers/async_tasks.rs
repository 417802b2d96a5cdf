//! # `--model async` (the default): tokio tasks, one per connection
//!
//! **How it works.** A tokio runtime runs a few worker threads (one per core
//! by default). Every connection is a task: a small state machine the
//! compiler builds from ordinary-looking `async` code. When a task would
//! block on its socket it yields, and the runtime's epoll loop resumes it
//! when the socket is ready, so a handful of threads serve any number of
//! clients. [`Admission`] (counters behind a mutex) bounds the connections;
//! a watch channel tells idle tasks to stop on SIGINT/SIGTERM (the
//! structure of tokio's mini-redis).
//!
//! **What it costs.** A task is a few hundred bytes plus its buffers; there
//! is no thread per client and no context switch per request. Slices read
//! from the file with plain `pread` on the worker thread (the page cache
//! answers in microseconds; a cold disk read briefly holds one worker),
//! and raw slices go out with `sendfile` when the socket is writable.
//!
//! **Where it breaks.** A task that computes for a long time without
//! yielding holds its worker thread; here the longest step is encoding one
//! 48 KiB chunk. Code is harder to read than the blocking drivers'.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;

use crate::admission::Admission;
use crate::blocking::write_error;
use crate::body::SliceBody;
use crate::config::{Config, DRAIN_BYTES, DRAIN_TIME, READ_BUF, WRITE_BATCH};
use crate::connection::{ConnStats, End};
use crate::session::{Outcome, Session};
use crate::OnReady;

/// Size of a connection's first read buffer; see `Connection::run`.
const FIRST_READ: usize = 1024;

pub fn serve(config: Config, listeners: Vec<TcpListener>, on_ready: OnReady) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers.max(1))
        .thread_name("hftp-async")
        .enable_all()
        .build()?;
    runtime.block_on(run(Arc::new(config), listeners, on_ready))
}

async fn run(
    config: Arc<Config>,
    listeners: Vec<TcpListener>,
    on_ready: OnReady,
) -> io::Result<()> {
    let stop_signal = shutdown_signal()?;
    on_ready();
    let admission = Admission::new(config.max_connections, config.max_per_ip);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut acceptors = Vec::new();
    for listener in listeners {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let (config, admission, stop) =
            (Arc::clone(&config), Arc::clone(&admission), stop_rx.clone());
        acceptors.push(tokio::spawn(accept(listener, config, admission, stop)));
    }
    stop_signal.await;
    tracing::info!(
        open = admission.active(),
        "stopping: no new connections; answers in flight finish"
    );
    let _ = stop_tx.send(true);
    for a in acceptors {
        let _ = a.await;
    }
    let grace = config.shutdown_grace;
    let unfinished = tokio::task::spawn_blocking(move || admission.wait_idle(grace))
        .await
        .unwrap_or(0);
    tracing::info!(unfinished, "shut down");
    Ok(())
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is
/// called, before any connection is accepted: a signal that arrives while
/// the first answers are in flight must not kill the process outright. A
/// second signal exits at once (see [`crate::signals`]).
fn shutdown_signal() -> io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Armed for the rest of the process's life.
    crate::signals::exit_on_second_signal(&stopping)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

async fn accept(
    listener: tokio::net::TcpListener,
    config: Arc<Config>,
    admission: Arc<Admission>,
    mut stop: watch::Receiver<bool>,
) {
    let mut accept_warned: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, typically: wait for some to be freed,
                // and say so at most once a second.
                if accept_warned.is_none_or(|t: Instant| t.elapsed().as_secs() >= 1) {
                    tracing::warn!(error = %e, "accept failed, retrying");
                    accept_warned = Some(Instant::now());
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(ticket) = admission.admit(peer) else {
            continue;
        };
        let (config, stop) = (Arc::clone(&config), stop.clone());
        let task = async move {
            let mut conn = Connection::new(stream, &config, stop);
            let end = conn.run().await;
            conn.stats.finish(conn.session.requests, &end);
            drop(ticket);
        };
        tokio::spawn(task);
    }
}

struct Connection<'c> {
    stream: TcpStream,
    config: &'c Config,
    session: Session,
    stats: ConnStats,
    stop: watch::Receiver<bool>,
    out: Vec<u8>,
}

impl<'c> Connection<'c> {
    fn new(stream: TcpStream, config: &'c Config, stop: watch::Receiver<bool>) -> Self {
        let _ = stream.set_nodelay(true);
        Connection {
            stats: ConnStats::new(stream.peer_addr().ok()),
            session: Session::new(&config.session),
            stream,
            config,
            stop,
            out: Vec::new(),
        }
    }

    async fn run(&mut self) -> End {
        // Buffers are allocated while a request is handled and released
        // while the client is idle, so idle connections cost little memory.
        let mut buf = Vec::new();
        // One stop future and one idle timer for the whole connection:
        // arming a timer per request would cost more than the request. The
        // timer is moved forward only when it fires early.
        let mut stop = self.stop.clone();
        let stopped = stop.wait_for(|&stop| stop);
        tokio::pin!(stopped);
        let idle_timeout = self.config.idle_timeout;
        let mut last_read = tokio::time::Instant::now();
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        loop {
            let ready = tokio::select! {
                biased;
                r = self.stream.readable() => r,
                _ = &mut idle => {
                    if last_read.elapsed() >= idle_timeout {
                        return End::IdleTimeout;
                    }
                    idle.as_mut().reset(last_read + idle_timeout);
                    continue;
                }
                _ = &mut stopped => return End::Shutdown,
            };
            if let Err(e) = ready {
                return write_error(e);
            }
            // Start small (most requests are a few dozen bytes) and grow
            // when a read fills the buffer: 10,000 clients sending `quit`
            // at once then cost 1 KiB each, not 16.
            if buf.is_empty() {
                buf = vec![0u8; FIRST_READ];
            } else if buf.len() < READ_BUF {
                buf.resize(READ_BUF, 0);
            }
            let n = match self.stream.try_read(&mut buf) {
                Ok(0) => return End::ClientClosed,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // A stale readiness (new sockets start out "ready").
                    buf = Vec::new();
                    continue;
                }
                Err(e) => return write_error(e),
            };
            let mut input = &buf[..n];
            while !input.is_empty() {
                let (used, outcome) = self.session.on_input(input, &mut self.out);
                input = &input[used..];
                let result = match outcome {
                    Outcome::NeedInput => Ok(()),
                    Outcome::Replied if self.out.len() < WRITE_BATCH => Ok(()),
                    Outcome::Replied => self.flush().await,
                    Outcome::Stream(body) => self.stream_body(body).await,
                    Outcome::Close(reason) => {
                        return match self.flush().await {
                            Ok(()) => {
                                self.close_gracefully().await;
                                End::Closed(reason)
                            }
                            Err(e) => write_error(e),
                        }
                    }
                };
                if let Err(e) = result {
                    return write_error(e);
                }
            }
            if let Err(e) = self.flush().await {
                return write_error(e);
            }
            // Idle time starts once the answers are sent, however long
            // they took.
            last_read = tokio::time::Instant::now();
            if n < buf.len() {
                buf = Vec::new();
            }
            if self.out.capacity() > WRITE_BATCH {
                self.out = Vec::new();
            }
        }
    }

    /// Writes the pending output, failing with `TimedOut` when the client
    /// accepts nothing for the write timeout.
    async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        // The socket usually takes a whole answer at once: try that before
        // arming a timer, which would cost more than the write.
        let mut written = 0;
        while written < self.out.len() {
            match self.stream.try_write(&self.out[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if written < self.out.len() {
            let rest = &self.out[written..];
            match timeout(self.config.write_timeout, self.stream.write_all(rest)).await {
                Ok(r) => r?,
                Err(_) => return Err(io::ErrorKind::TimedOut.into()),
            }
        }
        self.stats.bytes_sent += self.out.len() as u64;
        self.out.clear();
        Ok(())
    }

    async fn stream_body(&mut self, mut body: SliceBody) -> io::Result<()> {
        self.flush().await?;
        if body.can_sendfile() {
            while !body.is_complete() {
                let ready = timeout(self.config.write_timeout, self.stream.writable()).await;
                ready.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
                match self
                    .stream
                    .try_io(Interest::WRITABLE, || body.send_raw(&self.stream))
                {
                    Ok(n) => self.stats.bytes_sent += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        }
        loop {
            let done = body.fill(&mut self.out)?;
            self.flush().await?;
            if done {
                return Ok(());
            }
        }
    }

    /// See [`crate::blocking::close_gracefully`].
    async fn close_gracefully(&mut self) {
        if self.stream.shutdown().await.is_err() {
            return;
        }
        let deadline = Instant::now() + DRAIN_TIME;
        // On the heap (an array would make every connection's future
        // larger), and small until a read fills it: most clients have sent
        // nothing more, and 10,000 closing at once must stay cheap.
        let mut buf = vec![0u8; FIRST_READ];
        let mut drained = 0;
        while drained < DRAIN_BYTES {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    drained += n;
                    if n == buf.len() && buf.len() < READ_BUF {
                        buf.resize(READ_BUF, 0);
                    }
                }
                _ => break,
            }
        }
    }
}
