//! Misbehaving HFTP servers on loopback, and a way to run the real `hftp`
//! binary against them while measuring its peak memory.
//!
//! A [`Hostile`] server reads request lines and answers each with a
//! [`Behaviour`]; answers that never end stop when the client goes away
//! (the write fails).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hftp_proto::{response, SliceMode, Status};

/// One file served properly, except that the first `failures` slices are
/// cut: the status line and half the body, then, once the client's kernel
/// has it all, a reset (TCP RST). With `vanish`, the file is gone once a
/// slice has been cut: `get_metadata` and `get_slice` answer `202`.
#[derive(Debug, Default)]
pub struct FlakyFile {
    pub name: String,
    pub data: Vec<u8>,
    pub failures: usize,
    pub vanish: bool,
    /// The offset of every `get_slice` received, in order.
    pub slice_offsets: Mutex<Vec<u64>>,
    resets: AtomicUsize,
}

impl FlakyFile {
    pub fn new(name: &str, data: Vec<u8>, failures: usize, vanish: bool) -> Arc<FlakyFile> {
        Arc::new(FlakyFile {
            name: name.to_owned(),
            data,
            failures,
            vanish,
            ..FlakyFile::default()
        })
    }

    /// The `get_slice` requests received so far.
    pub fn slices(&self) -> usize {
        self.slice_offsets.lock().expect("lock").len()
    }
}

/// What the server does with each request.
#[derive(Clone, Debug)]
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
    /// Serves a [`FlakyFile`].
    Flaky(Arc<FlakyFile>),
    /// Lists `big.bin` and says every file has this many bytes; refuses
    /// every slice (`199`).
    LiesAboutSize(u64),
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
                let behaviour = behaviour.clone();
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
        if let Behaviour::Flaky(file) = &behaviour {
            match serve_flaky(&mut out, file, request) {
                Ok(true) => continue,
                _ => return,
            }
        }
        let answered = match (behaviour.clone(), request.split(' ').next()) {
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
            (Behaviour::LiesAboutSize(size), Some("get_metadata")) => {
                out.write_all(format!("0 OK\r\n{size}\r\n").as_bytes())
            }
            (Behaviour::LiesAboutSize(_), Some("get_file_listing")) => {
                out.write_all(b"0 OK\r\nbig.bin\r\n\r\n")
            }
            (Behaviour::LiesAboutSize(_), _) => out.write_all(b"199 INTERNAL ERROR\r\n"),
            (Behaviour::Drip { .. }, None) | (Behaviour::Flaky(_), _) => Ok(()),
        };
        if answered.is_err() {
            return;
        }
    }
}

/// Answers one request for a [`FlakyFile`]; false when the connection
/// is to end (a reset, or `quit`).
fn serve_flaky(out: &mut TcpStream, file: &FlakyFile, request: &str) -> std::io::Result<bool> {
    let words: Vec<&str> = request.split(' ').collect();
    let gone = file.vanish && file.resets.load(Ordering::SeqCst) > 0;
    let mut reply = Vec::new();
    match words[..] {
        ["quit"] => {
            out.write_all(b"0 OK\r\n")?;
            return Ok(false);
        }
        ["get_metadata", name] if name == file.name && !gone => {
            response::write_metadata(&mut reply, file.data.len() as u64)
        }
        ["get_slice", name, offset, size, ref mode @ ..] if name == file.name && !gone => {
            let (Ok(offset), Ok(size)) = (offset.parse::<usize>(), size.parse::<usize>()) else {
                response::write_status(&mut reply, Status::InvalidArguments);
                out.write_all(&reply)?;
                return Ok(true);
            };
            let mode = if mode == ["raw"] {
                SliceMode::Raw
            } else {
                SliceMode::Base64
            };
            let cut = {
                let mut offsets = file.slice_offsets.lock().expect("lock");
                offsets.push(offset as u64);
                offsets.len() <= file.failures
            };
            let Some(bytes) = file.data.get(offset..offset.saturating_add(size)) else {
                response::write_status(&mut reply, Status::OffsetExceedsFileSize);
                out.write_all(&reply)?;
                return Ok(true);
            };
            response::write_slice_head(&mut reply, mode, size as u64);
            let sent = if cut { &bytes[..size / 6 * 3] } else { bytes };
            match mode {
                SliceMode::Raw => reply.extend_from_slice(sent),
                SliceMode::Base64 => response::encode_base64(sent, &mut reply),
            }
            if !cut {
                reply.extend_from_slice(response::slice_tail(mode));
                out.write_all(&reply)?;
                return Ok(true);
            }
            out.write_all(&reply)?;
            reset_once_delivered(out);
            file.resets.fetch_add(1, Ordering::SeqCst);
            return Ok(false);
        }
        ["get_metadata" | "get_slice", ..] => {
            response::write_status(&mut reply, Status::FileNotFound)
        }
        _ => response::write_status(&mut reply, Status::NoSuchCommand),
    }
    out.write_all(&reply)?;
    Ok(true)
}

