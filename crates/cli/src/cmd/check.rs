//! `hftp check`: runs the conformance suite (`hftp-check`) against any
//! server, or against one it starts itself (`--server-cmd`), and reports in
//! text, JSON or JUnit XML, in English or Spanish.

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hftp_check::supervisor::{ServerCommand, Supervisor};
use hftp_check::{
    cases, diagnose, report, Case, CaseResult, Config, Dialer, Lang, Outcome, Summary,
};
use hftp_client::Endpoint;

const LONG_ABOUT: &str = "Run the HFTP conformance suite against a server.

Each case is a black-box exchange over a real TCP connection, checked against \
the literal bytes the spec requires; a case fails with \"timeout\" when any \
one wait for the server exceeds --timeout. The report opens with the bugs: \
failed cases grouped by the rule their answers break (an unsorted listing, \
existence checked before the shape of the arguments, bytes after an answer, \
silence...), the one behind most cases first, each with its smallest \
reproduction. Then passing cases print one line, failing ones the \
requirement, the step, what was expected, what came and the bug behind it. \
A summary per spec section follows, and the last line is `N passed, N \
failed, N skipped` (`, N not run` is added when the run stopped early).

After a failed case the checker opens a fresh connection and sends `quit`: \
a server that no longer answers ends the run (\"the server stopped answering \
after case X\"), the remaining cases are not run. With --server-cmd the \
checker starts the server itself, in a fresh scratch directory and on a free \
loopback port, and restarts it whenever a case crashes or hangs it, naming \
that case; the server and everything it started are stopped at the end.

Many cases need particular files in the served directory: give that \
directory with --dir (it must be empty, or pass --wipe-dir), or use \
--server-cmd; the suite lays out each case's files before it runs, then \
leaves the directory empty. Without either, those cases are skipped. Cases \
for `199` need a server that does not run as root (--unprivileged-server). \
Cases for `help` and `raw` are skipped when the server answers `help` with \
200 (the classic revision).

Case titles and explanations are in Spanish with --lang es, or when \
LC_ALL, LC_MESSAGES or LANG (the first one set) starts with `es`; case ids, \
PASS/FAIL/SKIP/NOT RUN, the last line and the protocol's own bytes stay the same.";

const EXAMPLES: &str = "Examples:
  # A student's server, started and restarted by the checker:
  hftp check --server-cmd 'cd ~/lab2 && exec python3 server.py -d {dir} -p {port}'

  # The same for a CI grader: JUnit XML on stdout, crashes and hangs on stderr:
  hftp check --server-cmd 'exec python3 server.py -d {dir} -p {port}' \\
      --format junit --timeout 2 > report.xml

  # A server of your own, serving an empty scratch directory:
  hftp serve -d /tmp/served -p 19500 -a 127.0.0.1 &
  hftp check 127.0.0.1:19500 --dir /tmp/served

  # Any server, without touching its files (fixture cases are skipped):
  hftp check server.example:19500

  # An onion service, through Tor's SOCKS port, as a classmate reaches it:
  hftp check --proxy socks5h://127.0.0.1:9050 abcdef...xyz.onion:19500

  # A server over TLS (hftp serve --tls-cert ...), trusting the course's CA:
  hftp check --tls --cacert ca.pem localhost:19500 --dir /tmp/served

  # Only the line-end and slice cases, but not the 32 MiB one, as JSON:
  hftp check localhost:19500 --dir /tmp/served --only 'eol.*,slice.*' \\
      --skip slice.all-bytes-32mib --format json

  # En castellano:
  hftp check --lang es localhost:19500

  # What the suite contains:
  hftp check --list

Exit codes:
    0  every case that ran passed (skipped cases do not count)
    1  at least one case failed
    2  the suite could not run: bad options, no server answering at the
       start, a --server-cmd that does not start, an unusable --dir
    3  the run stopped early: the server stopped answering (or could not be
       restarted); the remaining cases were not run";

/// Default bound on each wait for the server.
const DIRECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The same through a proxy: a Tor circuit adds seconds to a connect.
const PROXIED_TIMEOUT: Duration = Duration::from_secs(30);

/// Exit code: a case failed.
const EXIT_FAILED: u8 = 1;
/// Exit code: the suite could not run.
const EXIT_CANNOT_RUN: u8 = 2;
/// Exit code: the run stopped early, cases not run.
const EXIT_STOPPED: u8 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    /// JUnit XML, for CI graders.
    Junit,
}

