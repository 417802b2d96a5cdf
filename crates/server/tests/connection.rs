//! The connection state machine driven without sockets: a virtual clock,
//! an in-memory store with programmable latency and failures, and a fake
//! peer that decides how input arrives and how much output it accepts (as
//! `quinn-proto`'s tests drive pairs of endpoints). The socket-level tests
//! in `crates/cli/tests` check the same behaviour through every driver.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hftp_proto::{FileName, Range};
use hftp_server::connection::{Action, Connection, ConnectionConfig, End};
use hftp_server::session::CloseReason;
use hftp_server::storage::{ListPage, RangeReader, Storage, StorageError, StorageStep};

const IDLE: Duration = Duration::from_secs(30);
const WRITE: Duration = Duration::from_secs(10);
/// Block size of the fake store's readers: a remote store's read-ahead.
const BLOCK: usize = 1 << 20;

/// What the fake store does for one name.
#[derive(Clone)]
enum Entry {
    File(Arc<Vec<u8>>),
    /// The file claims `claimed` bytes but holds fewer (it shrank).
    Shrunk {
        claimed: u64,
        data: Arc<Vec<u8>>,
    },
    Unavailable,
}

struct FakeStore {
    entries: Mutex<HashMap<String, Entry>>,
    /// Storage calls made (list, size, open, block reads).
    calls: AtomicUsize,
    /// Names per listing page (0: one page of everything).
    page_names: AtomicUsize,
    /// Listing pages answered before the listing fails (usize::MAX: never).
    pages_before_failure: AtomicUsize,
}

impl Default for FakeStore {
    fn default() -> Self {
        FakeStore {
            entries: Mutex::default(),
            calls: AtomicUsize::new(0),
            page_names: AtomicUsize::new(0),
            pages_before_failure: AtomicUsize::new(usize::MAX),
        }
    }
}

impl FakeStore {
    fn with(files: &[(&str, Entry)]) -> Arc<FakeStore> {
        let store = FakeStore::default();
        for (name, entry) in files {
            store
                .entries
                .lock()
                .unwrap()
                .insert(name.to_string(), entry.clone());
        }
        Arc::new(store)
    }

    fn entry(&self, name: &FileName) -> Option<Entry> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.entries.lock().unwrap().get(name.as_str()).cloned()
    }
}

struct FakeReader {
    data: Arc<Vec<u8>>,
    pos: usize,
    end: usize,
    store: Arc<FakeStore>,
}

impl RangeReader for FakeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.store.calls.fetch_add(1, Ordering::SeqCst);
        let end = self.end.min(self.data.len());
        let n = end.saturating_sub(self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
    fn block_size(&self) -> usize {
        BLOCK
    }
}

/// The store as the server sees it (the `Arc` lets readers count calls).
struct Shared(Arc<FakeStore>);

impl Storage for Shared {
    fn backend(&self) -> &'static str {
        "test"
    }
    /// Pages of `page_names` names; the cursor is the last name sent.
    fn list_page(&self, cursor: Option<&str>) -> Result<ListPage, StorageError> {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        let left = self.0.pages_before_failure.load(Ordering::SeqCst);
        if left == 0 {
            return Err(unavailable());
        }
        if left != usize::MAX {
            self.0
                .pages_before_failure
                .store(left - 1, Ordering::SeqCst);
        }
        let mut names: Vec<String> = self.0.entries.lock().unwrap().keys().cloned().collect();
        names.sort();
        names.retain(|n| cursor.is_none_or(|c| n.as_str() > c));
        let per_page = self.0.page_names.load(Ordering::SeqCst);
        if per_page == 0 || names.len() <= per_page {
            return Ok(ListPage {
                names,
                next: None,
                ..ListPage::default()
            });
        }
        names.truncate(per_page);
        let next = names.last().cloned();
        Ok(ListPage {
            names,
            next,
            ..ListPage::default()
        })
    }
    fn size(&self, name: &FileName) -> Result<u64, StorageError> {
        match self.0.entry(name) {
            Some(Entry::File(d)) => Ok(d.len() as u64),
            Some(Entry::Shrunk { claimed, .. }) => Ok(claimed),
            Some(Entry::Unavailable) => Err(unavailable()),
            None => Err(StorageError::NotFound),
        }
    }
    fn open_range(
        &self,
        name: &FileName,
        range: Range,
    ) -> Result<Box<dyn RangeReader>, StorageError> {
        let (size, data) = match self.0.entry(name) {
            Some(Entry::File(d)) => (d.len() as u64, d),
            Some(Entry::Shrunk { claimed, data }) => (claimed, data),
            Some(Entry::Unavailable) => return Err(unavailable()),
            None => return Err(StorageError::NotFound),
        };
        if !range.fits(size) {
            return Err(StorageError::OutOfRange);
        }
        Ok(Box::new(FakeReader {
            data,
            pos: range.offset as usize,
            end: (range.offset + range.size) as usize,
            store: Arc::clone(&self.0),
        }))
    }
    fn may_block(&self) -> bool {
        true
    }
}

