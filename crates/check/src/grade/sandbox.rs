//! The sandbox of one submission: fresh network, mount, pid, IPC and UTS
//! namespaces made by `unshare(1)`, with `hftp grade --sandbox-init` as
//! their pid 1 ([`init`]), which prepares the file system, brings up
//! loopback, runs `hftp check` and reaps, samples and finally kills
//! everything in it.
//!
//! Why `unshare` + `prlimit` + `setpriv` (util-linux) and not bubblewrap:
//! util-linux is on every Linux machine (it is Essential in Debian), so the
//! grader needs nothing installed; bubblewrap makes namespaces but sets no
//! resource limits, so `prlimit` would be needed anyway; and the few mount
//! steps a grader needs (a read-only root, a tmpfs of bounded size, a few
//! directories hidden) are a page of code here, run as pid 1 of the
//! namespace, where a reaper is needed anyway.
//!
//! Inside, as seen by the server:
//!
//! - only loopback, up; no route out, and no port of the host in sight;
//! - every mount of the host read-only (but `/proc`), `/home`, `/root`,
//!   `/run`, `/mnt`, `/media`, `/srv`, the class and the output directory
//!   hidden under empty read-only tmpfs;
//! - `/tmp` (and `/var/tmp`, `/dev/shm`, the same file system) a tmpfs of
//!   `--disk` bytes holding a copy of the submission at `/tmp/submission`:
//!   the only place the server can write;
//! - the checker's scratch directory (the served directory among it) on a
//!   tmpfs of its own, readable by the server but not writable, so that a
//!   disk filler cannot break its own grading's fixtures;
//! - the server started by `nice -n 19 prlimit ... setpriv` (as root: a
//!   uid of its own per parallel slot) or `nice -n 19 unshare --user
//!   --map-user=1000 prlimit ...` (without root: a nested user namespace,
//!   whose process count is its own), with RLIMIT_AS, RLIMIT_NPROC,
//!   RLIMIT_FSIZE, RLIMIT_CPU and no core dumps, and an environment of
//!   PATH, LANG, HOME and TMPDIR only.
//!
//! Cost: a few milliseconds per submission to set up; the tmpfs pages are
//! memory (up to `--disk` per submission running, plus the fixtures of
//! the case running); pid 1 reads `/proc` every 20 ms while the checker
//! runs.
//!
//! Where it breaks: RLIMIT_AS bounds each process, not their sum (a
//! submission may use `--mem` times `--procs` at worst); CPU is shared by
//! `nice` and the kernel's autogroups (each sandbox is a session), not
//! capped: a spinning fork bomb slows the machine within its
//! `--procs` and `--time`. Without root, the server runs as the grader's
//! own user: it cannot touch the host (read-only, no network) but could
//! meddle with the checker of its own submission. Kernels older than 5.14
//! count RLIMIT_NPROC per user across user namespaces, so rootless
//! isolation of the process count needs 5.14 or later.

use std::collections::BTreeSet;
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, BufRead};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::Limits;

/// The prefix of the line pid 1 writes on standard error at its end, with
/// its [`Stats`] as JSON. Nothing the server prints reaches that stream:
/// the checker keeps the server's output to itself.
pub const MARKER: &str = "hftp-grade-sandbox: ";
/// Where the copy of the submission is, inside.
pub const SUBMISSION_INSIDE: &str = "/tmp/submission";
/// The checker's own tmpfs, inside.
const INSIDE: &str = "/tmp/.hftp-grade";
/// The checker's scratch directory (its TMPDIR), inside.
const CHECK_DIR: &str = "/tmp/.hftp-grade/check";
/// The hftp binary, bound read-only into the checker's tmpfs.
const EXE_INSIDE: &str = "/tmp/.hftp-grade/hftp";
/// Size of the checker's tmpfs: the largest fixture is 32 MiB.
const CHECK_SPACE: u64 = 512 << 20;
/// Directories hidden from the server (when they exist).
const HIDDEN: [&str; 6] = ["/home", "/root", "/run", "/mnt", "/media", "/srv"];
/// Other world-writable places, made the same file system as `/tmp`.
const TMP_ALIASES: [&str; 2] = ["/var/tmp", "/dev/shm"];
/// The uid of the server in its nested user namespace (rootless mode).
const USERNS_UID: u32 = 1000;
/// Seconds of CPU between SIGXCPU (the soft limit) and SIGKILL (the hard
/// one), so that a server over its CPU time says so.
const CPU_GRACE: u64 = 5;
/// How often pid 1 reaps and samples.
const POLL: Duration = Duration::from_millis(20);
/// How long pid 1 waits for the last processes to be reaped.
const REAP_GRACE: Duration = Duration::from_secs(5);
/// Deepest directory nesting copied from a submission.
const MAX_DEPTH: usize = 64;

