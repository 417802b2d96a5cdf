//! `hftp serve`: parse options, bind, print the banner, run the driver.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use hftp_server::session::SessionConfig;
use hftp_server::storage::{LocalDir, LowSpeed, ObjectStorage, ObjectUrl, StatCache, Storage};
use hftp_server::{listen, AddressRules, Config, Model, TlsSettings};

use crate::logging::{self, LogFormat};

/// `--model`: the server's own [`Model`], its names and help included, so
/// that a new model needs no change here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelArg(pub Model);

/// Every model, in the order `--help` lists them.
const MODELS: [ModelArg; Model::ALL.len()] = {
    let mut all = [ModelArg(Model::Async); Model::ALL.len()];
    let mut i = 0;
    while i < all.len() {
        all[i] = ModelArg(Model::ALL[i]);
        i += 1;
    }
    all
};

impl clap::ValueEnum for ModelArg {
    fn value_variants<'a>() -> &'a [Self] {
        &MODELS
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.0.name()).help(self.0.summary()))
    }
}

impl From<ModelArg> for Model {
    fn from(m: ModelArg) -> Model {
        m.0
    }
}

#[derive(clap::Args)]
#[command(after_long_help = "EXAMPLES:
    hftp serve -d testdata                 serve ./testdata on port 19500, all IPv4 interfaces
    hftp serve -d testdata -a 127.0.0.1    this host only
    hftp serve -d files -p 0 -a ::         any free port, every IPv4 and IPv6 interface
    hftp serve -d files --model pool --workers 8
    hftp serve -d files --model uring --workers 2   two threads, one io_uring each
    hftp serve --storage file:///srv/files  the same as -d /srv/files

  Serving a bucket of an S3-compatible store (Garage, MinIO, Ceph RGW, AWS S3):
    AWS_ENDPOINT_URL=http://127.0.0.1:3900 AWS_ALLOW_HTTP=true AWS_REGION=garage \
    AWS_ACCESS_KEY_ID=GK... AWS_SECRET_ACCESS_KEY=... \
    hftp serve --storage s3://files/public --stat-cache 5
  serves the objects `public/NAME` of bucket `files` (keys with a further `/`
  and keys that are not valid HFTP names are not served). Credentials, region and
  endpoint come from the standard AWS_* variables only (AWS_SESSION_TOKEN too);
  requests are path-style. Without credentials serve exits 1 at once, naming the
  variables to set: the EC2 instance metadata service (169.254.169.254) is asked
  for credentials only with --s3-instance-credentials. Before it listens, serve
  lists the bucket once (one request, at most 5 s, no retry): when the store
  cannot be reached, the bucket does not exist or access is denied, it prints
  one line saying what to check and exits 1, as for any start-up failure (a
  port in use, a missing directory). With --s3-start-anyway it logs that line
  as a warning and serves: a store that cannot be reached is then answered 199
  after at most 20 s (connect 2 s, request 10 s, 3 retries), and the next
  request tries again.

Exit status: 0 after SIGINT/SIGTERM; 1 when the server cannot start (the message,
one line on standard error, says why); 130/143 on a second SIGINT/SIGTERM.

Send SIGINT (Ctrl-C) or SIGTERM to stop: new connections are refused, answers in
flight finish (at most --shutdown-grace), and the server exits 0. A second
SIGINT/SIGTERM exits at once (status 130/143). SIGHUP is ignored: nothing needs
reloading (the directory is read live); restart to change an option.