#[derive(clap::Args)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct Args {
    /// Server to check, HOST:PORT (the port defaults to 19500); hftps://HOST:PORT
    /// checks it over TLS, as --tls does.
    #[arg(
        value_name = "HOST:PORT",
        required_unless_present_any = ["list", "server_cmd"],
        conflicts_with = "server_cmd"
    )]
    pub server: Option<String>,

    /// Start the server under test with this shell command (run by `sh -c`,
    /// `{dir}` and `{port}` filled in), in a fresh scratch directory on a
    /// free loopback port; restart it when a case crashes or hangs it.
    #[arg(long, value_name = "CMD", conflicts_with_all = ["dir", "wipe_dir"])]
    pub server_cmd: Option<String>,

    /// Seconds a --server-cmd server has to accept connections.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 10.0,
        requires = "server_cmd"
    )]
    pub start_timeout: f64,

    /// Restarts of a --server-cmd server before the run gives up.
    #[arg(long, value_name = "N", default_value_t = 20, requires = "server_cmd")]
    pub max_restarts: u32,

    /// Directory the server serves, writable here: the suite replaces its
    /// contents before each case that needs files.
    #[arg(long, short = 'd', value_name = "PATH")]
    pub dir: Option<PathBuf>,

    /// Allow a non-empty --dir (its contents are deleted).
    #[arg(long, requires = "dir")]
    pub wipe_dir: bool,

    /// Assert the server does not run as root, enabling the permission
    /// (`199`) cases.
    #[arg(long)]
    pub unprivileged_server: bool,

    /// Report format: text for people, json for programs, junit (JUnit
    /// XML) for CI graders. With json and junit, crashes and hangs of the
    /// server are also told on standard error as they happen.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Run only cases whose id matches: a glob (`eol.*`, `*raw*`) or a plain
    /// substring; repeat or separate with commas for several.
    #[arg(long, value_name = "PATTERN", value_delimiter = ',')]
    pub only: Vec<String>,

    /// Leave out cases whose id matches (same patterns as --only).
    #[arg(long, value_name = "PATTERN", value_delimiter = ',')]
    pub skip: Vec<String>,

    /// List the cases (id, spec section, requirement) and exit.
    #[arg(long)]
    pub list: bool,

    /// Seconds any one wait of a case may take (connect, each answer, each
    /// EOF) before the case fails with "timeout"; also bounds the probe
    /// that checks the server still answers. Default: 5, or 30 with --proxy.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,

    /// Reach the server through this SOCKS5 proxy, as a client elsewhere
    /// would: socks5h://HOST:PORT lets the proxy resolve the name (an
    /// onion service through Tor: socks5h://127.0.0.1:9050), socks5://
    /// resolves it here. The spec's own time bounds (EOF within 0.5 s of
    /// `quit`) get twice the measured round trip added.
    #[arg(long, value_name = "URL", conflicts_with = "server_cmd")]
    pub proxy: Option<String>,

    /// Language of case titles and explanations: en or es (default: from
    /// LC_ALL, LC_MESSAGES or LANG).
    #[arg(long, value_name = "LANG", value_parser = parse_lang)]
    pub lang: Option<Lang>,

    /// Every connection of the suite over TLS (with --server-cmd, the
    /// server's certificate must name `localhost`).
    #[command(flatten)]
    pub tls: super::TlsArgs,
}

/// Parses `--lang` (shared by the client subcommands).
pub fn parse_lang(text: &str) -> Result<Lang, String> {
    Lang::parse(text).ok_or_else(|| format!("{text:?} is not a language of the checker (en, es)"))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match check(args) {
        Ok(code) => Ok(code),
        // A closed standard output is main's to end quietly.
        Err(err) if closed_output(&err) => Err(err),
        Err(err) => {
            eprintln!("hftp: {err:#}");
            Ok(ExitCode::from(EXIT_CANNOT_RUN))
        }
    }
}

