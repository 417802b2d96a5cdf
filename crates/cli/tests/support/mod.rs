//! Shared harness for the integration tests: starts the real `hftp serve`
//! binary on an ephemeral loopback port and stops it when dropped.
//!
//! ```ignore
//! let server = Server::builder(dir.path()).model("async").unprivileged().start();
//! let stream = std::net::TcpStream::connect(server.addr())?;
//! ```
#![allow(dead_code)]

pub mod background;
pub mod bucket;
pub mod fault_proxy;
pub mod garage;
pub mod haproxy;
pub mod pki;
pub mod tied;
pub mod tools;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Every concurrency model of `hftp serve --model`: the one list the tests
/// iterate over. [`per_model!`] writes one test per entry.
pub const MODELS: [&str; 6] = ["async", "threads", "pool", "fork", "poll", "uring"];

/// `per_model!(check);` writes one `#[test]` per model (`model_async`,
/// `model_threads`, ...), each calling `check(model)`: a failure names its
/// model, and the models run in parallel. Attributes before `check` (an
/// `#[ignore = "full tier: ..."]`) go on every one of them. Put it in a
/// module of its own when a file checks several things per model.
macro_rules! per_model {
    (@each [$($attr:tt)*] $check:path;) => {};
    (@each [$($attr:tt)*] $check:path; $test:ident $index:literal $(, $more:ident $at:literal)*) => {
        $($attr)*
        #[test]
        fn $test() {
            let model = crate::support::MODELS[$index];
            assert_eq!(stringify!($test), format!("model_{model}"), "MODELS reordered");
            $check(model);
        }
        per_model!(@each [$($attr)*] $check; $($more $at),*);
    };
    ($(#[$meta:meta])* $check:path) => {
        // Adding a model to MODELS without adding it here fails the build.
        const _: () = assert!(crate::support::MODELS.len() == 6);
        per_model!(@each [$(#[$meta])*] $check;
            model_async 0, model_threads 1, model_pool 2,
            model_fork 3, model_poll 4, model_uring 5);
    };
}

/// A client connection with read and write timeouts (a bound on every
/// wait, so that a regression fails instead of hanging) and no Nagle delay.
pub fn connect(addr: SocketAddr, timeout: Duration) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(timeout)).expect("read timeout");
    s.set_write_timeout(Some(timeout)).expect("write timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// A connection to `addr` from the loopback address `from` (127.0.0.2,
/// say: a second "client machine"), with a read timeout.
pub fn connect_from(from: &str, addr: SocketAddr, timeout: Duration) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let local: SocketAddr = format!("{from}:0").parse().expect("a loopback address");
    socket
        .bind(&local.into())
        .unwrap_or_else(|e| panic!("bind {local}: {e}"));
    socket
        .connect(&addr.into())
        .unwrap_or_else(|e| panic!("connect {addr} from {from}: {e}"));
    let stream: std::net::TcpStream = socket.into();
    stream
        .set_read_timeout(Some(timeout))
        .expect("read timeout");
    stream
}

/// The whole answer to `help`.
pub const HELP_ANSWER: &str =
    "0 OK\r\nget_file_listing\r\nget_metadata\r\nget_slice\r\nhelp\r\nquit\r\n\r\n";

/// Sends `request` and reads until the connection closes (a reset after
/// nothing counts as a close without an answer).
pub fn ask(stream: &mut std::net::TcpStream, request: &[u8]) -> String {
    use std::io::Write;
    stream.write_all(request).expect("send");
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && answer.is_empty() => {}
        Err(e) => panic!("reading the answer: {e} (got {answer:?})"),
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Raises this process's soft limit on open descriptors to the hard limit,
/// for tests that hold thousands of connections.
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// `n` distinct loopback ports, free a moment ago, for a tool that must be
/// told its port (Garage, HAProxy). They are taken below the kernel's
/// ephemeral range, so that no outgoing connection of another test can
/// take one before the tool binds it, and all are held until all are
/// found, so that no two are the same.
pub fn free_ports(n: usize) -> Vec<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_001));
    let span = u32::from(high - low);
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    let mut held = Vec::new();
    for i in 0..span {
        if held.len() == n {
            break;
        }
        let port = low + ((seed.wrapping_add(i.wrapping_mul(7919))) % span) as u16;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
        }
    }
    assert_eq!(held.len(), n, "no {n} free loopback ports below {high}");
    held.iter()
        .map(|l| l.local_addr().expect("bound").port())
        .collect()
}

/// How long a server may take to print `listening on ADDR`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The uid and gid of `nobody`/`nogroup`, for an unprivileged server.
pub const NOBODY: u32 = 65534;