/// Which sandbox the machine allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// As root: slot `i` runs its server as uid and gid `uid_base + i`.
    Root { uid_base: u32 },
    /// Without root: a user namespace per submission, the server in a
    /// nested one.
    UserNs,
}

/// What `--sandbox` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Root when running as root, else user namespaces.
    Auto,
    Root,
    UserNs,
}

impl Mode {
    /// One line for the teacher: which sandbox, and what it holds.
    pub fn describe(&self, slots: usize, lang: crate::Lang) -> String {
        let es = lang == crate::Lang::Es;
        match (self, es) {
            (Mode::Root { uid_base }, false) => format!(
                "root: network, mount, pid, IPC and UTS namespaces per submission; servers run as uids {}-{}",
                uid_base,
                uid_base + slots.saturating_sub(1) as u32
            ),
            (Mode::Root { uid_base }, true) => format!(
                "root: espacios de nombres de red, montaje, pid, IPC y UTS por entrega; los servidores corren como uids {}-{}",
                uid_base,
                uid_base + slots.saturating_sub(1) as u32
            ),
            (Mode::UserNs, false) => "unprivileged user namespaces: network, mount, pid, IPC and UTS namespaces per submission; servers run as your user (no root needed)".into(),
            (Mode::UserNs, true) => "espacios de nombres de usuario sin privilegios: red, montaje, pid, IPC y UTS por entrega; los servidores corren con su usuario (sin root)".into(),
        }
    }
}

/// The programs the sandbox is made with, found on PATH once.
#[derive(Clone, Debug)]
pub struct Tools {
    unshare: PathBuf,
    prlimit: PathBuf,
    setpriv: Option<PathBuf>,
    nice: PathBuf,
    env: PathBuf,
}

/// `name` on PATH (or in the system directories a user's PATH may lack).
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Finds the tools, chooses the mode and checks it works here: for root,
/// that no process runs as the uids to be used and no user has them; for
/// user namespaces, that one can be made.
pub fn probe(choice: Choice, uid_base: u32, slots: usize) -> anyhow::Result<(Mode, Tools)> {
    let need = |name: &str, package: &str| {
        which(name).with_context(|| {
            format!(
                "`{name}` is not installed, and the sandbox needs it: apt-get install {package}"
            )
        })
    };
    let mut tools = Tools {
        unshare: need("unshare", "util-linux")?,
        prlimit: need("prlimit", "util-linux")?,
        setpriv: None,
        nice: need("nice", "coreutils")?,
        env: need("env", "coreutils")?,
    };
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mode = match choice {
        Choice::Auto if root => Mode::Root { uid_base },
        Choice::Root if root => Mode::Root { uid_base },
        Choice::Root => bail!("--sandbox root needs root; run as root, or use --sandbox userns"),
        Choice::Auto | Choice::UserNs => Mode::UserNs,
    };
    match mode {
        Mode::Root { uid_base } => {
            tools.setpriv = Some(need("setpriv", "util-linux")?);
            let last = u32::try_from(slots)
                .ok()
                .and_then(|n| uid_base.checked_add(n))
                .context("--uid-base + --jobs overflows a uid")?;
            for uid in uid_base..last {
                check_uid_free(uid)?;
            }
        }
        Mode::UserNs => {
            // The nested namespace of the server needs util-linux 2.38
            // (--map-user): tried too.
            let mut args: Vec<OsString> = [
                "--user",
                "--map-root-user",
                "--net",
                "--mount",
                "--pid",
                "--fork",
                "--mount-proc",
            ]
            .map(OsString::from)
            .to_vec();
            args.push(tools.unshare.clone().into_os_string());
            args.extend(
                ["--user", "--map-user=1000", "--map-group=1000", "true"].map(OsString::from),
            );
            try_sandbox(&tools.unshare, &args).map_err(|why| {
                anyhow::anyhow!(
                    "this machine does not let an unprivileged user make the sandbox's namespaces ({why}): run hftp grade as root, or allow user namespaces (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu, kernel.apparmor_restrict_unprivileged_userns=0), with util-linux 2.38 or later"
                )
            })?;
        }
    }
    if let Mode::Root { .. } = mode {
        let args = [
            "--net",
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
            "true",
        ]
        .map(OsString::from);
        try_sandbox(&tools.unshare, &args).map_err(|why| {
            anyhow::anyhow!(
                "root here cannot make namespaces ({why}); in a container, give it CAP_SYS_ADMIN, or try --sandbox userns"
            )
        })?;
    }
    Ok((mode, tools))
}

