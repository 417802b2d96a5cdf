//! The network boundary of `hftp serve -a ADDR`, tested for real (spec
//! section 6): two network namespaces, "server" and "client", joined by a
//! veth pair (10.231.0.1/24 and fd00:231::1/64 on the server's side,
//! 10.231.0.2/24 and fd00:231::2/64 on the client's). The server runs in
//! one with `ip netns exec`; the test connects from the other, and from
//! inside the server's own namespace, on threads that entered it with
//! `setns(2)`. All traffic stays inside the namespaces this test creates and
//! deletes.
//!
//! - `127.0.0.1` / `localhost`: reachable inside the server's namespace,
//!   refused from the other host;
//! - `0.0.0.0`: reachable from the other host over IPv4 (not IPv6);
//! - `::`: reachable from the other host over IPv6 and IPv4 (dual stack);
//! - the veth's own address: reachable from the other host, not over the
//!   server's loopback.
//!
//! Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2's `ip`, as CI has;
//! without them the tests fail with a message saying so (they are never
//! skipped).
//!
//! Tier: full (every test marked `#[ignore = "full tier: ..."]`): needs root and iproute2.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::Duration;

const PORT: u16 = 19500;
const SERVER_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 231, 0, 1));
const CLIENT_V4: &str = "10.231.0.2/24";
const SERVER_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x231, 0, 0, 0, 0, 0, 1));
const CLIENT_V6: &str = "fd00:231::2/64";
/// Bounds on waiting for the kernel or the server; never reached when
/// things work (a refused connection is refused at once).
const WAIT: Duration = Duration::from_secs(10);

const HELP_ANSWER: &[u8] =
    b"0 OK\r\nget_file_listing\r\nget_metadata\r\nget_slice\r\nhelp\r\nquit\r\n\r\n";

/// Runs `ip ARGS`, failing the test with a clear message if it cannot.
fn ip(args: &[&str]) {
    let output = match Command::new("ip").args(args).output() {
        Ok(output) => output,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            panic!("`ip` not found: install iproute2 (apt-get install iproute2) to run the network namespace tests")
        }
        Err(e) => panic!("cannot run ip {args:?}: {e}"),
    };
    assert!(
        output.status.success(),
        "ip {} failed ({}): {}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr),
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            "\n(network namespaces need root: run this test as root, as CI does)"
        } else {
            ""
        }
    );
}

/// Two namespaces joined by a veth pair; deleted when dropped (which also
/// deletes the veth pair and kills nothing: the server is a [`Served`]).
struct Hosts {
    server: String,
    client: String,
}

impl Hosts {
    fn new() -> Hosts {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        // One setup at a time: the first `ip netns add` on a machine also
        // mounts /run/netns, which concurrent calls could race on.
        static SETUP: Mutex<()> = Mutex::new(());
        let _setup = SETUP.lock().unwrap_or_else(|e| e.into_inner());
        let id = format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mut hosts = Hosts {
            server: String::new(),
            client: String::new(),
        };
        // Fill the names only once each namespace exists, so that Drop
        // deletes exactly what was made, even if a later step panics.
        let server = format!("hftp-test-srv-{id}");
        ip(&["netns", "add", &server]);
        hosts.server = server;
        let client = format!("hftp-test-cli-{id}");
        ip(&["netns", "add", &client]);
        hosts.client = client;
        let (s, c) = (hosts.server.as_str(), hosts.client.as_str());
        // The pair is created inside the server's namespace, its peer moved
        // straight into the client's: nothing touches the host's interfaces.
        ip(&[
            "-n", s, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", c,
        ]);
        ip(&["-n", s, "addr", "add", "10.231.0.1/24", "dev", "veth0"]);
        ip(&["-n", c, "addr", "add", CLIENT_V4, "dev", "veth1"]);
        ip(&[
            "-n",
            s,
            "addr",
            "add",
            "fd00:231::1/64",
            "dev",
            "veth0",
            "nodad",
        ]);
        ip(&["-n", c, "addr", "add", CLIENT_V6, "dev", "veth1", "nodad"]);
        for (ns, dev) in [(s, "lo"), (s, "veth0"), (c, "lo"), (c, "veth1")] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        hosts
    }

    /// Starts `hftp serve -a ADDR` inside the server's namespace.
    fn serve(&self, dir: &Path, address: &str) -> Served {
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.server,
                env!("CARGO_BIN_EXE_hftp"),
                "serve",
                "-d",
            ])
            .arg(dir)
            .args([
                "-p",
                &PORT.to_string(),
                "-a",
                address,
                "--model",
                "async",
                "-q",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ip netns exec hftp serve");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("listening on ") && tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut served = Served { child };
        if rx.recv_timeout(WAIT).is_err() {
            served.child.kill().ok();
            served.child.wait().ok();
            let mut stderr = String::new();
            if let Some(mut pipe) = served.child.stderr.take() {
                pipe.read_to_string(&mut stderr).ok();
            }
            panic!(
                "hftp serve -a {address} in {} did not start listening: {stderr}",
                self.server
            );
        }
        served
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server] {
            if !ns.is_empty() {
                // Deleting the namespace destroys its end of the veth pair,
                // and with it the peer.
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
    }
}

/// A running server; killed when dropped.
struct Served {
    child: Child,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Runs `f` on a thread that has entered network namespace `ns`: sockets it
/// creates live there.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: a valid namespace descriptor; CLONE_NEWNET only changes
        // this thread's network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns({path}): {}", io::Error::last_os_error());
        f()
    })
    .join()
    .expect("namespace thread panicked")
}

