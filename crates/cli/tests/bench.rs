//! `hftp bench` against the real server (counts, validation, --verify,
//! churn, --hold) and against scripted peers that misbehave (error
//! accounting). No timing thresholds: only counts and kinds are checked.
//!
//! Tier: quick.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::support::Server;
use hftp_bench::{run, Config, Live, Report, Stop};

/// 200,003 bytes: several streamed chunks, and not a multiple of 3.
const BIG: usize = 200_003;

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(
        dir.path().join("hola.txt"),
        b"Que calor que hace hoy, pinocho!",
    )
    .unwrap();
    let big: Vec<u8> = (0..BIG).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(dir.path().join("big.bin"), big).unwrap();
    dir
}

fn config(addr: SocketAddr, workload: &str, requests: u64) -> Config {
    Config {
        workload: workload.parse().expect("workload"),
        stop: Stop::Requests(requests),
        timeout: Duration::from_secs(20),
        ..Config::new(addr)
    }
}

fn bench(cfg: &Config) -> Report {
    run(cfg, Arc::new(Live::default())).expect("bench run")
}

fn kinds(report: &Report) -> Vec<(String, u64)> {
    report
        .error_kinds
        .iter()
        .map(|(k, e)| (k.clone(), e.count))
        .collect()
}

#[test]
fn metadata_counts_every_request_once() {
    let dir = fixture();
    let server = Server::builder(dir.path()).model("async").start();
    let cfg = Config {
        conns: 6,
        threads: 2,
        pipeline: 3,
        verify: Some(dir.path().to_path_buf()),
        server_pid: Some(server.pid()),
        ..config(server.addr(), "metadata:hola.txt", 500)
    };
    let r = bench(&cfg);
    assert_eq!(r.errors, 0, "{}", r.to_text());
    assert_eq!(r.requests, 500);
    assert_eq!(r.latency_us.count, 500);
    assert_eq!(r.conns_served, 6);
    assert_eq!(r.payload_bytes, 0);
    // `0 OK\r\n32\r\n` for each, `get_metadata hola.txt\r\n` for each.
    assert_eq!(r.rx_bytes, 500 * 10);
    assert_eq!(r.tx_bytes, 500 * 23);
    let server_usage = r.server.expect("server sampled");
    assert!(server_usage.peak.rss_kib > 0);
    assert_eq!(server_usage.pid, server.pid());
}

#[test]
fn slices_are_decoded_and_verified_in_both_modes() {
    let dir = fixture();
    let server = Server::builder(dir.path()).model("poll").start();
    for (workload, wire_per_reply) in [
        // base64 of 199,990 bytes is 266,656 characters.
        ("slice:big.bin:13:199990", 6 + 266_656 + 2),
        (
            "raw:big.bin:13:199990",
            6 + "Content-Length: 199990\r\n\r\n".len() + 199_990,
        ),
    ] {
        let cfg = Config {
            conns: 3,
            pipeline: 2,
            verify: Some(dir.path().to_path_buf()),
            ..config(server.addr(), workload, 12)
        };
        let r = bench(&cfg);
        assert_eq!(r.errors, 0, "{}", r.to_text());
        assert_eq!(r.requests, 12, "{workload}");
        assert_eq!(r.payload_bytes, 12 * 199_990, "{workload}");
        assert_eq!(r.rx_bytes, 12 * wire_per_reply as u64, "{workload}");
    }
}

