//! `hftp grade`: grades a whole class in one command. Each subdirectory of
//! the class directory is one submission; each is checked by the real
//! `hftp check`, run as a child process inside a sandbox of its own
//! ([`sandbox`]) with the server it starts, several at a time; the results
//! become a gradebook ([`book`]): a CSV and an HTML page with a row per
//! submission (status, counts, limits reached, bugs by rule) and a full
//! report per submission, in English or Spanish.
//!
//! Why a child process per submission rather than the runner linked in:
//! the checker's connections and the server then live in the same network
//! namespace, where loopback is all they need; a checker that a submission
//! manages to crash or wedge takes only that submission's row with it; and
//! the report is exactly what a student running `hftp check` would see.
//!
//! Cost: per submission, one `hftp check` run (seconds for a good server,
//! up to `--time` for a bad one) and a tmpfs of at most `--disk` bytes
//! while it runs; `--jobs` of them at once (default: the cores available).
//!
//! Where it breaks: see [`sandbox`] for what the limits do not cover, and
//! [`verdict`] for how "limit reached" is told.

pub mod book;
pub mod sandbox;
pub mod verdict;
pub mod words;

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub use sandbox::{Choice, Mode};
pub use verdict::Row;
pub use words::Words;

use crate::i18n::Lang;

/// Default first uid of the servers, as root: slot `i` runs as
/// `DEFAULT_UID_BASE + i`. Above every range systemd allocates (system
/// and regular users, DynamicUser, container ranges up to 1879048191), and
/// below 2^31 (some tools take uids for signed numbers).
pub const DEFAULT_UID_BASE: u32 = 1_879_048_192 + 65_536;
/// Beyond `--time`, how long the grader waits for a sandbox's pid 1 to
/// end by itself before it kills the namespace from outside.
const BACKSTOP: Duration = Duration::from_secs(60);
/// Most bytes kept of a sandbox's stdout or stderr.
const OUTPUT_CAP: usize = 64 << 20;
/// How often a worker looks at its sandbox.
const POLL: Duration = Duration::from_millis(50);

/// How a submission ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Every case that ran passed.
    Ok,
    /// Some cases failed.
    Failed,
    /// The server never accepted a connection on its port.
    NeverStarted,
    /// The server stopped answering and could not be brought back.
    Stopped,
    /// `--time` passed.
    TimedOut,
    /// It reached a limit (processes, memory, disk, CPU).
    Limit,
    /// The grader could not grade it (the sandbox or the checker failed,
    /// or the submission does not fit in `--disk`).
    Error,
}

impl Status {
    /// The status in the CSV: the same in every language.
    pub fn key(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::NeverStarted => "never-started",
            Status::Stopped => "stopped",
            Status::TimedOut => "timed-out",
            Status::Limit => "limit",
            Status::Error => "error",
        }
    }
}

/// A limit a submission can reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Limit {
    Processes,
    Memory,
    Disk,
    Cpu,
}

impl Limit {
    pub fn key(self) -> &'static str {
        match self {
            Limit::Processes => "processes",
            Limit::Memory => "memory",
            Limit::Disk => "disk",
            Limit::Cpu => "cpu",
        }
    }
}

/// What each submission may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Address space of each server process (RLIMIT_AS), bytes.
    pub mem: u64,
    /// Tasks (processes and threads) of the server (RLIMIT_NPROC).
    pub procs: u32,
    /// Bytes the server can write (its tmpfs, and RLIMIT_FSIZE).
    pub disk: u64,
    /// Wall-clock bound of the whole run; also each process's CPU time.
    pub time: Duration,
}

/// `text` safe to print on a terminal (a submission's name may hold escape
/// sequences): control characters shown as `\xNN`.
pub fn printable(text: &str) -> String {
    crate::escape::printable(text)
}

/// `512M`, `1G`, `256MiB`, `64k` or plain bytes; units are powers of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (512M, 1G, 65536)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("{text:?}: unknown unit (K, M or G)")),
    };
    number
        .checked_mul(1 << shift)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{text:?} is out of range"))
}

/// `512 MiB`, `1 GiB`, `1.5 GiB`, `800 KiB`, `12 B`.
pub fn size_text(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if bytes >= size {
            let value = bytes as f64 / size as f64;
            let whole = bytes / size;
            return if whole * size == bytes {
                format!("{whole} {unit}")
            } else {
                format!("{value:.1} {unit}")
            };
        }
    }
    format!("{bytes} B")
}

