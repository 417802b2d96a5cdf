//! `hftp bench`: the load generator (`hftp-bench`) on the command line.

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hftp_bench::{Config, Dialer, Live, Stop, Workload};

const LONG_ABOUT: &str = "Measure any HFTP server under load.

A few threads (one per core by default), each running an epoll loop over its \
share of the connections, keep --pipeline requests in flight on every \
connection. Every reply is decoded and validated in full (status line, \
sizes, listing names, base64 alphabet and padding, Content-Length); with \
--verify the slice bytes and sizes are also compared with the local files. \
The report gives requests/s, payload MB/s (file bytes delivered by slices), \
wire MB/s (everything received), latency percentiles and errors by kind; \
MB is 10^6 bytes. Given --server-pid, the server's memory (VmRSS summed \
over its process tree, sampled every 50 ms) and CPU time are reported too.

The exit status is 0 when no request failed, 1 otherwise.";

const EXAMPLES: &str = "WORKLOADS:
  metadata:NAME                 get_metadata NAME
  slice:NAME:OFFSET:SIZE        get_slice NAME OFFSET SIZE (base64)
  raw:NAME:OFFSET:SIZE          get_slice NAME OFFSET SIZE raw
  listing                       get_file_listing
  help                          help
  churn                         connect, quit, wait for the close, again
  mixed:W1=N,W2=N,...           requests drawn at random with these weights

EXAMPLES:
  hftp bench 127.0.0.1:19500 metadata:a.txt -c 64 -d 10
  hftp bench 127.0.0.1:19500 slice:big.bin:0:67108864 --requests 20 --verify ./files
  hftp bench 127.0.0.1:19500 'mixed:metadata:a.txt=8,slice:a.txt:0:1024=2' -c 256 -k 4
  hftp bench 127.0.0.1:19500 churn -c 16 -d 5
  hftp bench 127.0.0.1:19500 --hold 10000 -d 30 --server-pid $(pidof hftp)
  hftp bench localhost:19500 metadata:a.txt -c 64 --tls --cacert ca.pem
  hftp bench --base64-speed";

#[derive(clap::Args)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct Args {
    /// Server to measure, HOST:PORT (the port defaults to 19500);
    /// hftps://HOST:PORT measures it over TLS, as --tls does.
    #[arg(value_name = "HOST:PORT", required_unless_present = "base64_speed")]
    server: Option<String>,
    /// What to ask for (see WORKLOADS in --help).
    #[arg(value_name = "WORKLOAD", required_unless_present_any = ["hold", "base64_speed"])]
    workload: Option<String>,
    /// Connections.
    #[arg(short = 'c', long, default_value_t = 1, value_name = "N")]
    conns: usize,
    /// Seconds of load (or of holding with --hold).
    #[arg(short = 'd', long, default_value_t = 10.0, value_name = "SECS")]
    duration: f64,
    /// Stop after this many requests instead of after --duration.
    #[arg(short = 'n', long, value_name = "N", conflicts_with = "duration")]
    requests: Option<u64>,
    /// Requests in flight per connection.
    #[arg(short = 'k', long, default_value_t = 1, value_name = "K")]
    pipeline: usize,
    /// Generator threads (default: one per core, at most one per connection).
    #[arg(short = 't', long, value_name = "N")]
    threads: Option<usize>,
    /// Open N idle connections, hold them for --duration, then check that each answers quit with 0 OK.
    #[arg(long, value_name = "N", conflicts_with_all = ["requests", "workload"])]
    hold: Option<usize>,
    /// Compare slice bytes and metadata sizes with the files of this directory.
    #[arg(long, value_name = "DIR")]
    verify: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Report the memory and CPU of this server process and its children.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// With --server-pid, also sample PSS (shared pages split between processes; fair for fork).
    #[arg(long, requires = "server_pid")]
    pss: bool,
    /// Seconds without a byte on a busy connection before it counts as an error.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    timeout: f64,
    /// Connect through this SOCKS5 proxy (socks5h://HOST:PORT: the proxy
    /// resolves the name, as Tor needs for .onion; socks5://: resolved
    /// here), to see what the path (Tor, say) does to latency and speed.
    #[arg(long, value_name = "URL", conflicts_with = "hold")]
    proxy: Option<String>,
    /// Measure the single-core speed of the server's base64 encoder instead (no server needed).
    #[arg(long)]
    base64_speed: bool,
    /// No progress line on the terminal.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Every connection over TLS: its handshake in the load loop (counted
    /// in the connect time, and per connection with churn), then every
    /// request encrypted. Byte counts are HFTP's, before encryption.
    #[command(flatten)]
    tls: super::TlsArgs,
}