fn unavailable() -> StorageError {
    StorageError::Unavailable(io::Error::new(io::ErrorKind::TimedOut, "store timed out"))
}

/// One connection, its peer and a virtual clock.
struct Harness {
    conn: Connection,
    storage: Shared,
    start: Instant,
    now: Instant,
    /// Chunks the peer will send, one per read.
    to_send: VecDeque<Vec<u8>>,
    /// The peer closed its writing side once `to_send` is empty.
    peer_eof: bool,
    /// Bytes the peer's socket accepts before it is full (None: no limit).
    window: Option<usize>,
    received: Vec<u8>,
    /// A storage step in flight and when it completes.
    in_flight: Option<(StorageStep, Instant)>,
    latency: Duration,
    storage_steps: usize,
    write_shut: bool,
    /// How often the connection yielded with work still to do.
    yields: usize,
    ended: Option<End>,
}

impl Harness {
    fn new(store: Arc<FakeStore>) -> Harness {
        Harness::limited(store, None)
    }

    /// With `--limit-rate` at `rate` bytes a second.
    fn limited(store: Arc<FakeStore>, rate: Option<u64>) -> Harness {
        let storage = Arc::new(Shared(Arc::clone(&store)));
        let config = ConnectionConfig {
            // The store's calls may block: answers go out before each step.
            flush_before_storage: storage.may_block(),
            limit_rate: rate,
            ..ConnectionConfig::new(IDLE, WRITE)
        };
        let start = Instant::now();
        Harness {
            conn: Connection::new(&config, None, start),
            storage: Shared(store),
            start,
            now: start,
            to_send: VecDeque::new(),
            peer_eof: false,
            window: None,
            received: Vec::new(),
            in_flight: None,
            latency: Duration::ZERO,
            storage_steps: 0,
            write_shut: false,
            yields: 0,
            ended: None,
        }
    }

    fn send(&mut self, bytes: &[u8]) -> &mut Self {
        self.to_send.push_back(bytes.to_vec());
        self
    }

    /// Does everything possible without time passing: one turn of a driver
    /// that has just waited, yielding whenever the connection asks.
    fn run(&mut self) {
        self.conn.new_turn();
        for _ in 0..1_000_000 {
            if self.ended.is_some() {
                return;
            }
            match self.conn.poll() {
                Action::Send(bytes) => {
                    let n = self.window.map_or(bytes.len(), |w| w.min(bytes.len()));
                    if n == 0 {
                        return;
                    }
                    self.received.extend_from_slice(&bytes[..n]);
                    if let Some(w) = &mut self.window {
                        *w -= n;
                    }
                    self.conn.sent(n, self.now);
                }
                Action::SendFile { .. } | Action::SplicePipe { .. } => {
                    panic!("the fake store has no descriptors")
                }
                Action::Storage(step) => {
                    assert!(self.in_flight.is_none(), "one step at a time");
                    self.storage_steps += 1;
                    if self.latency.is_zero() {
                        let reply = step.run(&self.storage);
                        self.conn.storage_done(reply, self.now);
                    } else {
                        self.in_flight = Some((step, self.now + self.latency));
                    }
                }
                Action::ShutdownWrite => {
                    self.write_shut = true;
                    self.conn.write_shut(true, self.now);
                }
                Action::Receive => match self.to_send.pop_front() {
                    Some(chunk) => self.conn.handle_input(&chunk, self.now),
                    None if self.peer_eof => self.conn.handle_eof(self.now),
                    None => return,
                },
                Action::Yield => self.yields += 1,
                // Until `poll_timeout`: `advance` lets the time pass.
                Action::Sleep => return,
                Action::Park => return,
                Action::Close(end) => {
                    self.ended = Some(end);
                    return;
                }
            }
        }
        panic!("the connection never settled");
    }

