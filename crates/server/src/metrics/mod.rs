//! What the server counts, and how every model's counts reach one scrape.
//!
//! **What.** Connections open, accepted and refused by limit; requests by
//! command and status code; slice bytes by mode; request and slice
//! latency; storage operation latency and errors by backend; the model in
//! use. `hftp serve --metrics ADDR` serves them in the Prometheus text
//! format at `/metrics` ([`endpoint`], rendered by `prometheus-client` in
//! [`render`]).
//!
//! **How fork children report.** Every counter is an atomic in one block of
//! memory mapped `MAP_SHARED` before the first connection ([`shared`]):
//! threads share it as any memory, and a `fork` child writes to the very
//! same pages as its parent, so the parent's scrape sees a child's request
//! the moment it is counted, with no message and no merge. The counts are
//! exact in every model: a request is counted before its answer is handed
//! to the socket.
//!
//! **What it costs.** A relaxed atomic add per event (a few nanoseconds;
//! the shared cache line is the price of exact totals). With `--metrics`
//! absent nothing is counted at all.

pub mod endpoint;
mod render;
mod shared;

use std::sync::OnceLock;
use std::time::Duration;

use hftp_proto::{SliceMode, Status};

pub use render::render;
use shared::Counters;

/// Request commands as labelled: the five commands, `unknown` for a first
/// token that is none of them (`200`), `none` for a line that is not a
/// request at all (`100`, `101`).
pub const COMMANDS: [&str; 7] = [
    "get_file_listing",
    "get_metadata",
    "get_slice",
    "help",
    "quit",
    "unknown",
    "none",
];

/// Storage operations as labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageOp {
    List,
    Size,
    Open,
    Read,
}

impl StorageOp {
    pub const ALL: [StorageOp; 4] = [
        StorageOp::List,
        StorageOp::Size,
        StorageOp::Open,
        StorageOp::Read,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StorageOp::List => "list",
            StorageOp::Size => "size",
            StorageOp::Open => "open",
            StorageOp::Read => "read",
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    MaxConnections,
    MaxPerIp,
    /// `--proxy-protocol`: no valid PROXY header in time.
    ProxyHeader,
    /// `--allow`/`--deny`: the client's address is not let in.
    Address,
    /// `--tls-cert`: no TLS handshake completed in time, or a failed one
    /// (a plain client, a refused client certificate, no common version).
    TlsHandshake,
}

/// The process's counters, once `--metrics` asked for them.
pub struct Metrics {
    counters: &'static Counters,
    model: &'static str,
    backend: &'static str,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Starts counting. Call once, before the first connection (and so before
/// any fork); later calls keep the first setting.
pub fn install(model: &'static str, backend: &'static str) -> std::io::Result<()> {
    if METRICS.get().is_some() {
        return Ok(());
    }
    let counters = shared::map()?;
    let _ = METRICS.set(Metrics {
        counters,
        model,
        backend,
    });
    Ok(())
}

/// The counters, when counting.
pub fn get() -> Option<&'static Metrics> {
    METRICS.get()
}

fn command_index(command: &str) -> usize {
    COMMANDS
        .iter()
        .position(|c| *c == command)
        .unwrap_or(COMMANDS.len() - 2)
}

/// A connection was admitted.
pub fn connection_opened() {
    if let Some(m) = get() {
        m.counters.accepted.add(1);
        m.counters.open.add(1);
    }
}

/// An admitted connection ended.
pub fn connection_closed() {
    if let Some(m) = get() {
        m.counters.open.sub(1);
    }
}

/// A connection was refused by a limit.
pub fn connection_refused(why: Refusal) {
    if let Some(m) = get() {
        match why {
            Refusal::MaxConnections => m.counters.refused_max_connections.add(1),
            Refusal::MaxPerIp => m.counters.refused_max_per_ip.add(1),
            Refusal::ProxyHeader => m.counters.refused_proxy_header.add(1),
            Refusal::Address => m.counters.refused_address.add(1),
            Refusal::TlsHandshake => m.counters.refused_tls_handshake.add(1),
        }
    }
}

impl Metrics {
    /// A request was answered with `status` (for a slice: its head),
    /// `took` after its last byte was read.
    pub fn request(&self, command: &str, status: Status, took: Duration) {
        let status = Status::ALL.iter().position(|s| *s == status).unwrap_or(0);
        self.counters.requests[command_index(command)][status].add(1);
        self.counters.request_seconds.observe(took);
    }

    /// A slice body was sent whole: `bytes` on the wire after its head.
    pub fn slice_sent(&self, mode: SliceMode, bytes: u64, took: Duration) {
        let i = mode_index(mode);
        self.counters.slice_bytes[i].add(bytes);
        self.counters.slice_seconds[i].observe(took);
    }
}

/// A storage operation finished (`ok`: no backend failure).
pub fn storage(op: StorageOp, ok: bool, took: Duration) {
    if let Some(m) = get() {
        let i = op as usize;
        m.counters.storage_seconds[i].observe(took);
        if !ok {
            m.counters.storage_errors[i].add(1);
        }
    }
}

fn mode_index(mode: SliceMode) -> usize {
    match mode {
        SliceMode::Base64 => 0,
        SliceMode::Raw => 1,
    }
}
