//! `/metrics` over HTTP/1.x: just enough HTTP for a Prometheus scrape.
//!
//! Each scrape is one short connection: the request head is read (at most
//! [`MAX_HEAD`] bytes, within [`TIMEOUT`]), `GET /metrics` is answered with
//! the counters, anything else with a plain 404/405/400, and the
//! connection is closed. Where a scrape runs is the model's business:
//! a dedicated thread (`threads`, `pool`, `poll`), a task (`async`), or a
//! forked child of the accept loop (`fork`, whose parent must stay
//! single-threaded).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use super::render;

/// Bytes of request head read before answering 400.
pub const MAX_HEAD: usize = 8192;

/// Time a scraper has to send its request and read the answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The whole HTTP answer to a request head.
pub fn answer(head: &[u8]) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (status, body, kind) = match (method, target, version) {
        (Some(m), Some(t), Some(v)) if v.starts_with("HTTP/1.") => {
            let path = t.split('?').next().unwrap_or(t);
            match (m, path) {
                ("GET" | "HEAD", "/metrics") => match super::get() {
                    Some(metrics) => (
                        "200 OK",
                        render(metrics),
                        "text/plain; version=0.0.4; charset=utf-8",
                    ),
                    None => (
                        "503 Service Unavailable",
                        "not counting\n".into(),
                        "text/plain",
                    ),
                },
                (_, "/metrics") => ("405 Method Not Allowed", "use GET\n".into(), "text/plain"),
                _ => ("404 Not Found", "try /metrics\n".into(), "text/plain"),
            }
        }
        _ => (
            "400 Bad Request",
            "not an HTTP/1 request\n".into(),
            "text/plain",
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != Some("HEAD") {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// Reads a request head from a blocking socket and answers it.
pub fn serve_one(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    stream.write_all(&answer(&head))?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// Serves scrapes one at a time on a thread of its own, for as long as
/// the process lives.
pub fn spawn_thread(listener: TcpListener) -> io::Result<()> {
    listener.set_nonblocking(false)?;
    std::thread::Builder::new()
        .name("hftp-metrics".into())
        .stack_size(256 * 1024)
        .spawn(move || loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    if let Err(e) = serve_one(stream) {
                        tracing::debug!(%peer, error = %e, "metrics scrape failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_what_is_not_a_scrape_plainly() {
        let text = |head: &[u8]| String::from_utf8(answer(head)).unwrap();
        assert!(text(b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert!(text(b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
        assert!(text(b"hello\r\n\r\n").starts_with("HTTP/1.1 400 "));
        assert!(text(b"").starts_with("HTTP/1.1 400 "));
    }
}
