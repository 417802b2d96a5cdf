//! Where to connect: `HOST`, `HOST:PORT`, `[IPv6]:PORT`, optionally through
//! a SOCKS5 proxy, optionally over TLS, with timeouts.

use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::stream::Stream;
use crate::tls::Tls;
use crate::Client;

/// The HFTP port when a target names none.
pub const DEFAULT_PORT: u16 = 19500;

/// Default connect, read and write timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A total time limit (curl's `--max-time`): past `at`, every connect,
/// read and write fails with [`Error::MaxTime`], however steadily bytes
/// arrive. The per-operation timeout alone cannot stop a server that drips
/// one byte per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    pub at: Instant,
    /// The limit as given, for the message.
    pub limit: Duration,
}

impl Deadline {
    /// The deadline `limit` from now.
    pub fn after(limit: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + limit,
            limit,
        }
    }

    /// Time left, or the error once it has passed.
    pub fn remaining(&self, what: &str) -> Result<Duration> {
        match self.at.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(left),
            _ => Err(Error::MaxTime {
                what: what.to_owned(),
                limit: self.limit,
            }),
        }
    }
}

/// The wait allowed for one connect, read or write: the per-operation
/// `timeout` (zero: none), shortened to what is left before `deadline`.
/// `None` means wait forever.
pub(crate) fn wait_limit(
    timeout: Duration,
    deadline: Option<&Deadline>,
    what: &str,
) -> Result<Option<Duration>> {
    let timeout = (!timeout.is_zero()).then_some(timeout);
    Ok(match deadline {
        None => timeout,
        Some(d) => {
            let left = d.remaining(what)?;
            Some(timeout.map_or(left, |t| t.min(left)))
        }
    })
}

