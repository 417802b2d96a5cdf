//! A faulty object store never holds anyone else: the server in front of
//! the real Garage cluster through a fault-injecting proxy started by the
//! test ([`crate::support::fault_proxy`]).
//!
//! One object the store never answers for (`big.bin`: its requests are
//! read and held, as by a node stuck on one key) must not delay a request
//! for another object, in any model; the stalled requests themselves get
//! `199` within their first-byte bound; and the loop models and `async`
//! do not park a thread per stalled call (their thread count is reported
//! and bounded).
//!
//! The assertions are on order (the other request is answered while no
//! stalled client has had a byte) and on bounds with a wide margin, never
//! on speed.
//!
//! Tier: full (every test marked `#[ignore = "full tier: ..."]`): needs Garage 2.5.0.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::bucket::Bucket;
use crate::support::fault_proxy::{Fault, FaultProxy};
use crate::support::garage;
use crate::support::{Server, ServerBuilder};

/// How long a log line may take to reach the test (the server's output
/// is copied by a thread that lags on a loaded machine).
const LOG_WAIT: Duration = Duration::from_secs(30);

/// The server's `--s3-first-byte-timeout` in these tests.
const FIRST_BYTE_SECS: u64 = 15;

/// A `hftp serve --storage s3://hftp/PREFIX` that reaches node 0 of the
/// shared cluster through `proxy`, not started yet.
fn through(proxy: &FaultProxy, prefix: &str, model: &str) -> ServerBuilder {
    let mut builder = Server::builder(Path::new("."))
        .storage(&format!("s3://{}/{prefix}", garage::BUCKET))
        .model(model)
        .env("HFTP_S3_FIRST_BYTE_TIMEOUT", FIRST_BYTE_SECS.to_string());
    for (key, value) in garage::shared().env(0) {
        let value = if key == "AWS_ENDPOINT_URL" {
            proxy.endpoint()
        } else {
            value
        };
        builder = builder.env(key, value);
    }
    builder
}

/// Threads of process `pid`.
fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads: line")
}

/// Whether the server has sent anything to `client` yet.
fn has_answer(client: &TcpStream) -> bool {
    client.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let answered = match client.peek(&mut byte) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    };
    client.set_nonblocking(false).unwrap();
    answered
}

/// The first line a client got, waiting at most `limit`.
fn status_line(mut client: &TcpStream, limit: Duration) -> String {
    client.set_read_timeout(Some(limit)).unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match client.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&line).trim_end().to_string()
}

