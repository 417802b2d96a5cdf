//! The client against hostile servers (issue 14): a listing that never
//! ends, a base64 body that never ends, a server that drips one byte at a
//! time. The real `hftp` binary must end by itself (its own `--max-time`
//! or listing limit, with the documented exit code and one line) and keep
//! its memory bounded; its peak memory is measured with `wait4`.
//!
//! Memory bounds are generous (the client needs a few MiB); they catch
//! growth with the input, which reached gigabytes before.
//!
//! Tier: quick.

use std::time::Duration;

use crate::hostile::{run_measured, Behaviour, Hostile, Run};

/// Only for a client that never ends: far beyond every `--max-time` here.
const WATCHDOG: Duration = Duration::from_secs(120);

/// What a streaming client may use, in KiB.
const STREAMING_RSS_KIB: i64 = 64 * 1024;

#[track_caller]
fn assert_ended(run: &Run, code: i32, message: &str) {
    assert_eq!(
        run.code,
        Some(code),
        "exit status (None: killed by the watchdog); stderr: {}",
        run.stderr
    );
    assert!(run.stderr.contains(message), "stderr: {}", run.stderr);
    assert!(run.stderr.starts_with("hftp: "), "stderr: {}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
}

#[test]
fn endless_listing_sorted_ls_stops_at_the_listing_limit() {
    let server = Hostile::start(Behaviour::EndlessListing);
    let run = run_measured(&["ls", &server.addr], WATCHDOG);
    assert_ended(&run, 4, "the listing is longer than this client holds");
    assert_eq!(run.stdout_len, 0, "nothing printed from a partial listing");
    // A million short names held: well under 256 MiB.
    assert!(run.max_rss_kib < 256 * 1024, "peak {} KiB", run.max_rss_kib);
    eprintln!("ls (sorted), endless listing: peak {} KiB", run.max_rss_kib);
}

#[test]
fn endless_listing_streamed_until_max_time() {
    let server = Hostile::start(Behaviour::EndlessListing);
    let run = run_measured(&["ls", "-U", &server.addr, "--max-time", "2"], WATCHDOG);
    assert_ended(&run, 6, "total time limit of 2 s passed (--max-time)");
    assert!(
        run.stdout_head.starts_with(b"file.txt\nfile.txt\n"),
        "names streamed as they arrive"
    );
    assert!(
        run.max_rss_kib < STREAMING_RSS_KIB,
        "peak {} KiB",
        run.max_rss_kib
    );
    eprintln!(
        "ls -U, endless listing: {} bytes printed, peak {} KiB",
        run.stdout_len, run.max_rss_kib
    );
}

#[test]
fn endless_listing_ls_long_stops_at_the_listing_limit() {
    let server = Hostile::start(Behaviour::EndlessListing);
    let run = run_measured(&["ls", "-l", &server.addr], WATCHDOG);
    assert_ended(&run, 4, "the listing is longer than this client holds");
    assert!(run.max_rss_kib < 256 * 1024, "peak {} KiB", run.max_rss_kib);
}

#[test]
fn endless_base64_body_for_cat_until_max_time() {
    let server = Hostile::start(Behaviour::EndlessBase64);
    let run = run_measured(
        &["cat", &server.addr, "big", "--no-raw", "--max-time", "2"],
        WATCHDOG,
    );
    assert_ended(&run, 6, "--max-time");
    assert!(run.stdout_len > 0, "the body was streamed out");
    assert!(run.stdout_head.iter().all(|&b| b == b'A'), "decoded body");
    assert!(
        run.max_rss_kib < STREAMING_RSS_KIB,
        "peak {} KiB",
        run.max_rss_kib
    );
    eprintln!(
        "cat, endless base64: {} bytes written, peak {} KiB",
        run.stdout_len, run.max_rss_kib
    );
}

#[test]
fn slow_drip_is_ended_by_max_time() {
    // Complete answers would take 2.6 s (a size) or forever (the listing).
    let server = Hostile::start(Behaviour::Drip { ms: 100 });
    for args in [
        &["ls", &server.addr, "--max-time", "1"][..],
        &["ls", "-U", &server.addr, "--max-time", "1"][..],
        &["stat", &server.addr, "a", "--max-time", "1"][..],
        &["cat", &server.addr, "a", "--max-time", "1"][..],
        &[
            "get",
            &server.addr,
            "a",
            "--max-time",
            "1",
            "-o",
            "/dev/null",
            "-f",
        ][..],
    ] {
        let run = run_measured(args, WATCHDOG);
        assert_ended(&run, 6, "total time limit of 1 s passed");
        assert!(
            run.max_rss_kib < STREAMING_RSS_KIB,
            "{args:?}: peak {} KiB",
            run.max_rss_kib
        );
    }
}

#[test]
fn bench_listing_against_an_endless_listing_stays_small() {
    let server = Hostile::start(Behaviour::EndlessListing);
    let run = run_measured(&["bench", &server.addr, "listing", "-d", "2"], WATCHDOG);
    assert!(
        run.code.is_some(),
        "ended by its --duration: {}",
        run.stderr
    );
    assert!(
        run.max_rss_kib < STREAMING_RSS_KIB,
        "peak {} KiB",
        run.max_rss_kib
    );
    eprintln!(
        "bench listing, endless listing: peak {} KiB",
        run.max_rss_kib
    );
}

#[test]
fn shell_survives_an_endless_listing() {
    let server = Hostile::start(Behaviour::EndlessListing);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hftp"))
        .args(["shell", &server.addr])
        .env_remove("HFTP_PROXY")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn shell");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(b"quit\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(4),
        "first failure; stderr: {stderr}"
    );
    assert!(
        stderr.contains("the listing is longer than this client holds"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no name completion"),
        "the session went on"
    );
}

/// A size no disk holds (2^62, 2^64 - 1; the first made `get` abort on a
/// 512 GiB table of segments): `get` says so in one line, exit 7, before
/// it writes anything, and its memory does not follow the number.
#[test]
fn get_of_a_size_no_disk_holds_ends_before_writing() {
    for size in [1u64 << 62, u64::MAX, 1 << 54] {
        let server = Hostile::start(Behaviour::LiesAboutSize(size));
        let out = tempfile::tempdir().expect("temp dir");
        let dir = out.path().to_str().expect("utf-8 temp path");
        for pattern in ["big.bin", "b*"] {
            let run = run_measured(&["get", &server.addr, pattern, "-O", dir], WATCHDOG);
            assert_ended(&run, 7, &format!("big.bin is {size} bytes"));
            assert!(run.stderr.contains("nothing was written"), "{}", run.stderr);
            let left: Vec<_> = std::fs::read_dir(out.path())
                .expect("read the output directory")
                .collect();
            assert!(left.is_empty(), "files left behind: {left:?}");
            assert!(
                run.max_rss_kib < STREAMING_RSS_KIB,
                "peak {} KiB",
                run.max_rss_kib
            );
        }
    }
}