/// What `hftp grade` was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    pub class_dir: PathBuf,
    pub out_dir: PathBuf,
    /// The server command, with `{submission}`, `{dir}` and `{port}`.
    pub template: String,
    pub jobs: usize,
    pub lang: Lang,
    pub limits: Limits,
    pub sandbox: Choice,
    pub uid_base: u32,
    /// Options passed on to `hftp check`: `--timeout`, `--only`, ...
    pub check_options: Vec<String>,
    /// The `hftp` binary (`std::env::current_exe()`).
    pub exe: PathBuf,
}

/// What every page of the gradebook shares.
#[derive(Clone, Debug)]
pub struct Class {
    pub out_dir: PathBuf,
    /// The class directory's name.
    pub title: String,
    pub words: Words,
    /// The sandbox, in one line.
    pub sandbox: String,
    pub limits: Limits,
    pub version: String,
}

/// One submission: a subdirectory of the class directory.
#[derive(Clone, Debug)]
pub struct Submission {
    pub name: OsString,
    pub path: PathBuf,
}

/// The submissions of `class_dir`, sorted by name: its subdirectories
/// (links to directories included), but those whose name starts with a
/// dot (`.git`) and `skip` (the output directory, when it is inside).
pub fn submissions(class_dir: &Path, skip: &Path) -> anyhow::Result<Vec<Submission>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(class_dir)
        .with_context(|| format!("reading the class directory {}", class_dir.display()))?
    {
        let entry = entry.with_context(|| format!("reading {}", class_dir.display()))?;
        let name = entry.file_name();
        let path = entry.path();
        if name.as_bytes().starts_with(b".") || !path.is_dir() {
            continue;
        }
        if path.canonicalize().is_ok_and(|p| p == skip) {
            continue;
        }
        found.push(Submission { name, path });
    }
    found.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(found)
}

