//! # hftp-bench — a load generator for any HFTP server
//!
//! `hftp bench` drives a server with many connections from a few OS
//! threads, each running its own epoll loop ([`engine`]): no thread per
//! connection, pipelined requests, every reply decoded and validated in
//! full. It reports requests/s, payload and wire throughput, latency
//! percentiles from an HDR histogram, errors by kind, and — given the
//! server's pid — the server's memory and CPU read from `/proc`
//! ([`procstat`]). `--hold N` ([`hold`]) measures idle connections instead.
//! With [`Config::tls`] every connection speaks TLS, its handshake run in
//! the loop, its records encrypted and decrypted on the generator's threads.
//!
//! ```no_run
//! use hftp_bench::{run, Config, Stop};
//! let cfg = Config {
//!     workload: "metadata:a.txt".parse().unwrap(),
//!     conns: 64,
//!     stop: Stop::Requests(100_000),
//!     ..Config::new("127.0.0.1:19500".parse().unwrap())
//! };
//! let report = run(&cfg, Default::default()).unwrap();
//! println!("{}", report.to_text());
//! ```

pub mod engine;
pub mod hold;
pub mod procstat;
pub mod stats;
mod wire;
pub mod workload;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use engine::Dialer;
pub use engine::Stop;
pub use hold::HoldReport;
pub use procstat::ServerUsage;
pub use stats::{ErrorKind, Latency, Live, Stats};
pub use workload::{Op, Workload};

/// One run.
#[derive(Clone, Debug)]
pub struct Config {
    pub addr: SocketAddr,
    /// How `addr` was written, for the report.
    pub target: String,
    /// Open connections with this instead of connecting to `addr` (a
    /// SOCKS5 proxy, as Tor's).
    pub dial: Option<Dialer>,
    /// Speak TLS on every connection as this endpoint says (the client
    /// library's: the name the certificate must carry, whom to trust, our
    /// certificate). Through `dial`, TLS runs inside the dialed stream.
    pub tls: Option<hftp_client::Endpoint>,
    pub workload: Workload,
    pub conns: usize,
    /// Generator threads, each with its own epoll loop.
    pub threads: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    pub stop: Stop,
    /// No byte for this long on a busy connection is an error (`timeout`).
    pub timeout: Duration,
    /// Compare replies with the files of this directory.
    pub verify: Option<PathBuf>,
    /// Sample this server process (and its children) from `/proc`.
    pub server_pid: Option<u32>,
    /// Also sample PSS (proportional set size; costly for many processes).
    pub pss: bool,
    /// `--hold N`: hold N idle connections for the stop duration instead.
    pub hold: Option<usize>,
}

impl Config {
    /// Defaults: metadata of nothing in particular, 1 connection, 10 s.
    pub fn new(addr: SocketAddr) -> Config {
        Config {
            addr,
            target: addr.to_string(),
            dial: None,
            tls: None,
            workload: Workload::Requests(vec![]),
            conns: 1,
            threads: 1,
            pipeline: 1,
            stop: Stop::Duration(Duration::from_secs(10)),
            timeout: Duration::from_secs(30),
            verify: None,
            server_pid: None,
            pss: false,
            hold: None,
        }
    }
}

/// Everything a run measured. Rates use MB = 10^6 bytes.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub workload: String,
    pub conns: u64,
    pub threads: u64,
    pub pipeline: u64,
    /// Seconds of load (after the connections were opened).
    pub elapsed_s: f64,
    /// Seconds to open the connections (the slowest thread).
    pub connect_s: f64,
    /// Replies received complete and valid.
    pub requests: u64,
    pub rps: f64,
    /// File bytes delivered by slices (decoded base64 or raw body).
    pub payload_bytes: u64,
    pub payload_mbps: f64,
    /// Bytes read from the server (everything on the wire, base64 included).
    pub rx_bytes: u64,
    pub rx_mbps: f64,
    pub tx_bytes: u64,
    pub latency_us: Latency,
    /// Requests that failed.
    pub errors: u64,
    pub error_kinds: BTreeMap<String, ErrorKind>,
    /// Connections that got at least one reply (fewer than `conns` when the
    /// server serves only some clients at a time, e.g. `--model pool`).
    pub conns_served: u64,
    pub reconnects: u64,
    /// CPU seconds of this generator during the run.
    pub generator_cpu_s: f64,
    pub server: Option<ServerUsage>,
    pub hold: Option<HoldReport>,
}

fn mb(bytes: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        bytes as f64 / secs / 1e6
    } else {
        0.0
    }
}

