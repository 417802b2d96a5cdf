//! The packages people install: the Debian package (installed with
//! `dpkg -i`, its unit checked by `systemd-analyze`, its binary run the way
//! the unit runs it, then purged) and the Python wheel (installed into a
//! fresh venv, whose `hftp check` checks a running server).
//!
//! Both are built once per run by `dist/build-packages.sh`, the release
//! recipe of docs/release.md: one `cargo build --release`, then `cargo deb
//! --no-build` and `maturin build`, which reuse it. The Debian test needs
//! root (as CI runs); it refuses to touch a machine where the `hftp`
//! package or `/srv/hftp` already exist, and purges what it installed even
//! when it fails midway. No service is started: CI has no systemd.
//!
//! Tier: full (every test marked `#[ignore = "full tier: ..."]`): needs root, cargo-deb, maturin, dpkg, systemd-analyze.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{Server, NOBODY};

/// How long building the packages may take (a cold release build on 2
/// cores takes a few minutes); only a hung build gets near it.
const BUILD_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// The package name, as `[package.metadata.deb]` sets it.
const DEB_NAME: &str = "hftp";
/// Where the unit and its settings are installed.
const UNIT_PATH: &str = "/usr/lib/systemd/system/hftp.service";
const DEFAULTS_PATH: &str = "/etc/default/hftp";
const SERVED_DIR: &str = "/srv/hftp";
/// Highest acceptable `systemd-analyze security` exposure, in its tenths
/// (the unit scores 1.4 of 10, "OK"; 2.0 is still "OK").
const MAX_EXPOSURE_TENTHS: u32 = 20;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The target directory this test was built in (`.../target/debug/hftp`
/// is this build's binary), so that the release build lands next to it.
fn target_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_hftp"));
    bin.parent()
        .and_then(Path::parent)
        .expect("the test binary lives in TARGET/PROFILE/")
        .to_path_buf()
}

/// Fails, naming what to install, unless `name` is on PATH.
fn require_tool(name: &str, install: &str) {
    crate::support::tools::require(name, install);
}

/// Runs `command` to completion and returns its output; panics with the
/// command and its stderr unless it succeeds.
fn run_ok(command: &mut Command) -> Output {
    let description = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {description}: {e}"));
    assert!(
        out.status.success(),
        "{description}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What `dist/build-packages.sh` built.
struct Packages {
    deb: PathBuf,
    wheel: PathBuf,
    /// `hftp --version` of the release binary both were made from.
    version: String,
}

/// Builds the packages on first use (the other test waits for it).
fn packages() -> &'static Packages {
    static BUILT: OnceLock<Result<Packages, String>> = OnceLock::new();
    match BUILT.get_or_init(build_packages) {
        Ok(packages) => packages,
        Err(message) => panic!("{message}"),
    }
}

fn build_packages() -> Result<Packages, String> {
    require_tool("cargo-deb", "cargo install cargo-deb --locked");
    require_tool("maturin", "install maturin (pip install maturin)");
    let target = target_dir();
    let out_dir = target.join("packages-test");
    if out_dir.exists() {
        fs::remove_dir_all(&out_dir).map_err(|e| format!("cannot empty {out_dir:?}: {e}"))?;
    }
    let logs = tempfile::tempdir().map_err(|e| e.to_string())?;
    let stdout_path = logs.path().join("stdout");
    let stderr_path = logs.path().join("stderr");
    let file = |p: &Path| fs::File::create(p).map_err(|e| format!("{p:?}: {e}"));
    let started = Instant::now();
    let mut child = Command::new("sh")
        .arg(repo_root().join("dist/build-packages.sh"))
        .arg(&out_dir)
        .env("CARGO_TARGET_DIR", &target)
        .stdin(Stdio::null())
        .stdout(file(&stdout_path)?)
        .stderr(file(&stderr_path)?)
        .spawn()
        .map_err(|e| format!("cannot run dist/build-packages.sh: {e}"))?;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > BUILD_DEADLINE {
            child.kill().ok();
            child.wait().ok();
            return Err(format!(
                "dist/build-packages.sh still running after {BUILD_DEADLINE:?}; stderr:\n{}",
                fs::read_to_string(&stderr_path).unwrap_or_default()
            ));
        }
        thread::sleep(Duration::from_millis(100));
    };
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "dist/build-packages.sh failed ({status}); stderr:\n{stderr}"
        ));
    }
    // The recipe's own timing lines, for whoever reads the test log.
    for line in stderr.lines().filter(|l| l.starts_with("step took")) {
        eprintln!("build-packages: {line}");
    }
    eprintln!("build-packages: {:.0?} in all", started.elapsed());

    let find = |suffix: &str| -> Result<PathBuf, String> {
        let mut found: Vec<PathBuf> = fs::read_dir(&out_dir)
            .map_err(|e| format!("{out_dir:?}: {e}"))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .collect();
        match found.len() {
            1 => Ok(found.remove(0)),
            n => Err(format!(
                "{n} files ending in {suffix} in {out_dir:?} (expected 1)"
            )),
        }
    };
    let release_binary = target.join("release/hftp");
    let version = Command::new(&release_binary)
        .arg("--version")
        .output()
        .map_err(|e| format!("{release_binary:?}: {e}"))?;
    Ok(Packages {
        deb: find(".deb")?,
        wheel: find(".whl")?,
        version: stdout_text(&version).trim().to_string(),
    })
}

