//! End-to-end tests of the client subcommands (`ls`, `stat`, `cat`, `get`,
//! `shell`), run as the real `hftp` binary against the real server on
//! loopback, and against small scripted peers written here: a classic
//! (2008-revision) server, misbehaving servers, and a SOCKS5 proxy.
//!
//! No sleeps stand in for synchronisation: where a test waits for the
//! client to get somewhere, it polls what the client wrote, in a bounded loop.
//!
//! Tier: quick.

use crate::support;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::background::hftp;
use crate::support::noise;
use hftp_proto::{response, Event, Request, Scanner, SliceMode, Status};

const HFTP: &str = env!("CARGO_BIN_EXE_hftp");
const HOLA: &[u8] = b"Que calor que hace hoy, pinocho!";
const MIB: usize = 1024 * 1024;

/// The real server, `hftp serve`, on a free loopback port (the shared
/// harness), with its address as the client's command line takes it.
struct Server {
    _server: support::Server,
    addr: String,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let server = support::Server::builder(dir).start();
        Server {
            addr: server.target(),
            _server: server,
        }
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn assert_code(out: &Output, want: i32) {
    assert_eq!(
        code(out),
        want,
        "stdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
}

/// A served directory with `hola.txt`, an empty file and some noise.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("hola.txt"), HOLA).expect("write");
    fs::write(dir.path().join("empty"), b"").expect("write");
    fs::write(dir.path().join("noise.bin"), noise(100_000, 7)).expect("write");
    dir
}

// ---------------------------------------------------------------------------
// A scripted peer: a small HFTP server written here, classic or 2026, that
// can also stall, cut replies short or send garbage.

#[derive(Clone, Default)]
struct PeerConfig {
    /// Answer `help` and `raw` slices (2026); else `200` and `201` (classic).
    modern: bool,
    /// Slices starting at or after this offset are never answered: the peer
    /// waits for the client to go away.
    stall_from: Option<u64>,
    /// Once set, `stall_from` no longer applies.
    stall_released: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Send these bytes instead of any reply, then close.
    garbage: Option<Vec<u8>>,
    /// Cut every slice body in half, then close.
    cut: bool,
    /// Never answer anything.
    mute: bool,
}

#[derive(Default)]
struct PeerStats {
    /// Connections that asked for at least one slice (counted when the
    /// first arrives, before it is answered: no race with the client's exit,
    /// as an accept can have).
    slicing_connections: AtomicUsize,
    raw_requests: AtomicUsize,
    /// Raw requests on a connection whose raw request was refused already.
    raw_after_refusal: AtomicUsize,
    base64_slices: AtomicUsize,
    slice_offsets: Mutex<Vec<u64>>,
}

struct Peer {
    addr: String,
    stats: Arc<PeerStats>,
}

impl Peer {
    fn start(dir: &Path, config: PeerConfig) -> Peer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let stats = Arc::new(PeerStats::default());
        let (dir, st) = (dir.to_owned(), stats.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (dir, config, st) = (dir.clone(), config.clone(), st.clone());
                thread::spawn(move || serve_peer(conn, &dir, &config, &st));
            }
        });
        Peer { addr, stats }
    }
}

/// Reads until the client goes away.
fn drain(mut conn: TcpStream) {
    let mut buf = [0u8; 4096];
    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
}

