//! The one-machine recipe of `docs/scale-out.md` ("Try it on one machine")
//! works as written: its fenced blocks marked `sh one-node` are taken from
//! the document and run with bash in an empty directory, in order, with
//! only their three placeholder ports (3900, 3901, 19500) replaced by free
//! loopback ports. A block marked `sh one-node server` is a command left
//! running in a terminal of its own: the test starts it (tied to the test
//! process, in a process group of its own) and waits until it is ready
//! (Garage answers `garage status`; hftp prints `listening on`). The other
//! blocks run to completion, each in a fresh bash that starts from the
//! variables the previous ones exported, as one terminal would. At the end
//! the file the recipe put into the bucket, fetched back through
//! `hftp serve --storage s3://` by `hftp get` and `hftp cat`, must be
//! byte-identical to the one it uploaded.
//!
//! Tier: full (marked `#[ignore = "full tier: ..."]`): needs Garage 2.5.0,
//! curl and openssl.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{self, garage, tools};

const HFTP: &str = env!("CARGO_BIN_EXE_hftp");
/// How the full tier installs Garage (as `support/garage.rs` says).
const GARAGE_INSTALL: &str = "cargo install garage --locked --version 2.5.0 \
     --no-default-features --features bundled-libs,sqlite";
/// The ports the recipe names, which the test replaces, in this order:
/// Garage's S3 API, Garage's RPC, hftp.
pub const PLACEHOLDERS: [&str; 3] = ["3900", "3901", "19500"];
/// The longest any block may run, and a server may take to be ready; only
/// a recipe that hangs reaches them.
const STEP_TIMEOUT: Duration = Duration::from_secs(180);
const STARTUP: Duration = Duration::from_secs(60);

/// One fenced block of the recipe.
pub struct Block {
    /// Line of the document where the block starts.
    pub line: usize,
    /// `sh one-node server`: left running.
    pub server: bool,
    pub text: String,
}

/// The blocks marked `sh one-node` of `doc`, in order.
pub fn recipe(doc: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for (n, line) in doc.lines().enumerate() {
        match current.as_mut() {
            None => {
                let info: Vec<&str> = line
                    .strip_prefix("```")
                    .map(|i| i.split_whitespace().collect())
                    .unwrap_or_default();
                if info.len() >= 2 && info[0] == "sh" && info[1] == "one-node" {
                    assert!(
                        info.len() == 2 || info[2..] == ["server"],
                        "docs/scale-out.md:{}: unknown mark {line:?}",
                        n + 1
                    );
                    current = Some(Block {
                        line: n + 1,
                        server: info.len() == 3,
                        text: String::new(),
                    });
                }
            }
            Some(_) if line == "```" => blocks.push(current.take().expect("in a block")),
            Some(block) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
        }
    }
    assert!(current.is_none(), "docs/scale-out.md: an unclosed block");
    blocks
}