/// `stalled` clients ask for `big.bin` (raw and base64 in turn), which the
/// store never answers; then another client asks for `small.bin`.
fn stalled_object_holds_no_other_request(model: &str, stalled: usize) {
    let _load = garage::light_load();
    let cluster = garage::shared();
    let prefix = format!("faulty-{model}-{stalled}");
    let bucket = Bucket::new(cluster, &cluster.endpoint(0), &prefix);
    bucket.put_raw(&format!("{prefix}/small.bin"), b"small");
    bucket.put_raw(&format!("{prefix}/big.bin"), &vec![7u8; 1 << 20]);
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], cluster.s3_port(0))));
    let mut server = through(&proxy, &prefix, model).start();
    proxy.add_rule(None, "/big.bin", Fault::Stall);

    let clients: Vec<TcpStream> = (0..stalled)
        .map(|i| {
            let mut client = TcpStream::connect(server.addr()).expect("connect");
            let mode = if i % 2 == 0 { " raw" } else { "" };
            client
                .write_all(format!("get_slice big.bin 0 1048576{mode}\r\n").as_bytes())
                .unwrap();
            client
        })
        .collect();
    // At least as many stalled calls as one object may have in flight.
    let in_flight = stalled.min(8);
    assert!(
        proxy.wait_caught(in_flight, Duration::from_secs(60)),
        "--model {model}: the store saw {} of {in_flight} calls for big.bin\n{}",
        proxy.caught(),
        server.stderr()
    );

    // Another object is answered while every stalled client still waits.
    let started = Instant::now();
    let mut other = TcpStream::connect(server.addr()).expect("connect");
    other.write_all(b"get_metadata small.bin\r\n").unwrap();
    let first = status_line(&other, Duration::from_secs(120));
    let size = status_line(&other, Duration::from_secs(5));
    let took = started.elapsed();
    let early: Vec<usize> = (0..stalled).filter(|&i| has_answer(&clients[i])).collect();
    eprintln!(
        "--model {model}, {stalled} stalled: get_metadata small.bin answered in {took:?}; \
         store calls caught {}, forwarded {}",
        proxy.caught(),
        proxy.forwarded()
    );
    assert_eq!(
        (first.as_str(), size.as_str()),
        ("0 OK", "5"),
        "--model {model}\n{}",
        server.stderr()
    );
    assert!(
        early.is_empty(),
        "--model {model}: stalled clients {early:?} were answered before small.bin was: \
         the other object waited for the stalled calls"
    );

    // No thread parked per stalled call in the models that multiplex.
    if !matches!(model, "threads" | "fork") {
        let count = threads(server.pid());
        eprintln!("--model {model}: {count} threads with {stalled} requests stalled");
        assert!(
            count < 30,
            "--model {model}: {count} threads with {stalled} stalled requests"
        );
    }

    // Each stalled request ends with 199 within its bound (a wide margin
    // over the first-byte timeout, for a loaded machine).
    let bound = Duration::from_secs(4 * FIRST_BYTE_SECS);
    for (i, client) in clients.iter().enumerate() {
        let line = status_line(
            client,
            bound
                .saturating_sub(started.elapsed())
                .max(Duration::from_secs(1)),
        );
        assert!(
            line.starts_with("199"),
            "--model {model}: stalled client {i} got {line:?} within {bound:?}\n{}",
            server.stderr()
        );
    }
    eprintln!(
        "--model {model}: all {stalled} stalled requests answered 199 after {:?}",
        started.elapsed()
    );
    // The log names the object (read as it is copied from the server).
    server.wait_stderr("big.bin", LOG_WAIT);
    assert!(
        server.is_running(),
        "--model {model}: server died\n{}",
        server.stderr()
    );
}

mod one_stalled_object_holds_no_other_request {
    fn check(model: &str) {
        super::stalled_object_holds_no_other_request(model, 40);
    }

    per_model!(
        #[ignore = "full tier: needs Garage 2.5.0 (cargo install garage)"]
        check
    );
}

/// 600 stalled requests: as many tasks, not threads.
mod six_hundred_stalled_requests_cost_no_thread_each {
    #[test]
    #[ignore = "full tier: needs Garage 2.5.0 (cargo install garage)"]
    fn model_async() {
        super::stalled_object_holds_no_other_request("async", 600);
    }

    #[test]
    #[ignore = "full tier: needs Garage 2.5.0 (cargo install garage)"]
    fn model_uring() {
        super::stalled_object_holds_no_other_request("uring", 600);
    }
}

/// Sends `request` and reads the answer until the server closes the
/// connection (or `limit` passes): the bytes, and whether it closed.
fn answer_until_close(addr: SocketAddr, request: &str, limit: Duration) -> (Vec<u8>, bool) {
    let mut client = TcpStream::connect(addr).expect("connect");
    client.set_read_timeout(Some(limit)).unwrap();
    client.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let deadline = Instant::now() + limit;
    loop {
        match client.read(&mut buf) {
            Ok(0) => return (answer, true),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => return (answer, false),
        }
        if Instant::now() >= deadline {
            return (answer, false);
        }
    }
}

/// The server's `--s3-low-speed-time` in the body tests.
const LOW_SPEED_SECS: u64 = 3;

/// A server for the body tests: `big.bin` (1 MiB) and `huge.bin` (9 MiB,
/// past one version check) in the bucket, the proxy in front.
fn body_fixture(model: &str, test: &str) -> (FaultProxy, Server, Vec<u8>) {
    body_fixture_with(model, test, true)
}