/// A flag that a signal handler sets (Ctrl-C): every connection made from
/// an endpoint with it checks it before each read and when a read is
/// interrupted (`EINTR`), and then fails with [`Error::Interrupted`].
#[derive(Clone, Copy, Debug)]
pub struct Interrupt(pub &'static std::sync::atomic::AtomicBool);

impl Interrupt {
    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl PartialEq for Interrupt {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}
impl Eq for Interrupt {}

/// A timeout that fired because the deadline was near is the deadline's.
pub(crate) fn blame_deadline(deadline: Option<&Deadline>, err: Error, what: &str) -> Error {
    match deadline {
        Some(d) if err.exit_code() == crate::exit::TIMEOUT => {
            d.remaining(what).err().unwrap_or(err)
        }
        _ => err,
    }
}

/// A SOCKS5 proxy (RFC 1928, no authentication).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// `socks5h://`: the proxy resolves the target's name (needed for
    /// `.onion` names). `socks5://`: names are resolved locally.
    pub remote_dns: bool,
}

impl Proxy {
    /// Parses `socks5h://HOST:PORT` or `socks5://HOST:PORT` (port default 1080).
    ///
    /// ```
    /// let p = hftp_client::Proxy::parse("socks5h://127.0.0.1:9050").unwrap();
    /// assert!(p.remote_dns);
    /// assert_eq!(p.port, 9050);
    /// ```
    pub fn parse(url: &str) -> Result<Proxy> {
        let (remote_dns, rest) = if let Some(rest) = url.strip_prefix("socks5h://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("socks5://") {
            (false, rest)
        } else {
            return Err(Error::Usage(format!(
                "proxy {url:?}: expected socks5h://HOST:PORT or socks5://HOST:PORT"
            )));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = split_host_port(rest, 1080)
            .map_err(|why| Error::Usage(format!("proxy {url:?}: {why}")))?;
        Ok(Proxy {
            host,
            port,
            remote_dns,
        })
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.remote_dns { "socks5h" } else { "socks5" };
        write!(f, "{scheme}://{}", HostPort(&self.host, self.port))
    }
}

/// A server to talk to, and how: the recipe for new connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub proxy: Option<Proxy>,
    /// Connect timeout, and the longest a read or write may wait.
    pub timeout: Duration,
    /// Ask for `raw` slices (falling back to base64 on classic servers).
    pub raw: bool,
    /// Total time limit for everything done through this endpoint.
    pub deadline: Option<Deadline>,
    /// Stop when this flag is set (Ctrl-C).
    pub interrupt: Option<Interrupt>,
    /// Wrap every connection in TLS (`hftps://`, `--tls`): through a
    /// proxy, TLS runs inside the proxied connection, end to end.
    pub tls: Option<Tls>,
}

impl Endpoint {
    /// Parses `HOST`, `HOST:PORT`, `[IPv6]:PORT` or a bare IPv6 address; the
    /// port defaults to [`DEFAULT_PORT`].
    ///
    /// ```
    /// use hftp_client::Endpoint;
    /// let e = Endpoint::parse("[::1]:2000").unwrap();
    /// assert_eq!((e.host.as_str(), e.port), ("::1", 2000));
    /// assert_eq!(Endpoint::parse("example.org").unwrap().port, 19500);
    /// assert!(Endpoint::parse("host:notaport").is_err());
    /// ```
    pub fn parse(target: &str) -> Result<Endpoint> {
        match Endpoint::parse_url(target)? {
            (endpoint, None) => Ok(endpoint),
            (_, Some(name)) => Err(Error::Usage(format!(
                "target {target:?}: a file name ({name:?}) is not expected here"
            ))),
        }
    }

    /// Parses a target as [`parse`](Endpoint::parse) does, or a URL
    /// `hftp://HOST[:PORT][/NAME]` (curl's habit), returning the file name
    /// of the URL if it has one. `hftps://` is the same over TLS (trusting
    /// the system's CAs; see [`Endpoint::with_tls`]); its default port is
    /// HFTP's too, 19500.
    ///
    /// ```
    /// use hftp_client::Endpoint;
    /// let (e, name) = Endpoint::parse_url("hftp://[::1]:2000/hola.txt").unwrap();
    /// assert_eq!((e.host.as_str(), e.port, name.as_deref()), ("::1", 2000, Some("hola.txt")));
    /// let (e, name) = Endpoint::parse_url("hftp://example.org/").unwrap();
    /// assert_eq!((e.port, name), (19500, None));
    /// assert!(e.tls.is_none());
    /// let (e, _) = Endpoint::parse_url("hftps://example.org/hola.txt").unwrap();
    /// assert_eq!((e.port, e.tls.is_some()), (19500, true));
    /// assert!(Endpoint::parse_url("http://example.org/x").is_err());
    /// ```
    pub fn parse_url(target: &str) -> Result<(Endpoint, Option<String>)> {
        let bad = |why: &str| Error::Usage(format!("target {target:?}: {why}"));
        let mut tls = None;
        let (authority, name) = match target.split_once("://") {
            None => (target, None),
            Some((scheme, rest))
                if scheme.eq_ignore_ascii_case("hftp") || scheme.eq_ignore_ascii_case("hftps") =>
            {
                if scheme.eq_ignore_ascii_case("hftps") {
                    tls = Some(Tls::new());
                }
                match rest.split_once('/') {
                    None | Some((_, "")) => (rest.strip_suffix('/').unwrap_or(rest), None),
                    Some((_, name)) if name.contains('/') => {
                        return Err(bad("HFTP has no directories (one name after the host)"))
                    }
                    Some((authority, name)) => (authority, Some(name.to_owned())),
                }
            }
            Some((scheme, _)) => {
                return Err(bad(&format!(
                    "{scheme}:// is not HFTP (use hftp://HOST[:PORT]/NAME, or hftps:// for TLS)"
                )))
            }
        };
        let (host, port) = split_host_port(authority, DEFAULT_PORT).map_err(|why| bad(&why))?;
        let endpoint = Endpoint {
            host,
            port,
            proxy: None,
            timeout: DEFAULT_TIMEOUT,
            raw: true,
            deadline: None,
            interrupt: None,
            tls,
        };
        Ok((endpoint, name))
    }

    pub fn with_proxy(mut self, proxy: Option<Proxy>) -> Endpoint {
        self.proxy = proxy;
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Endpoint {
        self.timeout = timeout;
        self
    }

    /// A total time limit for every connection made from here on.
    pub fn with_deadline(mut self, deadline: Option<Deadline>) -> Endpoint {
        self.deadline = deadline;
        self
    }

    /// Stop every connection made from here on once `interrupt` is set.
    pub fn with_interrupt(mut self, interrupt: Option<Interrupt>) -> Endpoint {
        self.interrupt = interrupt;
        self
    }

    /// Speak TLS on every connection (or not: `None`), as `hftps://` does.
    pub fn with_tls(mut self, tls: Option<Tls>) -> Endpoint {
        self.tls = tls;
        self
    }

    /// Whether to use `raw` slices where the server has them (default true).
    pub fn with_raw(mut self, raw: bool) -> Endpoint {
        self.raw = raw;
        self
    }

    /// Opens a new connection.
    pub fn connect(&self) -> Result<Client> {
        self.open()
            .map_err(|e| blame_deadline(self.deadline.as_ref(), e, &self.connecting()))
    }

    /// Opens a connection to the server, through the proxy if there is
    /// one (its handshake done), then TLS if the endpoint has it (its
    /// handshake done too), without a word of HFTP: for tools that speak
    /// the protocol themselves (`hftp check`, `hftp bench`).
    pub fn open_stream(&self) -> Result<Stream> {
        self.stream()
            .map_err(|e| blame_deadline(self.deadline.as_ref(), e, &self.connecting()))
    }

    /// Opens the TCP connection only (through the proxy, if any), even
    /// when the endpoint has TLS: for a caller that runs the handshake
    /// itself, on a session from [`Endpoint::tls_session`] (the load
    /// generator's non-blocking loop).
    pub fn open_tcp(&self) -> Result<TcpStream> {
        self.tcp()
            .map_err(|e| blame_deadline(self.deadline.as_ref(), e, &self.connecting()))
    }

    /// Runs this endpoint's TLS handshake (if it has TLS) on a connection
    /// the caller opened to it.
    pub fn start_tls(&self, tcp: TcpStream) -> Result<Stream> {
        self.secure(tcp)
            .map_err(|e| blame_deadline(self.deadline.as_ref(), e, &self.connecting()))
    }

    /// A new TLS session for one connection to this endpoint (its SNI the
    /// host's name), not yet started; `None` without TLS. Sessions share
    /// the configuration, read once.
    pub fn tls_session(&self) -> Result<Option<rustls::ClientConnection>> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let name = crate::tls::server_name(&self.host)?;
        rustls::ClientConnection::new(tls.client_config()?, name)
            .map(Some)
            .map_err(|e| Error::Internal(format!("TLS session: {e}")))
    }

    fn stream(&self) -> Result<Stream> {
        let tcp = self.tcp()?;
        self.secure(tcp)
    }

    fn secure(&self, tcp: TcpStream) -> Result<Stream> {
        let Some(tls) = &self.tls else {
            return Ok(Stream::plain(tcp));
        };
        let peer = self.to_string();
        let wait = wait_limit(self.timeout, self.deadline.as_ref(), &self.connecting())?;
        set_timeouts(&tcp, wait, &peer)?;
        crate::tls::handshake(tls, &self.host, &peer, tcp, wait).map(Stream::tls)
    }

    fn tcp(&self) -> Result<TcpStream> {
        match &self.proxy {
            None => connect_direct(
                &self.host,
                self.port,
                wait_limit(self.timeout, self.deadline.as_ref(), &self.connecting())?,
                &self.to_string(),
            ),
            Some(proxy) => self.connect_via(proxy),
        }
    }

    fn open(&self) -> Result<Client> {
        Client::from_stream(self.stream()?, self)
    }

    /// Whether the server's certificate goes unchecked (`--insecure`).
    pub fn is_insecure(&self) -> bool {
        self.tls.as_ref().is_some_and(Tls::is_insecure)
    }

    fn connect_via(&self, proxy: &Proxy) -> Result<TcpStream> {
        let what = format!("proxy {proxy}");
        let wait = wait_limit(self.timeout, self.deadline.as_ref(), &what)?;
        let mut stream = connect_direct(&proxy.host, proxy.port, wait, &what)?;
        set_timeouts(
            &stream,
            wait_limit(self.timeout, self.deadline.as_ref(), &what)?,
            &what,
        )?;
        socks5_handshake(&mut stream, self, proxy)?;
        Ok(stream)
    }
}

impl Endpoint {
    fn connecting(&self) -> String {
        format!("connecting to {self}")
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        HostPort(&self.host, self.port).fmt(f)
    }
}

struct HostPort<'a>(&'a str, u16);