/// Deterministic pseudo-random bytes (xorshift64*): file contents that
/// no misplaced segment can match by chance.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Whether the tests run as root (then an unprivileged server needs a uid).
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// How to start a server; see [`Server::builder`].
pub struct ServerBuilder {
    /// The `hftp` to run: this build's unless [`ServerBuilder::binary`].
    binary: PathBuf,
    dir: PathBuf,
    model: Option<String>,
    /// The port to listen on; 0 (the default) picks a free one.
    port: u16,
    args: Vec<OsString>,
    uid: Option<u32>,
    gid: Option<u32>,
    /// Standard settings as `HFTP_*` variables instead of arguments.
    from_environment: bool,
    envs: Vec<(OsString, OsString)>,
    /// `--storage URL` instead of `-d DIR`.
    storage: Option<String>,
    /// Neither `-d` nor `--storage`: the server's default, its working
    /// directory.
    default_directory: bool,
    current_dir: Option<PathBuf>,
}

impl ServerBuilder {
    /// Serves `--storage URL` (e.g. `s3://bucket/prefix`) instead of the
    /// builder's directory.
    pub fn storage(mut self, url: &str) -> Self {
        self.storage = Some(url.to_string());
        self
    }

    /// Passes no directory at all (the server's default, `.`), and runs it
    /// in `dir`, as a systemd unit's `WorkingDirectory=` does.
    pub fn in_working_directory(mut self) -> Self {
        self.default_directory = true;
        self.current_dir = Some(self.dir.clone());
        self
    }

    /// One more environment variable for the server.
    pub fn env(mut self, key: &str, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Passes the directory, port, address and model as `HFTP_DIRECTORY`,
    /// `HFTP_PORT`, `HFTP_ADDRESS` and `HFTP_MODEL` instead of arguments.
    pub fn configured_by_environment(mut self) -> Self {
        self.from_environment = true;
        self
    }

    /// Runs another `hftp` than this build's (an installed one, say).
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = path.into();
        self
    }

    /// `--model NAME`.
    pub fn model(mut self, model: &str) -> Self {
        self.model = Some(model.to_string());
        self
    }

    /// Listens on `port` instead of a free one: to restart a server where
    /// its clients expect it.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// One more argument after the standard ones.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Runs the server as `uid` (and, unless [`ServerBuilder::gid`] says
    /// otherwise, as the group of the same number). Needs root.
    pub fn uid(mut self, uid: u32) -> Self {
        self.uid = Some(uid);
        self
    }

    pub fn gid(mut self, gid: u32) -> Self {
        self.gid = Some(gid);
        self
    }

    /// Makes sure the server is not root: as `nobody` when the tests run as
    /// root, as the tests' own user otherwise.
    pub fn unprivileged(self) -> Self {
        if running_as_root() {
            self.uid(NOBODY)
        } else {
            self
        }
    }

    /// Starts `hftp serve -d DIR -p PORT -a 127.0.0.1 [--model M] [args]` and
    /// waits for its `listening on ADDR` line. Panics, with the server's
    /// stderr, if it exits or does not listen within 30 s.
    pub fn start(self) -> Server {
        let mut command = Command::new(&self.binary);
        command.arg("serve");
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        if self.from_environment {
            match (&self.storage, self.default_directory) {
                (Some(url), _) => command.env("HFTP_STORAGE", url),
                (None, true) => &mut command,
                (None, false) => command.env("HFTP_DIRECTORY", &self.dir),
            };
            command
                .env("HFTP_PORT", self.port.to_string())
                .env("HFTP_ADDRESS", "127.0.0.1");
            if let Some(model) = &self.model {
                command.env("HFTP_MODEL", model);
            }
        } else {
            match (&self.storage, self.default_directory) {
                (Some(url), _) => command.args(["--storage", url]),
                (None, true) => &mut command,
                (None, false) => command.arg("-d").arg(&self.dir),
            };
            command.args(["-p", &self.port.to_string(), "-a", "127.0.0.1"]);
            if let Some(model) = &self.model {
                command.args(["--model", model]);
            }
        }
        command.args(&self.args);
        command.envs(self.envs.iter().map(|(k, v)| (k, v)));
        if let Some(uid) = self.uid {
            command.uid(uid).gid(self.gid.unwrap_or(uid));
        } else if let Some(gid) = self.gid {
            command.gid(gid);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let description = format!("{command:?}");
        let model = self
            .model
            .clone()
            .unwrap_or_else(|| "async (default)".into());
        // Tied: an interrupted test run leaves no server behind.
        let mut child =
            tied::spawn(command).unwrap_or_else(|e| panic!("cannot start {description}: {e}"));

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_thread = drain(
            child.stderr.take().expect("piped stderr"),
            Arc::clone(&stderr),
        );
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (lines_tx, lines_rx) = mpsc::channel();
        let stdout_pipe = child.stdout.take().expect("piped stdout");
        let stdout_lines = Arc::clone(&stdout);
        let stdout_thread = thread::spawn(move || {
            for line in BufReader::new(stdout_pipe).lines().map_while(Result::ok) {
                stdout_lines.lock().unwrap().push(line.clone());
                lines_tx.send(line).ok();
            }
        });

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let addr = loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(wait) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line) {
                        break addr;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait();
                    stderr_thread.join().ok();
                    panic!(
                        "{description} exited ({status:?}) without `listening on ADDR`; stderr:\n{}",
                        String::from_utf8_lossy(&stderr.lock().unwrap())
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    child.kill().ok();
                    child.wait().ok();
                    stderr_thread.join().ok();
                    panic!(
                        "{description} printed no `listening on ADDR` within {STARTUP_TIMEOUT:?}; stderr:\n{}",
                        String::from_utf8_lossy(&stderr.lock().unwrap())
                    );
                }
            }
        };
        Server {
            child,
            model,
            addr,
            stdout,
            stderr,
            threads: vec![stdout_thread, stderr_thread],
        }
    }
}

