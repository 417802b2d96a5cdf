//! What one connection needs to know, and nothing more: the server's
//! [`Config`](crate::config::Config) (listeners, model, workers...) stays
//! with the drivers and the endpoint, so that a connection can be built,
//! and tested, from these few fields.

use std::time::Duration;

use crate::metrics::Metrics;

/// Settings of one connection.
#[derive(Clone)]
pub struct ConnectionConfig {
    /// The longest request line (`--max-line`).
    pub max_line: usize,
    /// A connection that sends no byte for this long is closed quietly.
    pub idle_timeout: Duration,
    /// A connection that accepts no byte of its answer for this long is
    /// closed.
    pub write_timeout: Duration,
    /// Answers are batched up to this size before being written.
    pub write_batch: usize,
    /// The backend may block (a network round trip): answers already made
    /// are sent before a storage step instead of being batched with it.
    pub flush_before_storage: bool,
    /// Where requests and slices are counted (`--metrics`), if anywhere.
    pub metrics: Option<&'static Metrics>,
    /// `--limit-rate`: body bytes a second, per connection.
    pub limit_rate: Option<u64>,
}

impl ConnectionConfig {
    /// The defaults, with these timeouts: what a test needs.
    pub fn new(idle_timeout: Duration, write_timeout: Duration) -> ConnectionConfig {
        ConnectionConfig {
            max_line: hftp_proto::DEFAULT_MAX_LINE,
            idle_timeout,
            write_timeout,
            write_batch: crate::body::WRITE_BATCH,
            flush_before_storage: false,
            metrics: None,
            limit_rate: None,
        }
    }
}