/// Checks the options, prepares the output directory, probes the sandbox
/// and grades every submission, `jobs` at a time. `progress` gets each
/// row as it is done (with how many are done, and of how many); the
/// gradebook is rewritten after each.
pub fn grade(
    options: &Options,
    progress: impl Fn(&Row, usize, usize) + Sync,
    started: impl FnOnce(&str, usize, usize),
) -> anyhow::Result<Vec<Row>> {
    for placeholder in ["{submission}", "{dir}", "{port}"] {
        if !options.template.contains(placeholder) {
            bail!(
                "--server-cmd must contain {placeholder} (e.g. 'cd {{submission}} && exec python3 server.py -d {{dir}} -p {{port}}')"
            );
        }
    }
    let class_dir = options
        .class_dir
        .canonicalize()
        .with_context(|| format!("the class directory {}", options.class_dir.display()))?;
    if class_dir == Path::new("/") {
        bail!("the class directory cannot be /");
    }
    prepare_out_dir(&options.out_dir)?;
    let out_dir = options
        .out_dir
        .canonicalize()
        .with_context(|| format!("the output directory {}", options.out_dir.display()))?;
    let all = submissions(&class_dir, &out_dir)?;
    if all.is_empty() {
        bail!(
            "{} has no submissions (one subdirectory each)",
            class_dir.display()
        );
    }
    let jobs = options.jobs.clamp(1, all.len());
    let (mode, tools) = sandbox::probe(options.sandbox, options.uid_base, jobs)?;
    let words = Words::new(options.lang);
    let class = Class {
        out_dir: out_dir.clone(),
        title: class_dir.file_name().map_or_else(
            || class_dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        words,
        sandbox: mode.describe(jobs, options.lang),
        limits: options.limits,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    started(&class.sandbox, all.len(), jobs);
    let env: Vec<(String, String)> = ["PATH", "LANG", "LC_ALL"]
        .into_iter()
        .filter_map(|name| Some((name.to_string(), std::env::var(name).ok()?)))
        .collect();
    let total = all.len();
    let queue = Mutex::new(all.into_iter().collect::<VecDeque<_>>());
    let rows: Mutex<Vec<Row>> = Mutex::new(Vec::new());
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    thread::scope(|scope| {
        for slot in 0..jobs {
            let (queue, rows, failure, class, tools, env) =
                (&queue, &rows, &failure, &class, &tools, &env);
            let progress = &progress;
            let class_dir = &class_dir;
            scope.spawn(move || loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some(submission) = next else { break };
                let job = Job {
                    options,
                    class,
                    class_dir,
                    mode,
                    tools,
                    env,
                    slot,
                };
                let row = job.run(&submission);
                let written = book::write_submission(class, &row);
                let Ok(mut rows) = rows.lock() else { break };
                rows.push(row);
                let result = written.and_then(|()| book::write_class(class, &rows));
                if let Err(e) = result {
                    if let Ok(mut failure) = failure.lock() {
                        failure.get_or_insert(e);
                    }
                }
                if let Some(row) = rows.last() {
                    progress(row, rows.len(), total);
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    let mut rows = rows.into_inner().unwrap_or_default();
    rows.sort_by(|a, b| a.dir.as_bytes().cmp(b.dir.as_bytes()));
    Ok(rows)
}

/// Creates the output directory, or accepts an empty one or one that
/// holds a gradebook already (it is overwritten); anything else is
/// refused, so that a typo never fills a directory of other files.
fn prepare_out_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() && !dir.join("gradebook.csv").is_file() {
                bail!(
                    "the output directory {} is not empty and holds no gradebook.csv: give a new or empty directory",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the output directory {}", dir.display())),
        Err(e) => Err(e).with_context(|| format!("reading the output directory {}", dir.display())),
    }
}

/// One worker's submission.
struct Job<'a> {
    options: &'a Options,
    class: &'a Class,
    class_dir: &'a Path,
    mode: Mode,
    tools: &'a sandbox::Tools,
    env: &'a [(String, String)],
    slot: usize,
}

impl Job<'_> {
    /// Grades one submission: runs its sandbox to the end (or kills it at
    /// `--time` plus a grace, if pid 1 did not end it first), and judges.
    fn run(&self, submission: &Submission) -> Row {
        let started = Instant::now();
        let (stdout, stderr) = match self.sandbox(submission) {
            Ok(output) => output,
            Err(e) => (Vec::new(), format!("hftp grade: {e:#}\n")),
        };
        verdict::judge(verdict::Judged {
            dir: submission.name.clone(),
            stdout: &stdout,
            stderr: &stderr,
            seconds: started.elapsed().as_secs_f64(),
            limits: &self.options.limits,
            words: &self.class.words,
        })
    }

    fn sandbox(&self, submission: &Submission) -> anyhow::Result<(Vec<u8>, String)> {
        let options = self.options;
        let limits = &options.limits;
        let server_cmd = sandbox::server_command(
            &options.template,
            self.mode,
            self.slot,
            limits,
            self.tools,
            self.env,
        );
        let mut check_args = vec![
            "check".to_string(),
            "--server-cmd".into(),
            server_cmd,
            "--format".into(),
            "json".into(),
            "--unprivileged-server".into(),
            "--lang".into(),
            self.class.words.code().into(),
        ];
        check_args.extend(options.check_options.iter().cloned());
        let spec = sandbox::Spec {
            submission: sandbox::bytes(submission.path.as_os_str()),
            hide: vec![
                sandbox::bytes(self.class_dir.as_os_str()),
                sandbox::bytes(self.class.out_dir.as_os_str()),
            ],
            disk: limits.disk,
            owner: match self.mode {
                Mode::Root { uid_base } => Some(uid_base + self.slot as u32),
                Mode::UserNs => None,
            },
            time_ms: u64::try_from(limits.time.as_millis()).unwrap_or(u64::MAX),
            check_args,
            exe: sandbox::bytes(options.exe.as_os_str()),
            env: self.env.to_vec(),
        };
        let mut child = sandbox::command(self.mode, self.tools, &options.exe, &spec)?
            .spawn()
            .context("starting unshare")?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let deadline = Instant::now() + limits.time + BACKSTOP;
        wait_or_kill(&mut child, deadline);
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        Ok((stdout, String::from_utf8_lossy(&stderr).into_owned()))
    }
}

/// Reads a pipe to its end on a thread of its own, keeping at most
/// [`OUTPUT_CAP`] bytes.
fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut kept = Vec::new();
        let Some(mut pipe) = pipe else { return kept };
        let mut buf = [0u8; 64 * 1024];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let room = OUTPUT_CAP.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        kept
    })
}

/// Waits for `child` until `deadline`, then kills it (unshare: its
/// `--kill-child` takes the whole namespace with it) and reaps it.
fn wait_or_kill(child: &mut Child, deadline: Instant) {
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() >= deadline => {
                child.kill().ok();
                child.wait().ok();
                return;
            }
            Ok(None) => thread::sleep(POLL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_powers_of_1024() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999G").is_err());
        assert_eq!(size_text(512 << 20), "512 MiB");
        assert_eq!(size_text(3 << 29), "1.5 GiB");
        assert_eq!(size_text(100), "100 B");
    }
}
