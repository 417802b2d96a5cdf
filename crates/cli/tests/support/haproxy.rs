//! A real HAProxy in front of `hftp serve` nodes, for the tests: a config
//! generated in a temp dir (`mode tcp`, `send-proxy-v2`, the HFTP health
//! check of `dist/haproxy.cfg`), `haproxy -f CFG -db` started in a process
//! group of its own and killed, group and all, when dropped.
//!
//! ```ignore
//! let haproxy = Haproxy::builder()
//!     .backend("all", "leastconn", &[("node1", a), ("node2", b)])
//!     .start();
//! haproxy.wait_status("all", "node1", "UP", timeout);
//! let stream = TcpStream::connect(haproxy.frontend("all"))?;
//! ```
//!
//! HAProxy must be installed (`.ci/run` installs it); a missing one fails
//! the test with a message saying so.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long HAProxy may take to accept on its frontends.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where HAProxy is looked for (root's PATH has /usr/sbin, a user's may not).
pub fn haproxy_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("haproxy"))
        .find(|p| p.is_file());
    let found = on_path.or_else(|| {
        [
            Path::new("/usr/sbin/haproxy"),
            Path::new("/usr/local/sbin/haproxy"),
        ]
        .into_iter()
        .find(|p| p.is_file())
        .map(Path::to_path_buf)
    });
    found.unwrap_or_else(|| {
        panic!("haproxy is not installed (apt-get install haproxy; .ci/run installs it)")
    })
}

struct Backend {
    name: String,
    balance: String,
    servers: Vec<(String, SocketAddr)>,
    /// HFTP nodes (PROXY header, HFTP health check), or any TCP service
    /// (an S3 endpoint: no header, a connect check).
    hftp: bool,
}

/// What to put behind HAProxy; see [`Haproxy::builder`].
#[derive(Default)]
pub struct HaproxyBuilder {
    backends: Vec<Backend>,
}

impl HaproxyBuilder {
    /// A frontend on a free loopback port, and behind it a backend `name`
    /// of `servers` (name, address), balanced by `balance` (`leastconn`,
    /// `first`...), each sent `send-proxy-v2` and health-checked.
    pub fn backend(mut self, name: &str, balance: &str, servers: &[(&str, SocketAddr)]) -> Self {
        self.backends.push(Backend {
            name: name.to_string(),
            balance: balance.to_string(),
            servers: servers.iter().map(|(n, a)| (n.to_string(), *a)).collect(),
            hftp: true,
        });
        self
    }

    /// A frontend and backend `name` for plain TCP services (the S3
    /// endpoints of a Garage cluster): no PROXY header, a connect check.
    pub fn tcp_backend(
        mut self,
        name: &str,
        balance: &str,
        servers: &[(&str, SocketAddr)],
    ) -> Self {
        self.backends.push(Backend {
            name: name.to_string(),
            balance: balance.to_string(),
            servers: servers.iter().map(|(n, a)| (n.to_string(), *a)).collect(),
            hftp: false,
        });
        self
    }

    /// Writes the config, checks it with `haproxy -c`, starts HAProxy and
    /// waits until every frontend accepts. Panics, with HAProxy's output,
    /// if it does not.
    pub fn start(self) -> Haproxy {
        let binary = haproxy_binary();
        let dir = tempfile::tempdir().expect("temp dir");
        let stats = dir.path().join("stats.sock");
        let ports = super::free_ports(self.backends.len());
        let frontends: HashMap<String, SocketAddr> = self
            .backends
            .iter()
            .zip(ports)
            .map(|(b, port)| (b.name.clone(), SocketAddr::from(([127, 0, 0, 1], port))))
            .collect();
        let config = render_config(&self.backends, &frontends, &stats);
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, &config).expect("write haproxy.cfg");

        let check = Command::new(&binary)
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .output()
            .expect("run haproxy -c");
        assert!(
            check.status.success(),
            "haproxy -c rejects the generated config:\n{config}\n{}",
            String::from_utf8_lossy(&check.stderr)
        );

        let mut command = Command::new(&binary);
        command
            .arg("-f")
            .arg(&cfg)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: dropped, the whole group is killed.
            .process_group(0);
        // Tied: an interrupted test run leaves no HAProxy behind.
        let mut child = super::tied::spawn(command).expect("start haproxy");
        let output = Arc::new(Mutex::new(Vec::new()));
        let threads = [
            child.stdout.take().map(|s| collect(s, &output)),
            child.stderr.take().map(|s| collect(s, &output)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut haproxy = Haproxy {
            child,
            _dir: dir,
            stats,
            frontends,
            output,
            threads,
        };
        haproxy.wait_listening();
        haproxy
    }
}

fn collect(mut from: impl Read + Send + 'static, into: &Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    let into = Arc::clone(into);
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

/// The sample config the docs point to.
pub fn sample_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/haproxy.cfg")
}

/// The health check lines of `dist/haproxy.cfg` (`option tcp-check`,
/// `tcp-check ...`): the tests run the very check the sample documents.
fn sample_health_check() -> String {
    let sample = std::fs::read_to_string(sample_config()).expect("read dist/haproxy.cfg");
    let lines: Vec<&str> = sample
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("option tcp-check") || l.starts_with("tcp-check "))
        .collect();
    assert!(
        lines.len() >= 2,
        "dist/haproxy.cfg has no tcp-check health check"
    );
    lines.iter().map(|l| format!("    {l}\n")).collect()
}

