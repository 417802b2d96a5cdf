//! # `--model async` (the default): tokio tasks, one per connection
//!
//! **How it works.** A tokio runtime runs a few worker threads (one per core
//! by default). Every connection is a task: a small state machine the
//! compiler builds from ordinary-looking `async` code. When a task would
//! block on its socket it yields, and the runtime's epoll loop resumes it
//! when the socket is ready, so a handful of threads serve any number of
//! clients. `Admission` (counters behind a mutex) bounds the connections;
//! a watch channel tells idle tasks to stop on SIGINT/SIGTERM (the
//! structure of tokio's mini-redis).
//!
//! **Behind a proxy** (`--proxy-protocol`), a connection's task first
//! reads the PROXY header (within `--proxy-header-timeout`), and only then
//! asks admission for a place, for the client the header names.
//!
//! **What it costs.** A task is a few hundred bytes plus its buffers; there
//! is no thread per client and no context switch per request. The task
//! only moves bytes for its [`Connection`]: local slices are read with
//! plain `pread` on the worker thread (the page cache answers in
//! microseconds; a cold disk read briefly holds one worker), raw slices go
//! out with `sendfile` when the socket is writable, and a storage call of
//! the object store is a task of the store's own runtime, awaited through a
//! oneshot channel (another backend that may block runs in
//! `spawn_blocking`), so a remote store never holds a runtime thread, and a
//! thousand calls stalled on the store cost a thousand tasks, not threads.
//!
//! **Where it breaks.** A task that computes for a long time without
//! yielding holds its worker thread; here the longest step is encoding one
//! 48 KiB chunk. Code is harder to read than the blocking drivers'.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::admission::Ticket;
use crate::config::{Config, READ_BUF};
use crate::connection::{Action, Connection, End};
use crate::drivers::OnReady;
use crate::endpoint::{Accept, Endpoint, Opened, Opening};
use crate::listen::AcceptFailures;

/// Size of a connection's first read buffer; see [`drive`].
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
    if let Some(l) = &config.metrics {
        let l = l.try_clone()?;
        l.set_nonblocking(true)?;
        tokio::spawn(serve_metrics(tokio::net::TcpListener::from_std(l)?));
    }
    on_ready();
    let endpoint = Endpoint::new(&config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut acceptors = Vec::new();
    for listener in listeners {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let (config, endpoint, stop) =
            (Arc::clone(&config), Arc::clone(&endpoint), stop_rx.clone());
        acceptors.push(tokio::spawn(accept(listener, config, endpoint, stop)));
    }
    stop_signal.await;
    tracing::info!(
        open = endpoint.active(),
        "stopping: no new connections; answers in flight finish"
    );
    let _ = stop_tx.send(true);
    for a in acceptors {
        let _ = a.await;
    }
    let grace = config.shutdown_grace;
    let unfinished = tokio::task::spawn_blocking(move || endpoint.wait_idle(grace))
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
    endpoint: Arc<Endpoint>,
    mut stop: watch::Receiver<bool>,
) {
    let mut accept_failures = AcceptFailures::default();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, typically: wait for some to be freed.
                accept_failures.report(&e);
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let (config, endpoint, stop) = (Arc::clone(&config), Arc::clone(&endpoint), stop.clone());
        match endpoint.accept(peer, Instant::now()) {
            Accept::Refused => {}
            Accept::Admitted(admitted) => {
                let (conn, ticket) = endpoint.start(admitted, Instant::now());
                tokio::spawn(serve_connection(stream, conn, ticket, config, stop));
            }
            // The PROXY header names the client to admit: read it in the
            // task, so that a slow proxy never delays the accept loop.
            Accept::Opening(opening) => {
                tokio::spawn(async move {
                    let opened = read_proxy_header(&stream, opening, stop.clone()).await;
                    if let Opened::Admitted(admitted) = opened {
                        let (conn, ticket) = endpoint.start(admitted, Instant::now());
                        serve_connection(stream, conn, ticket, config, stop).await;
                    }
                });
            }
        }
    }
}

