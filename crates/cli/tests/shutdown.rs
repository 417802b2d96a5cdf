//! SIGTERM under load, for every model: the server must exit, whatever its
//! clients are doing when the signal comes, and a second signal must end it
//! at once.
//!
//! Tier: quick.

use crate::support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::Server;

/// Rounds per model: enough to catch a race that strikes one time in 20.
const ROUNDS: usize = 20;

/// Bytes of `big.bin`, read slowly by some clients while the signal comes.
const SLOW_FILE: usize = 1 << 20;

/// Far longer than any test waits: only a bug may hold the shutdown.
const GRACE: &str = "600";

/// The longest the test waits for anything; a hang is the failure.
const PATIENCE: Duration = Duration::from_secs(60);

fn served_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
    let big: Vec<u8> = (0..SLOW_FILE).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("big.bin"), big).unwrap();
    dir
}

fn connect(addr: SocketAddr) -> Option<TcpStream> {
    let s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(PATIENCE)).ok()?;
    s.set_write_timeout(Some(PATIENCE)).ok()?;
    Some(s)
}

/// Reads until EOF or a reset; panics if the read timed out instead (the
/// server left the connection open).
fn read_until_closed(s: &mut TcpStream, what: &str, model: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("--model {model}: {what}: the server never closed the connection")
            }
            Err(_) => return got,
        }
    }
}

/// Opened by the test once the server has exited.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }
}

/// For a connection on which the client sent nothing (or a part of a
/// request) when the server stopped: once the server has exited, sends a
/// byte that completes no request, then reads until closed.
///
/// Why the byte: a connection whose handshake the kernel was still
/// finishing when the listener closed can vanish on the server side without
/// a FIN or RST; a client that sends nothing would never learn. Data sent
/// there is answered by a reset. A connection that some process still
/// holds gets no reset and the read times out: still a failure.
fn probe_until_closed(s: &mut TcpStream, exited: &Gate, what: &str, model: &str) {
    exited.wait();
    let _ = s.write_all(b"x");
    read_until_closed(s, what, model);
}

/// A small deterministic generator (xorshift), seeded per round, so that a
/// failing round can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The expected classic answer to `get_slice big.bin 0 SLOW_FILE`.
fn slow_answer() -> Vec<u8> {
    let big: Vec<u8> = (0..SLOW_FILE).map(|i| (i % 251) as u8).collect();
    let mut answer = b"0 OK\r\n".to_vec();
    answer.extend_from_slice(base64_simd::STANDARD.encode_to_string(&big).as_bytes());
    answer.extend_from_slice(b"\r\n");
    answer
}

/// One round: a crowd doing everything at once, a SIGTERM at a random
/// moment; the server must exit 0 and close every connection, and an
/// answer it started must arrive whole.
fn round(model: &str, seed: u64, answer: &Arc<Vec<u8>>) {
    let dir = served_dir();
    let server = Server::builder(dir.path())
        .model(model)
        .arg("--shutdown-grace")
        .arg(GRACE)
        .arg("-v")
        .start();
    let addr = server.addr();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let stop = Arc::new(AtomicBool::new(false));
    let exited = Arc::new(Gate::default());
    let mut clients = Vec::new();

    // Short connections opening and closing until the server goes away.
    for _ in 0..4 {
        let (stop, model) = (Arc::clone(&stop), model.to_string());
        clients.push(thread::spawn(move || {
            for _ in 0..200 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Some(mut s) = connect(addr) else { return };
                if s.write_all(b"get_metadata a.txt\r\nquit\r\n").is_err() {
                    return;
                }
                let got = read_until_closed(&mut s, "short connection", &model);
                // Answered in full, or closed by the shutdown.
                assert!(
                    b"0 OK\r\n5\r\n0 OK\r\n".starts_with(&got),
                    "--model {model}: short connection got {got:?}"
                );
            }
        }));
    }
    // Connections opened right up to the signal and then left idle or
    // half-way through a request: the server may be setting them up (a
    // fork child not yet ready, a task not yet started) when it comes.
    for opener in 0..2 {
        let (stop, exited) = (Arc::clone(&stop), Arc::clone(&exited));
        let model = model.to_string();
        clients.push(thread::spawn(move || {
            let mut held = Vec::new();
            for i in 0..100 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Some(mut s) = connect(addr) else { break };
                if (opener + i) % 2 == 1 {
                    let _ = s.write_all(b"get_metadata a.t");
                }
                held.push(s);
            }
            for mut s in held {
                let what = "connection opened during the signal";
                probe_until_closed(&mut s, &exited, what, &model);
            }
        }));
    }
    // Idle, and half-way through a request.
    for partial in [
        &b""[..],
        b"get_meta",
        b"get_slice big.bin 0",
        b"get_file_listing\r",
    ] {
        let (exited, model) = (Arc::clone(&exited), model.to_string());
        let Some(mut s) = connect(addr) else { continue };
        clients.push(thread::spawn(move || {
            let _ = s.write_all(partial);
            probe_until_closed(&mut s, &exited, "idle or partial connection", &model);
        }));
    }
    // Slow readers of an answer in flight.
    for _ in 0..2 {
        let (model, answer) = (model.to_string(), Arc::clone(answer));
        let Some(mut s) = connect(addr) else { continue };
        clients.push(thread::spawn(move || {
            if s.write_all(format!("get_slice big.bin 0 {SLOW_FILE}\r\n").as_bytes())
                .is_err()
            {
                return;
            }
            let mut got = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        panic!("--model {model}: slow reader: the server stopped sending")
                    }
                    Err(_) => break,
                }
                if got.len() >= answer.len() {
                    break;
                }
                // The client's pace, not synchronisation: it reads slowly.
                thread::sleep(Duration::from_micros(200));
            }
            // An answer that was started is finished.
            if !got.is_empty() {
                assert!(
                    got == *answer,
                    "--model {model}: slow reader got {} of {} bytes",
                    got.len(),
                    answer.len()
                );
            }
        }));
    }

    // The moment of the signal: the scenario, not a synchronisation.
    thread::sleep(Duration::from_millis(rng.below(40)));
    server.signal(libc::SIGTERM);
    let mut server = server;
    let status = server.wait_exit(PATIENCE);
    assert!(
        status.success(),
        "--model {model} (seed {seed}): {status:?}; stderr:\n{}",
        server.stderr()
    );
    stop.store(true, Ordering::Relaxed);
    exited.open();
    let deadline = Instant::now() + PATIENCE;
    for c in clients {
        assert!(
            Instant::now() < deadline,
            "--model {model}: clients did not end"
        );
        if let Err(panic) = c.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn sigterm_at_a_random_moment_under_load_ends_every_model() {
    let answer = Arc::new(slow_answer());
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    for model in support::MODELS {
        for r in 0..ROUNDS {
            round(model, base.wrapping_add(r as u64), &answer);
        }
    }
}

/// A second SIGTERM or SIGINT, while an answer keeps the first waiting,
/// ends the server at once with 128 + the signal number; no connection
/// process of `fork` outlives it.
#[test]
fn second_signal_forces_an_immediate_exit() {
    for (i, model) in support::MODELS.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        // Far more than the socket buffers hold: the answer stays in flight.
        let f = std::fs::File::create(dir.path().join("huge.bin")).unwrap();
        f.set_len(64 << 20).unwrap();
        let mut server = Server::builder(dir.path())
            .model(model)
            .arg("--shutdown-grace")
            .arg(GRACE)
            .start();
        let mut client = connect(server.addr()).expect("connect");
        client
            .write_all(format!("get_slice huge.bin 0 {}\r\n", 64 << 20).as_bytes())
            .unwrap();
        let mut first = [0u8; 6];
        client.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"0 OK\r\n", "--model {model}");
        // The client now reads nothing more: the answer is stuck in flight.
        server.signal(libc::SIGTERM);
        server.wait_stderr("stopping", PATIENCE);
        assert!(
            server.is_running(),
            "--model {model}: exited with an answer in flight"
        );
        let second = if i % 2 == 0 {
            libc::SIGINT
        } else {
            libc::SIGTERM
        };
        server.signal(second);
        let status = server.wait_exit(PATIENCE);
        assert_eq!(
            status.code(),
            Some(128 + second),
            "--model {model}: {status:?}"
        );
        // Whoever was sending (a thread, a task, a child process) is gone.
        read_until_closed(&mut client, "client of a stopped server", model);
    }
}