/// `KEY=VALUE` assignments of a systemd EnvironmentFile: blank lines and
/// lines starting with `#` or `;` are comments. Values here are plain (the
/// shipped file quotes nothing); a quoted one fails the test.
fn environment_file_assignments(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{DEFAULTS_PATH}: not KEY=VALUE: {line:?}"));
            assert!(
                !value.starts_with(['"', '\'']),
                "{DEFAULTS_PATH}: quoted values are not expected: {line:?}"
            );
            (key.trim().to_string(), value.trim().to_string())
        })
        .collect()
}

/// `#HFTP_NAME=default` lines: the settings the file documents.
fn documented_settings(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| l.starts_with("HFTP_"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// From `hftp serve --help`: each `HFTP_*` variable with the default of
/// its option (`None` for options without one).
fn serve_variables(help: &str) -> BTreeMap<String, Option<String>> {
    let mut variables = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        // `  -p, --port <PORT>` or `      --max-line ...` opens an option.
        if trimmed.starts_with('-') && line.starts_with("  ") {
            current = None;
        } else if let Some(rest) = trimmed.strip_prefix("[env: ") {
            let name = rest.split('=').next().unwrap_or_default().to_string();
            // The prose after the options mentions `[env: ...]` too.
            if name.starts_with("HFTP_")
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                variables.insert(name.clone(), None);
                current = Some(name);
            }
        } else if let Some(rest) = trimmed.strip_prefix("[default: ") {
            if let Some(name) = &current {
                let value = rest.strip_suffix(']').unwrap_or(rest).to_string();
                variables.insert(name.clone(), Some(value));
            }
        }
    }
    variables
}

/// The `[Service]` settings of a unit file, each key with its values in order.
fn service_settings(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut settings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut in_service = false;
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && !line.is_empty() && !line.starts_with(['#', ';']) {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{UNIT_PATH}: not Key=Value: {line:?}"));
            settings
                .entry(key.to_string())
                .or_default()
                .push(value.to_string());
        }
    }
    settings
}

fn package_installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", DEB_NAME])
        .output()
        .is_ok_and(|o| o.status.success() && stdout_text(&o).contains("installed"))
}

/// The installed package; purged when dropped, so that a failing test
/// leaves the machine as it found it.
struct Installed {
    purged: bool,
}

impl Installed {
    fn install(deb: &Path) -> Installed {
        let installed = Installed { purged: false };
        run_ok(Command::new("dpkg").arg("-i").arg(deb));
        installed
    }

    fn purge(&mut self) {
        self.purged = true;
        run_ok(Command::new("dpkg").args(["--purge", DEB_NAME]));
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if !self.purged {
            match Command::new("dpkg")
                .args(["--purge", DEB_NAME])
                .stdin(Stdio::null())
                .output()
            {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "cleanup: dpkg --purge {DEB_NAME} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => eprintln!("cleanup: cannot run dpkg --purge {DEB_NAME}: {e}"),
            }
        }
    }
}

