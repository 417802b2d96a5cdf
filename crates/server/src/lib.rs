//! # hftp-server — one protocol core, six ways to serve many clients
//!
//! - [`storage`]: the served files, behind a small interface; storage calls
//!   are steps a connection asks for ([`storage::StorageStep`]), run inline
//!   or off a readiness loop (`storage::offload`).
//! - [`session`]: the protocol state of one connection (sans-IO over
//!   [`hftp_proto`]).
//! - [`connection`]: one client connection as a state machine without I/O
//!   (input, output, slice streaming, storage steps, close, deadlines);
//!   every driver owns one per client and only moves bytes and time.
//! - `body`: streaming answers with bounded memory: slice bodies (and
//!   `sendfile`), and listings a page at a time.
//! - `endpoint`: the front end of every connection, without I/O: the
//!   PROXY header, admission, refusals, the hand-over to a connection.
//! - `drivers`: the concurrency strategies: `async`, `threads`, `pool`,
//!   `fork`, `poll`, `uring`. Each module's documentation is a short lesson.
//! - `transport`: what comes before the protocol: the PROXY protocol
//!   header a load balancer sends (`--proxy-protocol`).
//! - [`listen`]: binding the listening sockets.
//! - [`metrics`]: counters shared by every model (fork children included),
//!   served in the Prometheus format.

pub(crate) mod admission;
pub(crate) mod body;
pub mod config;
pub mod connection;
pub(crate) mod drivers;
pub(crate) mod endpoint;
pub mod listen;
pub(crate) mod memory;
pub mod metrics;
pub(crate) mod pipe;
pub mod privileges;
pub mod session;
pub(crate) mod shared_memory;
pub(crate) mod signals;
pub mod storage;
pub(crate) mod transport;
pub(crate) mod wide;

pub use config::{Config, Model, TlsSettings};
pub use drivers::OnReady;
pub use transport::address::{parse_cidr, AddressRules};
pub use transport::tls::{ktls_available, server_config as tls_server_config};

use std::io;
use std::net::TcpListener;

/// Serves `listeners` with the strategy chosen in `config` until SIGINT or
/// SIGTERM, then shuts down gracefully.
pub fn serve(config: Config, listeners: Vec<TcpListener>, on_ready: OnReady) -> io::Result<()> {
    wide::init();
    drivers::serve(config, listeners, on_ready)
}