Every option but -v/-q can also come from an HFTP_* environment variable (shown as
[env: ...] above); a command-line option wins over its variable. HFTP_ADDRESS takes a
comma-separated list.")]
pub struct Args {
    /// Directory to serve (read live: files added or removed are seen at once).
    #[arg(
        short = 'd',
        long = "directory",
        default_value = ".",
        value_name = "DIR",
        env = "HFTP_DIRECTORY"
    )]
    directory: PathBuf,
    /// What to serve, as a URL instead of -d: file:///PATH (a directory) or
    /// s3://BUCKET[/PREFIX] (a bucket of an S3-compatible store; see below).
    #[arg(
        long,
        value_name = "URL",
        env = "HFTP_STORAGE",
        conflicts_with = "directory"
    )]
    storage: Option<String>,
    /// Seconds to keep sizes and listings in memory (0: every answer is live,
    /// as the protocol wants). For a remote store when some staleness is fine.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "SECONDS",
        env = "HFTP_STAT_CACHE"
    )]
    stat_cache: u64,
    /// With --storage s3://... on a plain-http endpoint: read each slice
    /// from a connection of its own, raw ones spliced from the store's
    /// socket to the client's (no copy through the server), base64 ones
    /// read straight into the block they are encoded from. false streams
    /// them through the S3 client instead, for a store that refuses
    /// presigned requests.
    #[arg(
        long,
        default_value_t = true,
        value_name = "BOOL",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::Set,
        env = "HFTP_S3_SPLICE"
    )]
    s3_splice: bool,
    /// With --storage s3://...: seconds a request waits for the first byte
    /// of the store's answer (a listing, a size, the start of a slice),
    /// retries and the wait for a free call for the same object included;
    /// then it is answered 199 and the client never waits longer for a
    /// status line. At most 8 calls per object go to the store at once.
    #[arg(
        long,
        default_value_t = 10,
        value_name = "SECS",
        env = "HFTP_S3_FIRST_BYTE_TIMEOUT"
    )]
    s3_first_byte_timeout: u64,
    /// With --storage s3://...: the low-speed floor of a slice's body, in
    /// bytes a second, as curl's --speed-limit: a store that sends less
    /// for --s3-low-speed-time seconds (only the time spent waiting for
    /// the store counts, never a slow client's) ends the slice, closed
    /// short and logged. 0: only a store that sends nothing that long.
    #[arg(
        long,
        default_value_t = 16384,
        value_name = "BYTES",
        env = "HFTP_S3_LOW_SPEED_LIMIT"
    )]
    s3_low_speed_limit: u64,
    /// With --storage s3://...: the window of --s3-low-speed-limit, and
    /// the longest a client waits for a byte once a slice's body started.
    #[arg(
        long,
        default_value_t = 10,
        value_name = "SECS",
        env = "HFTP_S3_LOW_SPEED_TIME"
    )]
    s3_low_speed_time: u64,
    /// With --storage s3://...: serve even if the start-up check of the
    /// bucket fails (store unreachable, bucket missing, access denied),
    /// logging why as a warning; requests that need the store are answered
    /// 199 until it can serve them. For a store that comes up after the
    /// server. Missing credentials still stop it.
    #[arg(long, env = "HFTP_S3_START_ANYWAY")]
    s3_start_anyway: bool,
    /// With --storage s3://... on an EC2 instance: when no credentials are
    /// configured in AWS_* variables, use the instance's role, from its
    /// metadata service (169.254.169.254, or AWS_METADATA_ENDPOINT).
    /// Without it that service is never asked.
    #[arg(long, env = "HFTP_S3_INSTANCE_CREDENTIALS")]
    s3_instance_credentials: bool,
    /// TCP port; 0 picks a free one (the banner prints it).
    #[arg(short = 'p', long, default_value_t = 19500, env = "HFTP_PORT")]
    port: u16,
    /// Address to listen on: IPv4, IPv6 or a host name; repeat to listen on several.
    /// 0.0.0.0 (or ::) accepts clients from other machines; 127.0.0.1 (or localhost) only from this one.
    #[arg(
        short = 'a',
        long = "address",
        default_value = "0.0.0.0",
        value_name = "ADDR",
        env = "HFTP_ADDRESS",
        value_delimiter = ','
    )]
    addresses: Vec<String>,
    /// Concurrency strategy.
    #[arg(short = 'm', long, value_enum, default_value_t = ModelArg(Model::Async), env = "HFTP_MODEL")]
    model: ModelArg,
    /// Worker threads: the pool size (pool), runtime threads (async) or rings (uring). Default: 2 x cores for pool, cores for async and uring.
    #[arg(short = 'w', long, env = "HFTP_WORKERS")]
    workers: Option<usize>,
    /// Connections served at once. Beyond it, new connections are accepted and closed at once (logged once a second).
    #[arg(long, default_value_t = 16384, env = "HFTP_MAX_CONNECTIONS")]
    max_connections: usize,
    /// Connections from one client address at once (0: no limit); more are closed at once.
    #[arg(long, default_value_t = 0, value_name = "N", env = "HFTP_MAX_PER_IP")]
    max_per_ip: usize,
    /// Seconds without a request byte before a connection is closed quietly.
    #[arg(
        long,
        default_value_t = 300,
        value_name = "SECS",
        env = "HFTP_IDLE_TIMEOUT"
    )]
    idle_timeout: u64,
    /// Seconds a client may read nothing of an answer before it is dropped.
    #[arg(
        long,
        default_value_t = 60,
        value_name = "SECS",
        env = "HFTP_WRITE_TIMEOUT"
    )]
    write_timeout: u64,
    /// Longest request line in bytes; longer lines are answered 101.
    #[arg(long, default_value_t = hftp_proto::DEFAULT_MAX_LINE, env = "HFTP_MAX_LINE")]
    max_line: usize,
    /// Seconds answers in flight may take to finish on SIGINT/SIGTERM.
    #[arg(
        long,
        default_value_t = 10,
        value_name = "SECS",
        env = "HFTP_SHUTDOWN_GRACE"
    )]
    shutdown_grace: u64,
    /// After binding, switch to this user (and its groups) and never serve as root.
    /// Lets a root-started server use a port below 1024 safely.
    #[arg(short = 'u', long, value_name = "NAME", env = "HFTP_USER")]
    user: Option<String>,
    /// Follow symbolic links that leave the served directory (off: only links staying inside are served).
    #[arg(long, env = "HFTP_FOLLOW_SYMLINKS")]
    follow_symlinks: bool,
    /// More log output (-v: every request, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Less log output (-q: warnings only, -qq: nothing).
    #[arg(short, long, action = clap::ArgAction::Count)]
    quiet: u8,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "HFTP_LOG_FORMAT")]
    log_format: LogFormat,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (for example
    /// 127.0.0.1:9119; port 0 picks a free one, the banner prints it).
    /// Requests by command and status, connections, slice bytes, latencies,
    /// storage operations; exact in every model. Off by default.
    #[arg(long, value_name = "ADDR:PORT", env = "HFTP_METRICS")]
    metrics: Option<String>,
    /// Behind a load balancer: every connection must begin with a PROXY
    /// protocol header (v1 or v2, as HAProxy's `send-proxy`/`send-proxy-v2`
    /// or nginx's `proxy_protocol` send it); the client it names is the one
    /// --max-per-ip counts and the logs show (peer=, with via= the proxy).
    /// A connection without a valid header is closed; a LOCAL header (a
    /// health check) is served as the proxy itself. Use it only behind
    /// such a proxy: clients connecting directly are refused.
    /// Example: hftp serve -d files -a 127.0.0.1 --proxy-protocol (see
    /// dist/haproxy.cfg).
    #[arg(long, env = "HFTP_PROXY_PROTOCOL")]
    proxy_protocol: bool,
    /// With --proxy-protocol: seconds a new connection may take to send its
    /// whole PROXY header before it is closed.
    #[arg(
        long,
        default_value_t = 5,
        value_name = "SECS",
        env = "HFTP_PROXY_HEADER_TIMEOUT"
    )]
    proxy_header_timeout: u64,
    /// Serve HFTP over TLS: the certificate chain (PEM, the server's
    /// certificate first, then its intermediates). Needs --tls-key. Every
    /// connection must then begin with a TLS handshake (TLS 1.3 or 1.2,
    /// ALPN "hftp"); clients connect with hftps://HOST:PORT or --tls. Read
    /// once at start, before --user drops privileges: a renewed
    /// certificate needs a restart. See docs/tls.md.
    #[arg(long, value_name = "FILE", env = "HFTP_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1). Never
    /// logged.
    #[arg(long, value_name = "FILE", env = "HFTP_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// With --tls-cert: admit only clients whose certificate chains to a CA
    /// in this PEM file (mutual TLS); the log names each client's
    /// certificate subject (tls=... client=CN=...).
    #[arg(
        long,
        value_name = "FILE",
        env = "HFTP_TLS_CLIENT_CA",
        requires = "tls_cert"
    )]
    tls_client_ca: Option<PathBuf>,
    /// With --tls-cert: seconds a new connection may take to complete its
    /// TLS handshake before it is closed (counted as refused, as a late
    /// PROXY header is).
    #[arg(
        long,
        default_value_t = 10,
        value_name = "SECS",
        env = "HFTP_TLS_HANDSHAKE_TIMEOUT"
    )]
    tls_handshake_timeout: u64,
    /// Let in only clients from these address ranges (ADDR/LEN or one
    /// address; repeat, or separate with commas). Checked before any byte
    /// is read; under --proxy-protocol, on the client the header names.
    #[arg(
        long,
        value_name = "CIDR",
        env = "HFTP_ALLOW",
        value_delimiter = ',',
        value_parser = hftp_server::parse_cidr
    )]
    allow: Vec<ipnet::IpNet>,
    /// Refuse clients from these address ranges, even inside an --allow
    /// range (deny wins). Refusals are counted in the metrics
    /// (hftp_connections_refused{limit="address"}).
    #[arg(
        long,
        value_name = "CIDR",
        env = "HFTP_DENY",
        value_delimiter = ',',
        value_parser = hftp_server::parse_cidr
    )]
    deny: Vec<ipnet::IpNet>,
    /// Limit each connection's answer bodies to RATE bytes a second, as
    /// curl's --limit-rate: a number, or with K, M or G (KiB, MiB, GiB);
    /// at least 1K. Bursts stay within a tenth of a second's worth. Every
    /// model; off by default.
    #[arg(long, value_name = "RATE", env = "HFTP_LIMIT_RATE", value_parser = parse_rate)]
    limit_rate: Option<u64>,
}

