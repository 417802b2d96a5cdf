//! `hftp serve --allow CIDR --deny CIDR`: the real binary, clients bound
//! to other loopback addresses (127.0.0.2, 127.0.0.3, ...: all of
//! 127.0.0.0/8 is this host) standing for other machines.
//!
//! With any `--allow`, only its ranges get in; `--deny` wins inside them.
//! A refused client is closed before any byte of it is read: it sees the
//! end of the stream and no answer. Every refusal is counted, exactly, in
//! `hftp_connections_refused{limit="address"}`; under `--proxy-protocol`
//! the rules judge the client the header names. A bad range stops the
//! server at start as any bad option value does (exit 2), its one error
//! line naming it. Every model wires the shared front end itself, so a
//! denied client is tried against each.
//!
//! Tier: quick.

use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{self, Server, HELP_ANSWER};

/// Bounds every wait of the test; none of them is a threshold.
const TIMEOUT: Duration = Duration::from_secs(30);

const REFUSAL_LOG: &str = "address not allowed: closing the connection (--allow/--deny)";

fn served() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hola.txt"), b"hola\n").unwrap();
    dir
}

fn start(dir: &Path, model: &str, args: &[&str]) -> Server {
    let mut builder = Server::builder(dir)
        .model(model)
        .arg("--metrics")
        .arg("127.0.0.1:0");
    for arg in args {
        builder = builder.arg(arg);
    }
    builder.start()
}

/// A client from `from` asks `help` and `quit` and gets both answers.
fn assert_served(server: &Server, from: &str) {
    let mut s = support::connect_from(from, server.addr(), TIMEOUT);
    let answer = support::ask(&mut s, b"help\r\nquit\r\n");
    assert_eq!(
        answer,
        format!("{HELP_ANSWER}0 OK\r\n"),
        "--model {}: a client from {from} is served; stderr:\n{}",
        server.model(),
        server.stderr()
    );
}

/// A client from `from` is refused: one that waits sees the end of the
/// stream and nothing else (no byte of it was read, so no reset); one that
/// sends `help` gets no answer (an end or a reset: the server may close
/// with the request unread). Two refusals.
fn assert_refused(server: &Server, from: &str) {
    let mut s = support::connect_from(from, server.addr(), TIMEOUT);
    let mut got = Vec::new();
    if let Err(e) = s.read_to_end(&mut got) {
        panic!(
            "--model {}: a client from {from} that sends nothing: {e} instead of the end of the stream; stderr:\n{}",
            server.model(),
            server.stderr()
        );
    }
    assert!(
        got.is_empty(),
        "--model {}: a refused client from {from} got {got:?}",
        server.model()
    );

    let mut s = support::connect_from(from, server.addr(), TIMEOUT);
    // The server may have closed already: then the write fails, which is
    // a refusal too.
    let _ = s.write_all(b"help\r\n");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "--model {}: a client from {from} that sent help: {e} (got {got:?}); stderr:\n{}",
                server.model(),
                server.stderr()
            ),
        }
    }
    assert!(
        got.is_empty(),
        "--model {}: a refused client from {from} got an answer: {:?}",
        server.model(),
        String::from_utf8_lossy(&got)
    );
}

/// A refusal is counted before its connection is closed, so once the
/// client saw the close the count must be exact at once.
fn assert_refused_count(server: &Server, limit: &str, n: u64) {
    assert_eq!(
        server.refused(limit),
        n,
        "--model {}: refusals counted as limit={limit}; stderr:\n{}",
        server.model(),
        server.stderr()
    );
}

#[test]
fn allow_lets_in_only_its_range() {
    let dir = served();
    let server = start(dir.path(), "async", &["--allow", "127.0.0.2"]);
    assert_served(&server, "127.0.0.2");
    assert_refused(&server, "127.0.0.1");
    assert_refused(&server, "127.0.0.3");
    assert_served(&server, "127.0.0.2");
    server.wait_stderr(REFUSAL_LOG, TIMEOUT);
    assert_refused_count(&server, "address", 4);
    for other in [
        "max_connections",
        "max_per_ip",
        "proxy_header",
        "tls_handshake",
    ] {
        assert_refused_count(&server, other, 0);
    }
}

