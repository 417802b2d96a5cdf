//! `hftp serve --storage s3://BUCKET/PREFIX` against a real 3-node Garage
//! cluster (`replication_factor = 3`) started on loopback by the test: the
//! conformance suite with its fixtures written to the bucket, listing
//! semantics, 100,000 keys listed with bounded server memory, an object
//! replaced mid-slice, and a store that goes away and comes back.
//!
//! Garage must be installed (`.ci/run` does it): without it these tests
//! fail, saying so.
//!
//! Tier: full (every test marked `#[ignore = "full tier: ..."]`): needs Garage 2.5.0.

use crate::support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::bucket::Bucket;
use crate::support::garage::{self, Garage};
use crate::support::Server;
use hftp_check::fixtures::FixtureSink;

const TIMEOUT: Duration = Duration::from_secs(30);

/// `hftp serve --storage s3://hftp/PREFIX` reaching node `node`.
fn serve(cluster: &Garage, node: usize, prefix: &str, model: &str) -> Server {
    serve_with(cluster, node, prefix, model, &[])
}

/// [`serve`] with more environment variables.
fn serve_with(
    cluster: &Garage,
    node: usize,
    prefix: &str,
    model: &str,
    env: &[(&str, &str)],
) -> Server {
    let mut builder = Server::builder(Path::new("."))
        .storage(&format!("s3://{}/{prefix}", garage::BUCKET))
        .model(model);
    for (key, value) in cluster.env(node) {
        builder = builder.env(key, value);
    }
    for (key, value) in env {
        builder = builder.env(key, *value);
    }
    builder.start()
}

/// Sends `request` then `quit` on a new connection and returns the lines
/// of the answer to `request` (everything up to EOF, less `quit`'s `0 OK`;
/// a fatal answer closes the connection before `quit` is read).
fn exchange(addr: SocketAddr, request: &str) -> Vec<String> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(b"quit\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let mut lines: Vec<String> = text.split("\r\n").map(str::to_string).collect();
    if lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    if lines.len() > 1 && lines.last().is_some_and(|l| l == "0 OK") {
        lines.pop();
    }
    lines
}

/// The first line of the answer to one request.
fn status(addr: SocketAddr, request: &str) -> String {
    exchange(addr, request).first().cloned().unwrap_or_default()
}

fn conformance(cluster: &Garage, node: usize, model: &str) {
    let prefix = format!("conformance-{model}");
    let bucket = Bucket::new(cluster, &cluster.endpoint(node), &prefix);
    bucket.clear().expect("empty prefix");
    let mut server = serve(cluster, node, &prefix, model);
    let summary = support::bucket::conformance(
        server.addr(),
        bucket,
        &format!("model {model} on node {node}"),
    );
    assert!(
        server.is_running(),
        "server ({model}) died during the suite; stderr:\n{}",
        server.stderr()
    );
    eprintln!("model {model} on node {node}: {summary}");
    if model == "fork" {
        // The parent never touched the store: it still has one thread.
        let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
        assert!(
            status.lines().any(|l| l == "Threads:\t1"),
            "the fork model's parent must stay single-threaded:\n{status}"
        );
    }
}

/// The suite once per model, each against one node of the shared cluster
/// (every node serves the same bucket), each under a prefix of its own.
mod conformance_suite_passes_against_every_node_of_a_replicated_cluster {
    macro_rules! on_node {
        ($($test:ident => $node:literal, $model:literal;)*) => {
            $(
                #[test]
                #[ignore = "full tier: needs Garage 2.5.0 (cargo install garage)"]
                fn $test() {
                    let _load = super::garage::light_load();
                    super::conformance(super::garage::shared(), $node, $model);
                }
            )*
        };
    }
    on_node! {
        async_on_node_0 => 0, "async";
        poll_on_node_1 => 1, "poll";
        fork_on_node_2 => 2, "fork";
        threads_on_node_0 => 0, "threads";
        pool_on_node_1 => 1, "pool";
    }
}

