//! `hftp check` as a grader, against real misbehaving servers: Python 3
//! scripts (`check_grader/misbehaving_server.py`) that never answer, hang
//! after a bare LF, crash on a long line or answer the wrong request. Each
//! run is bounded by a watchdog; the tests assert the exact diagnosis, the
//! case ids named, the exit code, the JUnit XML (read by a real parser),
//! that no process of a server started by `--server-cmd` is left, and the
//! Spanish output of the checker and of the client.
//!
//! Tier: quick.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::support::Server;

/// The misbehaving servers (one script, a mode per misbehaviour).
const SCRIPT: &str = include_str!("check_grader/misbehaving_server.py");
/// Longest any one `hftp check` run may take before the test fails.
const WATCHDOG: Duration = Duration::from_secs(120);
/// How long the test's own server may take to say it listens.
const STARTUP: Duration = Duration::from_secs(20);

/// A scratch directory holding the script and the file where every server
/// instance writes its pid, process group and helper's pid.
struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let python = Command::new("python3").arg("--version").output();
        assert!(
            python.is_ok_and(|o| o.status.success()),
            "python3 is needed by this test (.ci/run installs it)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("server.py"), SCRIPT).expect("write the script");
        std::fs::write(dir.path().join("pids"), "").expect("pid file");
        Lab { dir }
    }

    fn script(&self) -> PathBuf {
        self.dir.path().join("server.py")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("pids")
    }

    /// The `--server-cmd` that starts the server in `mode`.
    fn server_cmd(&self, mode: &str) -> String {
        format!(
            "exec python3 {} {mode} {{port}} {{dir}} {}",
            self.script().display(),
            self.pid_file().display()
        )
    }

    /// Starts the server in `mode` on a free port, for a run without
    /// `--server-cmd`.
    fn start(&self, mode: &str) -> PyServer {
        let mut command = Command::new("python3");
        command
            .arg(self.script())
            .args([mode, "0"])
            .arg(self.dir.path())
            .arg(self.pid_file())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // Tied: its own process group never sees the terminal's Ctrl-C.
        let mut child = crate::support::tied::spawn(command).expect("start python3");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                tx.send(line).ok();
            }
        });
        let line = rx
            .recv_timeout(STARTUP)
            .unwrap_or_else(|e| panic!("{mode} server did not say it listens: {e}"));
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        PyServer { child, addr }
    }

    /// Every process any server instance recorded: (pid, process group).
    fn recorded_processes(&self) -> Vec<(i32, i32)> {
        let text = std::fs::read_to_string(self.pid_file()).expect("pid file");
        text.lines()
            .flat_map(|line| {
                let fields: Vec<i32> = line
                    .split_whitespace()
                    .map(|f| f.parse().expect("pid"))
                    .collect();
                assert_eq!(fields.len(), 3, "pid line {line:?}");
                [(fields[0], fields[1]), (fields[2], fields[1])]
            })
            .collect()
    }

    /// Asserts that no recorded process is alive (zombies whose parent
    /// does not reap them are dead).
    fn assert_no_survivor(&self) {
        let recorded = self.recorded_processes();
        assert!(!recorded.is_empty(), "no server instance recorded itself");
        for (pid, pgid) in recorded {
            if let Some(state) = process_state(pid) {
                assert!(
                    state == "Z" || process_group(pid) != Some(pgid),
                    "process {pid} of server group {pgid} is still alive (state {state})"
                );
            }
        }
    }
}

/// The `/proc` state letter of `pid`, if it exists.
fn process_state(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next().map(str::to_string)
}

fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// A misbehaving server the test started itself; its group is killed on drop.
struct PyServer {
    child: Child,
    addr: String,
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the process group this test created.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        self.child.wait().ok();
    }
}

