//! `hftp grade`: grades a whole class (one submission per subdirectory)
//! with `hftp check`, each submission in a sandbox of its own, several at
//! a time, and writes a gradebook (CSV, HTML, a report per submission).
//! The work is in `hftp_check::grade` (whose module docs say what it costs
//! and where it breaks); this is its command line, and the hidden
//! `--sandbox-init`, the sandbox's pid 1, which only `hftp grade` itself
//! starts (it refuses to run unless it is pid 1 of a fresh namespace).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use hftp_check::grade::{self, Choice, Limits, Options, Status};
use hftp_check::Lang;

const LONG_ABOUT: &str = "Grade a whole class with the conformance suite.

CLASS_DIR holds one subdirectory per submission. For each, `hftp check` starts \
the submission's server with --server-cmd (`{submission}` is a copy of the \
submission's directory, `{dir}` and `{port}` as in `hftp check`) and runs the \
suite against it, inside a sandbox of its own: fresh network, mount, pid, IPC \
and UTS namespaces with only loopback, the host's files read-only, the \
server as an unprivileged user under limits on memory, processes, disk and \
time. Several submissions run at once (--jobs).

The gradebook goes to OUT_DIR: gradebook.csv and index.html with a row per \
submission (status, counts, limits reached, bugs by rule), and for each \
submission NAME/report.txt, report.html and report.json. A submission that \
never starts, binds another port, forks without end, fills its disk or \
hangs gets a row saying so; the others are not affected.

As root, each parallel slot's server runs as a uid of its own (--uid-base); \
without root, in unprivileged user namespaces (see docs/grade.md for what \
that changes). Pages and details are in Spanish with --lang es or a Spanish \
locale; the CSV's header and status words are the same in every language.";

const EXAMPLES: &str = "Examples:
  # A class of Python servers, 4 at a time, in Spanish:
  hftp grade ~/redes/lab2 -o ~/redes/lab2-notas -j 4 --lang es \\
      --server-cmd 'cd {submission} && exec python3 server.py -d {dir} -p {port}'

  # Tighter limits, and a shorter wait per answer:
  hftp grade lab2 -o notas --mem 256M --procs 32 --disk 64M --time 300 \\
      --timeout 2 --server-cmd 'exec python3 {submission}/server.py -d {dir} -p {port}'

Exit codes:
    0  every submission was graded (whatever its grade)
    1  some submissions could not be graded (status `error` in the CSV)
    2  nothing was graded: bad options, no sandbox on this machine, an
       unusable class or output directory";

/// Exit code: some submission could not be graded.
const EXIT_SOME_ERRORS: u8 = 1;
/// Exit code: nothing was graded.
const EXIT_CANNOT_RUN: u8 = 2;

/// `--sandbox`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SandboxArg {
    /// Root when run as root, else user namespaces.
    Auto,
    /// Namespaces and a uid per slot; needs root.
    Root,
    /// Unprivileged user namespaces; no root needed.
    Userns,
}

