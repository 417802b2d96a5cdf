//! What an installed `hftp` offers beyond its commands: the version stamp,
//! shell completions, manual pages, configuration from the environment,
//! and a server that survives SIGHUP.
//!
//! Tier: quick, but for `--version` (git) and the manual pages (man), full (each marked `#[ignore = "full tier: ..."]`).

use crate::support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::Server;

fn hftp(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_hftp"))
        .args(args)
        .output()
        .expect("run hftp");
    assert!(
        out.status.success(),
        "hftp {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `name`, found on `PATH`, or a failure that says how to install it.
fn tool(name: &str, install: &str) -> Command {
    Command::new(support::tools::require(name, install))
}

#[test]
#[ignore = "full tier: needs git and a git checkout"]
fn version_names_the_git_commit() {
    let out = hftp(&["--version"]);
    let version = String::from_utf8(out.stdout).unwrap();
    let head = tool("git", "apt-get install git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git");
    assert!(head.status.success(), "the tests run from a git checkout");
    let head = String::from_utf8(head.stdout).unwrap();
    assert_eq!(
        version.trim(),
        format!(
            "hftp {} (commit {})",
            env!("CARGO_PKG_VERSION"),
            head.trim()
        )
    );
}

#[test]
fn completion_scripts_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = String::from_utf8(hftp(&["completions", shell]).stdout).unwrap();
        for sub in ["serve", "check", "get", "completions"] {
            assert!(script.contains(sub), "{shell} script lacks {sub}");
        }
    }
    // The bash script is valid bash, and completes the subcommands.
    let script = hftp(&["completions", "bash"]).stdout;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hftp.bash");
    std::fs::write(&path, &script).unwrap();
    let check = tool("bash", "apt-get install bash")
        .arg("-n")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let complete = tool("bash", "apt-get install bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(hftp se); COMP_CWORD=1; _hftp hftp se hftp; echo \"${{COMPREPLY[@]}}\"",
            path.display()
        ))
        .output()
        .unwrap();
    let words = String::from_utf8_lossy(&complete.stdout);
    assert!(
        words.split_whitespace().any(|w| w == "serve"),
        "completed: {words:?}"
    );
}

#[test]
#[ignore = "full tier: needs man (apt-get install man-db)"]
fn manual_pages_render() {
    let page = hftp(&["man"]).stdout;
    assert!(
        page.starts_with(b".ie") || page.starts_with(b".TH"),
        "not roff"
    );
    let dir = tempfile::tempdir().unwrap();
    hftp(&["man", "--dir", dir.path().to_str().unwrap()]);
    for name in [
        "hftp",
        "hftp-serve",
        "hftp-check",
        "hftp-get",
        "hftp-completions",
    ] {
        let path = dir.path().join(format!("{name}.1"));
        assert!(path.exists(), "{name}.1 missing");
        let out = tool("man", "apt-get install man-db")
            .arg("-l")
            .arg(&path)
            .env("MANWIDTH", "100")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "man -l {name}.1: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("NAME") && text.contains("SYNOPSIS"),
            "{name}: {text}"
        );
    }
    let serve = std::fs::read_to_string(dir.path().join("hftp-serve.1")).unwrap();
    assert!(
        serve.contains("shutdown\\-grace"),
        "hftp-serve.1 lacks the serve options"
    );
}

/// `hftp serve` with every setting from HFTP_* variables, none on the
/// command line (as the Debian package's /etc/default/hftp sets them).
#[test]
fn serve_reads_its_options_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
    let mut server = Server::builder(dir.path())
        .model("poll")
        .configured_by_environment()
        .env("HFTP_MAX_PER_IP", "1")
        .start();
    assert!(server.addr().ip().is_loopback(), "{}", server.addr());
    assert!(
        server.stdout().iter().any(|l| l.contains("poll")),
        "HFTP_MODEL=poll not in the banner: {:?}",
        server.stdout()
    );
    let mut first = TcpStream::connect(server.addr()).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    first.write_all(b"get_metadata a.txt\r\n").unwrap();
    let mut got = [0u8; 9];
    first.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"0 OK\r\n5\r\n");
    // HFTP_MAX_PER_IP=1: a second connection from this address is closed
    // without an answer.
    let mut second = TcpStream::connect(server.addr()).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = second.write_all(b"help\r\n");
    let mut rest = Vec::new();
    if let Err(e) = second.read_to_end(&mut rest) {
        assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "second connection left open"
        );
    }
    assert!(
        !rest.starts_with(b"0 OK"),
        "second connection answered: {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert!(server.is_running());
    server.signal(libc::SIGTERM);
}

#[test]
fn sighup_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
    for model in support::MODELS {
        let mut server = Server::builder(dir.path()).model(model).start();
        server.signal(libc::SIGHUP);
        // Still answering after the signal: a request on a new connection
        // is served (the signal, sent before, has been delivered by then).
        let mut s = TcpStream::connect(server.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"get_metadata a.txt\r\nquit\r\n").unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"0 OK\r\n5\r\n0 OK\r\n", "--model {model}");
        assert!(server.is_running(), "--model {model}: SIGHUP stopped it");
    }
}
