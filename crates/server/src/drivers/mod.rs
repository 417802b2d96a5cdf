//! The concurrency strategies. Each one is a thin driver over the same
//! front end ([`Endpoint`](crate::endpoint::Endpoint): PROXY header,
//! admission) and the same [`Connection`](crate::connection::Connection),
//! which it only feeds bytes and time; read their module docs in this
//! order: `threads`, `pool`, `fork`, `poll`, `async_tasks`, `uring`.

pub mod async_tasks;
mod blocking;
pub mod fork;
mod page_cache;
pub mod poll;
pub mod pool;
mod reactor;
mod readiness;
pub mod threads;
mod tracker;
pub mod uring;
#[cfg(test)]
mod virtual_time;

use std::io;
use std::net::TcpListener;

use crate::config::{Config, Model};

/// Called once the server handles SIGINT/SIGTERM, just before it accepts
/// the first connection: the moment to announce that it is ready.
pub type OnReady = Box<dyn FnOnce() + Send>;

/// Serves `listeners` with the strategy chosen in `config`.
pub fn serve(config: Config, listeners: Vec<TcpListener>, on_ready: OnReady) -> io::Result<()> {
    match config.model {
        Model::Async => async_tasks::serve(config, listeners, on_ready),
        Model::Threads => threads::serve(config, listeners, on_ready),
        Model::Pool => pool::serve(config, listeners, on_ready),
        Model::Fork => fork::serve(config, listeners, on_ready),
        Model::Poll => poll::serve(config, listeners, on_ready),
        Model::Uring => uring::serve(config, listeners, on_ready),
    }
}
