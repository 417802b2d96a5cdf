//! HFTP behind a real HAProxy (`mode tcp`, `send-proxy-v2`, the HFTP
//! health check), as in `dist/haproxy.cfg` and `docs/scale-out.md`:
//! `hftp serve --proxy-protocol` nodes of different models, all serving the
//! same directory, started by the test, on loopback.
//!
//! - the conformance suite passes through HAProxy;
//! - `--max-per-ip` counts the real clients (127.0.0.2, 127.0.0.3), not
//!   HAProxy's own address;
//! - a killed node is marked down by the health checks, and clients keep
//!   being served by the others.
//!
//! Tier: full (every test marked `#[ignore = "full tier: ..."]`): needs HAProxy.

use crate::support;

use std::fs::{self, Permissions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::support::haproxy::Haproxy;
use crate::support::{ask, Server, HELP_ANSWER};
use hftp_check::{report, Config, Outcome, Summary};

/// Bounds every wait; none is a threshold.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A directory the unprivileged nodes can read, with one file.
fn served_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let scratch = tempfile::tempdir().expect("temp dir");
    fs::set_permissions(scratch.path(), Permissions::from_mode(0o755)).expect("chmod temp dir");
    let served = scratch.path().join("served");
    fs::create_dir(&served).expect("served dir");
    fs::set_permissions(&served, Permissions::from_mode(0o755)).expect("chmod served dir");
    (scratch, served)
}

/// `hftp serve --proxy-protocol` of `model`, unprivileged, serving `dir`.
fn node(dir: &Path, model: &str, extra: &[&str]) -> Server {
    let mut builder = Server::builder(dir)
        .model(model)
        .unprivileged()
        .arg("--proxy-protocol");
    for a in extra {
        builder = builder.arg(*a);
    }
    builder.start()
}

fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    support::connect_from(from, addr, TIMEOUT)
}

#[test]
#[ignore = "full tier: needs haproxy (apt-get install haproxy)"]
fn the_sample_config_is_valid() {
    let out = std::process::Command::new(support::haproxy::haproxy_binary())
        .arg("-c")
        .arg("-f")
        .arg(support::haproxy::sample_config())
        .output()
        .expect("run haproxy -c");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dist/haproxy.cfg: {stderr}");
    assert!(!stderr.contains("WARNING"), "dist/haproxy.cfg: {stderr}");
}

