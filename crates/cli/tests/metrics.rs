//! `hftp serve --metrics`: a known number of requests of each kind, then
//! one scrape whose counters must equal them exactly, in every model
//! (`fork` included: its children count into memory shared with the
//! parent).
//!
//! Tier: quick.

use crate::support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::support::Server;

const TIMEOUT: Duration = Duration::from_secs(30);

per_model!(counts_are_exact);

/// One HTTP exchange; returns the status line and the body.
fn http(addr: SocketAddr, request: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to metrics");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("metrics answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("HTTP head");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// Samples of a Prometheus text page: `name{labels}` -> value.
fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let (status, body) = http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').expect("sample line");
            (key.to_string(), value.parse().expect("sample value"))
        })
        .collect()
}

/// Sends `requests` on one connection from `from` and reads until the
/// server closes.
fn exchange(from: &str, addr: SocketAddr, requests: &[u8]) -> Vec<u8> {
    let mut s = connect_from(from, addr);
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(requests).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).expect("answers");
    answer
}

/// A connection from the loopback address `from`: each part of the test
/// has its own, so that --max-per-ip only ever counts the part meant for
/// it (connections of an earlier part may still be closing on the
/// server's side).
fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.into()
}

fn counts_are_exact(model: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hola.txt"),
        b"Que calor que hace hoy, pinocho!",
    )
    .unwrap();
    std::fs::write(dir.path().join("big"), support::noise(300_000, 7)).unwrap();
    let server = Server::builder(dir.path())
        .model(model)
        .arg("--metrics")
        .arg("127.0.0.1:0")
        .arg("--max-per-ip")
        .arg("2")
        .start();
    let metrics = server.metrics_addr();

    let session: &[u8] = b"get_file_listing\r\n\
        get_metadata hola.txt\r\nget_metadata hola.txt\r\nget_metadata nope\r\n\
        get_slice hola.txt 0 5\r\nget_slice hola.txt 0 5 raw\r\nget_slice hola.txt 30 3\r\n\
        get_slice big 1 250000\r\nget_slice big 2 250000 raw\r\n\
        help\r\nverdura\r\nget_metadata ../x\r\nquit\r\n";
    const SESSIONS: usize = 3;
    for i in 0..SESSIONS {
        let answer = exchange(&format!("127.0.0.{}", 10 + i), server.addr(), session);
        assert!(
            answer.ends_with(b"0 OK\r\n"),
            "{model}: every answer, then quit's"
        );
    }
    // A fatal error: a bare LF.
    let fatal = exchange("127.0.0.3", server.addr(), b"help\n");
    assert_eq!(fatal, b"100 BAD EOL\r\n");
    // Two connections held, a third from the same address refused.
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| connect_from("127.0.0.2", server.addr()))
        .collect();
    for s in &mut held {
        // Answered, so admitted before the third connects.
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.write_all(b"get_metadata hola.txt\r\n").unwrap();
        let mut buf = [0u8; 10];
        s.read_exact(&mut buf).unwrap();
    }
    let mut refused = connect_from("127.0.0.2", server.addr());
    refused.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut answer = Vec::new();
    refused.read_to_end(&mut answer).expect("end of file");
    assert!(
        answer.is_empty(),
        "{model}: over --max-per-ip, closed at once"
    );

    let m = scrape(metrics);
    let get = |key: &str| m.get(key).copied().unwrap_or(0.0);
    let n = SESSIONS as f64;
    let requests = |command: &str, status: u16| {
        get(&format!(
            "hftp_requests_total{{command=\"{command}\",status=\"{status}\"}}"
        ))
    };
    assert_eq!(requests("get_file_listing", 0), n, "{model}");
    assert_eq!(requests("get_metadata", 0), 2.0 * n + 2.0, "{model}");
    assert_eq!(requests("get_metadata", 202), n, "{model}");
    assert_eq!(requests("get_metadata", 201), n, "{model}");
    assert_eq!(requests("get_slice", 0), 4.0 * n, "{model}");
    assert_eq!(requests("get_slice", 203), n, "{model}");
    assert_eq!(requests("help", 0), n, "{model}");
    assert_eq!(requests("unknown", 200), n, "{model}");
    assert_eq!(requests("quit", 0), n, "{model}");
    assert_eq!(requests("none", 100), 1.0, "{model}");
    let total: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("hftp_requests_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, 13.0 * n + 3.0, "{model}: nothing else counted");
    assert_eq!(get("hftp_request_duration_seconds_count"), total, "{model}");

    // Slice bodies after their heads: base64 of 5 and 250,000 bytes with
    // their CRLF, raw 5 and 250,000.
    let b64 = |size: f64| 4.0 * (size / 3.0).ceil() + 2.0;
    assert_eq!(
        get("hftp_slice_bytes_sent_total{mode=\"base64\"}"),
        n * (b64(5.0) + b64(250_000.0)),
        "{model}"
    );
    assert_eq!(
        get("hftp_slice_bytes_sent_total{mode=\"raw\"}"),
        n * 250_005.0,
        "{model}"
    );
    assert_eq!(
        get("hftp_slice_duration_seconds_count{mode=\"base64\"}"),
        2.0 * n
    );
    assert_eq!(
        get("hftp_slice_duration_seconds_count{mode=\"raw\"}"),
        2.0 * n
    );

    assert_eq!(get("hftp_connections_accepted_total"), n + 3.0, "{model}");
    assert_eq!(
        get("hftp_connections_refused_total{limit=\"max_per_ip\"}"),
        1.0,
        "{model}"
    );
    assert_eq!(
        get("hftp_connections_refused_total{limit=\"max_connections\"}"),
        0.0
    );
    assert_eq!(get(&format!("hftp_model_info{{model=\"{model}\"}}")), 1.0);
    let storage = |op: &str| {
        get(&format!(
            "hftp_storage_operation_duration_seconds_count{{backend=\"local\",operation=\"{op}\"}}"
        ))
    };
    assert_eq!(storage("list"), n, "{model}");
    assert_eq!(storage("size"), 3.0 * n + 2.0, "{model}");
    assert_eq!(storage("open"), 5.0 * n, "{model}");
    // Base64 bodies beyond their first block are read in further blocks;
    // raw ones go out with sendfile.
    assert!(storage("read") >= n, "{model}");
    assert_eq!(
        get("hftp_storage_errors_total{backend=\"local\",operation=\"open\"}"),
        0.0
    );

    drop(held);
    let (status, _) = http(metrics, "GET / HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _) = http(metrics, "POST /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
}
