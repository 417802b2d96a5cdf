//! Concurrency behaviour of every server model (issue 3): many clients at
//! once, clients that never send or never read, clients that vanish in the
//! middle of a slice, and SIGTERM during transfers.
//!
//! Tier: quick.

use crate::support;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::Server;

const MIB: usize = 1 << 20;
/// Every socket operation of a test client gives up after this long.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

mod many_clients_each_fetch_a_different_slice {
    per_model!(super::many_clients);
}
mod idle_and_non_reading_clients_do_not_delay_others {
    per_model!(super::stalled_clients_do_not_block);
}
mod disconnect_mid_slice_leaves_server_healthy {
    per_model!(super::disconnect_mid_slice);
}
mod sigterm_lets_transfers_finish_and_exits_zero {
    per_model!(super::sigterm_during_transfers);
}
mod a_fast_huge_download_does_not_starve_others {
    per_model!(super::fast_download_does_not_starve);
}

/// Deterministic content: byte i is a function of i, not periodic in 2^k.
fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 131 + i / 7919) % 251) as u8)
        .collect()
}

fn start(dir: &Path, model: &str, extra: &[&str]) -> Server {
    let mut b = Server::builder(dir).model(model);
    for a in extra {
        b = b.arg(*a);
    }
    b.start()
}

fn read_line(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    r.read_line(&mut line).expect("read line");
    line
}

/// `get_slice ... raw`, returns the body.
fn raw_slice(r: &mut BufReader<TcpStream>, name: &str, offset: usize, size: usize) -> Vec<u8> {
    write!(r.get_mut(), "get_slice {name} {offset} {size} raw\r\n").unwrap();
    assert_eq!(read_line(r), "0 OK\r\n");
    assert_eq!(read_line(r), format!("Content-Length: {size}\r\n"));
    assert_eq!(read_line(r), "\r\n");
    let mut body = vec![0; size];
    r.read_exact(&mut body).expect("raw body");
    body
}

/// `get_slice ...` in base64, returns the decoded body.
fn base64_slice(r: &mut BufReader<TcpStream>, name: &str, offset: usize, size: usize) -> Vec<u8> {
    write!(r.get_mut(), "get_slice {name} {offset} {size}\r\n").unwrap();
    assert_eq!(read_line(r), "0 OK\r\n");
    let line = read_line(r);
    let encoded = line.strip_suffix("\r\n").expect("CRLF after base64");
    base64_simd::STANDARD
        .decode_to_vec(encoded)
        .expect("valid base64")
}

fn expect_line(r: &mut BufReader<TcpStream>, request: &str, want: &str) {
    write!(r.get_mut(), "{request}\r\n").unwrap();
    let mut got = String::new();
    while !got.ends_with(want) && got.len() < want.len() {
        got.push_str(&read_line(r));
    }
    assert_eq!(got, want, "answer to {request}");
}

/// A client that lists, asks a size and quits; the proof that the server
/// still serves others.
fn well_behaved_client(addr: SocketAddr, listing: &str, name: &str, size: usize) {
    let mut r = BufReader::new(support::connect(addr, IO_TIMEOUT));
    expect_line(&mut r, "get_file_listing", listing);
    expect_line(
        &mut r,
        &format!("get_metadata {name}"),
        &format!("0 OK\r\n{size}\r\n"),
    );
    expect_line(&mut r, "quit", "0 OK\r\n");
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).expect("EOF after quit");
    assert!(rest.is_empty());
}

fn many_clients(model: &str) {
    const CLIENTS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let data = Arc::new(content(8 * MIB));
    fs::write(dir.path().join("data.bin"), &*data).unwrap();
    let server = start(dir.path(), model, &[]);
    let addr = server.addr();
    // Everyone connects first, then everyone asks at once.
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (barrier, data) = (Arc::clone(&barrier), Arc::clone(&data));
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut r = BufReader::new(support::connect(addr, IO_TIMEOUT));
                    barrier.wait();
                    let offset = i * 35_317;
                    let body = if i % 2 == 0 {
                        raw_slice(&mut r, "data.bin", offset, MIB)
                    } else {
                        base64_slice(&mut r, "data.bin", offset, MIB)
                    };
                    assert!(
                        body == data[offset..offset + MIB],
                        "client {i}: wrong bytes"
                    );
                })
                .unwrap()
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        c.join().unwrap_or_else(|_| panic!("client {i} failed"));
    }
}

fn stalled_clients_do_not_block(model: &str) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("small.txt"), b"hello").unwrap();
    fs::File::create(dir.path().join("big.bin"))
        .unwrap()
        .set_len(100 * MIB as u64)
        .unwrap();
    let server = start(dir.path(), model, &["--workers", "4"]);
    let addr = server.addr();

    let _idle = support::connect(addr, IO_TIMEOUT);
    let mut stalled = support::connect(addr, IO_TIMEOUT);
    stalled
        .write_all(b"get_slice big.bin 0 104857600\r\n")
        .unwrap();
    // Wait until the server has started answering the stalled client: the
    // first byte of `0 OK` arrives; then it never reads again.
    let mut first = [0u8; 1];
    stalled.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"0");

    well_behaved_client(addr, "0 OK\r\nbig.bin\r\nsmall.txt\r\n\r\n", "small.txt", 5);
}

