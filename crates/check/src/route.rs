//! How the checker reaches the server: a direct TCP connection to an
//! address, or a [`Dialer`] the caller supplies, such as a SOCKS5 proxy
//! (Tor's, to check an onion service the way a classmate reaches it). The
//! suite itself only ever needs "a new connected stream within this time".

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Opens connections some other way than a direct connect: a blocking
/// call that returns a stream ready for HFTP (a proxy's handshake done).
#[derive(Clone)]
pub struct Dialer {
    label: String,
    open: Arc<dyn Fn(Duration) -> io::Result<TcpStream> + Send + Sync>,
}

impl Dialer {
    /// `label` names the route in reports (`xyz.onion:19500 through
    /// socks5h://127.0.0.1:9050`); `open` gets the longest it may take.
    pub fn new(
        label: impl Into<String>,
        open: impl Fn(Duration) -> io::Result<TcpStream> + Send + Sync + 'static,
    ) -> Dialer {
        Dialer {
            label: label.into(),
            open: Arc::new(open),
        }
    }
}

impl fmt::Debug for Dialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Dialer").field(&self.label).finish()
    }
}

/// Where new connections go.
#[derive(Clone, Debug)]
pub enum Route {
    Direct(SocketAddr),
    Dialed(Dialer),
}

impl Route {
    /// A new connection, within `timeout`.
    pub fn open(&self, timeout: Duration) -> io::Result<TcpStream> {
        match self {
            Route::Direct(addr) => TcpStream::connect_timeout(addr, timeout),
            Route::Dialed(dialer) => (dialer.open)(timeout),
        }
    }

    /// Whether connections pass through something else (a proxy) whose
    /// delays the suite must allow for.
    pub fn is_indirect(&self) -> bool {
        matches!(self, Route::Dialed(_))
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Direct(addr) => addr.fmt(f),
            Route::Dialed(dialer) => f.write_str(&dialer.label),
        }
    }
}