fn serve_peer(mut conn: TcpStream, dir: &Path, config: &PeerConfig, stats: &PeerStats) {
    let mut scanner = Scanner::default();
    let mut buf = vec![0u8; 64 * 1024];
    let (mut sliced, mut refused_raw) = (false, false);
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut input = &buf[..n];
        while !input.is_empty() {
            let (used, event) = scanner.feed(input);
            input = &input[used..];
            let Some(event) = event else { continue };
            if config.mute {
                return drain(conn);
            }
            if let Some(garbage) = &config.garbage {
                let _ = conn.write_all(garbage);
                let _ = conn.shutdown(Shutdown::Write);
                return drain(conn);
            }
            let mut out = Vec::new();
            let mut close = false;
            match event {
                Event::Fatal(s) => {
                    response::write_status(&mut out, s);
                    close = true;
                }
                Event::Reject(s) => response::write_status(&mut out, s),
                Event::Request(req) => match req {
                    Request::GetFileListing => {
                        let mut names: Vec<String> = fs::read_dir(dir)
                            .expect("read_dir")
                            .filter_map(|e| e.ok()?.file_name().into_string().ok())
                            .filter(|n| !n.starts_with('.'))
                            .collect();
                        // A classic server lists in directory order; reverse
                        // the sort to show the client does not rely on it.
                        names.sort();
                        if !config.modern {
                            names.reverse();
                        }
                        response::write_listing(&mut out, names.iter().map(String::as_str));
                    }
                    Request::Help if !config.modern => {
                        response::write_status(&mut out, Status::NoSuchCommand)
                    }
                    Request::Help => response::write_help(&mut out),
                    Request::Quit => {
                        response::write_status(&mut out, Status::Ok);
                        close = true;
                    }
                    Request::GetMetadata { name } => match fs::read(dir.join(name.as_str())) {
                        Ok(data) => response::write_metadata(&mut out, data.len() as u64),
                        Err(_) => response::write_status(&mut out, Status::FileNotFound),
                    },
                    Request::GetSlice { name, range, mode } => {
                        if !std::mem::replace(&mut sliced, true) {
                            stats.slicing_connections.fetch_add(1, Ordering::SeqCst);
                        }
                        if mode == SliceMode::Raw {
                            stats.raw_requests.fetch_add(1, Ordering::SeqCst);
                            if refused_raw {
                                stats.raw_after_refusal.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        if mode == SliceMode::Raw && !config.modern {
                            refused_raw = true;
                            response::write_status(&mut out, Status::InvalidArguments);
                        } else {
                            match fs::read(dir.join(name.as_str())) {
                                Err(_) => response::write_status(&mut out, Status::FileNotFound),
                                Ok(data) if !range.fits(data.len() as u64) => {
                                    response::write_status(&mut out, Status::OffsetExceedsFileSize)
                                }
                                Ok(data) => {
                                    let released = config
                                        .stall_released
                                        .as_ref()
                                        .is_some_and(|r| r.load(Ordering::SeqCst));
                                    if !released
                                        && config.stall_from.is_some_and(|s| range.offset >= s)
                                    {
                                        return drain(conn);
                                    }
                                    stats.slice_offsets.lock().expect("lock").push(range.offset);
                                    if mode == SliceMode::Base64 {
                                        stats.base64_slices.fetch_add(1, Ordering::SeqCst);
                                    }
                                    let bytes =
                                        &data[range.offset as usize..][..range.size as usize];
                                    // Cut at a multiple of 3, so that base64 stays unpadded.
                                    let bytes = if config.cut {
                                        &bytes[..bytes.len() / 6 * 3]
                                    } else {
                                        bytes
                                    };
                                    response::write_slice_head(&mut out, mode, range.size);
                                    match mode {
                                        SliceMode::Raw => out.extend_from_slice(bytes),
                                        SliceMode::Base64 => {
                                            response::encode_base64(bytes, &mut out)
                                        }
                                    }
                                    if config.cut {
                                        close = true;
                                    } else {
                                        out.extend_from_slice(response::slice_tail(mode));
                                    }
                                }
                            }
                        }
                    }
                },
            }
            if conn.write_all(&out).is_err() {
                return;
            }
            if close {
                let _ = conn.shutdown(Shutdown::Write);
                return drain(conn);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// A SOCKS5 proxy (RFC 1928, no authentication, CONNECT), loopback only.

#[derive(Default)]
struct ProxyStats {
    /// The destinations asked for, as `ATYP HOST:PORT`.
    requests: Mutex<Vec<String>>,
}

fn start_proxy() -> (String, Arc<ProxyStats>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let stats = Arc::new(ProxyStats::default());
    let st = stats.clone();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let st = st.clone();
            thread::spawn(move || {
                let _ = proxy_conn(conn, &st);
            });
        }
    });
    (addr, stats)
}

fn proxy_conn(mut c: TcpStream, stats: &ProxyStats) -> std::io::Result<()> {
    let mut head = [0u8; 2];
    c.read_exact(&mut head)?;
    let mut methods = vec![0u8; usize::from(head[1])];
    c.read_exact(&mut methods)?;
    assert_eq!(head[0], 5);
    assert!(methods.contains(&0), "client offers no-auth");
    c.write_all(&[5, 0])?;
    let mut req = [0u8; 4];
    c.read_exact(&mut req)?;
    assert_eq!(&req[..3], &[5, 1, 0]);
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            c.read_exact(&mut a)?;
            std::net::Ipv4Addr::from(a).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            c.read_exact(&mut len)?;
            let mut name = vec![0u8; usize::from(len[0])];
            c.read_exact(&mut name)?;
            String::from_utf8(name).expect("ASCII host name")
        }
        4 => {
            let mut a = [0u8; 16];
            c.read_exact(&mut a)?;
            std::net::Ipv6Addr::from(a).to_string()
        }
        other => panic!("address type {other}"),
    };
    let mut port = [0u8; 2];
    c.read_exact(&mut port)?;
    let port = u16::from_be_bytes(port);
    stats
        .requests
        .lock()
        .expect("lock")
        .push(format!("{} {host}:{port}", req[3]));
    // Loopback only: anything else is refused.
    let upstream = (host.as_str(), port)
        .to_socket_addrs()?
        .filter(|a: &SocketAddr| a.ip().is_loopback())
        .find_map(|a| TcpStream::connect(a).ok());
    let Some(up) = upstream else {
        c.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0])?;
        return Ok(());
    };
    c.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])?;
    let (mut c2, mut up2) = (c.try_clone()?, up.try_clone()?);
    let (mut c, mut up) = (c, up);
    let t = thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut up2);
        let _ = up2.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut up, &mut c);
    let _ = c.shutdown(Shutdown::Write);
    let _ = t.join();
    Ok(())
}

// ---------------------------------------------------------------------------
// Against the real server.

#[test]
fn ls_stat_cat() {
    let dir = fixture();
    let server = Server::start(dir.path());
    let work = tempfile::tempdir().expect("tempdir");
    let a = server.addr.as_str();

    let out = hftp(&["ls", a], work.path());
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "empty\nhola.txt\nnoise.bin\n");

    let out = hftp(&["ls", "-l", a], work.path());
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out),
        "     0  empty\n    32  hola.txt\n100000  noise.bin\n"
    );

    let out = hftp(&["stat", a, "hola.txt", "noise.bin"], work.path());
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "    32  hola.txt\n100000  noise.bin\n");

    let out = hftp(&["cat", a, "hola.txt"], work.path());
    assert_code(&out, 0);
    assert_eq!(out.stdout, HOLA);
    let out = hftp(&["cat", a, "hola.txt", "--range", "4:19"], work.path());
    assert_code(&out, 0);
    assert_eq!(out.stdout, b"calor que hace hoy,");
    let out = hftp(&["cat", a, "hola.txt", "--range", "30:"], work.path());
    assert_eq!((code(&out), &out.stdout[..]), (0, &b"o!"[..]));
    let out = hftp(&["cat", a, "empty"], work.path());
    assert_eq!((code(&out), out.stdout.len()), (0, 0));
    for extra in [&[][..], &["--no-raw"][..]] {
        let mut args = vec!["cat", a, "noise.bin"];
        args.extend_from_slice(extra);
        let out = hftp(&args, work.path());
        assert_code(&out, 0);
        assert!(out.stdout == noise(100_000, 7), "cat {extra:?}");
    }
}

