//! Binding the listening sockets.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

/// Pending connections the kernel may queue per listener.
const BACKLOG: i32 = 4096;

/// Resolves `host` (an IPv4 or IPv6 address or a host name such as
/// `localhost`) with `port` to every address it names, without duplicates.
pub fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    addrs.dedup();
    let mut unique = Vec::new();
    for a in addrs {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    Ok(unique)
}

/// Binds one listener. An IPv6 wildcard (`::`) bound alone also accepts
/// IPv4 (dual stack); next to other listeners it is IPv6 only, so that
/// `-a 0.0.0.0 -a ::` works.
pub fn bind(addr: SocketAddr, dual_stack: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(!(dual_stack && addr.ip().is_unspecified()))?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Raises the soft limit on open descriptors to the hard limit, so that
/// thousands of clients can connect. Returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// The warning for failed accepts (out of descriptors, typically), at most
/// once a second: a full descriptor table fails every accept until some
/// are freed, and one line says it as well as thousands.
#[derive(Debug, Default)]
pub struct AcceptFailures {
    last_warned: Option<std::time::Instant>,
}

impl AcceptFailures {
    pub fn report(&mut self, e: &io::Error) {
        let now = std::time::Instant::now();
        if self
            .last_warned
            .is_none_or(|t| now.duration_since(t).as_secs() >= 1)
        {
            tracing::warn!(error = %e, "accept failed, retrying");
            self.last_warned = Some(now);
        }
    }
}
