//! # hftp-client — a blocking HFTP client
//!
//! [`Endpoint`] says where a server is (through which SOCKS5 proxy, and
//! whether over TLS: [`Tls`]);
//! [`Client`] is one connection to it, with one method per request;
//! [`download`] fetches a whole file into place, in parallel segments over
//! several connections, resumably. Every reply is checked byte for byte by
//! the protocol crate's [`ReplyDecoder`](hftp_proto::reply::ReplyDecoder),
//! and slices are streamed into a writer, so memory does not grow with the
//! size of a slice.
//!
//! ```no_run
//! use hftp_client::Endpoint;
//!
//! # fn main() -> hftp_client::Result<()> {
//! let mut client = Endpoint::parse("127.0.0.1:19500")?.connect()?;
//! for name in client.list()? {
//!     println!("{name}: {} bytes", client.metadata(&name)?);
//! }
//! let mut first_bytes = Vec::new();
//! client.slice_to("hola.txt", 0, 5, &mut first_bytes)?;
//! client.quit()?;
//! # Ok(())
//! # }
//! ```

use std::io::{self, Read, Write};
use std::net::TcpStream;

use hftp_proto::reply::{Expect, Part, Reply, ReplyDecoder, ReplyError};
use hftp_proto::{FileName, NameError, Range, Request, SliceMode, Status};

mod download;
mod endpoint;
mod error;
mod stream;
pub mod tls;

pub use download::{
    download, download_from, part_paths, Backoff, Download, DownloadEvent, DownloadOptions,
    NoProgress, Progress, PART_SUFFIX, STATE_SUFFIX,
};
pub use endpoint::{Deadline, Endpoint, Interrupt, Proxy, DEFAULT_PORT, DEFAULT_TIMEOUT};
pub use error::{exit, iec, insecure_warning, Error, Result};
pub use stream::Stream;
pub use tls::{Identity, Tls, TlsProblem, Trust};

/// Requests of `ls -l`-style batches sent before their replies are read.
const PIPELINE: usize = 32;

/// Read buffer size.
const READ_BUF: usize = 256 * 1024;

/// The most of a listing [`Client::list`] holds in memory: a server that
/// lists forever gets [`Error::ListingTooLong`] instead of all the memory
/// there is. [`Client::list_each`] holds nothing and has no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListingLimit {
    /// Names.
    pub names: u64,
    /// Bytes of names, counting each line's CRLF.
    pub bytes: u64,
}

impl ListingLimit {
    /// One million names or 32 MiB, whichever comes first: far beyond any
    /// directory served over HFTP, and under ~100 MiB of memory.
    pub const DEFAULT: ListingLimit = ListingLimit {
        names: 1_000_000,
        bytes: 32 * 1024 * 1024,
    };
}

impl Default for ListingLimit {
    fn default() -> Self {
        ListingLimit::DEFAULT
    }
}

/// One connection to an HFTP server.
pub struct Client {
    stream: Stream,
    peer: String,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    decoder: ReplyDecoder,
    out: Vec<u8>,
    want_raw: bool,
    raw: Option<bool>,
    broken: bool,
    /// Whether a whole reply was read on this connection: until then, a
    /// malformed status line means the peer is not an HFTP server.
    answered: bool,
    timeout: std::time::Duration,
    deadline: Option<Deadline>,
    interrupt: Option<Interrupt>,
    listing_limit: ListingLimit,
    /// Over TLS with a client certificate: an alert about certificates is
    /// then the server refusing ours.
    tls_identity: bool,
    /// What the first bytes from the server looked like.
    greeting: Greeting,
}

/// The first bytes a server sent on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Greeting {
    Nothing,
    /// A TLS record, on a plain connection: a TLS server.
    Tls,
    Other,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.peer)
            .field("raw", &self.raw)
            .finish()
    }
}

/// Checks a name before it goes on the wire: the server would answer `201`
/// (or `202` for a long one), but a local message is clearer.
pub fn check_name(name: &str) -> Result<FileName> {
    FileName::new(name).map_err(|e| {
        Error::Usage(match e {
            NameError::Invalid => format!(
                "{name:?} is not a valid HFTP file name (letters, digits, '.', '_', '-'; not '.' or '..')"
            ),
            NameError::TooLong => format!("{name:?}: file names have at most 255 bytes"),
        })
    })
}