impl fmt::Display for HostPort<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.contains(':') {
            write!(f, "[{}]:{}", self.0, self.1)
        } else {
            write!(f, "{}:{}", self.0, self.1)
        }
    }
}

fn split_host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("missing ']' after an IPv6 address")?;
        host.parse::<Ipv6Addr>()
            .map_err(|_| format!("{host:?} is not an IPv6 address"))?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or("expected ':PORT' after ']'")?,
                ),
            ),
        }
    } else if s.matches(':').count() > 1 {
        s.parse::<Ipv6Addr>()
            .map_err(|_| "more than one ':' (write an IPv6 address as [ADDR]:PORT)".to_owned())?;
        (s, None)
    } else if let Some((host, port)) = s.split_once(':') {
        (host, Some(port))
    } else {
        (s, None)
    };
    if host.is_empty() {
        return Err("empty host name".into());
    }
    if host
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b == b'/' || b == b'@')
    {
        return Err(format!("{host:?} is not a host name"));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(format!("{p:?} is not a port number (1-65535)")),
        },
    };
    Ok((host.to_owned(), port))
}

/// Connects to the first address of `host` that answers; `timeout` `None`
/// waits as long as the system does (`connect_timeout` refuses zero).
fn connect_direct(
    host: &str,
    port: u16,
    timeout: Option<Duration>,
    what: &str,
) -> Result<TcpStream> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|source| Error::Connect {
            target: what.to_owned(),
            source,
        })?
        .collect();
    let mut last = None;
    for addr in &addrs {
        let stream = match timeout {
            Some(t) => TcpStream::connect_timeout(addr, t),
            None => TcpStream::connect(addr),
        };
        match stream {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    let source = last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the name resolves to no address",
        )
    });
    Err(Error::Connect {
        target: what.to_owned(),
        source,
    })
}