    /// Lets `d` of virtual time pass: storage completes, deadlines fire.
    fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        loop {
            self.run();
            let next_storage = self.in_flight.as_ref().map(|(_, at)| *at);
            let next = [next_storage, self.conn.poll_timeout()]
                .into_iter()
                .flatten()
                .filter(|&t| t <= until)
                .min();
            let Some(next) = next else { break };
            if self.ended.is_some() {
                break;
            }
            self.now = self.now.max(next);
            if next_storage.is_some_and(|t| t <= self.now) {
                let (step, _) = self.in_flight.take().unwrap();
                let reply = step.run(&self.storage);
                self.conn.storage_done(reply, self.now);
            }
            self.conn.handle_timeout(self.now);
        }
        self.now = until;
        self.run();
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn received_str(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }
}

fn file(data: &[u8]) -> Entry {
    Entry::File(Arc::new(data.to_vec()))
}

fn hola() -> Arc<FakeStore> {
    FakeStore::with(&[
        ("hola.txt", file(b"Que calor que hace hoy, pinocho!")),
        ("down", Entry::Unavailable),
    ])
}

/// `--limit-rate`: a 2 MB slice at 100 KB/s takes 20 s of virtual time,
/// whatever the mode; what was sent by any moment is at most a burst ahead
/// of the rate; requests that need no body are not held.
#[test]
fn a_limited_rate_holds_body_bytes_to_it_in_every_mode() {
    const SIZE: usize = 2_000_000;
    const RATE: u64 = 100_000;
    for raw in [false, true] {
        let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
        let store = FakeStore::with(&[("big", file(&data))]);
        let mut h = Harness::limited(store, Some(RATE));
        let mode = if raw { " raw" } else { "" };
        h.send(format!("help\r\nget_slice big 0 {SIZE}{mode}\r\n").as_bytes());
        h.run();
        assert!(h.received_str().starts_with("0 OK\r\nget_file_listing"));
        let wire = if raw { SIZE } else { SIZE.div_ceil(3) * 4 };
        let mut last = 0;
        for second in 1..=60u64 {
            h.advance(Duration::from_secs(1));
            let got = h.received.len();
            let allowed = RATE * second + 16 * 1024 + 200;
            assert!(
                got as u64 <= allowed,
                "raw={raw}: {got} bytes after {second} s"
            );
            if got == last && got >= wire {
                break;
            }
            last = got;
        }
        assert!(h.received.len() >= wire, "raw={raw}: the slice never ended");
        let took = h.elapsed().as_secs_f64();
        let expected = wire as f64 / RATE as f64;
        assert!(
            took >= expected - 1.0 && took <= expected + 2.0,
            "raw={raw}: {took} s of virtual time for {expected} s at the rate"
        );
    }
}

#[test]
fn a_request_split_into_single_bytes_is_answered_once_complete() {
    let mut h = Harness::new(hola());
    for b in b"get_metadata hola.txt\r\n" {
        h.send(&[*b]);
    }
    h.run();
    assert_eq!(h.received_str(), "0 OK\r\n32\r\n");
    assert!(h.ended.is_none());
}

#[test]
fn pipelined_requests_are_answered_in_order_then_quit_closes() {
    let mut h = Harness::new(hola());
    h.send(b"help\r\nget_metadata hola.txt\r\nget_slice hola.txt 4 19\r\nget_slice hola.txt 0 5 raw\r\nget_file_listing\r\nquit\r\nhelp\r\n");
    h.peer_eof = true;
    h.run();
    assert_eq!(
        h.received_str(),
        "0 OK\r\nget_file_listing\r\nget_metadata\r\nget_slice\r\nhelp\r\nquit\r\n\r\n\
         0 OK\r\n32\r\n\
         0 OK\r\nY2Fsb3IgcXVlIGhhY2UgaG95LA==\r\n\
         0 OK\r\nContent-Length: 5\r\n\r\nQue c\
         0 OK\r\ndown\r\nhola.txt\r\n\r\n\
         0 OK\r\n"
    );
    assert!(h.write_shut, "quit shuts down the write side");
    assert_eq!(h.ended, Some(End::Closed(CloseReason::Quit)));
}