/// Runs `unshare ARGS`; what it said when it fails.
fn try_sandbox(unshare: &Path, args: &[OsString]) -> Result<(), String> {
    let output = Command::new(unshare)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("running {}: {e}", unshare.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// Fails when `uid` belongs to a user of the machine or to a running
/// process: the sandbox gives each slot a uid nobody else has.
fn check_uid_free(uid: u32) -> anyhow::Result<()> {
    // SAFETY: getpwuid returns a pointer to static storage or null; only
    // its nullness is read, on this thread, before any other call.
    let known = unsafe { !libc::getpwuid(uid).is_null() };
    if known {
        bail!("uid {uid} belongs to a user of this machine: choose another --uid-base");
    }
    if let Some(pid) = processes_of(uid).first() {
        bail!("process {pid} runs as uid {uid}: choose another --uid-base, or wait for it to end");
    }
    Ok(())
}

/// The pids of the host whose real uid is `uid`.
pub fn processes_of(uid: u32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|status| status_field(&status, "Uid:"))
                == Some(u64::from(uid))
        })
        .collect()
}

/// The first number of field `name` of a `/proc/PID/status` text.
fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `text` as one `sh` word.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The `--server-cmd` given to the checker inside the sandbox: the
/// teacher's `template`, run by `sh -c` as the unprivileged server of
/// slot `slot`, under the limits, with a clean environment.
///
/// The checker fills `{dir}` and `{port}` of the returned line; they go
/// into environment variables, and the template, where they became
/// `"$HFTP_DIR"` and `$HFTP_PORT`, is one quoted word: no quoting of the
/// checker's can break the teacher's.
pub fn server_command(
    template: &str,
    mode: Mode,
    slot: usize,
    limits: &Limits,
    tools: &Tools,
    env: &[(String, String)],
) -> String {
    let inner = template
        .replace("{submission}", SUBMISSION_INSIDE)
        .replace("{dir}", "\"$HFTP_DIR\"")
        .replace("{port}", "$HFTP_PORT");
    let q = |p: &Path| shell_quote(&p.to_string_lossy());
    let mut line = format!("exec {} -i", q(&tools.env));
    for (name, value) in env {
        line.push_str(&format!(" {name}={}", shell_quote(value)));
    }
    line.push_str(&format!(
        " HOME={SUBMISSION_INSIDE} TMPDIR=/tmp HFTP_DIR={{dir}} HFTP_PORT={{port}} {} -n 19",
        q(&tools.nice)
    ));
    let cpu = limits.time.as_secs().max(1);
    let prlimit = format!(
        "{} --as={} --nproc={} --fsize={} --cpu={cpu}:{} --core=0 --",
        q(&tools.prlimit),
        limits.mem,
        limits.procs,
        limits.disk,
        cpu + CPU_GRACE
    );
    match (mode, &tools.setpriv) {
        (Mode::Root { uid_base }, Some(setpriv)) => {
            let uid = uid_base + slot as u32;
            line.push_str(&format!(
                " {prlimit} {} --reuid={uid} --regid={uid} --clear-groups --no-new-privs --",
                q(setpriv)
            ));
        }
        _ => line.push_str(&format!(
            " {} --user --map-user={USERNS_UID} --map-group={USERNS_UID} -- {prlimit}",
            q(&tools.unshare)
        )),
    }
    line.push_str(&format!(" sh -c {}", shell_quote(&inner)));
    line
}

/// What pid 1 is told to do, passed as JSON on its command line. Paths are
/// bytes: a submission's name need not be UTF-8.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    pub submission: Vec<u8>,
    /// Directories to hide besides [`HIDDEN`]: the class, the output.
    pub hide: Vec<Vec<u8>>,
    pub disk: u64,
    /// Root mode: the uid and gid of the server (owner of the copy).
    pub owner: Option<u32>,
    pub time_ms: u64,
    /// The checker's command line, after `hftp`.
    pub check_args: Vec<String>,
    pub exe: Vec<u8>,
    /// The checker's environment (PATH, LANG).
    pub env: Vec<(String, String)>,
}