/// The address in a `... listening on ADDR [(...)]` line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("listening on ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Copies everything from `pipe` into `sink` until EOF.
fn drain(mut pipe: impl Read + Send + 'static, sink: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

/// A running `hftp serve`; killed when dropped.
pub struct Server {
    child: Child,
    /// The `--model` it runs, named in every failure.
    model: String,
    addr: SocketAddr,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// A builder serving `dir`.
    pub fn builder(dir: &Path) -> ServerBuilder {
        ServerBuilder {
            binary: PathBuf::from(env!("CARGO_BIN_EXE_hftp")),
            dir: dir.to_path_buf(),
            model: None,
            port: 0,
            args: Vec::new(),
            uid: None,
            gid: None,
            from_environment: false,
            envs: Vec::new(),
            storage: None,
            default_directory: false,
            current_dir: None,
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the server.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill has no memory-safety preconditions; the child is not
        // yet reaped (we own it), so the pid is still ours.
        unsafe { libc::kill(pid, signal) };
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The `--model` the server runs.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Waits for the server to exit, and for everything it wrote to be
    /// read (the output is copied by threads, which may lag behind the
    /// exit); panics after `timeout`, naming the model and showing what
    /// the server logged (its shutdown lines say how many connections were
    /// open and, with `-v`, each one's state).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The pipes end when every process holding them has gone
                // (fork's children die with their parent).
                while !self.threads.iter().all(|t| t.is_finished()) && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(10));
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server (--model {}) did not exit within {timeout:?}; stderr:\n{}",
                self.model,
                self.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The `--metrics` address its banner printed (waits for the line).
    pub fn metrics_addr(&self) -> SocketAddr {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let found = self.stdout().iter().find_map(|line| {
                let rest = line.strip_prefix("metrics on http://")?;
                rest.split('/').next()?.parse::<SocketAddr>().ok()
            });
            if let Some(addr) = found {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "--model {}: no `metrics on` line in the banner",
                self.model
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// `hftp_connections_refused_total{limit="LIMIT"}` in a scrape now.
    pub fn refused(&self, limit: &str) -> u64 {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(self.metrics_addr()).expect("connect to /metrics");
        s.set_read_timeout(Some(STARTUP_TIMEOUT))
            .expect("read timeout");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("ask /metrics");
        let mut page = String::new();
        s.read_to_string(&mut page).expect("read /metrics");
        let wanted = format!("hftp_connections_refused_total{{limit=\"{limit}\"}} ");
        page.lines()
            .find_map(|l| l.strip_prefix(&wanted))
            .unwrap_or_else(|| panic!("--model {}: no {wanted:?} in\n{page}", self.model))
            .trim()
            .parse()
            .expect("a count")
    }

    /// Waits until the server's stderr contains `needle`; panics (naming
    /// the model, with the stderr) if it does not within `timeout`.
    pub fn wait_stderr(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "server (--model {}) did not log {needle:?} within {timeout:?}; stderr:\n{}",
                self.model,
                self.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's address as a client command line takes it.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Lines the server printed on stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// What the server printed on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.child.kill().ok();
        }
        self.child.wait().ok();
        for thread in self.threads.drain(..) {
            thread.join().ok();
        }
    }
}
