//! One client connection with bounded waits: every read has a deadline, so a
//! silent or slow server makes a case fail with "timeout" instead of hanging.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::escape::show;
use crate::i18n::tr;
use crate::outcome::{FailKind, Failure};
use crate::route::Route;

/// Bytes kept of an answer's start for the report.
const SHOWN_PREFIX: usize = 512;
/// Extra time an expectation gets per 4 MiB it waits for.
const PER_4_MIB: Duration = Duration::from_secs(1);
/// A line longer than this is not a status or listing line.
const MAX_LINE: usize = 1 << 20;

/// Connections of the checker open right now, to say how many a server
/// that stopped answering was holding.
static OPEN: AtomicUsize = AtomicUsize::new(0);
/// Connections the checker left without `quit` and before the server
/// closed them, ever: the runner reads it around each case.
static ABANDONED: AtomicUsize = AtomicUsize::new(0);

/// The most connections open at once since [`reset_peak`].
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// How many of the checker's connections are open now.
pub fn open_connections() -> usize {
    OPEN.load(Ordering::Relaxed)
}

/// Starts counting the most connections open at once (for one case).
pub fn reset_peak() {
    PEAK.store(OPEN.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// The most connections open at once since [`reset_peak`].
pub fn peak_connections() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// How many connections the checker has left without `quit` so far.
pub fn abandoned_connections() -> usize {
    ABANDONED.load(Ordering::Relaxed)
}

/// A connection to the server under test.
pub struct Conn {
    stream: TcpStream,
    timeout: Duration,
    /// Received, not yet consumed.
    pending: Vec<u8>,
    /// Rendering of the last bytes sent, to say in reports what was answered.
    last_sent: String,
    /// Through a proxy: a reset may be the path's, not the server's.
    indirect: bool,
    /// An answer was just read completely: bytes arriving before the next
    /// request belong to no request.
    answered: bool,
    /// `quit` was sent, or the server closed: dropping it abandons nothing.
    ended: bool,
    /// Bytes of the last request: a large one takes the server time to
    /// read, so the wait for its answer grows with it.
    sent_len: usize,
    /// When the last bytes came, to tell a trickle from silence.
    last_arrival: Option<Instant>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
        if !self.ended {
            ABANDONED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Result of waiting for more bytes.
enum Fill {
    Data,
    Eof,
    Reset,
    Timeout,
    Error(io::Error),
}

impl Conn {
    /// Connects along `route` with `timeout` bounding the connect and
    /// every later wait.
    pub fn connect(route: &Route, timeout: Duration) -> Result<Conn, Failure> {
        let stream = route.open(timeout).map_err(|e| {
            Failure::new(
                tr().connect_step(&route.to_string()),
                tr().server_accepts(),
                e.to_string(),
            )
        })?;
        stream.set_nodelay(true).ok();
        stream.set_write_timeout(Some(timeout)).ok();
        let open = OPEN.fetch_add(1, Ordering::Relaxed) + 1;
        PEAK.fetch_max(open, Ordering::Relaxed);
        Ok(Conn {
            stream,
            timeout,
            pending: Vec::new(),
            last_sent: "(nothing)".into(),
            indirect: route.is_indirect(),
            answered: false,
            ended: false,
            sent_len: 0,
            last_arrival: None,
        })
    }

    /// Sends `bytes` in one write. Bytes the server sent after its last
    /// complete answer, unasked, fail here, blamed on the request they
    /// followed (not read as the answer to this one).
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.check_nothing_more()?;
        self.note_sent(bytes);
        self.stream
            .write_all(bytes)
            .map_err(|e| self.write_failure(e))
    }

    /// Sends `bytes` one byte per write, `pause` apart.
    pub fn send_bytewise(&mut self, bytes: &[u8], pause: Duration) -> Result<(), Failure> {
        self.check_nothing_more()?;
        self.note_sent(bytes);
        for (i, byte) in bytes.iter().enumerate() {
            if i > 0 {
                thread::sleep(pause);
            }
            self.stream
                .write_all(std::slice::from_ref(byte))
                .map_err(|e| self.write_failure(e))?;
        }
        Ok(())
    }

    /// Sends `bytes` from another thread, so the answer can be read while the
    /// server is still being written to. Write errors (the server closing)
    /// end the writer quietly; join the handle to wait for it.
    pub fn send_in_background(&mut self, bytes: Vec<u8>) -> Result<JoinHandle<()>, Failure> {
        self.check_nothing_more()?;
        self.note_sent(&bytes);
        let mut stream = self.stream.try_clone().map_err(|e| self.write_failure(e))?;
        Ok(thread::spawn(move || {
            for chunk in bytes.chunks(64 * 1024) {
                if stream.write_all(chunk).is_err() {
                    return;
                }
            }
        }))
    }

    /// Sends `request` and expects exactly `answer`.
    pub fn request(&mut self, request: &[u8], answer: &[u8]) -> Result<(), Failure> {
        self.send(request)?;
        self.expect(answer)
    }

    /// Reads exactly `expected.len()` bytes and requires them to equal
    /// `expected`.
    pub fn expect(&mut self, expected: &[u8]) -> Result<(), Failure> {
        let deadline = Instant::now() + self.budget(expected.len());
        let mut matched = 0;
        let mut seen = Vec::new();
        loop {
            let n = self.pending.len().min(expected.len() - matched);
            if self.pending[..n] != expected[matched..matched + n] {
                let at = (0..n)
                    .find(|&i| self.pending[i] != expected[matched + i])
                    .unwrap_or(0);
                return Err(self.mismatch(expected, matched, at, seen));
            }
            if seen.len() < SHOWN_PREFIX {
                let keep = n.min(SHOWN_PREFIX - seen.len());
                seen.extend_from_slice(&self.pending[..keep]);
            }
            self.pending.drain(..n);
            matched += n;
            if matched == expected.len() {
                self.answered = true;
                return Ok(());
            }
            let (got, kind) = match self.fill(deadline) {
                Fill::Data => continue,
                Fill::Eof => (
                    tr().eof_after(&show(&seen), matched, expected.len()),
                    FailKind::Closed,
                ),
                Fill::Reset => (
                    tr().reset_after(&show(&seen), matched, expected.len()),
                    FailKind::Closed,
                ),
                Fill::Timeout => (
                    tr().timeout_bytes(
                        matched,
                        expected.len(),
                        self.budget(expected.len()).as_secs_f64(),
                        &show(&seen),
                    ),
                    self.slow_kind(deadline, matched, self.budget(expected.len())),
                ),
                Fill::Error(e) => (
                    tr().read_error_after(&show(&seen), &e.to_string()),
                    FailKind::Mismatch,
                ),
            };
            return Err(Failure::new(self.step(), format!("`{}`", show(expected)), got).kind(kind));
        }
    }

    /// Reads one line, CRLF included (a status line, a listing line).
    pub fn read_line(&mut self) -> Result<Vec<u8>, Failure> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(pos) = self.pending.windows(2).position(|w| w == b"\r\n") {
                return Ok(self.pending.drain(..pos + 2).collect());
            }
            if self.pending.len() > MAX_LINE {
                return Err(Failure::new(
                    self.step(),
                    tr().a_crlf_line(),
                    tr().line_too_long(),
                ));
            }
            let (got, kind) = match self.fill(deadline) {
                Fill::Data => continue,
                Fill::Eof => (tr().then_eof(&show(&self.pending)), FailKind::Closed),
                Fill::Reset => (tr().then_reset(&show(&self.pending)), FailKind::Closed),
                Fill::Timeout => (
                    tr().timeout_received(&show(&self.pending)),
                    self.slow_kind(deadline, self.pending.len(), self.timeout),
                ),
                Fill::Error(e) => (tr().read_error(&e.to_string()), FailKind::Mismatch),
            };
            return Err(Failure::new(self.step(), tr().a_crlf_line(), got).kind(kind));
        }
    }

    /// Waits for any answer: `Ok(true)` when bytes came, `Ok(false)` when
    /// the server closed (or reset) the connection first, `Err` on timeout.
    pub fn read_some(&mut self) -> Result<bool, Failure> {
        if !self.pending.is_empty() {
            return Ok(true);
        }
        let deadline = Instant::now() + self.timeout;
        match self.fill(deadline) {
            Fill::Data => Ok(true),
            Fill::Eof | Fill::Reset => Ok(false),
            Fill::Timeout => {
                Err(
                    Failure::new(self.step(), tr().a_crlf_line(), tr().timeout_received(""))
                        .kind(FailKind::Timeout),
                )
            }
            Fill::Error(e) => Err(Failure::new(
                self.step(),
                tr().a_crlf_line(),
                tr().read_error(&e.to_string()),
            )),
        }
    }

    /// Requires the server to close the connection (orderly EOF, not a reset)
    /// with nothing more sent.
    pub fn expect_eof(&mut self) -> Result<(), Failure> {
        self.expect_eof_within(self.timeout)
    }

    /// Like [`Conn::expect_eof`], with `limit` counted from now.
    pub fn expect_eof_within(&mut self, limit: Duration) -> Result<(), Failure> {
        let expected = tr().eof_within(limit.as_secs_f64());
        let deadline = Instant::now() + limit;
        let got = if !self.pending.is_empty() {
            tr().more_bytes(&show(&self.pending))
        } else {
            match self.fill(deadline) {
                Fill::Eof => return Ok(()),
                // Tor turns a server's close with input still unread into
                // a reset of the SOCKS connection: through a proxy the
                // checker cannot tell the server's reset from the path's.
                Fill::Reset if self.indirect => return Ok(()),
                Fill::Data => tr().more_bytes(&show(&self.pending)),
                Fill::Reset => tr().reset_not_close(),
                Fill::Timeout => tr().stayed_open(),
                Fill::Error(e) => tr().read_error(&e.to_string()),
            }
        };
        Err(Failure::new(
            tr().after_answer_step(&self.last_sent),
            expected,
            got,
        ))
    }

    /// Proves the connection still answers: `quit` gets `0 OK` and EOF.
    pub fn expect_open(&mut self) -> Result<(), Failure> {
        self.request(b"quit\r\n", b"0 OK\r\n")?;
        self.expect_eof()
    }

    /// Half-closes: the server sees EOF after what was sent.
    pub fn shutdown_write(&mut self) {
        self.stream.shutdown(Shutdown::Write).ok();
    }

    fn note_sent(&mut self, bytes: &[u8]) {
        self.last_sent = show(bytes);
        self.sent_len = bytes.len();
        self.answered = false;
        // `quit` anywhere in what is sent ends the connection on the
        // server's side: dropping it afterwards abandons nothing.
        if bytes.windows(6).any(|w| w == b"quit\r\n") {
            self.ended = true;
        }
    }

    /// After a complete answer, what has already arrived (without waiting)
    /// must be nothing.
    fn check_nothing_more(&mut self) -> Result<(), Failure> {
        if !self.answered {
            return Ok(());
        }
        self.answered = false;
        if self.stream.set_nonblocking(true).is_ok() {
            let mut buf = [0u8; 4096];
            while self.pending.len() < SHOWN_PREFIX {
                match self.stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                }
            }
            self.stream.set_nonblocking(false).ok();
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        Err(Failure::new(
            tr().after_answer_step(&self.last_sent),
            tr().nothing_more(),
            tr().more_bytes(&show(&self.pending)),
        )
        .kind(FailKind::ExtraBytes))
    }

    /// The wait for an answer of `len` bytes: the timeout, plus a second
    /// per 4 MiB to receive and per 4 MiB the request itself had.
    fn budget(&self, len: usize) -> Duration {
        let work = len.saturating_add(self.sent_len);
        self.timeout + PER_4_MIB * u32::try_from(work >> 22).unwrap_or(u32::MAX)
    }

    /// A wait of `waited` that ran out after `received` bytes: `Trickle`
    /// when bytes were still coming in its last second at under 1 KiB/s
    /// (a server that drips its answers), `Timeout` otherwise (silence, or
    /// a big answer that is merely slow).
    fn slow_kind(&self, deadline: Instant, received: usize, waited: Duration) -> FailKind {
        let recent = self
            .last_arrival
            .is_some_and(|at| at + Duration::from_secs(1) >= deadline);
        let crawling = (received as f64) < waited.as_secs_f64() * 1024.0;
        if recent && crawling {
            FailKind::Trickle
        } else {
            FailKind::Timeout
        }
    }

    fn step(&self) -> String {
        tr().answer_step(&self.last_sent)
    }

    fn write_failure(&self, e: io::Error) -> Failure {
        Failure::new(
            tr().send_step(&self.last_sent),
            tr().server_reads(),
            tr().write_failed(&e.to_string()),
        )
    }

    /// Waits until more bytes arrive in `pending`, the peer closes, or
    /// `deadline` passes.
    fn fill(&mut self, deadline: Instant) -> Fill {
        let mut buf = [0u8; 64 * 1024];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Fill::Timeout;
            }
            let wait = (deadline - now)
                .min(self.timeout)
                .max(Duration::from_millis(1));
            if let Err(e) = self.stream.set_read_timeout(Some(wait)) {
                return Fill::Error(e);
            }
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.ended = true;
                    return Fill::Eof;
                }
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    self.last_arrival = Some(Instant::now());
                    return Fill::Data;
                }
                Err(e) => match e.kind() {
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted => {
                        continue
                    }
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => {
                        self.ended = true;
                        return Fill::Reset;
                    }
                    _ => return Fill::Error(e),
                },
            }
        }
    }

    /// Describes a wrong byte at `matched + at`, reading a little more of the
    /// answer (briefly) so the report shows the server's whole line.
    fn mismatch(
        &mut self,
        expected: &[u8],
        matched: usize,
        at: usize,
        mut seen: Vec<u8>,
    ) -> Failure {
        let short = Instant::now() + Duration::from_millis(200);
        while !self.pending[at..].windows(2).any(|w| w == b"\r\n") && self.pending.len() < at + 256
        {
            if !matches!(self.fill(short), Fill::Data) {
                break;
            }
        }
        let offset = matched + at;
        if expected.len() <= SHOWN_PREFIX && seen.len() == matched {
            seen.extend_from_slice(&self.pending[..(at + 256).min(self.pending.len())]);
            return Failure::new(
                self.step(),
                format!("`{}`", show(expected)),
                format!("`{}`", show(&seen)),
            );
        }
        let window = |bytes: &[u8], from: usize| show(&bytes[from..(from + 48).min(bytes.len())]);
        Failure::new(
            self.step(),
            tr().mismatch_expected(expected.len(), offset, &window(expected, offset)),
            tr().mismatch_got(offset, &window(&self.pending, at), &show(&seen)),
        )
    }
}
