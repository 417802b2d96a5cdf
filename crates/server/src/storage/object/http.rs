//! One ranged `GET` on a plain-http connection of the backend's own, so
//! that its body can be spliced from that socket to a client's without
//! passing through user space, or read straight into a block (see
//! [`super::by_hand`]); and the `HEAD` that asks for the store's checksum.
//!
//! The `GET` is a presigned URL (the signature is in its query string,
//! made by `object_store`), plus `Range`, `If-Match` and `Connection:
//! close`: one connection per slice, as the body is read to its end or
//! dropped. The `HEAD` carries the headers `object_store`'s signer made
//! for it. The answer's head is parsed with `httparse`; the body is left
//! in the socket, apart from the bytes that came with the head.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

/// Bound on connecting to the store, as the client's own.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Bound on waiting for the store to say anything (the head, or the next
/// bytes of a body), as one request's timeout of the client.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer head read (S3's are well under 2 KiB).
const MAX_HEAD: usize = 16 << 10;

/// Headers of an answer looked at (S3 sends about a dozen).
const MAX_HEADERS: usize = 64;

/// The answer to a ranged `GET`, its body still in the socket.
pub struct Answer {
    pub status: u16,
    pub e_tag: Option<String>,
    /// `Content-Range`: the first byte, the byte after the last, and the
    /// object's size when the store gives it.
    pub content_range: Option<(u64, u64, Option<u64>)>,
    pub content_length: Option<u64>,
    pub chunked: bool,
    /// The `x-amz-checksum-*` headers, names in lower case.
    pub checksums: Vec<(String, String)>,
    pub socket: TcpStream,
    /// Body bytes that arrived with the head, from `early_pos` on.
    pub early: Vec<u8>,
    pub early_pos: usize,
    /// The socket's low-water mark (`SO_RCVLOWAT`), see [`Answer::wait_body`].
    low_water: usize,
    /// The store sent nothing for [`LOW_WATER_PATIENCE`]: waits end at its
    /// first byte, until a read takes some.
    paused: bool,
}

/// Sends `GET url` for bytes `start..end` (and `If-Match: e_tag`) and
/// reads the answer's head. `url` must be a plain `http://` URL. The
/// socket is left non-blocking: [`wait_readable`] waits on it.
pub fn ranged_get(
    url: &str,
    (start, end): (u64, u64),
    e_tag: Option<&str>,
    head_within: Duration,
) -> io::Result<Answer> {
    let mut headers = vec![(
        "Range".to_string(),
        format!("bytes={start}-{}", end.saturating_sub(1)),
    )];
    if let Some(tag) = e_tag {
        headers.push(("If-Match".into(), tag.into()));
    }
    send("GET", url, &headers, head_within)
}

/// Sends `HEAD url` with `headers` (a signed request's, `Host` among them)
/// and reads the answer's head.
pub fn head(url: &str, headers: &[(String, String)], within: Duration) -> io::Result<Answer> {
    send("HEAD", url, headers, within)
}

/// Sends `method url` with `headers` on a connection of its own, and reads
/// the answer's head within `head_within`.
fn send(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    head_within: Duration,
) -> io::Result<Answer> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| io::Error::other("not a plain-http URL"))?;
    let (authority, target) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    let socket = connect(authority)?;
    socket.set_nodelay(true)?;
    socket.set_write_timeout(Some(ANSWER_TIMEOUT))?;
    let mut request = format!("{method} {target} HTTP/1.1\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request.push_str(&format!("Host: {authority}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(name);
        request.push_str(": ");
        request.push_str(value);
        request.push_str("\r\n");
    }
    request.push_str("User-Agent: hftp-server\r\nConnection: close\r\n\r\n");
    (&socket).write_all(request.as_bytes())?;
    socket.set_nonblocking(true)?;
    read_head(socket, head_within)
}

