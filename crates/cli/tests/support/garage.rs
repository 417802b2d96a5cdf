//! A real 3-node Garage cluster (`replication_factor = 3`) on loopback,
//! started by the test itself and killed when dropped.
//!
//! Each node gets its own `garage.toml` in a temporary directory, free
//! loopback ports for RPC and S3, and its own process group. Start-up
//! follows Garage's dev-cluster steps: start the nodes, wait until each
//! answers `garage status`, connect them, assign a layout of one zone
//! (`-z dc1 -c 1G` each), apply it, import a key, create a bucket and allow
//! the key on it. Every wait is a poll with a bounded deadline.
//!
//! ```ignore
//! let cluster = Garage::start();
//! let endpoint = cluster.endpoint(0); // http://127.0.0.1:PORT
//! cluster.kill(1);                     // SIGKILL one node
//! cluster.restart(1);
//! ```
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The Garage release the tests are written against (`.ci/run` installs it).
pub const GARAGE_VERSION: &str = "2.5.0";
/// How long a node may take to answer, and the cluster to settle.
const STARTUP: Duration = Duration::from_secs(60);
/// Shared by the nodes: RPC between them is authenticated with it.
const RPC_SECRET: &str = "6d0c3f3a2b1e4f5a8b7c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c";
/// The S3 region the nodes answer to.
pub const REGION: &str = "garage";
/// The key imported into the cluster (Garage's format: `GK` + 24 hex digits).
pub const KEY_ID: &str = "GK0123456789abcdef01234567";
pub const SECRET: &str = "5ee0f9c1d2b3a4958677a8b9cadbecfd0e1f2a3b4c5d6e7f8091a2b3c4d5e6f7";
/// The bucket created for the tests.
pub const BUCKET: &str = "hftp";

/// One node: its configuration and, while it runs, its process.
struct Node {
    config: PathBuf,
    s3_port: u16,
    rpc_port: u16,
    child: Option<Child>,
    log: PathBuf,
}

/// A running cluster; every node is killed (its whole process group) on drop.
pub struct Garage {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

/// The `garage` binary, or a failure that says how to get it.
fn garage_binary() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain(std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin")))
        .map(|dir| dir.join("garage"))
        .find(|p| p.is_file());
    let Some(binary) = found else {
        panic!(
            "garage is not installed: these full-tier tests need Garage {GARAGE_VERSION} on PATH \
             (cargo install garage --locked --version {GARAGE_VERSION} --no-default-features \
             --features bundled-libs,sqlite; `.ci/run` as root installs it)"
        );
    };
    let version = Command::new(&binary)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(
        text.contains(GARAGE_VERSION),
        "{} is not Garage {GARAGE_VERSION} (it says {text:?})",
        binary.display()
    );
    binary
}

/// Taken shared by a test that uses the [`shared`] cluster lightly, and
/// exclusively by one that loads a cluster hard or runs a cluster of its
/// own (100,000 PUTs, nodes killed, a 256 MiB transfer): several clusters
/// under load at once on a small machine starve each other into timeouts
/// that test nothing.
pub static LOAD: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// A share of [`LOAD`] (a panicking holder does not poison it for others).
pub fn light_load() -> std::sync::RwLockReadGuard<'static, ()> {
    LOAD.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`LOAD`] alone.
pub fn heavy_load() -> std::sync::RwLockWriteGuard<'static, ()> {
    LOAD.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The cluster of this test process, started by the first test that asks
/// and shared by every test that leaves it whole (each under a prefix of
/// its own); a test that kills nodes starts its own with [`Garage::start`].
/// Its nodes are stopped and its directory removed when the process exits.
pub fn shared() -> &'static Garage {
    static SHARED: std::sync::OnceLock<&'static Garage> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let cluster: &'static Garage = Box::leak(Box::new(Garage::start()));
        extern "C" fn stop_shared() {
            if let Some(cluster) = SHARED.get() {
                cluster.stop_at_exit();
            }
        }
        // SAFETY: registers a plain function; it runs at exit, after the
        // tests, when nothing else uses the cluster.
        unsafe { libc::atexit(stop_shared) };
        cluster
    })
}

