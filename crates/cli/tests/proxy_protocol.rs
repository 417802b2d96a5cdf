//! `hftp serve --proxy-protocol` in every model that supports it: the real
//! `hftp` binary, real loopback sockets, PROXY headers (v1 text, v2 binary)
//! built by hand as HAProxy and nginx send them.
//!
//! Each model's server runs with `--max-per-ip 1`, so that admission by the
//! address in the header (not the socket's, always 127.0.0.1 here) is seen:
//! two connections naming one client cannot both get in, one naming
//! another can. Every other part names a client address of its own, so
//! that only the admission part ever meets the limit. At the end the
//! metrics must count each refusal exactly.
//!
//! Tier: quick.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::Server;

per_model!(proxy_protocol);

/// Bounds every wait of the test; none of them is a threshold.
const TIMEOUT: Duration = Duration::from_secs(20);

const HELP_ANSWER: &str =
    "0 OK\r\nget_file_listing\r\nget_metadata\r\nget_slice\r\nhelp\r\nquit\r\n\r\n";

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A PROXY v1 header naming `client` (the destination is the server).
fn v1(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let family = if client.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        client.ip(),
        server.ip(),
        client.port(),
        server.port()
    )
    .into_bytes()
}

/// A PROXY v2 `PROXY` header naming `client` (`server` must be of the same
/// family, as a real proxy's would be).
fn v2(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let mut addresses = Vec::new();
    let family = match (client.ip(), server.ip()) {
        (IpAddr::V4(c), IpAddr::V4(s)) => {
            addresses.extend_from_slice(&c.octets());
            addresses.extend_from_slice(&s.octets());
            0x11
        }
        (IpAddr::V6(c), IpAddr::V6(s)) => {
            addresses.extend_from_slice(&c.octets());
            addresses.extend_from_slice(&s.octets());
            0x21
        }
        _ => panic!("client and server addresses of one family"),
    };
    addresses.extend_from_slice(&client.port().to_be_bytes());
    addresses.extend_from_slice(&server.port().to_be_bytes());
    v2_header(0x21, family, &addresses)
}

/// A PROXY v2 `LOCAL` header, as HAProxy's health checks send it.
fn v2_local() -> Vec<u8> {
    v2_header(0x20, 0x00, &[])
}

fn v2_header(version_command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(version_command);
    h.push(family);
    h.extend_from_slice(&u16::try_from(addresses.len()).unwrap().to_be_bytes());
    h.extend_from_slice(addresses);
    h
}

