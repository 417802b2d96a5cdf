//! [`Stream`]: a connection to a server, plain TCP or TLS over TCP, as
//! [`Endpoint::open_stream`](crate::Endpoint::open_stream) returns it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rustls::{ClientConnection, StreamOwned};

/// A connected stream to an HFTP server: TCP, or TLS over TCP (its
/// handshake done). Reads and writes carry HFTP's bytes either way; the
/// socket under it ([`Stream::tcp`]) holds the timeouts.
#[derive(Debug)]
pub struct Stream {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    pub(crate) fn plain(tcp: TcpStream) -> Stream {
        Stream {
            inner: Inner::Tcp(tcp),
        }
    }

    pub(crate) fn tls(tls: StreamOwned<ClientConnection, TcpStream>) -> Stream {
        Stream {
            inner: Inner::Tls(Box::new(tls)),
        }
    }

    /// The TCP socket under the stream: for its timeouts, `TCP_NODELAY`,
    /// addresses. Reading or writing it directly would corrupt TLS.
    pub fn tcp(&self) -> &TcpStream {
        match &self.inner {
            Inner::Tcp(tcp) => tcp,
            Inner::Tls(tls) => tls.get_ref(),
        }
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    /// The TLS version agreed (`TLSv1_3`), if TLS.
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        match &self.inner {
            Inner::Tcp(_) => None,
            Inner::Tls(tls) => tls.conn.protocol_version(),
        }
    }

    /// The application protocol the server chose by ALPN (`hftp`), if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        match &self.inner {
            Inner::Tcp(_) => None,
            Inner::Tls(tls) => tls.conn.alpn_protocol(),
        }
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    /// Sets the longest a read may wait (`None`: forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(timeout)
    }

    /// Sets the longest a write may wait (`None`: forever).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_write_timeout(timeout)
    }

    /// A second handle on the socket, to shut it down from another thread
    /// (which ends a read blocked on it, TLS or not).
    pub fn try_clone_socket(&self) -> io::Result<TcpStream> {
        self.tcp().try_clone()
    }

    /// Ends what we send, keeping what the server sends coming: TLS sends
    /// its `close_notify` first (in TLS 1.3 a half-close, as TCP's), then
    /// the socket's write side is shut.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        if let Inner::Tls(tls) = &mut self.inner {
            tls.conn.send_close_notify();
            while tls.conn.wants_write() {
                tls.conn.write_tls(&mut tls.sock)?;
            }
        }
        self.tcp().shutdown(Shutdown::Write)
    }

    /// The socket and, if TLS, its session, for a caller that drives both
    /// itself (a non-blocking loop).
    pub fn into_parts(self) -> (TcpStream, Option<ClientConnection>) {
        match self.inner {
            Inner::Tcp(tcp) => (tcp, None),
            Inner::Tls(tls) => {
                let (conn, tcp) = tls.into_parts();
                (tcp, Some(conn))
            }
        }
    }

    /// A plain socket carrying this connection's bytes, for code written
    /// for `TcpStream` (clones for a writer thread, half-closes,
    /// non-blocking reads): the socket itself for TCP; for TLS, one end of
    /// a new loopback connection whose other end a thread relays to and
    /// from the TLS session. The relay passes on everything the peer does:
    /// bytes, a half-close either way (`close_notify`), a reset; it ends
    /// when both directions are closed.
    pub fn into_tcp(self) -> io::Result<TcpStream> {
        match self.inner {
            Inner::Tcp(tcp) => Ok(tcp),
            Inner::Tls(tls) => {
                let (near, far) = loopback_pair()?;
                let (conn, tcp) = tls.into_parts();
                tcp.set_nonblocking(true)?;
                far.set_nonblocking(true)?;
                far.set_nodelay(true)?;
                near.set_nodelay(true)?;
                std::thread::Builder::new()
                    .name("hftp-tls-relay".into())
                    .spawn(move || Relay::new(conn, tcp, far).run())?;
                Ok(near)
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Tcp(tcp) => tcp.read(buf),
            // A close without close_notify is an end like any other here:
            // HFTP's replies carry their own lengths, so a reply cut short
            // is seen by the decoder anyway.
            Inner::Tls(tls) => match tls.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Tcp(tcp) => tcp.write(buf),
            Inner::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Tcp(tcp) => tcp.flush(),
            Inner::Tls(tls) => tls.flush(),
        }
    }
}

/// Two ends of a new loopback TCP connection. The listener is checked to
/// have accepted our own connection, not another process's.
fn loopback_pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    let near = TcpStream::connect(listener.local_addr()?)?;
    let mine = near.local_addr()?;
    loop {
        let (far, from) = listener.accept()?;
        if from == mine {
            return Ok((near, far));
        }
    }
}

/// Bytes held from the server for the local end before reading more.
const HELD: usize = 64 * 1024;
/// After the local end stopped sending, how long the relay waits for
/// the server to finish (the kernel's own FIN_WAIT2 time).
const LINGER: Duration = Duration::from_secs(60);

/// One thread's worth of relaying between a TLS session and a plain
/// loopback socket, both non-blocking.
struct Relay {
    conn: ClientConnection,
    tcp: TcpStream,
    local: TcpStream,
    /// Plaintext from the server not yet written to the local end.
    down: Vec<u8>,
    /// TCP's end arrived from the server.
    tcp_eof: bool,
    /// The server's side is over and its plaintext all taken
    /// (`close_notify`, or TCP's end).
    server_done: bool,
    /// The local end's write side was shut after `server_done`.
    local_shut: bool,
    /// When the local end stopped sending (close_notify sent then).
    local_done: Option<Instant>,
}

