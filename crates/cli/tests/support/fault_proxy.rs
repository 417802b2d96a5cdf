//! A small fault-injecting HTTP proxy between the server and an object
//! store, started by the test: it forwards every request to the store,
//! except those its rules catch.
//!
//! It reads each request's head (the S3 client sends `GET`, `HEAD` and
//! `ListObjectsV2` without bodies; a body with `Content-Length` is passed
//! on), matches its method and target against the rules, and either
//! forwards it on the connection's own upstream socket or applies the
//! fault. Answers flow back untouched. One thread per direction and
//! connection: a test's connections are few.
//!
//! Faults:
//! - [`Fault::Stall`]: the request is read and never answered, and the
//!   connection is held open (a store node that hangs on one key).
//! - [`Fault::Trickle`]: the answer comes at so many bytes a second.
//! - [`Fault::StallAfter`]: the answer's first bytes come, then nothing,
//!   the connection held open (a node that hangs mid-body).
//! - [`Fault::FlipByte`]: one byte of the answer, so many bytes in,
//!   inverted (a disk or a network that corrupts silently).
//! - [`Fault::CloseAfter`]: the answer's first bytes come, then the
//!   connection is closed cleanly (a node that dies mid-body).
//! - [`Fault::Status`]: an empty answer with that status (`503 Slow
//!   Down`, `500`), as the store's own error.
//!
//! A rule may apply to its first N requests only
//! ([`FaultProxy::add_rule_times`]): the store then recovers.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What happens to a request a rule catches.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    Stall,
    Trickle { bytes_per_sec: u64 },
    StallAfter { bytes: u64 },
    FlipByte { at: u64 },
    CloseAfter { bytes: u64 },
    Status(u16),
}

#[derive(Clone)]
struct Rule {
    /// `None`: any method.
    method: Option<&'static str>,
    /// Caught when the request's target contains this.
    target_contains: String,
    fault: Fault,
    /// Requests it still applies to; `None`: all.
    remaining: Option<usize>,
}

struct Shared {
    upstream: SocketAddr,
    rules: Mutex<Vec<Rule>>,
    stopping: AtomicBool,
    /// Requests caught by a rule so far, and a wake-up for those waiting
    /// for that count.
    caught: Mutex<usize>,
    caught_more: Condvar,
    /// Requests forwarded so far.
    forwarded: AtomicUsize,
}

/// A running proxy; stops (and lets go of stalled requests) when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// Longest request head read (S3 request heads are a few hundred bytes).
const MAX_HEAD: usize = 64 << 10;

/// How often a stalled request looks whether the proxy is stopping.
const STALL_POLL: Duration = Duration::from_millis(200);

