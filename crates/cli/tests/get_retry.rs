//! `hftp get` surviving servers that fail (issue 9): a real `hftp serve`
//! killed mid-download and restarted on its port, servers that reset
//! mid-body a few times or always, a file that vanishes between two
//! attempts, and mirrors, one of which is killed mid-download.
//!
//! The real binary runs against real servers on loopback. A download is
//! made slow with `--limit-rate` so that the test can kill a server while
//! it is under way; the test waits for the client's own progress lines
//! (a real event), never for a fixed time. Attempts are counted on the
//! server side.
//!
//! Tier: quick.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use crate::hostile::{Behaviour, FlakyFile, Hostile};
use crate::support::background::{hftp, Background};
use crate::support::{noise, Server};

const MIB: usize = 1024 * 1024;
/// Far beyond any download here; only a client that hangs reaches it.
const WATCHDOG: Duration = Duration::from_secs(120);

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn assert_code(out: &Output, want: i32) {
    assert_eq!(out.status.code(), Some(want), "stderr:\n{}", stderr(out));
}

/// The `(at byte N)` of each retry line, in order.
fn retry_offsets(err: &str) -> Vec<u64> {
    err.lines()
        .filter(|l| l.contains("; retry "))
        .map(|l| {
            let (_, rest) = l.split_once("(at byte ").expect("at byte");
            let (n, _) = rest.split_once(')').expect(")");
            n.parse().expect("a byte offset")
        })
        .collect()
}

/// A loopback port where nothing listens (bound, then released).
fn dead_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A served directory holding `r.bin`: 16 MiB, so that `-j 2` makes
/// eight 2 MiB segments, most of them not yet asked for when the test
/// kills a server early in the download.
fn big_file(seed: u64) -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = noise(16 * MIB, seed);
    fs::write(dir.path().join("r.bin"), &data).expect("write");
    (dir, data)
}

/// The arguments of a download slow enough (4 MiB/s: 4 s) to be killed
/// in the middle, with a progress line every 0.1 s to wait for.
fn slow_get(target: &str) -> Vec<&str> {
    vec![
        "get",
        target,
        "r.bin",
        "-j",
        "2",
        "--limit-rate",
        "4M",
        "--progress-interval",
        "0.1",
    ]
}

#[test]
fn a_server_killed_and_restarted_on_its_port_is_retried() {
    let (dir, data) = big_file(21);
    let mut server = Server::builder(dir.path()).start();
    let port = server.addr().port();
    let target = server.addr().to_string();
    let work = tempfile::tempdir().expect("tempdir");
    let mut get = Background::start(&slow_get(&target), work.path());
    get.wait_progress();
    server.signal(libc::SIGKILL);
    server.wait_exit(WATCHDOG);
    let _restarted = Server::builder(dir.path()).port(port).start();
    let (code, err) = get.finish();
    assert_eq!(code, 0, "stderr:\n{err}");
    assert!(
        fs::read(work.path().join("r.bin")).expect("read") == data,
        "not byte-identical"
    );
    assert!(err.contains("; retry 1/5 in "), "no retry named:\n{err}");
    assert!(err.contains(&format!("on {target}")), "{err}");
    assert!(!work.path().join(".r.bin.hftp-part").exists());
    assert!(!work.path().join(".r.bin.hftp-state").exists());
}

#[test]
fn resets_mid_body_are_retried_from_the_last_byte() {
    let data = noise(300_000, 22);
    let failures = 3;
    let file = FlakyFile::new("f.bin", data.clone(), failures, false);
    let server = Hostile::start(Behaviour::Flaky(file.clone()));
    let work = tempfile::tempdir().expect("tempdir");
    let out = hftp(&["get", &server.addr, "f.bin"], work.path());
    assert_code(&out, 0);
    assert!(fs::read(work.path().join("f.bin")).expect("read") == data);
    let err = stderr(&out);
    for retry in 1..=failures {
        assert!(err.contains(&format!("; retry {retry}/5 in ")), "{err}");
    }
    assert!(!err.contains("; retry 4/5"), "{err}");
    // Each retry asked for the rest from where the reset stopped it, as
    // it said: half of what was left each time.
    let offsets = file.slice_offsets.lock().expect("lock").clone();
    assert_eq!(offsets.len(), failures + 1, "{offsets:?}");
    assert_eq!(retry_offsets(&err), offsets[1..], "{err}");
    let mut left = data.len() as u64;
    for pair in offsets.windows(2) {
        assert_eq!(pair[1] - pair[0], left / 6 * 3, "{offsets:?}");
        left -= pair[1] - pair[0];
    }
}