/// [`body_fixture`], its slices read by hand (`splice`, as deployed) or
/// streamed through object_store (`--s3-splice false`).
fn body_fixture_with(model: &str, test: &str, splice: bool) -> (FaultProxy, Server, Vec<u8>) {
    let cluster = garage::shared();
    let prefix = format!("faulty-{test}-{model}");
    let bucket = Bucket::new(cluster, &cluster.endpoint(0), &prefix);
    let huge: Vec<u8> = (0..9u32 << 20).map(|i| (i % 251) as u8).collect();
    bucket.put_raw(&format!("{prefix}/big.bin"), &huge[..1 << 20]);
    bucket.put_raw(&format!("{prefix}/huge.bin"), &huge);
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], cluster.s3_port(0))));
    let server = through(&proxy, &prefix, model)
        .env("HFTP_S3_LOW_SPEED_TIME", LOW_SPEED_SECS.to_string())
        .env("HFTP_S3_SPLICE", splice.to_string())
        .start();
    (proxy, server, huge)
}

/// A store that trickles (4 KB/s, below the default floor of 16 KiB/s):
/// `0 OK` comes with the first bytes, not after a whole block, and the
/// slice is closed short once a window of waiting brought too little,
/// logged as such; raw (spliced) and base64 (read by hand) alike.
fn trickling_store_is_cut_at_the_floor(model: &str) {
    let _load = garage::light_load();
    let (proxy, server, _) = body_fixture(model, "trickle");
    proxy.add_rule(
        Some("GET"),
        "/big.bin",
        Fault::Trickle {
            bytes_per_sec: 4000,
        },
    );
    // The window plus the first-byte bound, four times over: a wide margin
    // for a loaded machine, far below the 80 s and 257 s it took before.
    let bound = Duration::from_secs(4 * (LOW_SPEED_SECS + FIRST_BYTE_SECS));
    for mode in ["", " raw"] {
        let request = format!("get_slice big.bin 0 1048576{mode}\r\n");
        let (answer, closed) = answer_until_close(server.addr(), &request, bound);
        let what = format!("--model {model}, get_slice{mode} from a trickling store");
        assert!(
            answer.starts_with(b"0 OK\r\n"),
            "{what}: {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(80)])
        );
        assert!(closed, "{what}: still open after {bound:?}");
        assert!(
            answer.len() < 1 << 20,
            "{what}: the whole slice came ({} bytes)",
            answer.len()
        );
    }
    server.wait_stderr("below the floor", LOG_WAIT);
    server.wait_stderr("big.bin", LOG_WAIT);
}

/// A store that stops sending mid-body: the client is closed short within
/// the low-speed window (no resume after a stall), and the log says so;
/// slices read by hand (base64 and raw) and streamed through object_store
/// (base64 with `--s3-splice false`) alike.
fn stall_mid_body_ends_the_slice_within_the_window(model: &str) {
    stall_mid_body_ends_within_the_window(model, true, &["", " raw"], "sent nothing");
    stall_mid_body_ends_within_the_window(model, false, &[""], "the answer stalled");
}

fn stall_mid_body_ends_within_the_window(model: &str, splice: bool, modes: &[&str], says: &str) {
    let _load = garage::light_load();
    let test = if splice {
        "midbody"
    } else {
        "midbody-streamed"
    };
    let (proxy, server, _) = body_fixture_with(model, test, splice);
    proxy.add_rule(
        Some("GET"),
        "/big.bin",
        Fault::StallAfter { bytes: 200_000 },
    );
    let bound = Duration::from_secs(4 * (LOW_SPEED_SECS + FIRST_BYTE_SECS));
    for mode in modes {
        let request = format!("get_slice big.bin 0 1048576{mode}\r\n");
        let started = Instant::now();
        let (answer, closed) = answer_until_close(server.addr(), &request, bound);
        let what = format!(
            "--model {model}, get_slice{mode} (splice {splice}) from a store stalled mid-body"
        );
        assert!(
            answer.starts_with(b"0 OK\r\n"),
            "{what}: {:?}\n{}",
            String::from_utf8_lossy(&answer[..answer.len().min(80)]),
            server.stderr()
        );
        assert!(closed, "{what}: still open after {bound:?}");
        assert!(answer.len() < 1 << 20, "{what}: the whole slice came");
        eprintln!(
            "{what}: {} bytes, closed after {:?}",
            answer.len(),
            started.elapsed()
        );
    }
    // Streamed and read by hand, each in its own words.
    server.wait_stderr(says, LOG_WAIT);
    let logs = server.stderr();
    assert!(
        !logs.contains("broke off"),
        "--model {model}: a stall was resumed:\n{logs}"
    );
}

