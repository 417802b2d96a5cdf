//! Soak: every model of `hftp serve` under mixed well-behaved and hostile
//! clients at once, on loopback, bounded in count and time (well under a
//! minute per model). Afterwards the server must still answer correctly,
//! and its resources must return to the baseline measured after a warm-up:
//!
//! - descriptors (`/proc/PID/fd`, the parent's for `fork`): exactly the
//!   baseline once the connections are gone, while the hostile clients that
//!   stopped reading or sending still hold their end open, so the server
//!   must have reaped them with its own timeouts;
//! - threads (`/proc/PID/status` Threads): at most the baseline, io_uring's
//!   `iou-wrk` kernel workers apart (at most one per ring, idle, once the
//!   load is gone: a ring keeps its last one by design);
//! - child processes (`fork`): none left, zombies included;
//! - resident memory (`/proc/PID/status` VmRSS): at most baseline + 16 MiB.
//!
//! The hostile clients: random garbage (then a fatal error or EOF), clients
//! that disconnect in the middle of a large slice or before reading any of
//! it, slow readers that ask for a 32 MiB slice and read nothing, pipelined
//! bursts (ending in `quit` followed by more requests), byte-at-a-time
//! senders (some finish their request, some stop half-way: slowloris), and
//! connections that send nothing. The server runs with
//! `--idle-timeout 2 --write-timeout 2`, so the last three kinds are reaped
//! within the test's bounded waits. Every wait is on a condition, bounded by
//! a deadline; none is a sleep standing in for synchronisation.
//!
//! Tier: quick.

use crate::support;

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::Server;
use hftp_proto::response::{
    encode_base64, write_help, write_listing, write_metadata, write_slice_head,
};
use hftp_proto::{FileName, SliceMode, Status};

const SMALL: &str = "small.txt";
const MEDIUM: &str = "medium.bin";
const BIG: &str = "big.bin";
const BIG_LEN: usize = 32 << 20;
const MEDIUM_LEN: usize = 300_000;

/// Bound on any single client read or write; never reached when the server works.
const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on waiting for the server's resources to settle.
const SETTLE: Duration = Duration::from_secs(30);
/// Allowed growth of resident memory over the warm baseline.
const RSS_MARGIN_KIB: u64 = 16 * 1024;

macro_rules! models {
    ($($test:ident => $model:literal,)*) => {
        $(
            #[test]
            fn $test() {
                soak($model);
            }
        )*
    };
}

models! {
    soak_async => "async",
    soak_threads => "threads",
    soak_pool => "pool",
    soak_fork => "fork",
    soak_poll => "poll",
    soak_uring => "uring",
}

/// A small deterministic generator (xorshift64*), so runs are repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Files {
    small: Vec<u8>,
    medium: Vec<u8>,
}

fn make_files(dir: &Path) -> Files {
    let small = b"Que calor que hace hoy, pinocho!\n".repeat(40);
    let medium: Vec<u8> = (0..MEDIUM_LEN).map(|i| (i * 31 % 253) as u8).collect();
    fs::write(dir.join(SMALL), &small).unwrap();
    fs::write(dir.join(MEDIUM), &medium).unwrap();
    let big = fs::File::create(dir.join(BIG)).unwrap();
    big.set_len(BIG_LEN as u64).unwrap();
    Files { small, medium }
}