/// Runs the load (or the hold test) described by `cfg`.
pub fn run(cfg: &Config, live: Arc<Live>) -> Result<Report, String> {
    procstat::raise_fd_limit();
    if let Some(n) = cfg.hold {
        if cfg.dial.is_some() {
            return Err("--hold connects directly: it cannot go through a proxy".into());
        }
        return run_hold(cfg, n);
    }
    if matches!(&cfg.workload, Workload::Requests(ops) if ops.is_empty()) {
        return Err("no workload given".into());
    }
    let stop = match cfg.stop {
        Stop::Requests(0) => return Err("--requests must be at least 1".into()),
        s => s,
    };
    let shared = Arc::new(engine::Shared::new(
        engine::Target {
            addr: cfg.addr,
            label: cfg.target.clone(),
            dial: cfg.dial.clone(),
            tls: cfg.tls.clone(),
        },
        &cfg.workload,
        cfg.pipeline,
        stop,
        cfg.timeout,
        cfg.verify.as_deref(),
        live,
    )?);
    let conns = cfg.conns.max(1);
    let threads = cfg.threads.clamp(1, conns);
    let ready = Arc::new(Barrier::new(threads + 1));
    let go = Arc::new(Barrier::new(threads + 1));
    let mut handles = Vec::new();
    for t in 0..threads {
        // Spread the connections evenly.
        let n = conns / threads + usize::from(t < conns % threads);
        let worker = engine::Worker::new(Arc::clone(&shared), n, t as u64 + 1)
            .map_err(|e| format!("poll: {e}"))?;
        let (ready, go) = (Arc::clone(&ready), Arc::clone(&go));
        let h = thread::Builder::new()
            .name(format!("bench-{t}"))
            .spawn(move || worker.run(&ready, &go))
            .map_err(|e| format!("cannot start a generator thread: {e}"))?;
        handles.push(h);
    }
    ready.wait();
    let sampler = cfg
        .server_pid
        .and_then(|pid| procstat::Sampler::start(pid, cfg.pss));
    let cpu0 = procstat::self_cpu();
    go.wait();
    let start = Instant::now();
    let mut stats = Stats::default();
    let mut connect = Duration::ZERO;
    let mut error = None;
    for h in handles {
        let r = h
            .join()
            .map_err(|_| "a generator thread panicked".to_string())?;
        connect = connect.max(r.connect);
        error = error.or(r.error);
        stats.merge(r.stats);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let generator_cpu_s = procstat::self_cpu() - cpu0;
    let server = sampler.map(procstat::Sampler::finish);
    if let Some(e) = error {
        return Err(e);
    }
    Ok(report(
        cfg,
        threads,
        stats,
        elapsed,
        connect.as_secs_f64(),
        generator_cpu_s,
        server,
        None,
    ))
}

#[allow(clippy::too_many_arguments)]
fn report(
    cfg: &Config,
    threads: usize,
    stats: Stats,
    elapsed: f64,
    connect_s: f64,
    generator_cpu_s: f64,
    server: Option<ServerUsage>,
    hold: Option<HoldReport>,
) -> Report {
    Report {
        target: cfg.target.clone(),
        workload: if hold.is_some() {
            "hold".into()
        } else {
            cfg.workload.to_string()
        },
        conns: cfg.hold.unwrap_or(cfg.conns) as u64,
        threads: threads as u64,
        pipeline: cfg.pipeline as u64,
        elapsed_s: elapsed,
        connect_s,
        requests: stats.completed,
        rps: if elapsed > 0.0 {
            stats.completed as f64 / elapsed
        } else {
            0.0
        },
        payload_bytes: stats.payload,
        payload_mbps: mb(stats.payload, elapsed),
        rx_bytes: stats.rx,
        rx_mbps: mb(stats.rx, elapsed),
        tx_bytes: stats.tx,
        latency_us: stats.latency(),
        errors: stats.error_count(),
        error_kinds: stats.errors.clone(),
        conns_served: stats.served,
        reconnects: stats.reconnects,
        generator_cpu_s,
        server,
        hold,
    }
}

fn run_hold(cfg: &Config, n: usize) -> Result<Report, String> {
    let hold_for = match cfg.stop {
        Stop::Duration(d) => d,
        Stop::Requests(_) => Duration::ZERO,
    };
    let mut stats = Stats::default();
    let cpu0 = procstat::self_cpu();
    // Sampled from before the first connection to after the last quit; the
    // memory "while held" is taken between the hold and the quits.
    let sampler = cfg
        .server_pid
        .and_then(|pid| procstat::Sampler::start(pid, cfg.pss));
    let mut held_mem = None;
    let start = Instant::now();
    let hold = hold::hold(
        cfg.addr,
        cfg.tls.as_ref(),
        n,
        hold_for,
        cfg.timeout,
        &mut stats,
        || {
            held_mem = cfg
                .server_pid
                .map(|pid| procstat::tree_memory(pid, cfg.pss));
        },
    )
    .map_err(|e| format!("poll: {e}"))?;
    let elapsed = start.elapsed().as_secs_f64();
    let generator_cpu_s = procstat::self_cpu() - cpu0;
    let mut server = sampler.map(procstat::Sampler::finish);
    if let (Some(s), Some(m)) = (server.as_mut(), held_mem) {
        // `end` is the memory while all connections were held.
        s.end = m;
    }
    stats.served = hold.answered_quit;
    let connect_s = hold.connect_s;
    if hold.connected == 0 && n > 0 {
        let why = stats
            .errors
            .values()
            .next()
            .map(|e| e.example.clone())
            .unwrap_or_default();
        return Err(format!("cannot connect to {}: {why}", cfg.addr));
    }
    Ok(report(
        cfg,
        1,
        stats,
        elapsed,
        connect_s,
        generator_cpu_s,
        server,
        Some(hold),
    ))
}

fn human_bytes(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

fn human_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl Report {
    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "hftp bench {}: {}, {} connection(s) on {} thread(s), pipeline {}, {:.2} s",
            self.target, self.workload, self.conns, self.threads, self.pipeline, self.elapsed_s
        );
        if let Some(h) = &self.hold {
            let _ = writeln!(
                s,
                "  hold        {}/{} connected in {:.3} s, held {:.1} s, {} lost while idle",
                h.connected, h.conns, h.connect_s, h.held_s, h.lost_while_idle
            );
            let _ = writeln!(
                s,
                "  quit        {}/{} answered 0 OK and closed, in {:.3} s",
                h.answered_quit, h.connected, h.quit_s
            );
        } else {
            let _ = writeln!(
                s,
                "  requests    {} ({:.1}/s), {} error(s), {}/{} connections served, opened in {:.3} s",
                self.requests, self.rps, self.errors, self.conns_served, self.conns, self.connect_s
            );
            if self.payload_bytes > 0 {
                let _ = writeln!(
                    s,
                    "  payload     {:.1} MB/s ({})",
                    self.payload_mbps,
                    human_bytes(self.payload_bytes as f64)
                );
            }
            let _ = writeln!(
                s,
                "  wire        {:.1} MB/s received ({}), {} sent",
                self.rx_mbps,
                human_bytes(self.rx_bytes as f64),
                human_bytes(self.tx_bytes as f64)
            );
            let l = &self.latency_us;
            let _ = writeln!(
                s,
                "  latency     p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                human_us(l.p50),
                human_us(l.p90),
                human_us(l.p99),
                human_us(l.p999),
                human_us(l.max)
            );
        }
        if let Some(sv) = &self.server {
            let _ = writeln!(
                s,
                "  server      pid {}: RSS {} at start, peak {}, {} at end ({} process(es), {} thread(s) at peak), CPU {:.2} s",
                sv.pid,
                mib(sv.start.rss_kib),
                mib(sv.peak.rss_kib),
                mib(sv.end.rss_kib),
                sv.peak.processes,
                sv.peak.threads,
                sv.cpu_s
            );
        }
        let _ = writeln!(s, "  generator   CPU {:.2} s", self.generator_cpu_s);
        for (kind, e) in &self.error_kinds {
            let _ = writeln!(
                s,
                "  error       {kind}: {} (first: {})",
                e.count, e.example
            );
        }
        s
    }
}

/// Single-core throughput of the server's base64 encoder (the encoding
/// limit): MB of input encoded per second, in the server's chunk size.
pub fn base64_speed(duration: Duration) -> f64 {
    use hftp_proto::response::{encode_base64, BASE64_CHUNK};
    let data: Vec<u8> = (0..BASE64_CHUNK * 256)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut out = Vec::with_capacity(BASE64_CHUNK * 2);
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed() < duration {
        for chunk in data.chunks(BASE64_CHUNK) {
            out.clear();
            encode_base64(chunk, &mut out);
            std::hint::black_box(&out);
        }
        bytes += data.len() as u64;
    }
    mb(bytes, start.elapsed().as_secs_f64())
}