/// Sets the read and write timeouts (`None`: wait forever).
pub(crate) fn set_timeouts(
    stream: &TcpStream,
    timeout: Option<Duration>,
    what: &str,
) -> Result<()> {
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .and_then(|()| stream.set_nodelay(true))
        .map_err(|source| Error::Network {
            what: what.to_owned(),
            source,
        })
}

/// The client side of RFC 1928: no authentication, CONNECT.
fn socks5_handshake(stream: &mut TcpStream, target: &Endpoint, proxy: &Proxy) -> Result<()> {
    let io_err = |source: std::io::Error| {
        if crate::error::is_timeout(&source) {
            Error::Timeout {
                what: format!("proxy {proxy}"),
            }
        } else if source.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::Proxy(format!(
                "{proxy} closed the connection during the handshake"
            ))
        } else {
            Error::Proxy(format!("{proxy}: {source}"))
        }
    };
    stream.write_all(&[5, 1, 0]).map_err(io_err)?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).map_err(io_err)?;
    match choice {
        [5, 0] => {}
        [5, 0xff] => {
            return Err(Error::Proxy(format!(
                "{proxy} requires authentication (not supported)"
            )))
        }
        other => {
            return Err(Error::Proxy(format!(
                "{proxy} is not a SOCKS5 proxy (answered {other:?})"
            )))
        }
    }
    let mut req = vec![5, 1, 0];
    let ip = match target.host.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) if proxy.remote_dns => None,
        Err(_) => {
            let addr = (target.host.as_str(), target.port)
                .to_socket_addrs()
                .map_err(|source| Error::Connect {
                    target: target.to_string(),
                    source,
                })?
                .next()
                .ok_or_else(|| Error::Connect {
                    target: target.to_string(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
                })?;
            Some(addr.ip())
        }
    };
    match ip {
        Some(IpAddr::V4(v4)) => {
            req.push(1);
            req.extend_from_slice(&v4.octets());
        }
        Some(IpAddr::V6(v6)) => {
            req.push(4);
            req.extend_from_slice(&v6.octets());
        }
        None => {
            let name = target.host.as_bytes();
            let len = u8::try_from(name.len())
                .map_err(|_| Error::Usage(format!("host name {:?} is too long", target.host)))?;
            req.push(3);
            req.push(len);
            req.extend_from_slice(name);
        }
    }
    req.extend_from_slice(&target.port.to_be_bytes());
    stream.write_all(&req).map_err(io_err)?;
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).map_err(io_err)?;
    if head[0] != 5 {
        return Err(Error::Proxy(format!("{proxy} sent a malformed reply")));
    }
    if head[1] != 0 {
        let why = match head[1] {
            1 => "general failure",
            2 => "connection not allowed by ruleset",
            3 => "network unreachable",
            4 => "host unreachable",
            5 => "connection refused",
            6 => "TTL expired",
            7 => "command not supported",
            8 => "address type not supported",
            _ => "unknown error",
        };
        return Err(Error::Proxy(format!(
            "{proxy} could not reach {target}: {why} (SOCKS5 reply {})",
            head[1]
        )));
    }
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len).map_err(io_err)?;
            usize::from(len[0]) + 2
        }
        other => {
            return Err(Error::Proxy(format!(
                "{proxy} sent an unknown address type {other}"
            )))
        }
    };
    let mut bound = vec![0u8; rest];
    stream.read_exact(&mut bound).map_err(io_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let ok = |s: &str| {
            let e = Endpoint::parse(s).unwrap();
            (e.host, e.port)
        };
        assert_eq!(ok("localhost"), ("localhost".into(), 19500));
        assert_eq!(ok("localhost:1"), ("localhost".into(), 1));
        assert_eq!(ok("127.0.0.1:65535"), ("127.0.0.1".into(), 65535));
        assert_eq!(ok("[::1]:80"), ("::1".into(), 80));
        assert_eq!(ok("[::1]"), ("::1".into(), 19500));
        assert_eq!(ok("::1"), ("::1".into(), 19500));
        assert_eq!(ok("abc.onion"), ("abc.onion".into(), 19500));
        for bad in [
            "", ":80", "h:", "h:0", "h:65536", "h:+1", "h:x", "[::1", "[x]:1", "[::1]x", "a:b:c",
            "a b", "h: 1",
        ] {
            assert!(
                matches!(Endpoint::parse(bad), Err(Error::Usage(_))),
                "{bad:?}"
            );
        }
        assert_eq!(Endpoint::parse("[::1]:5").unwrap().to_string(), "[::1]:5");
    }

    #[test]
    fn proxies() {
        let p = Proxy::parse("socks5h://localhost").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.remote_dns),
            ("localhost", 1080, true)
        );
        let p = Proxy::parse("socks5://[::1]:9050/").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.remote_dns),
            ("::1", 9050, false)
        );
        assert!(Proxy::parse("http://x:1").is_err());
        assert!(Proxy::parse("socks5h://").is_err());
    }

    #[test]
    fn tls_urls() {
        let (e, name) = Endpoint::parse_url("HFTPS://127.0.0.1:2000/a.txt").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, name.as_deref(), e.tls.is_some()),
            ("127.0.0.1", 2000, Some("a.txt"), true)
        );
        assert!(Endpoint::parse("hftps://h").unwrap().tls.is_some());
        assert!(Endpoint::parse("h").unwrap().tls.is_none());
        let err = Endpoint::parse_url("https://h/x").unwrap_err().to_string();
        assert!(err.contains("hftps://"), "{err}");
    }
}