#[test]
fn a_client_that_waits_for_each_answer_never_yields_and_a_flood_does() {
    let mut h = Harness::new(hola());
    for _ in 0..200 {
        h.send(b"get_metadata hola.txt\r\n");
        h.run();
    }
    assert_eq!(h.received_str(), "0 OK\r\n32\r\n".repeat(200));
    assert_eq!(h.yields, 0, "each turn ended waiting for the client");

    let mut h = Harness::new(hola());
    for _ in 0..200 {
        h.send(b"get_metadata hola.txt\r\n");
    }
    h.run();
    assert_eq!(h.received_str(), "0 OK\r\n32\r\n".repeat(200));
    assert!(
        h.yields > 0,
        "200 requests ready at once make a turn too long"
    );
}

#[test]
fn a_fatal_error_answers_then_ignores_the_rest_and_drains() {
    let mut h = Harness::new(hola());
    h.send(b"get_metadata hola.txt\r\nhelp\nget_metadata hola.txt\r\n");
    h.send(b"more after the error\r\n");
    h.run();
    assert_eq!(h.received_str(), "0 OK\r\n32\r\n100 BAD EOL\r\n");
    assert!(h.write_shut);
    // Still draining: the close waits for the peer or the drain deadline.
    assert!(h.ended.is_none());
    h.advance(Duration::from_millis(499));
    assert!(h.ended.is_none());
    h.advance(Duration::from_millis(1));
    assert_eq!(
        h.ended,
        Some(End::Closed(CloseReason::Fatal(hftp_proto::Status::BadEol)))
    );
}

#[test]
fn an_idle_connection_ends_at_its_idle_deadline_counted_from_the_last_answer() {
    let mut h = Harness::new(hola());
    h.advance(IDLE - Duration::from_millis(1));
    assert!(h.ended.is_none());
    h.send(b"get_metadata hola.txt\r\n");
    h.run();
    assert_eq!(h.received_str(), "0 OK\r\n32\r\n");
    h.advance(IDLE - Duration::from_millis(1));
    assert!(h.ended.is_none(), "idle time restarts with each request");
    h.advance(Duration::from_millis(1));
    assert_eq!(h.ended, Some(End::IdleTimeout));
    assert_eq!(h.elapsed(), 2 * IDLE - Duration::from_millis(1));
}

#[test]
fn a_peer_that_stops_reading_hits_the_write_timeout_and_progress_defers_it() {
    let data: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
    let mut h = Harness::new(FakeStore::with(&[("big", file(&data))]));
    h.window = Some(100_000);
    h.send(b"get_slice big 0 3000000\r\n");
    h.run();
    assert_eq!(h.received.len(), 100_000);
    h.advance(WRITE - Duration::from_millis(1));
    assert!(h.ended.is_none());
    // The peer reads a little: the deadline moves.
    h.window = Some(1);
    h.run();
    h.advance(WRITE - Duration::from_millis(1));
    assert!(h.ended.is_none());
    h.advance(Duration::from_millis(1));
    assert_eq!(h.ended, Some(End::WriteTimeout));
}

#[test]
fn slow_storage_holds_no_deadline_and_the_answer_comes_with_the_reply() {
    let mut h = Harness::new(hola());
    h.latency = IDLE * 3;
    h.send(b"get_metadata hola.txt\r\nhelp\r\n");
    h.run();
    assert!(h.received.is_empty(), "nothing before the store answers");
    assert_eq!(
        h.conn.poll_timeout(),
        None,
        "no idle or write deadline meanwhile"
    );
    h.advance(IDLE * 3 - Duration::from_millis(1));
    assert!(h.received.is_empty());
    assert!(h.ended.is_none());
    h.advance(Duration::from_millis(1));
    assert!(h
        .received_str()
        .starts_with("0 OK\r\n32\r\n0 OK\r\nget_file_listing"));
    assert!(h.ended.is_none());
}

#[test]
fn storage_errors_map_to_their_statuses() {
    let mut h = Harness::new(hola());
    h.send(b"get_metadata nope\r\nget_slice hola.txt 30 3\r\nget_slice nope 0 0\r\n");
    h.run();
    assert_eq!(
        h.received_str(),
        "202 FILE NOT FOUND\r\n203 OFFSET EXCEEDS FILE SIZE\r\n202 FILE NOT FOUND\r\n"
    );
    h.send(b"get_metadata down\r\nhelp\r\n");
    h.run();
    assert!(h
        .received_str()
        .ends_with("\r\n199 INTERNAL SERVER ERROR\r\n"));
    assert!(h.write_shut, "199 is fatal");
}

