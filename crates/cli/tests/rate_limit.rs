//! `hftp serve --limit-rate`, through every model over real sockets: a
//! limited slice is never faster than the rate allows (its burst aside),
//! in both modes, while a request with no body is answered at once. The
//! exact pacing is checked in virtual time (crates/server/tests/
//! connection.rs); here only the bound a loaded machine cannot break: a
//! slow machine can make the transfer slower, never faster. The measured
//! figures are in the notes and BENCHMARKS.md, not asserted.
//!
//! Tier: quick.

use crate::support::{self, Server};

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// 256 KiB a second, and a file of 640 KiB: at least 2.1 s once the first
/// burst (a tenth of a second's worth) is spent.
const RATE: u64 = 256 * 1024;
const SIZE: usize = 640 * 1024;

fn limited(model: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.path().join("big.bin"), &data).unwrap();
    let server = Server::builder(dir.path())
        .model(model)
        .arg("--limit-rate")
        .arg("256K")
        .start();
    for (mode, wire) in [(" raw", SIZE), ("", SIZE.div_ceil(3) * 4)] {
        let mut s = support::connect(server.addr(), Duration::from_secs(60));
        // A request without a body is not held by the limit.
        s.write_all(b"get_metadata big.bin\r\n").unwrap();
        let expected = format!("0 OK\r\n{SIZE}\r\n");
        let mut head = vec![0u8; expected.len()];
        s.read_exact(&mut head).unwrap();
        assert_eq!(head, expected.as_bytes(), "--model {model}");
        let started = Instant::now();
        s.write_all(format!("get_slice big.bin 0 {SIZE}{mode}\r\n").as_bytes())
            .unwrap();
        let head = if mode.is_empty() {
            "0 OK\r\n".len()
        } else {
            format!("0 OK\r\nContent-Length: {SIZE}\r\n\r\n").len()
        };
        let tail = if mode.is_empty() { 2 } else { 0 };
        let mut got = vec![0u8; head + wire + tail];
        s.read_exact(&mut got).unwrap();
        let took = started.elapsed();
        if !mode.is_empty() {
            assert!(
                got[head..] == data[..],
                "--model {model}: the raw bytes differ"
            );
        }
        let burst = RATE / 10;
        let least = Duration::from_secs_f64((head + wire) as f64 / RATE as f64)
            .saturating_sub(Duration::from_secs_f64(burst as f64 / RATE as f64));
        assert!(
            took >= least.mul_f64(0.95),
            "--model {model}{mode}: {} bytes in {took:?}, faster than 256 KiB/s allows ({least:?})",
            head + wire
        );
    }
}

per_model!(limited);