#[test]
#[ignore = "full tier: needs Garage 2.5.0 (cargo install garage)"]
fn listing_slices_and_replacement_follow_the_local_semantics() {
    let _load = garage::light_load();
    let cluster = garage::shared();
    let bucket = Bucket::new(cluster, &cluster.endpoint(0), "files");
    bucket.put("ok.txt", b"hello").unwrap();
    bucket.put("empty", b"").unwrap();
    // Not servable: below a further `/`, invalid names, beside the prefix.
    bucket.put("sub/inner.txt", b"x").unwrap();
    bucket.put("with space", b"x").unwrap();
    bucket.put("caf\u{e9}.txt", b"x").unwrap();
    bucket.put_raw("filesnot/x.txt", b"x");
    bucket.put_raw("files-sibling.txt", b"x");
    bucket.put_raw("top.txt", b"x");
    let server = serve(cluster, 1, "files", "async");
    let addr = server.addr();
    assert_eq!(
        exchange(addr, "get_file_listing\r\n"),
        ["0 OK", "empty", "ok.txt", ""]
    );
    assert_eq!(exchange(addr, "get_metadata ok.txt\r\n"), ["0 OK", "5"]);
    assert_eq!(
        status(addr, "get_metadata inner.txt\r\n"),
        "202 FILE NOT FOUND"
    );
    assert_eq!(
        status(addr, "get_metadata top.txt\r\n"),
        "202 FILE NOT FOUND"
    );
    assert_eq!(
        status(addr, "get_slice ok.txt 3 3\r\n"),
        "203 OFFSET EXCEEDS FILE SIZE"
    );
    assert_eq!(exchange(addr, "get_slice ok.txt 1 3\r\n"), ["0 OK", "ZWxs"]);
    // SIZE = 0 needs the object to exist and the offset to fit, nothing more.
    assert_eq!(exchange(addr, "get_slice ok.txt 5 0\r\n"), ["0 OK", ""]);
    assert_eq!(
        status(addr, "get_slice missing 0 0\r\n"),
        "202 FILE NOT FOUND"
    );

    drop(server);

    // An object replaced mid-slice: the connection closes, and it is
    // logged. Slices are read from the store's socket by hand (raw ones
    // spliced), or streamed through object_store with --s3-splice false:
    // each way checks the version on its own.
    let len = 48usize << 20;
    for (mode, splice, old, new) in [
        (" raw", "true", &b"\x01"[..], &b"\x02"[..]),
        (" raw", "false", b"\x01", b"\x02"),
        ("", "true", b"AQEB", b"AgIC"),
        ("", "false", b"AQEB", b"AgIC"),
    ] {
        let what = format!("get_slice{mode} with HFTP_S3_SPLICE={splice}");
        bucket.put("big.bin", &vec![1u8; len]).unwrap();
        let server = serve_with(cluster, 1, "files", "async", &[("HFTP_S3_SPLICE", splice)]);
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        write!(stream, "get_slice big.bin 0 {len}{mode}\r\n").unwrap();
        let mut head = [0u8; 64];
        let n = stream.read(&mut head).unwrap();
        assert!(
            head[..n].starts_with(b"0 OK\r\n"),
            "{what}: {:?}",
            &head[..n]
        );
        bucket.put("big.bin", &vec![2u8; len]).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        let body = [&head[..n], &rest[..]].concat();
        assert!(
            body.windows(old.len()).any(|w| w == old),
            "{what}: no byte of the old version was sent"
        );
        assert!(
            body.len() < len,
            "{what}: the slice went out whole ({} bytes) although its object was replaced",
            body.len()
        );
        assert!(
            !body.windows(new.len()).any(|w| w == new),
            "{what}: bytes of the new version were sent in the old version's slice"
        );
        server.wait_stderr("was replaced while its slice was being sent", TIMEOUT);
    }
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
#[ignore = "full tier: needs Garage 2.5.0 (cargo install garage)"]
fn a_hundred_thousand_keys_are_listed_with_bounded_server_memory() {
    const KEYS: usize = 100_000;
    // Exclusive: 100,000 PUTs load the cluster hard.
    let _load = garage::heavy_load();
    let cluster = garage::shared();
    let bucket = Bucket::new(cluster, &cluster.endpoint(0), "many");
    // Long names: held at once, they would be 20 MB; a page is 1,000.
    let names: Vec<String> = (0..KEYS)
        .map(|i| format!("{i:08}-{}", "n".repeat(190)))
        .collect();
    bucket.put_many_empty(&names);
    let server = serve(cluster, 2, "many", "async");
    // The runtime and client exist after a first request.
    assert_eq!(
        status(server.addr(), "get_metadata missing\r\n"),
        "202 FILE NOT FOUND"
    );
    let baseline = rss_kib(server.pid());

    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (Arc::clone(&peak), Arc::clone(&done), server.pid());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(rss_kib(pid), Ordering::SeqCst);
                std::thread::yield_now();
            }
        })
    };
    let lines = exchange(server.addr(), "get_file_listing\r\n");
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();

    assert_eq!(lines.first().map(String::as_str), Some("0 OK"));
    assert_eq!(
        lines.last().map(String::as_str),
        Some(""),
        "listing ends with an empty line"
    );
    let listed = &lines[1..lines.len() - 1];
    assert_eq!(listed.len(), KEYS, "every key listed once");
    assert!(listed == names.as_slice(), "names in byte order");
    let growth = peak.load(Ordering::SeqCst).saturating_sub(baseline);
    eprintln!(
        "listing {KEYS} keys: server RSS {baseline} KiB before, grew by {growth} KiB at most"
    );
    assert!(
        growth < 16 * 1024,
        "server memory grew by {growth} KiB while listing {KEYS} keys (baseline {baseline} KiB)"
    );
}