/// `text` with every number that is exactly `from` replaced by `to`.
pub fn substitute(text: &str, from: &str, to: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut count = 0;
    let mut digits = String::new();
    let mut flush = |digits: &mut String, out: &mut String| {
        if digits == from {
            out.push_str(to);
            count += 1;
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    (out, count)
}

/// Kills a process group (SIGKILL) and reaps its leader when dropped.
struct Group {
    what: String,
    child: Child,
    log: PathBuf,
    stdout: mpsc::Receiver<String>,
}

impl Group {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        kill_group(self.child.id());
        self.child.wait().ok();
    }
}

fn kill_group(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions; the leader is
        // our child, not yet reaped, so the group id is still its own.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
}

/// Where the recipe runs: the directory, the environment the user's shell
/// would have (tools on PATH, no `AWS_*`/`HFTP_*`/`GARAGE_*` of the test
/// run), and the variables exported so far.
struct Shell {
    dir: PathBuf,
    path: String,
    state: PathBuf,
    harness: PathBuf,
}

impl Shell {
    fn command(&self, script: &str) -> Command {
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(script)
            .current_dir(&self.dir)
            .env("PATH", &self.path)
            .stdin(Stdio::null())
            .process_group(0);
        for (key, _) in std::env::vars_os() {
            let key_text = key.to_string_lossy();
            if ["AWS_", "HFTP_", "GARAGE_"]
                .iter()
                .any(|p| key_text.starts_with(p))
            {
                command.env_remove(&key);
            }
        }
        command
    }

    /// Runs a block to completion, as the next commands typed in the
    /// terminal; panics with its output unless it succeeds.
    fn run(&self, block: &Block, text: &str, servers: &[Group]) -> Output {
        let state = self.state.display();
        let script =
            format!("set -euo pipefail\n. '{state}'\n{text}\nexport -p > '{state}.next'\n");
        let mut command = self.command(&script);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = support::tied::spawn(command).expect("start bash");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || tx.send(child.wait_with_output()).ok());
        let out = match rx.recv_timeout(STEP_TIMEOUT) {
            Ok(out) => out.expect("wait for bash"),
            Err(_) => {
                kill_group(pid);
                panic!(
                    "docs/scale-out.md:{}: the block still runs after {STEP_TIMEOUT:?}:\n{text}{}",
                    block.line,
                    logs(servers)
                );
            }
        };
        assert!(
            out.status.success(),
            "docs/scale-out.md:{}: the block failed ({}):\n{text}\n--- stdout\n{}--- stderr\n{}{}",
            block.line,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            logs(servers)
        );
        std::fs::rename(format!("{state}.next"), &self.state).expect("keep the exports");
        out
    }

    /// Starts a server block, as a terminal of its own would run it (bash
    /// replaced by the command, so the tie holds), and waits until it is
    /// ready.
    fn serve(&self, block: &Block, text: &str, servers: &[Group]) -> Group {
        let line = text.trim();
        assert!(
            !line.contains('\n'),
            "docs/scale-out.md:{}: a server block is one command: {line:?}",
            block.line
        );
        let program = line.split_whitespace().next().unwrap_or_default();
        let log = self.harness.join(format!("{program}.log"));
        let script = format!(". '{}'\nexec {line}\n", self.state.display());
        let mut command = self.command(&script);
        command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("server log"));
        let mut child = support::tied::spawn(command).expect("start the server block");
        let (tx, stdout) = mpsc::channel();
        let pipe = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut group = Group {
            what: line.to_string(),
            child,
            log,
            stdout,
        };
        match program {
            "garage" => self.wait_garage(&mut group, servers),
            "hftp" => wait_listening(&group, servers),
            other => panic!(
                "docs/scale-out.md:{}: the test knows no readiness for {other:?}",
                block.line
            ),
        }
        group
    }

    /// Polls `garage -c garage.toml status` until it answers.
    fn wait_garage(&self, garage: &mut Group, servers: &[Group]) {
        let deadline = Instant::now() + STARTUP;
        loop {
            let status = self
                .command("garage -c garage.toml status")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run garage status");
            if status.success() {
                return;
            }
            if let Ok(Some(exit)) = garage.child.try_wait() {
                panic!(
                    "`{}` exited ({exit}):\n{}{}",
                    garage.what,
                    garage.log(),
                    logs(servers)
                );
            }
            assert!(
                Instant::now() < deadline,
                "`{}` did not answer `garage status` within {STARTUP:?}:\n{}",
                garage.what,
                garage.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Waits for hftp's `listening on` line.
fn wait_listening(hftp: &Group, servers: &[Group]) {
    let deadline = Instant::now() + STARTUP;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match hftp.stdout.recv_timeout(left) {
            Ok(line) if line.contains("listening on") => return,
            Ok(_) => {}
            Err(_) => panic!(
                "`{}` printed no `listening on` (exited, or not within {STARTUP:?}):\n{}{}",
                hftp.what,
                hftp.log(),
                logs(servers)
            ),
        }
    }
}

/// The servers' logs, for failure messages.
fn logs(servers: &[Group]) -> String {
    servers
        .iter()
        .map(|s| format!("\n--- log of `{}`\n{}", s.what, s.log()))
        .collect()
}

fn dir_of(path: &Path) -> String {
    path.parent()
        .expect("a tool lives in a directory")
        .display()
        .to_string()
}

#[test]
#[ignore = "full tier: needs Garage 2.5.0 (cargo install garage), curl and openssl"]
fn the_one_node_garage_recipe_of_scale_out_md_works_as_written() {
    let garage_bin = tools::require("garage", GARAGE_INSTALL);
    let curl = tools::require("curl", "apt-get install curl");
    let openssl = tools::require("openssl", "apt-get install openssl");
    let _load = garage::light_load();

    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/scale-out.md"),
    )
    .expect("docs/scale-out.md");
    let blocks = recipe(&doc);
    let ports = support::free_ports(PLACEHOLDERS.len());
    let hftp_port = ports[2];

    let dir = tempfile::tempdir().expect("temp dir");
    let harness = tempfile::tempdir().expect("temp dir");
    let state = harness.path().join("exports");
    std::fs::write(&state, "").expect("state file");
    let path = [
        dir_of(Path::new(HFTP)),
        dir_of(&garage_bin),
        dir_of(&curl),
        dir_of(&openssl),
        std::env::var("PATH").unwrap_or_default(),
    ]
    .join(":");
    let shell = Shell {
        dir: dir.path().to_path_buf(),
        path,
        state,
        harness: harness.path().to_path_buf(),
    };

    // Declared after the directories: dropped (killed) before they go.
    let mut servers: Vec<Group> = Vec::new();
    let mut last = None;
    for block in &blocks {
        let mut text = block.text.clone();
        for (placeholder, port) in PLACEHOLDERS.iter().zip(&ports) {
            text = substitute(&text, placeholder, &port.to_string()).0;
        }
        if block.server {
            let server = shell.serve(block, &text, &servers);
            servers.push(server);
        } else {
            last = Some(shell.run(block, &text, &servers));
        }
    }

    // The recipe's own check, in its last block.
    let last = last.expect("the recipe has blocks to run");
    let said = String::from_utf8_lossy(&last.stdout);
    for expected in [
        "hola.txt",
        "big.bin",
        "Que calor que hace hoy, pinocho!",
        "same bytes",
    ] {
        assert!(
            said.contains(expected),
            "the client block printed no {expected:?}:\n{said}"
        );
    }
    // And the test's: what hftp fetched is what the recipe put in.
    let uploaded = std::fs::read(dir.path().join("big.bin")).expect("big.bin");
    let fetched = std::fs::read(dir.path().join("fetched/big.bin")).expect("fetched/big.bin");
    assert_eq!(uploaded.len(), 10 << 20, "big.bin is 10 MiB");
    assert!(
        uploaded == fetched,
        "hftp get fetched other bytes than were uploaded"
    );
    let cat = Command::new(HFTP)
        .args(["cat", &format!("127.0.0.1:{hftp_port}"), "hola.txt"])
        .env_remove("HFTP_PROXY")
        .output()
        .expect("hftp cat");
    assert!(
        cat.status.success(),
        "hftp cat: {}",
        String::from_utf8_lossy(&cat.stderr)
    );
    let hola = std::fs::read(dir.path().join("hola.txt")).expect("hola.txt");
    assert_eq!(cat.stdout, hola, "hftp cat hola.txt");
    drop(servers);
}
