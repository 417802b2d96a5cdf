//! `hftp grade` against a class of real misbehaving Python servers, all
//! one script (`grade/server.py`) with a mode per submission: a correct
//! one, one with a plain bug (a listing in reverse order) under a hostile
//! name, one that never starts, one that listens on another port than it
//! was given, a fork bomb, a disk filler, one that hangs, and a spy that
//! reports what it can see and do from inside its sandbox. Each class is
//! graded in one command, bounded by a watchdog; the tests read the CSV,
//! the HTML pages and the reports, and check that nothing a submission did
//! reached the host: no process left, no file written outside, no port of
//! the host reachable, no variable of the grader's environment seen.
//!
//! Tier: full (every test marked `#[ignore = "full tier: ..."]`): needs root and util-linux's unshare, setpriv and prlimit.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::tools::{require, require_root};

/// The one script every submission of the test classes runs.
const SERVER: &str = include_str!("grade/server.py");
/// Longest any one `hftp grade` run may take before the test fails.
const WATCHDOG: Duration = Duration::from_secs(300);
/// `--procs` of the test classes: the fork bomb's ceiling.
const PROCS: &str = "32";
/// The first uid of `hftp grade`'s default range.
const UID_BASE: u32 = 1_879_048_192 + 65_536;
/// A name a student could give a directory: HTML, quotes, a formula.
const HOSTILE: &str = "=1+2 <b>bold<b> & \"q\" 'a'";
/// A variable of the grader's environment no server may see.
const SECRET: &str = "HFTP_GRADE_SECRET";

/// The tools of the sandbox, and a python3 that any uid can run (a pyenv
/// under /root is out of the servers' sight).
fn require_tools() -> PathBuf {
    for tool in ["unshare", "setpriv", "prlimit"] {
        require(tool, "apt-get install util-linux");
    }
    ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("a system python3 (under /usr or /bin, runnable by any uid) is needed: apt-get install python3")
        })
}

/// A class directory and an output directory, both readable by any uid.
struct Class {
    root: tempfile::TempDir,
    /// Unique to this test, on every server's command line, to find
    /// leftovers.
    marker: String,
}

impl Class {
    fn new(name: &str) -> Class {
        let root = tempfile::Builder::new()
            .prefix("hftp-grade-test-")
            .tempdir()
            .expect("temp dir");
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::create_dir(root.path().join("class")).expect("class dir");
        let marker = format!("hftp-grade-{name}-{}", std::process::id());
        Class { root, marker }
    }

    fn dir(&self) -> PathBuf {
        self.root.path().join("class")
    }

    fn out(&self) -> PathBuf {
        self.root.path().join("out")
    }

    /// A submission `name` running the script in `mode`, with `extra`
    /// files beside it.
    fn add(&self, name: &str, mode: &str, extra: &[(&str, String)]) {
        let dir = self.dir().join(name);
        std::fs::create_dir(&dir).expect("submission dir");
        std::fs::write(dir.join("server.py"), SERVER).expect("server.py");
        std::fs::write(dir.join("mode.txt"), format!("{mode}\n")).expect("mode.txt");
        for (file, text) in extra {
            std::fs::write(dir.join(file), text).expect("extra file");
        }
    }

    fn server_cmd(&self, python: &Path) -> String {
        format!(
            "cd {{submission}} && exec {} server.py -d {{dir}} -p {{port}} --marker {}",
            python.display(),
            self.marker
        )
    }