impl FaultProxy {
    /// A proxy on a free loopback port in front of `upstream`.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            rules: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            caught: Mutex::new(0),
            caught_more: Condvar::new(),
            forwarded: AtomicUsize::new(0),
        });
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let shared = Arc::clone(&accepting);
                std::thread::spawn(move || {
                    let _ = serve(client, &shared);
                });
            }
        });
        FaultProxy { addr, shared }
    }

    /// `http://ADDR`, the endpoint to give the server.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies `fault` to every request (of `method`, or any) whose target
    /// contains `target_contains`.
    pub fn add_rule(&self, method: Option<&'static str>, target_contains: &str, fault: Fault) {
        self.push(method, target_contains, fault, None);
    }

    /// [`FaultProxy::add_rule`] for the first `times` matching requests.
    pub fn add_rule_times(
        &self,
        method: Option<&'static str>,
        target_contains: &str,
        fault: Fault,
        times: usize,
    ) {
        self.push(method, target_contains, fault, Some(times));
    }

    fn push(
        &self,
        method: Option<&'static str>,
        target_contains: &str,
        fault: Fault,
        remaining: Option<usize>,
    ) {
        self.shared.rules.lock().unwrap().push(Rule {
            method,
            target_contains: target_contains.to_string(),
            fault,
            remaining,
        });
    }

    /// Requests caught by a rule so far.
    pub fn caught(&self) -> usize {
        *self.shared.caught.lock().unwrap()
    }

    /// Requests forwarded to the store so far.
    pub fn forwarded(&self) -> usize {
        self.shared.forwarded.load(Ordering::SeqCst)
    }

    /// Waits until `at_least` requests were caught, at most `limit`.
    pub fn wait_caught(&self, at_least: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut caught = self.shared.caught.lock().unwrap();
        while *caught < at_least {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            caught = self
                .shared
                .caught_more
                .wait_timeout(caught, left)
                .unwrap()
                .0;
        }
        true
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wakes the accepting thread so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Serves one client connection: request heads in order, each forwarded
/// or faulted.
fn serve(client: TcpStream, shared: &Arc<Shared>) -> io::Result<()> {
    let mut upstream: Option<TcpStream> = None;
    // How the answers of this connection flow back, from the request a
    // rule caught on.
    let answers: Arc<Mutex<Option<Fault>>> = Arc::new(Mutex::new(None));
    let mut buf = Vec::new();
    while let Some(head_len) = read_head(&client, &mut buf)? {
        let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
        let mut words = head.split_whitespace();
        let (method, target) = (
            words.next().unwrap_or("").to_string(),
            words.next().unwrap_or("").to_string(),
        );
        let rule = {
            let mut rules = shared.rules.lock().unwrap();
            let found = rules.iter_mut().find(|r| {
                r.method.is_none_or(|m| m == method)
                    && target.contains(&r.target_contains)
                    && r.remaining != Some(0)
            });
            found.map(|r| {
                if let Some(left) = r.remaining.as_mut() {
                    *left -= 1;
                }
                r.clone()
            })
        };
        if let Some(rule) = rule {
            *shared.caught.lock().unwrap() += 1;
            shared.caught_more.notify_all();
            match rule.fault {
                Fault::Stall => return stall(&client, shared),
                Fault::Status(code) => {
                    // The store's own refusal, and the end of this
                    // connection (the client opens another).
                    let answer = format!(
                        "HTTP/1.1 {code} Fault\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = (&client).write_all(answer.as_bytes());
                    return Ok(());
                }
                fault => *answers.lock().unwrap() = Some(fault),
            }
        } else {
            *answers.lock().unwrap() = None;
        }
        let body_len = content_length(&head);
        let up = match &upstream {
            Some(up) => up,
            None => {
                let up = TcpStream::connect(shared.upstream)?;
                up.set_nodelay(true)?;
                let (from, to) = (up.try_clone()?, client.try_clone()?);
                let (answers, shared) = (Arc::clone(&answers), Arc::clone(shared));
                std::thread::spawn(move || copy_answers(from, to, &answers, &shared));
                upstream.insert(up)
            }
        };
        shared.forwarded.fetch_add(1, Ordering::SeqCst);
        let mut up_writer = up;
        up_writer.write_all(&buf[..head_len])?;
        buf.drain(..head_len);
        // The body: what came with the head, then the rest.
        let mut left = body_len;
        let early = (left as usize).min(buf.len());
        up_writer.write_all(&buf[..early])?;
        buf.drain(..early);
        left -= early as u64;
        let mut chunk = vec![0u8; 64 << 10];
        while left > 0 {
            let want = (left as usize).min(chunk.len());
            let n = (&client).read(&mut chunk[..want])?;
            if n == 0 {
                return Ok(());
            }
            up_writer.write_all(&chunk[..n])?;
            left -= n as u64;
        }
    }
    if let Some(up) = upstream {
        let _ = up.shutdown(Shutdown::Write);
    }
    Ok(())
}

/// Reads until `buf` holds a whole head; its length, or `None` at EOF.
fn read_head(client: &TcpStream, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(at + 4));
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::other("request head too long"));
        }
        let n = (&*client).read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn content_length(head: &str) -> u64 {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Holds the connection without answering until the client closes it or
/// the proxy stops.
fn stall(client: &TcpStream, shared: &Shared) -> io::Result<()> {
    client.set_read_timeout(Some(STALL_POLL))?;
    let mut sink = [0u8; 4096];
    while !shared.stopping.load(Ordering::SeqCst) {
        match (&*client).read(&mut sink) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Copies the store's answers back to the client until either side ends,
/// as the connection's fault says.
fn copy_answers(
    mut from: TcpStream,
    mut to: TcpStream,
    answers: &Mutex<Option<Fault>>,
    shared: &Shared,
) {
    let mut buf = vec![0u8; 64 << 10];
    let mut sent_since_fault = 0u64;
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        let fault = *answers.lock().unwrap();
        let result = match fault {
            None | Some(Fault::Stall) | Some(Fault::Status(_)) => to.write_all(&buf[..n]),
            Some(Fault::Trickle { bytes_per_sec }) => {
                // The fault itself is slowness: a tenth of the rate every
                // tenth of a second.
                let piece = (bytes_per_sec as usize / 10).max(1);
                let mut result = Ok(());
                for part in buf[..n].chunks(piece) {
                    if shared.stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    result = to.write_all(part);
                    if result.is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                result
            }
            Some(Fault::FlipByte { at }) => {
                let start = sent_since_fault;
                sent_since_fault += n as u64;
                if (start..sent_since_fault).contains(&at) {
                    buf[(at - start) as usize] ^= 0xff;
                }
                to.write_all(&buf[..n])
            }
            Some(Fault::CloseAfter { bytes }) => {
                let pass = (bytes.saturating_sub(sent_since_fault) as usize).min(n);
                sent_since_fault += pass as u64;
                let result = to.write_all(&buf[..pass]);
                if sent_since_fault >= bytes {
                    let _ = to.shutdown(Shutdown::Both);
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
                result
            }
            Some(Fault::StallAfter { bytes }) => {
                let pass = (bytes.saturating_sub(sent_since_fault) as usize).min(n);
                sent_since_fault += pass as u64;
                let result = to.write_all(&buf[..pass]);
                if sent_since_fault >= bytes {
                    // Holds the answer's socket open, sending nothing (the
                    // request side is read by the other thread).
                    while !shared.stopping.load(Ordering::SeqCst) {
                        std::thread::sleep(STALL_POLL);
                    }
                    return;
                }
                result
            }
        };
        if result.is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