/// `--limit-rate`: `100000`, `100K`, `1.5M`, `1G` (binary units, as curl).
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let scale: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => {
            return Err(format!(
                "{text:?}: the unit must be K, M or G (bytes a second)"
            ))
        }
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a rate: write 500K, 2M or a number of bytes"))?;
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes < 1024.0 {
        return Err(format!(
            "{text:?}: the rate must be at least 1K (1024 bytes a second)"
        ));
    }
    Ok(bytes.min(u64::MAX as f64) as u64)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    logging::init(args.verbose, args.quiet, args.log_format);
    ignore_hangup();
    let served = Served::open(&args)?;
    let model = Model::from(args.model);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let workers = args.workers.unwrap_or(if model == Model::Pool {
        2 * cores
    } else {
        cores
    });
    if workers == 0 || args.max_connections == 0 {
        bail!("--workers and --max-connections must be at least 1");
    }
    let proxy_protocol = args
        .proxy_protocol
        .then(|| seconds(args.proxy_header_timeout.max(1)));
    // Read before privileges are dropped: the key may be readable by root
    // only (as systemd's LoadCredential= hands it over).
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsSettings {
            config: hftp_server::tls_server_config(cert, key, args.tls_client_ca.as_deref())
                .map_err(|e| anyhow::anyhow!("--tls-cert/--tls-key: {e}"))?,
            handshake_timeout: seconds(args.tls_handshake_timeout.max(1)),
        }),
        _ => None,
    };
    let fd_limit = listen::raise_fd_limit();
    let listeners = bind_all(&args.addresses, args.port)?;
    let metrics = match &args.metrics {
        Some(addr) => Some(bind_metrics(addr)?),
        None => None,
    };
    let user = match &args.user {
        Some(name) => {
            let user = hftp_server::privileges::drop_to(name)?;
            if let Served::Local(dir) = &served {
                // The served directory must still be reachable as that user.
                LocalDir::new(dir.root(), args.follow_symlinks).with_context(|| {
                    format!("user {name} cannot access {}", dir.root().display())
                })?;
            }
            format!(", user {} (uid {})", user.name, user.uid)
        }
        None => String::new(),
    };

    let mut banner = format!(
        "hftp {} serving {} (model {model}",
        env!("CARGO_PKG_VERSION"),
        served.describe()
    );
    if args.stat_cache > 0 {
        banner += &format!(", sizes and listings cached {} s", args.stat_cache);
    }
    match model {
        Model::Pool => {
            banner += &format!(", {workers} workers: at most {workers} requests worked on at once")
        }
        Model::Async => banner += &format!(", {workers} threads"),
        Model::Uring => banner += &format!(", {workers} rings"),
        _ => {}
    }
    if proxy_protocol.is_some() {
        banner += ", PROXY protocol header required";
    }
    if tls.is_some() {
        banner += if args.tls_client_ca.is_some() {
            ", TLS with client certificates"
        } else {
            ", TLS"
        };
    }
    if let Some(rate) = args.limit_rate {
        banner += &format!(
            ", bodies limited to {}/s a connection",
            hftp_client::iec(rate)
        );
    }
    if !args.allow.is_empty() || !args.deny.is_empty() {
        banner += &format!(
            ", {} allowed and {} denied address ranges",
            args.allow.len(),
            args.deny.len()
        );
    }
    banner += &format!(
        ", max {} connections, {fd_limit} descriptors{user})\n",
        args.max_connections
    );
    for l in &listeners {
        let addr = l.local_addr()?;
        banner += &format!("listening on {addr} ({})\n", reach(addr));
    }
    if let Some(l) = &metrics {
        let addr = l.local_addr()?;
        banner += &format!("metrics on http://{addr}/metrics ({})\n", reach(addr));
        hftp_server::metrics::install(model.name(), served.backend())
            .context("cannot set up the metrics")?;
    }

    let config = Config {
        session: SessionConfig {
            storage: served.into_storage(args.stat_cache),
            max_line: args.max_line,
        },
        model,
        workers,
        max_connections: args.max_connections,
        max_per_ip: args.max_per_ip,
        idle_timeout: seconds(args.idle_timeout.max(1)),
        write_timeout: seconds(args.write_timeout.max(1)),
        shutdown_grace: seconds(args.shutdown_grace),
        metrics: metrics.map(Arc::new),
        proxy_protocol,
        tls,
        address_rules: AddressRules::new(args.allow, args.deny),
        limit_rate: args.limit_rate,
    };
    if config.tls.is_some() {
        // Why raw slices lose sendfile/splice under TLS, once.
        tracing::info!(
            kernel_tls = hftp_server::ktls_available(),
            "TLS by rustls in user space: raw slices are read and encrypted, not sent with sendfile or splice"
        );
    }
    // The banner goes out once signals are handled: whoever waits for it may
    // stop the server at once.
    let announce = Box::new(move || {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(banner.as_bytes());
        let _ = stdout.flush();
    });
    hftp_server::serve(config, listeners, announce).context("server failed")?;
    Ok(ExitCode::SUCCESS)
}