/// The config: mode, health check and `send-proxy-v2` as in
/// `dist/haproxy.cfg`, with the test's addresses, short check intervals
/// (a dead node is seen quickly) and a stats socket.
fn render_config(
    backends: &[Backend],
    frontends: &HashMap<String, SocketAddr>,
    stats: &Path,
) -> String {
    let mut cfg = format!(
        "global
    stats socket {} mode 600 level admin
    maxconn 4096

defaults
    mode tcp
    timeout connect 5s
    timeout client 6m
    timeout server 6m
    timeout check 2s
    # A connection a dead server refused is tried again on another one.
    retries 3
    option redispatch 1
",
        stats.display()
    );
    for b in backends {
        let _ = write!(
            cfg,
            "
frontend {name}
    bind {addr}
    default_backend {name}_nodes

backend {name}_nodes
    balance {balance}
{check}    default-server {proxy}check inter 200ms fall 2 rise 1
",
            name = b.name,
            addr = frontends[&b.name],
            balance = b.balance,
            check = if b.hftp {
                sample_health_check()
            } else {
                String::new()
            },
            proxy = if b.hftp { "send-proxy-v2 " } else { "" },
        );
        for (server, addr) in &b.servers {
            let _ = writeln!(cfg, "    server {server} {addr}");
        }
    }
    cfg
}

/// A running HAProxy; killed (its whole process group) when dropped.
pub struct Haproxy {
    child: Child,
    _dir: tempfile::TempDir,
    stats: PathBuf,
    frontends: HashMap<String, SocketAddr>,
    output: Arc<Mutex<Vec<u8>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Haproxy {
    pub fn builder() -> HaproxyBuilder {
        HaproxyBuilder::default()
    }

    /// The address of the frontend in front of backend `name`.
    pub fn frontend(&self, name: &str) -> SocketAddr {
        self.frontends[name]
    }

    /// What HAProxy printed so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let addrs: Vec<SocketAddr> = self.frontends.values().copied().collect();
        for addr in addrs {
            loop {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("haproxy exited ({status}) at start:\n{}", self.output());
                }
                let stats_up = UnixStream::connect(&self.stats).is_ok();
                if stats_up && TcpStream::connect(addr).is_ok() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "haproxy does not accept on {addr} within {STARTUP_TIMEOUT:?}:\n{}",
                    self.output()
                );
                thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Runs one command on the stats socket (level admin): `show stat`,
    /// `set server B/S state maint`...; returns HAProxy's answer.
    pub fn command(&self, command: &str) -> String {
        let mut s = UnixStream::connect(&self.stats).expect("connect to haproxy's stats socket");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("{command}\n").as_bytes())
            .expect("send a stats command");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read the stats answer");
        out
    }

    /// `show stat` on the stats socket: HAProxy's CSV, one line a proxy or
    /// server.
    pub fn show_stat(&self) -> String {
        self.command("show stat")
    }

    /// Column `column` of server `server` in backend `backend`, from `show stat`.
    pub fn stat(&self, backend: &str, server: &str, column: &str) -> Option<String> {
        let stat = self.show_stat();
        let mut lines = stat.lines();
        let header = lines.next()?.trim_start_matches("# ");
        let position = |name: &str| header.split(',').position(|c| c == name);
        let (px, sv, wanted) = (position("pxname")?, position("svname")?, position(column)?);
        let pxname = format!("{backend}_nodes");
        lines.find_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (fields.get(px) == Some(&pxname.as_str()) && fields.get(sv) == Some(&server))
                .then(|| fields.get(wanted).map(|s| s.to_string()))
                .flatten()
        })
    }

    /// The `status` column of server `server` in backend `backend`
    /// (`UP`, `DOWN`, `UP 1/2` while going down, `MAINT`, `no check`...).
    pub fn status(&self, backend: &str, server: &str) -> Option<String> {
        self.stat(backend, server, "status")
    }

    /// The connections HAProxy has open to server `server` of `backend` now.
    pub fn current_sessions(&self, backend: &str, server: &str) -> u64 {
        self.stat(backend, server, "scur")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Waits until server `server` of `backend` has status `want`; panics
    /// with the stats and HAProxy's output if it does not within `timeout`.
    pub fn wait_status(&self, backend: &str, server: &str, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status(backend, server);
            if status.as_deref() == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "haproxy: {backend}/{server} is {status:?}, not {want:?}, after {timeout:?}\n{}\n{}",
                self.show_stat(),
                self.output()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill has no memory-safety preconditions; the group is
            // the one HAProxy leads (process_group(0)), not yet reaped.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        self.child.wait().ok();
        for t in self.threads.drain(..) {
            t.join().ok();
        }
    }
}