#[test]
fn get_64_mib_in_parallel_and_never_overwrite() {
    let dir = fixture();
    let data = noise(64 * MIB, 42);
    fs::write(dir.path().join("big.bin"), &data).expect("write");
    let server = Server::start(dir.path());
    let work = tempfile::tempdir().expect("tempdir");
    let a = server.addr.as_str();

    let out = hftp(&["get", a, "big.bin", "-j", "4"], work.path());
    assert_code(&out, 0);
    assert!(fs::read(work.path().join("big.bin")).expect("downloaded") == data);
    let leftovers: Vec<_> = fs::read_dir(work.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers, ["big.bin"], "no part or state file left");

    // Never overwrite without --force.
    fs::write(work.path().join("hola.txt"), b"mine").expect("write");
    let out = hftp(&["get", a, "hola.txt"], work.path());
    assert_code(&out, 7);
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(
        fs::read(work.path().join("hola.txt")).expect("read"),
        b"mine"
    );
    let out = hftp(&["get", a, "hola.txt", "--force", "-q"], work.path());
    assert_code(&out, 0);
    assert_eq!(fs::read(work.path().join("hola.txt")).expect("read"), HOLA);

    // -o and -O; several files at once; an empty file.
    let out = hftp(&["get", a, "hola.txt", "-o", "x/renamed"], work.path());
    assert_code(&out, 7); // x/ does not exist
    fs::create_dir(work.path().join("x")).expect("mkdir");
    let out = hftp(&["get", a, "hola.txt", "-o", "x/renamed"], work.path());
    assert_code(&out, 0);
    assert_eq!(fs::read(work.path().join("x/renamed")).expect("read"), HOLA);
    let out = hftp(&["get", a, "empty", "noise.bin", "-O", "x"], work.path());
    assert_code(&out, 0);
    assert_eq!(fs::read(work.path().join("x/empty")).expect("read"), b"");
    assert!(fs::read(work.path().join("x/noise.bin")).expect("read") == noise(100_000, 7));
    let out = hftp(&["get", a, "empty", "noise.bin", "-o", "y"], work.path());
    assert_code(&out, 2);
}

#[test]
fn server_errors_map_to_exit_codes() {
    let dir = fixture();
    let server = Server::start(dir.path());
    let work = tempfile::tempdir().expect("tempdir");
    let a = server.addr.as_str();

    let out = hftp(&["stat", a, "hola.txt", "nope"], work.path());
    assert_code(&out, 3);
    assert_eq!(stdout(&out), "32  hola.txt\n");
    assert_eq!(
        stderr(&out),
        "hftp: get_metadata nope: server answered 202 FILE NOT FOUND (no such file)\n"
    );
    let out = hftp(&["cat", a, "hola.txt", "--range", "30:3"], work.path());
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("203 OFFSET EXCEEDS FILE SIZE"),
        "{}",
        stderr(&out)
    );
    let out = hftp(&["get", a, "nope"], work.path());
    assert_code(&out, 3);
    assert_eq!(
        fs::read_dir(work.path()).expect("read_dir").count(),
        0,
        "nothing written"
    );

    // Usage errors, found before any traffic.
    for args in [
        &["stat", a, "../etc"][..],
        &["ls", "host:0"],
        &["ls", "a:b:c"],
        &["cat", a, "hola.txt", "--range", "1"],
        &["cat", a, "hola.txt", "--range", "-1:2"],
        &["ls", a, "--proxy", "http://x:1"],
        &["get", a, "hola.txt", "-j", "0"],
    ] {
        let out = hftp(args, work.path());
        assert_code(&out, 2);
    }

    // Refused: a port that was just free.
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let out = hftp(&["ls", &format!("127.0.0.1:{port}")], work.path());
    assert_code(&out, 5);
    assert!(
        stderr(&out).starts_with("hftp: cannot connect to 127.0.0.1:"),
        "{}",
        stderr(&out)
    );
}

// ---------------------------------------------------------------------------
// Against scripted peers.