fn connect(authority: &str) -> io::Result<TcpStream> {
    // `host` alone means port 80; `[v6]:port` and `host:port` resolve as is.
    let has_port = match authority.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => authority.contains(':'),
    };
    let addrs = if has_port {
        authority.to_socket_addrs()?
    } else {
        format!("{authority}:80").to_socket_addrs()?
    };
    let mut last = io::Error::other("the endpoint resolves to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(socket) => return Ok(socket),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn read_head(socket: TcpStream, within: Duration) -> io::Result<Answer> {
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    loop {
        match (&socket).read(&mut buf[len..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the store closed the connection before its answer's head ended",
                ))
            }
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_readable(&socket, deadline, within)?;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(head)) => {
                let status = response.code.unwrap_or(0);
                let mut answer = Answer {
                    status,
                    e_tag: None,
                    content_range: None,
                    content_length: None,
                    chunked: false,
                    checksums: Vec::new(),
                    socket,
                    early: Vec::new(),
                    early_pos: 0,
                    low_water: 1,
                    paused: false,
                };
                for header in response.headers.iter() {
                    let Ok(value) = std::str::from_utf8(header.value) else {
                        continue;
                    };
                    let value = value.trim();
                    let name = header.name;
                    if name.eq_ignore_ascii_case("etag") {
                        answer.e_tag = Some(value.to_string());
                    } else if name.eq_ignore_ascii_case("content-range") {
                        answer.content_range = parse_content_range(value);
                    } else if name.eq_ignore_ascii_case("content-length") {
                        answer.content_length = value.parse().ok();
                    } else if name.eq_ignore_ascii_case("transfer-encoding") {
                        answer.chunked = value.to_ascii_lowercase().contains("chunked");
                    } else if name
                        .get(..15)
                        .is_some_and(|at| at.eq_ignore_ascii_case("x-amz-checksum-"))
                    {
                        answer
                            .checksums
                            .push((name.to_ascii_lowercase(), value.to_string()));
                    }
                }
                buf.truncate(len);
                buf.drain(..head);
                answer.early = buf;
                return Ok(answer);
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            Ok(httparse::Status::Partial) => {
                return Err(io::Error::other(format!(
                    "the store's answer head is longer than {MAX_HEAD} bytes"
                )))
            }
            Err(e) => {
                return Err(io::Error::other(format!(
                    "the store's answer is not HTTP/1.1: {e}"
                )))
            }
        }
    }
}

/// `bytes FIRST-LAST/SIZE` (or `/*`) as first, last + 1 and size.
pub fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let spec = value.strip_prefix("bytes")?.trim_start();
    let (span, size) = spec.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let first: u64 = first.trim().parse().ok()?;
    let last: u64 = last.trim().parse().ok()?;
    let size = match size.trim() {
        "*" => None,
        size => Some(size.parse().ok()?),
    };
    (first <= last).then_some((first, last.checked_add(1)?, size))
}

/// Waits until `socket` is readable (or closed, or failed), until
/// `deadline` at the latest: then `TimedOut`.
pub fn wait_readable(socket: &impl AsFd, deadline: Instant, waited: Duration) -> io::Result<()> {
    while Instant::now() < deadline {
        if readable_by(socket, deadline)? {
            return Ok(());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("the store sent nothing for {waited:?}"),
    ))
}

/// How long a wait holds out for the low-water mark before it settles for
/// what came: the most a slow store's bytes are held back.
const LOW_WATER_PATIENCE: Duration = Duration::from_millis(2);

impl Answer {
    /// Waits until the body's socket holds `mark` bytes (or the answer
    /// ended), or [`LOW_WATER_PATIENCE`] has passed with some bytes: a
    /// fast store's body is taken in a few large reads, not with one
    /// wake-up per segment, and a slow one's at most that much later than
    /// it came. A store that sent nothing meanwhile is waited for until its
    /// first byte. Errors as [`wait_readable`], after `stall` without one.
    pub fn wait_body(&mut self, mark: usize, deadline: Instant, stall: Duration) -> io::Result<()> {
        let mark = mark.max(1);
        if mark > 1 && !self.paused {
            if mark != self.low_water {
                self.set_low_water(mark)?;
            }
            let soon = deadline.min(Instant::now() + LOW_WATER_PATIENCE);
            if readable_by(&self.socket, soon)? || self.holds_some()? {
                return Ok(());
            }
            // Nothing came: the store paused. Its next byte ends the wait.
            self.paused = true;
        }
        if self.low_water != 1 {
            self.set_low_water(1)?;
        }
        wait_readable(&self.socket, deadline, stall)
    }

    /// A read took `n` bytes: the store sends again.
    pub fn took(&mut self, n: usize) {
        if n > 0 {
            self.paused = false;
        }
    }

