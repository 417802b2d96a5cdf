//! The client side of TLS (`hftps://`, `--tls`, `--cacert`, `--cert`/
//! `--key`, `--insecure`) with the real binary, over real loopback
//! sockets, with a test PKI made by `openssl` (see `support/pki.rs`).
//!
//! Against `openssl s_server` (which does not speak HFTP: with `-rev` it
//! sends each line back reversed, so a request that came through the TLS
//! session comes back as `gnitsil_elif_teg`, which the client reports as a
//! peer that does not speak HFTP): a CA given with `--cacert` is trusted,
//! over TLS 1.3 and 1.2, by name or IP address; an unknown CA, another
//! name, an expired certificate each give their one line; `--insecure`
//! connects and warns; mutual TLS with `-Verify 1` admits the CA's client
//! certificate and refuses none or a stranger's; a TLS client against a
//! plain listener that answers plain HFTP bytes is told to try without
//! TLS; bad PEM files are named, a key's contents never printed;
//! `SSLKEYLOGFILE` gets the session's secrets. Against `hftp serve
//! --tls-cert`: `ls`, `cat` and a 4-connection `get` byte-exact, a plain
//! client told to use `hftps://`, `hftp check --tls` passing (directly and
//! with `--server-cmd`), `hftp bench --tls` with requests, churn and
//! `--hold`; and TLS inside a SOCKS5 proxy (written here): `ls`, `check`
//! and `bench` through it, the certificate checked for the name the proxy
//! resolves.
//!
//! Tier: full (needs `openssl`: `apt-get install openssl`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::pki::Pki;
use crate::support::{self, tied, tools, Server};

const OPENSSL: &str = "apt-get install openssl";
/// Bounds every wait of the test; none of them is a threshold.
const TIMEOUT: Duration = Duration::from_secs(30);
/// What `s_server -rev` sends back for the client's first request.
const REVERSED_LISTING: &str = "gnitsil_elif_teg";
const INSECURE_WARNING: &str = "WARNING: --insecure: the server's certificate is not checked; \
                                anyone on the path can read and change this transfer";

/// `openssl s_server -rev` on a loopback address, killed when dropped.
struct SServer {
    child: Child,
    addr: String,
}

