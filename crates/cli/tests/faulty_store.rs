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
use crate::support::Server;

/// The server's `--s3-first-byte-timeout` in these tests.
const FIRST_BYTE_SECS: u64 = 15;

/// A `hftp serve --storage s3://hftp/PREFIX` that reaches node 0 of the
/// shared cluster through `proxy`.
fn serve_through(proxy: &FaultProxy, prefix: &str, model: &str) -> Server {
    let cluster = garage::shared();
    let mut builder = Server::builder(Path::new("."))
        .storage(&format!("s3://{}/{prefix}", garage::BUCKET))
        .model(model)
        .env("HFTP_S3_FIRST_BYTE_TIMEOUT", FIRST_BYTE_SECS.to_string());
    for (key, value) in cluster.env(0) {
        let value = if key == "AWS_ENDPOINT_URL" {
            proxy.endpoint()
        } else {
            value
        };
        builder = builder.env(key, value);
    }
    builder.start()
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
    let mut server = serve_through(&proxy, &prefix, model);
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
    let logs = server.stderr();
    assert!(
        logs.contains("big.bin"),
        "--model {model}: the log names no object:\n{logs}"
    );
    assert!(server.is_running(), "--model {model}: server died\n{logs}");
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
