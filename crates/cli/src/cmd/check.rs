//! `hftp check`: runs the conformance suite (`hftp-check`) against any server.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use hftp_check::{cases, report, Case, Config, Summary};

const LONG_ABOUT: &str = "Run the HFTP conformance suite against a server.

Each case is a black-box exchange over a real TCP connection, checked against \
the literal bytes the spec requires; a case that gets no answer within the \
timeout fails with \"timeout\". Passing cases print one line, failing ones \
the requirement, the step, what was expected and what came. The last line \
is `N passed, N failed, N skipped`; the exit status is non-zero when a case \
failed.

Many cases need particular files in the served directory: give that \
directory with --dir (it must be empty, or pass --wipe-dir) and the suite \
lays out each case's files before it runs, then leaves the directory empty. \
Without --dir those cases are skipped. Cases for `199` need a server that \
does not run as root (--unprivileged-server). Cases for `help` and `raw` are \
skipped when the server answers `help` with 200 (the classic revision).";

const EXAMPLES: &str = "Examples:
  # A server of your own, serving an empty scratch directory:
  hftp serve -d /tmp/served -p 19500 -a 127.0.0.1 &
  hftp check 127.0.0.1:19500 --dir /tmp/served

  # Any server, without touching its files (fixture cases are skipped):
  hftp check server.example:19500

  # Only the line-end and slice cases, as JSON:
  hftp check localhost:19500 --dir /tmp/served --only 'eol.*,slice.*' --format json

  # What the suite contains:
  hftp check --list";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(clap::Args)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct Args {
    /// Server to check, HOST:PORT (the port defaults to 19500).
    #[arg(value_name = "HOST:PORT", required_unless_present = "list")]
    pub server: Option<String>,

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

    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Run only cases whose id matches: a glob (`eol.*`, `*raw*`) or a plain
    /// substring; repeat or separate with commas for several.
    #[arg(long, value_name = "PATTERN", value_delimiter = ',')]
    pub only: Vec<String>,

    /// List the cases (id, spec section, requirement) and exit.
    #[arg(long)]
    pub list: bool,

    /// Seconds to wait for any answer before a case fails with "timeout".
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub timeout: f64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let all = cases::all();
    let selection: Vec<&Case> = all
        .iter()
        .filter(|c| hftp_check::selected(c.id, &args.only))
        .collect();
    if selection.is_empty() {
        bail!("no case matches {:?} (see `hftp check --list`)", args.only);
    }
    if args.list {
        list(&selection, args.format)?;
        return Ok(ExitCode::SUCCESS);
    }
    let server = args.server.as_deref().context("HOST:PORT is required")?;
    if !(args.timeout > 0.0 && args.timeout.is_finite()) {
        bail!("--timeout must be a positive number of seconds");
    }
    let config = Config {
        addr: resolve(server)?,
        dir: args.dir,
        unprivileged_server: args.unprivileged_server,
        timeout: Duration::from_secs_f64(args.timeout),
        wipe_dir: args.wipe_dir,
    };
    let mut out = std::io::stdout().lock();
    let results = hftp_check::run(&config, &selection, |result| {
        if args.format == Format::Text {
            writeln!(out, "{}", report::text(result)).ok();
            out.flush().ok();
        }
    })?;
    let summary = Summary::of(&results);
    match args.format {
        Format::Text => writeln!(out, "{summary}")?,
        Format::Json => writeln!(out, "{}", report::json(&results))?,
    }
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
                    case.id, case.section, case.expected
                )?;
            }
        }
        Format::Json => writeln!(out, "{}", report::list_json(selection))?,
    }
    Ok(())
}
