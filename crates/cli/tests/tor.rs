//! `hftp serve` published as an onion service on a private Tor network,
//! and reached through Tor's SOCKS port, as the course's lab does it: the
//! network is Debian's `tor` with `TestingTorNetwork 1` on loopback (three
//! directory authorities that are relays too, two more relays, the onion
//! service and the client), so nothing leaves the machine: every torrc
//! names only our authorities and no fallback directory. It bootstraps in
//! well under a minute here; the test waits for it (bounded) by asking the
//! onion service for its listing.
//!
//! Tier: full (needs `tor` and `tor-gencert`: `apt-get install tor`).

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::background::hftp;
use crate::support::{self, tied, tools, Server};

const TOR_INSTALL: &str = "apt-get install tor";
/// Far beyond the ~40 s the network takes here; a loaded machine is slower.
const BOOTSTRAP_LIMIT: Duration = Duration::from_secs(300);
/// The port clients ask the onion service for.
const VIRTUAL_PORT: u16 = 19500;
const MIB: usize = 1024 * 1024;

/// A private Tor network on loopback, stopped when dropped.
struct TorNet {
    tors: Vec<Child>,
    socks: u16,
    onion: String,
    dir: tempfile::TempDir,
}

/// One tor: its nickname, its data directory and what its torrc adds.
struct Node {
    nick: String,
    dir: PathBuf,
    extra: String,
}

impl TorNet {
    /// Starts the network with an onion service for `127.0.0.1:target`.
    fn start(target: u16) -> TorNet {
        let tor = tools::require("tor", TOR_INSTALL);
        let gencert = tools::require("tor-gencert", TOR_INSTALL);
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = support::free_ports(11);
        let mut authorities = String::new();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let (or, dirport) = (ports[2 * i], ports[2 * i + 1]);
            let node = private_dir(dir.path(), &format!("auth{i}"));
            let keys = private_dir(&node, "keys");
            let out = Command::new(&gencert)
                .args(["--create-identity-key", "-m", "12", "-a"])
                .arg(format!("127.0.0.1:{dirport}"))
                .args(["--passphrase-fd", "0"])
                .current_dir(&keys)
                .stdin(Stdio::null())
                .output()
                .expect("run tor-gencert");
            assert!(out.status.success(), "tor-gencert: {out:?}");
            let cert = fs::read_to_string(keys.join("authority_certificate")).expect("cert");
            let v3ident = cert
                .lines()
                .find_map(|l| l.strip_prefix("fingerprint "))
                .expect("a fingerprint in the authority certificate")
                .trim()
                .to_owned();
            let empty = node.join("empty-torrc");
            fs::write(&empty, "").expect("write an empty torrc");
            let out = Command::new(&tor)
                .arg("-f")
                .arg(&empty)
                .args(["--quiet", "--list-fingerprint", "--DataDirectory"])
                .arg(&node)
                .args(["--ORPort", &or.to_string(), "--Address", "127.0.0.1"])
                .args(["--Nickname", &format!("auth{i}")])
                .output()
                .expect("run tor --list-fingerprint");
            let listed = String::from_utf8_lossy(&out.stdout);
            let fingerprint: String = listed
                .split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
                .concat();
            assert_eq!(fingerprint.len(), 40, "tor --list-fingerprint: {out:?}");
            writeln!(
                authorities,
                "DirAuthority auth{i} orport={or} no-v2 v3ident={v3ident} 127.0.0.1:{dirport} {fingerprint}"
            )
            .expect("write to a string");
            nodes.push(Node {
                nick: format!("auth{i}"),
                dir: node,
                extra: format!(
                    "AuthoritativeDirectory 1\nV3AuthoritativeDirectory 1\n\
                     ContactInfo auth{i}@test.test\nORPort 127.0.0.1:{or}\n\
                     DirPort 127.0.0.1:{dirport}\nSocksPort 0\nExitPolicy reject *:*\n"
                ),
            });
        }
        for i in 0..2 {
            let (or, dirport) = (ports[6 + 2 * i], ports[7 + 2 * i]);
            nodes.push(Node {
                nick: format!("relay{i}"),
                dir: private_dir(dir.path(), &format!("relay{i}")),
                extra: format!(
                    "ORPort 127.0.0.1:{or}\nDirPort 127.0.0.1:{dirport}\n\
                     SocksPort 0\nExitPolicy reject *:*\n"
                ),
            });
        }
        let service = dir.path().join("hs").join("service");
        nodes.push(Node {
            nick: "hs".into(),
            dir: private_dir(dir.path(), "hs"),
            extra: format!(
                "SocksPort 0\nHiddenServiceDir {}\nHiddenServicePort {VIRTUAL_PORT} 127.0.0.1:{target}\n",
                service.display()
            ),
        });
        let socks = ports[10];
        nodes.push(Node {
            nick: "client".into(),
            dir: private_dir(dir.path(), "client"),
            extra: format!("SocksPort 127.0.0.1:{socks}\n"),
        });