#[test]
fn classic_server_fallback_to_base64() {
    let dir = fixture();
    let data = noise(9 * MIB + 5, 3);
    fs::write(dir.path().join("mid.bin"), &data).expect("write");
    let peer = Peer::start(dir.path(), PeerConfig::default());
    let work = tempfile::tempdir().expect("tempdir");
    let a = peer.addr.as_str();

    let out = hftp(&["ls", a], work.path());
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out),
        "empty\nhola.txt\nmid.bin\nnoise.bin\n",
        "sorted by the client"
    );
    let out = hftp(&["cat", a, "hola.txt", "--range", "4:19"], work.path());
    assert_code(&out, 0);
    assert_eq!(out.stdout, b"calor que hace hoy,");

    let before = peer.stats.slicing_connections.load(Ordering::SeqCst);
    let raw_before = peer.stats.raw_requests.load(Ordering::SeqCst);
    let b64_before = peer.stats.base64_slices.load(Ordering::SeqCst);
    let out = hftp(&["get", a, "mid.bin", "-j", "3"], work.path());
    assert_code(&out, 0);
    assert!(fs::read(work.path().join("mid.bin")).expect("read") == data);
    // One raw probe per connection that fetched, answered 201, then base64
    // for good. (Up to 3 connections: an extra one that finds every
    // segment taken already fetches nothing.)
    let conns = peer.stats.slicing_connections.load(Ordering::SeqCst) - before;
    let raws = peer.stats.raw_requests.load(Ordering::SeqCst) - raw_before;
    let b64s = peer.stats.base64_slices.load(Ordering::SeqCst) - b64_before;
    assert!((1..=3).contains(&conns), "{conns} connections fetched");
    assert_eq!(raws, conns, "one raw probe per connection that fetched");
    assert_eq!(peer.stats.raw_after_refusal.load(Ordering::SeqCst), 0);
    assert!(
        b64s >= 10,
        "{b64s} base64 slices: the file is 10 segments of 1 MiB"
    );

    // Several files over one connection, still base64.
    let out = hftp(&["get", a, "empty", "hola.txt", "-O", "."], work.path());
    assert_code(&out, 0);
}

#[test]
fn modern_peer_uses_raw_only() {
    let dir = fixture();
    let peer = Peer::start(
        dir.path(),
        PeerConfig {
            modern: true,
            ..PeerConfig::default()
        },
    );
    let work = tempfile::tempdir().expect("tempdir");
    let out = hftp(&["get", &peer.addr, "noise.bin"], work.path());
    assert_code(&out, 0);
    assert_eq!(peer.stats.base64_slices.load(Ordering::SeqCst), 0);
    assert_eq!(peer.stats.raw_requests.load(Ordering::SeqCst), 1);
    let out = hftp(&["cat", &peer.addr, "hola.txt", "--no-raw"], work.path());
    assert_code(&out, 0);
    assert_eq!(out.stdout, HOLA);
    assert_eq!(peer.stats.base64_slices.load(Ordering::SeqCst), 1);
}

#[test]
fn protocol_errors_and_timeouts() {
    let dir = fixture();
    let work = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(PeerConfig, &[&str], i32, &str)> = vec![
        (
            PeerConfig {
                garbage: Some(b"0 OK\r\nnot a name\r\n\r\n".to_vec()),
                ..Default::default()
            },
            &["ls"],
            4,
            "bad listing line \"not a name\"",
        ),
        (
            PeerConfig {
                garbage: Some(b"0 OK\r\n012\r\n".to_vec()),
                ..Default::default()
            },
            &["stat", "-", "hola.txt"],
            4,
            "leading zero",
        ),
        (
            PeerConfig {
                garbage: Some(b"199 INTERNAL SERVER ERROR\r\n".to_vec()),
                ..Default::default()
            },
            &["ls"],
            4,
            "199 INTERNAL SERVER ERROR",
        ),
        (
            PeerConfig {
                garbage: Some(b"".to_vec()),
                ..Default::default()
            },
            &["ls"],
            4,
            "connection closed in the status line: no reply at all",
        ),
        (
            PeerConfig {
                cut: true,
                ..Default::default()
            },
            &["cat", "-", "noise.bin"],
            4,
            "connection closed",
        ),
        (
            PeerConfig {
                cut: true,
                modern: true,
                ..Default::default()
            },
            &["get", "-", "noise.bin", "--retries", "0"],
            4,
            "raw slice body: after 49998 of 100000 bytes",
        ),
        (
            PeerConfig {
                mute: true,
                ..Default::default()
            },
            &["ls", "-", "--timeout", "0.5"],
            6,
            "timed out",
        ),
    ];
    for (config, args, want, message) in cases {
        let peer = Peer::start(dir.path(), config);
        let mut args: Vec<&str> = args.to_vec();
        if args.len() > 1 && args[1] == "-" {
            args[1] = &peer.addr;
        } else {
            args.insert(1, &peer.addr);
        }
        let out = hftp(&args, work.path());
        assert_code(&out, want);
        let err = stderr(&out);
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(err.starts_with("hftp: "), "{err}");
        assert!(
            !work.path().join("noise.bin").exists(),
            "nothing under the final name"
        );
    }
}

/// Kills a download midway (a peer that never answers the second half),
/// then finishes it with `--continue` from a peer that counts what it sends.
#[test]
fn resume_after_kill() {
    let dir = fixture();
    let data = noise(16 * MIB, 9);
    fs::write(dir.path().join("r.bin"), &data).expect("write");
    let half = 8 * MIB as u64;
    let stalling = Peer::start(
        dir.path(),
        PeerConfig {
            modern: true,
            stall_from: Some(half),
            ..PeerConfig::default()
        },
    );
    let work = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(HFTP)
        .args(["get", &stalling.addr, "r.bin", "-j", "2", "-q"])
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // 16 MiB over 2 connections: 2 MiB segments, 4 of them below `half`.
    let state = work.path().join(".r.bin.hftp-state");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let lines = fs::read_to_string(&state)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if lines > 4 {
            break;
        }
        assert!(Instant::now() < deadline, "the first half never completed");
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the client exited early"
        );
        // Polling, bounded by the deadline: not a stand-in for synchronisation.
        thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert!(!work.path().join("r.bin").exists());
    assert!(work.path().join(".r.bin.hftp-part").exists());

    let peer = Peer::start(
        dir.path(),
        PeerConfig {
            modern: true,
            ..PeerConfig::default()
        },
    );
    let out = hftp(
        &["get", &peer.addr, "r.bin", "--continue", "-j", "2"],
        work.path(),
    );
    assert_code(&out, 0);
    assert!(fs::read(work.path().join("r.bin")).expect("read") == data);
    let offsets = peer.stats.slice_offsets.lock().expect("lock").clone();
    assert!(!offsets.is_empty());
    assert!(
        offsets.iter().all(|&o| o >= half),
        "refetched the first half: {offsets:?}"
    );
    assert!(!work.path().join(".r.bin.hftp-part").exists());
    assert!(!state.exists());
}