/// The backend chosen by -d or --storage.
enum Served {
    Local(LocalDir),
    Object(ObjectStorage),
}

impl Served {
    fn open(args: &Args) -> anyhow::Result<Served> {
        let directory = match args.storage.as_deref() {
            None => args.directory.clone(),
            Some(url) if url.starts_with("s3://") => {
                let url = ObjectUrl::parse(url).map_err(anyhow::Error::msg)?;
                let storage = ObjectStorage::from_env(url.clone(), args.s3_instance_credentials)
                    .map_err(|e| anyhow::anyhow!("cannot serve {url}: {e}"))?
                    .with_splice(args.s3_splice)
                    .with_first_byte_timeout(seconds(args.s3_first_byte_timeout.max(1)))
                    .with_low_speed(LowSpeed {
                        limit: args.s3_low_speed_limit,
                        time: seconds(args.s3_low_speed_time.max(1)),
                    });
                // Once, before any port is bound or driver started.
                match storage.probe() {
                    Ok(()) => {}
                    Err(failure) if args.s3_start_anyway => tracing::warn!(
                        "{url}: {failure}; serving anyway (--s3-start-anyway): \
                         requests that need the store are answered 199 until it can serve them"
                    ),
                    Err(failure) => bail!("cannot serve {url}: {failure}"),
                }
                return Ok(Served::Object(storage));
            }
            Some(url) => match url.strip_prefix("file://") {
                Some(path) if path.starts_with('/') => PathBuf::from(path),
                _ => bail!("--storage {url:?}: expected file:///PATH or s3://BUCKET[/PREFIX]"),
            },
        };
        let dir = LocalDir::new(&directory, args.follow_symlinks).with_context(|| {
            format!(
                "cannot serve {}: it must be an existing directory",
                directory.display()
            )
        })?;
        Ok(Served::Local(dir))
    }