#[test]
fn verify_catches_bytes_that_differ_from_the_local_file() {
    let dir = fixture();
    let server = Server::builder(dir.path()).model("threads").start();
    let other = tempfile::tempdir().unwrap();
    let mut big: Vec<u8> = fs::read(dir.path().join("big.bin")).unwrap();
    big[150_000] ^= 1;
    fs::write(other.path().join("big.bin"), &big).unwrap();
    fs::write(other.path().join("hola.txt"), b"shorter").unwrap();
    for workload in [
        "slice:big.bin:0:200003",
        "raw:big.bin:100000:100000",
        "metadata:hola.txt",
    ] {
        let cfg = Config {
            verify: Some(other.path().to_path_buf()),
            ..config(server.addr(), workload, 4)
        };
        let r = bench(&cfg);
        assert_eq!(
            kinds(&r),
            vec![("verify".to_string(), 4)],
            "{workload}: {}",
            r.to_text()
        );
        assert_eq!(r.requests, 0);
        let example = &r.error_kinds["verify"].example;
        if workload.starts_with("metadata") {
            assert!(example.contains("get_metadata said 32"), "{example}");
        } else {
            assert!(example.contains("file offset 150000"), "{example}");
        }
    }
}

#[test]
fn mixed_listing_and_help_are_validated() {
    let dir = fixture();
    let server = Server::builder(dir.path()).model("pool").start();
    let cfg = Config {
        conns: 4,
        pipeline: 4,
        ..config(
            server.addr(),
            "mixed:metadata:hola.txt=5,slice:hola.txt:4:19=3,listing=1,help=1,raw:big.bin:0:7=1",
            400,
        )
    };
    let r = bench(&cfg);
    assert_eq!(r.errors, 0, "{}", r.to_text());
    assert_eq!(r.requests, 400);
    assert!(r.payload_bytes > 0);
}

#[test]
fn error_statuses_are_counted_by_kind() {
    let dir = fixture();
    let server = Server::builder(dir.path()).model("async").start();
    let r = bench(&Config {
        pipeline: 5,
        ..config(server.addr(), "metadata:missing.txt", 25)
    });
    assert_eq!(
        kinds(&r),
        vec![("status 202 FILE NOT FOUND".to_string(), 25)]
    );
    assert_eq!(r.requests, 0);
    let r = bench(&config(server.addr(), "slice:hola.txt:30:3", 7));
    assert_eq!(
        kinds(&r),
        vec![("status 203 OFFSET EXCEEDS FILE SIZE".to_string(), 7)]
    );
}

#[test]
fn churn_counts_connect_quit_close_cycles() {
    let dir = fixture();
    let server = Server::builder(dir.path()).model("fork").start();
    let r = bench(&Config {
        conns: 3,
        ..config(server.addr(), "churn", 60)
    });
    assert_eq!(r.errors, 0, "{}", r.to_text());
    assert_eq!(r.requests, 60);
    assert_eq!(r.rx_bytes, 60 * 6);
    assert_eq!(r.tx_bytes, 60 * 6);
}

#[test]
fn hold_checks_every_connection_answers_quit() {
    let dir = fixture();
    for model in ["async", "poll"] {
        let server = Server::builder(dir.path()).model(model).start();
        let cfg = Config {
            hold: Some(300),
            stop: Stop::Duration(Duration::ZERO),
            server_pid: Some(server.pid()),
            ..config(server.addr(), "churn", 1)
        };
        let r = bench(&cfg);
        let h = r.hold.clone().expect("hold report");
        assert_eq!(
            (h.connected, h.answered_quit, h.lost_while_idle),
            (300, 300, 0),
            "{model}: {}",
            r.to_text()
        );
        assert_eq!(r.errors, 0);
        assert!(r.server.expect("sampled").end.rss_kib > 0);
    }
}

/// A peer that answers each request line with `reply(line)` and then
/// behaves as `after` says, for any number of connections.
fn scripted_peer(reply: fn(&str) -> Vec<u8>, close_after_reply: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || serve_script(stream, reply, close_after_reply));
        }
    });
    addr
}

fn serve_script(stream: TcpStream, reply: fn(&str) -> Vec<u8>, close_after_reply: bool) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
        if writer.write_all(&reply(line.trim_end())).is_err() {
            return;
        }
        line.clear();
        if close_after_reply {
            // Close with the client's next bytes unread would send a reset:
            // shut down writing and wait for the client to go instead.
            writer.shutdown(std::net::Shutdown::Write).ok();
            let mut sink = Vec::new();
            reader.read_to_end(&mut sink).ok();
            return;
        }
    }
}