#[test]
#[ignore = "full tier: needs Garage 2.5.0 (cargo install garage)"]
fn a_store_that_goes_away_answers_199_and_serving_resumes_when_it_is_back() {
    // A cluster of its own (nodes are killed), alone.
    let _load = garage::heavy_load();
    let mut cluster = Garage::start();
    let bucket = Bucket::new(&cluster, &cluster.endpoint(0), "outage");
    bucket.put("hola.txt", b"hola").unwrap();
    for model in ["async", "poll", "fork"] {
        let server = serve(&cluster, 0, "outage", model);
        assert_eq!(
            exchange(server.addr(), "get_metadata hola.txt\r\n"),
            ["0 OK", "4"]
        );
        drop(server);
    }
    let server = serve(&cluster, 0, "outage", "poll");
    let addr = server.addr();

    // One node down: a quorum of two still answers.
    cluster.kill(2);
    assert_eq!(exchange(addr, "get_metadata hola.txt\r\n"), ["0 OK", "4"]);

    // The node the server talks to is down: 199, and the server still answers.
    cluster.kill(0);
    assert_eq!(
        status(addr, "get_metadata hola.txt\r\n"),
        "199 INTERNAL SERVER ERROR"
    );
    assert_eq!(
        status(addr, "get_file_listing\r\n"),
        "199 INTERNAL SERVER ERROR"
    );
    assert_eq!(status(addr, "help\r\n"), "0 OK");
    server.wait_stderr("storage failure, answering 199", TIMEOUT);

    // Back: the next requests are served, without restarting the server.
    cluster.restart(0);
    cluster.restart(2);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = exchange(addr, "get_metadata hola.txt\r\n");
        if answer == ["0 OK", "4"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not served again after the store came back: {answer:?}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        exchange(addr, "get_slice hola.txt 0 4\r\n"),
        ["0 OK", "aG9sYQ=="]
    );

    // No credential in the logs.
    let logs = server.stderr();
    assert!(
        logs.contains("object store s3://hftp/outage"),
        "cause logged:\n{logs}"
    );
    for secret in [garage::SECRET, garage::KEY_ID] {
        assert!(!logs.contains(secret), "a credential was logged:\n{logs}");
    }
}

#[test]
#[ignore = "full tier: needs Garage 2.5.0 (cargo install garage)"]
fn bad_credentials_are_199_with_no_secret_logged() {
    let _load = garage::light_load();
    let cluster = garage::shared();
    let wrong_secret = "0badc0de".repeat(8);
    // Refused at start unless started anyway (tests/s3_probe.rs): then 199.
    let mut builder = Server::builder(Path::new("."))
        .storage(&format!("s3://{}/x", garage::BUCKET))
        .model("async")
        .arg("--s3-start-anyway");
    for (key, value) in cluster.env(0) {
        let value = if key == "AWS_SECRET_ACCESS_KEY" {
            wrong_secret.clone()
        } else {
            value
        };
        builder = builder.env(key, value);
    }
    let server = builder.start();
    assert_eq!(
        status(server.addr(), "get_file_listing\r\n"),
        "199 INTERNAL SERVER ERROR"
    );
    assert_eq!(status(server.addr(), "help\r\n"), "0 OK");
    server.wait_stderr("storage failure, answering 199", TIMEOUT);
    let logs = server.stderr();
    for secret in [wrong_secret.as_str(), garage::KEY_ID] {
        assert!(!logs.contains(secret), "a credential was logged:\n{logs}");
    }
}

/// SIGTERM after the store was used: every model exits 0, no panic (the
/// `async` model used to panic dropping the backend's runtime inside its
/// own, exit 101).
mod shuts_down_cleanly_after_using_the_store {
    fn check(model: &str) {
        let _load = super::garage::light_load();
        let cluster = super::garage::shared();
        let mut server = super::serve(cluster, 0, &format!("shutdown-{model}/"), model);
        // Two calls to the store: a listing and a size.
        let listing = super::exchange(server.addr(), "get_file_listing\r\n");
        assert_eq!(
            listing.first().map(String::as_str),
            Some("0 OK"),
            "{listing:?}"
        );
        let answer = super::status(server.addr(), "get_metadata none.txt\r\n");
        assert_eq!(answer, "202 FILE NOT FOUND");
        server.signal(libc::SIGTERM);
        let status = server.wait_exit(super::TIMEOUT);
        let stderr = server.stderr();
        assert!(status.success(), "--model {model}: {status}\n{stderr}");
        assert!(!stderr.contains("panicked"), "--model {model}:\n{stderr}");
    }

    per_model!(
        #[ignore = "full tier: needs Garage 2.5.0 (cargo install garage)"]
        check
    );
}