impl Garage {
    /// Kills every node (as dropping does) and removes the cluster's
    /// directory, through a shared reference: for [`shared`] at exit.
    fn stop_at_exit(&self) {
        for node in &self.nodes {
            if let Some(child) = &node.child {
                if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                    // SAFETY: kill and waitpid on our own unreaped child.
                    unsafe {
                        libc::kill(-pid, libc::SIGKILL);
                        libc::waitpid(pid, std::ptr::null_mut(), 0);
                    }
                }
            }
        }
        fs::remove_dir_all(self.dir.path()).ok();
    }

    /// Starts the cluster and prepares the key and bucket; panics with the
    /// nodes' logs if any step fails or times out.
    pub fn start() -> Garage {
        let binary = garage_binary();
        let dir = tempfile::tempdir().expect("temp dir");
        // Six distinct ports (S3 and RPC of each node), picked together.
        let ports = super::free_ports(6);
        let nodes = (0..3)
            .map(|i| {
                let root = dir.path().join(format!("node{i}"));
                fs::create_dir_all(root.join("meta")).expect("meta dir");
                fs::create_dir_all(root.join("data")).expect("data dir");
                let (s3_port, rpc_port) = (ports[2 * i], ports[2 * i + 1]);
                let config = root.join("garage.toml");
                fs::write(
                    &config,
                    format!(
                        "metadata_dir = \"{meta}\"\n\
                         data_dir = \"{data}\"\n\
                         db_engine = \"sqlite\"\n\
                         replication_factor = 3\n\
                         rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
                         rpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
                         rpc_secret = \"{RPC_SECRET}\"\n\
                         [s3_api]\n\
                         s3_region = \"{REGION}\"\n\
                         api_bind_addr = \"127.0.0.1:{s3_port}\"\n",
                        meta = root.join("meta").display(),
                        data = root.join("data").display(),
                    ),
                )
                .expect("write garage.toml");
                // Garage refuses a configuration holding a secret that others can read.
                fs::set_permissions(&config, fs::Permissions::from_mode(0o600))
                    .expect("chmod garage.toml");
                Node {
                    config,
                    s3_port,
                    rpc_port,
                    child: None,
                    log: root.join("garage.log"),
                }
            })
            .collect();
        let mut cluster = Garage { dir, nodes };
        for i in 0..3 {
            cluster.spawn(&binary, i);
        }
        for i in 0..3 {
            cluster.wait_answering(&binary, i);
        }
        let node_ids: Vec<String> = (0..3)
            .map(|i| {
                cluster
                    .garage_ok(&binary, i, &["node", "id", "-q"])
                    .trim()
                    .to_string()
            })
            .collect();
        for id in &node_ids[1..] {
            cluster.garage_ok(&binary, 0, &["node", "connect", id]);
        }
        for id in &node_ids {
            let short = id.split('@').next().unwrap_or(id);
            cluster.garage_ok(
                &binary,
                0,
                &["layout", "assign", "-z", "dc1", "-c", "1G", short],
            );
        }
        cluster.garage_ok(&binary, 0, &["layout", "apply", "--version", "1"]);
        // The new layout reaches every node in a moment: until then writes
        // may lack a quorum, so these steps are retried until a deadline.
        cluster.garage_eventually(
            &binary,
            0,
            &["key", "import", "--yes", "-n", "hftp-test", KEY_ID, SECRET],
        );
        cluster.garage_eventually(&binary, 0, &["bucket", "create", BUCKET]);
        cluster.garage_eventually(
            &binary,
            0,
            &[
                "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", KEY_ID,
            ],
        );
        cluster
    }

    /// The S3 endpoint of node `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3_port)
    }

    /// The S3 endpoints of every node.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.endpoint(i)).collect()
    }

    /// The S3 port of node `i`.
    pub fn s3_port(&self, i: usize) -> u16 {
        self.nodes[i].s3_port
    }

    /// SIGKILLs node `i` (its whole process group) and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            kill_group(&mut child);
        }
    }

    /// Starts node `i` again with its data, and waits until it answers.
    pub fn restart(&mut self, i: usize) {
        let binary = garage_binary();
        self.kill(i);
        self.spawn(&binary, i);
        self.wait_answering(&binary, i);
    }

    /// The environment `hftp serve --storage s3://...` needs to reach node `i`.
    pub fn env(&self, i: usize) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint(i)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ACCESS_KEY_ID", KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
        ]
    }

    /// What the nodes logged so far, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let log = fs::read_to_string(&n.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                format!(
                    "--- node {i} (last lines) ---\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn spawn(&mut self, binary: &Path, i: usize) {
        let node = &mut self.nodes[i];
        let log = fs::File::create(&node.log).expect("node log");
        let mut command = Command::new(binary);
        command
            .arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .process_group(0);
        // Tied: an interrupted test run leaves no node behind.
        let child = super::tied::spawn(command)
            .unwrap_or_else(|e| panic!("cannot start garage node {i}: {e}"));
        node.child = Some(child);
    }

    /// Polls `garage status` on node `i` until it answers.
    fn wait_answering(&mut self, binary: &Path, i: usize) {
        let deadline = Instant::now() + STARTUP;
        loop {
            let out = self.garage(binary, i, &["status"]);
            if out.status.success() {
                return;
            }
            if let Some(child) = self.nodes[i].child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("garage node {i} exited ({status}):\n{}", self.logs());
                }
            }
            assert!(
                Instant::now() < deadline,
                "garage node {i} did not answer `garage status` within {STARTUP:?}: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.logs()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn garage(&self, binary: &Path, i: usize, args: &[&str]) -> Output {
        Command::new(binary)
            .arg("-c")
            .arg(&self.nodes[i].config)
            .args(args)
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run garage {args:?}: {e}"))
    }

    /// Runs a `garage` command against node `i` until it succeeds; panics
    /// with its last output after [`STARTUP`].
    fn garage_eventually(&self, binary: &Path, i: usize, args: &[&str]) -> String {
        let deadline = Instant::now() + STARTUP;
        loop {
            let out = self.garage(binary, i, args);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "garage {} kept failing for {STARTUP:?} ({}):\n{}{}\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.logs()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs a `garage` command against node `i`; panics with its output
    /// unless it succeeds. Returns its stdout.
    fn garage_ok(&self, binary: &Path, i: usize, args: &[&str]) -> String {
        let out = self.garage(binary, i, args);
        assert!(
            out.status.success(),
            "garage {} failed ({}):\n{}{}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn kill_group(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill has no memory-safety preconditions; the child is ours
        // and not reaped yet, so its group id is still its own.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    child.wait().ok();
}

impl Drop for Garage {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                kill_group(&mut child);
            }
        }
    }
}