/// What pid 1 saw, written at its end after [`MARKER`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Exit code of `hftp check`, if it exited.
    pub check_exit: Option<i32>,
    /// Signal that ended `hftp check`, if one did.
    pub check_signal: Option<i32>,
    /// `--time` passed; everything was killed.
    pub timed_out: bool,
    /// The sandbox could not be prepared.
    pub setup_error: Option<String>,
    /// The copy of the submission did not fit in `--disk`.
    pub too_big: bool,
    /// Most tasks (processes and threads) of the server at once.
    pub peak_tasks: u64,
    /// Most resident memory of the server's processes at once, bytes.
    pub peak_rss: u64,
    /// Most bytes used of the server's tmpfs.
    pub peak_disk: u64,
    /// The server's tmpfs ran out of inodes.
    pub inodes_full: bool,
    /// TCP ports something listened on inside.
    pub listening: Vec<u16>,
}

/// The command that makes the namespaces and runs pid 1 in them.
pub fn command(mode: Mode, tools: &Tools, exe: &Path, spec: &Spec) -> anyhow::Result<Command> {
    let mut command = Command::new(&tools.unshare);
    if mode == Mode::UserNs {
        command.args(["--user", "--map-root-user"]);
    }
    command
        .args([
            "--net",
            "--mount",
            "--pid",
            "--ipc",
            "--uts",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--",
        ])
        .arg(exe)
        .args(["grade", "--sandbox-init"])
        .arg(serde_json::to_string(spec).context("encoding the sandbox's spec")?)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only prctl between fork and exec (async-signal-safe). The
    // worker thread that spawns waits for the child, so the death signal
    // comes only when the grader itself dies (Ctrl-C, kill): then unshare
    // dies, and its --kill-child takes the namespace with it.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(command)
}

/// Pid 1 of the sandbox: prepares it, runs the checker, and returns the
/// exit code for `hftp grade --sandbox-init` (the checker's, 124 when
/// `--time` passed, 125 when the sandbox could not be made). Its stdout
/// is the checker's; its last line on stderr is [`MARKER`] + [`Stats`].
pub fn init(spec_json: &str) -> i32 {
    let mut stats = Stats::default();
    let code = match serde_json::from_str::<Spec>(spec_json) {
        Err(e) => {
            stats.setup_error = Some(format!("bad --sandbox-init: {e}"));
            125
        }
        Ok(spec) => match prepare(&spec, &mut stats) {
            Ok(()) => supervise(&spec, &mut stats),
            Err(e) => {
                stats.setup_error.get_or_insert_with(|| format!("{e:#}"));
                125
            }
        },
    };
    let line = serde_json::to_string(&stats).unwrap_or_else(|_| "{}".into());
    eprintln!("{MARKER}{line}");
    code
}

fn path_of(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes.to_vec()))
}