/// Whether `pattern` has glob characters (`*`, `?`).
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// Shell-style matching of a remote name: `*` matches any run of
/// characters, `?` any one character, everything else itself. (HFTP names
/// are flat ASCII, so this is all a glob needs; no `/` rules, no classes.)
///
/// ```
/// use hftp_client::glob_match;
/// assert!(glob_match("*.txt", "hola.txt"));
/// assert!(glob_match("f?to.*", "foto.png"));
/// assert!(!glob_match("*.txt", "hola.txt.bak"));
/// assert!(glob_match("*", ".hidden"));
/// ```
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and where in `name` it started matching.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                // Let the last `*` take one more character.
                Some((sp, sn)) => {
                    star = Some((sp, sn + 1));
                    pi = sp + 1;
                    ni = sn + 1;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

impl Client {
    /// Connects to `target` (`HOST`, `HOST:PORT`, `[IPv6]:PORT`) directly,
    /// with the default timeout. See [`Endpoint`] for more options.
    ///
    /// ```no_run
    /// let mut client = hftp_client::Client::connect("localhost")?;
    /// println!("{:?}", client.list()?);
    /// # Ok::<(), hftp_client::Error>(())
    /// ```
    pub fn connect(target: &str) -> Result<Client> {
        Endpoint::parse(target)?.connect()
    }

    pub(crate) fn from_stream(stream: Stream, endpoint: &Endpoint) -> Result<Client> {
        let peer = endpoint.to_string();
        endpoint::set_timeouts(
            stream.tcp(),
            endpoint::wait_limit(endpoint.timeout, endpoint.deadline.as_ref(), &peer)?,
            &peer,
        )?;
        Ok(Client {
            stream,
            peer,
            buf: vec![0; READ_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            decoder: ReplyDecoder::new(Expect::Quit),
            out: Vec::new(),
            want_raw: endpoint.raw,
            raw: if endpoint.raw { None } else { Some(false) },
            broken: false,
            answered: false,
            timeout: endpoint.timeout,
            deadline: endpoint.deadline,
            interrupt: endpoint.interrupt,
            listing_limit: ListingLimit::DEFAULT,
            tls_identity: endpoint
                .tls
                .as_ref()
                .is_some_and(|t| t.identity().is_some()),
            greeting: Greeting::Nothing,
        })
    }

    /// The server this connection goes to, as `HOST:PORT`.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Whether the server is known to support `raw` slices: `None` until
    /// this connection asked for its first slice.
    pub fn raw_support(&self) -> Option<bool> {
        if self.want_raw {
            self.raw
        } else {
            None
        }
    }

    /// Whether an earlier error left this connection unusable (the server
    /// closed it, or a reply was cut or malformed).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Sets (or lifts) the total time limit for what this connection does
    /// from now on; connections start with their endpoint's.
    pub fn set_deadline(&mut self, deadline: Option<Deadline>) {
        self.deadline = deadline;
    }

    /// A second handle on the socket, to shut it down from another thread
    /// (which ends a read blocked on it).
    pub(crate) fn socket(&self) -> Option<TcpStream> {
        self.stream.try_clone_socket().ok()
    }

    /// Whether this connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// An I/O error of the stream as the client's error: TLS's own
    /// (an alert, in TLS 1.3 the refusal of our certificate, which comes
    /// after the handshake) as [`Error::Tls`], others as `other` says.
    fn io_error(&self, source: io::Error, other: impl FnOnce(io::Error) -> Error) -> Error {
        match tls::rustls_error(&source) {
            Some(err) => Error::Tls {
                peer: self.peer.clone(),
                problem: tls::classify(err, self.tls_identity),
            },
            None => other(source),
        }
    }

    /// Sets how much of a listing [`list`](Client::list) and
    /// [`help`](Client::help) hold.
    pub fn set_listing_limit(&mut self, limit: ListingLimit) {
        self.listing_limit = limit;
    }

    /// `get_file_listing`: the names of the served files, as sent (the spec
    /// says sorted; classic servers may not sort), at most
    /// [`ListingLimit`] of them.
    pub fn list(&mut self) -> Result<Vec<String>> {
        self.lines_capped(Request::GetFileListing)
    }

    /// `get_file_listing`, handing each name to `each` as it arrives, in
    /// the server's order: memory stays bounded whatever the length of the
    /// listing. Returns the number of names. An error from `each` ends the
    /// call (and leaves the connection unusable, the reply unread).
    pub fn list_each(&mut self, mut each: impl FnMut(String) -> Result<()>) -> Result<u64> {
        let req = Request::GetFileListing;
        self.send(std::slice::from_ref(&req))?;
        let mut count = 0;
        let mut on_line = |name: String| {
            count += 1;
            each(name)
        };
        match self.read_reply(&req, &mut io::sink(), Some(&mut on_line))? {
            Reply::Lines(_) => Ok(count),
            other => unreachable_reply(other),
        }
    }

    /// `help` (2026 revision): the command names. Classic servers answer
    /// `200 NO SUCH COMMAND`, which comes back as [`Error::Status`].
    pub fn help(&mut self) -> Result<Vec<String>> {
        self.lines_capped(Request::Help)
    }

    /// The lines of a listing or `help` reply, within the listing limit.
    fn lines_capped(&mut self, req: Request) -> Result<Vec<String>> {
        self.send(std::slice::from_ref(&req))?;
        let limit = self.listing_limit;
        let mut lines = Vec::new();
        let mut bytes = 0u64;
        let mut keep = |line: String| {
            bytes += line.len() as u64 + 2;
            if lines.len() as u64 >= limit.names || bytes > limit.bytes {
                return Err(Error::ListingTooLong {
                    request: req.to_string(),
                    names: limit.names,
                    bytes: limit.bytes,
                });
            }
            lines.push(line);
            Ok(())
        };
        match self.read_reply(&req, &mut io::sink(), Some(&mut keep))? {
            Reply::Lines(_) => Ok(lines),
            other => unreachable_reply(other),
        }
    }

    /// `get_metadata`: the size of a file in bytes.
    pub fn metadata(&mut self, name: &str) -> Result<u64> {
        let req = Request::GetMetadata {
            name: check_name(name)?,
        };
        self.send(std::slice::from_ref(&req))?;
        match self.read_reply(&req, &mut io::sink(), None)? {
            Reply::Size(size) => Ok(size),
            other => unreachable_reply(other),
        }
    }

    /// The sizes of many files, with requests pipelined (a few dozen in
    /// flight): one round trip per batch instead of one per file. Server
    /// statuses are per file; other errors end the whole call.
    pub fn metadata_many(&mut self, names: &[String]) -> Result<Vec<Result<u64>>> {
        let mut results = Vec::with_capacity(names.len());
        for batch in names.chunks(PIPELINE) {
            let mut reqs = Vec::new();
            let mut checked = Vec::new();
            for name in batch {
                match check_name(name) {
                    Ok(name) => {
                        reqs.push(Request::GetMetadata { name });
                        checked.push(None);
                    }
                    Err(e) => checked.push(Some(e)),
                }
            }
            self.send(&reqs)?;
            let mut reqs = reqs.iter();
            for bad in checked {
                if let Some(e) = bad {
                    results.push(Err(e));
                    continue;
                }
                let Some(req) = reqs.next() else { break };
                match self.read_reply(req, &mut io::sink(), None) {
                    Ok(Reply::Size(size)) => results.push(Ok(size)),
                    Ok(other) => unreachable_reply(other)?,
                    Err(e @ Error::Status { .. }) if !e.breaks_connection() => results.push(Err(e)),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(results)
    }

    /// `get_slice`: streams bytes `[offset, offset + size)` of `name` into
    /// `out`, as they arrive; returns the number of bytes written (`size`).
    /// Uses `raw` mode when the server supports it: the first slice asks
    /// for `raw`, and a classic server's `201` makes this connection fall
    /// back to base64 for good.
    pub fn slice_to(
        &mut self,
        name: &str,
        offset: u64,
        size: u64,
        out: &mut dyn Write,
    ) -> Result<u64> {
        let name = check_name(name)?;
        let range = Range { offset, size };
        if range.end().is_none() {
            return Err(Error::Usage(format!(
                "range {offset}+{size} exceeds 64 bits"
            )));
        }
        loop {
            let mode = if self.raw == Some(false) {
                SliceMode::Base64
            } else {
                SliceMode::Raw
            };
            let req = Request::GetSlice {
                name: name.clone(),
                range,
                mode,
            };
            self.send(std::slice::from_ref(&req))?;
            match self.read_reply(&req, out, None) {
                Ok(Reply::Slice { len }) => {
                    if mode == SliceMode::Raw {
                        self.raw = Some(true);
                    }
                    return Ok(len);
                }
                Ok(other) => return unreachable_reply(other),
                Err(Error::Status {
                    status: Status::InvalidArguments,
                    ..
                }) if mode == SliceMode::Raw && self.raw.is_none() => {
                    self.raw = Some(false);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `quit`: asks the server to close, and waits for its `0 OK`.
    pub fn quit(mut self) -> Result<()> {
        self.send(&[Request::Quit])?;
        match self.read_reply(&Request::Quit, &mut io::sink(), None)? {
            Reply::Ok => Ok(()),
            other => unreachable_reply(other),
        }
    }

    fn send(&mut self, reqs: &[Request]) -> Result<()> {
        if reqs.is_empty() {
            return Ok(());
        }
        let mut line = Vec::new();
        for req in reqs {
            req.encode(&mut line);
        }
        let what = format!("{}: sending {}", self.peer, reqs[0]);
        self.apply_deadline(&what)?;
        let sent = self.stream.write_all(&line);
        sent.map_err(|source| {
            self.broken = true;
            let err = self.io_error(source, |source| Error::Network {
                what: what.clone(),
                source,
            });
            self.blame_deadline(err, &what)
        })
    }

    /// Fails once the user interrupted; the reply is left unread.
    fn check_interrupt(&mut self, what: &str) -> Result<()> {
        if self.interrupt.is_some_and(|i| i.is_set()) {
            self.broken = true;
            return Err(Error::Interrupted {
                what: what.to_owned(),
            });
        }
        Ok(())
    }

    /// With a deadline, shortens the socket timeouts to the time left
    /// (a syscall per read; only then).
    fn apply_deadline(&mut self, what: &str) -> Result<()> {
        if self.deadline.is_none() {
            return Ok(());
        }
        let wait = endpoint::wait_limit(self.timeout, self.deadline.as_ref(), what)
            .inspect_err(|_| self.broken = true)?;
        endpoint::set_timeouts(self.stream.tcp(), wait, what)
    }

    /// A reply error; a first reply whose status line is not HFTP's at
    /// all is [`Error::NotHftp`], with what the peer sent.
    fn protocol_error(&self, req: &Request, error: ReplyError) -> Error {
        let in_status_line = matches!(
            error,
            ReplyError::UnknownStatus(_)
                | ReplyError::BadEol {
                    part: Part::StatusLine,
                    ..
                }
                | ReplyError::LineTooLong {
                    part: Part::StatusLine,
                    ..
                }
        );
        if in_status_line && !self.answered {
            if self.greeting == Greeting::Tls {
                return self.speaks_tls(req);
            }
            let shown = &self.buf[..self.end.min(60)];
            return Error::NotHftp {
                peer: self.peer.clone(),
                request: req.to_string(),
                sent: shown.escape_ascii().to_string(),
            };
        }
        Error::Protocol {
            request: req.to_string(),
            error,
        }
    }

    /// A plain connection to a TLS server: its answer was a TLS record.
    fn speaks_tls(&self, req: &Request) -> Error {
        Error::SpeaksTls {
            peer: self.peer.clone(),
            request: req.to_string(),
        }
    }

    fn blame_deadline(&self, err: Error, what: &str) -> Error {
        endpoint::blame_deadline(self.deadline.as_ref(), err, what)
    }

    /// Reads the reply to `req`, streaming slice bytes into `sink` and
    /// listing lines into `on_line` as they arrive (with no `on_line`, the
    /// decoder would keep them). Error statuses become [`Error::Status`].
    fn read_reply(
        &mut self,
        req: &Request,
        sink: &mut dyn Write,
        mut on_line: Option<&mut dyn FnMut(String) -> Result<()>>,
    ) -> Result<Reply> {
        self.decoder.reset(Expect::for_request(req));
        loop {
            if self.start < self.end {
                let fed = self
                    .decoder
                    .feed(&self.buf[self.start..self.end], &mut self.out);
                let (used, reply) = fed.map_err(|error| {
                    self.broken = true;
                    self.protocol_error(req, error)
                })?;
                self.answered |= reply.is_some();
                self.start += used;
                if let Some(on_line) = on_line.as_mut() {
                    let mut lines = self.decoder.take_lines();
                    if let Some(Reply::Lines(rest)) = &reply {
                        lines.extend_from_slice(rest);
                    }
                    for line in lines {
                        if let Err(e) = on_line(line) {
                            self.broken |= reply.is_none();
                            return Err(e);
                        }
                    }
                }
                if !self.out.is_empty() {
                    let written = sink.write_all(&self.out);
                    self.out.clear();
                    written.map_err(|e| {
                        self.broken = true;
                        Error::Output(e)
                    })?;
                }
                match reply {
                    None => {}
                    Some(Reply::Error(status)) => {
                        self.broken |= status.is_fatal();
                        return Err(Error::Status {
                            request: req.to_string(),
                            status,
                        });
                    }
                    Some(reply) => return Ok(reply),
                }
            }
            self.start = 0;
            self.end = 0;
            let waiting = format!("{}: waiting for the reply to {req}", self.peer);
            self.check_interrupt(&waiting)?;
            self.apply_deadline(&waiting)?;
            match self.stream.read(&mut self.buf) {
                Ok(0) if self.greeting == Greeting::Tls && !self.answered => {
                    self.broken = true;
                    return Err(self.speaks_tls(req));
                }
                Ok(0) => {
                    self.broken = true;
                    return Err(Error::Closed {
                        request: req.to_string(),
                        error: self.decoder.eof(),
                    });
                }
                Ok(n) => {
                    self.end = n;
                    if self.greeting == Greeting::Nothing {
                        self.greeting = if !self.stream.is_tls() && looks_like_tls(&self.buf[..n]) {
                            Greeting::Tls
                        } else {
                            Greeting::Other
                        };
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    self.check_interrupt(&waiting)?;
                }
                Err(source) if tls::rustls_error(&source).is_some() => {
                    self.broken = true;
                    return Err(self.io_error(source, Error::Output));
                }
                Err(source) => {
                    self.broken = true;
                    return Err(if error::is_timeout(&source) {
                        self.blame_deadline(
                            Error::Timeout {
                                what: waiting.clone(),
                            },
                            &waiting,
                        )
                    } else {
                        Error::Network {
                            what: format!("{}: reading the reply to {req}", self.peer),
                            source,
                        }
                    });
                }
            }
        }
    }
}

/// Whether `bytes` start like a TLS record (an alert or a handshake, TLS
/// 1.0 to 1.3): what a TLS server answers a client that speaks plain HFTP.
fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [0x15 | 0x16, 0x03, 0x00..=0x04, ..])
}

/// The decoder only yields the reply kind that was asked for.
fn unreachable_reply<T>(reply: Reply) -> Result<T> {
    Err(Error::Internal(format!("unexpected reply {reply:?}")))
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        for (p, n, want) in [
            ("", "", true),
            ("", "a", false),
            ("*", "", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("*a", "banana", true),
            ("*an*", "banana", true),
            ("?", "", false),
            ("??", "ab", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("**x", "yyx", true),
            ("hola.txt", "hola.txt", true),
            ("hola.txt", "hola_txt", false),
        ] {
            assert_eq!(glob_match(p, n), want, "{p:?} {n:?}");
        }
    }
}
