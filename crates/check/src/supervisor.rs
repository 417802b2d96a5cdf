//! Starts the server under test from a command line (`--server-cmd`), in a
//! fresh scratch directory and on a free loopback port, watches it, and
//! restarts it when a case crashes or hangs it.
//!
//! The command runs under `sh -c` in a process group of its own, so that
//! stopping it (SIGTERM to the whole group, then SIGKILL after a bounded
//! grace) also ends whatever it started: `cd X && python3 server.py` leaves
//! no orphan behind. Its output is kept, bounded, to show a crash's last
//! lines.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How often the supervisor looks again while it waits for a condition.
const POLL: Duration = Duration::from_millis(20);
/// How long a stopped server gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long the group gets to disappear after SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// Bytes of the server's output kept (its end).
const OUTPUT_KEPT: usize = 4096;

/// The command that starts the server under test, with `{dir}` and `{port}`
/// to fill in.
#[derive(Clone, Debug)]
pub struct ServerCommand {
    template: String,
}

impl ServerCommand {
    /// Checks that `template` has both placeholders.
    pub fn parse(template: &str) -> anyhow::Result<ServerCommand> {
        for placeholder in ["{port}", "{dir}"] {
            if !template.contains(placeholder) {
                bail!(
                    "--server-cmd must contain {placeholder} (e.g. 'python3 server.py -d {{dir}} -p {{port}}')"
                );
            }
        }
        Ok(ServerCommand {
            template: template.to_string(),
        })
    }

    /// The shell command line for `dir` and `port` (the path quoted for `sh`).
    pub fn render(&self, dir: &Path, port: u16) -> String {
        self.template
            .replace("{dir}", &shell_quote(&dir.to_string_lossy()))
            .replace("{port}", &port.to_string())
    }
}

/// `text` as one `sh` word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The server under test, started and watched by the checker.
pub struct Supervisor {
    command: ServerCommand,
    /// Owns the scratch directory (removed on drop).
    scratch: tempfile::TempDir,
    served: PathBuf,
    start_timeout: Duration,
    running: Option<Running>,
    /// The output of the last instance stopped, for its crash report.
    last_output: Option<Arc<Mutex<Tail>>>,
    starts: u32,
}

/// One started instance.
struct Running {
    child: Child,
    pgid: libc::pid_t,
    addr: SocketAddr,
    output: Arc<Mutex<Tail>>,
    /// How it ended, once reaped.
    exited: Option<ExitStatus>,
}

/// The end of the server's output, at most [`OUTPUT_KEPT`] bytes, and how
/// many of its pipes have reached EOF.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
    closed: usize,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
        if self.bytes.len() > OUTPUT_KEPT {
            let cut = self.bytes.len() - OUTPUT_KEPT;
            self.bytes.drain(..cut);
        }
    }
}

/// Pipes the server's output comes through (stdout and stderr).
const PIPES: usize = 2;
/// How long the output of an exited server gets to be read to its end.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