/// Everything before the checker starts: see the module doc.
fn prepare(spec: &Spec, stats: &mut Stats) -> anyhow::Result<()> {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        bail!("--sandbox-init is for hftp grade: it must be pid 1 of a fresh pid namespace");
    }
    // A session of its own: the kernel's autogroup then shares the CPU
    // between sandboxes, not between their processes. SAFETY: no
    // preconditions; failure (already a leader) is harmless.
    unsafe { libc::setsid() };
    // Not dumpable: a server running as the same user (rootless mode)
    // cannot open pid 1's descriptors through /proc and forge its report.
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    loopback_up().context("bringing up loopback")?;
    let source = File::open(path_of(&spec.submission)).context("opening the submission")?;
    let exe = File::open(path_of(&spec.exe)).context("opening the hftp binary")?;
    read_only_everything()?;
    let inodes = (spec.disk / 4096).max(1024);
    mount_tmpfs(
        "/tmp",
        &format!("size={},nr_inodes={inodes},mode=1777", spec.disk),
        0,
    )
    .context("mounting the submission's tmpfs on /tmp")?;
    mkdir(INSIDE, 0o755)?;
    mount_tmpfs(INSIDE, &format!("size={CHECK_SPACE},mode=755"), 0)
        .context("mounting the checker's tmpfs")?;
    mkdir(CHECK_DIR, 0o755)?;
    File::create(EXE_INSIDE).context("creating the binary's mount point")?;
    bind_read_only(&format!("/proc/self/fd/{}", exe.as_raw_fd()), EXE_INSIDE)
        .context("binding the hftp binary")?;
    let from = PathBuf::from(format!("/proc/self/fd/{}", source.as_raw_fd()));
    if let Err(e) = copy_tree(&from, Path::new(SUBMISSION_INSIDE), spec.owner, 0) {
        if is_full(&e) {
            stats.too_big = true;
        }
        return Err(e).context("copying the submission");
    }
    drop(source);
    for dir in spec
        .hide
        .iter()
        .map(|p| path_of(p))
        .chain(HIDDEN.iter().map(PathBuf::from))
    {
        // Only what is still there: /tmp/x is already out of sight.
        if dir != Path::new("/") && fs::metadata(&dir).is_ok_and(|m| m.is_dir()) {
            mount_tmpfs(
                &dir.to_string_lossy(),
                "size=4k,mode=755",
                libc::MS_RDONLY | libc::MS_NOEXEC,
            )
            .with_context(|| format!("hiding {}", dir.display()))?;
        }
    }
    for alias in TMP_ALIASES {
        if fs::metadata(alias).is_ok_and(|m| m.is_dir()) {
            bind("/tmp", alias).with_context(|| format!("binding /tmp on {alias}"))?;
        }
    }
    Ok(())
}

/// Runs the checker; reaps every orphan; samples the server's use; at the
/// end (or at `--time`) kills everything left in the namespace.
fn supervise(spec: &Spec, stats: &mut Stats) -> i32 {
    let started = Instant::now();
    let deadline = started + Duration::from_millis(spec.time_ms);
    let child = Command::new(EXE_INSIDE)
        .args(&spec.check_args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env("TMPDIR", CHECK_DIR)
        .env("HOME", CHECK_DIR)
        .current_dir(CHECK_DIR)
        .stdin(Stdio::null())
        .spawn();
    let check = match child {
        Ok(child) => child.id() as libc::pid_t,
        Err(e) => {
            stats.setup_error = Some(format!("starting hftp check: {e}"));
            return 125;
        }
    };
    let checker = reaper(check);
    let mut listening = BTreeSet::new();
    let code = loop {
        let status = checker.lock().ok().and_then(|s| *s);
        if let Some(status) = status {
            if libc::WIFSIGNALED(status) {
                let signal = libc::WTERMSIG(status);
                stats.check_signal = Some(signal);
                break 128 + signal;
            }
            let code = libc::WEXITSTATUS(status);
            stats.check_exit = Some(code);
            break code;
        }
        sample(spec.owner, check, stats, &mut listening);
        if Instant::now() >= deadline {
            stats.timed_out = true;
            break 124;
        }
        std::thread::sleep(POLL);
    };
    stats.listening = listening.into_iter().collect();
    // SAFETY: from pid 1, kill(-1) signals every other process of the
    // namespace, and nothing outside it.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    // The reaper reaps them; wait until it has (bounded).
    let until = Instant::now() + REAP_GRACE;
    while Instant::now() < until && others_alive() {
        std::thread::sleep(POLL);
    }
    code
}

/// Reaps every process of the namespace as soon as it ends, on a thread
/// of its own: a zombie still counts against RLIMIT_NPROC, and a fork
/// bomb's restarted server must not find its uid's count full of them.
/// The checker's wait status is kept.
fn reaper(check: libc::pid_t) -> Arc<Mutex<Option<i32>>> {
    let checker = Arc::new(Mutex::new(None));
    let kept = Arc::clone(&checker);
    std::thread::spawn(move || loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid pointer; as pid 1 every orphan of
        // the namespace is our child.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == check && (libc::WIFEXITED(status) || libc::WIFSIGNALED(status)) {
            if let Ok(mut kept) = kept.lock() {
                *kept = Some(status);
            }
        } else if pid < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
            std::thread::sleep(POLL);
        }
    });
    checker
}

/// Whether any process but pid 1 is left in the namespace.
fn others_alive() -> bool {
    fs::read_dir("/proc").is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
            .any(|pid| pid != 1)
    })
}