#[test]
fn a_server_that_always_fails_gets_exactly_the_retries() {
    let data = noise(100_000, 23);
    let file = FlakyFile::new("f.bin", data, usize::MAX, false);
    let server = Hostile::start(Behaviour::Flaky(file.clone()));
    let work = tempfile::tempdir().expect("tempdir");
    let out = hftp(
        &["get", &server.addr, "f.bin", "--retries", "2"],
        work.path(),
    );
    assert_code(&out, 4);
    let err = stderr(&out);
    assert_eq!(file.slices(), 3, "one attempt and two retries\n{err}");
    assert!(err.contains("; retry 2/2 in "), "{err}");
    assert!(!err.contains("retry 3/"), "{err}");
    assert!(
        err.contains("run the same command again to resume"),
        "{err}"
    );
    assert!(!work.path().join("f.bin").exists(), "no final file");
    assert!(
        work.path().join(".f.bin.hftp-part").exists(),
        "kept to resume"
    );

    // --retries 0: the first failure ends it.
    let file = FlakyFile::new("f.bin", noise(100_000, 23), usize::MAX, false);
    let server = Hostile::start(Behaviour::Flaky(file.clone()));
    let out = hftp(
        &["get", &server.addr, "f.bin", "--retries", "0", "-f"],
        work.path(),
    );
    assert_code(&out, 4);
    assert_eq!(file.slices(), 1);
    assert!(!stderr(&out).contains("; retry "), "{}", stderr(&out));
    assert!(!work.path().join("f.bin").exists());
}

#[test]
fn max_time_bounds_the_retries() {
    let file = FlakyFile::new("f.bin", noise(100_000, 24), usize::MAX, false);
    let server = Hostile::start(Behaviour::Flaky(file.clone()));
    let work = tempfile::tempdir().expect("tempdir");
    // Backoff 0.2 + 0.4 + 0.8 s: the fourth retry (1.6 s) would pass 2 s.
    let out = hftp(
        &[
            "get",
            &server.addr,
            "f.bin",
            "--retries",
            "100",
            "--max-time",
            "2",
        ],
        work.path(),
    );
    assert_code(&out, 6);
    let err = stderr(&out);
    assert!(err.contains("no time left for retry 4: gave up"), "{err}");
    assert!(err.contains("total time limit of 2 s passed"), "{err}");
    assert!(file.slices() < 10, "{} attempts", file.slices());
    assert!(!work.path().join("f.bin").exists());
}

#[test]
fn ctrl_c_while_waiting_to_retry_stops_at_once() {
    let file = FlakyFile::new("f.bin", noise(100_000, 29), usize::MAX, false);
    let server = Hostile::start(Behaviour::Flaky(file.clone()));
    let work = tempfile::tempdir().expect("tempdir");
    let get = Background::start(
        &["get", &server.addr, "f.bin", "--retries", "100"],
        work.path(),
    );
    // The fifth retry waits about 3.2 s: Ctrl-C lands in that wait.
    let deadline = Instant::now() + WATCHDOG;
    while !get.stderr().contains("; retry 5/100 in ") {
        assert!(
            Instant::now() < deadline,
            "no fifth retry:\n{}",
            get.stderr()
        );
        // Polling, bounded by the deadline: not a stand-in for synchronisation.
        thread::sleep(Duration::from_millis(5));
    }
    let pid = libc::pid_t::try_from(get.pid()).expect("pid");
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let (code, err) = get.finish();
    assert_eq!(code, 130, "{err}");
    // One line says it, the useful one: what was kept, how to resume.
    assert!(
        err.ends_with(
            "hftp: interrupted: the finished segments are kept in .f.bin.hftp-part; \
             run the same command again to resume\n"
        ),
        "{err}"
    );
    assert_eq!(err.matches("interrupted").count(), 1, "{err}");
    assert!(!err.contains("; retry 6/"), "{err}");
    assert_eq!(file.slices(), 5, "no attempt after Ctrl-C\n{err}");
    assert!(!work.path().join("f.bin").exists());
}