/// The exact answer to a well-formed request, per the spec.
fn answer(files: &Files, request: &str, out: &mut Vec<u8>) {
    let tokens: Vec<&str> = request.split(' ').collect();
    let data = |name: &str| match name {
        SMALL => Some(&files.small[..]),
        MEDIUM => Some(&files.medium[..]),
        _ => None,
    };
    match tokens[..] {
        ["help"] => write_help(out),
        ["quit"] => out.extend_from_slice(b"0 OK\r\n"),
        ["get_file_listing"] => write_listing(out, [BIG, MEDIUM, SMALL]),
        ["get_metadata", name] if FileName::new(name).is_err() => {
            out.extend_from_slice(Status::InvalidArguments.line())
        }
        ["get_metadata", name] => match data(name) {
            Some(d) => write_metadata(out, d.len() as u64),
            None if name == BIG => write_metadata(out, BIG_LEN as u64),
            None => out.extend_from_slice(Status::FileNotFound.line()),
        },
        ["get_slice", name, offset, size, ref mode @ ..] => {
            let d = data(name).expect("slices of small files only");
            let (offset, size): (usize, usize) = (offset.parse().unwrap(), size.parse().unwrap());
            if offset + size > d.len() {
                out.extend_from_slice(Status::OffsetExceedsFileSize.line());
                return;
            }
            let bytes = &d[offset..offset + size];
            if mode == ["raw"] {
                write_slice_head(out, SliceMode::Raw, size as u64);
                out.extend_from_slice(bytes);
            } else {
                write_slice_head(out, SliceMode::Base64, size as u64);
                encode_base64(bytes, out);
                out.extend_from_slice(b"\r\n");
            }
        }
        _ => {
            let status = if [
                "help",
                "quit",
                "get_file_listing",
                "get_metadata",
                "get_slice",
            ]
            .contains(&tokens[0])
            {
                Status::InvalidArguments
            } else {
                Status::NoSuchCommand
            };
            out.extend_from_slice(status.line());
        }
    }
}

/// Reads until the server closes; a reset after a complete answer counts as
/// a close only where the caller allows it.
fn read_to_close(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut got = Vec::new();
    stream.read_to_end(&mut got).map(|_| got)
}

/// Random requests, their exact answers, a final `quit`.
fn session_script(files: &Files, rng: &mut Rng, count: usize) -> (Vec<u8>, Vec<u8>) {
    let mut requests = Vec::new();
    let mut expected = Vec::new();
    for _ in 0..count {
        let line = match rng.below(9) {
            0 => "help".to_owned(),
            1 => "get_file_listing".to_owned(),
            2 => format!(
                "get_metadata {}",
                [SMALL, MEDIUM, BIG, "missing"][rng.below(4) as usize]
            ),
            3 => "verdura".to_owned(),
            4 => "get_metadata a?b".to_owned(),
            5 | 6 => {
                let (name, len) = if rng.below(2) == 0 {
                    (SMALL, files.small.len())
                } else {
                    (MEDIUM, files.medium.len())
                };
                let offset = rng.below(len as u64 + 10) as usize;
                let size = rng.below(if name == MEDIUM { 70_000 } else { 200 }) as usize;
                let raw = if rng.below(2) == 0 { " raw" } else { "" };
                format!("get_slice {name} {offset} {size}{raw}")
            }
            7 => format!("get_slice {SMALL} 0 {}", files.small.len()),
            _ => format!("get_slice {MEDIUM} 0 {MEDIUM_LEN} raw"),
        };
        requests.extend_from_slice(line.as_bytes());
        requests.extend_from_slice(b"\r\n");
        answer(files, &line, &mut expected);
    }
    requests.extend_from_slice(b"quit\r\n");
    expected.extend_from_slice(b"0 OK\r\n");
    (requests, expected)
}

fn assert_answer(kind: &str, got: &[u8], expected: &[u8]) {
    if got != expected {
        let at = got
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()));
        let show = |b: &[u8]| {
            String::from_utf8_lossy(&b[at.saturating_sub(40)..(at + 80).min(b.len())]).into_owned()
        };
        panic!(
            "{kind}: answer differs at byte {at} (got {} bytes, want {}):\n got …{:?}\nwant …{:?}",
            got.len(),
            expected.len(),
            show(got),
            show(expected)
        );
    }
}