impl SServer {
    /// Serves `cert`/`key` of `pki` on `ip` (a free port), offering ALPN
    /// `hftp`, with `args` (`-tls1_2`, `-Verify 1`...); returns once it
    /// printed `ACCEPT` (it listens).
    fn start(pki: &Pki, ip: &str, cert: &str, args: &[&str]) -> SServer {
        let openssl = tools::require("openssl", OPENSSL);
        let port = support::free_ports(1)[0];
        let addr = format!("{ip}:{port}");
        let mut command = Command::new(openssl);
        command
            .arg("s_server")
            .arg("-accept")
            .arg(&addr)
            .arg("-cert")
            .arg(pki.file(&format!("{cert}.pem")))
            .arg("-key")
            .arg(pki.file(&format!("{cert}.key")))
            .args(["-alpn", "hftp", "-rev"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let description = format!("{command:?}");
        let mut child = tied::spawn(command).unwrap_or_else(|e| panic!("{description}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        loop {
            match rx.recv_timeout(TIMEOUT) {
                Ok(line) if line.contains("ACCEPT") => break,
                Ok(_) => {}
                Err(e) => panic!("{description} printed no ACCEPT: {e}"),
            }
        }
        SServer { child, addr }
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Runs `hftp ARGS` (no proxy, no key log from the environment) with
/// `envs`, to completion.
fn hftp_with(args: &[&str], envs: &[(&str, &Path)], cwd: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hftp"));
    command
        .args(args)
        .current_dir(cwd)
        .env_remove("HFTP_PROXY")
        .env_remove("SSLKEYLOGFILE")
        .env_remove("LANG")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .stdin(Stdio::null());
    for (key, value) in envs {
        command.env(key, value);
    }
    command.output().expect("run hftp")
}

fn hftp(args: &[&str], cwd: &Path) -> Output {
    hftp_with(args, &[], cwd)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `out` exited with `code`, its standard error holding `needle`.
#[track_caller]
fn assert_fails(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

/// The handshake completed and the request went through the session:
/// `s_server -rev` sent it back reversed (not HFTP: exit 4).
#[track_caller]
fn assert_through(out: &Output) {
    assert_fails(out, 4, REVERSED_LISTING);
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
#[ignore = "full tier: needs openssl (apt-get install openssl)"]
fn a_ca_given_with_cacert_is_trusted_over_tls13_and_tls12() {
    let pki = Pki::new();
    let ca = pki.file("ca.pem");
    for version in ["-tls1_3", "-tls1_2"] {
        let server = SServer::start(&pki, "127.0.0.1", "server", &[version]);
        let port = server.addr.rsplit_once(':').expect("port").1;
        // By name (SNI localhost) in a URL, by IP address with --tls.
        let url = format!("hftps://localhost:{port}/");
        assert_through(&hftp(&["ls", &url, "--cacert", path(&ca)], pki.dir()));
        assert_through(&hftp(
            &["ls", "--tls", &server.addr, "--cacert", path(&ca)],
            pki.dir(),
        ));
    }
}

#[test]
#[ignore = "full tier: needs openssl (apt-get install openssl)"]
fn a_certificate_of_an_unknown_ca_is_not_trusted() {
    let pki = Pki::new();
    let server = SServer::start(&pki, "127.0.0.1", "server", &[]);
    let other = pki.file("other-ca.pem");
    let out = hftp(
        &["ls", "--tls", &server.addr, "--cacert", path(&other)],
        pki.dir(),
    );
    assert_fails(
        &out,
        5,
        &format!(
            "hftp: {}: the server's certificate is not trusted: no CA this client trusts \
             signed it; give the server's CA with --cacert FILE, or install that CA in the \
             system's store",
            server.addr
        ),
    );
    // The same in Spanish.
    let out = hftp(
        &[
            "ls",
            "--tls",
            &server.addr,
            "--cacert",
            path(&other),
            "--lang",
            "es",
        ],
        pki.dir(),
    );
    assert_fails(&out, 5, "el certificado del servidor no es de confianza");
}

#[test]
#[ignore = "full tier: needs openssl (apt-get install openssl)"]
fn a_certificate_for_another_name_is_refused_by_name() {
    let pki = Pki::new();
    // The certificate names localhost and 127.0.0.1; the server is reached
    // at 127.0.0.2 (loopback too).
    let server = SServer::start(&pki, "127.0.0.2", "server", &[]);
    let out = hftp(
        &[
            "ls",
            "--tls",
            &server.addr,
            "--cacert",
            path(&pki.file("ca.pem")),
        ],
        pki.dir(),
    );
    assert_fails(
        &out,
        5,
        "the server's certificate is for another name (it lists localhost, 127.0.0.1), \
         not 127.0.0.2: connect with a name the certificate lists",
    );
}

#[test]
#[ignore = "full tier: needs openssl (apt-get install openssl)"]
fn an_expired_certificate_is_refused_with_its_date() {
    let pki = Pki::new();
    // Valid in 2000 only, signed by the test CA.
    let server = SServer::start(&pki, "127.0.0.1", "expired", &[]);
    let out = hftp(
        &[
            "ls",
            "--tls",
            &server.addr,
            "--cacert",
            path(&pki.file("ca.pem")),
        ],
        pki.dir(),
    );
    assert_fails(
        &out,
        5,
        "the server's certificate expired on 2001-01-01: the server must renew it",
    );
}

#[test]
#[ignore = "full tier: needs openssl (apt-get install openssl)"]
fn insecure_connects_to_anything_and_warns_every_run() {
    let pki = Pki::new();
    // An expired certificate of an unknown CA: nothing is checked.
    let server = SServer::start(&pki, "127.0.0.1", "expired", &[]);
    for _ in 0..2 {
        let out = hftp(&["ls", "--tls", &server.addr, "--insecure"], pki.dir());
        assert_through(&out);
        assert!(
            stderr(&out).lines().any(|l| l == INSECURE_WARNING),
            "{}",
            stderr(&out)
        );
    }
    // A contradiction is a usage error.
    let out = hftp(
        &[
            "ls",
            "--tls",
            &server.addr,
            "--insecure",
            "--cacert",
            "ca.pem",
        ],
        pki.dir(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
#[ignore = "full tier: needs openssl (apt-get install openssl)"]
fn a_plain_server_is_not_taken_for_tls() {
    let pki = Pki::new();
    // A plain listener that answers plain HFTP bytes to whatever comes.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let peer = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(TIMEOUT)).ok();
        conn.write_all(b"200 NO SUCH COMMAND\r\n").expect("answer");
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).ok();
    });
    let out = hftp(
        &["ls", "--tls", &addr, "--cacert", path(&pki.file("ca.pem"))],
        pki.dir(),
    );
    assert_fails(
        &out,
        5,
        &format!(
            "hftp: the server at {addr} did not answer the TLS handshake \
             (it sent \"200 NO SUCH COMMAND\\r\\n\"): is it serving TLS? \
             try without --tls / with hftp://"
        ),
    );
    peer.join().expect("peer");
}

#[test]
#[ignore = "full tier: needs openssl (apt-get install openssl)"]
fn mutual_tls_admits_the_ca_s_client_and_refuses_others() {
    let pki = Pki::new();
    let ca = pki.file("ca.pem");
    for version in ["-tls1_3", "-tls1_2"] {
        let server = SServer::start(
            &pki,
            "127.0.0.1",
            "server",
            &[
                version,
                "-Verify",
                "1",
                "-verify_return_error",
                "-CAfile",
                path(&ca),
            ],
        );
        let base = ["ls", "--tls", &server.addr, "--cacert", path(&ca)];
        let with = |cert: &str| {
            let (pem, key) = (
                pki.file(&format!("{cert}.pem")),
                pki.file(&format!("{cert}.key")),
            );
            let mut args = base.to_vec();
            args.extend(["--cert", path(&pem), "--key", path(&key)]);
            hftp(&args, pki.dir())
        };
        assert_through(&with("client"));
        let none = hftp(&base, pki.dir());
        if version == "-tls1_3" {
            assert_fails(
                &none,
                5,
                "the server asks for a client certificate (mutual TLS) and none was given: \
                 give yours with --cert FILE --key FILE",
            );
        } else {
            // TLS 1.2 has no alert of its own for it.
            assert_fails(
                &none,
                5,
                "the server refused the TLS handshake (handshake_failure); if it requires a \
                 client certificate, give one with --cert FILE --key FILE",
            );
        }
        assert_fails(
            &with("stranger"),
            5,
            "the server refused our client certificate (unknown_ca)",
        );
    }
}

#[test]
#[ignore = "full tier: needs openssl (apt-get install openssl)"]
fn bad_pem_files_are_named_and_a_key_never_shown() {
    let pki = Pki::new();
    let server = SServer::start(&pki, "127.0.0.1", "server", &[]);
    let ca = pki.file("ca.pem");
    let key = std::fs::read_to_string(pki.file("client.key")).expect("key");
    let secret_line = key
        .lines()
        .find(|l| !l.starts_with("-----"))
        .expect("a base64 line")
        .to_owned();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--cacert", "missing.pem"],
            "cannot use missing.pem as the CA certificates (--cacert): ",
        ),
        (
            &["--cacert", "client.key"],
            "cannot use client.key as the CA certificates (--cacert): it holds no PEM \
             certificate",
        ),
        (
            &[
                "--cacert",
                path(&ca),
                "--cert",
                "client.pem",
                "--key",
                "stranger.key",
            ],
            "cannot use stranger.key as the client key (--key): the key is not the one of \
             the certificate (--cert)",
        ),
        (
            &[
                "--cacert",
                path(&ca),
                "--cert",
                "client.pem",
                "--key",
                "client.pem",
            ],
            "cannot use client.pem as the client key (--key): it holds no PEM private key",
        ),
    ];
    for (options, needle) in cases {
        let mut args = vec!["ls", "--tls", server.addr.as_str()];
        args.extend_from_slice(options);
        let out = hftp(&args, pki.dir());
        assert_fails(&out, 2, needle);
        assert!(!stderr(&out).contains(&secret_line), "{}", stderr(&out));
    }
    // TLS options without TLS would do nothing: said, not ignored.
    let out = hftp(&["ls", &server.addr, "--cacert", path(&ca)], pki.dir());
    assert_fails(
        &out,
        2,
        "--cacert is for TLS: add --tls, or write the server as hftps://",
    );
}

#[test]
#[ignore = "full tier: needs openssl (apt-get install openssl)"]
fn sslkeylogfile_gets_the_session_secrets() {
    let pki = Pki::new();
    let server = SServer::start(&pki, "127.0.0.1", "server", &[]);
    let log = pki.dir().join("keys.log");
    let out = hftp_with(
        &[
            "ls",
            "--tls",
            &server.addr,
            "--cacert",
            path(&pki.file("ca.pem")),
        ],
        &[("SSLKEYLOGFILE", &log)],
        pki.dir(),
    );
    assert_through(&out);
    let keys = std::fs::read_to_string(&log).expect("the key log was written");
    for label in [
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
    ] {
        assert!(keys.contains(label), "no {label} in {keys}");
    }
}

/// `hftp serve --tls-cert` of the test PKI serving `dir`, with `args`.
fn tls_server(pki: &Pki, dir: &Path, model: &str, args: &[&str]) -> Server {
    let mut builder = Server::builder(dir)
        .model(model)
        .arg("--tls-cert")
        .arg(pki.file("server.pem"))
        .arg("--tls-key")
        .arg(pki.file("server.key"));
    for arg in args {
        builder = builder.arg(arg);
    }
    builder.start()
}

#[test]
#[ignore = "full tier: needs openssl (apt-get install openssl)"]
fn ls_cat_and_get_through_hftp_serve_over_tls_are_byte_exact() {
    let pki = Pki::new();
    let served = tempfile::tempdir().expect("served dir");
    std::fs::write(served.path().join("hola.txt"), b"Que calor hace hoy!\n").expect("write");
    // Over 8 MiB: fetched in segments over four connections.
    let big = support::noise(9 * 1024 * 1024 + 17, 0x71_5c11);
    std::fs::write(served.path().join("big.bin"), &big).expect("write");
    let server = tls_server(&pki, served.path(), "async", &[]);
    let port = server.addr().port();
    let ca = pki.file("ca.pem");
    let ca = path(&ca);
    let url = |name: &str| format!("hftps://localhost:{port}/{name}");

    let out = hftp(&["ls", "-l", &url(""), "--cacert", ca], pki.dir());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{}  big.bin\n{:>w$}  hola.txt\n",
            big.len(),
            20,
            w = big.len().to_string().len()
        )
    );
    let out = hftp(&["cat", &url("hola.txt"), "--cacert", ca], pki.dir());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, b"Que calor hace hoy!\n");
    // Raw slices, then base64 ones.
    for extra in [&[][..], &["--no-raw"][..]] {
        let dest = tempfile::tempdir().expect("dest");
        let target = url("big.bin");
        let mut args = vec!["get", "-q", "-j", "4", "--cacert", ca, &target];
        args.extend(["-O", path(dest.path())]);
        args.extend_from_slice(extra);
        let out = hftp(&args, pki.dir());
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let got = std::fs::read(dest.path().join("big.bin")).expect("downloaded");
        assert!(got == big, "big.bin differs ({extra:?})");
    }
    // A plain client at the TLS port is told to use TLS (the server's
    // alert is TLS); a TLS client at a plain server's port is told what
    // came instead (the plain server's answer to a ClientHello).
    let out = hftp(&["ls", &server.target()], pki.dir());
    assert_fails(
        &out,
        5,
        &format!(
            "hftp: {0} answered get_file_listing in TLS: it serves HFTP over TLS; use \
             hftps://{0}/ or --tls",
            server.target()
        ),
    );
    let plain = Server::builder(served.path()).start();
    let out = hftp(&["ls", "--tls", &plain.target(), "--cacert", ca], pki.dir());
    assert_fails(
        &out,
        5,
        &format!(
            "hftp: the server at {} did not answer the TLS handshake (it sent \"",
            plain.target()
        ),
    );
}

#[test]
#[ignore = "full tier: needs openssl (apt-get install openssl)"]
fn check_tls_passes_against_hftp_serve_over_tls() {
    let pki = Pki::new();
    let served = tempfile::tempdir().expect("served dir");
    let server = tls_server(&pki, served.path(), "threads", &[]);
    let out = hftp(
        &[
            "check",
            "--tls",
            "--cacert",
            path(&pki.file("ca.pem")),
            &format!("localhost:{}", server.addr().port()),
            "--dir",
            path(served.path()),
        ],
        pki.dir(),
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}\n{}", stderr(&out));
    let last = report.lines().last().unwrap_or_default();
    assert!(last.contains(" 0 failed"), "{report}");
    // The half-close crosses TLS (as close_notify): not skipped, passed.
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("PASS") && l.contains("clients.half-close-still-answered")),
        "{report}"
    );
}

#[test]
#[ignore = "full tier: needs openssl (apt-get install openssl)"]
fn check_tls_with_server_cmd_speaks_tls_to_the_started_server() {
    let pki = Pki::new();
    let command = format!(
        "exec {} serve -d {{dir}} -p {{port}} -a 127.0.0.1 --tls-cert {} --tls-key {}",
        env!("CARGO_BIN_EXE_hftp"),
        path(&pki.file("server.pem")),
        path(&pki.file("server.key")),
    );
    let out = hftp(
        &[
            "check",
            "--tls",
            "--cacert",
            path(&pki.file("ca.pem")),
            "--server-cmd",
            &command,
            "--only",
            "quit.*,eol.*,fatal.*,clients.ten-interleaved",
        ],
        pki.dir(),
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}\n{}", stderr(&out));
    assert!(report.lines().any(|l| l.starts_with("PASS")), "{report}");
    assert!(!report.contains("FAIL"), "{report}");
}

#[test]
#[ignore = "full tier: needs openssl (apt-get install openssl)"]
fn bench_tls_runs_requests_churn_and_hold() {
    let pki = Pki::new();
    let served = tempfile::tempdir().expect("served dir");
    std::fs::write(served.path().join("hola.txt"), b"hola\n").expect("write");
    let server = tls_server(&pki, served.path(), "async", &[]);
    let target = format!("hftps://localhost:{}", server.addr().port());
    let ca = pki.file("ca.pem");
    for (workload, requests, extra) in [
        ("metadata:hola.txt", 400, &["-c", "4", "-k", "4"][..]),
        ("raw:hola.txt:0:5", 100, &["-c", "2"][..]),
        // A handshake per request.
        ("churn", 30, &["-c", "3"][..]),
    ] {
        let n = requests.to_string();
        let mut args = vec!["bench", &target, workload, "-n", &n, "--cacert", path(&ca)];
        args.extend(["--json", "-q"]);
        args.extend_from_slice(extra);
        let out = hftp(&args, pki.dir());
        let report = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{workload}: {report}\n{}",
            stderr(&out)
        );
        let json: serde_json::Value = serde_json::from_str(&report).expect("JSON report");
        assert_eq!(json["errors"], 0, "{report}");
        assert_eq!(json["requests"], requests, "{report}");
    }
    let out = hftp(
        &[
            "bench",
            &target,
            "--hold",
            "8",
            "-d",
            "0",
            "--cacert",
            path(&ca),
            "--json",
            "-q",
        ],
        pki.dir(),
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}\n{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&report).expect("JSON report");
    assert_eq!(json["hold"]["answered_quit"], 8, "{report}");
    // An untrusted server: every connection fails its handshake, said once.
    let other = pki.file("other-ca.pem");
    let out = hftp(
        &[
            "bench",
            &target,
            "metadata:hola.txt",
            "-n",
            "10",
            "--cacert",
            path(&other),
        ],
        pki.dir(),
    );
    assert_fails(&out, 1, "the server's certificate is not trusted");
}