#[derive(clap::Args)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct Args {
    /// The class: one subdirectory per submission (names starting with a
    /// dot are left out).
    #[arg(value_name = "CLASS_DIR", required_unless_present = "sandbox_init")]
    pub class_dir: Option<PathBuf>,

    /// How to start a submission's server, run by `sh -c` with
    /// `{submission}` (a writable copy of its directory), `{dir}` and
    /// `{port}` filled in.
    #[arg(long, value_name = "CMD", required_unless_present = "sandbox_init")]
    pub server_cmd: Option<String>,

    /// Where the gradebook goes (created; an existing one must be empty or
    /// hold a previous gradebook).
    #[arg(
        long,
        short = 'o',
        value_name = "OUT_DIR",
        required_unless_present = "sandbox_init"
    )]
    pub out: Option<PathBuf>,

    /// Submissions graded at once (default: the cores available).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,

    /// Language of the pages and details: en or es (default: from
    /// LC_ALL, LC_MESSAGES or LANG).
    #[arg(long, value_name = "LANG", value_parser = super::check::parse_lang)]
    pub lang: Option<Lang>,

    /// Address space of each server process (RLIMIT_AS): 512M, 1G, ...
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = grade::parse_size)]
    pub mem: u64,

    /// Processes and threads of a server at once (RLIMIT_NPROC).
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub procs: u32,

    /// Disk a server may write: the size of its /tmp, and RLIMIT_FSIZE.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = grade::parse_size)]
    pub disk: u64,

    /// Seconds a submission's whole run may take; everything it started
    /// is then killed. Also each server process's CPU time.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub time: u64,

    /// Which sandbox: auto (root if run as root, else userns), root or
    /// userns.
    #[arg(long, value_enum, default_value_t = SandboxArg::Auto)]
    pub sandbox: SandboxArg,

    /// As root: slot i runs its server as uid and gid BASE + i, which no
    /// user or process of the machine may have.
    #[arg(long, value_name = "BASE", default_value_t = grade::DEFAULT_UID_BASE)]
    pub uid_base: u32,

    /// Passed to `hftp check`: seconds any one wait of a case may take.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,

    /// Passed to `hftp check`: seconds a server has to accept connections.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub start_timeout: f64,

    /// Passed to `hftp check`: restarts of a server before its run gives up.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub max_restarts: u32,

    /// Passed to `hftp check`: run only the cases whose id matches.
    #[arg(long, value_name = "PATTERN", value_delimiter = ',')]
    pub only: Vec<String>,

    /// Passed to `hftp check`: leave out the cases whose id matches.
    #[arg(long, value_name = "PATTERN", value_delimiter = ',')]
    pub skip: Vec<String>,

    /// Internal: pid 1 of a sandbox, started by `hftp grade` itself.
    #[arg(long, hide = true, value_name = "SPEC")]
    pub sandbox_init: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(spec) = &args.sandbox_init {
        let code = grade::sandbox::init(spec);
        return Ok(ExitCode::from(u8::try_from(code).unwrap_or(125)));
    }
    match run_grade(args) {
        Ok(code) => Ok(code),
        Err(err) => {
            eprintln!("hftp grade: {err:#}");
            Ok(ExitCode::from(EXIT_CANNOT_RUN))
        }
    }
}

fn positive(option: &str, value: f64) -> anyhow::Result<f64> {
    if !(value > 0.0 && value.is_finite()) {
        bail!("{option} must be a positive number of seconds");
    }
    Ok(value)
}

fn run_grade(args: Args) -> anyhow::Result<ExitCode> {
    let lang = args.lang.unwrap_or_else(Lang::from_env);
    if args.time == 0 || args.procs == 0 {
        bail!("--time and --procs must be positive");
    }
    let mut check_options = vec![
        "--start-timeout".to_string(),
        positive("--start-timeout", args.start_timeout)?.to_string(),
        "--max-restarts".into(),
        args.max_restarts.to_string(),
    ];
    if let Some(timeout) = args.timeout {
        check_options.extend([
            "--timeout".into(),
            positive("--timeout", timeout)?.to_string(),
        ]);
    }
    if !args.only.is_empty() {
        check_options.extend(["--only".into(), args.only.join(",")]);
    }
    if !args.skip.is_empty() {
        check_options.extend(["--skip".into(), args.skip.join(",")]);
    }
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    if jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let options = Options {
        class_dir: args.class_dir.context("CLASS_DIR is required")?,
        out_dir: args.out.context("--out is required")?,
        template: args.server_cmd.context("--server-cmd is required")?,
        jobs,
        lang,
        limits: Limits {
            mem: args.mem,
            procs: args.procs,
            disk: args.disk,
            time: Duration::from_secs(args.time),
        },
        sandbox: match args.sandbox {
            SandboxArg::Auto => Choice::Auto,
            SandboxArg::Root => Choice::Root,
            SandboxArg::Userns => Choice::UserNs,
        },
        uid_base: args.uid_base,
        check_options,
        exe: std::env::current_exe().context("finding the hftp binary")?,
    };
    let words = grade::Words::new(lang);
    let rows = grade::grade(
        &options,
        |row, done, total| {
            let counts = row.counts.map(|c| format!(" — {c}")).unwrap_or_default();
            eprintln!(
                "hftp grade: {}",
                grade::printable(&words.progress(
                    done,
                    total,
                    &row.name,
                    row.status,
                    &counts,
                    row.seconds
                ))
            );
        },
        |sandbox, total, jobs| {
            eprintln!("hftp grade: {}", words.started(total, jobs, sandbox));
        },
    )?;
    let out = &options.out_dir;
    eprintln!(
        "hftp grade: {}",
        words.written(
            &out.join("gradebook.csv").display().to_string(),
            &out.join("index.html").display().to_string()
        )
    );
    Ok(if rows.iter().any(|r| r.status == Status::Error) {
        ExitCode::from(EXIT_SOME_ERRORS)
    } else {
        ExitCode::SUCCESS
    })
}
