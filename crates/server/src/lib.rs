//! # hftp-server — one protocol core, six ways to serve many clients
//!
//! - [`storage`]: the served files, behind a small interface; storage calls
//!   are steps a connection asks for ([`storage::StorageStep`]), run inline
//!   or off a readiness loop ([`storage::offload`]).
//! - [`session`]: the protocol state of one connection (sans-IO over
//!   [`hftp_proto`]).
//! - [`connection`]: one client connection as a state machine without I/O
//!   (input, output, slice streaming, storage steps, close, deadlines);
//!   every driver owns one per client and only moves bytes and time.
//! - [`body`]: streaming answers with bounded memory: slice bodies (and
//!   `sendfile`), and listings a page at a time.
//! - [`drivers`]: the concurrency strategies: `async`, `threads`, `pool`,
//!   `fork`, `poll`, `uring`. Each module's documentation is a short lesson.
//! - [`transport`]: what comes before the protocol: the PROXY protocol
//!   header a load balancer sends (`--proxy-protocol`).
//! - [`listen`]: binding the listening sockets.
//! - [`metrics`]: counters shared by every model (fork children included),
//!   served in the Prometheus format.

pub(crate) mod admission;
pub(crate) mod blocking;
pub mod body;
pub mod config;
pub mod connection;
pub mod drivers;
pub mod listen;
pub(crate) mod memory;
pub mod metrics;
pub mod privileges;
pub(crate) mod readiness;
pub mod session;
pub(crate) mod signals;
pub mod storage;
pub mod transport;

pub use config::{Config, Model};

use std::io;
use std::net::TcpListener;

/// Called once the server handles SIGINT/SIGTERM, just before it accepts
/// the first connection: the moment to announce that it is ready.
pub type OnReady = Box<dyn FnOnce() + Send>;

/// Serves `listeners` with the strategy chosen in `config` until SIGINT or
/// SIGTERM, then shuts down gracefully.
pub fn serve(config: Config, listeners: Vec<TcpListener>, on_ready: OnReady) -> io::Result<()> {
    match config.model {
        Model::Async => drivers::async_tasks::serve(config, listeners, on_ready),
        Model::Threads => drivers::threads::serve(config, listeners, on_ready),
        Model::Pool => drivers::pool::serve(config, listeners, on_ready),
        Model::Fork => drivers::fork::serve(config, listeners, on_ready),
        Model::Poll => drivers::poll::serve(config, listeners, on_ready),
        Model::Uring => drivers::uring::serve(config, listeners, on_ready),
    }
}