/// `nodes` as node1, node2, node3 of backend `hftp` (leastconn), all `UP`.
fn behind_haproxy(nodes: &[Server]) -> (Vec<(&'static str, SocketAddr)>, Haproxy) {
    let servers: Vec<(&str, SocketAddr)> = ["node1", "node2", "node3"]
        .into_iter()
        .zip(nodes.iter().map(Server::addr))
        .collect();
    let haproxy = Haproxy::builder()
        .backend("hftp", "leastconn", &servers)
        .start();
    for (name, _) in &servers {
        haproxy.wait_status("hftp", name, "UP", TIMEOUT);
    }
    (servers, haproxy)
}

#[test]
#[ignore = "full tier: needs haproxy (apt-get install haproxy)"]
fn conformance_suite_passes_through_haproxy() {
    let (_scratch, served) = served_dir();
    let nodes = [
        node(&served, "async", &[]),
        node(&served, "poll", &[]),
        node(&served, "fork", &[]),
    ];
    let (_, haproxy) = behind_haproxy(&nodes);
    let config = Config {
        addr: haproxy.frontend("hftp"),
        via: None,
        dir: Some(served),
        unprivileged_server: true,
        timeout: Duration::from_secs(5),
        wipe_dir: false,
    };
    let cases = hftp_check::cases::all();
    let selection: Vec<_> = cases.iter().collect();
    let results = hftp_check::run(&config, &selection, |_| {}).expect("suite runs");
    assert_eq!(results.len(), cases.len(), "every case ran");
    let problems: Vec<String> = results
        .iter()
        .filter(|r| r.outcome != Outcome::Pass)
        .map(report::text)
        .collect();
    let logs: Vec<String> = nodes.iter().map(|n| n.stderr()).collect();
    assert!(
        problems.is_empty(),
        "through haproxy: {}\n{}\nnodes' logs:\n{}",
        Summary::of(&results),
        problems.join("\n"),
        logs.join("\n---\n")
    );
    // Every node served some of it, each logging clients through HAProxy.
    for n in &nodes {
        assert!(
            n.stderr().contains("via=\""),
            "--model {} served nothing through haproxy:\n{}",
            n.model(),
            n.stderr()
        );
    }
}

#[test]
#[ignore = "full tier: needs haproxy (apt-get install haproxy)"]
fn max_per_ip_counts_the_real_clients() {
    let (_scratch, served) = served_dir();
    let pinned = node(&served, "fork", &["--max-per-ip", "1"]);
    let haproxy = Haproxy::builder()
        .backend("pinned", "first", &[("node1", pinned.addr())])
        .start();
    haproxy.wait_status("pinned", "node1", "UP", TIMEOUT);
    let front = haproxy.frontend("pinned");

    // One client from 127.0.0.2 and one from 127.0.0.3, both open at once
    // through the same HAProxy: both served.
    let mut from_2 = connect_from("127.0.0.2", front);
    let mut from_3 = connect_from("127.0.0.3", front);
    for s in [&mut from_2, &mut from_3] {
        s.write_all(b"help\r\n").unwrap();
        let mut answer = vec![0u8; HELP_ANSWER.len()];
        s.read_exact(&mut answer).expect("answered through haproxy");
        assert_eq!(String::from_utf8_lossy(&answer), HELP_ANSWER);
    }
    // A second one from 127.0.0.2 is refused by the node: closed unanswered.
    let mut again_2 = connect_from("127.0.0.2", front);
    assert_eq!(
        ask(&mut again_2, b"help\r\n"),
        "",
        "a second from 127.0.0.2"
    );
    pinned.wait_stderr("per-address connection limit reached", TIMEOUT);
    for s in [&mut from_2, &mut from_3] {
        assert_eq!(ask(s, b"quit\r\n"), "0 OK\r\n");
    }
    for peer in ["127.0.0.2", "127.0.0.3"] {
        pinned.wait_stderr(&format!("peer=\"{peer}:"), TIMEOUT);
    }
    // The health checks (LOCAL headers from HAProxy) kept it up.
    haproxy.wait_status("pinned", "node1", "UP", TIMEOUT);
}

#[test]
#[ignore = "full tier: needs haproxy (apt-get install haproxy)"]
fn a_dead_node_is_marked_down_and_the_others_serve() {
    let (_scratch, served) = served_dir();
    fs::write(served.join("hola.txt"), b"hola\n").unwrap();
    let mut nodes = vec![
        node(&served, "async", &[]),
        node(&served, "poll", &[]),
        node(&served, "fork", &[]),
    ];
    let (servers, haproxy) = behind_haproxy(&nodes);
    // Kill the poll node outright (no graceful shutdown).
    let dead = nodes.remove(1);
    dead.signal(libc::SIGKILL);
    drop(dead);
    haproxy.wait_status("hftp", "node2", "DOWN", TIMEOUT);
    for (name, _) in [servers[0], servers[2]] {
        assert_eq!(haproxy.status("hftp", name).as_deref(), Some("UP"));
    }
    // Every new client is served, by the nodes still alive.
    for i in 0..12 {
        let mut s = connect_from("127.0.0.4", haproxy.frontend("hftp"));
        assert_eq!(
            ask(&mut s, b"get_file_listing\r\nquit\r\n"),
            "0 OK\r\nhola.txt\r\n\r\n0 OK\r\n",
            "client {i} after node2 died"
        );
    }
    for n in &nodes {
        n.wait_stderr("peer=\"127.0.0.4:", TIMEOUT);
    }
}