#[test]
fn a_large_slice_is_read_in_a_few_large_blocks() {
    let size = 5 * BLOCK + 12_345;
    let data: Vec<u8> = (0..size + 10).map(|i| (i * 7 % 256) as u8).collect();
    for (request, mode) in [("get_slice f 3 ", "base64"), ("get_slice f 3 ", "raw")] {
        let store = FakeStore::with(&[("f", file(&data))]);
        let mut h = Harness::new(Arc::clone(&store));
        let raw = mode == "raw";
        h.send(format!("{request}{size}{}\r\n", if raw { " raw" } else { "" }).as_bytes());
        h.run();
        let mut want = Vec::new();
        if raw {
            want.extend_from_slice(format!("0 OK\r\nContent-Length: {size}\r\n\r\n").as_bytes());
            want.extend_from_slice(&data[3..3 + size]);
        } else {
            want.extend_from_slice(b"0 OK\r\n");
            hftp_proto::response::encode_base64(&data[3..3 + size], &mut want);
            want.extend_from_slice(b"\r\n");
        }
        assert!(h.received == want, "{mode}: body differs");
        // One open and a read per block, not one per 48 KiB chunk.
        assert!(h.storage_steps <= 7, "{mode}: {} steps", h.storage_steps);
        assert!(store.calls.load(Ordering::SeqCst) <= 8);
        assert!(h.ended.is_none());
    }
}

#[test]
fn a_file_that_shrinks_mid_slice_closes_the_connection() {
    let data = Arc::new(vec![b'x'; 2 * BLOCK]);
    let store = FakeStore::with(&[(
        "s",
        Entry::Shrunk {
            claimed: 4 * BLOCK as u64,
            data,
        },
    )]);
    let mut h = Harness::new(store);
    h.send(format!("get_slice s 0 {} raw\r\n", 4 * BLOCK).as_bytes());
    h.run();
    let head = format!("0 OK\r\nContent-Length: {}\r\n\r\n", 4 * BLOCK);
    assert_eq!(h.received.len(), head.len() + 2 * BLOCK);
    assert!(matches!(h.ended, Some(End::Error(ref e)) if e.contains("shrank")));
}

#[test]
fn shutdown_ends_idle_connections_and_lets_answers_finish() {
    let mut h = Harness::new(hola());
    h.conn.stop();
    h.run();
    assert_eq!(h.ended, Some(End::Shutdown));

    let data = vec![1u8; 3 * BLOCK];
    let mut h = Harness::new(FakeStore::with(&[("f", file(&data))]));
    h.window = Some(10);
    h.send(format!("get_slice f 0 {} raw\r\nhelp\r\n", data.len()).as_bytes());
    h.run();
    h.conn.stop();
    h.window = None;
    h.run();
    let text = h.received_str();
    assert!(
        text.ends_with("help\r\nquit\r\n\r\n"),
        "pipelined requests are answered"
    );
    assert_eq!(h.ended, Some(End::Shutdown));
}

#[test]
fn a_connection_draining_after_quit_stops_at_its_byte_limit() {
    let mut h = Harness::new(hola());
    h.send(b"quit\r\n");
    h.run();
    assert!(h.write_shut);
    let flood = vec![b'a'; 1 << 20];
    for _ in 0..63 {
        h.send(&flood);
    }
    h.run();
    assert!(h.ended.is_none(), "63 MiB drained");
    h.send(&flood);
    h.run();
    assert_eq!(h.ended, Some(End::Closed(CloseReason::Quit)));
}