/// How an attempt to use the server went.
#[derive(Debug, PartialEq, Eq)]
enum Reach {
    /// Connected, and `help` got its exact answer.
    Served,
    /// The connection was refused: nothing listens there.
    Refused,
}

/// Connects to `ip:PORT` from namespace `ns` and asks for `help`.
fn try_help(ns: &str, ip: IpAddr) -> Reach {
    let addr = SocketAddr::new(ip, PORT);
    let ns_name = ns.to_owned();
    in_netns(ns, move || {
        let mut stream = match TcpStream::connect_timeout(&addr, WAIT) {
            Ok(stream) => stream,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Reach::Refused,
            Err(e) => {
                panic!("connecting to {addr} from {ns_name}: {e} (expected success or a refusal)")
            }
        };
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.write_all(b"help\r\nquit\r\n").unwrap();
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .unwrap_or_else(|e| panic!("reading from {addr}: {e}"));
        let mut expected = HELP_ANSWER.to_vec();
        expected.extend_from_slice(b"0 OK\r\n");
        assert_eq!(
            String::from_utf8_lossy(&answer),
            String::from_utf8_lossy(&expected),
            "answer from {addr} seen from {ns_name}"
        );
        Reach::Served
    })
}

fn served_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("hola.txt"),
        b"Que calor que hace hoy, pinocho!",
    )
    .unwrap();
    dir
}

const LOCALHOST_V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Bound to `address`, the server answers inside its own namespace only.
fn reachable_only_from_its_own_host(address: &str) {
    let hosts = Hosts::new();
    let dir = served_dir();
    let _server = hosts.serve(dir.path(), address);
    assert_eq!(
        try_help(&hosts.server, LOCALHOST_V4),
        Reach::Served,
        "inside the server's namespace"
    );
    assert_eq!(
        try_help(&hosts.client, SERVER_V4),
        Reach::Refused,
        "from the other host, IPv4"
    );
    assert_eq!(
        try_help(&hosts.client, SERVER_V6),
        Reach::Refused,
        "from the other host, IPv6"
    );
    assert_eq!(
        try_help(&hosts.server, SERVER_V4),
        Reach::Refused,
        "to the veth address on the server itself"
    );
}

#[test]
#[ignore = "full tier: needs root and iproute2 (network namespaces)"]
fn loopback_address_is_reachable_only_from_its_own_host() {
    reachable_only_from_its_own_host("127.0.0.1");
}

#[test]
#[ignore = "full tier: needs root and iproute2 (network namespaces)"]
fn localhost_is_reachable_only_from_its_own_host() {
    reachable_only_from_its_own_host("localhost");
}

#[test]
#[ignore = "full tier: needs root and iproute2 (network namespaces)"]
fn ipv4_wildcard_is_reachable_from_the_other_host() {
    let hosts = Hosts::new();
    let dir = served_dir();
    let _server = hosts.serve(dir.path(), "0.0.0.0");
    assert_eq!(
        try_help(&hosts.client, SERVER_V4),
        Reach::Served,
        "from the other host, IPv4"
    );
    assert_eq!(
        try_help(&hosts.server, LOCALHOST_V4),
        Reach::Served,
        "inside the server's namespace"
    );
    // 0.0.0.0 is every IPv4 interface, and only that.
    assert_eq!(
        try_help(&hosts.client, SERVER_V6),
        Reach::Refused,
        "from the other host, IPv6"
    );
}

#[test]
#[ignore = "full tier: needs root and iproute2 (network namespaces)"]
fn ipv6_wildcard_is_reachable_from_the_other_host_over_both_families() {
    let hosts = Hosts::new();
    let dir = served_dir();
    let _server = hosts.serve(dir.path(), "::");
    assert_eq!(
        try_help(&hosts.client, SERVER_V6),
        Reach::Served,
        "from the other host, IPv6"
    );
    assert_eq!(
        try_help(&hosts.client, SERVER_V4),
        Reach::Served,
        "from the other host, IPv4 (dual stack)"
    );
    assert_eq!(
        try_help(&hosts.server, IpAddr::V6(Ipv6Addr::LOCALHOST)),
        Reach::Served,
        "inside, ::1"
    );
}

#[test]
#[ignore = "full tier: needs root and iproute2 (network namespaces)"]
fn interface_address_is_reachable_from_the_other_host_only_there() {
    let hosts = Hosts::new();
    let dir = served_dir();
    let _server = hosts.serve(dir.path(), "10.231.0.1");
    assert_eq!(
        try_help(&hosts.client, SERVER_V4),
        Reach::Served,
        "from the other host"
    );
    assert_eq!(
        try_help(&hosts.server, LOCALHOST_V4),
        Reach::Refused,
        "over the server's loopback"
    );
}