        let mut tors = Vec::new();
        for node in &nodes {
            let torrc = node.dir.join("torrc");
            fs::write(&torrc, torrc_of(node, &authorities)).expect("write torrc");
            let mut command = Command::new(&tor);
            command
                .arg("-f")
                .arg(&torrc)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            tors.push(tied::spawn(command).expect("start tor"));
        }
        let mut net = TorNet {
            tors,
            socks,
            onion: String::new(),
            dir,
        };
        let hostname = service.join("hostname");
        let deadline = Instant::now() + BOOTSTRAP_LIMIT;
        net.onion = loop {
            if let Ok(name) = fs::read_to_string(&hostname) {
                break name.trim().to_owned();
            }
            net.assert_alive();
            assert!(
                Instant::now() < deadline,
                "the onion service never got its address"
            );
            // Polling, bounded by the deadline: not a stand-in for synchronisation.
            std::thread::sleep(Duration::from_millis(100));
        };
        net
    }

    /// `socks5h://127.0.0.1:PORT` of the client tor.
    fn proxy(&self) -> String {
        format!("socks5h://127.0.0.1:{}", self.socks)
    }

    /// `ONION:19500`.
    fn target(&self) -> String {
        format!("{}:{VIRTUAL_PORT}", self.onion)
    }

    /// Waits until the onion service answers a listing through Tor: the
    /// consensus is out, the descriptor published, a circuit built.
    fn wait_ready(&mut self, work: &Path) -> Duration {
        let started = Instant::now();
        loop {
            let out = hftp(
                &[
                    "ls",
                    "--proxy",
                    &self.proxy(),
                    &self.target(),
                    "--timeout",
                    "10",
                ],
                work,
            );
            if out.status.success() {
                return started.elapsed();
            }
            self.assert_alive();
            assert!(
                started.elapsed() < BOOTSTRAP_LIMIT,
                "the onion service did not answer within {BOOTSTRAP_LIMIT:?}: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.logs_of_all()
            );
            // Polling, bounded by the limit: not a stand-in for synchronisation.
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn assert_alive(&mut self) {
        for tor in &mut self.tors {
            assert!(
                matches!(tor.try_wait(), Ok(None)),
                "a tor exited early:\n{}",
                self.logs_of_all()
            );
        }
    }

    /// The last lines of every tor's log.
    fn logs_of_all(&self) -> String {
        let mut text = String::new();
        for entry in fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let log = fs::read_to_string(entry.path().join("notice.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let _ = writeln!(text, "== {}", entry.file_name().to_string_lossy());
            for line in tail.into_iter().rev() {
                let _ = writeln!(text, "{line}");
            }
        }
        text
    }
}

impl Drop for TorNet {
    fn drop(&mut self) {
        for tor in &mut self.tors {
            let _ = tor.kill();
            let _ = tor.wait();
        }
    }
}

/// `parent/name`, created with mode 0700 (tor refuses a data directory
/// others can read).
fn private_dir(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .expect("create a private directory");
    dir
}

/// The torrc of `node`: a testing network that knows only `authorities`,
/// with the fast voting schedule of Tor's own test networks.
fn torrc_of(node: &Node, authorities: &str) -> String {
    format!(
        "TestingTorNetwork 1\n\
         DataDirectory {dir}\n\
         Nickname {nick}\n\
         RunAsDaemon 0\n\
         ShutdownWaitLength 0\n\
         Log notice file {dir}/notice.log\n\
         SafeLogging 0\n\
         Address 127.0.0.1\n\
         AssumeReachable 1\n\
         UseDefaultFallbackDirs 0\n\
         ClientUseIPv6 0\n\
         ControlPort 0\n\
         PathsNeededToBuildCircuits 0.67\n\
         TestingDirAuthVoteExit *\n\
         TestingDirAuthVoteGuard *\n\
         TestingDirAuthVoteHSDir *\n\
         TestingMinExitFlagThreshold 0\n\
         V3AuthNIntervalsValid 2\n\
         TestingV3AuthInitialVotingInterval 10\n\
         TestingV3AuthInitialVoteDelay 2\n\
         TestingV3AuthInitialDistDelay 2\n\
         V3AuthVotingInterval 10\n\
         V3AuthVoteDelay 2\n\
         V3AuthDistDelay 2\n\
         {authorities}{extra}",
        dir = node.dir.display(),
        nick = node.nick,
        extra = node.extra,
    )
}

/// The lab, end to end: `hftp serve` on loopback published as an onion
/// service, then `ls`, `get -j 2`, `check` and `bench` through Tor's SOCKS
/// port with the onion name (which only Tor can resolve).
#[test]
#[ignore = "full tier: needs tor (apt-get install tor)"]
fn an_onion_service_is_checked_through_tor() {
    let served = tempfile::tempdir().expect("temp dir");
    fs::write(served.path().join("hola.txt"), b"Hola, mundo\n").expect("write");
    fs::write(served.path().join("big.bin"), support::noise(2 * MIB, 31)).expect("write");
    let server = Server::builder(served.path()).start();
    let mut net = TorNet::start(server.addr().port());
    let work = tempfile::tempdir().expect("temp dir");
    let ready = net.wait_ready(work.path());
    eprintln!("private Tor network: the onion service answered after {ready:?}");
    let (proxy, target) = (net.proxy(), net.target());

    let out = hftp(&["ls", "--proxy", &proxy, &target], work.path());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "big.bin\nhola.txt\n");

    let out = hftp(
        &[
            "get", "--proxy", &proxy, &target, "big.bin", "-j", "2", "-q",
        ],
        work.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        fs::read(work.path().join("big.bin")).expect("read")
            == fs::read(served.path().join("big.bin")).expect("read"),
        "big.bin differs after a get through Tor"
    );

    let out = hftp(
        &["check", "--proxy", &proxy, &target, "--lang", "en"],
        work.path(),
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report
            .lines()
            .last()
            .is_some_and(|l| l.contains(" 0 failed")),
        "{report}"
    );

    let out = hftp(
        &[
            "bench",
            "--proxy",
            &proxy,
            &target,
            "metadata:hola.txt",
            "-n",
            "20",
            "-q",
        ],
        work.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
}