/// Open descriptors of a process.
fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Processes whose parent is `pid`, with their state letter.
fn children(pid: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // Fields after the ")" that ends the command name: state, ppid, ...
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let mut fields = rest.split(' ');
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == pid {
            out.push((child, state));
        }
    }
    out
}

/// Polls `cond` every 10 ms for at most 20 s.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn disconnect_mid_slice(model: &str) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("small.txt"), b"hello").unwrap();
    fs::File::create(dir.path().join("big.bin"))
        .unwrap()
        .set_len(100 * MIB as u64)
        .unwrap();
    let server = start(dir.path(), model, &[]);
    let addr = server.addr();
    // Every driver sets up all its descriptors (listener, epoll, signal
    // pipe) before it announces itself, so this is the idle level. (Taking
    // it after a first client races with the server closing that client.)
    let baseline = fd_count(server.pid());
    well_behaved_client(addr, "0 OK\r\nbig.bin\r\nsmall.txt\r\n\r\n", "small.txt", 5);

    for mode in ["", " raw"] {
        let mut c = support::connect(addr, IO_TIMEOUT);
        write!(c, "get_slice big.bin 0 104857600{mode}\r\n").unwrap();
        let mut got = vec![0u8; MIB];
        c.read_exact(&mut got).unwrap();
        drop(c);
    }
    well_behaved_client(addr, "0 OK\r\nbig.bin\r\nsmall.txt\r\n\r\n", "small.txt", 5);
    eventually("descriptors return to their starting level", || {
        fd_count(server.pid()) == baseline
    });
    if model == "fork" {
        eventually("no child (and so no zombie) remains", || {
            children(server.pid()).is_empty()
        });
    }
}

fn sigterm_during_transfers(model: &str) {
    const CLIENTS: usize = 3;
    const SIZE: usize = 32 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let data = Arc::new(content(SIZE));
    fs::write(dir.path().join("data.bin"), &*data).unwrap();
    let mut server = start(dir.path(), model, &["--shutdown-grace", "30"]);
    let addr = server.addr();
    let started = Arc::new(Barrier::new(CLIENTS + 1));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (started, data) = (Arc::clone(&started), Arc::clone(&data));
            thread::spawn(move || {
                let mut r = BufReader::new(support::connect(addr, IO_TIMEOUT));
                write!(r.get_mut(), "get_slice data.bin 0 {SIZE} raw\r\n").unwrap();
                assert_eq!(read_line(&mut r), "0 OK\r\n");
                started.wait();
                assert_eq!(read_line(&mut r), format!("Content-Length: {SIZE}\r\n"));
                assert_eq!(read_line(&mut r), "\r\n");
                let mut body = Vec::with_capacity(SIZE);
                r.read_to_end(&mut body).unwrap();
                assert!(
                    body.len() == SIZE && body == *data,
                    "client {i}: transfer cut short ({} bytes)",
                    body.len()
                );
            })
        })
        .collect();
    // Every transfer has begun (its status line arrived): stop the server.
    started.wait();
    server.signal(libc::SIGTERM);
    for c in clients {
        c.join().expect("client saw its whole transfer");
    }
    let status = server.wait_exit(Duration::from_secs(60));
    assert!(
        status.success(),
        "server exit status {status:?}; stderr:\n{}",
        server.stderr()
    );
}

fn fast_download_does_not_starve(model: &str) {
    const HUGE: u64 = 64 << 30;
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("small.txt"), b"hello").unwrap();
    // Sparse: 64 GiB of zeros that take no disk space.
    fs::File::create(dir.path().join("huge.bin"))
        .unwrap()
        .set_len(HUGE)
        .unwrap();
    let server = start(dir.path(), model, &[]);
    let addr = server.addr();
    let finished_other = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Arc::new(Barrier::new(2));
    let downloader = {
        let (finished_other, started) = (Arc::clone(&finished_other), Arc::clone(&started));
        thread::spawn(move || {
            let mut s = support::connect(addr, IO_TIMEOUT);
            write!(s, "get_slice huge.bin 0 {HUGE} raw\r\n").unwrap();
            let mut buf = vec![0u8; MIB];
            let mut got = s.read(&mut buf).unwrap() as u64;
            started.wait();
            // Read as fast as possible until the other client is done.
            while !finished_other.load(std::sync::atomic::Ordering::SeqCst) {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the download ended early");
                got += n as u64;
            }
            got
        })
    };
    started.wait();
    well_behaved_client(
        addr,
        "0 OK\r\nhuge.bin\r\nsmall.txt\r\n\r\n",
        "small.txt",
        5,
    );
    finished_other.store(true, std::sync::atomic::Ordering::SeqCst);
    let got = downloader.join().unwrap();
    // The other client was answered while the download was in progress.
    assert!(got < HUGE, "the download finished first ({got} bytes)");
}