    fn describe(&self) -> String {
        match self {
            Served::Local(dir) => std::fs::canonicalize(dir.root())
                .unwrap_or_else(|_| dir.root().to_path_buf())
                .display()
                .to_string(),
            Served::Object(storage) => storage.url().to_string(),
        }
    }

    /// The backend's name in the metrics.
    fn backend(&self) -> &'static str {
        match self {
            Served::Local(dir) => dir.backend(),
            Served::Object(storage) => storage.backend(),
        }
    }

    fn into_storage(self, stat_cache: u64) -> Arc<dyn Storage> {
        let storage: Box<dyn Storage> = match self {
            Served::Local(dir) => Box::new(dir),
            Served::Object(storage) => Box::new(storage),
        };
        if stat_cache == 0 {
            Arc::from(storage)
        } else {
            Arc::new(StatCache::new(storage, seconds(stat_cache)))
        }
    }
}

/// Durations are capped at about 136 years, so that adding one to the
/// current time can never overflow.
fn seconds(secs: u64) -> Duration {
    Duration::from_secs(secs.min(u64::from(u32::MAX)))
}

fn bind_all(hosts: &[String], port: u16) -> anyhow::Result<Vec<TcpListener>> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for host in hosts {
        let resolved = listen::resolve(host, port)
            .with_context(|| format!("cannot resolve address {host:?}"))?;
        if resolved.is_empty() {
            bail!("address {host:?} resolves to nothing");
        }
        for a in resolved {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
    }
    let dual_stack = addrs.len() == 1;
    let mut listeners = Vec::new();
    for addr in &addrs {
        match listen::bind(*addr, dual_stack) {
            Ok(l) => listeners.push(l),
            // `localhost` may name ::1 on a host without IPv6: skip it if
            // another address of the list could be bound.
            Err(e) if addrs.len() > 1 && e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                eprintln!("hftp: skipping {addr}: {e}");
            }
            Err(e) => return Err(e).with_context(|| format!("cannot listen on {addr}")),
        }
    }
    if listeners.is_empty() {
        bail!("no address could be bound");
    }
    Ok(listeners)
}