#[test]
fn download_through_socks5_proxy() {
    let dir = fixture();
    let data = noise(12 * MIB, 5);
    fs::write(dir.path().join("p.bin"), &data).expect("write");
    let server = Server::start(dir.path());
    let port = server.addr.rsplit(':').next().expect("port").to_owned();
    let (proxy, stats) = start_proxy();
    let work = tempfile::tempdir().expect("tempdir");
    let target = format!("localhost:{port}");
    let url = format!("socks5h://{proxy}");
    let out = hftp(
        &["get", &target, "p.bin", "--proxy", &url, "-j", "3"],
        work.path(),
    );
    assert_code(&out, 0);
    assert!(fs::read(work.path().join("p.bin")).expect("read") == data);
    let requests = stats.requests.lock().expect("lock").clone();
    assert!(requests.len() >= 2, "{requests:?}");
    assert!(
        requests.iter().all(|r| *r == format!("3 localhost:{port}")),
        "names go to the proxy: {requests:?}"
    );

    // The environment variable works too.
    let out = Command::new(HFTP)
        .args(["cat", &target, "hola.txt"])
        .env("HFTP_PROXY", &url)
        .output()
        .expect("run");
    assert_code(&out, 0);
    assert_eq!(out.stdout, HOLA);
    assert!(stats.requests.lock().expect("lock").len() > requests.len());

    // A proxy that cannot reach the target: exit 5.
    let out = hftp(&["ls", "localhost:1", "--proxy", &url], work.path());
    assert_code(&out, 5);
    assert!(
        stderr(&out).contains("connection refused (SOCKS5 reply 5)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn shell_in_a_terminal() {
    let dir = fixture();
    let server = Server::start(dir.path());
    let work = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(HFTP);
    cmd.args(["shell", &server.addr])
        .current_dir(work.path())
        .env("TERM", "xterm");
    let mut p = rexpect::session::spawn_command(cmd, Some(30_000)).expect("spawn shell");
    p.exp_string("3 files").expect("greeting");
    p.exp_string("hola.txt").expect("listing");
    p.exp_string("hftp> ").expect("prompt");
    p.send_line("ls -l").expect("send");
    p.exp_string("100000  noise.bin").expect("ls -l");
    p.exp_string("hftp> ").expect("prompt");
    // Tab completes a remote name.
    p.send("get hol\t").expect("send");
    p.send_line("").expect("send");
    p.exp_string("saved hola.txt").expect("get");
    p.exp_string("hftp> ").expect("prompt");
    p.send_line("cat hola.txt 4:5").expect("send");
    p.exp_string("calor").expect("cat");
    p.send_line("stat nope").expect("send");
    p.exp_string("202 FILE NOT FOUND").expect("error line");
    p.send_line("help").expect("send");
    p.exp_string("server commands: get_file_listing")
        .expect("help");
    p.send_line("quit").expect("send");
    p.exp_eof().expect("exit");
    assert_eq!(
        fs::read(work.path().join("hola.txt")).expect("downloaded"),
        HOLA
    );
}

// ---------------------------------------------------------------------------
// Issue 16: what a newcomer tripped on.

#[test]
fn timeout_zero_means_none() {
    let dir = fixture();
    let server = Server::start(dir.path());
    let work = tempfile::tempdir().expect("tempdir");
    let a = server.addr.as_str();
    let out = hftp(&["ls", a, "--timeout", "0"], work.path());
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "empty\nhola.txt\nnoise.bin\n");
    let out = hftp(&["get", a, "hola.txt", "--timeout", "0", "-q"], work.path());
    assert_code(&out, 0);
    assert_eq!(fs::read(work.path().join("hola.txt")).expect("read"), HOLA);
}

#[test]
fn get_into_an_existing_directory_with_o_leaves_nothing() {
    let dir = fixture();
    let server = Server::start(dir.path());
    let work = tempfile::tempdir().expect("tempdir");
    fs::create_dir(work.path().join("d")).expect("mkdir");
    for extra in [&[][..], &["-f"][..]] {
        let mut args = vec!["get", &server.addr, "hola.txt", "-o", "d"];
        args.extend_from_slice(extra);
        let out = hftp(&args, work.path());
        assert_code(&out, 7);
        let err = stderr(&out);
        assert!(err.contains("it is a directory"), "{err}");
        assert!(!err.contains("--continue"), "{err}");
        let left: Vec<_> = fs::read_dir(work.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, ["d"], "{extra:?}: no part or state file");
        assert_eq!(
            fs::read_dir(work.path().join("d"))
                .expect("read_dir")
                .count(),
            0
        );
    }
}

/// Runs `hftp ARGS` with standard output a pipe whose reader is already
/// gone: every write fails with EPIPE.
fn with_closed_stdout(args: &[&str]) -> Output {
    let mut child = Command::new(HFTP)
        .args(args)
        .env_remove("HFTP_PROXY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hftp");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait")
}

#[test]
fn closed_stdout_ends_quietly_in_every_command() {
    let dir = fixture();
    let server = Server::start(dir.path());
    let a = server.addr.as_str();
    for args in [
        &["ls", a][..],
        &["ls", "-l", a],
        &["ls", "-U", a],
        &["stat", a, "hola.txt"],
        &["cat", a, "noise.bin"],
        &["check", "--list"],
    ] {
        let out = with_closed_stdout(args);
        assert_eq!(
            (code(&out), stderr(&out).as_str()),
            (0, ""),
            "{args:?} with a closed standard output"
        );
    }
}

#[test]
fn logs_are_plain_text_when_not_on_a_terminal() {
    let dir = fixture();
    let mut child = Command::new(HFTP)
        .args(["serve", "-v", "-p", "0", "-a", "127.0.0.1", "-d"])
        .arg(dir.path())
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hftp serve");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let addr = loop {
        let line = lines.next().expect("listening line").expect("read");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().expect("addr").to_owned();
        }
    };
    // One client, logged (at debug level, -v) when it is accepted.
    let mut conn = TcpStream::connect(&addr).expect("connect");
    conn.write_all(b"quit\r\n").expect("write");
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).expect("read");
    assert_eq!(answer, b"0 OK\r\n");
    // SIGTERM: the server logs its shutdown and exits.
    // SAFETY: kill(2) on our own running child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let mut log = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut log)
        .expect("read log");
    let _ = child.wait();
    assert!(!log.is_empty(), "the server logged something");
    assert!(
        !log.contains('\x1b'),
        "no escape codes in a piped log: {log:?}"
    );
}