#[test]
fn garbage_replies_are_protocol_errors() {
    // A size with a letter in it.
    let addr = scripted_peer(|_| b"0 OK\r\n12x\r\n".to_vec(), false);
    let r = bench(&config(addr, "metadata:a.txt", 5));
    assert_eq!(
        kinds(&r),
        vec![("protocol".to_string(), 5)],
        "{}",
        r.to_text()
    );
    assert!(r.error_kinds["protocol"].example.contains("12x"));
    assert_eq!(r.requests, 0);

    // An unknown status line; with 3 in flight, the 2 behind it are aborted.
    let addr = scripted_peer(|_| b"0 FINE\r\n".to_vec(), false);
    let r = bench(&Config {
        pipeline: 3,
        ..config(addr, "metadata:a.txt", 6)
    });
    assert_eq!(
        r.error_kinds["protocol"].count + r.error_kinds.get("aborted").map_or(0, |e| e.count),
        6
    );
    assert!(r.error_kinds["protocol"]
        .example
        .contains("unknown status line"));

    // Base64 outside the alphabet.
    let addr = scripted_peer(|_| b"0 OK\r\nQU*D\r\n".to_vec(), false);
    let r = bench(&config(addr, "slice:a:0:3", 3));
    assert_eq!(kinds(&r), vec![("protocol".to_string(), 3)]);

    // A wrong Content-Length.
    let addr = scripted_peer(|_| b"0 OK\r\nContent-Length: 4\r\n\r\nabcd".to_vec(), false);
    let r = bench(&config(addr, "raw:a:0:3", 2));
    assert_eq!(kinds(&r), vec![("protocol".to_string(), 2)]);
}

#[test]
fn short_replies_are_truncations_and_bad_quits_are_caught() {
    // Half a base64 line, then the close.
    let addr = scripted_peer(|_| b"0 OK\r\nQUJD".to_vec(), true);
    let r = bench(&config(addr, "slice:a:0:6", 4));
    assert_eq!(
        kinds(&r),
        vec![("truncated".to_string(), 4)],
        "{}",
        r.to_text()
    );
    assert!(r.error_kinds["truncated"]
        .example
        .contains("after 4 of 8 characters"));

    // A server that answers quit with a status that is not `0 OK`.
    let addr = scripted_peer(|_| b"200 NO SUCH COMMAND\r\n".to_vec(), true);
    let r = bench(&config(addr, "churn", 3));
    assert_eq!(
        kinds(&r),
        vec![("status 200 NO SUCH COMMAND".to_string(), 3)],
        "{}",
        r.to_text()
    );
}

fn hftp(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hftp"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run hftp");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn command_line_reports_json_and_exit_status() {
    let dir = fixture();
    let server = Server::builder(dir.path()).model("async").start();
    let addr = server.addr().to_string();
    let verify = dir.path().to_str().unwrap();
    let (code, out, err) = hftp(&[
        &addr,
        "slice:big.bin:0:1000",
        "-n",
        "40",
        "-c",
        "4",
        "-k",
        "2",
        "--json",
        "--verify",
        verify,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("\"requests\": 40,"), "{out}");
    assert!(out.contains("\"payload_bytes\": 40000,"), "{out}");
    assert!(out.contains("\"errors\": 0,"), "{out}");

    let (code, out, _) = hftp(&[&addr, "metadata:nothere", "-n", "3"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("status 202 FILE NOT FOUND: 3"), "{out}");

    let (code, out, err) = hftp(&[&addr, "--hold", "20", "-d", "0"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("20/20 answered 0 OK"), "{out}");

    let (code, _, err) = hftp(&[&addr, "metadata:a/b"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not a valid HFTP file name"), "{err}");

    // Nothing listens there any more.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let (code, _, err) = hftp(&[&closed, "metadata:a", "-n", "1"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot connect"), "{err}");
}

#[test]
fn the_base64_mode_needs_no_server() {
    let (code, out, err) = hftp(&["--base64-speed", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("base64_encode_mbps"));
}