/// A well-behaved client: one request at a time, each answer checked.
fn polite(addr: SocketAddr, files: &Files, seed: u64) {
    let mut rng = Rng(seed);
    let mut stream = support::connect(addr, IO_TIMEOUT);
    let (requests, expected) = session_script(files, &mut rng, 20);
    let mut expected_left = &expected[..];
    for line in requests.split_inclusive(|&b| b == b'\n') {
        stream.write_all(line).unwrap();
        let mut want = Vec::new();
        answer(
            files,
            std::str::from_utf8(&line[..line.len() - 2]).unwrap(),
            &mut want,
        );
        let mut got = vec![0; want.len()];
        stream.read_exact(&mut got).unwrap_or_else(|e| {
            panic!(
                "polite client reading {want_len} bytes: {e}",
                want_len = want.len()
            )
        });
        assert_answer("polite client", &got, &want);
        assert!(expected_left.starts_with(&want));
        expected_left = &expected_left[want.len()..];
    }
    assert_answer(
        "polite client after quit",
        &read_to_close(&mut stream).unwrap(),
        b"",
    );
}

/// Many requests in one write, then `quit`, then more requests that must
/// be ignored without destroying the answers (graceful close).
fn pipeliner(addr: SocketAddr, files: &Files, seed: u64) {
    let mut rng = Rng(seed);
    let mut stream = support::connect(addr, IO_TIMEOUT);
    let (mut requests, expected) = session_script(files, &mut rng, 150);
    requests.extend_from_slice(&b"help\r\nget_metadata small.txt\r\n".repeat(200));
    let mut reader = stream.try_clone().unwrap();
    let read = thread::spawn(move || read_to_close(&mut reader));
    // The server may close (after quit) before all of this is written.
    let _ = stream.write_all(&requests);
    let got = read
        .join()
        .unwrap()
        .expect("pipelined answers arrive whole, without a reset");
    assert_answer("pipeliner", &got, &expected);
}

/// Bytes one at a time, each its own segment; the whole request answered.
fn trickler(addr: SocketAddr, files: &Files) {
    let mut stream = support::connect(addr, IO_TIMEOUT);
    let request = format!("get_slice {SMALL} 3 17\r\n");
    for b in request.bytes() {
        stream.write_all(&[b]).unwrap();
    }
    let mut want = Vec::new();
    answer(files, request.trim_end(), &mut want);
    let mut got = vec![0; want.len()];
    stream.read_exact(&mut got).unwrap();
    assert_answer("trickler", &got, &want);
}

/// Random bytes (some lines printable, some not), then end of input: the
/// answer is a run of error status lines, a fatal one last if any.
fn garbage(addr: SocketAddr, rng: &mut Rng) {
    let mut stream = support::connect(addr, IO_TIMEOUT);
    let len = rng.below(4096) as usize;
    let printable = rng.below(2) == 0;
    let bytes: Vec<u8> = (0..len)
        .map(|_| match rng.below(40) {
            0 => b'\r',
            1 => b'\n',
            2 => b' ',
            _ if printable => b'!' + rng.below(94) as u8,
            _ => rng.next() as u8,
        })
        .collect();
    let _ = stream.write_all(&bytes);
    let _ = stream.shutdown(Shutdown::Write);
    // A reset is possible when the server closed after a fatal error while
    // garbage was still arriving; the answer must be well-formed otherwise.
    let Ok(got) = read_to_close(&mut stream) else {
        return;
    };
    let mut rest = &got[..];
    while !rest.is_empty() {
        let status = Status::ALL
            .into_iter()
            .filter(|s| *s != Status::Ok)
            .find(|s| rest.starts_with(s.line()))
            .unwrap_or_else(|| {
                panic!(
                    "garbage got a malformed answer: {:?}",
                    String::from_utf8_lossy(&got)
                )
            });
        rest = &rest[status.line().len()..];
        assert!(
            !status.is_fatal() || rest.is_empty(),
            "bytes after a fatal status: {:?}",
            String::from_utf8_lossy(&got)
        );
    }
}