/// A SOCKS5 proxy (no authentication, CONNECT) on loopback, written here:
/// the name of a `socks5h` request is resolved by the proxy. Counts the
/// connections it carried.
struct Socks {
    addr: String,
    carried: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Socks {
    fn start() -> Socks {
        use std::net::{TcpStream, ToSocketAddrs};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let carried = std::sync::Arc::new(AtomicUsize::new(0));
        let count = carried.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    client.set_read_timeout(Some(TIMEOUT)).ok();
                    let mut head = [0u8; 2];
                    client.read_exact(&mut head).ok()?;
                    let mut methods = vec![0u8; usize::from(head[1])];
                    client.read_exact(&mut methods).ok()?;
                    client.write_all(&[5, 0]).ok()?;
                    let mut req = [0u8; 4];
                    client.read_exact(&mut req).ok()?;
                    let host = match req[3] {
                        1 => {
                            let mut ip = [0u8; 4];
                            client.read_exact(&mut ip).ok()?;
                            std::net::Ipv4Addr::from(ip).to_string()
                        }
                        3 => {
                            let mut len = [0u8; 1];
                            client.read_exact(&mut len).ok()?;
                            let mut name = vec![0u8; usize::from(len[0])];
                            client.read_exact(&mut name).ok()?;
                            String::from_utf8(name).ok()?
                        }
                        _ => return None,
                    };
                    let mut port = [0u8; 2];
                    client.read_exact(&mut port).ok()?;
                    let target = (host.as_str(), u16::from_be_bytes(port))
                        .to_socket_addrs()
                        .ok()?
                        .find(std::net::SocketAddr::is_ipv4)?;
                    let server = TcpStream::connect(target).ok()?;
                    client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).ok()?;
                    client.set_read_timeout(None).ok();
                    let (mut up_from, mut up_to) =
                        (client.try_clone().ok()?, server.try_clone().ok()?);
                    let up = std::thread::spawn(move || {
                        std::io::copy(&mut up_from, &mut up_to).ok();
                        up_to.shutdown(std::net::Shutdown::Write).ok();
                    });
                    let (mut down_from, mut down_to) = (server, client);
                    std::io::copy(&mut down_from, &mut down_to).ok();
                    down_to.shutdown(std::net::Shutdown::Write).ok();
                    up.join().ok()
                });
            }
        });
        Socks { addr, carried }
    }

    fn carried(&self) -> usize {
        self.carried.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
#[ignore = "full tier: needs openssl (apt-get install openssl)"]
fn tls_runs_inside_a_socks_proxy() {
    let pki = Pki::new();
    let served = tempfile::tempdir().expect("served dir");
    std::fs::write(served.path().join("hola.txt"), b"hola\n").expect("write");
    let server = tls_server(&pki, served.path(), "async", &[]);
    let socks = Socks::start();
    let proxy = format!("socks5h://{}", socks.addr);
    // The proxy resolves `localhost`; the certificate is checked for it.
    let target = format!("hftps://localhost:{}", server.addr().port());
    let ca = pki.file("ca.pem");
    let out = hftp(
        &[
            "ls",
            &format!("{target}/"),
            "--proxy",
            &proxy,
            "--cacert",
            path(&ca),
        ],
        pki.dir(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, b"hola.txt\n");
    assert_eq!(socks.carried(), 1);

    let out = hftp(
        &[
            "check",
            &target,
            "--proxy",
            &proxy,
            "--cacert",
            path(&ca),
            "--only",
            "quit.*,eol.*",
        ],
        pki.dir(),
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}\n{}", stderr(&out));
    assert!(report.lines().any(|l| l.starts_with("PASS")), "{report}");
    let after_check = socks.carried();
    assert!(
        after_check > 2,
        "the checker's connections went around the proxy"
    );

    let out = hftp(
        &[
            "bench",
            &target,
            "metadata:hola.txt",
            "-n",
            "50",
            "-c",
            "2",
            "--proxy",
            &proxy,
        ],
        pki.dir(),
    );
    // Without --cacert: the system's CAs do not know the test CA.
    assert_fails(&out, 1, "the server's certificate is not trusted");
    let out = hftp(
        &[
            "bench",
            &target,
            "metadata:hola.txt",
            "-n",
            "50",
            "-c",
            "2",
            "--proxy",
            &proxy,
        ]
        .into_iter()
        .chain(["--cacert", path(&ca), "--json", "-q"])
        .collect::<Vec<_>>(),
        pki.dir(),
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}\n{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&report).expect("JSON report");
    assert_eq!(json["requests"], 50, "{report}");
    assert!(socks.carried() >= after_check + 2);
}
