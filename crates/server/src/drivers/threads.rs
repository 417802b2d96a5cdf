//! # `--model threads`: one OS thread per connection
//!
//! **How it works.** The main thread accepts; every accepted connection gets
//! its own thread, which reads a request, answers it with ordinary blocking
//! calls and loops. The code reads top to bottom like a single-client server.
//!
//! **Behind a proxy** (`--proxy-protocol`) the accept loop reads each new
//! connection's PROXY header, without blocking on any one client, and
//! admits the client it names before starting its thread.
//!
//! **What it costs.** Each thread has a stack (256 KiB of address space
//! here, see [`STACK_SIZE`], of which only the touched pages, tens of KiB, are resident) and a kernel
//! task; a request costs the context switches of waking its thread. Idle
//! clients each hold a thread.
//!
//! **Where it breaks.** Thousands of clients mean thousands of threads: memory
//! grows with the number of connections, the scheduler juggles them all, and
//! the process may hit its thread limit. Fine for dozens to a few thousand
//! clients; a slow or idle client costs one thread but never delays others.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;

use crate::config::Config;
use crate::drivers::blocking::{accept_loop, serve_connection};
use crate::drivers::tracker::Tracker;
use crate::drivers::OnReady;
use crate::endpoint::Endpoint;
use crate::signals::Signals;

/// Stack size of connection threads: the session needs little.
pub const STACK_SIZE: usize = 256 * 1024;

pub fn serve(config: Config, listeners: Vec<TcpListener>, on_ready: OnReady) -> io::Result<()> {
    let signals = Signals::install()?;
    on_ready();
    let tracker = Arc::new(Tracker::default());
    let endpoint = Endpoint::new(&config);
    let config = Arc::new(config);
    if let Some(l) = &config.metrics {
        crate::metrics::endpoint::spawn_thread(l.try_clone()?)?;
    }
    accept_loop(
        &listeners,
        &signals,
        &endpoint,
        None,
        |stream, conn, ticket| {
            let registration = tracker.register(&stream);
            let (config, tracker) = (Arc::clone(&config), Arc::clone(&tracker));
            let spawned = std::thread::Builder::new()
                .name("hftp-conn".into())
                .stack_size(STACK_SIZE)
                .spawn(move || {
                    let mut stream = stream;
                    serve_connection(&mut stream, conn, &config, tracker.stop_flag());
                    // Unregister before closing: shutdown must never touch
                    // a descriptor number that was reused.
                    drop(registration);
                    drop(stream);
                    drop(ticket);
                });
            if let Err(e) = spawned {
                // The closure, and so the connection, was dropped.
                tracing::warn!(error = %e, "cannot start a connection thread");
            }
        },
        || {},
    )?;
    drop(listeners);
    tracing::info!(
        open = tracker.live(),
        "stopping: no new connections; answers in flight finish"
    );
    tracker.stop();
    let left = tracker.wait_idle(config.shutdown_grace);
    tracing::info!(unfinished = left, "shut down");
    Ok(())
}