/// Asks for a large slice, reads a little of it, and disconnects.
fn quitter(addr: SocketAddr, rng: &mut Rng) {
    let mut stream = support::connect(addr, IO_TIMEOUT);
    let raw = if rng.below(2) == 0 { " raw" } else { "" };
    stream
        .write_all(format!("get_slice {BIG} 0 {BIG_LEN}{raw}\r\n").as_bytes())
        .unwrap();
    let mut buf = vec![0; rng.below(256 * 1024) as usize];
    let _ = stream.read_exact(&mut buf);
    // Dropping with unread input sends a reset to the server mid-slice.
}

/// The server's process state, from /proc.
#[derive(Debug, Clone, Copy)]
struct Usage {
    fds: usize,
    /// The server's own threads (io_uring's kernel workers apart).
    threads: u64,
    /// io_uring's `iou-wrk` kernel workers, and the rings they serve: a
    /// ring starts one when an operation must block (a splice from a file
    /// not in the page cache) and keeps its last one idle, by design.
    io_workers: u64,
    rings: u64,
    rss_kib: u64,
    children: usize,
}

/// Threads of `pid` whose name starts with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> u64 {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|t| fs::read_to_string(t.path().join("comm")).ok())
                .filter(|name| name.starts_with(prefix))
                .count() as u64
        })
        .unwrap_or(0)
}

fn status_field(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("server /proc status");
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .trim_end_matches(" kB")
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Processes whose parent is `pid`, zombies included.
fn children(pid: u32) -> usize {
    let mut n = 0;
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(status) = fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        if status
            .lines()
            .any(|l| l.strip_prefix("PPid:").map(str::trim) == Some(&pid.to_string()))
        {
            n += 1;
        }
    }
    n
}

fn usage(pid: u32) -> Usage {
    let io_workers = threads_named(pid, "iou-wrk");
    Usage {
        fds: fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("server /proc fd")
            .count(),
        threads: status_field(pid, "Threads:").saturating_sub(io_workers),
        io_workers,
        rings: threads_named(pid, "hftp-uring"),
        rss_kib: status_field(pid, "VmRSS:"),
        children: children(pid),
    }
}

fn fd_targets(pid: u32) -> Vec<String> {
    let mut targets: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| fs::read_link(e.path()).ok())
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    targets.sort();
    targets
}