fn closed_output(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn check(args: Args) -> anyhow::Result<ExitCode> {
    hftp_check::i18n::set(args.lang.unwrap_or_else(Lang::from_env));
    args.tls.warn();
    let all = cases::all();
    let selection: Vec<&Case> = all
        .iter()
        .filter(|c| hftp_check::selected(c.id, &args.only))
        .filter(|c| args.skip.is_empty() || !hftp_check::selected(c.id, &args.skip))
        .collect();
    if selection.is_empty() {
        bail!(
            "no case matches --only {:?} --skip {:?} (see `hftp check --list`)",
            args.only,
            args.skip
        );
    }
    if args.list {
        list(&selection, args.format)?;
        return Ok(ExitCode::SUCCESS);
    }
    let timeout = match args.timeout {
        Some(timeout) => seconds("--timeout", timeout)?,
        None if args.proxy.is_some() => PROXIED_TIMEOUT,
        None => DIRECT_TIMEOUT,
    };
    let mut config = Config {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        via: None,
        dir: args.dir,
        unprivileged_server: args.unprivileged_server,
        timeout,
        wipe_dir: args.wipe_dir,
    };
    let format = args.format;
    // The report opens with the bugs, known only at the end: the cases
    // are written after them, and meanwhile a terminal shows progress.
    let total = selection.len();
    let mut done = 0usize;
    let progress = std::io::stderr().is_terminal();
    let started = Instant::now();
    let on_result = |result: &CaseResult| {
        done += 1;
        if progress {
            eprint!("\r\x1b[K[{done}/{total}] {}", result.id);
        }
        if let Some(event) = &result.server {
            if progress {
                eprint!("\r\x1b[K");
            }
            eprintln!("hftp: {}: {}", result.id, event.describe());
        }
    };
    let results = match &args.server_cmd {
        Some(command) => {
            let command = ServerCommand::parse(command)?;
            // The supervisor's server listens on loopback.
            let local = Endpoint::parse("localhost").map_err(client_error)?;
            let local = args.tls.apply(local, &mut None).map_err(client_error)?;
            config.via = local.tls.is_some().then(|| layer(local));
            let start_timeout = seconds("--start-timeout", args.start_timeout)?;
            let mut supervisor = Supervisor::new(command, start_timeout)?;
            hftp_check::run_supervised(
                &config,
                &mut supervisor,
                args.max_restarts,
                &selection,
                on_result,
            )?
        }
        None => {
            let server = args.server.as_deref().context("HOST:PORT is required")?;
            let endpoint = Endpoint::parse(server).map_err(client_error)?;
            let endpoint = args.tls.apply(endpoint, &mut None).map_err(client_error)?;
            match &args.proxy {
                // The name may mean something to the proxy alone (.onion).
                Some(proxy) => config.via = Some(dialer(&endpoint, proxy)?),
                None => {
                    config.addr = resolve(&endpoint.to_string())?;
                    if endpoint.tls.is_some() {
                        config.via = Some(layer(endpoint.clone()));
                    }
                }
            }
            if endpoint.tls.is_some() {
                // A TLS failure (an untrusted certificate...) is said once,
                // as the client says it, before any case.
                let through = match &args.proxy {
                    Some(proxy) => super::proxied(server, proxy)?.proxy,
                    None => None,
                };
                let mut stream = endpoint
                    .clone()
                    .with_proxy(through)
                    .with_timeout(timeout)
                    .open_stream()
                    .map_err(client_error)?;
                // close_notify: a polite end before any word of HFTP.
                let _ = stream.shutdown_write();
            }
            hftp_check::run(&config, &selection, on_result)?
        }
    };
    if progress {
        eprint!("\r\x1b[K");
    }
    let wall = started.elapsed();
    let summary = Summary::of(&results);
    let mut out = std::io::stdout().lock();
    match format {
        Format::Text => {
            let bugs = diagnose::bugs(&results);
            write!(out, "{}", report::text::bugs(&bugs))?;
            // Skipped cases are said after the others, one line per reason.
            for result in &results {
                if !matches!(result.outcome, Outcome::Skip { .. }) {
                    let bug = diagnose::bug_of(&bugs, result.id);
                    writeln!(out, "{}", report::text::case_of_bug(result, bug))?;
                }
            }
            write!(out, "{}", report::text::skipped(&results))?;
            write!(out, "{}", report::text::closing(&results))?;
            writeln!(out, "{summary}")?;
        }
        Format::Json => writeln!(out, "{}", report::json(&results))?,
        Format::Junit => {
            write!(out, "{}", report::junit::document(&results, wall))?;
            if let Some(stop) = report::stop(&results) {
                eprintln!("hftp: {stop}");
            }
            eprintln!("{summary}");
        }
    }
    if format == Format::Json {
        if let Some(stop) = report::stop(&results) {
            eprintln!("hftp: {stop}");
        }
    }
    out.flush()?;
    Ok(ExitCode::from(if summary.not_run > 0 {
        EXIT_STOPPED
    } else if summary.failed > 0 {
        EXIT_FAILED
    } else {
        0
    }))
}

/// Connections to `server` through the SOCKS5 proxy `url`, made by the
/// client library (the same handshake `hftp ls --proxy` makes), then TLS
/// inside the proxied connection if `server` has it.
fn dialer(server: &Endpoint, url: &str) -> anyhow::Result<Dialer> {
    let proxy = hftp_client::Proxy::parse(url).map_err(|e| anyhow::anyhow!("--proxy: {e}"))?;
    let endpoint = server.clone().with_proxy(Some(proxy.clone()));
    let over = if endpoint.tls.is_some() {
        " over TLS"
    } else {
        ""
    };
    let label = format!("{endpoint} through {proxy}{over}");
    Ok(Dialer::new(label, move |timeout| {
        endpoint
            .clone()
            .with_timeout(timeout)
            .open_stream()
            .map_err(|e| std::io::Error::other(super::client::message(&e)))?
            .into_tcp()
    }))
}

/// TLS on each direct connection, as the client library makes it: the
/// suite reads and writes a loopback socket a thread relays to the TLS
/// session, so every case runs unchanged.
fn layer(server: Endpoint) -> Dialer {
    Dialer::layered("over TLS", move |tcp, timeout| {
        let port = tcp.peer_addr()?.port();
        let endpoint = Endpoint {
            port,
            ..server.clone()
        };
        endpoint
            .with_timeout(timeout)
            .start_tls(tcp)
            .map_err(|e| std::io::Error::other(super::client::message(&e)))?
            .into_tcp()
    })
}

/// A client error as the checker's error, in the language in force.
fn client_error(err: hftp_client::Error) -> anyhow::Error {
    anyhow::anyhow!(super::client::message(&err))
}

/// A positive, finite number of seconds.
fn seconds(option: &str, value: f64) -> anyhow::Result<Duration> {
    if !(value > 0.0 && value.is_finite()) {
        bail!("{option} must be a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(value))
}

fn resolve(server: &str) -> anyhow::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = match server.to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        // No port given: the protocol's default.
        Err(_) => (server.trim_start_matches('[').trim_end_matches(']'), 19500)
            .to_socket_addrs()
            .with_context(|| format!("resolving {server}"))?
            .collect(),
    };
    addrs
        .into_iter()
        .next()
        .with_context(|| format!("{server} resolves to no address"))
}

fn list(selection: &[&Case], format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Text => {
            for case in selection {
                let needs = case.needs();
                let needs = if needs.is_empty() {
                    String::new()
                } else {
                    format!(" (needs {})", needs.join(", "))
                };
                writeln!(
                    out,
                    "{} [§{}]{needs}\n    {}",
                    case.id,
                    case.section,
                    case.title()
                )?;
            }
        }
        Format::Json | Format::Junit => writeln!(out, "{}", report::list_json(selection))?,
    }
    Ok(())
}