/// Reads the PROXY header that begins the connection, until the opening
/// admits or refuses it (its deadline or a shutdown included).
async fn read_proxy_header(
    stream: &TcpStream,
    mut opening: Opening,
    mut stop: watch::Receiver<bool>,
) -> Opened {
    let mut buf = [0u8; FIRST_READ];
    let deadline = tokio::time::Instant::from_std(opening.deadline());
    loop {
        let ready = tokio::select! {
            r = stream.readable() => r,
            _ = tokio::time::sleep_until(deadline) => {
                return opening.handle_timeout(Instant::now());
            }
            _ = stop.wait_for(|&stop| stop) => return opening.stop(Instant::now()),
        };
        let now = Instant::now();
        if let Err(e) = ready {
            return opening.io_failed(e, now);
        }
        let opened = match stream.try_read(&mut buf) {
            Ok(0) => opening.handle_eof(now),
            Ok(n) => opening.handle_input(&buf[..n], now),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => opening.io_failed(e, now),
        };
        if !matches!(opened, Opened::Incomplete) {
            return opened;
        }
    }
}

/// Serves an admitted connection, then frees its place.
async fn serve_connection(
    stream: TcpStream,
    mut conn: Connection,
    ticket: Ticket,
    config: Arc<Config>,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let end = drive(&stream, &mut conn, &config, stop).await;
    conn.finish(&end, Instant::now());
    drop(stream);
    drop(ticket);
}

/// Does what the connection asks, awaiting the socket, until it ends.
async fn drive(
    stream: &TcpStream,
    conn: &mut Connection,
    config: &Config,
    stop: watch::Receiver<bool>,
) -> End {
    let storage = &config.session.storage;
    let offload = storage.may_block();
    let spawns = storage.spawns_steps();
    // The read buffer is allocated while a request is handled and released
    // while the client is idle, so idle connections cost little memory.
    let mut buf = Vec::new();
    // One stop future and one deadline timer for the whole connection:
    // arming a timer per request would cost more than the request. The
    // timer is moved only when it fires early or a nearer deadline comes.
    let mut stop = stop;
    let stopped = stop.wait_for(|&stop| stop);
    tokio::pin!(stopped);
    let mut stop_seen = false;
    let timer = tokio::time::sleep(config.idle_timeout);
    tokio::pin!(timer);
    loop {
        match conn.poll() {
            Action::Send(bytes) => {
                let sent = stream.try_write(bytes);
                after_write(sent, stream, conn).await;
            }
            Action::SendFile { fd, offset, len } => {
                let mut offset = offset;
                let sent = stream.try_io(Interest::WRITABLE, || {
                    rustix::fs::sendfile(stream, fd, Some(&mut offset), len)
                        .map_err(io::Error::from)
                });
                after_write(sent, stream, conn).await;
            }
            Action::SplicePipe { pipe, len } => {
                let sent = stream.try_io(Interest::WRITABLE, || {
                    rustix::pipe::splice(
                        pipe,
                        None,
                        stream,
                        None,
                        len,
                        rustix::pipe::SpliceFlags::MOVE | rustix::pipe::SpliceFlags::NONBLOCK,
                    )
                    .map_err(io::Error::from)
                });
                after_write(sent, stream, conn).await;
            }
            Action::Storage(step) => {
                let reply = if spawns {
                    // The backend's own task runs the step: no thread waits.
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    step.spawn(
                        &**storage,
                        Box::new(move |reply| {
                            let _ = tx.send(reply);
                        }),
                    );
                    match rx.await {
                        Ok(reply) => reply,
                        Err(_) => return End::Error("storage task ended without a reply".into()),
                    }
                } else if offload {
                    let storage = Arc::clone(storage);
                    match tokio::task::spawn_blocking(move || step.run(&*storage)).await {
                        Ok(reply) => reply,
                        Err(e) => return End::Error(format!("storage task failed: {e}")),
                    }
                } else {
                    step.run(&**storage)
                };
                conn.storage_done(reply, Instant::now());
            }
            Action::ShutdownWrite => {
                let ok = shutdown_write(stream);
                conn.write_shut(ok, Instant::now());
            }
            Action::Receive => {
                if let Some(deadline) = conn.poll_timeout() {
                    let deadline = tokio::time::Instant::from_std(deadline);
                    if deadline < timer.deadline() {
                        timer.as_mut().reset(deadline);
                    }
                }
                let ready = tokio::select! {
                    biased;
                    r = stream.readable() => r,
                    _ = &mut timer => {
                        conn.handle_timeout(Instant::now());
                        if let Some(deadline) = conn.poll_timeout() {
                            timer.as_mut().reset(tokio::time::Instant::from_std(deadline));
                        }
                        continue;
                    }
                    _ = &mut stopped, if !stop_seen => {
                        stop_seen = true;
                        conn.stop();
                        continue;
                    }
                };
                if let Err(e) = ready {
                    conn.io_failed(e);
                    continue;
                }
                // Start small (most requests are a few dozen bytes) and grow
                // when a read fills the buffer: 10,000 clients sending `quit`
                // at once then cost 1 KiB each, not 16.
                if buf.is_empty() {
                    buf = vec![0u8; FIRST_READ];
                } else if buf.len() < READ_BUF {
                    buf.resize(READ_BUF, 0);
                }
                match stream.try_read(&mut buf) {
                    Ok(0) => conn.handle_eof(Instant::now()),
                    Ok(n) => {
                        conn.handle_input(&buf[..n], Instant::now());
                        if n < buf.len() {
                            buf = Vec::new();
                        }
                    }
                    // A stale readiness (new sockets start out "ready").
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        buf = Vec::new();
                        conn.new_turn();
                    }
                    Err(e) => conn.io_failed(e),
                }
            }
            Action::Yield => tokio::task::yield_now().await,
            Action::Sleep => {
                if let Some(wake) = conn.poll_timeout() {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
                }
                conn.handle_timeout(Instant::now());
            }
            Action::Park => return End::Error("waiting for a storage step never run".into()),
            Action::Close(end) => return end,
        }
    }
}