#[test]
#[ignore = "full tier: needs root, cargo-deb, maturin, dpkg and systemd-analyze"]
fn debian_package_installs_verifies_serves_and_purges() {
    crate::support::tools::require_root("dpkg -i installs the package");
    for tool in ["dpkg", "dpkg-query", "man"] {
        require_tool(tool, "install it with apt-get");
    }
    require_tool("systemd-analyze", "apt-get install systemd");
    assert!(
        !package_installed(),
        "the {DEB_NAME} package is already installed; this test installs and purges its own build: \
         remove it first (dpkg --purge {DEB_NAME})"
    );
    assert!(
        !Path::new(SERVED_DIR).exists(),
        "{SERVED_DIR} already exists; this test checks that the package creates and removes it: \
         move it away first"
    );
    let packages = packages();
    let mut installed = Installed::install(&packages.deb);

    // The binary, the same build as the release binary.
    let version = run_ok(Command::new("/usr/bin/hftp").arg("--version"));
    assert_eq!(stdout_text(&version).trim(), packages.version);

    // Manual pages found by `man` itself, completions where the shells look.
    let page = run_ok(
        Command::new("man")
            .arg("hftp-serve")
            .env("MANWIDTH", "100")
            .env("MANPAGER", "cat"),
    );
    let page = stdout_text(&page);
    assert!(
        page.contains("SYNOPSIS") && page.contains("shutdown-grace"),
        "man hftp-serve:\n{page}"
    );
    for path in [
        "/usr/share/man/man1/hftp.1.gz",
        "/usr/share/man/man1/hftp-check.1.gz",
        "/usr/share/bash-completion/completions/hftp",
        "/usr/share/zsh/vendor-completions/_hftp",
        "/usr/share/fish/vendor_completions.d/hftp.fish",
    ] {
        assert!(Path::new(path).is_file(), "{path} not installed");
    }
    let complete = run_ok(
        Command::new("bash")
            .arg("-c")
            .arg("source /usr/share/bash-completion/completions/hftp && complete -p hftp"),
    );
    assert!(
        stdout_text(&complete).contains("hftp"),
        "bash completion registers nothing: {}",
        stdout_text(&complete)
    );

    // Settings: a conffile documenting every serve variable at its default.
    let conffiles = run_ok(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", DEB_NAME]));
    assert!(
        stdout_text(&conffiles).contains(DEFAULTS_PATH),
        "{DEFAULTS_PATH} is not a conffile: {}",
        stdout_text(&conffiles)
    );
    let defaults = fs::read_to_string(DEFAULTS_PATH).expect("read /etc/default/hftp");
    let assignments = environment_file_assignments(&defaults);
    assert!(
        assignments.is_empty(),
        "{DEFAULTS_PATH} should only document defaults, in comments; it sets {assignments:?}"
    );
    let documented = documented_settings(&defaults);
    let help = stdout_text(&run_ok(
        Command::new("/usr/bin/hftp").args(["serve", "--help"]),
    ));
    let variables = serve_variables(&help);
    assert!(
        variables.len() >= 14,
        "found only {variables:?} in serve --help"
    );
    for (name, default) in &variables {
        if name == "HFTP_USER" {
            // Not for the service (a dynamic user cannot switch users); the
            // file says so instead of offering it.
            assert!(
                defaults.contains(name),
                "{DEFAULTS_PATH} does not mention {name}"
            );
            continue;
        }
        let documented_value = documented
            .get(name)
            .unwrap_or_else(|| panic!("{DEFAULTS_PATH} lacks #{name}=..."));
        let expected = if name == "HFTP_DIRECTORY" {
            Some(SERVED_DIR.to_string())
        } else {
            default.clone()
        };
        if let Some(expected) = expected {
            assert_eq!(
                documented_value, &expected,
                "{DEFAULTS_PATH}: {name} documented as {documented_value}, its default is {expected}"
            );
        }
    }
    for name in documented.keys() {
        assert!(
            variables.contains_key(name),
            "{DEFAULTS_PATH} documents {name}, which serve does not read"
        );
    }

    // The unit: valid, hardened as reviewed, and scored by systemd itself.
    let unit = fs::read_to_string(UNIT_PATH).expect("read the installed unit");
    let settings = service_settings(&unit);
    for (key, value) in [
        ("ExecStart", "/usr/bin/hftp serve"),
        ("WorkingDirectory", SERVED_DIR),
        ("EnvironmentFile", "-/etc/default/hftp"),
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
    ] {
        let values = settings.get(key).cloned().unwrap_or_default();
        assert!(
            values.iter().any(|v| v == value),
            "{UNIT_PATH}: expected {key}={value}, found {values:?}"
        );
    }
    let verify = Command::new("systemd-analyze")
        .args(["verify", UNIT_PATH])
        .stdin(Stdio::null())
        .output()
        .expect("run systemd-analyze verify");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify {UNIT_PATH}: {}\n{}",
        verify.status,
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = Command::new("systemd-analyze")
        .args([
            "security",
            "--offline=true",
            &format!("--threshold={MAX_EXPOSURE_TENTHS}"),
            UNIT_PATH,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run systemd-analyze security");
    let report = stdout_text(&security);
    let overall = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("(no overall line)");
    eprintln!("systemd-analyze security: {overall}");
    assert!(
        security.status.success(),
        "exposure above {MAX_EXPOSURE_TENTHS}/100: {overall}\n{report}"
    );

    // The directory the unit serves, made by postinst.
    assert!(
        Path::new(SERVED_DIR).is_dir(),
        "postinst did not create {SERVED_DIR}"
    );

    // Run the installed binary as the unit would: its ExecStart in its
    // WorkingDirectory, the settings file's variables, as an unprivileged
    // user; only the port and address differ (a free port, loopback only).
    let working = settings["WorkingDirectory"]
        .first()
        .expect("WorkingDirectory=")
        .clone();
    let unit_server = |storage: Option<&str>| {
        let mut server = Server::builder(Path::new(&working))
            .binary("/usr/bin/hftp")
            .configured_by_environment()
            .in_working_directory()
            .uid(NOBODY);
        if let Some(url) = storage {
            server = server.storage(url);
        }
        for (key, value) in assignments
            .iter()
            .filter(|(k, _)| k != "HFTP_PORT" && k != "HFTP_ADDRESS" && k != "HFTP_DIRECTORY")
        {
            server = server.env(key, value);
        }
        server.start()
    };
    // The defaults, then HFTP_STORAGE set as an operator would set it in
    // /etc/default/hftp (it must not conflict with anything the unit sets).
    for storage in [None, Some(format!("file://{SERVED_DIR}"))] {
        let server = unit_server(storage.as_deref());
        let banner = server.stdout().join("\n");
        assert!(
            banner.contains(&format!("serving {SERVED_DIR} ")),
            "banner ({storage:?}): {banner}"
        );
        let listing =
            run_ok(Command::new("/usr/bin/hftp").args(["ls", &server.addr().to_string()]));
        assert_eq!(stdout_text(&listing), "", "{SERVED_DIR} should be empty");
        drop(server);
    }

    // Purge: nothing of the package is left.
    installed.purge();
    assert!(
        !package_installed(),
        "{DEB_NAME} still installed after purge"
    );
    for path in [
        "/usr/bin/hftp",
        UNIT_PATH,
        DEFAULTS_PATH,
        "/usr/share/man/man1/hftp.1.gz",
        SERVED_DIR,
    ] {
        assert!(!Path::new(path).exists(), "{path} left after dpkg --purge");
    }
}

#[test]
#[ignore = "full tier: needs root, cargo-deb, maturin, dpkg and systemd-analyze"]
fn python_wheel_gives_a_venv_the_hftp_command() {
    require_tool("python3", "install python3 (with its venv module)");
    let packages = packages();
    let scratch = tempfile::tempdir().expect("tempdir");
    let venv = scratch.path().join("venv");
    run_ok(Command::new("python3").arg("-m").arg("venv").arg(&venv));
    // A wheel with no dependencies installs without any package index.
    run_ok(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--no-index", "--disable-pip-version-check", "-q"])
            .arg(&packages.wheel),
    );
    let hftp = venv.join("bin/hftp");
    assert!(hftp.is_file(), "the wheel installed no {hftp:?}");

    // A server to check: the venv's own `hftp serve`.
    let served = scratch.path().join("served");
    fs::create_dir(&served).expect("mkdir served");
    fs::write(served.join("hola.txt"), b"hola\n").expect("write hola.txt");
    let server = Server::builder(&served).binary(&hftp).start();

    // As a student would: activate the venv, then `hftp check`.
    let script = format!(
        ". '{}/bin/activate' && command -v hftp && hftp --version && hftp check {}",
        venv.display(),
        server.addr()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env_remove("VIRTUAL_ENV")
        .stdin(Stdio::null())
        .output()
        .expect("run sh");
    let text = stdout_text(&out);
    assert!(
        out.status.success(),
        "{script}: {}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(hftp.to_str().expect("utf-8 path")));
    assert_eq!(lines.next(), Some(packages.version.as_str()));
    let closing = text.lines().last().unwrap_or_default();
    let counts: Vec<&str> = closing.split(", ").collect();
    assert!(
        counts.len() == 3
            && counts[0]
                .strip_suffix(" passed")
                .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n > 0))
            && counts[1] == "0 failed"
            && counts[2].ends_with(" skipped"),
        "hftp check's closing line: {closing:?}"
    );
    drop(server);

    // And pip takes it away again.
    run_ok(Command::new(venv.join("bin/pip")).args(["uninstall", "-y", "-q", "hftp-tools"]));
    assert!(!hftp.exists(), "pip uninstall left {hftp:?}");
}

/// README's `cargo install --path crates/cli --locked`, into a scratch
/// root instead of ~/.cargo. With `--path`, cargo builds in the
/// workspace's target directory, so it reuses the packages' release build.
#[test]
#[ignore = "full tier: needs root, cargo-deb, maturin, dpkg and systemd-analyze"]
fn cargo_install_from_the_clone() {
    let packages = packages();
    let root = tempfile::tempdir().expect("tempdir");
    run_ok(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["install", "--path", "crates/cli", "--locked", "--root"])
            .arg(root.path())
            .env("CARGO_TARGET_DIR", target_dir())
            .current_dir(repo_root()),
    );
    let installed = root.path().join("bin/hftp");
    let version = run_ok(Command::new(&installed).arg("--version"));
    assert_eq!(stdout_text(&version).trim(), packages.version);
}