/// Runs `hftp ARGS` with `env` (locale variables cleared first) to its
/// end; fails the test if it outlives [`WATCHDOG`].
fn hftp(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hftp"));
    command
        .args(args)
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env_remove("LANG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("run hftp");
    let pid = child.id() as libc::pid_t;
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let dog = thread::spawn(move || {
        if done_rx.recv_timeout(WATCHDOG).is_err() {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let output = child.wait_with_output().expect("wait for hftp");
    done_tx.send(()).ok();
    dog.join().ok();
    assert!(
        output.status.code().is_some(),
        "hftp {args:?} did not end within {WATCHDOG:?} (killed)"
    );
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The ids of the cases whose report block mentions `needle`.
fn ids_with(stdout: &str, needle: &str) -> Vec<String> {
    stdout
        .split("\nFAIL ")
        .filter(|block| block.contains(needle))
        .filter_map(|block| {
            let block = block.strip_prefix("FAIL ").unwrap_or(block);
            Some(block.split_whitespace().next()?.to_string())
        })
        .collect()
}

/// A testcase of a JUnit report: name, classname, failure type, skipped.
#[derive(Debug)]
struct JunitCase {
    name: String,
    classname: String,
    failure_type: Option<String>,
    failure_text: Option<String>,
    skipped: Option<String>,
    error: Option<String>,
    system_out: Option<String>,
}

/// Parses a JUnit report with a real XML parser and checks its counts.
fn junit(xml: &str) -> Vec<JunitCase> {
    let doc = roxmltree::Document::parse(xml)
        .unwrap_or_else(|e| panic!("the JUnit report is not well-formed XML: {e}\n{xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let suite = root
        .children()
        .find(|n| n.has_tag_name("testsuite"))
        .expect("a testsuite");
    let cases: Vec<JunitCase> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|case| {
            let child = |name: &str| case.children().find(|n| n.has_tag_name(name));
            JunitCase {
                name: case.attribute("name").expect("name").to_string(),
                classname: case.attribute("classname").expect("classname").to_string(),
                failure_type: child("failure").and_then(|f| f.attribute("type").map(String::from)),
                failure_text: child("failure").and_then(|f| f.text().map(String::from)),
                skipped: child("skipped").and_then(|s| s.attribute("message").map(String::from)),
                error: child("error").and_then(|e| e.attribute("message").map(String::from)),
                system_out: child("system-out").and_then(|s| s.text().map(String::from)),
            }
        })
        .collect();
    let count = |attr: &str| -> usize {
        suite
            .attribute(attr)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("testsuite {attr}"))
    };
    assert_eq!(count("tests"), cases.len());
    assert_eq!(
        count("failures"),
        cases.iter().filter(|c| c.failure_type.is_some()).count()
    );
    assert_eq!(
        count("skipped"),
        cases.iter().filter(|c| c.skipped.is_some()).count()
    );
    assert_eq!(
        count("errors"),
        cases.iter().filter(|c| c.error.is_some()).count()
    );
    cases
}

#[test]
fn a_server_that_never_answers_is_one_clear_error() {
    let lab = Lab::new();
    let server = lab.start("silent");
    let out = hftp(
        &["check", &server.addr, "--timeout", "0.5", "--lang", "en"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!(
            "hftp: the server at {} does not answer: a new connection got no answer to `quit` within 0.5 s\n",
            server.addr
        )
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));

    let lab = Lab::new();
    let out = hftp(
        &[
            "check",
            "--server-cmd",
            &lab.server_cmd("silent"),
            "--timeout",
            "0.5",
            "--lang",
            "en",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("hftp: the server at 127.0.0.1:")
            && stderr.ends_with(
                " does not answer: a new connection got no answer to `quit` within 0.5 s\n"
            ),
        "{stderr}"
    );
    lab.assert_no_survivor();
}

#[test]
fn a_server_that_hangs_after_bare_lines_stops_the_run() {
    let lab = Lab::new();
    // Two workers; each bare LF sends one into an endless loop.
    let server = lab.start("pool-wedge");
    let out = hftp(
        &[
            "check",
            &server.addr,
            "--only",
            "eol.*,cmd.unknown",
            "--skip",
            "*-with-args",
            "--timeout",
            "1",
            "--lang",
            "en",
        ],
        &[],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    let stop = "the server stopped answering after case eol.lf-alone \
                (while case eol.lf-only-line was running)";
    assert!(
        stdout.contains(&format!(
        "FAIL eol.lf-only-line [§2]\n     requires: `\\n` → `100 BAD EOL\\r\\n`, then EOF\n     \
         step:     answer to `\\n`\n     expected: `100 BAD EOL\\r\\n`\n     \
         got:      timeout: 0 of 13 bytes in 1.0 s: ``\n     \
         → bug 1 (see the list above)\n     \
         server:   the server stopped answering during this case \
         (a new connection got no answer to `quit` within 1.0 s); {stop}\n     \
         the checker held up to 1 connection(s) open during the case\n     \
         likely cause: the server stopped accepting or answering after this case: \
         look at what it printed\n"
    )),
        "{stdout}"
    );
    // The first bare LF hung only one worker: the run went on.
    assert!(stdout.contains("FAIL eol.lf-alone [§2]"), "{stdout}");
    let lf_alone = stdout
        .split("FAIL eol.lf-only-line")
        .next()
        .unwrap_or_default();
    assert!(!lf_alone.contains("server:"), "{lf_alone}");
    for id in [
        "eol.lf-mid-line",
        "eol.lf-after-long-line",
        "eol.cr-alone",
        "eol.cr-cr-lf",
        "eol.cr-at-start",
        "eol.lf-cr",
        "eol.after-good-request",
        "cmd.unknown",
    ] {
        assert!(
            stdout.contains(&format!("NOT RUN {id} [§2]\n")),
            "{id} not marked:\n{stdout}"
        );
    }
    // Twice in the cases, once in the bug's reproduction.
    assert_eq!(stdout.matches("timeout").count(), 3, "{stdout}");
    assert!(
        stdout.ends_with(&format!(
            "Cases that crashed or hung the server:\n  eol.lf-only-line: hung the server \
             (a new connection got no answer to `quit` within 1.0 s)\n\
             By section of the spec:\n  §2   0 passed, 2 failed, 0 skipped, 8 not run\n\
             {stop}\n0 passed, 2 failed, 0 skipped, 8 not run\n"
        )),
        "{stdout}"
    );
}

#[test]
fn a_server_that_hangs_is_restarted_and_each_hanging_case_named_in_junit() {
    let lab = Lab::new();
    // Any bare LF hangs the whole server.
    let out = hftp(
        &[
            "check",
            "--server-cmd",
            &lab.server_cmd("wedge"),
            "--only",
            "eol.*",
            "--timeout",
            "1",
            "--format",
            "junit",
            "--lang",
            "en",
        ],
        &[],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let cases = junit(&text(&out.stdout));
    assert_eq!(cases.len(), 9);
    let hung: Vec<&str> = cases
        .iter()
        .filter(|c| c.failure_type.as_deref() == Some("server-hung"))
        .map(|c| c.name.as_str())
        .collect();
    let with_bare_lf = [
        "eol.lf-alone",
        "eol.lf-only-line",
        "eol.lf-mid-line",
        "eol.lf-after-long-line",
        "eol.lf-cr",
        "eol.after-good-request",
    ];
    assert_eq!(hung, with_bare_lf);
    for case in &cases {
        assert_eq!(case.classname, "§2.eol");
        assert!(case.failure_type.is_some(), "{case:?}");
    }
    let lf_alone = &cases[0];
    assert_eq!(
        lf_alone.system_out.as_deref(),
        Some(
            "the server stopped answering during this case (a new connection got no answer \
             to `quit` within 1.0 s); restarted it; the next cases run against a fresh server"
        )
    );
    assert!(
        lf_alone
            .failure_text
            .as_deref()
            .is_some_and(|t| t.contains("expected: `100 BAD EOL\\r\\n`\ngot:      timeout")),
        "{lf_alone:?}"
    );
    for id in with_bare_lf {
        assert!(
            stderr.contains(&format!(
                "hftp: {id}: the server stopped answering during this case"
            )),
            "{stderr}"
        );
    }
    assert!(
        stderr.ends_with("0 passed, 9 failed, 0 skipped\n"),
        "{stderr}"
    );
    // Started once, restarted after each hanging case, and for the second
    // attempt of each case that timed out while the server still answered
    // (a CR not followed by LF: this server waits for an LF for ever).
    let instances = lab.recorded_processes().len() / 2;
    let cr_cases = cases
        .iter()
        .filter(|c| c.failure_type.as_deref() == Some("bad-eol"))
        .count();
    assert!(
        (1 + with_bare_lf.len()..=1 + with_bare_lf.len() + cr_cases).contains(&instances),
        "{instances} instances"
    );
    lab.assert_no_survivor();
}

#[test]
fn a_server_that_crashes_on_long_lines_is_restarted_and_its_output_shown() {
    let lab = Lab::new();
    let args = |format: &'static str| {
        vec![
            "check".to_string(),
            "--server-cmd".into(),
            lab.server_cmd("crash-long"),
            "--only".into(),
            "eol.*,limit.*".into(),
            "--timeout".into(),
            "1".into(),
            "--format".into(),
            format.into(),
            "--lang".into(),
            "en".into(),
        ]
    };
    let run = |format| {
        let args = args(format);
        hftp(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    };
    let out = run("text");
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let long_lines = [
        "eol.lf-after-long-line",
        "limit.name-5mib",
        "limit.over-default-8mib",
    ];
    assert_eq!(
        ids_with(&stdout, "server:   the server exited during this case (killed by signal 11 (SIGSEGV)); restarted it"),
        long_lines
    );
    let mut listed = String::from("Cases that crashed or hung the server:\n");
    for id in long_lines {
        listed.push_str(&format!(
            "  {id}: crashed the server (killed by signal 11 (SIGSEGV))\n"
        ));
    }
    assert!(stdout.contains(&listed), "{stdout}");
    // The server's last words, control characters shown, not sent to the terminal.
    assert!(
        stdout.contains("overflows my buffer") && stdout.contains("\\x00\\x1b[31m<&>]]>"),
        "{stdout}"
    );
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
    assert!(
        stdout.ends_with("0 passed, 11 failed, 0 skipped\n"),
        "{stdout}"
    );

    let out = run("junit");
    assert_eq!(out.status.code(), Some(1));
    let cases = junit(&text(&out.stdout));
    let crashed: Vec<&JunitCase> = cases
        .iter()
        .filter(|c| c.failure_type.as_deref() == Some("server-crashed"))
        .collect();
    assert_eq!(
        crashed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        long_lines
    );
    let output = crashed[0].system_out.as_deref().unwrap_or_default();
    assert!(
        output.starts_with("the server exited during this case (killed by signal 11 (SIGSEGV))")
            && output.contains("\\x00\\x1b[31m<&>]]> overflows my buffer"),
        "{output}"
    );
    lab.assert_no_survivor();
}

#[test]
fn a_wrong_answer_is_diagnosed_exactly_in_text_and_junit() {
    let lab = Lab::new();
    // Answers `quit x` (and `quit `) as if it were `quit`.
    let server = lab.start("quit-prefix");
    let only = [
        "--only",
        "cmd.unknown,args.quit.*",
        "--skip",
        "*-with-args",
        "--timeout",
        "2",
    ];
    let out = hftp(
        &[&["check", server.addr.as_str(), "--lang", "en"], &only[..]].concat(),
        &[],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stdout,
        "1 bug, behind every failed case:\n\
         1. answers 0 where the spec requires 201 (§2): 2 cases\n   \
         args.quit.extra, args.quit.trailing-space\n   \
         reproduce: args.quit.trailing-space\n     \
         step:     answer to `quit \\r\\n`\n     \
         expected: `201 INVALID ARGUMENTS FOR COMMAND\\r\\n`\n     \
         got:      `0 OK\\r\\n`\n\n\
         PASS cmd.unknown [§2]\n\
         FAIL args.quit.extra [§2]\n     \
         requires: `quit x\\r\\n` → `201 INVALID ARGUMENTS FOR COMMAND\\r\\n`, connection stays open\n     \
         step:     answer to `quit x\\r\\n`\n     \
         expected: `201 INVALID ARGUMENTS FOR COMMAND\\r\\n`\n     \
         got:      `0 OK\\r\\n`\n     \
         → bug 1 (see the list above)\n\
         FAIL args.quit.trailing-space [§2]\n     \
         requires: `quit \\r\\n` → `201 INVALID ARGUMENTS FOR COMMAND\\r\\n`, connection stays open\n     \
         step:     answer to `quit \\r\\n`\n     \
         expected: `201 INVALID ARGUMENTS FOR COMMAND\\r\\n`\n     \
         got:      `0 OK\\r\\n`\n     \
         → bug 1 (see the list above)\n\
         By section of the spec:\n  §2   1 passed, 2 failed, 0 skipped\n\
         1 passed, 2 failed, 0 skipped\n"
    );

    let out = hftp(
        &[
            &[
                "check",
                server.addr.as_str(),
                "--format",
                "junit",
                "--lang",
                "en",
            ],
            &only[..],
        ]
        .concat(),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let cases = junit(&text(&out.stdout));
    assert_eq!(cases.len(), 3);
    assert_eq!(cases[0].name, "cmd.unknown");
    assert!(cases[0].failure_type.is_none() && cases[0].skipped.is_none());
    assert_eq!(cases[1].classname, "§2.args");
    assert_eq!(
        cases[1].failure_type.as_deref(),
        Some("status-201-answered-0")
    );
    assert_eq!(
        cases[1].failure_text.as_deref(),
        Some(
            "requires: `quit x\\r\\n` → `201 INVALID ARGUMENTS FOR COMMAND\\r\\n`, connection stays open\n\
             step:     answer to `quit x\\r\\n`\n\
             expected: `201 INVALID ARGUMENTS FOR COMMAND\\r\\n`\n\
             got:      `0 OK\\r\\n`"
        )
    );
}

#[test]
fn skipped_cases_carry_their_reason_in_junit() {
    let lab = Lab::new();
    let server = lab.start("quit-prefix");
    let out = hftp(
        &[
            "check",
            &server.addr,
            "--only",
            "frag.crlf-split,cmd.unknown",
            "--skip",
            "cmd.*",
            "--format",
            "junit",
            "--lang",
            "en",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let cases = junit(&text(&out.stdout));
    assert_eq!(cases.len(), 1, "--skip leaves cmd.unknown out");
    assert_eq!(
        cases[0].skipped.as_deref(),
        Some("needs the served directory to lay out its files: add --dir DIR (the directory the server serves) or --server-cmd CMD (the checker starts the server)")
    );
}

#[test]
fn a_server_command_that_does_not_start_is_one_clear_error() {
    let out = hftp(
        &[
            "check",
            "--server-cmd",
            "echo no python here >&2; exit 7 # {dir} {port}",
            "--lang",
            "en",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(
            "hftp: the server command exited (exit status 7) before listening on 127.0.0.1:"
        ) && stderr.ends_with("; its last output:\n    no python here\n"),
        "{stderr}"
    );

    let lab = Lab::new();
    let pids = lab.pid_file();
    let never_listens = format!(
        "sleep 300 & echo \"$$ $$ $!\" >> {}; wait # {{dir}} {{port}}",
        pids.display()
    );
    let out = hftp(
        &[
            "check",
            "--server-cmd",
            &never_listens,
            "--start-timeout",
            "0.5",
            "--lang",
            "en",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("hftp: the server command did not listen on 127.0.0.1:")
            && stderr.contains(" within 0.5 s (--start-timeout): sh -c "),
        "{stderr}"
    );
    lab.assert_no_survivor();

    let out = hftp(
        &["check", "--server-cmd", "python3 server.py -p {port}"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "hftp: --server-cmd must contain {dir} (e.g. 'python3 server.py -d {dir} -p {port}')\n"
    );
}

#[test]
fn the_checker_speaks_spanish_when_the_locale_asks() {
    let lab = Lab::new();
    let server = lab.start("quit-prefix");
    let out = hftp(
        &[
            "check",
            &server.addr,
            "--only",
            "cmd.unknown,args.quit.extra,frag.crlf-split",
            "--skip",
            "*-with-args",
            "--timeout",
            "2",
        ],
        &[("LANG", "es_AR.UTF-8")],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stdout,
        "1 error, detrás de todos los casos fallidos:\n\
         1. responde 0 donde la especificación pide 201 (§2): 1 caso\n   \
         args.quit.extra\n   \
         reproducir: args.quit.extra\n     \
         paso:     respuesta a `quit x\\r\\n`\n     \
         esperado: `201 INVALID ARGUMENTS FOR COMMAND\\r\\n`\n     \
         recibido: `0 OK\\r\\n`\n\n\
         PASS cmd.unknown [§2]\n\
         FAIL args.quit.extra [§2]\n     \
         requiere: `quit x\\r\\n` → `201 INVALID ARGUMENTS FOR COMMAND\\r\\n`, la conexión sigue abierta\n     \
         paso:     respuesta a `quit x\\r\\n`\n     \
         esperado: `201 INVALID ARGUMENTS FOR COMMAND\\r\\n`\n     \
         recibido: `0 OK\\r\\n`\n     \
         → error 1 (vea la lista de arriba)\n\
         SKIP frag.crlf-split [§2]: necesita el directorio servido para poner sus archivos: agregue --dir DIR (el directorio que sirve el servidor) o --server-cmd CMD (el verificador arranca el servidor)\n\
         Por sección de la especificación:\n  §2   1 aprobados, 1 fallidos, 1 omitidos\n\
         1 passed, 1 failed, 1 skipped\n"
    );
    // --lang wins over the locale.
    let out = hftp(
        &[
            "check",
            &server.addr,
            "--only",
            "cmd.unknown",
            "--lang",
            "en",
        ],
        &[("LC_ALL", "es_ES.UTF-8")],
    );
    assert!(text(&out.stdout).contains("By section of the spec:"));
}

#[test]
fn client_errors_speak_spanish_with_lang_es() {
    let served = tempfile::tempdir().expect("temp dir");
    let server = Server::builder(served.path()).start();
    let addr = server.addr().to_string();
    let out = hftp(&["stat", &addr, "nada.txt", "--lang", "es"], &[]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        text(&out.stderr),
        "hftp: get_metadata nada.txt: el servidor respondió 202 FILE NOT FOUND (no existe el archivo)\n"
    );
    let out = hftp(
        &["stat", &addr, "nada.txt"],
        &[("LANG", "es_AR.UTF-8"), ("LC_MESSAGES", "en_US.UTF-8")],
    );
    assert_eq!(
        text(&out.stderr),
        "hftp: get_metadata nada.txt: server answered 202 FILE NOT FOUND (no such file)\n"
    );
}

/// Without the served directory, the dozens of cases that need it are one
/// line that says why and how to run them; the counts still add up.
#[test]
fn cases_skipped_for_one_reason_are_one_line() {
    let served = tempfile::tempdir().expect("temp dir");
    let server = Server::builder(served.path()).start();
    let out = hftp(&["check", &server.addr().to_string(), "--lang", "en"], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let skips: Vec<&str> = stdout.lines().filter(|l| l.starts_with("SKIP")).collect();
    assert_eq!(skips.len(), 1, "one SKIP line: {skips:#?}");
    let summary = stdout.lines().last().expect("a summary line");
    let skipped: usize = summary
        .split(", ")
        .find_map(|part| part.strip_suffix(" skipped"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no skipped count in {summary:?}"));
    assert!(skipped > 1, "{summary}");
    assert!(
        skips[0].starts_with(&format!("SKIP {skipped} cases (")),
        "{}",
        skips[0]
    );
    assert!(
        skips[0].ends_with(&format!(
            "and {} more): needs the served directory to lay out its files: \
             add --dir DIR (the directory the server serves) or --server-cmd CMD \
             (the checker starts the server)",
            skipped - 3
        )),
        "{}",
        skips[0]
    );
}

/// A classic server written as a student would, with one bug per mode
/// (`check_grader/student_server.py`).
const STUDENT: &str = include_str!("check_grader/student_server.py");

/// `hftp check --server-cmd` against the student server in `mode`, as JSON
/// and as text (in English); returns (JSON report, text report).
fn grade_student(mode: &str) -> (serde_json::Value, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("student_server.py");
    std::fs::write(&script, STUDENT).expect("write the script");
    let cmd = format!("exec python3 {} {mode} {{dir}} {{port}}", script.display());
    let run = |format: &str| {
        hftp(
            &[
                "check",
                "--server-cmd",
                &cmd,
                "--format",
                format,
                "--lang",
                "en",
            ],
            &[],
        )
    };
    let json = run("json");
    let report: serde_json::Value = serde_json::from_slice(&json.stdout)
        .unwrap_or_else(|e| panic!("{mode}: JSON report: {e}\n{}", text(&json.stderr)));
    let text_report = text(&run("text").stdout);
    (report, text_report)
}

/// The rules of the bugs, most cases first, and the cases of the first.
fn bug_rules(report: &serde_json::Value) -> (Vec<String>, Vec<String>) {
    let bugs = report["bugs"].as_array().expect("a bugs array");
    let rules = bugs
        .iter()
        .map(|b| b["rule"].as_str().expect("rule").to_owned())
        .collect();
    let first = bugs.first().map_or_else(Vec::new, |b| {
        b["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .map(|c| c.as_str().expect("id").to_owned())
            .collect()
    });
    (rules, first)
}

#[test]
fn a_correct_student_server_has_no_bug() {
    let (report, text_report) = grade_student("ok");
    assert_eq!(report["summary"]["failed"], 0, "{text_report}");
    assert_eq!(report["bugs"], serde_json::json!([]), "{text_report}");
    assert!(text_report.starts_with("PASS "), "{text_report}");
}

/// One bug, many red cases: the unsorted listing also fails pipelining and
/// live-directory cases, and the report names the listing first for all.
#[test]
fn an_unsorted_listing_is_one_bug_named_first() {
    let (report, text_report) = grade_student("unsorted");
    let (rules, cases) = bug_rules(&report);
    assert_eq!(rules, ["listing-order"], "{text_report}");
    for id in [
        "listing.spec-example",
        "listing.1000-sorted",
        "frag.pipelined-5",
    ] {
        assert!(
            cases.iter().any(|c| c == id),
            "{id} not under the bug: {cases:?}"
        );
    }
    assert!(
        text_report.starts_with(&format!(
            "1 bug, behind every failed case:\n1. the listing is not sorted by byte value (§5): {} cases\n",
            cases.len()
        )),
        "{text_report}"
    );
}

/// Existence checked before the shape of `get_slice`'s arguments: one
/// ordering bug, confirmed by the same request with the file present.
#[test]
fn existence_checked_before_shape_is_an_ordering_bug() {
    let (report, text_report) = grade_student("existence-first");
    let (rules, cases) = bug_rules(&report);
    assert_eq!(rules, ["existence-before-shape"], "{text_report}");
    assert!(
        cases
            .iter()
            .all(|c| c.starts_with("args.get_slice.") || c.starts_with("order.")),
        "{cases:?}"
    );
    assert!(
        text_report.contains(
            "→ with hola.txt present the same request gets 201 as required: the server looks \
             for the file before it checks the arguments"
        ),
        "{text_report}"
    );
}

/// A `0 OK` after a `203` is blamed on the request it followed, not read
/// as the answer to the next one.
#[test]
fn extra_bytes_are_blamed_on_the_request_they_follow() {
    let (report, text_report) = grade_student("extra-after-203");
    let (rules, cases) = bug_rules(&report);
    assert_eq!(rules, ["extra-bytes"], "{text_report}");
    assert!(
        cases.iter().any(|c| c == "slice.wire-example-203"),
        "{cases:?}"
    );
    assert!(
        text_report.contains(
            "     step:     after the answer to `get_slice hola.txt 30 3\\r\\n`\n     \
             expected: nothing more before the next request\n     \
             got:      more bytes: `0 OK\\r\\n`"
        ),
        "{text_report}"
    );
}

/// A pool whose workers die on resets: the hang is explained with the
/// cases that left clients without `quit`, and the likely cause.
#[test]
fn a_pool_that_dies_on_resets_is_explained() {
    let (report, text_report) = grade_student("pool-dies-on-reset");
    let (rules, _) = bug_rules(&report);
    assert_eq!(
        rules.first().map(String::as_str),
        Some("hang"),
        "{text_report}"
    );
    assert!(
        text_report.contains("earlier cases left clients without quit: ")
            && text_report.contains("clients.vanishing-client")
            && text_report.contains("likely cause: each client holds a worker until it sends quit"),
        "{text_report}"
    );
}

/// A server that drips its answers a byte every 200 ms ends the run early
/// with that diagnosis (it would otherwise hold the checker for minutes),
/// and JUnit reads the stopped run as a failure, not as skips.
#[test]
fn a_dripping_server_ends_the_run_with_its_diagnosis() {
    let (report, text_report) = grade_student("drip");
    let (rules, _) = bug_rules(&report);
    assert_eq!(
        rules.first().map(String::as_str),
        Some("trickle"),
        "{text_report}"
    );
    assert!(
        report["summary"]["not_run"].as_u64() > Some(100),
        "{text_report}"
    );
    assert!(
        report["stopped"]
            .as_str()
            .is_some_and(|s| s.starts_with("the server answers a few bytes at a time")),
        "{report}"
    );
}