fn soak(model: &str) {
    let dir = tempfile::tempdir().unwrap();
    let files = make_files(dir.path());
    let mut server = Server::builder(dir.path())
        .model(model)
        .args_for_soak()
        .start();
    let addr = server.addr();
    let pid = server.pid();
    let started = Instant::now();

    // Warm-up: every kind of answer once, so lazily allocated buffers,
    // thread-local scratch and worker threads exist before the baseline.
    for seed in 1..=4 {
        polite(addr, &files, seed);
    }
    pipeliner(addr, &files, 99);
    let baseline = settle(pid, None, model);
    eprintln!("{model}: baseline {baseline:?}");

    // Hostile clients that hold their connection open until the end: the
    // server must reap them by itself.
    let mut held: Vec<TcpStream> = Vec::new();
    for i in 0..6 {
        // Slow readers: a 32 MiB slice, and not a byte read.
        let mut s = support::connect(addr, IO_TIMEOUT);
        let raw = if i % 2 == 0 { " raw" } else { "" };
        s.write_all(format!("get_slice {BIG} 0 {BIG_LEN}{raw}\r\n").as_bytes())
            .unwrap();
        held.push(s);
    }
    for i in 0..6 {
        // Slowloris: part of a request, one byte per segment, then nothing.
        let mut s = support::connect(addr, IO_TIMEOUT);
        for b in b"get_metadata small"[..6 + i].iter() {
            s.write_all(std::slice::from_ref(b)).unwrap();
        }
        held.push(s);
    }
    for _ in 0..4 {
        // Silent: connect and send nothing.
        held.push(support::connect(addr, IO_TIMEOUT));
    }

    // The mixed crowd, concurrently.
    thread::scope(|scope| {
        let files = &files;
        for t in 0..8u64 {
            scope.spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t + 1));
                for round in 0..150 {
                    match (t + round) % 6 {
                        0 => polite(addr, files, rng.next()),
                        1 => pipeliner(addr, files, rng.next()),
                        2 => trickler(addr, files),
                        3 => garbage(addr, &mut rng),
                        4 => quitter(addr, &mut rng),
                        _ => {
                            // Connect, send half a request, and close.
                            let mut s = support::connect(addr, IO_TIMEOUT);
                            let _ = s.write_all(b"get_slice medi");
                        }
                    }
                }
            });
        }
    });
    let crowd_done = started.elapsed();

    // Still serving correctly, while the held connections are still open.
    polite(addr, &files, 12345);
    pipeliner(addr, &files, 54321);
    assert!(
        server.is_running(),
        "{model}: server died; stderr:\n{}",
        server.stderr()
    );

    // Resources back to baseline while the hostile clients still hold their
    // ends: the timeouts must have reaped them.
    let after = settle(pid, Some(baseline), model);
    drop(held);
    polite(addr, &files, 777);
    assert!(
        server.is_running(),
        "{model}: server died; stderr:\n{}",
        server.stderr()
    );
    let stderr = server.stderr();
    for bad in ["panicked", "RUST_BACKTRACE"] {
        assert!(
            !stderr.contains(bad),
            "{model}: server log mentions {bad:?}:\n{stderr}"
        );
    }
    eprintln!(
        "{model}: after {after:?}; RSS {:+} KiB; crowd {:.1?}, total {:.1?}",
        after.rss_kib as i64 - baseline.rss_kib as i64,
        crowd_done,
        started.elapsed()
    );
}

/// Waits, bounded by [`SETTLE`], until the server holds no connection:
/// descriptors back to `baseline` (or stable when measuring the baseline),
/// threads at most the baseline, no child process. Then checks RSS.
fn settle(pid: u32, baseline: Option<Usage>, model: &str) -> Usage {
    let deadline = Instant::now() + SETTLE;
    let mut stable = 0;
    let mut last: Option<Usage> = None;
    loop {
        let now = usage(pid);
        stable = if last.is_some_and(|l| l.fds == now.fds && l.threads == now.threads) {
            stable + 1
        } else {
            0
        };
        let settled = match baseline {
            // At most one idle io_uring worker per ring once the load
            // is gone; more would be workers still blocked.
            Some(b) => {
                now.fds == b.fds
                    && now.threads <= b.threads
                    && now.io_workers <= now.rings
                    && now.children == 0
            }
            // The warm-up's connections are gone (they close at once: the
            // clients read to EOF): no child, and the same reading for 0.5 s.
            None => stable >= 10 && now.children == 0,
        };
        if settled {
            if let Some(b) = baseline {
                assert!(
                    now.rss_kib <= b.rss_kib + RSS_MARGIN_KIB,
                    "{model}: resident memory {} KiB, baseline {} KiB: grew by more than {RSS_MARGIN_KIB} KiB",
                    now.rss_kib,
                    b.rss_kib
                );
            }
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{model}: server did not return to its baseline within {SETTLE:?}: now {now:?}, baseline {baseline:?}\nopen descriptors: {:#?}",
            fd_targets(pid)
        );
        last = Some(now);
        thread::sleep(Duration::from_millis(50));
    }
}

trait SoakArgs {
    fn args_for_soak(self) -> Self;
}

impl SoakArgs for support::ServerBuilder {
    /// Short timeouts so hostile connections are reaped within the test, and
    /// warnings only in the log; everything else as deployed.
    fn args_for_soak(self) -> Self {
        ["--idle-timeout", "2", "--write-timeout", "2", "-q"]
            .into_iter()
            .fold(self, |b, a| b.arg(a))
    }
}
