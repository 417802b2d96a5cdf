//! Connection limits and timeouts, and a server under a crowd: every model
//! must keep answering a well-behaved client.
//!
//! Tier: quick.

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::support::Server;

fn served_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
    dir
}

/// Asks a size and quits; panics unless both are answered exactly.
fn well_behaved(addr: SocketAddr) {
    let mut s = support::connect(addr, Duration::from_secs(30));
    s.write_all(b"get_metadata a.txt\r\nquit\r\n").unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"0 OK\r\n5\r\n0 OK\r\n");
}

/// Whether the server closed `s` without a byte (EOF at once).
fn closed_without_answer(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    let _ = s.write_all(b"get_metadata a.txt\r\n");
    matches!(s.read(&mut buf), Ok(0) | Err(_))
}

/// The crowds run one at a time: together they would need more descriptors
/// than this process may open.
static CROWD: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn crowd(model: &str, idle: usize) {
    let _one_at_a_time = CROWD.lock().unwrap_or_else(|e| e.into_inner());
    support::raise_fd_limit();
    let dir = served_dir();
    let server = Server::builder(dir.path()).model(model).start();
    let addr = server.addr();
    // Many idle connections...
    let idle_conns: Vec<TcpStream> = (0..idle)
        .map(|_| support::connect(addr, Duration::from_secs(30)))
        .collect();
    // ...a flood of connects that close at once...
    for _ in 0..1000 {
        drop(TcpStream::connect(addr).expect("connect during flood"));
    }
    // ...and slowloris: connections that send half a request and stop.
    let mut slow: Vec<TcpStream> = (0..100)
        .map(|_| support::connect(addr, Duration::from_secs(30)))
        .collect();
    for s in &mut slow {
        s.write_all(b"get_meta").unwrap();
    }
    well_behaved(addr);
    // Every idle connection is still served.
    for mut s in idle_conns.into_iter().step_by(97) {
        s.write_all(b"quit\r\n").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        assert_eq!(line, "0 OK\r\n");
    }
}

#[test]
fn async_with_10000_idle_connections_a_connect_flood_and_slowloris_answers() {
    crowd("async", 10_000);
}

#[test]
fn poll_with_10000_idle_connections_a_connect_flood_and_slowloris_answers() {
    crowd("poll", 10_000);
}

#[test]
fn uring_with_10000_idle_connections_a_connect_flood_and_slowloris_answers() {
    crowd("uring", 10_000);
}

#[test]
fn pool_with_2000_idle_connections_a_connect_flood_and_slowloris_answers() {
    crowd("pool", 2000);
}

#[test]
fn threads_with_1000_idle_connections_a_connect_flood_and_slowloris_answers() {
    crowd("threads", 1000);
}

#[test]
fn fork_with_200_idle_connections_a_connect_flood_and_slowloris_answers() {
    crowd("fork", 200);
}

#[test]
fn max_per_ip_closes_connections_beyond_the_limit() {
    for model in support::MODELS {
        let dir = served_dir();
        let server = Server::builder(dir.path())
            .model(model)
            .arg("--max-per-ip")
            .arg("2")
            .start();
        let addr = server.addr();
        let mut first = support::connect(addr, Duration::from_secs(30));
        let _second = support::connect(addr, Duration::from_secs(30));
        // The first answers, proving both were admitted before the third.
        first.write_all(b"get_metadata a.txt\r\n").unwrap();
        let mut buf = [0u8; 9];
        first.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"0 OK\r\n5\r\n", "{model}");
        let mut third = support::connect(addr, Duration::from_secs(30));
        assert!(
            closed_without_answer(&mut third),
            "{model}: third connection was served"
        );
        drop(first);
        // Its place is freed once the server has seen the close: retry
        // (bounded) until a new connection is served.
        let served = (0..500).any(|_| {
            let mut s = support::connect(addr, Duration::from_secs(30));
            s.write_all(b"get_metadata a.txt\r\n").is_ok() && {
                let mut buf = [0u8; 9];
                s.read_exact(&mut buf).is_ok() && &buf == b"0 OK\r\n5\r\n"
            }
        });
        assert!(served, "{model}: the freed place was never reused");
    }
}

#[test]
fn max_connections_closes_connections_beyond_the_limit() {
    for model in support::MODELS {
        let dir = served_dir();
        let server = Server::builder(dir.path())
            .model(model)
            .arg("--max-connections")
            .arg("1")
            .start();
        let addr = server.addr();
        let mut first = support::connect(addr, Duration::from_secs(30));
        first.write_all(b"get_metadata a.txt\r\n").unwrap();
        let mut buf = [0u8; 9];
        first.read_exact(&mut buf).unwrap();
        let mut second = support::connect(addr, Duration::from_secs(30));
        assert!(
            closed_without_answer(&mut second),
            "{model}: second connection was served"
        );
    }
}