fn resolve(server: &str) -> anyhow::Result<SocketAddr> {
    // hftps://HOST:PORT, hftp://HOST:PORT: the address is the same.
    let server = match server.split_once("://") {
        Some((_, rest)) => rest.trim_end_matches('/'),
        None => server,
    };
    let with_port = if server
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        server.to_string()
    } else {
        format!("{server}:19500")
    };
    with_port
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {server:?}"))?
        .next()
        .with_context(|| format!("{server:?} resolves to no address"))
}

/// Connections to `server` through the SOCKS5 proxy `url`, made by the
/// client library (the same handshake `hftp ls --proxy` makes). TLS, if
/// any, is the loop's to run inside it.
fn dialer(server: &str, url: &str, timeout: Duration) -> anyhow::Result<Dialer> {
    let endpoint = super::proxied(server, url)?.with_timeout(timeout);
    Ok(Dialer::new(move || {
        endpoint
            .open_tcp()
            .map_err(|e| std::io::Error::other(e.to_string()))
    }))
}

fn seconds(secs: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| anyhow::anyhow!("{what} must be a non-negative number of seconds"))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.base64_speed {
        let mbps = hftp_bench::base64_speed(Duration::from_secs(2));
        if args.json {
            println!("{{\"base64_encode_mbps\": {mbps:.1}}}");
        } else {
            println!("base64 encode (base64-simd, one core): {mbps:.0} MB/s of input");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(server) = args.server.as_deref() else {
        bail!("HOST:PORT is required")
    };
    let timeout = seconds(args.timeout, "--timeout")?.max(Duration::from_millis(100));
    args.tls.warn();
    let endpoint = hftp_client::Endpoint::parse(server).map_err(|e| anyhow::anyhow!("{e}"))?;
    let endpoint = args
        .tls
        .apply(endpoint.with_timeout(timeout), &mut None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let tls = endpoint.tls.is_some().then_some(endpoint);
    let (addr, dial) = match &args.proxy {
        // The name may mean something to the proxy alone (.onion).
        Some(url) => (
            SocketAddr::from(([0, 0, 0, 0], 0)),
            Some(dialer(server, url, timeout)?),
        ),
        None => (resolve(server)?, None),
    };
    let workload = match &args.workload {
        Some(w) => w.parse::<Workload>().map_err(|e| anyhow::anyhow!(e))?,
        None => Workload::Requests(vec![]),
    };
    if args.conns == 0 || args.pipeline == 0 {
        bail!("--conns and --pipeline must be at least 1");
    }
    let cores = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let stop = match args.requests {
        Some(n) => Stop::Requests(n),
        None => Stop::Duration(seconds(args.duration, "--duration")?),
    };
    let cfg = Config {
        target: match &args.proxy {
            Some(url) => format!("{server} through {url}"),
            None => server.to_string(),
        },
        dial,
        tls,
        workload,
        conns: args.conns,
        threads: args.threads.unwrap_or(cores).max(1),
        pipeline: args.pipeline,
        stop,
        timeout,
        verify: args.verify.clone(),
        server_pid: args.server_pid,
        pss: args.pss,
        hold: args.hold,
        ..Config::new(addr)
    };

    let live = Arc::new(Live::default());
    let done = Arc::new(AtomicBool::new(false));
    let progress = (!args.quiet && std::io::stderr().is_terminal()).then(|| {
        spawn_progress(
            Arc::clone(&live),
            Arc::clone(&done),
            stop,
            args.hold.is_some(),
        )
    });
    let result = hftp_bench::run(&cfg, live);
    done.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        p.join().ok();
    }
    let report = result.map_err(|e| anyhow::anyhow!(e))?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    let ok = match &report.hold {
        Some(h) => h.answered_quit == h.conns && report.errors == 0,
        None => report.errors == 0,
    };
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A one-line live display on stderr, refreshed four times a second.
fn spawn_progress(
    live: Arc<Live>,
    done: Arc<AtomicBool>,
    stop: Stop,
    hold: bool,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let bar = match stop {
            Stop::Requests(n) if !hold => indicatif::ProgressBar::new(n),
            Stop::Duration(d) if !hold => indicatif::ProgressBar::new(d.as_millis() as u64),
            _ => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let start = Instant::now();
        let (mut last_n, mut last_t) = (0u64, start);
        while !done.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(250));
            let n = live.requests.load(Ordering::Relaxed);
            let now = Instant::now();
            let rate =
                (n - last_n.min(n)) as f64 / now.duration_since(last_t).as_secs_f64().max(1e-3);
            (last_n, last_t) = (n, now);
            match stop {
                Stop::Requests(_) => bar.set_position(n),
                Stop::Duration(_) => bar.set_position(start.elapsed().as_millis() as u64),
            }
            bar.set_message(format!(
                "{n} req ({rate:.0}/s), {} errors, {:.1} MB payload, {:.1} MB received",
                live.errors.load(Ordering::Relaxed),
                live.payload.load(Ordering::Relaxed) as f64 / 1e6,
                live.rx.load(Ordering::Relaxed) as f64 / 1e6,
            ));
        }
        bar.finish_and_clear();
    })
}
