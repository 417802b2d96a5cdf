//! `hftp serve` as a command: start-up errors, the banner, addresses.
//!
//! Tier: quick, but for `--user` (root), full (each marked `#[ignore = "full tier: ..."]`).

use crate::support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};

use crate::support::Server;

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
#[ignore = "full tier: needs root (--user switches users)"]
fn user_option_serves_as_that_user() {
    support::tools::require_root("only root can switch users");
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

/// `--model uring` where io_uring is forbidden, for real: a seccomp filter
/// installed in the child before `exec` makes `io_uring_setup` fail with
/// `ENOSYS`, as a container runtime's policy does. The server must say so
/// in one line and exit 1, never fall back to another model.
#[test]
fn uring_fails_at_start_with_a_clear_message_where_io_uring_is_forbidden() {
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let mut command = hftp();
    command
        .args([
            "serve",
            "-p",
            "0",
            "-a",
            "127.0.0.1",
            "--model",
            "uring",
            "-d",
        ])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the hook only calls prctl, which is async-signal-safe.
    unsafe { command.pre_exec(forbid_io_uring_setup) };
    let mut child = command.spawn().expect("start hftp serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for hftp serve") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("--model uring kept running although io_uring_setup is forbidden");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("io_uring is unavailable")
            && stderr.contains("io_uring_setup")
            && stderr.contains("choose another --model"),
        "stderr: {stderr}"
    );
    assert!(stdout.is_empty(), "no banner: {stdout}");
}

/// Installs a seccomp filter that fails `io_uring_setup` with `ENOSYS` and
/// allows every other system call.
fn forbid_io_uring_setup() -> std::io::Result<()> {
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7;
    const LOAD_WORD: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JUMP_IF_EQUAL: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RETURN: u16 = 0x06; // BPF_RET | BPF_K
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let filter = [
        // seccomp_data.arch: another architecture's numbers mean other calls.
        op(LOAD_WORD, 0, 0, 4),
        op(JUMP_IF_EQUAL, 1, 0, AUDIT_ARCH),
        op(RETURN, 0, 0, libc::SECCOMP_RET_ALLOW),
        // seccomp_data.nr
        op(LOAD_WORD, 0, 0, 0),
        op(JUMP_IF_EQUAL, 0, 1, libc::SYS_io_uring_setup as u32),
        op(RETURN, 0, 0, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        op(RETURN, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: plain prctl calls; `program` outlives them.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &program as *const libc::sock_fprog,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Files whose names HFTP cannot carry are left out of listings, and the
/// log says so: how many and one example, once, and again when the count
/// changes (not on every listing).
#[test]
fn names_left_out_of_listings_are_logged_once() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    for name in ["ok.txt", "mi archivo.txt", "año.txt"] {
        std::fs::write(dir.path().join(name), b"x").unwrap();
    }
    let server = Server::builder(dir.path()).start();
    let listing = || {
        let mut conn = support::connect(server.addr(), Duration::from_secs(10));
        support::ask(&mut conn, b"get_file_listing\r\nquit\r\n")
    };
    // Each connection's close is logged after its listing: waiting for the
    // n-th close means every line of the n-th listing is in.
    let closes = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while server.stderr().matches("connection closed").count() < n {
            assert!(std::time::Instant::now() < deadline, "{}", server.stderr());
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    assert_eq!(listing(), "0 OK\r\nok.txt\r\n\r\n0 OK\r\n");
    closes(1);
    assert_eq!(listing(), "0 OK\r\nok.txt\r\n\r\n0 OK\r\n");
    closes(2);
    let logged = server.stderr();
    let lines: Vec<&str> = logged.lines().filter(|l| l.contains("left out")).collect();
    assert_eq!(lines.len(), 1, "once for the same directory:\n{logged}");
    assert!(
        lines[0].contains("listing: left out 2 names HFTP cannot carry, e.g. ")
            && lines[0].contains("names may hold only A-Z a-z 0-9 . _ -"),
        "{}",
        lines[0]
    );

    std::fs::write(dir.path().join("otro archivo"), b"y").unwrap();
    assert_eq!(listing(), "0 OK\r\nok.txt\r\n\r\n0 OK\r\n");
    closes(3);
    assert!(
        server.stderr().contains("listing: left out 3 names"),
        "{}",
        server.stderr()
    );
}
