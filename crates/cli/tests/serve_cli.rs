//! `hftp serve` as a command: start-up errors, the banner, addresses.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};

use support::Server;

fn hftp() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hftp"))
}

#[test]
fn refuses_a_missing_directory_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let out = hftp()
        .args(["serve", "-p", "0", "-a", "127.0.0.1", "-d"])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot serve") && err.contains("nope"),
        "stderr: {err}"
    );
}

#[test]
fn refuses_a_busy_port() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = hftp()
        .args(["serve", "-a", "127.0.0.1", "-p", &port, "-d"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on 127.0.0.1"), "stderr: {err}");
}

#[test]
fn refuses_to_drop_privileges_to_root_or_an_unknown_user() {
    let dir = tempfile::tempdir().unwrap();
    for (user, message) in [
        ("root", "refusing to serve as root"),
        ("no-such-user-hftp", "no such user"),
    ] {
        let out = hftp()
            .args(["serve", "-p", "0", "-a", "127.0.0.1", "--user", user, "-d"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "--user {user}: {err}");
    }
}

#[test]
fn user_option_serves_as_that_user() {
    if !support::running_as_root() {
        return; // Only root can switch users; CI runs as root.
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(dir.path().join("a.txt"), b"abc").unwrap();
    let server = Server::builder(dir.path())
        .arg("--user")
        .arg("nobody")
        .start();
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "65534"),
        "{uid_line}"
    );
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.write_all(b"get_metadata a.txt\r\n").unwrap();
    let mut line = String::new();
    let mut r = BufReader::new(s);
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "0 OK\r\n");
}

#[test]
fn banner_names_model_and_reach() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::builder(dir.path()).model("poll").start();
    let banner = server.stdout().join("\n");
    assert!(banner.contains("model poll"), "{banner}");
    assert!(
        banner.contains(&format!(
            "listening on {} (loopback: this host only)",
            server.addr()
        )),
        "{banner}"
    );
}

#[test]
fn localhost_listens_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = hftp()
        .args(["serve", "-p", "0", "-a", "localhost", "-d"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("hftp "), "{first}");
    let listen = lines.next().unwrap().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        listen.starts_with("listening on 127.0.0.1:") || listen.starts_with("listening on [::1]:"),
        "{listen}"
    );
    assert!(listen.ends_with("(loopback: this host only)"), "{listen}");
}
