//! The scale-out deployment of `docs/scale-out.md`, whole, on loopback:
//!
//! ```text
//! clients ──► HAProxy "all" ──(send-proxy-v2, HFTP check)──► hftp async ┐
//!             (and one frontend per node)                  ► hftp poll  ├─► HAProxy "s3" ──► Garage ×3
//!                                                          ► hftp threads┘   (TCP check)     (replication 3)
//! ```
//!
//! Everything is real and started by the test: a 3-node Garage cluster
//! (`replication_factor = 3`), one HAProxy in front of its S3 endpoints,
//! `hftp serve --storage s3://... --proxy-protocol` nodes of different
//! models using that endpoint, and a second HAProxy in front of the nodes.
//! The test shows, in order:
//!
//! 1. the conformance suite (fixtures written to the bucket) passes through
//!    HAProxy and against each node;
//! 2. `hftp get -j 4` of a 256 MiB object is byte-identical while the hftp
//!    node serving it is SIGKILLed mid-download,
//! 3. and again while the Garage node serving it is SIGKILLed;
//! 4. `--max-per-ip` counts the real clients (127.0.0.2, 127.0.0.3), not
//!    HAProxy;
//! 5. a store that cannot be reached gives `199`, the nodes stay up, and
//!    they serve again as soon as it is back.
//!
//! Downloads are slowed with `--limit-rate` so that a kill lands in the
//! middle; the test waits for the client's progress lines and HAProxy's
//! session counters (real events), never for a fixed time. Garage and
//! HAProxy must be installed (`.ci/run` does it); without them the test
//! fails, saying so.
//!
//! Tier: full (every test marked `#[ignore = "full tier: ..."]`): needs Garage 2.5.0 and HAProxy.

use crate::support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::background::Background;
use crate::support::bucket::Bucket;
use crate::support::garage::{self, Garage};
use crate::support::haproxy::Haproxy;
use crate::support::{ask, connect_from, noise, Server, HELP_ANSWER};

const MIB: usize = 1024 * 1024;
/// Bounds every wait; none is a threshold.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The prefix of the bucket the nodes serve.
const PREFIX: &str = "scale";
/// The big object: 256 MiB, as in the issue.
const BIG: &str = "big.bin";
const BIG_SIZE: usize = 256 * MIB;
/// The nodes behind the "all" frontend (fork is left out: a SIGKILLed fork
/// parent leaves its children serving, so killing it kills no download).
const NODE_MODELS: [&str; 3] = ["async", "poll", "threads"];

/// The deployment; dropped, every process goes.
struct Deployment {
    cluster: Garage,
    /// HAProxy in front of the Garage nodes' S3 endpoints.
    s3: Haproxy,
    /// `None` once killed.
    nodes: Vec<Option<Server>>,
    /// A node with `--max-per-ip 2`, behind a frontend of its own.
    limited: Server,
    /// HAProxy in front of the hftp nodes: "all", "node0".."node2", "limited".
    front: Haproxy,
}

fn s3_server_name(i: usize) -> String {
    format!("garage{i}")
}

fn node_name(i: usize) -> String {
    format!("node{i}")
}

/// `hftp serve --storage s3://hftp/scale --proxy-protocol` of `model`,
/// reaching the store through `endpoint`.
fn node(cluster: &Garage, endpoint: &str, model: &str, extra: &[&str]) -> Server {
    let mut builder = Server::builder(Path::new("."))
        .storage(&format!("s3://{}/{PREFIX}", garage::BUCKET))
        .model(model)
        .arg("--proxy-protocol");
    for a in extra {
        builder = builder.arg(*a);
    }
    for (key, value) in cluster.env(0) {
        let value = if key == "AWS_ENDPOINT_URL" {
            endpoint.to_string()
        } else {
            value
        };
        builder = builder.env(key, value);
    }
    builder.start()
}