/// `--allow 127.0.0.0/8 --deny 127.0.0.3`: deny wins inside the allowed
/// range; a comma-separated list is several ranges.
#[test]
fn deny_wins_inside_an_allowed_range() {
    let dir = served();
    let server = start(
        dir.path(),
        "async",
        &["--allow", "127.0.0.0/8", "--deny", "127.0.0.3"],
    );
    assert_served(&server, "127.0.0.1");
    assert_served(&server, "127.0.0.2");
    assert_refused(&server, "127.0.0.3");
    assert_served(&server, "127.0.0.4");
    assert_refused_count(&server, "address", 2);
    drop(server);

    let server = start(
        dir.path(),
        "async",
        &["--deny", "127.0.0.3,127.0.0.4/32", "--deny", "127.0.1.0/24"],
    );
    assert_served(&server, "127.0.0.1");
    assert_refused(&server, "127.0.0.3");
    assert_refused(&server, "127.0.0.4");
    assert_refused(&server, "127.0.1.77");
    assert_served(&server, "127.0.0.5");
    assert_refused_count(&server, "address", 6);
}

/// Behind a proxy every connection comes from the proxy's address: the
/// rules judge the client the PROXY header names.
#[test]
fn under_proxy_protocol_the_header_s_client_is_judged() {
    let dir = served();
    let server = start(
        dir.path(),
        "async",
        &["--proxy-protocol", "--deny", "192.0.2.0/24"],
    );
    let ask = |client: &str| {
        let mut s = support::connect(server.addr(), TIMEOUT);
        let header = format!(
            "PROXY TCP4 {client} 127.0.0.1 40000 {}\r\nquit\r\n",
            server.addr().port()
        );
        support::ask(&mut s, header.as_bytes())
    };
    assert_eq!(ask("198.51.100.7"), "0 OK\r\n", "{}", server.stderr());
    assert_eq!(ask("192.0.2.7"), "", "{}", server.stderr());
    assert_eq!(ask("198.51.100.8"), "0 OK\r\n", "{}", server.stderr());
    server.wait_stderr(REFUSAL_LOG, TIMEOUT);
    assert_refused_count(&server, "address", 1);
    assert_refused_count(&server, "proxy_header", 0);
}

/// A range that is not one stops `hftp serve` before it listens, as any
/// bad option value does (`-p x`): a usage error (exit 2), whose one
/// `error:` line names the option and the value and says how to write a
/// range.
#[test]
fn a_bad_range_stops_the_server_naming_it() {
    let dir = served();
    let serve = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hftp"))
            .args(["serve", "-a", "127.0.0.1", "-d"])
            .arg(dir.path())
            .args(args)
            .env_remove("HFTP_ALLOW")
            .env_remove("HFTP_DENY")
            .stdin(Stdio::null())
            .output()
            .expect("run hftp serve")
    };
    let usage = serve(&["-p", "x"]).status.code();
    assert_eq!(usage, Some(2), "a bad port is a usage error");
    for (option, value, bad) in [
        ("--allow", "10.0.0.0/33", "10.0.0.0/33"),
        ("--deny", "not-an-address", "not-an-address"),
        ("--allow", "127.0.0.1,10.1.2", "10.1.2"),
    ] {
        let out = serve(&["-p", "0", option, value]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            usage,
            "{option} {value}: exit as for any bad value; stderr:\n{stderr}"
        );
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(
            errors.len(),
            1,
            "{option} {value}: one error line:\n{stderr}"
        );
        for needed in [option, bad, "ADDR/LEN"] {
            assert!(
                errors[0].contains(needed),
                "{option} {value}: the line names {needed:?}:\n{stderr}"
            );
        }
        assert!(out.stdout.is_empty(), "no banner: {:?}", out.stdout);
    }
}

mod every_model {
    per_model!(super::a_denied_client_is_refused);
}

fn a_denied_client_is_refused(model: &str) {
    let dir = served();
    let server = start(dir.path(), model, &["--deny", "127.0.0.3"]);
    assert_served(&server, "127.0.0.2");
    assert_refused(&server, "127.0.0.3");
    assert_served(&server, "127.0.0.1");
    assert_refused_count(&server, "address", 2);
}