/// The same event ends a connection with the same words in every model:
/// the front end and the stop are the connection's, not the driver's. A
/// client quiet past `--idle-timeout` is `idle timeout`; at SIGTERM a
/// client waiting for its next request, and one in the middle of a request
/// line, are both `server shutdown` (never `client closed`: the server, not
/// the client, ended them).
#[test]
fn every_model_names_the_same_end_for_the_same_event() {
    let runs: Vec<_> = support::MODELS
        .into_iter()
        .map(|model| thread::spawn(move || same_ends(model)))
        .collect();
    for (model, run) in support::MODELS.iter().zip(runs) {
        if let Err(panic) = run.join() {
            eprintln!("--model {model} failed");
            std::panic::resume_unwind(panic);
        }
    }
}

fn same_ends(model: &str) {
    let dir = served_dir();
    // An idle timeout.
    let quiet = Server::builder(dir.path())
        .model(model)
        .arg("--idle-timeout")
        .arg("1")
        .start();
    let mut idle = connect(quiet.addr()).expect("connect");
    help(&mut idle, model);
    read_until_closed(&mut idle, "an idle client", model);
    quiet.wait_stderr("end=idle timeout", PATIENCE);

    // A shutdown, with one client between requests and one mid-request.
    let mut server = Server::builder(dir.path())
        .model(model)
        .arg("--shutdown-grace")
        .arg(GRACE)
        .start();
    let mut between = connect(server.addr()).expect("connect");
    help(&mut between, model);
    let mut midway = connect(server.addr()).expect("connect");
    help(&mut midway, model);
    // Whether or not these bytes reach the server before the signal, the
    // connection is not answering anything: it ends at once either way.
    midway.write_all(b"get_metad").unwrap();
    server.signal(libc::SIGTERM);
    read_until_closed(&mut between, "a client between requests", model);
    read_until_closed(&mut midway, "a client mid-request", model);
    let status = server.wait_exit(PATIENCE);
    assert!(status.success(), "--model {model}: {status:?}");
    let log = server.stderr();
    let ends: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("connection closed"))
        .filter_map(|l| l.split("end=").nth(1))
        .collect();
    assert_eq!(
        ends,
        ["server shutdown", "server shutdown"],
        "--model {model}: how the two connections ended; stderr:\n{log}"
    );
}

/// Asks for `help` and reads its whole answer; the connection stays open.
fn help(s: &mut TcpStream, model: &str) {
    s.write_all(b"help\r\n").unwrap();
    let mut answer = vec![0u8; support::HELP_ANSWER.len()];
    s.read_exact(&mut answer)
        .unwrap_or_else(|e| panic!("--model {model}: help: {e}"));
    assert_eq!(answer, support::HELP_ANSWER.as_bytes(), "--model {model}");
}