/// Binds the metrics listener: ADDR:PORT, with a host name or an IPv6
/// address in brackets.
fn bind_metrics(addr: &str) -> anyhow::Result<TcpListener> {
    use std::net::ToSocketAddrs;
    let resolved: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .with_context(|| format!("--metrics {addr:?}: expected ADDR:PORT, e.g. 127.0.0.1:9119"))?
        .collect();
    let first = resolved
        .first()
        .with_context(|| format!("--metrics {addr:?} resolves to nothing"))?;
    listen::bind(*first, false).with_context(|| format!("cannot listen on {first} for --metrics"))
}

fn reach(addr: SocketAddr) -> &'static str {
    let ip = addr.ip();
    if ip.is_unspecified() {
        if ip.is_ipv6() {
            "all interfaces, IPv6 and IPv4: reachable from other machines"
        } else {
            "all IPv4 interfaces: reachable from other machines"
        }
    } else if ip.is_loopback() {
        "loopback: this host only"
    } else {
        "this interface only"
    }
}

/// SIGHUP is ignored: there is nothing to reload (the directory is read
/// live, every option is fixed at start; restart to change one), and a
/// server started from a terminal must outlive that terminal.
fn ignore_hangup() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: installs SIG_IGN, no handler code runs; no other thread exists yet.
    if let Err(e) = unsafe { signal(Signal::SIGHUP, SigHandler::SigIgn) } {
        tracing::warn!(error = %e, "cannot ignore SIGHUP");
    }
}
