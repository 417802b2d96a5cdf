//! How the checker reaches the server: a direct TCP connection to an
//! address, or a [`Dialer`] the caller supplies: a SOCKS5 proxy (Tor's, to
//! check an onion service the way a classmate reaches it), or a layer on
//! each direct connection, such as TLS. The suite itself only ever needs
//! "a new connected stream within this time", carrying HFTP's bytes.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

type Open = Arc<dyn Fn(Duration) -> io::Result<TcpStream> + Send + Sync>;
type Wrap = Arc<dyn Fn(TcpStream, Duration) -> io::Result<TcpStream> + Send + Sync>;

/// Opens connections some other way than a bare direct connect: a
/// blocking call that returns a stream ready for HFTP (a proxy's
/// handshake done, a TLS session relayed).
#[derive(Clone)]
pub struct Dialer {
    label: String,
    way: Way,
}

#[derive(Clone)]
enum Way {
    /// Opens the whole way itself, through a proxy.
    Proxied(Open),
    /// Connects straight to the server's address (`None`: not known yet;
    /// [`Dialer::at`] sets it), then passes the stream through the layer.
    Layered(Option<SocketAddr>, Wrap),
}

impl Dialer {
    /// Connections through a proxy: `label` names the route in reports
    /// (`xyz.onion:19500 through socks5h://127.0.0.1:9050`); `open` gets
    /// the longest it may take. A half-close does not cross a proxy, and
    /// its delays count (see [`Route::is_indirect`]).
    pub fn new(
        label: impl Into<String>,
        open: impl Fn(Duration) -> io::Result<TcpStream> + Send + Sync + 'static,
    ) -> Dialer {
        Dialer {
            label: label.into(),
            way: Way::Proxied(Arc::new(open)),
        }
    }

    /// Direct connections to the server's address, each passed through
    /// `wrap` (with the longest it may take) before the suite uses it: a
    /// TLS handshake, say. `label` says what the layer is (`over TLS`),
    /// after the address in reports. Restarts of a supervised server on
    /// a new port keep the layer.
    pub fn layered(
        label: impl Into<String>,
        wrap: impl Fn(TcpStream, Duration) -> io::Result<TcpStream> + Send + Sync + 'static,
    ) -> Dialer {
        Dialer {
            label: label.into(),
            way: Way::Layered(None, Arc::new(wrap)),
        }
    }

    /// Whether the connections go through a proxy.
    pub fn is_proxied(&self) -> bool {
        matches!(self.way, Way::Proxied(_))
    }

    /// The same dialer, a layered one aimed at `addr`.
    pub fn at(&self, addr: SocketAddr) -> Dialer {
        match &self.way {
            Way::Proxied(_) => self.clone(),
            Way::Layered(_, wrap) => Dialer {
                label: self.label.clone(),
                way: Way::Layered(Some(addr), Arc::clone(wrap)),
            },
        }
    }

    fn open(&self, timeout: Duration) -> io::Result<TcpStream> {
        match &self.way {
            Way::Proxied(open) => open(timeout),
            Way::Layered(Some(addr), wrap) => {
                wrap(TcpStream::connect_timeout(addr, timeout)?, timeout)
            }
            Way::Layered(None, _) => Err(io::Error::other("no address to connect to")),
        }
    }
}

impl fmt::Debug for Dialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Dialer").field(&self.label).finish()
    }
}

impl fmt::Display for Dialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.way {
            Way::Proxied(_) => f.write_str(&self.label),
            Way::Layered(Some(addr), _) => write!(f, "{addr} {}", self.label),
            Way::Layered(None, _) => f.write_str(&self.label),
        }
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
            Route::Dialed(dialer) => dialer.open(timeout),
        }
    }

    /// Whether connections pass through something else (a proxy) whose
    /// delays the suite must allow for, and whose resets may be its own.
    /// A layer on direct connections (TLS) is not: it passes on what the
    /// server does, a reset as a reset.
    pub fn is_indirect(&self) -> bool {
        matches!(self, Route::Dialed(dialer) if dialer.is_proxied())
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Direct(addr) => addr.fmt(f),
            Route::Dialed(dialer) => dialer.fmt(f),
        }
    }
}