/// The guarantee a completion-based driver relies on (module docs of
/// `connection`): the bytes of a `Send` do not move or change while the
/// kernel holds them, whatever the driver asks meanwhile short of reporting.
#[test]
fn send_bytes_stay_put_until_they_are_reported() {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let store = FakeStore::with(&[("f", file(&data))]);
    for request in ["get_slice f 0 200000\r\n", "get_slice f 0 200000 raw\r\n"] {
        let mut h = Harness::new(Arc::clone(&store));
        h.conn.handle_input(request.as_bytes(), h.now);
        // Run storage steps until the first bytes of the body are handed out.
        let (ptr, copy) = loop {
            match h.conn.poll() {
                Action::Storage(step) => {
                    let reply = step.run(&h.storage);
                    h.conn.storage_done(reply, h.now);
                }
                Action::Send(bytes) if bytes.len() > 1000 => {
                    break (bytes.as_ptr(), bytes.to_vec());
                }
                Action::Send(bytes) => {
                    let n = bytes.len();
                    h.conn.sent(n, h.now);
                }
                other => panic!("unexpected action {}", action_name(&other)),
            }
        };
        // What a driver may do while the bytes are in flight.
        h.conn.stop();
        h.conn.handle_timeout(h.now + WRITE + WRITE);
        let _ = h.conn.poll_timeout();
        let _ = h.conn.is_idle();
        let _ = h.conn.describe();
        assert!(
            h.conn.ended().is_some(),
            "{request}: the write timeout passed"
        );
        // SAFETY: the guarantee under test says the bytes are still there;
        // if it were broken, the comparison would fail (or the sanitizer
        // would catch a use after free).
        let now = unsafe { std::slice::from_raw_parts(ptr, copy.len()) };
        assert!(now == copy.as_slice(), "{request}: the bytes changed");
    }
}

fn action_name(action: &Action<'_>) -> &'static str {
    match action {
        Action::Send(_) => "send",
        Action::SendFile { .. } => "sendfile",
        Action::SplicePipe { .. } => "splice",
        Action::Storage(_) => "storage",
        Action::ShutdownWrite => "shutdown",
        Action::Receive => "receive",
        Action::Yield => "yield",
        Action::Sleep => "sleep",
        Action::Park => "park",
        Action::Close(_) => "close",
    }
}

/// A store of `count` empty files listed `per_page` names a page.
fn paged_store(count: usize, per_page: usize) -> Arc<FakeStore> {
    let store = FakeStore::default();
    for i in 0..count {
        store
            .entries
            .lock()
            .unwrap()
            .insert(format!("f{i:05}"), file(b""));
    }
    store.page_names.store(per_page, Ordering::SeqCst);
    Arc::new(store)
}

#[test]
fn a_listing_of_many_pages_is_one_answer_with_a_step_per_page() {
    let mut h = Harness::new(paged_store(10_000, 1000));
    h.send(b"get_file_listing\r\nhelp\r\n");
    h.run();
    let mut want = b"0 OK\r\n".to_vec();
    for i in 0..10_000 {
        want.extend_from_slice(format!("f{i:05}\r\n").as_bytes());
    }
    want.extend_from_slice(b"\r\n");
    assert!(
        h.received.starts_with(&want),
        "listing is not every name in order, then the empty line"
    );
    assert!(
        h.received[want.len()..].starts_with(b"0 OK\r\n"),
        "the next request is answered after the listing"
    );
    assert_eq!(h.storage_steps, 10, "one storage step per page");
    assert!(h.ended.is_none());
}

#[test]
fn a_listing_page_that_fails_after_0_ok_closes_the_connection() {
    let store = paged_store(30, 10);
    store.pages_before_failure.store(2, Ordering::SeqCst);
    let mut h = Harness::new(store);
    h.send(b"get_file_listing\r\n");
    h.run();
    let text = String::from_utf8(h.received.clone()).unwrap();
    assert!(text.starts_with("0 OK\r\nf00000\r\n"), "{text:?}");
    assert!(
        text.contains("f00019\r\n") && !text.contains("f00020"),
        "{text:?}"
    );
    assert!(!text.ends_with("\r\n\r\n"), "no final empty line: {text:?}");
    assert!(
        matches!(h.ended, Some(End::Error(ref e)) if e.contains("timed out")),
        "{:?}",
        h.ended
    );
}

#[test]
fn a_listing_whose_first_page_fails_is_answered_199() {
    let store = paged_store(30, 10);
    store.pages_before_failure.store(0, Ordering::SeqCst);
    let mut h = Harness::new(store);
    h.send(b"get_file_listing\r\n");
    h.run();
    assert_eq!(h.received, b"199 INTERNAL SERVER ERROR\r\n");
    assert!(h.write_shut, "199 is fatal: the server closes its side");
}