#[test]
fn a_file_removed_between_attempts_fails_and_leaves_nothing() {
    let file = FlakyFile::new("f.bin", noise(200_000, 25), 1, true);
    let server = Hostile::start(Behaviour::Flaky(file.clone()));
    let work = tempfile::tempdir().expect("tempdir");
    let out = hftp(&["get", &server.addr, "f.bin"], work.path());
    assert_code(&out, 3);
    let err = stderr(&out);
    assert!(err.contains("; retry 1/5 in "), "{err}");
    assert!(err.contains("202 FILE NOT FOUND"), "{err}");
    assert!(
        err.contains("removed") && err.contains("no longer has"),
        "{err}"
    );
    assert_eq!(file.slices(), 1, "no slice asked after the 202");
    for leftover in ["f.bin", ".f.bin.hftp-part", ".f.bin.hftp-state"] {
        assert!(!work.path().join(leftover).exists(), "{leftover} left");
    }
}

#[test]
fn mirrors_share_a_download_and_take_over_from_a_dead_one() {
    let (dir, data) = big_file(26);
    let first = Server::builder(dir.path()).start();
    let mut second = Server::builder(dir.path()).start();
    let gone = format!("127.0.0.1:{}", dead_port());
    let (a, b) = (first.addr().to_string(), second.addr().to_string());
    let mirrors = format!("{a},hftp://{b}/r.bin,{gone}");
    let work = tempfile::tempdir().expect("tempdir");
    let mut get = Background::start(&slow_get(&mirrors), work.path());
    get.wait_progress();
    second.signal(libc::SIGKILL);
    second.wait_exit(WATCHDOG);
    let (code, err) = get.finish();
    assert_eq!(code, 0, "stderr:\n{err}");
    assert!(fs::read(work.path().join("r.bin")).expect("read") == data);
    assert!(
        err.contains(&format!("hftp: mirror {gone} dropped: cannot connect")),
        "{err}"
    );
    assert!(
        err.contains(&format!("on {a} (moved from {b})")),
        "no move named:\n{err}"
    );
    assert!(err.contains("2 connections"), "{err}");
}

#[test]
fn mirrors_that_disagree_are_refused_by_name() {
    let (dir, _) = big_file(27);
    let other = tempfile::tempdir().expect("tempdir");
    fs::write(other.path().join("r.bin"), noise(MIB, 28)).expect("write");
    let (good, odd) = (
        Server::builder(dir.path()).start(),
        Server::builder(other.path()).start(),
    );
    let empty = tempfile::tempdir().expect("tempdir");
    let without = Server::builder(empty.path()).start();
    let work = tempfile::tempdir().expect("tempdir");
    for (mirror, says) in [
        (&odd, format!("has {} bytes of r.bin", MIB)),
        (&without, "has no file r.bin".to_owned()),
    ] {
        let target = format!("{},{}", good.addr(), mirror.addr());
        let out = hftp(&["get", &target, "r.bin"], work.path());
        assert_code(&out, 4);
        let err = stderr(&out);
        assert!(
            err.contains(&format!("mirrors disagree: {} {says}", mirror.addr())),
            "{err}"
        );
        assert!(err.contains(&format!("{} has {} bytes", good.addr(), 16 * MIB)));
        for leftover in ["r.bin", ".r.bin.hftp-part", ".r.bin.hftp-state"] {
            assert!(!work.path().join(leftover).exists(), "{leftover} left");
        }
    }
}

#[test]
fn mirror_lists_are_for_get_only_and_urls_must_agree() {
    let work = tempfile::tempdir().expect("tempdir");
    for (args, says) in [
        (
            &["ls", "127.0.0.1:1,127.0.0.1:2"][..],
            "several servers (mirrors) are for get only",
        ),
        (
            &["get", "hftp://127.0.0.1:1/a,hftp://127.0.0.1:2/b"][..],
            "the URLs name different files (a, b)",
        ),
        (
            &["get", "127.0.0.1:1,,127.0.0.1:2", "a"][..],
            "an empty server",
        ),
    ] {
        let out = hftp(args, work.path());
        assert_code(&out, 2);
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}
