//! Misbehaving HFTP servers on loopback, and a way to run the real `hftp`
//! binary against them while measuring its peak memory.
//!
//! A [`Hostile`] server reads request lines and answers each with a
//! [`Behaviour`]; answers that never end stop when the client goes away
//! (the write fails).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// What the server does with each request.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// `get_file_listing`: `0 OK`, then `file.txt` forever.
    EndlessListing,
    /// `get_metadata`: 1 TiB; `get_slice` (base64): `0 OK`, then base64
    /// characters forever.
    EndlessBase64,
    /// One byte every `ms` milliseconds, so that every read timeout is
    /// satisfied: a listing of `a` forever; any other request `0 OK` and
    /// a 20-digit size.
    Drip { ms: u64 },
}

/// A misbehaving server on a free loopback port, one thread per client.
pub struct Hostile {
    pub addr: String,
}

impl Hostile {
    pub fn start(behaviour: Behaviour) -> Hostile {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                thread::spawn(move || serve(conn, behaviour));
            }
        });
        Hostile { addr }
    }
}

fn serve(conn: TcpStream, behaviour: Behaviour) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut lines = BufReader::new(conn.take(64 * 1024)).lines();
    while let Some(Ok(line)) = lines.next() {
        let request = line.trim_end();
        let answered = match (behaviour, request.split(' ').next()) {
            (_, Some("quit")) => out.write_all(b"0 OK\r\n"),
            (Behaviour::EndlessListing, _) => {
                let chunk = b"file.txt\r\n".repeat(4096);
                out.write_all(b"0 OK\r\n").and_then(|()| loop {
                    out.write_all(&chunk)?;
                })
            }
            (Behaviour::EndlessBase64, Some("get_metadata")) => {
                out.write_all(b"0 OK\r\n1099511627776\r\n")
            }
            (Behaviour::EndlessBase64, Some("get_slice")) => {
                let chunk = b"QUFB".repeat(16 * 1024);
                out.write_all(b"0 OK\r\n").and_then(|()| loop {
                    out.write_all(&chunk)?;
                })
            }
            (Behaviour::EndlessBase64, _) => out.write_all(b"200 NO SUCH COMMAND\r\n"),
            (Behaviour::Drip { ms }, Some(command)) => {
                let head = b"0 OK\r\n".iter();
                let body: Box<dyn Iterator<Item = &u8>> = if command == "get_file_listing" {
                    Box::new(b"a\r\n".iter().cycle())
                } else {
                    Box::new(b"11111111111111111111\r\n".iter())
                };
                head.chain(body).try_for_each(|b| {
                    thread::sleep(Duration::from_millis(ms));
                    out.write_all(std::slice::from_ref(b))
                })
            }
            (Behaviour::Drip { .. }, None) => Ok(()),
        };
        if answered.is_err() {
            return;
        }
    }
}

/// How a run of the real binary ended.
pub struct Run {
    pub code: Option<i32>,
    /// The first 64 KiB of standard output, and its total length.
    pub stdout_head: Vec<u8>,
    pub stdout_len: u64,
    pub stderr: String,
    /// Peak resident memory of the `hftp` process (`ru_maxrss`), in KiB.
    pub max_rss_kib: i64,
}

/// Runs `hftp ARGS` to its end and measures its peak memory with `wait4`.
/// A watchdog kills it after `watchdog` (a broken client that never ends
/// must fail the test, not hang it); the test then sees `code: None`.
// The child is reaped with `wait4`, which std's `Child::wait` cannot do
// (it does not return the resource usage).
#[allow(clippy::zombie_processes)]
pub fn run_measured(args: &[&str], watchdog: Duration) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hftp"))
        .args(args)
        .env_remove("HFTP_PROXY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hftp");
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = thread::spawn(move || {
        let mut head = Vec::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
            let room = (64 * 1024usize).saturating_sub(head.len());
            head.extend_from_slice(&buf[..n.min(room)]);
        }
        (head, total)
    });
    let err_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let dog = thread::spawn(move || {
        if done_rx.recv_timeout(watchdog).is_err() {
            // SAFETY: kill(2) on the pid of our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, with valid pointers.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let _ = done_tx.send(());
    let _ = dog.join();
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let (stdout_head, stdout_len) = out_reader.join().expect("stdout reader");
    let stderr = err_reader.join().expect("stderr reader");
    Run {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stdout_head,
        stdout_len,
        stderr,
        max_rss_kib: usage.ru_maxrss,
    }
}