/// One look at the server: its tasks and memory (the processes of its uid
/// as root; everything but pid 1 and the checker otherwise), its tmpfs,
/// and the ports listening in the namespace.
fn sample(owner: Option<u32>, check: libc::pid_t, stats: &mut Stats, ports: &mut BTreeSet<u16>) {
    let (mut tasks, mut rss) = (0u64, 0u64);
    if let Ok(entries) = fs::read_dir("/proc") {
        for pid in entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
            .filter(|&pid| pid != 1 && pid != check)
        {
            let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
                continue;
            };
            if let Some(uid) = owner {
                if status_field(&status, "Uid:") != Some(u64::from(uid)) {
                    continue;
                }
            }
            tasks += status_field(&status, "Threads:").unwrap_or(1);
            rss += status_field(&status, "VmRSS:").unwrap_or(0) * 1024;
        }
    }
    stats.peak_tasks = stats.peak_tasks.max(tasks);
    stats.peak_rss = stats.peak_rss.max(rss);
    if let Some((used, inodes_left)) = usage("/tmp") {
        stats.peak_disk = stats.peak_disk.max(used);
        stats.inodes_full |= inodes_left == 0;
    }
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(file) = File::open(table) else {
            continue;
        };
        for line in io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .skip(1)
        {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // `sl local rem st ...`; state 0A is LISTEN.
            if fields.get(3) == Some(&"0A") {
                if let Some(port) = fields
                    .get(1)
                    .and_then(|local| local.rsplit(':').next())
                    .and_then(|hex| u16::from_str_radix(hex, 16).ok())
                {
                    ports.insert(port);
                }
            }
        }
    }
}

/// Bytes used and inodes left of the file system at `path`.
fn usage(path: &str) -> Option<(u64, u64)> {
    let path = CString::new(path).ok()?;
    // SAFETY: statvfs fills the zeroed struct; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let used = (st.f_blocks - st.f_bfree) as u64 * st.f_frsize as u64;
    Some((used, st.f_ffree as u64))
}

/// Whether `err` says a file system is full (or a file too large).
fn is_full(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
            .is_some_and(|code| code == libc::ENOSPC || code == libc::EFBIG)
    })
}

/// `ioctl(SIOCSIFFLAGS)` on `lo`: what `ip link set lo up` does, without
/// needing iproute2.
fn loopback_up() -> io::Result<()> {
    #[repr(C)]
    struct IfReq {
        name: [libc::c_char; libc::IFNAMSIZ],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    for (dst, src) in req.name.iter_mut().zip(b"lo") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: a datagram socket for the ioctl, closed below; the ioctls
    // read and write `req`, which is as large as the kernel's ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let result = if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            Err(io::Error::last_os_error())
        } else {
            req.flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        libc::close(fd);
        result
    }
}

fn c_path(path: &str) -> io::Result<CString> {
    CString::new(path).map_err(|_| io::Error::other(format!("{path:?} holds a NUL")))
}

fn mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = source.map(c_path).transpose()?;
    let target = c_path(target)?;
    let fstype = fstype.map(c_path).transpose()?;
    let data = data.map(c_path).transpose()?;
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is null or a valid C string living to the end
    // of the call.
    let rc = unsafe {
        libc::mount(
            ptr(&source),
            target.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data) as *const libc::c_void,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn mount_tmpfs(target: &str, options: &str, flags: libc::c_ulong) -> io::Result<()> {
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | flags,
        Some(options),
    )
}

fn bind(source: &str, target: &str) -> io::Result<()> {
    mount(Some(source), target, None, libc::MS_BIND, None)
}

fn bind_read_only(source: &str, target: &str) -> io::Result<()> {
    bind(source, target)?;
    remount_read_only(target)
}

/// Makes the mount at `path` read-only, keeping its other flags (a user
/// namespace may not clear them).
fn remount_read_only(path: &str) -> io::Result<()> {
    let c = c_path(path)?;
    // SAFETY: statvfs fills the zeroed struct; the path is a C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
    for (st_flag, ms_flag) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & st_flag != 0 {
            flags |= ms_flag;
        }
    }
    mount(None, path, None, flags, None)
}

/// Every mount of this (private) namespace read-only, but `/proc`, whose
/// files unshare and the kernel's interfaces write. A mount that refuses
/// is left as it is (the server's uid still limits what it may write
/// there), except `/`.
fn read_only_everything() -> anyhow::Result<()> {
    let table = fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    let mut points: Vec<String> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p != "/proc" && !p.starts_with("/proc/"))
        .collect();
    points.dedup();
    remount_read_only("/").context("making / read-only")?;
    for point in points.iter().filter(|p| p.as_str() != "/") {
        remount_read_only(point).ok();
    }
    Ok(())
}

/// Mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes.get(i + 1..i + 4).unwrap_or_default();
        if bytes[i] == b'\\'
            && digits.len() == 3
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let n = digits.iter().fold(0u32, |n, d| n * 8 + u32::from(d - b'0'));
            if let Ok(n) = u8::try_from(n) {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mkdir(path: &str, mode: u32) -> anyhow::Result<()> {
    fs::create_dir(path).with_context(|| format!("creating {path}"))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {path}"))
}

/// Copies a submission: directories, regular files and symbolic links
/// (as links), owned by `owner` when given, permissions kept but for
/// set-uid, set-gid and sticky bits. Anything else (FIFOs, devices,
/// sockets) is left out.
fn copy_tree(from: &Path, to: &Path, owner: Option<u32>, depth: usize) -> anyhow::Result<()> {
    if depth > MAX_DEPTH {
        bail!("{} is nested more than {MAX_DEPTH} deep", to.display());
    }
    fs::create_dir(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry.with_context(|| format!("reading {}", from.display()))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&src, &dst, owner, depth + 1)?;
        } else if kind.is_file() {
            fs::copy(&src, &dst).with_context(|| format!("copying {}", dst.display()))?;
            give(&dst, owner, Some(entry.metadata()?.mode()))?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&src)?;
            std::os::unix::fs::symlink(&target, &dst)
                .with_context(|| format!("copying {}", dst.display()))?;
            give(&dst, owner, None)?;
        }
    }
    let mode = fs::metadata(from).map(|m| m.mode()).unwrap_or(0o755);
    give(to, owner, Some(mode))
}

/// Sets the owner (without following links) and the permission bits.
fn give(path: &Path, owner: Option<u32>, mode: Option<u32>) -> anyhow::Result<()> {
    if let Some(id) = owner {
        std::os::unix::fs::lchown(path, Some(id), Some(id))
            .with_context(|| format!("giving {} to uid {id}", path.display()))?;
    }
    if let Some(mode) = mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o777))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    Ok(())
}

/// The bytes of `name`, for a [`Spec`].
pub fn bytes(path: &OsStr) -> Vec<u8> {
    path.as_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape_mountinfo(r"/x\134y"), r"/x\y");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/end\04"), r"/end\04");
    }

    #[test]
    fn status_fields_are_read() {
        let status =
            "Name:\tpython3\nUid:\t1000\t1000\t1000\t1000\nThreads:\t3\nVmRSS:\t  2048 kB\n";
        assert_eq!(status_field(status, "Uid:"), Some(1000));
        assert_eq!(status_field(status, "Threads:"), Some(3));
        assert_eq!(status_field(status, "VmRSS:"), Some(2048));
        assert_eq!(status_field(status, "VmSwap:"), None);
    }

    #[test]
    fn the_template_becomes_one_quoted_word() {
        let tools = Tools {
            unshare: "/usr/bin/unshare".into(),
            prlimit: "/usr/bin/prlimit".into(),
            setpriv: Some("/usr/bin/setpriv".into()),
            nice: "/usr/bin/nice".into(),
            env: "/usr/bin/env".into(),
        };
        let limits = Limits {
            mem: 1 << 30,
            procs: 64,
            disk: 256 << 20,
            time: Duration::from_secs(600),
        };
        let line = server_command(
            "cd {submission} && exec python3 server.py -d {dir} -p {port} # it's",
            Mode::Root { uid_base: 5000 },
            2,
            &limits,
            &tools,
            &[("PATH".into(), "/usr/bin:/bin".into())],
        );
        assert!(line.contains("HFTP_DIR={dir} HFTP_PORT={port}"), "{line}");
        assert!(line.contains("--reuid=5002 --regid=5002"), "{line}");
        assert!(line.contains("--nproc=64 "), "{line}");
        assert!(line.ends_with(
            r#"sh -c 'cd /tmp/submission && exec python3 server.py -d "$HFTP_DIR" -p $HFTP_PORT # it'\''s'"#
        ), "{line}");
        let rootless = server_command("x {dir} {port}", Mode::UserNs, 0, &limits, &tools, &[]);
        assert!(rootless.contains("--map-user=1000"), "{rootless}");
        assert!(!rootless.contains("setpriv"), "{rootless}");
    }
}
