//! # hftp-server — one protocol core, five ways to serve many clients
//!
//! - [`storage`]: the served files, behind a small interface.
//! - [`session`]: the protocol state of one connection (sans-IO over
//!   [`hftp_proto`]), shared by every driver.
//! - [`body`]: streaming slice bodies with bounded memory (and `sendfile`).
//! - [`drivers`]: the concurrency strategies: `async`, `threads`, `pool`,
//!   `fork`, `poll`. Each module's documentation is a short lesson.
//! - [`listen`]: binding the listening sockets.

pub mod admission;
pub mod blocking;
pub mod body;
pub mod config;
pub mod connection;
pub mod drivers;
pub mod listen;
pub mod memory;
pub mod privileges;
pub mod readiness;
pub mod session;
pub mod signals;
pub mod storage;

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
    }
}