/// Serves `/metrics` scrapes as tasks of the runtime.
async fn serve_metrics(listener: tokio::net::TcpListener) {
    use crate::metrics::endpoint::{answer, MAX_HEAD, TIMEOUT};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        tokio::spawn(async move {
            let scrape = async {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
                    let n = stream.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                stream.write_all(&answer(&head)).await?;
                stream.shutdown().await
            };
            let _ = tokio::time::timeout(TIMEOUT, scrape).await;
        });
    }
}

/// Reports a write (of bytes, `sendfile` or `splice`) to the connection,
/// or waits for the socket if it was full.
async fn after_write(sent: io::Result<usize>, stream: &TcpStream, conn: &mut Connection) {
    match sent {
        Ok(n) => conn.sent(n, Instant::now()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_writable(stream, conn).await,
        Err(e) => conn.io_failed(e),
    }
}

/// Waits until the socket takes bytes again, or the connection's write
/// deadline passes. The timer is armed only here, when the socket is full.
async fn wait_writable(stream: &TcpStream, conn: &mut Connection) {
    // Waiting ends the turn.
    conn.new_turn();
    let ready = match conn.poll_timeout() {
        Some(deadline) => {
            let deadline = tokio::time::Instant::from_std(deadline);
            match tokio::time::timeout_at(deadline, stream.writable()).await {
                Ok(r) => r,
                Err(_) => return conn.handle_timeout(Instant::now()),
            }
        }
        None => stream.writable().await,
    };
    if let Err(e) = ready {
        conn.io_failed(e);
    }
}

/// Shuts down the write side: the client sees end of file at once.
fn shutdown_write(stream: &TcpStream) -> bool {
    rustix::net::shutdown(stream, rustix::net::Shutdown::Write).is_ok()
}