impl Supervisor {
    /// A supervisor with a fresh scratch directory, not yet started.
    pub fn new(command: ServerCommand, start_timeout: Duration) -> anyhow::Result<Supervisor> {
        let scratch = tempfile::Builder::new()
            .prefix("hftp-check-")
            .tempdir()
            .context("creating the scratch directory for the server")?;
        let served = scratch.path().join("served");
        std::fs::create_dir(&served).context("creating the served directory")?;
        // Readable by a server that runs as another user (`sudo -u`).
        for dir in [scratch.path(), &served] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .context("making the scratch directory readable")?;
        }
        Ok(Supervisor {
            command,
            scratch,
            served,
            start_timeout,
            running: None,
            last_output: None,
            starts: 0,
        })
    }

    /// The directory the server serves.
    pub fn dir(&self) -> &Path {
        &self.served
    }

    /// Where the running server listens.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().map(|r| r.addr)
    }

    /// The process group of the running server.
    pub fn process_group(&self) -> Option<i32> {
        self.running.as_ref().map(|r| r.pgid)
    }

    /// How many times the server was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// Starts the server (stopping a running one first) on a free loopback
    /// port, and waits until it accepts connections.
    pub fn start(&mut self) -> anyhow::Result<SocketAddr> {
        self.stop();
        let port = free_port()?;
        let line = self.command.render(&self.served, port);
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&line)
            .current_dir(self.scratch.path())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the server: sh -c {}", shell_quote(&line)))?;
        self.starts += 1;
        let pgid = libc::pid_t::try_from(child.id()).context("the server's pid")?;
        let output = Arc::new(Mutex::new(Tail::default()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            keep_tail(pipe, Arc::clone(&output));
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        self.running = Some(Running {
            child,
            pgid,
            addr,
            output,
            exited: None,
        });
        self.wait_listening(&line)?;
        Ok(addr)
    }

    /// Polls connect() until the server accepts, it exits, or the start
    /// timeout passes.
    fn wait_listening(&mut self, line: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.start_timeout;
        loop {
            let Some(running) = self.running.as_mut() else {
                bail!("the server is not running");
            };
            if TcpStream::connect_timeout(&running.addr, POLL * 5).is_ok() {
                return Ok(());
            }
            if let Some(status) = running.reap() {
                let addr = running.addr;
                self.stop();
                let output = self.output();
                bail!(
                    "the server command exited ({}) before listening on {addr}: sh -c {}{}",
                    describe_status(status),
                    shell_quote(line),
                    indent_output(&output)
                );
            }
            if Instant::now() >= deadline {
                let addr = running.addr;
                self.stop();
                let output = self.output();
                bail!(
                    "the server command did not listen on {addr} within {:.1} s (--start-timeout): sh -c {}{}",
                    self.start_timeout.as_secs_f64(),
                    shell_quote(line),
                    indent_output(&output)
                );
            }
            thread::sleep(POLL);
        }
    }

    /// How the server ended, if it has (reaping it).
    pub fn exited(&mut self) -> Option<String> {
        let running = self.running.as_mut()?;
        running.reap().map(describe_status)
    }

    /// Waits up to `limit` for the server to exit: a server whose listener
    /// is gone may still be on its way out. `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL);
        }
    }

    /// The end of what the running (or last stopped) server printed. Stop
    /// a crashed server first: a process it left behind holds its pipes.
    pub fn output(&self) -> String {
        match (&self.running, &self.last_output) {
            (Some(running), _) => running.output(),
            (None, Some(tail)) => read_tail(tail, true),
            (None, None) => String::new(),
        }
    }

    /// Stops the server and everything in its process group: SIGTERM,
    /// then SIGKILL if some process is left after a grace period.
    pub fn stop(&mut self) {
        let Some(mut running) = self.running.take() else {
            return;
        };
        signal_group(running.pgid, libc::SIGTERM);
        if !running.wait_group_gone(TERM_GRACE) {
            signal_group(running.pgid, libc::SIGKILL);
            running.wait_group_gone(KILL_GRACE);
        }
        self.last_output = Some(running.output);
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Running {
    /// Reaps the `sh` process if it has exited.
    fn reap(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// What the server printed; once it has exited, read to the end of its
    /// pipes (within a bounded wait: a process it left behind may hold them).
    fn output(&self) -> String {
        read_tail(&self.output, self.exited.is_some())
    }

    /// Waits until no live process is left in the group, reaping our
    /// child; false if some still are after `limit`.
    fn wait_group_gone(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            self.reap();
            if self.exited.is_some() && live_members(self.pgid).is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(POLL);
        }
    }
}

/// The text of `tail`; when the server has `ended`, once its pipes are read
/// to the end (within a bounded wait).
fn read_tail(tail: &Mutex<Tail>, ended: bool) -> String {
    let deadline = Instant::now() + OUTPUT_GRACE;
    loop {
        let closed = tail.lock().map(|t| t.closed).unwrap_or(PIPES);
        if !ended || closed >= PIPES || Instant::now() >= deadline {
            break;
        }
        thread::sleep(POLL);
    }
    let bytes = tail.lock().map(|t| t.bytes.clone()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Copies `pipe` into `tail` until EOF, on a thread of its own. The thread
/// is not joined: a process that left the group could hold the pipe open.
fn keep_tail(mut pipe: Box<dyn Read + Send>, tail: Arc<Mutex<Tail>>) {
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut tail) = tail.lock() {
                tail.push(&buf[..n]);
            }
        }
        if let Ok(mut tail) = tail.lock() {
            tail.closed += 1;
        }
    });
}

fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) with a negative pid signals the process group we
    // created for the server; it has no memory-safety preconditions.
    unsafe { libc::kill(-pgid, signal) };
}

/// The processes of group `pgid` that are still alive (not zombies), read
/// from `/proc`: a zombie reparented to an init that does not reap would
/// otherwise look alive forever.
pub fn live_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // `pid (comm) state ppid pgrp ...`; comm may hold spaces.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    let mut fields = rest.split_whitespace();
                    let state = fields.next()?;
                    let pgrp: i32 = fields.nth(1)?.parse().ok()?;
                    Some(pgrp == pgid && state != "Z" && state != "X")
                })
                .unwrap_or(false)
        })
        .collect()
}

/// A port on 127.0.0.1 that nothing listens on right now.
fn free_port() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free loopback port")?;
    Ok(listener
        .local_addr()
        .context("finding a free loopback port")?
        .port())
}

/// `exit status 3`, `killed by signal 11 (SIGSEGV)`.
pub fn describe_status(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    match status.signal() {
        Some(signal) => format!("killed by signal {signal} ({})", signal_name(signal)),
        None => status.to_string(),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGHUP => "SIGHUP",
        libc::SIGILL => "SIGILL",
        libc::SIGINT => "SIGINT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// The server's output, indented under an error line (nothing if empty).
fn indent_output(output: &str) -> String {
    let lines: Vec<&str> = output.lines().rev().take(10).collect();
    if lines.is_empty() {
        return String::new();
    }
    let mut text = String::from("; its last output:");
    for line in lines.into_iter().rev() {
        text.push_str("\n    ");
        text.push_str(line);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_required_and_the_dir_is_quoted() {
        assert!(ServerCommand::parse("python3 s.py -p {port}").is_err());
        assert!(ServerCommand::parse("python3 s.py -d {dir}").is_err());
        let command = ServerCommand::parse("cd {dir} && exec srv -p {port}").unwrap();
        assert_eq!(
            command.render(Path::new("/tmp/it's here"), 4242),
            r"cd '/tmp/it'\''s here' && exec srv -p 4242"
        );
    }

    #[test]
    fn statuses_read_like_a_shell_says_them() {
        assert_eq!(
            describe_status(ExitStatus::from_raw(3 << 8)),
            "exit status 3"
        );
        assert_eq!(
            describe_status(ExitStatus::from_raw(libc::SIGSEGV)),
            "killed by signal 11 (SIGSEGV)"
        );
    }
}