fn connect(server: &Server) -> TcpStream {
    let s = TcpStream::connect(server.addr()).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Sends `bytes` and reads until the server closes.
fn exchange(server: &Server, bytes: &[u8]) -> (SocketAddr, String) {
    let mut s = connect(server);
    let local = s.local_addr().unwrap();
    s.write_all(bytes).unwrap();
    (local, read_to_close(&mut s, server))
}

/// Everything the server sends until it closes; a reset after nothing is
/// a close too (the server may close with our bytes unread).
fn read_to_close(s: &mut TcpStream, server: &Server) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset && answer.is_empty() => break,
            Err(e) => panic!(
                "--model {}: reading the answer: {e} (got {:?}); stderr:\n{}",
                server.model(),
                String::from_utf8_lossy(&answer),
                server.stderr()
            ),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Waits for a summary line naming `peer` and the proxy `via`.
fn wait_summary(server: &Server, peer: &str, via: SocketAddr) {
    let deadline = Instant::now() + TIMEOUT;
    let wanted = |line: &&str| {
        line.contains("connection closed")
            && line.contains(&format!("peer=\"{peer}\""))
            && line.contains(&format!("via=\"{via}\""))
    };
    while !server.stderr().lines().any(|l| wanted(&l)) {
        assert!(
            Instant::now() < deadline,
            "--model {}: no summary line with peer={peer} via={via}; stderr:\n{}",
            server.model(),
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn proxy_protocol(model: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hola.txt"), b"hola\n").unwrap();
    let server = Server::builder(dir.path())
        .model(model)
        .arg("--proxy-protocol")
        .arg("--proxy-header-timeout")
        .arg("1")
        .arg("--max-per-ip")
        .arg("1")
        .arg("--metrics")
        .arg("127.0.0.1:0")
        .start();
    let server_addr = server.addr();
    let listing = "0 OK\r\nhola.txt\r\n\r\n";

    // v1, with requests pipelined right after the header in one write.
    let client: SocketAddr = "127.66.0.1:40001".parse().unwrap();
    let mut bytes = v1(client, server_addr);
    bytes.extend_from_slice(b"help\r\nget_file_listing\r\nquit\r\n");
    let (local, answer) = exchange(&server, &bytes);
    assert_eq!(
        answer,
        format!("{HELP_ANSWER}{listing}0 OK\r\n"),
        "--model {model}: v1"
    );
    wait_summary(&server, "127.66.0.1:40001", local);

    // v2 over IPv4, the header sent one byte at a time, the requests later.
    let client: SocketAddr = "127.66.0.2:40002".parse().unwrap();
    let mut s = connect(&server);
    let local = s.local_addr().unwrap();
    for byte in v2(client, server_addr) {
        s.write_all(&[byte]).unwrap();
    }
    s.write_all(b"help\r\nquit\r\n").unwrap();
    assert_eq!(
        read_to_close(&mut s, &server),
        format!("{HELP_ANSWER}0 OK\r\n"),
        "--model {model}: v2 one byte at a time"
    );
    wait_summary(&server, "127.66.0.2:40002", local);

    // v2 naming an IPv6 client, and v1 TCP6.
    let server6: SocketAddr = "[::1]:19500".parse().unwrap();
    let mut bytes = v2("[::1]:40003".parse().unwrap(), server6);
    bytes.extend_from_slice(b"quit\r\n");
    let (local, answer) = exchange(&server, &bytes);
    assert_eq!(answer, "0 OK\r\n", "--model {model}: v2 TCP6");
    wait_summary(&server, "[::1]:40003", local);
    let mut bytes = v1("[::2]:40004".parse().unwrap(), server6);
    bytes.extend_from_slice(b"quit\r\n");
    let (local, answer) = exchange(&server, &bytes);
    assert_eq!(answer, "0 OK\r\n", "--model {model}: v1 TCP6");
    wait_summary(&server, "[::2]:40004", local);

    // LOCAL (a health check): served, the proxy stands for the client.
    let mut bytes = v2_local();
    bytes.extend_from_slice(b"help\r\n");
    let mut s = connect(&server);
    let local = s.local_addr().unwrap();
    s.write_all(&bytes).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(
        read_to_close(&mut s, &server),
        HELP_ANSWER,
        "--model {model}: LOCAL"
    );
    wait_summary(&server, &local.to_string(), local);

    // No header, or a bad one: closed without an answer.
    for (what, bytes) in [
        ("no header", b"help\r\n".to_vec()),
        (
            "bad v1 header",
            b"PROXY TCP4 not-an-address 127.0.0.1 1 2\r\nhelp\r\n".to_vec(),
        ),
        ("HTTP", b"GET / HTTP/1.0\r\n\r\n".to_vec()),
        ("bad v2 version", {
            let mut h = v2("127.66.0.5:1".parse().unwrap(), server_addr);
            h[12] = 0x11;
            h.extend_from_slice(b"help\r\n");
            h
        }),
    ] {
        let (_, answer) = exchange(&server, &bytes);
        assert_eq!(
            answer, "",
            "--model {model}: {what}: closed without an answer"
        );
    }
    server.wait_stderr("no PROXY protocol header", TIMEOUT);

    // A header that never completes is dropped at --proxy-header-timeout.
    let mut s = connect(&server);
    s.write_all(b"PROXY TCP4 127.66.0.6").unwrap();
    assert_eq!(
        read_to_close(&mut s, &server),
        "",
        "--model {model}: incomplete header"
    );
    server.wait_stderr("no complete PROXY header in time", TIMEOUT);

    // --max-per-ip 1 counts the address in the header: a second
    // connection naming 127.66.0.7 is refused while the first is open, one
    // naming 127.66.0.8 gets in, though all come from 127.0.0.1.
    let mut first = connect(&server);
    let mut bytes = v2("127.66.0.7:1".parse().unwrap(), server_addr);
    bytes.extend_from_slice(b"help\r\n");
    first.write_all(&bytes).unwrap();
    let mut answer = vec![0u8; HELP_ANSWER.len()];
    first.read_exact(&mut answer).expect("the first is served");
    let mut bytes = v1("127.66.0.7:2".parse().unwrap(), server_addr);
    bytes.extend_from_slice(b"help\r\n");
    let (_, answer) = exchange(&server, &bytes);
    assert_eq!(
        answer, "",
        "--model {model}: a second from 127.66.0.7 is refused"
    );
    server.wait_stderr("per-address connection limit reached", TIMEOUT);
    let mut bytes = v1("127.66.0.8:3".parse().unwrap(), server_addr);
    bytes.extend_from_slice(b"quit\r\n");
    let (_, answer) = exchange(&server, &bytes);
    assert_eq!(answer, "0 OK\r\n", "--model {model}: 127.66.0.8 gets in");
    first.write_all(b"quit\r\n").unwrap();
    assert_eq!(read_to_close(&mut first, &server), "0 OK\r\n");

    // Each refusal above was counted before its connection was closed.
    let refused = |limit: &str| {
        let wanted = format!("hftp_connections_refused_total{{limit=\"{limit}\"}} ");
        let scrape = scrape_metrics(&server);
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(&wanted).map(str::to_string))
            .unwrap_or_else(|| panic!("--model {model}: no {wanted:?} in\n{scrape}"))
    };
    // Four without a valid header, one late.
    assert_eq!(refused("proxy_header"), "5", "--model {model}");
    assert_eq!(refused("max_per_ip"), "1", "--model {model}");
}

/// The server's `/metrics` page (its address is in the banner).
fn scrape_metrics(server: &Server) -> String {
    let deadline = Instant::now() + TIMEOUT;
    let addr = loop {
        let found = server.stdout().iter().find_map(|line| {
            let rest = line.strip_prefix("metrics on http://")?;
            rest.split('/').next()?.parse::<SocketAddr>().ok()
        });
        if let Some(addr) = found {
            break addr;
        }
        assert!(
            Instant::now() < deadline,
            "no `metrics on` line in the banner"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut s = TcpStream::connect(addr).expect("connect to /metrics");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read /metrics");
    answer
}
