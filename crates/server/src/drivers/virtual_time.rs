//! What the virtual-time tests of the loops share (`reactor`, `uring`):
//! a served directory, a server configuration, and non-blocking reads of
//! what a client got so far. The loops are driven over real loopback
//! sockets; only the clock they are handed is virtual.

use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Model};
use crate::session::SessionConfig;

pub const IDLE: Duration = Duration::from_secs(30);
pub const GRACE: Duration = Duration::from_secs(20);
/// Rounds any test may take: a bug is a failure, never a hang.
pub const MAX_ROUNDS: usize = 10_000;

/// A directory holding `files` (name, size), and a server over it.
pub fn served(model: Model, files: &[(&str, usize)]) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    for (name, size) in files {
        let bytes: Vec<u8> = (0..*size).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let storage = crate::storage::LocalDir::new(dir.path(), false).unwrap();
    let config = Config {
        session: SessionConfig {
            storage: Arc::new(storage),
            max_line: hftp_proto::DEFAULT_MAX_LINE,
        },
        model,
        workers: 1,
        max_connections: 1000,
        max_per_ip: 0,
        idle_timeout: IDLE,
        write_timeout: IDLE,
        shutdown_grace: GRACE,
        metrics: None,
        proxy_protocol: None,
        tls: None,
        address_rules: Default::default(),
        limit_rate: None,
    };
    (dir, config)
}

/// A client whose reads never wait.
pub fn client(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

/// Adds what arrived so far to `into` without waiting; `None` once the
/// server closed the connection.
pub fn received(s: &mut TcpStream, into: &mut Vec<u8>) -> Option<()> {
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(()),
            Err(_) => return None,
        }
    }
}