#[test]
fn a_peer_that_is_not_hftp_is_named_as_such() {
    let dir = fixture();
    let work = tempfile::tempdir().expect("tempdir");
    let http = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_vec();
    let peer = Peer::start(
        dir.path(),
        PeerConfig {
            garbage: Some(http),
            ..Default::default()
        },
    );
    let out = hftp(&["ls", &peer.addr], work.path());
    assert_code(&out, 4);
    assert_eq!(
        stderr(&out),
        format!(
            "hftp: {} does not speak HFTP: it answered get_file_listing with \
             \"HTTP/1.1 400 Bad Request\\r\\nContent-Length: 0\\r\\n\\r\\n\"\n",
            peer.addr
        )
    );
}

#[test]
fn hftp_urls_name_the_server_and_the_file() {
    let dir = fixture();
    let server = Server::start(dir.path());
    let work = tempfile::tempdir().expect("tempdir");
    let base = format!("hftp://{}", server.addr);
    let out = hftp(&["ls", &format!("{base}/")], work.path());
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "empty\nhola.txt\nnoise.bin\n");
    let out = hftp(&["cat", &format!("{base}/hola.txt")], work.path());
    assert_code(&out, 0);
    assert_eq!(out.stdout, HOLA);
    let out = hftp(
        &["stat", &format!("{base}/hola.txt"), "noise.bin"],
        work.path(),
    );
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "    32  hola.txt\n100000  noise.bin\n");
    let out = hftp(&["get", &format!("{base}/hola.txt"), "-q"], work.path());
    assert_code(&out, 0);
    assert_eq!(fs::read(work.path().join("hola.txt")).expect("read"), HOLA);
    for bad in [
        vec!["ls".to_owned(), format!("{base}/hola.txt")],
        vec!["cat".to_owned(), format!("{base}/hola.txt"), "empty".into()],
        vec!["cat".to_owned(), format!("http://{}/hola.txt", server.addr)],
        vec!["get".to_owned(), format!("{base}/a/b")],
        vec!["get".to_owned(), base.clone()],
    ] {
        let args: Vec<&str> = bad.iter().map(String::as_str).collect();
        let out = hftp(&args, work.path());
        assert_code(&out, 2);
        assert!(stderr(&out).starts_with("hftp: "), "{}", stderr(&out));
    }
}

/// Starts `hftp get` of `r.bin` (16 MiB, 2 connections) from a peer that
/// stalls the second half, and kills it once the first half is recorded.
fn kill_midway(addr: &str, work: &Path) {
    let mut child = Command::new(HFTP)
        .args(["get", addr, "r.bin", "-j", "2", "-q"])
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let state = work.join(".r.bin.hftp-state");
    let deadline = Instant::now() + Duration::from_secs(120);
    // 2 MiB segments: the header and 4 segments below the half.
    while fs::read_to_string(&state).map_or(0, |s| s.lines().count()) <= 4 {
        assert!(Instant::now() < deadline, "the first half never completed");
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "exited early"
        );
        // Polling, bounded by the deadline: not a stand-in for synchronisation.
        thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("kill");
    child.wait().expect("wait");
}