    /// Runs `hftp grade` (as `as_user`, when given) to its end; fails the
    /// test if it outlives [`WATCHDOG`].
    fn grade(&self, python: &Path, exe: &Path, as_user: Option<u32>, args: &[&str]) -> Output {
        let mut command = match as_user {
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.args([
                    format!("--reuid={uid}"),
                    format!("--regid={uid}"),
                    "--clear-groups".into(),
                ])
                .arg(exe);
                c
            }
            None => Command::new(exe),
        };
        command
            .arg("grade")
            .arg(self.dir())
            .arg("-o")
            .arg(self.out())
            .args(["--server-cmd", &self.server_cmd(python)])
            .args(["--procs", PROCS, "--disk", "32M", "--start-timeout", "5"])
            .args(args)
            .env(SECRET, "the grader's own secret")
            .env_remove("LC_ALL")
            .env_remove("LC_MESSAGES")
            .env_remove("LANG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = crate::support::tied::spawn(command).expect("run hftp grade");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let read = |mut pipe: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                pipe.read_to_end(&mut bytes).ok();
                bytes
            })
        };
        let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if started.elapsed() > WATCHDOG {
                child.kill().ok();
                child.wait().ok();
                panic!("hftp grade did not end within {WATCHDOG:?} (killed)");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = Output {
            status,
            stdout: out.join().expect("stdout"),
            stderr: err.join().expect("stderr"),
        };
        eprintln!(
            "hftp grade ({:.1} s):\n{}",
            started.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// The gradebook's rows by submission name, each a map from column to
    /// field.
    fn rows(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let text =
            std::fs::read_to_string(self.out().join("gradebook.csv")).expect("gradebook.csv");
        let mut lines = text.lines();
        let header = csv_fields(lines.next().expect("header"));
        assert_eq!(
            header.join(","),
            "submission,status,passed,failed,skipped,not_run,limits,bugs,detail,seconds"
        );
        lines
            .map(|line| {
                let row: BTreeMap<String, String> =
                    header.iter().cloned().zip(csv_fields(line)).collect();
                (row["submission"].clone(), row)
            })
            .collect()
    }

    fn report(&self, name: &str, file: &str) -> String {
        std::fs::read_to_string(self.out().join(name).join(file))
            .unwrap_or_else(|e| panic!("{name}/{file}: {e}"))
    }

    /// Fails if any process of this test's servers is still alive.
    fn assert_no_server_left(&self) {
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            assert!(
                !cmdline.contains(&self.marker),
                "a server outlived hftp grade: pid {:?}: {cmdline}",
                entry.file_name()
            );
        }
    }

    /// Fails if the disk filler wrote anywhere the host can see.
    fn assert_no_filler_outside(&self) {
        let mut places: Vec<PathBuf> = ["/tmp", "/var/tmp", "/dev/shm"]
            .into_iter()
            .map(PathBuf::from)
            .collect();
        places.push(self.dir().join("diskfill"));
        for place in places {
            let file = place.join("hftp-grade-filler.bin");
            assert!(!file.exists(), "the disk filler wrote {}", file.display());
        }
        let files: Vec<String> = std::fs::read_dir(self.dir().join("diskfill"))
            .expect("diskfill dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files.len(), 2, "the original submission changed: {files:?}");
    }
}

/// The fields of one CSV line (quoted fields with doubled quotes).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// The `key=value` facts of the spy's line in a detail.
fn spy_facts(detail: &str) -> BTreeMap<String, String> {
    let line = detail
        .split("spy: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no spy line in the detail {detail:?}"));
    line.split_whitespace()
        .filter_map(|fact| {
            let (k, v) = fact.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// A port of the host's loopback that something listens on, and the
/// listener that holds it.
fn held_port() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a host port");
    let port = listener.local_addr().expect("addr").port();
    (listener, port)
}

fn number(row: &BTreeMap<String, String>, column: &str) -> u64 {
    row[column]
        .parse()
        .unwrap_or_else(|_| panic!("{column} of {row:?} is not a number"))
}

/// What every sandbox must have kept from the spy: no root, no secret, a
/// read-only host, nothing of /home or of the class, only loopback, no
/// port of the host.
fn assert_spy_was_contained(spy: &BTreeMap<String, String>, expect_uid: impl Fn(u32) -> bool) {
    let facts = spy_facts(&spy["detail"]);
    let uid: u32 = facts["uid"].parse().expect("uid");
    assert!(expect_uid(uid), "the spy ran as uid {uid}: {facts:?}");
    assert_eq!(facts["secret"], "none", "{facts:?}");
    assert_eq!(facts["etc"], "EROFS", "{facts:?}");
    assert_eq!(facts["usr"], "EROFS", "{facts:?}");
    assert!(
        facts["home"] == "empty" || facts["home"] == "missing",
        "{facts:?}"
    );
    assert!(
        facts["class"] == "empty" || facts["class"] == "missing",
        "the spy saw the class: {facts:?}"
    );
    assert_eq!(facts["ifaces"], "lo", "{facts:?}");
    assert_eq!(facts["host"], "ECONNREFUSED", "{facts:?}");
}

#[test]
#[ignore = "full tier: needs root and util-linux (unshare, setpriv, prlimit)"]
fn a_class_is_graded_in_one_command_and_no_submission_reaches_another() {
    require_root("network namespaces and a uid per parallel slot");
    let python = require_tools();
    let class = Class::new("class");
    let (_wrong_listener, wrong_port) = held_port();
    let (_spy_listener, spy_port) = held_port();
    class.add("a-forkbomb", "forkbomb", &[]);
    class.add("b-good", "good", &[]);
    class.add("c-diskfill", "diskfill", &[]);
    class.add(HOSTILE, "unsorted", &[]);
    class.add("nostart", "nostart", &[]);
    class.add(
        "spy",
        "spy",
        &[(
            "spy.txt",
            format!("{spy_port}\n{}\n", class.dir().display()),
        )],
    );
    class.add(
        "wrongport",
        "wrongport",
        &[("port.txt", wrong_port.to_string())],
    );
    // The filler's place in the checks below.
    std::fs::rename(class.dir().join("c-diskfill"), class.dir().join("diskfill")).expect("rename");
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_hftp"));
    let output = class.grade(&python, &exe, None, &["-j", "3", "--lang", "en"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("7 submissions, 3 at a time; sandbox: root"),
        "{stderr}"
    );
    for n in 1..=7 {
        assert!(
            stderr.contains(&format!("[{n}/7] ")),
            "no progress line {n}: {stderr}"
        );
    }

    let rows = class.rows();
    assert_eq!(rows.len(), 7, "{rows:#?}");
    let good = &rows["b-good"];
    assert_eq!(good["status"], "ok", "{good:?}");
    assert!(number(good, "passed") > 100, "{good:?}");
    assert_eq!(
        (number(good, "failed"), number(good, "not_run")),
        (0, 0),
        "{good:?}"
    );

    let hostile = &rows[&format!("'{HOSTILE}")];
    assert_eq!(hostile["status"], "failed", "{hostile:?}");
    assert!(number(hostile, "failed") > 0, "{hostile:?}");
    assert!(!hostile["bugs"].is_empty(), "{hostile:?}");
    assert!(class
        .report(HOSTILE, "report.txt")
        .contains("FAIL listing.byte-order"));

    let nostart = &rows["nostart"];
    assert_eq!(nostart["status"], "never-started", "{nostart:?}");
    assert!(
        nostart["detail"].contains("ModuleNotFoundError"),
        "{nostart:?}"
    );
    assert!(nostart["passed"].is_empty(), "{nostart:?}");

    let wrong = &rows["wrongport"];
    assert_eq!(wrong["status"], "never-started", "{wrong:?}");
    assert!(
        wrong["detail"].contains(&format!("another port: {wrong_port}")),
        "it listened on the host's busy port {wrong_port} in its own namespace: {wrong:?}"
    );

    let bomb = &rows["a-forkbomb"];
    assert_eq!(bomb["status"], "limit", "{bomb:?}");
    assert!(
        bomb["limits"].split(';').any(|l| l == "processes"),
        "{bomb:?}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&class.report("a-forkbomb", "report.json")).expect("report.json");
    assert_eq!(
        json["sandbox"]["peak_tasks"],
        serde_json::json!(32),
        "{json:#}"
    );

    let filler = &rows["diskfill"];
    assert_eq!(filler["status"], "limit", "{filler:?}");
    assert!(
        filler["limits"].split(';').any(|l| l == "disk"),
        "{filler:?}"
    );
    // Its own grading still ran: the checker's files are on another disk.
    assert!(number(filler, "passed") > 100, "{filler:?}");
    assert_eq!(number(filler, "failed"), 0, "{filler:?}");

    let spy = &rows["spy"];
    assert_eq!(spy["status"], "never-started", "{spy:?}");
    assert_spy_was_contained(spy, |uid| (UID_BASE..UID_BASE + 3).contains(&uid));

    let index = std::fs::read_to_string(class.out().join("index.html")).expect("index.html");
    assert!(index.contains("<html lang=\"en\">"), "{index}");
    assert_eq!(index.matches("<tr class=").count(), 7, "{index}");
    assert!(
        index.contains("=1+2 &lt;b&gt;bold&lt;b&gt; &amp; &quot;q&quot; &#39;a&#39;"),
        "{index}"
    );
    assert!(
        !index.contains("<b>bold"),
        "the name went into the page raw: {index}"
    );
    assert!(
        index.contains(
            "href=\"%3D1%2B2%20%3Cb%3Ebold%3Cb%3E%20%26%20%22q%22%20%27a%27/report.html\""
        ),
        "{index}"
    );
    for name in [
        "a-forkbomb",
        "b-good",
        "diskfill",
        HOSTILE,
        "nostart",
        "spy",
        "wrongport",
    ] {
        for file in ["report.txt", "report.html", "report.json"] {
            assert!(class.out().join(name).join(file).is_file(), "{name}/{file}");
        }
    }
    assert!(!class.report(HOSTILE, "report.html").contains("<b>bold"));

    class.assert_no_server_left();
    class.assert_no_filler_outside();
    for uid in UID_BASE..UID_BASE + 3 {
        let left: Vec<String> = std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter(|e| {
                std::fs::read_to_string(e.path().join("status"))
                    .unwrap_or_default()
                    .lines()
                    .any(|l| {
                        l.starts_with("Uid:")
                            && l.split_whitespace().nth(1) == Some(&uid.to_string())
                    })
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.is_empty(), "processes of uid {uid} left: {left:?}");
    }
}

#[test]
#[ignore = "full tier: needs root and util-linux (unshare, setpriv, prlimit)"]
fn a_submission_over_its_time_is_stopped_with_everything_it_started() {
    require_root("network namespaces and a uid per parallel slot");
    let python = require_tools();
    let class = Class::new("time");
    // It answers the checker's `quit` probes, and nothing else: each case
    // waits its --timeout, so the run lasts cases × 5 s, far beyond --time.
    class.add("hang", "hang", &[]);
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_hftp"));
    let base = (UID_BASE + 100).to_string();
    let output = class.grade(
        &python,
        &exe,
        None,
        &["--time", "4", "--uid-base", &base, "--lang", "es"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let rows = class.rows();
    let hang = &rows["hang"];
    assert_eq!(hang["status"], "timed-out", "{hang:?}");
    assert!(hang["passed"].is_empty(), "{hang:?}");
    assert!(hang["detail"].contains("4 s (--time)"), "{hang:?}");
    let index = std::fs::read_to_string(class.out().join("index.html")).expect("index.html");
    assert!(index.contains("tiempo agotado"), "{index}");
    class.assert_no_server_left();
}

#[test]
#[ignore = "full tier: needs root (to become an unprivileged user) and util-linux (unshare, setpriv, prlimit)"]
fn without_root_user_namespaces_contain_the_class() {
    require_root("to run hftp grade as the unprivileged user nobody");
    let python = require_tools();
    let class = Class::new("userns");
    let nobody = 65534;
    let (_spy_listener, spy_port) = held_port();
    class.add("forkbomb", "forkbomb", &[]);
    class.add("good", "good", &[]);
    class.add("diskfill", "diskfill", &[]);
    class.add(
        "spy",
        "spy",
        &[(
            "spy.txt",
            format!("{spy_port}\n{}\n", class.dir().display()),
        )],
    );
    std::fs::create_dir(class.out()).expect("out dir");
    std::os::unix::fs::chown(class.out(), Some(nobody), Some(nobody)).expect("chown out");
    // The binary where nobody can run it (the checkout may be under /root).
    let exe = class.root.path().join("hftp");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_hftp"), &exe).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_hftp"), &exe).expect("copy hftp");
    }
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let output = class.grade(&python, &exe, Some(nobody), &["-j", "2", "--lang", "es"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "4 entregas, 2 a la vez; aislamiento: espacios de nombres de usuario sin privilegios"
        ),
        "{stderr}"
    );
    let rows = class.rows();
    assert_eq!(rows["good"]["status"], "ok", "{rows:#?}");
    assert_eq!(number(&rows["good"], "failed"), 0, "{rows:#?}");
    assert_eq!(rows["forkbomb"]["status"], "limit", "{rows:#?}");
    assert!(
        rows["forkbomb"]["limits"].contains("processes"),
        "{rows:#?}"
    );
    assert!(
        rows["forkbomb"]["detail"].contains("alcanzó su límite de 32 procesos"),
        "{rows:#?}"
    );
    assert_eq!(rows["diskfill"]["status"], "limit", "{rows:#?}");
    assert!(rows["diskfill"]["limits"].contains("disk"), "{rows:#?}");
    assert_eq!(rows["spy"]["status"], "never-started", "{rows:#?}");
    // In its nested user namespace the server is uid 1000, not root.
    assert_spy_was_contained(&rows["spy"], |uid| uid == 1000);
    let index = std::fs::read_to_string(class.out().join("index.html")).expect("index.html");
    assert!(index.contains("Planilla de notas"), "{index}");
    class.assert_no_server_left();
    class.assert_no_filler_outside();
}
