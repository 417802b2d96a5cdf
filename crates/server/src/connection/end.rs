//! How a connection ended, what it did, and the one log line that
//! says how it went.

use std::net::SocketAddr;
use std::time::Instant;

use crate::session::CloseReason;

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The server closed it after `quit` or a fatal error.
    Closed(CloseReason),
    /// The client closed it (normal without `quit` too).
    ClientClosed,
    /// No request byte for the idle timeout.
    IdleTimeout,
    /// The client read nothing of an answer for the write timeout.
    WriteTimeout,
    /// The server is shutting down.
    Shutdown,
    /// A socket or file error (reset, a file that shrank mid-slice, ...).
    Error(String),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Closed(r) => write!(f, "{r}"),
            End::ClientClosed => f.write_str("client closed"),
            End::IdleTimeout => f.write_str("idle timeout"),
            End::WriteTimeout => f.write_str("write timeout"),
            End::Shutdown => f.write_str("server shutdown"),
            End::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// Counters of one connection.
#[derive(Debug)]
pub struct ConnStats {
    pub peer: Option<SocketAddr>,
    /// The proxy the connection came through (`--proxy-protocol`); `peer`
    /// is then the client the proxy named.
    pub via: Option<SocketAddr>,
    /// TLS version, cipher suite and client certificate, once the
    /// handshake is done (`--tls-cert`).
    pub tls: Option<String>,
    pub started: Instant,
    pub bytes_sent: u64,
}

impl ConnStats {
    pub fn new(peer: Option<SocketAddr>, now: Instant) -> ConnStats {
        tracing::debug!(peer = ?peer, "connection accepted");
        ConnStats {
            peer,
            via: None,
            tls: None,
            started: now,
            bytes_sent: 0,
        }
    }

    /// Logs the connection's summary line.
    pub fn finish(&self, requests: u64, end: &End, now: Instant) {
        let duration_ms = now.saturating_duration_since(self.started).as_millis() as u64;
        let peer = self
            .peer
            .map(|p| p.to_string())
            .unwrap_or_else(|| "?".into());
        // Absent from the line when there is no proxy.
        let via = self.via.map(|v| v.to_string());
        let tls = self.tls.as_deref();
        match end {
            End::Error(_) => tracing::warn!(
                peer, via, tls, requests, bytes_sent = self.bytes_sent, duration_ms, end = %end,
                "connection closed"
            ),
            _ => tracing::info!(
                peer, via, tls, requests, bytes_sent = self.bytes_sent, duration_ms, end = %end,
                "connection closed"
            ),
        }
    }
}