fn deploy() -> Deployment {
    let cluster = Garage::start();
    let s3_servers: Vec<(String, SocketAddr)> = (0..3)
        .map(|i| {
            let addr = SocketAddr::from(([127, 0, 0, 1], cluster.s3_port(i)));
            (s3_server_name(i), addr)
        })
        .collect();
    let s3 = Haproxy::builder()
        .tcp_backend("s3", "roundrobin", &named(&s3_servers))
        .start();
    for (name, _) in &s3_servers {
        s3.wait_status("s3", name, "UP", TIMEOUT);
    }
    let endpoint = format!("http://{}", s3.frontend("s3"));
    let nodes: Vec<Server> = NODE_MODELS
        .iter()
        .map(|model| node(&cluster, &endpoint, model, &[]))
        .collect();
    let limited = node(&cluster, &endpoint, "pool", &["--max-per-ip", "2"]);
    let hftp_servers: Vec<(String, SocketAddr)> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (node_name(i), n.addr()))
        .collect();
    let mut builder = Haproxy::builder().backend("all", "leastconn", &named(&hftp_servers));
    for (name, addr) in &hftp_servers {
        builder = builder.backend(name, "first", &[(name.as_str(), *addr)]);
    }
    let front = builder
        .backend("limited", "first", &[("limited", limited.addr())])
        .start();
    for (name, _) in &hftp_servers {
        front.wait_status("all", name, "UP", TIMEOUT);
        front.wait_status(name, name, "UP", TIMEOUT);
    }
    front.wait_status("limited", "limited", "UP", TIMEOUT);
    Deployment {
        cluster,
        s3,
        nodes: nodes.into_iter().map(Some).collect(),
        limited,
        front,
    }
}

fn named(servers: &[(String, SocketAddr)]) -> Vec<(&str, SocketAddr)> {
    servers.iter().map(|(n, a)| (n.as_str(), *a)).collect()
}

impl Deployment {
    /// The test's own client of the bucket, through the S3 load balancer.
    fn bucket(&self) -> std::sync::Arc<Bucket> {
        Bucket::new(
            &self.cluster,
            &format!("http://{}", self.s3.frontend("s3")),
            PREFIX,
        )
    }

    /// Every node still alive is running (none crashed).
    fn assert_nodes_up(&mut self, when: &str) {
        for n in self.nodes.iter_mut().flatten() {
            assert!(
                n.is_running(),
                "{when}: --model {} died:\n{}",
                n.model(),
                n.stderr()
            );
        }
        assert!(self.limited.is_running(), "{when}: the limited node died");
    }
}

/// `hftp get -j 4` of the big object through the "all" frontend into a
/// new directory, slow enough (32 MiB/s: 8 s) to be interrupted, with a
/// progress line every 0.1 s to wait for.
fn start_download(d: &Deployment, work: &Path) -> Background {
    let target = d.front.frontend("all").to_string();
    Background::start(
        &[
            "get",
            &target,
            BIG,
            "-j",
            "4",
            "--limit-rate",
            "32M",
            "--progress-interval",
            "0.1",
        ],
        work,
    )
}

/// Waits for the download to end and checks it succeeded, byte for byte.
fn assert_downloaded(get: Background, work: &Path, data: &[u8], what: &str) -> String {
    let (code, err) = get.finish();
    assert_eq!(code, 0, "{what}: hftp get failed; stderr:\n{err}");
    let got = std::fs::read(work.join(BIG)).expect("read the download");
    assert!(
        got.len() == data.len() && got == data,
        "{what}: the download is not byte-identical ({} of {} bytes)",
        got.len(),
        data.len()
    );
    for leftover in [".big.bin.hftp-part", ".big.bin.hftp-state"] {
        assert!(!work.join(leftover).exists(), "{what}: {leftover} left");
    }
    err
}

