//! Server settings, as chosen on the command line.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use crate::connection::ConnectionConfig;
use crate::session::SessionConfig;
use crate::transport::address::AddressRules;

/// The concurrency strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// Tokio tasks, one per connection, on a few threads.
    Async,
    /// One OS thread per connection.
    Threads,
    /// A fixed pool of threads taking connections from a queue.
    Pool,
    /// One child process per connection.
    Fork,
    /// One thread, non-blocking sockets, an epoll readiness loop.
    Poll,
    /// Completion-based I/O: one io_uring per thread.
    Uring,
}

impl Model {
    pub const ALL: [Model; 6] = [
        Model::Async,
        Model::Threads,
        Model::Pool,
        Model::Fork,
        Model::Poll,
        Model::Uring,
    ];

    /// One line for `--help`: what the model is, and its catch.
    pub fn summary(self) -> &'static str {
        match self {
            Model::Async => {
                "Tokio tasks on one thread per core (default; scales to many idle clients)."
            }
            Model::Threads => "One OS thread per connection.",
            Model::Pool => {
                "A fixed pool of --workers threads behind an epoll loop; workers never wait for \
                 a client, so idle or slow clients hold no worker. --workers bounds requests \
                 worked on at once."
            }
            Model::Fork => "One process per connection (fork after accept).",
            Model::Poll => "One thread, an epoll readiness loop over non-blocking sockets.",
            Model::Uring => {
                "Completion-based I/O: one io_uring per --workers thread (Linux 5.19+); fails at \
                 start, never falls back, where io_uring is unavailable."
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Model::Async => "async",
            Model::Threads => "threads",
            Model::Pool => "pool",
            Model::Fork => "fork",
            Model::Poll => "poll",
            Model::Uring => "uring",
        }
    }
}

impl std::fmt::Display for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything a driver needs.
#[derive(Clone)]
pub struct Config {
    pub session: SessionConfig,
    pub model: Model,
    /// Threads of the pool model, runtime workers of the async model, or
    /// rings of the uring model.
    pub workers: usize,
    /// Connections served at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// Connections from one client address at once (0: no limit).
    pub max_per_ip: usize,
    /// A connection that sends no byte for this long is closed quietly.
    pub idle_timeout: Duration,
    /// A connection that accepts no byte of its answer for this long is closed.
    pub write_timeout: Duration,
    /// On SIGINT/SIGTERM, how long answers in flight may take to finish.
    pub shutdown_grace: Duration,
    /// Where `/metrics` is served (`--metrics`), bound before the drivers
    /// start; counting itself is switched on by [`crate::metrics::install`].
    pub metrics: Option<Arc<TcpListener>>,
    /// `--proxy-protocol`: every connection begins with a PROXY protocol
    /// header, which must be complete within this time; the client it names
    /// is the one admitted and logged (see [`crate::transport`]).
    pub proxy_protocol: Option<Duration>,
    /// `--tls-cert`: every connection is TLS (see [`crate::transport::tls`]).
    pub tls: Option<TlsSettings>,
    /// `--allow`/`--deny`.
    pub address_rules: AddressRules,
    /// `--limit-rate`: answer body bytes a second, per connection.
    pub limit_rate: Option<u64>,
}

/// TLS as `--tls-cert`, `--tls-key`, `--tls-client-ca` and
/// `--tls-handshake-timeout` set it.
#[derive(Clone)]
pub struct TlsSettings {
    pub config: Arc<rustls::ServerConfig>,
    /// A connection whose handshake is not complete by then is closed
    /// (and counted as refused).
    pub handshake_timeout: Duration,
}

impl Config {
    /// What each connection needs of these settings; counting goes where
    /// [`crate::metrics::install`] set it up, if it was called.
    pub fn connection(&self) -> ConnectionConfig {
        ConnectionConfig {
            max_line: self.session.max_line,
            idle_timeout: self.idle_timeout,
            write_timeout: self.write_timeout,
            write_batch: crate::body::WRITE_BATCH,
            flush_before_storage: self.session.storage.may_block(),
            metrics: crate::metrics::get(),
            limit_rate: self.limit_rate,
        }
    }
}

/// Read buffer per connection.
pub const READ_BUF: usize = 16 * 1024;

/// Connections accepted in one go before the loop looks at anything else
/// (signals, ready clients): a connect flood must not starve them.
pub const ACCEPT_BURST: usize = 256;