    /// Whether any body byte is waiting, fewer than the mark or not.
    fn holds_some(&self) -> io::Result<bool> {
        loop {
            return match self.socket.peek(&mut [0; 1]) {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    fn set_low_water(&mut self, bytes: usize) -> io::Result<()> {
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: a valid socket, an option of type int, its size.
        let r = unsafe {
            libc::setsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        self.low_water = bytes;
        Ok(())
    }
}

/// Whether `socket` is readable before `deadline` (at once if passed).
fn readable_by(socket: &impl AsFd, deadline: Instant) -> io::Result<bool> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [PollFd::new(socket, PollFlags::IN)];
        let timeout = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as _,
        };
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse_and_bad_ones_do_not() {
        assert_eq!(
            parse_content_range("bytes 0-1023/4096"),
            Some((0, 1024, Some(4096)))
        );
        assert_eq!(parse_content_range("bytes 10-10/*"), Some((10, 11, None)));
        assert_eq!(parse_content_range("bytes 5-4/10"), None);
        assert_eq!(parse_content_range("bytes */10"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range("bytes 0-18446744073709551615/1"), None);
    }

    // Quick tier: loopback sockets, a store played by hand.

    const MARK: usize = 256 << 10;

    /// An answer's head read from a store on loopback; the store's end of
    /// the socket sends its body.
    fn answered() -> (Answer, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut store, _) = listener.accept().unwrap();
        store
            .write_all(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 1000000\r\n\r\n")
            .unwrap();
        socket.set_nonblocking(true).unwrap();
        let answer = read_head(socket, Duration::from_secs(30)).unwrap();
        assert!(answer.early.is_empty());
        (answer, store)
    }

    fn wait(answer: &mut Answer, stall: Duration) -> io::Result<()> {
        answer.wait_body(MARK, Instant::now() + stall, stall)
    }

    fn read_all_ready(answer: &Answer) -> usize {
        let mut buf = vec![0; MARK * 2];
        let mut got = 0;
        loop {
            match (&answer.socket).read(&mut buf) {
                Ok(0) => return got,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return got,
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn a_store_slower_than_the_mark_is_read_after_the_patience() {
        let (mut answer, mut store) = answered();
        store.write_all(&[7; 1000]).unwrap();
        // Arrived (one segment) before the wait, whatever the machine's load.
        assert!(readable_by(&answer.socket, Instant::now() + Duration::from_secs(60)).unwrap());
        // Far fewer bytes than the mark ever come: the wait settles for them.
        wait(&mut answer, Duration::from_secs(60)).unwrap();
        assert_eq!(read_all_ready(&answer), 1000);
        assert!(!answer.paused);
        assert_eq!(answer.low_water, MARK);
    }

    #[test]
    fn the_end_of_the_answer_ends_a_wait_for_the_mark() {
        let (mut answer, mut store) = answered();
        store.write_all(&[7; 100]).unwrap();
        drop(store);
        wait(&mut answer, Duration::from_secs(60)).unwrap();
        assert_eq!(read_all_ready(&answer), 100);
    }

    #[test]
    fn a_store_that_sends_nothing_is_a_stall_and_its_next_byte_ends_the_next_wait() {
        let (mut answer, mut store) = answered();
        let e = wait(&mut answer, Duration::from_millis(50)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(answer.paused);
        assert_eq!(answer.low_water, 1);
        store.write_all(&[7; 10]).unwrap();
        wait(&mut answer, Duration::from_secs(60)).unwrap();
        let got = read_all_ready(&answer);
        assert!((1..=10).contains(&got), "{got}");
        answer.took(got);
        assert!(!answer.paused, "a read that took bytes ends the pause");
    }

    #[test]
    fn a_mark_below_the_last_bytes_waits_for_them_only() {
        let (mut answer, mut store) = answered();
        store.write_all(&[7; 300]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        // Arrived (one segment) before the wait, whatever the machine's load.
        assert!(readable_by(&answer.socket, deadline).unwrap());
        answer
            .wait_body(300, deadline, Duration::from_secs(60))
            .unwrap();
        assert_eq!(answer.low_water, 300);
        assert_eq!(read_all_ready(&answer), 300);
    }
}