/// How the relay ends.
enum End {
    /// Both directions closed in order (or the linger ran out).
    Clean,
    /// Something broke: the local end is reset, as the server's was.
    Reset,
}

impl Relay {
    fn new(mut conn: ClientConnection, tcp: TcpStream, local: TcpStream) -> Relay {
        // The relay reads the local end only when nothing is pending.
        conn.set_buffer_limit(None);
        Relay {
            conn,
            tcp,
            local,
            down: Vec::new(),
            tcp_eof: false,
            server_done: false,
            local_shut: false,
            local_done: None,
        }
    }

    fn run(mut self) {
        if let End::Reset = self.pump() {
            // SO_LINGER 0: closing sends a reset, as the server did.
            let _ = rustix::net::sockopt::set_socket_linger(&self.local, Some(Duration::ZERO));
            let _ = rustix::net::sockopt::set_socket_linger(&self.tcp, Some(Duration::ZERO));
        }
    }

    fn pump(&mut self) -> End {
        use rustix::event::{PollFd, PollFlags};
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // Plaintext the session holds goes down first.
            while self.down.len() < HELD && !self.server_done {
                match self.conn.reader().read(&mut buf) {
                    Ok(0) => self.server_done = true,
                    Ok(n) => self.down.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // TCP's end without close_notify: an end all the same.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => self.server_done = true,
                    Err(_) => return End::Reset,
                }
            }
            while !self.down.is_empty() {
                match self.local.write(&self.down) {
                    Ok(n) => {
                        self.down.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // The local end is gone: so is the connection.
                    Err(_) => return End::Reset,
                }
            }
            if self.server_done && self.down.is_empty() && !self.local_shut {
                let _ = self.local.shutdown(Shutdown::Write);
                self.local_shut = true;
            }
            while self.conn.wants_write() {
                match self.conn.write_tls(&mut self.tcp) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return End::Reset,
                }
            }
            if self.local_shut && self.local_done.is_some() && !self.conn.wants_write() {
                return End::Clean;
            }
            let tcp_in = !self.tcp_eof && self.down.len() < HELD && self.conn.wants_read();
            let tcp_out = self.conn.wants_write();
            let local_in = self.local_done.is_none() && !self.conn.wants_write();
            let local_out = !self.down.is_empty();
            let flags = |read: bool, write: bool| {
                let mut f = PollFlags::empty();
                if read {
                    f |= PollFlags::IN;
                }
                if write {
                    f |= PollFlags::OUT;
                }
                f
            };
            // A socket with nothing wanted of it is left out: its hang-up
            // would wake the poll with nothing to do.
            let mut fds = Vec::with_capacity(2);
            if tcp_in || tcp_out {
                fds.push(PollFd::new(&self.tcp, flags(tcp_in, tcp_out)));
            }
            if local_in || local_out {
                fds.push(PollFd::new(&self.local, flags(local_in, local_out)));
            }
            let timeout = self.local_done.map(|at| {
                let left = LINGER.saturating_sub(at.elapsed());
                rustix::event::Timespec::try_from(left).unwrap_or_default()
            });
            if fds.is_empty() && timeout.is_none() {
                // Nothing can happen any more (cannot be reached: with
                // nothing pending the local end is read).
                return End::Clean;
            }
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(0) => return End::Clean,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return End::Reset,
            }
            let mut ready = fds.iter().map(|fd| !fd.revents().is_empty());
            let tcp_ready = (tcp_in || tcp_out) && ready.next().unwrap_or(false);
            let local_ready = (local_in || local_out) && ready.next().unwrap_or(false);
            drop(fds);
            if tcp_ready && tcp_in && self.read_tls().is_err() {
                return End::Reset;
            }
            if local_ready && local_in {
                match self.local.read(&mut buf) {
                    Ok(0) => {
                        // A half-close (or a close) of the local end.
                        self.conn.send_close_notify();
                        if self.flush_then_shut().is_err() {
                            return End::Reset;
                        }
                        self.local_done = Some(Instant::now());
                    }
                    Ok(n) => {
                        if self.conn.writer().write_all(&buf[..n]).is_err() {
                            return End::Reset;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(_) => return End::Reset,
                }
            }
        }
    }

    /// Sends what is pending (the `close_notify`), waiting for room a few
    /// seconds at most, then shuts the socket's write side.
    fn flush_then_shut(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.conn.wants_write() && Instant::now() < deadline {
            match self.conn.write_tls(&mut self.tcp) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut fds = [rustix::event::PollFd::new(
                        &self.tcp,
                        rustix::event::PollFlags::OUT,
                    )];
                    let wait = rustix::event::Timespec {
                        tv_sec: 0,
                        tv_nsec: 50_000_000,
                    };
                    let _ = rustix::event::poll(&mut fds, Some(&wait));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.tcp.shutdown(Shutdown::Write)
    }

    /// Reads what the server sent into the session. `Err` when the
    /// connection broke (a reset, a TLS error: its alert goes out first).
    fn read_tls(&mut self) -> Result<(), ()> {
        match self.conn.read_tls(&mut self.tcp) {
            Ok(0) => {
                self.tcp_eof = true;
                // Lets the session see the end (the reader then says how).
                let _ = self.conn.process_new_packets();
                Ok(())
            }
            Ok(_) => match self.conn.process_new_packets() {
                Ok(_) => Ok(()),
                Err(_) => {
                    let _ = self.conn.write_tls(&mut self.tcp);
                    Err(())
                }
            },
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(())
            }
            Err(_) => Err(()),
        }
    }
}