/// The client's retry lines and summary, without its progress lines.
fn retries(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| l.contains("retry") || l.contains(" -> "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
#[ignore = "full tier: needs Garage 2.5.0 and haproxy"]
fn stateless_nodes_over_a_replicated_store_behind_haproxy() {
    // A cluster of its own (nodes are killed) and a 256 MiB transfer:
    // alone among the Garage tests (see garage::LOAD).
    let _load = garage::heavy_load();
    let mut d = deploy();

    // 1. Conformance through HAProxy, then against each node.
    let all = d.front.frontend("all");
    let summary = support::bucket::conformance(all, d.bucket(), "through haproxy");
    eprintln!("through haproxy: {summary}");
    for (i, model) in NODE_MODELS.iter().enumerate() {
        let what = format!("--model {model} (its own frontend)");
        let summary =
            support::bucket::conformance(d.front.frontend(&node_name(i)), d.bucket(), &what);
        eprintln!("{what}: {summary}");
    }
    d.assert_nodes_up("after the conformance suite");

    let data = noise(BIG_SIZE, 9);
    d.bucket().put_raw(&format!("{PREFIX}/{BIG}"), &data);

    // 2. A node dies mid-download: the segments it served are fetched
    // again, through HAProxy, from the others.
    let work = tempfile::tempdir().expect("temp dir");
    let mut get = start_download(&d, work.path());
    get.wait_progress();
    let deadline = Instant::now() + TIMEOUT;
    let victim = loop {
        let busy = (0..NODE_MODELS.len())
            .filter(|&i| d.nodes[i].is_some())
            .max_by_key(|&i| d.front.current_sessions("all", &node_name(i)))
            .filter(|&i| d.front.current_sessions("all", &node_name(i)) > 0);
        if let Some(i) = busy {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "no node serves the download:\n{}",
            d.front.show_stat()
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert!(
        get.is_running(),
        "the download ended before a node could be killed"
    );
    let mut dead = d.nodes[victim].take().expect("alive");
    dead.signal(libc::SIGKILL);
    dead.wait_exit(TIMEOUT);
    let err = assert_downloaded(get, work.path(), &data, "hftp node killed");
    assert!(
        err.contains("; retry 1/5 in "),
        "killing --model {} did not make the client retry:\n{err}",
        NODE_MODELS[victim]
    );
    d.front
        .wait_status("all", &node_name(victim), "DOWN", TIMEOUT);
    eprintln!(
        "--model {} killed mid-download:\n{}",
        NODE_MODELS[victim],
        retries(&err)
    );

    // 3. The Garage node serving the download dies mid-download: the
    // store keeps serving (two replicas of three answer), the hftp node
    // asks for the rest again, HAProxy sends it to another store node.
    let work = tempfile::tempdir().expect("temp dir");
    let mut get = start_download(&d, work.path());
    get.wait_progress();
    let deadline = Instant::now() + TIMEOUT;
    let store_victim = loop {
        let busy = (0..3)
            .max_by_key(|&i| d.s3.current_sessions("s3", &s3_server_name(i)))
            .filter(|&i| d.s3.current_sessions("s3", &s3_server_name(i)) > 0);
        if let Some(i) = busy {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "no store node serves the download:\n{}",
            d.s3.show_stat()
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert!(
        get.is_running(),
        "the download ended before a Garage node could be killed"
    );
    d.cluster.kill(store_victim);
    let err = assert_downloaded(get, work.path(), &data, "Garage node killed");
    d.s3.wait_status("s3", &s3_server_name(store_victim), "DOWN", TIMEOUT);
    d.assert_nodes_up("after a Garage node died");
    eprintln!(
        "Garage node {store_victim} killed mid-download:\n{}",
        retries(&err)
    );

    // 4. --max-per-ip 2 counts the addresses in the PROXY headers.
    let limited = d.front.frontend("limited");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from("127.0.0.2", limited, TIMEOUT);
        s.write_all(b"help\r\n").expect("send");
        let mut answer = vec![0u8; HELP_ANSWER.len()];
        s.read_exact(&mut answer)
            .expect("one of two from 127.0.0.2");
        held.push(s);
    }
    let mut third = connect_from("127.0.0.2", limited, TIMEOUT);
    assert_eq!(
        ask(&mut third, b"help\r\n"),
        "",
        "a third connection from 127.0.0.2 must be refused"
    );
    d.limited
        .wait_stderr("per-address connection limit reached", TIMEOUT);
    let mut other = connect_from("127.0.0.3", limited, TIMEOUT);
    assert_eq!(
        ask(&mut other, b"help\r\nquit\r\n"),
        format!("{HELP_ANSWER}0 OK\r\n"),
        "127.0.0.3 is another client"
    );
    d.limited.wait_stderr("peer=\"127.0.0.3:", TIMEOUT);
    drop(held);

    // 5. The store unreachable (every S3 endpoint out of the balancer):
    // 199, the nodes stay up; back, they serve at once.
    for i in 0..3 {
        let server = format!("s3_nodes/{}", s3_server_name(i));
        d.s3.command(&format!("set server {server} state maint"));
        // Connections the nodes keep open to the store go too.
        d.s3.command(&format!("shutdown sessions server {server}"));
    }
    let request = format!("get_metadata {BIG}\r\nquit\r\n");
    let mut s = connect_from("127.0.0.1", all, TIMEOUT);
    let answer = ask(&mut s, request.as_bytes());
    assert!(
        answer.starts_with("199 "),
        "with the store unreachable: {answer:?}"
    );
    d.assert_nodes_up("while the store was unreachable");
    // The two store nodes still alive come back; the one killed in step 3
    // stays dead (two replicas of three answer).
    for i in (0..3).filter(|&i| i != store_victim) {
        d.s3.command(&format!(
            "set server s3_nodes/{} state ready",
            s3_server_name(i)
        ));
        d.s3.wait_status("s3", &s3_server_name(i), "UP", TIMEOUT);
    }
    let mut s = connect_from("127.0.0.1", all, TIMEOUT);
    assert_eq!(
        ask(&mut s, request.as_bytes()),
        format!("0 OK\r\n{BIG_SIZE}\r\n0 OK\r\n"),
        "once the store is back"
    );
    d.assert_nodes_up("at the end");
}