/// `HEAD` stalls, `GET` is fine: a slice past one version check (9 MiB)
/// arrives whole and byte-exact, its last check given up after a second
/// (the version is then unknown, and the slice ends as it began), with no
/// resume.
fn stalled_head_delays_no_slice(model: &str) {
    let _load = garage::light_load();
    let (proxy, server, huge) = body_fixture(model, "head");
    proxy.add_rule(Some("HEAD"), "/huge.bin", Fault::Stall);
    for mode in [" raw", ""] {
        let request = format!("get_slice huge.bin 0 {}{mode}\r\n", huge.len());
        let answer = whole_slice(server.addr(), &request, huge.len(), mode);
        let what = format!("--model {model}, get_slice{mode} with HEAD stalled");
        assert!(
            answer == huge,
            "{what}: the slice is not byte-exact ({} bytes)\n{}",
            answer.len(),
            server.stderr()
        );
    }
    let logs = server.stderr();
    assert!(
        !logs.contains("broke off"),
        "--model {model}: a needless resume:\n{logs}"
    );
}

/// Reads one slice answer of `size` bytes (raw or base64) and returns its
/// decoded bytes.
fn whole_slice(addr: SocketAddr, request: &str, size: usize, mode: &str) -> Vec<u8> {
    let mut client = TcpStream::connect(addr).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    client.write_all(request.as_bytes()).unwrap();
    client.write_all(b"quit\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = client.read_to_end(&mut answer);
    let text = &answer[..];
    if mode == " raw" {
        let head = b"0 OK\r\nContent-Length: ";
        assert!(
            text.starts_with(head),
            "{:?}",
            String::from_utf8_lossy(&text[..text.len().min(80)])
        );
        let body_at = text
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head")
            + 4;
        return text[body_at..(body_at + size).min(text.len())].to_vec();
    }
    let rest = text.strip_prefix(b"0 OK\r\n").expect("0 OK");
    let end = rest
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(rest.len());
    base64_simd::STANDARD
        .decode_to_vec(&rest[..end])
        .expect("valid base64")
}

/// One byte flipped in the store's answer for a whole object: its base64
/// slice is closed short, never sent whole with the wrong byte, and the
/// log says which check caught it: the ETag's MD5 (`big.bin`, 1 MiB), or
/// the CRC32 the store keeps (`crc.bin`, 9 MiB, put with one: from 8 MiB
/// on the store's CRC is asked for, and waited for at the end). (The same
/// objects unharmed are served whole and verified: `big.bin` by
/// `a_stalled_head_delays_no_slice`, `crc.bin` here first.)
fn flipped_byte_of_a_whole_object_is_never_served(model: &str) {
    let _load = garage::light_load();
    let (proxy, server, huge) = body_fixture(model, "flip");
    let crc_key = format!("faulty-flip-{model}/crc.bin");
    Bucket::new(garage::shared(), &garage::shared().endpoint(0), "unused")
        .put_with_crc32(&crc_key, &huge);
    let request = format!("get_slice crc.bin 0 {}\r\n", huge.len());
    let answer = whole_slice(server.addr(), &request, huge.len(), "");
    assert!(
        answer == huge,
        "--model {model}: crc.bin unharmed is not served byte-exact ({} bytes)\n{}",
        answer.len(),
        server.stderr()
    );
    for (name, bytes, check) in [
        ("big.bin", &huge[..1 << 20], "MD5"),
        ("crc.bin", &huge[..], "CRC32"),
    ] {
        flipped_byte_is_caught(model, &proxy, &server, bytes, name, check);
    }
    drop(proxy);
}

fn flipped_byte_is_caught(
    model: &str,
    proxy: &FaultProxy,
    server: &Server,
    bytes: &[u8],
    name: &str,
    check: &str,
) {
    let size = bytes.len();
    proxy.add_rule(
        Some("GET"),
        &format!("/{name}"),
        Fault::FlipByte { at: 500_000 },
    );
    let request = format!("get_slice {name} 0 {size}\r\n");
    let bound = Duration::from_secs(120);
    let (answer, closed) = answer_until_close(server.addr(), &request, bound);
    assert!(closed, "--model {model}: still open after {bound:?}");
    let whole = {
        let mut expected = b"0 OK\r\n".to_vec();
        expected.extend_from_slice(base64_simd::STANDARD.encode_to_string(bytes).as_bytes());
        expected.extend_from_slice(b"\r\n");
        expected
    };
    assert!(
        answer.len() < whole.len(),
        "--model {model}: a corrupt {name} was served as a complete slice"
    );
    server.wait_stderr(
        &format!("object faulty-flip-{model}/{name}: the {check} of the bytes"),
        LOG_WAIT,
    );
}

mod a_flipped_byte_of_a_whole_object_is_never_served {
    per_model!(
        #[ignore = "full tier: needs Garage 2.5.0 (cargo install garage)"]
        super::flipped_byte_of_a_whole_object_is_never_served
    );
}

mod a_trickling_store_is_cut_at_the_floor {
    per_model!(
        #[ignore = "full tier: needs Garage 2.5.0 (cargo install garage)"]
        super::trickling_store_is_cut_at_the_floor
    );
}

mod a_stall_mid_body_ends_the_slice_within_the_window {
    per_model!(
        #[ignore = "full tier: needs Garage 2.5.0 (cargo install garage)"]
        super::stall_mid_body_ends_the_slice_within_the_window
    );
}

mod a_stalled_head_delays_no_slice {
    per_model!(
        #[ignore = "full tier: needs Garage 2.5.0 (cargo install garage)"]
        super::stalled_head_delays_no_slice
    );
}

/// A body closed cleanly mid-way (a node dying), and the store's own
/// `503` twice: both recover, the slice arrives whole and byte-exact
/// (a resume from where the body stopped; the S3 client's retries, whose
/// log lines name the object).
fn broken_answers_recover_byte_exact(model: &str) {
    let _load = garage::light_load();
    let (proxy, server, huge) = body_fixture(model, "recover");
    let size = 1 << 20;
    for mode in ["", " raw"] {
        let request = format!("get_slice big.bin 0 {size}{mode}\r\n");
        proxy.add_rule_times(
            Some("GET"),
            "/big.bin",
            Fault::CloseAfter { bytes: 300_000 },
            1,
        );
        let answer = whole_slice(server.addr(), &request, size, mode);
        assert!(
            answer == huge[..size],
            "--model {model}, get_slice{mode} after a body closed mid-way: not byte-exact ({} bytes)\n{}",
            answer.len(),
            server.stderr()
        );
        proxy.add_rule_times(Some("GET"), "/big.bin", Fault::Status(503), 2);
        let answer = whole_slice(server.addr(), &request, size, mode);
        assert!(
            answer == huge[..size],
            "--model {model}, get_slice{mode} after two 503s: not byte-exact ({} bytes)\n{}",
            answer.len(),
            server.stderr()
        );
    }
    server.wait_stderr("broke off", LOG_WAIT);
    // The S3 client's own retry lines name the object they are about.
    server.wait_stderr("backing off", LOG_WAIT);
    let key = format!("object=faulty-recover-{model}/big.bin");
    let logs = server.stderr();
    for line in logs.lines().filter(|l| l.contains("backing off")) {
        assert!(
            line.contains(&key),
            "--model {model}: a retry names no object: {line}"
        );
    }
}

mod broken_answers_recover_byte_exact {
    per_model!(
        #[ignore = "full tier: needs Garage 2.5.0 (cargo install garage)"]
        super::broken_answers_recover_byte_exact
    );
}