#[test]
fn idle_timeout_closes_quiet_connections() {
    for model in support::MODELS {
        let dir = served_dir();
        let server = Server::builder(dir.path())
            .model(model)
            .arg("--idle-timeout")
            .arg("1")
            .start();
        let mut s = support::connect(server.addr(), Duration::from_secs(30));
        // Nothing sent: the server closes; read returns EOF (within the
        // 30 s read timeout, which is not what is measured).
        let mut buf = [0u8; 1];
        assert_eq!(s.read(&mut buf).unwrap(), 0, "{model}");
    }
}

#[test]
fn idle_time_counts_from_the_end_of_a_long_answer() {
    let models = support::MODELS;
    let runs: Vec<_> = models
        .iter()
        .map(|&m| std::thread::spawn(move || slow_answer_then_request(m)))
        .collect();
    for (model, run) in models.iter().zip(runs) {
        run.join().unwrap_or_else(|_| panic!("{model} failed"));
    }
}

/// A 24 MiB answer read at about 6 MB/s takes about 4 s, twice the idle
/// timeout; the next request, sent as soon as the answer is read, must be
/// answered. (The server finishes writing before the client finishes
/// reading, by what the socket buffers hold, well under the 2 s timeout
/// with the client's receive buffer kept small.)
fn slow_answer_then_request(model: &str) {
    const SIZE: usize = 24 << 20;
    let dir = served_dir();
    std::fs::File::create(dir.path().join("big.bin"))
        .unwrap()
        .set_len(SIZE as u64)
        .unwrap();
    let server = Server::builder(dir.path())
        .model(model)
        .arg("--idle-timeout")
        .arg("2")
        .start();
    let mut s = support::connect(server.addr(), Duration::from_secs(30));
    let small: libc::c_int = 64 << 10;
    // SAFETY: setsockopt on a socket we own, with a valid int.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&small as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let head = format!("0 OK\r\nContent-Length: {SIZE}\r\n\r\n");
    s.write_all(format!("get_slice big.bin 0 {SIZE} raw\r\n").as_bytes())
        .unwrap();
    let mut left = SIZE + head.len();
    let mut buf = vec![0u8; 128 << 10];
    while left > 0 {
        let n = s.read(&mut buf[..left.min(128 << 10)]).unwrap();
        assert!(n > 0, "{model}: answer cut short");
        left -= n;
        // Pacing, not synchronisation: this is what makes the reader slow.
        std::thread::sleep(Duration::from_millis(20));
    }
    s.write_all(b"quit\r\n").unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(
        got, b"0 OK\r\n",
        "{model}: not answered after a long answer"
    );
}

#[test]
fn clients_queued_while_out_of_descriptors_are_served_later() {
    use std::os::unix::process::CommandExt;
    for model in ["async", "threads", "pool", "poll", "uring"] {
        let dir = served_dir();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hftp"));
        command
            .args([
                "serve",
                "-p",
                "0",
                "-a",
                "127.0.0.1",
                "-q",
                "--model",
                model,
                "-d",
            ])
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: 40,
                    rlim_max: 40,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr: SocketAddr = loop {
            let line = lines.next().expect("banner").unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        // Exhaust the server's descriptors, then queue one more client.
        let hogs: Vec<TcpStream> = (0..60)
            .map(|_| support::connect(addr, Duration::from_secs(30)))
            .collect();
        let mut queued = support::connect(addr, Duration::from_secs(30));
        queued.write_all(b"get_metadata a.txt\r\n").unwrap();
        drop(hogs);
        let mut buf = [0u8; 9];
        let answered = queued.read_exact(&mut buf).is_ok() && &buf == b"0 OK\r\n5\r\n";
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(answered, "{model}: the queued client was never served");
    }
}

#[test]
fn sigterm_closes_waiting_clients_even_mid_request() {
    for model in support::MODELS {
        let dir = served_dir();
        // A grace far longer than the test's patience: only connections
        // with an answer in flight may hold the shutdown.
        let mut server = Server::builder(dir.path())
            .model(model)
            .arg("--shutdown-grace")
            .arg("600")
            .start();
        let mut idle = support::connect(server.addr(), Duration::from_secs(30));
        let mut partial = support::connect(server.addr(), Duration::from_secs(30));
        partial.write_all(b"get_meta").unwrap();
        // Both are known to the server once it has answered a third.
        well_behaved(server.addr());
        server.signal(libc::SIGTERM);
        let status = server.wait_exit(Duration::from_secs(60));
        assert!(status.success(), "{model}: {status:?}");
        let mut buf = [0u8; 8];
        assert!(matches!(idle.read(&mut buf), Ok(0) | Err(_)), "{model}");
        assert!(matches!(partial.read(&mut buf), Ok(0) | Err(_)), "{model}");
    }
}