/// Waits (bounded) until the peer's kernel has acknowledged everything
/// sent, so that what it reads before the reset is exactly that, then
/// makes the close a reset (`SO_LINGER` of 0).
fn reset_once_delivered(conn: &TcpStream) {
    let fd = conn.as_raw_fd();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut unacked: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int through the pointer.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut unacked) };
        if rc != 0 || unacked == 0 || Instant::now() > deadline {
            break;
        }
        // Polling, bounded by the deadline: not a stand-in for synchronisation.
        thread::sleep(Duration::from_millis(1));
    }
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads a `linger` of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
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

/// Forks and execs its arguments, waits with `wait4`, and writes the
/// child's `ru_maxrss` and raw wait status to the file named first.
///
/// Why not `wait4` on a child of the test process itself: a child's
/// `ru_maxrss` counts the memory of the process it was forked from (the
/// kernel keeps the peak of the address space that `exec` replaced), and
/// the test process, which runs every integration test at once, holds
/// hundreds of MiB. Forked from this small interpreter, the client's peak
/// is its own plus a few MiB.
const MEASURE: &str = r#"
import os, sys
report, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as f:
    f.write(f"{usage.ru_maxrss} {status}\n")
"#;

/// Runs `hftp ARGS` to its end and measures its peak memory with `wait4`
/// (from a small python3 parent: see [`MEASURE`]). A watchdog kills it
/// after `watchdog` (a broken client that never ends must fail the test,
/// not hang it); the test then sees `code: None`.
pub fn run_measured(args: &[&str], watchdog: Duration) -> Run {
    use std::os::unix::process::CommandExt;
    let scratch = tempfile::tempdir().expect("temp dir");
    let report = scratch.path().join("usage");
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(MEASURE)
        .arg(&report)
        .arg(env!("CARGO_BIN_EXE_hftp"))
        .args(args)
        .env_remove("HFTP_PROXY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // The watchdog kills the group: the measurer and the client.
        .process_group(0)
        .spawn()
        .expect("run python3 (the quick tier needs it)");
    let pgid = child.id() as libc::pid_t;
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
            // SAFETY: kill(2) on the process group our own child leads.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    });
    let measurer = child.wait().expect("wait for python3");
    let _ = done_tx.send(());
    let _ = dog.join();
    let (stdout_head, stdout_len) = out_reader.join().expect("stdout reader");
    let stderr = err_reader.join().expect("stderr reader");
    let (max_rss_kib, status) = match std::fs::read_to_string(&report) {
        Ok(text) => {
            let mut fields = text.split_whitespace().map(|f| f.parse::<i64>());
            match (fields.next(), fields.next()) {
                (Some(Ok(rss)), Some(Ok(status))) => (rss, Some(status as libc::c_int)),
                _ => panic!("unreadable report from the measurer: {text:?}"),
            }
        }
        // Killed by the watchdog before the client ended.
        Err(_) => {
            assert!(
                !measurer.success(),
                "the measurer wrote no report; stderr: {stderr}"
            );
            (0, None)
        }
    };
    Run {
        code: status.and_then(|s| libc::WIFEXITED(s).then(|| libc::WEXITSTATUS(s))),
        stdout_head,
        stdout_len,
        stderr,
        max_rss_kib,
    }
}