#[test]
fn same_get_again_resumes_by_itself_and_never_discards_another_part() {
    let dir = fixture();
    let data = noise(16 * MIB, 11);
    fs::write(dir.path().join("r.bin"), &data).expect("write");
    let half = 8 * MIB as u64;
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peer = Peer::start(
        dir.path(),
        PeerConfig {
            modern: true,
            stall_from: Some(half),
            stall_released: Some(release.clone()),
            ..PeerConfig::default()
        },
    );
    let work = tempfile::tempdir().expect("tempdir");
    kill_midway(&peer.addr, work.path());
    let part = work.path().join(".r.bin.hftp-part");
    let state = work.path().join(".r.bin.hftp-state");
    let state_before = fs::read(&state).expect("state");

    // Another server: refused, explained, nothing touched.
    let other = Peer::start(
        dir.path(),
        PeerConfig {
            modern: true,
            ..PeerConfig::default()
        },
    );
    let out = hftp(&["get", &other.addr, "r.bin", "-j", "2"], work.path());
    assert_code(&out, 7);
    let err = stderr(&out);
    assert!(
        err.contains("holds 4 finished segment(s) of r.bin from"),
        "{err}"
    );
    assert!(
        err.contains("--continue") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(fs::read(&state).expect("state"), state_before);
    assert!(part.exists());
    assert!(other.stats.slice_offsets.lock().expect("lock").is_empty());

    // The same command again: resumes by itself, fetching only the rest.
    release.store(true, Ordering::SeqCst);
    peer.stats.slice_offsets.lock().expect("lock").clear();
    let out = hftp(&["get", &peer.addr, "r.bin", "-j", "2"], work.path());
    assert_code(&out, 0);
    assert!(
        stderr(&out).contains("hftp: r.bin: resuming, 8.0 MiB of 16.0 MiB already downloaded"),
        "{}",
        stderr(&out)
    );
    assert!(fs::read(work.path().join("r.bin")).expect("read") == data);
    let offsets = peer.stats.slice_offsets.lock().expect("lock").clone();
    assert!(!offsets.is_empty());
    assert!(offsets.iter().all(|&o| o >= half), "refetched: {offsets:?}");
    assert!(!part.exists() && !state.exists());
}

/// Waits until `.r.bin.hftp-state` in `work` records at least 4 segments
/// of the first half, bounded.
fn wait_first_half(work: &Path) {
    let state = work.join(".r.bin.hftp-state");
    let deadline = Instant::now() + Duration::from_secs(120);
    while fs::read_to_string(&state).map_or(0, |s| s.lines().count()) <= 4 {
        assert!(Instant::now() < deadline, "the first half never completed");
        // Polling, bounded by the deadline: not a stand-in for synchronisation.
        thread::sleep(Duration::from_millis(5));
    }
}

/// A 16 MiB `r.bin` served by a peer that never sends its second half.
fn stalling_peer(dir: &Path) -> Peer {
    fs::write(dir.join("r.bin"), noise(16 * MIB, 5)).expect("write");
    Peer::start(
        dir,
        PeerConfig {
            modern: true,
            stall_from: Some(8 * MIB as u64),
            ..PeerConfig::default()
        },
    )
}

#[test]
fn ctrl_c_during_get_says_what_was_kept() {
    let dir = fixture();
    let peer = stalling_peer(dir.path());
    let work = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(HFTP);
    cmd.args(["get", &peer.addr, "r.bin", "-j", "2"])
        .current_dir(work.path())
        .env_remove("HFTP_PROXY")
        .env("TERM", "xterm");
    let mut p = rexpect::session::spawn_command(cmd, Some(30_000)).expect("spawn get");
    wait_first_half(work.path());
    p.send_control('c').expect("Ctrl-C");
    p.exp_string("interrupted: the finished segments are kept in .r.bin.hftp-part")
        .expect("what was kept");
    p.exp_string("run the same command again to resume")
        .expect("how to resume");
    // That one line is all: no second line about the read it interrupted.
    let rest = p.exp_eof().expect("the end of the output");
    assert!(!rest.contains("hftp:"), "a second line: {rest:?}");
    let status = p.process.wait().expect("wait");
    assert_eq!(
        format!("{status:?}").split(", ").last(),
        Some("130)"),
        "{status:?}"
    );
    assert!(work.path().join(".r.bin.hftp-part").exists());
    assert!(!work.path().join("r.bin").exists());
}

#[test]
fn ctrl_c_during_a_shell_get_returns_to_the_prompt() {
    let dir = fixture();
    let peer = stalling_peer(dir.path());
    let work = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(HFTP);
    cmd.args(["shell", &peer.addr])
        .current_dir(work.path())
        .env_remove("HFTP_PROXY")
        .env("TERM", "xterm");
    let mut p = rexpect::session::spawn_command(cmd, Some(30_000)).expect("spawn shell");
    p.exp_string("hftp> ").expect("prompt");
    p.send_line("get r.bin").expect("send");
    wait_first_half(work.path());
    p.send_control('c').expect("Ctrl-C");
    p.exp_string("interrupted").expect("interrupted");
    p.exp_string("hftp> ").expect("back at the prompt");
    p.send_line("stat hola.txt").expect("send");
    p.exp_string("32  hola.txt").expect("the session goes on");
    p.send_line("quit").expect("send");
    p.exp_eof().expect("exit");
    assert!(work.path().join(".r.bin.hftp-part").exists());
}

#[test]
fn shell_speaks_like_the_cli() {
    let dir = fixture();
    let server = Server::start(dir.path());
    let work = tempfile::tempdir().expect("tempdir");
    fs::write(work.path().join("hola.txt"), b"mine").expect("write");

    // `hftp shell --help` lists the shell's commands.
    let out = hftp(&["shell", "--help"], work.path());
    assert_code(&out, 0);
    for line in [
        "ls [-l]",
        "stat <FILE>...",
        "get [-f] [-c] <FILE>...",
        "quit",
    ] {
        assert!(stdout(&out).contains(line), "{line}: {}", stdout(&out));
    }

    // Piped input: errors start with `hftp:`, suggest the shell's own
    // flag, and the first failure is the exit code.
    let mut child = Command::new(HFTP)
        .args(["shell", &server.addr])
        .current_dir(work.path())
        .env_remove("HFTP_PROXY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shell");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(b"stat nope\nget hola.txt\nfrobnicate\nls -x\nstat hola.txt\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_code(&out, 3);
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(lines.iter().all(|l| l.starts_with("hftp: ")), "{err}");
    assert!(lines[0].contains("202 FILE NOT FOUND"), "{err}");
    assert!(lines[1].contains("use -f/--force"), "{err}");
    assert!(
        lines[2].contains("frobnicate") && lines[2].ends_with("(type help)"),
        "{err}"
    );
    assert!(lines[3].contains("-x"), "{err}");
    assert!(stdout(&out).ends_with("32  hola.txt\n"), "{}", stdout(&out));
    assert_eq!(
        fs::read(work.path().join("hola.txt")).expect("read"),
        b"mine"
    );

    // Without errors, piped input exits 0.
    let mut child = Command::new(HFTP)
        .args(["shell", &server.addr])
        .current_dir(work.path())
        .env_remove("HFTP_PROXY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shell");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(b"get -f hola.txt\nexit\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_code(&out, 0);
    assert_eq!(fs::read(work.path().join("hola.txt")).expect("read"), HOLA);
}

#[test]
fn get_several_by_pattern_or_all_into_a_directory() {
    let dir = fixture();
    fs::write(dir.path().join("a.txt"), b"a").expect("write");
    fs::write(dir.path().join("b.txt"), b"bb").expect("write");
    let server = Server::start(dir.path());
    let work = tempfile::tempdir().expect("tempdir");
    let a = server.addr.as_str();
    let names = |d: &str| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(work.path().join(d))
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        v.sort();
        v
    };

    let out = hftp(&["get", a, "*.txt", "-O", "txt", "-q"], work.path());
    assert_code(&out, 0);
    assert_eq!(names("txt"), ["a.txt", "b.txt", "hola.txt"]);
    assert_eq!(
        fs::read(work.path().join("txt/b.txt")).expect("read"),
        b"bb"
    );

    let out = hftp(&["get", a, "--all", "-O", "all", "-q"], work.path());
    assert_code(&out, 0);
    assert_eq!(
        names("all"),
        ["a.txt", "b.txt", "empty", "hola.txt", "noise.bin"]
    );

    let out = hftp(&["get", a, "*.nothing", "-O", "none"], work.path());
    assert_code(&out, 3);
    assert_eq!(
        stderr(&out),
        "hftp: get *.nothing: no file on the server matches *.nothing \
         (its listing has 5 names)\n"
    );

    // A pattern that matches nothing is said as such, and the other
    // patterns and names are still fetched; the exit code is that of a
    // missing file.
    let out = hftp(
        &["get", a, "b*", "nope*", "a.txt", "-O", "some", "-q"],
        work.path(),
    );
    assert_code(&out, 3);
    assert_eq!(names("some"), ["a.txt", "b.txt"]);
    assert_eq!(
        stderr(&out),
        "hftp: get nope*: no file on the server matches nope* (its listing has 5 names)\n"
    );
    for bad in [
        &["get", a, "--all", "hola.txt"][..],
        &["get", a, "--all", "-o", "x"],
        &["get", a, "*.txt", "-o", "x"],
    ] {
        assert_code(&hftp(bad, work.path()), 2);
    }

    // Whatever a server lists, nothing is written outside the directory:
    // a name with a path in the listing is a protocol error.
    let peer = Peer::start(
        dir.path(),
        PeerConfig {
            garbage: Some(b"0 OK\r\n../escape\r\n\r\n".to_vec()),
            ..Default::default()
        },
    );
    let out = hftp(&["get", &peer.addr, "--all", "-O", "inner/d"], work.path());
    assert_code(&out, 4);
    assert!(stderr(&out).contains("../escape"), "{}", stderr(&out));
    assert!(
        !work.path().join("inner").exists(),
        "nothing written at all"
    );
}

#[test]
fn progress_lines_off_a_terminal_human_sizes_and_limit_rate() {
    let dir = fixture();
    let data = noise(3 * MIB, 21);
    fs::write(dir.path().join("big.bin"), &data).expect("write");
    let server = Server::start(dir.path());
    let work = tempfile::tempdir().expect("tempdir");
    let a = server.addr.as_str();

    // 3 MiB at 1 MiB/s: at least 2 s whatever the machine (a lower bound
    // set by the client's own limiter, which noise can only lengthen), so
    // lines every 0.5 s must appear.
    let started = Instant::now();
    let out = hftp(
        &[
            "get",
            a,
            "big.bin",
            "--limit-rate",
            "1M",
            "--progress-interval",
            "0.5",
        ],
        work.path(),
    );
    let took = started.elapsed();
    assert_code(&out, 0);
    assert!(fs::read(work.path().join("big.bin")).expect("read") == data);
    assert!(
        took >= Duration::from_secs(2),
        "limited to 1 MiB/s: {took:?}"
    );
    let err = stderr(&out);
    let progress: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("hftp: big.bin: ") && l.contains(" of 3.0 MiB ("))
        .collect();
    assert!(!progress.is_empty(), "progress lines: {err}");
    assert!(err.contains("big.bin -> big.bin: 3.0 MiB in "), "{err}");
    eprintln!("get --limit-rate 1M of 3 MiB took {took:?}");

    let out = hftp(&["get", a, "big.bin", "-f", "--bytes"], work.path());
    assert_code(&out, 0);
    assert!(stderr(&out).contains(": 3145728 B in "), "{}", stderr(&out));

    let started = Instant::now();
    let out = hftp(&["cat", a, "noise.bin", "--limit-rate", "50K"], work.path());
    let took = started.elapsed();
    assert_code(&out, 0);
    assert!(out.stdout == noise(100_000, 7));
    assert!(
        took >= Duration::from_secs(1),
        "limited to 50 KiB/s: {took:?}"
    );

    let out = hftp(&["get", a, "big.bin", "--limit-rate", "fast"], work.path());
    assert_code(&out, 2);
}
