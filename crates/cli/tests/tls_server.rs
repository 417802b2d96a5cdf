//! `hftp serve --tls-cert/--tls-key` (and `--tls-client-ca`) against the
//! TLS client every operator has, `openssl s_client`: the real binary,
//! real loopback sockets, a test PKI made with `openssl` (see
//! `support/pki.rs`).
//!
//! Every model serves byte-exact answers through TLS 1.3 with ALPN `hftp`
//! (a listing, a raw slice that spans several TLS records and a base64
//! one), closes a plain TCP client without an answer, and closes a silent
//! connection at `--tls-handshake-timeout`. TLS 1.2 is served; TLS 1.1 is
//! refused by the server (the client is told to allow it, so that the
//! refusal cannot be its own); with `--tls-client-ca` only a certificate
//! of that CA gets in, over TLS 1.3 and 1.2, and the log names its
//! subject; the key never reaches the log, even at `-vv`. Each refusal
//! must be counted, exactly, in
//! `hftp_connections_refused{limit="tls_handshake"}`.
//!
//! Tier: full (needs `openssl`: `apt-get install openssl`).

use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::pki::{Pki, CLIENT_SUBJECT};
use crate::support::{self, tools, Server};

/// Bounds every wait of the test; none of them is a threshold.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The served directory: a small text file and one of noise, whose raw
/// slice spans several TLS records (16 KiB each) and several of the
/// server's encryption steps (64 KiB each).
fn served() -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hola.txt"), b"hola\n").unwrap();
    let noise = support::noise(200_000, 0x7e57_7150);
    std::fs::write(dir.path().join("noise.bin"), &noise).unwrap();
    (dir, noise)
}

/// A TLS server of `model` with the test PKI's server certificate and
/// metrics, plus `args`.
fn tls_server(pki: &Pki, dir: &Path, model: &str, args: &[&str]) -> Server {
    let mut builder = Server::builder(dir)
        .model(model)
        .arg("--tls-cert")
        .arg(pki.file("server.pem"))
        .arg("--tls-key")
        .arg(pki.file("server.key"))
        .arg("--metrics")
        .arg("127.0.0.1:0");
    for arg in args {
        builder = builder.arg(arg);
    }
    builder.start()
}

/// `openssl s_client` to `server`, trusting the test CA, checking the
/// server's certificate names 127.0.0.1 and failing if it does not verify,
/// offering ALPN `hftp`, then `args` ([`BRIEF`], say). `input` is its
/// stdin; the end of it does not end the connection (`-ign_eof`): it
/// reads until the server closes.
fn s_client(server: &Server, pki: &Pki, args: &[&str], input: &[u8]) -> Output {
    let openssl = tools::require("openssl", "apt-get install openssl");
    let mut command = Command::new(openssl);
    command
        .arg("s_client")
        .arg("-connect")
        .arg(server.addr().to_string())
        .arg("-CAfile")
        .arg(pki.file("ca.pem"))
        .args(["-verify_return_error", "-verify_ip", "127.0.0.1"])
        .args(["-alpn", "hftp", "-nocommands", "-ign_eof"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let description = format!("{command:?}");
    let mut child =
        support::tied::spawn(command).unwrap_or_else(|e| panic!("cannot start {description}: {e}"));
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("piped stdin");
    // A client that failed at once may have stopped reading it.
    if let Err(e) = stdin.write_all(input) {
        assert_eq!(e.kind(), ErrorKind::BrokenPipe, "s_client's stdin: {e}");
    }
    drop(stdin);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()).ok());
    match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out.unwrap_or_else(|e| panic!("{description}: {e}")),
        Err(_) => {
            // SAFETY: kill has no memory-safety preconditions; the child
            // is not reaped until wait_with_output returns.
            unsafe { libc::kill(libc::pid_t::try_from(pid).unwrap(), libc::SIGKILL) };
            panic!(
                "{description} did not end within {TIMEOUT:?} (--model {}); server stderr:\n{}",
                server.model(),
                server.stderr()
            );
        }
    }
}

/// `-brief`: a summary on stderr, the server's bytes alone on stdout.
/// Without it, stdout holds the whole session summary (ALPN included)
/// among the server's bytes.
const BRIEF: &str = "-brief";

/// What a failed assertion about an `s_client` run shows.
fn shown(out: &Output, server: &Server) -> String {
    format!(
        "--model {}: s_client exited {}; its stdout: {:?}; its stderr:\n{}\nserver stderr:\n{}",
        server.model(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.stderr()
    )
}

/// The summary line `-brief` prints as `NAME: VALUE`.
fn summary(out: &Output, name: &str) -> Option<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// The requests of the byte-exact exchange and the answers they must get.
fn exchange(noise: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let request = b"get_file_listing\r\n\
        get_slice noise.bin 1000 150000 raw\r\n\
        get_slice noise.bin 7 3000\r\n\
        get_metadata hola.txt\r\n\
        quit\r\n"
        .to_vec();
    let mut answer = b"0 OK\r\nhola.txt\r\nnoise.bin\r\n\r\n".to_vec();
    answer.extend_from_slice(b"0 OK\r\nContent-Length: 150000\r\n\r\n");
    answer.extend_from_slice(&noise[1000..151_000]);
    answer.extend_from_slice(b"0 OK\r\n");
    answer.extend_from_slice(
        base64_simd::STANDARD
            .encode_to_string(&noise[7..3007])
            .as_bytes(),
    );
    answer.extend_from_slice(b"\r\n0 OK\r\n5\r\n0 OK\r\n");
    (request, answer)
}

/// Asserts `out` got exactly `expected`, showing where it first differs
/// (the bytes around it, not the whole binary answer).
fn assert_answer(out: &Output, expected: &[u8], server: &Server, what: &str) {
    let got = &out.stdout;
    if got == expected {
        return;
    }
    let at = got
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(expected.len()));
    let around = |bytes: &[u8]| {
        let from = at.saturating_sub(32).min(bytes.len());
        String::from_utf8_lossy(&bytes[from..(at + 32).min(bytes.len())]).into_owned()
    };
    panic!(
        "{what}: got {} bytes, expected {}, first difference at byte {at}: got {:?}, expected {:?}; \
         s_client exited {}; its stderr:\n{}\nserver stderr:\n{}",
        got.len(),
        expected.len(),
        around(got),
        around(expected),
        out.status,
        String::from_utf8_lossy(&out.stderr),
        server.stderr()
    );
}

/// Waits until `limit` has counted exactly `n` refusals (a refusal is
/// counted when the server gives up on the connection, which may come a
/// moment after the client saw the close); more is a failure at once.
fn wait_refused(server: &Server, limit: &str, n: u64) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let now = server.refused(limit);
        assert!(
            now <= n,
            "--model {}: {now} refusals counted as limit={limit}, expected {n}; stderr:\n{}",
            server.model(),
            server.stderr()
        );
        if now == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "--model {}: {now} refusals counted as limit={limit} after {TIMEOUT:?}, expected {n}; stderr:\n{}",
            server.model(),
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a `connection closed` line containing every one of `needles`.
fn wait_closed_line(server: &Server, needles: &[&str]) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let stderr = server.stderr();
        if let Some(line) = stderr
            .lines()
            .find(|l| l.contains("connection closed") && needles.iter().all(|n| l.contains(n)))
        {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "--model {}: no `connection closed` line with {needles:?}; stderr:\n{stderr}",
            server.model()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

per_model!(
    #[ignore = "full tier: needs openssl (apt-get install openssl)"]
    tls13_serves_byte_exact_answers
);

/// TLS 1.3, ALPN `hftp`, the server's certificate verified, and the
/// answers byte for byte; the log line names the version and suite.
fn tls13_serves_byte_exact_answers(model: &str) {
    let pki = Pki::new();
    let (dir, noise) = served();
    let server = tls_server(&pki, dir.path(), model, &[]);
    let (request, expected) = exchange(&noise);
    let out = s_client(&server, &pki, &[BRIEF], &request);
    assert_eq!(
        summary(&out, "Protocol version").as_deref(),
        Some("TLSv1.3"),
        "{}",
        shown(&out, &server)
    );
    assert_eq!(
        summary(&out, "Verification").as_deref(),
        Some("OK"),
        "{}",
        shown(&out, &server)
    );
    assert_answer(&out, &expected, &server, &format!("--model {model}"));
    assert!(out.status.success(), "{}", shown(&out, &server));
    wait_closed_line(&server, &["tls=\"TLSv1_3 TLS13_", "end=quit"]);

    // `-brief` does not name the ALPN protocol; the full summary does.
    let out = s_client(&server, &pki, &[], b"help\r\nquit\r\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for needed in [
        "New, TLSv1.3, Cipher is ",
        "ALPN protocol: hftp\n",
        "Verify return code: 0 (ok)",
        &format!("{}0 OK\r\n", support::HELP_ANSWER),
    ] {
        assert!(
            stdout.contains(needed),
            "no {needed:?}; {}",
            shown(&out, &server)
        );
    }
    assert_eq!(server.refused("tls_handshake"), 0, "--model {model}");
}

#[test]
#[ignore = "full tier: needs openssl (apt-get install openssl)"]
fn tls12_is_served() {
    let pki = Pki::new();
    let (dir, noise) = served();
    let server = tls_server(&pki, dir.path(), "async", &[]);
    let (request, expected) = exchange(&noise);
    let out = s_client(&server, &pki, &[BRIEF, "-tls1_2"], &request);
    assert_eq!(
        summary(&out, "Protocol version").as_deref(),
        Some("TLSv1.2"),
        "{}",
        shown(&out, &server)
    );
    assert_answer(&out, &expected, &server, "TLS 1.2");
    assert!(out.status.success(), "{}", shown(&out, &server));
    wait_closed_line(&server, &["tls=\"TLSv1_2 TLS_ECDHE_", "end=quit"]);
    assert_eq!(server.refused("tls_handshake"), 0);
}

/// OpenSSL 3 will not offer TLS 1.1 at its default security level: at
/// level 0 it does, so that the refusal seen is the server's (it counts
/// it; a client that refused on its own side would not even connect).
#[test]
#[ignore = "full tier: needs openssl (apt-get install openssl)"]
fn tls11_is_refused_by_the_server() {
    let pki = Pki::new();
    let (dir, _) = served();
    let server = tls_server(&pki, dir.path(), "async", &[]);
    let out = s_client(
        &server,
        &pki,
        &[BRIEF, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
        b"help\r\nquit\r\n",
    );
    assert!(!out.status.success(), "{}", shown(&out, &server));
    assert!(out.stdout.is_empty(), "{}", shown(&out, &server));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("alert"),
        "the server's alert; {}",
        shown(&out, &server)
    );
    wait_refused(&server, "tls_handshake", 1);
    wait_closed_line(&server, &["end=error: TLS handshake: "]);
    // And the server goes on serving.
    let out = s_client(&server, &pki, &[BRIEF], b"quit\r\n");
    assert_eq!(out.stdout, b"0 OK\r\n", "{}", shown(&out, &server));
}

#[test]
#[ignore = "full tier: needs openssl (apt-get install openssl)"]
fn mutual_tls_admits_only_the_ca_s_clients() {
    let pki = Pki::new();
    let (dir, noise) = served();
    let ca = pki.file("ca.pem");
    let server = tls_server(
        &pki,
        dir.path(),
        "async",
        &["--tls-client-ca", ca.to_str().unwrap()],
    );
    let (request, expected) = exchange(&noise);
    let cert = |name: &str| {
        [
            pki.file(&format!("{name}.pem")).display().to_string(),
            pki.file(&format!("{name}.key")).display().to_string(),
        ]
    };

    // The CA's client: served, and named in the log.
    let [pem, key] = cert("client");
    let out = s_client(
        &server,
        &pki,
        &[BRIEF, "-cert", &pem, "-key", &key],
        &request,
    );
    assert_answer(&out, &expected, &server, "the CA's client");
    assert!(out.status.success(), "{}", shown(&out, &server));
    let line = wait_closed_line(&server, &["end=quit"]);
    assert!(
        line.contains(&format!(" client={CLIENT_SUBJECT}\"")),
        "the log names the client's subject: {line}"
    );

    // No certificate, another CA's, an expired one: the handshake fails,
    // nothing is served, each refusal counted.
    let [stranger_pem, stranger_key] = cert("stranger");
    let [expired_pem, expired_key] = cert("expired");
    // In TLS 1.3 the client's certificate goes out after the client
    // thinks the handshake done: the server's alert (each names why) comes
    // when s_client reads.
    let refusals: [(&str, Vec<&str>, &str); 3] = [
        (
            "no client certificate",
            vec![],
            "alert certificate required",
        ),
        (
            "a certificate of another CA",
            vec!["-cert", &stranger_pem, "-key", &stranger_key],
            "alert unknown ca",
        ),
        (
            "an expired certificate",
            vec!["-cert", &expired_pem, "-key", &expired_key],
            "alert certificate expired",
        ),
    ];
    for (n, (what, args, alert)) in refusals.iter().enumerate() {
        let mut args = args.clone();
        args.insert(0, BRIEF);
        let out = s_client(&server, &pki, &args, b"help\r\nquit\r\n");
        assert!(
            out.stdout.is_empty(),
            "{what}: nothing may be served; {}",
            shown(&out, &server)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(alert),
            "{what}: the server's alert, {alert:?}; {}",
            shown(&out, &server)
        );
        wait_refused(&server, "tls_handshake", n as u64 + 1);
    }

    // TLS 1.2, where the client's certificate is checked within the
    // handshake: the same.
    let out = s_client(
        &server,
        &pki,
        &[BRIEF, "-tls1_2", "-cert", &pem, "-key", &key],
        b"quit\r\n",
    );
    assert_eq!(out.stdout, b"0 OK\r\n", "TLS 1.2: {}", shown(&out, &server));
    wait_closed_line(
        &server,
        &[
            "tls=\"TLSv1_2 TLS_ECDHE_ECDSA_WITH_",
            &format!(" client={CLIENT_SUBJECT}\""),
        ],
    );
    let out = s_client(
        &server,
        &pki,
        &[
            BRIEF,
            "-tls1_2",
            "-cert",
            &stranger_pem,
            "-key",
            &stranger_key,
        ],
        b"quit\r\n",
    );
    assert!(
        out.stdout.is_empty() && !out.status.success(),
        "TLS 1.2, another CA's certificate: {}",
        shown(&out, &server)
    );
    wait_refused(&server, "tls_handshake", 4);

    let stderr = server.stderr();
    let served: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("connection closed") && l.contains("end=quit"))
        .collect();
    assert_eq!(
        served.len(),
        2,
        "only the CA's client was served (twice):\n{stderr}"
    );
}

// Each model drives the handshake and its deadline in its own loop (or
// process): the two ways a connection can fail to begin with TLS are
// tried against every one.
mod plain_tcp {
    per_model!(
        #[ignore = "full tier: needs openssl (apt-get install openssl)"]
        super::plain_tcp_is_closed_unanswered
    );
}

mod handshake_timeout {
    per_model!(
        #[ignore = "full tier: needs openssl (apt-get install openssl)"]
        super::a_silent_connection_is_closed_at_the_handshake_timeout
    );
}

/// A client that speaks HFTP to the TLS port: its `help` is not a TLS
/// record, so it is closed (at most a TLS alert comes back, never an HFTP
/// answer), the refusal is counted, and TLS clients are still served.
fn plain_tcp_is_closed_unanswered(model: &str) {
    let pki = Pki::new();
    let (dir, _) = served();
    let server = tls_server(&pki, dir.path(), model, &[]);
    let mut s = support::connect(server.addr(), TIMEOUT);
    s.write_all(b"help\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "no close within {TIMEOUT:?}: {e} (got {got:?}); stderr:\n{}",
                server.stderr()
            ),
        }
    }
    // 0x15: a TLS alert record.
    assert!(
        got.is_empty() || got[0] == 0x15,
        "only a TLS alert may come back, got {got:?}"
    );
    assert!(
        !got.windows(2).any(|w| w == b"OK"),
        "an HFTP answer came back: {got:?}"
    );
    wait_refused(&server, "tls_handshake", 1);
    let out = s_client(&server, &pki, &[BRIEF], b"help\r\nquit\r\n");
    assert_eq!(
        out.stdout,
        format!("{}0 OK\r\n", support::HELP_ANSWER).as_bytes(),
        "{}",
        shown(&out, &server)
    );
}

/// A connection that never sends a byte holds its place only until
/// `--tls-handshake-timeout`.
fn a_silent_connection_is_closed_at_the_handshake_timeout(model: &str) {
    let pki = Pki::new();
    let (dir, _) = served();
    let server = tls_server(&pki, dir.path(), model, &["--tls-handshake-timeout", "1"]);
    let mut s = support::connect(server.addr(), TIMEOUT);
    let local = s.local_addr().unwrap();
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "not closed within {TIMEOUT:?}: {e}; stderr:\n{}",
            server.stderr()
        ),
    }
    assert!(got.is_empty(), "the server sent {got:?}");
    wait_closed_line(
        &server,
        &[
            &format!("peer=\"{local}\""),
            "end=error: TLS handshake: not complete in time",
        ],
    );
    wait_refused(&server, "tls_handshake", 1);
}

/// `-vv` logs everything the server logs; the key is never among it.
#[test]
#[ignore = "full tier: needs openssl (apt-get install openssl)"]
fn the_key_never_reaches_the_log() {
    let pki = Pki::new();
    let (dir, noise) = served();
    let ca = pki.file("ca.pem");
    let server = tls_server(
        &pki,
        dir.path(),
        "async",
        &["-vv", "--tls-client-ca", ca.to_str().unwrap()],
    );
    let (request, expected) = exchange(&noise);
    let pem = pki.file("client.pem").display().to_string();
    let key = pki.file("client.key").display().to_string();
    let out = s_client(
        &server,
        &pki,
        &[BRIEF, "-cert", &pem, "-key", &key],
        &request,
    );
    assert_answer(&out, &expected, &server, "the CA's client");
    s_client(&server, &pki, &[BRIEF], b"quit\r\n");
    wait_refused(&server, "tls_handshake", 1);
    wait_closed_line(&server, &["end=quit"]);

    let key = std::fs::read_to_string(pki.file("server.key")).unwrap();
    let body: Vec<&str> = key
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    assert!(!body.is_empty(), "the key file has a body:\n{key}");
    let logged = format!("{}\n{}", server.stdout().join("\n"), server.stderr());
    assert!(
        logged.lines().count() > 5,
        "-vv logged next to nothing:\n{logged}"
    );
    for line in body.iter().chain([&body.concat().as_str()]) {
        assert!(
            !logged.contains(line),
            "a line of the key is in the log: {line}\n{logged}"
        );
    }
}

// The conformance suite over TLS, against every model: `hftp check --tls`
// runs every case of the spec through a TLS connection of its own.
mod conformance_over_tls {
    per_model!(
        #[ignore = "full tier: needs openssl (apt-get install openssl)"]
        super::the_conformance_suite_passes_over_tls
    );
}

fn the_conformance_suite_passes_over_tls(model: &str) {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let server = tls_server(&pki, dir.path(), model, &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_hftp"))
        .args(["check", "--tls", "--cacert"])
        .arg(pki.file("ca.pem"))
        .arg(format!("localhost:{}", server.addr().port()))
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "--model {model}: hftp check --tls\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = report.lines().last().unwrap_or_default();
    assert!(last.contains(" 0 failed"), "--model {model}:\n{report}");
}

// A TLS client that leaves in the middle of a long answer: the server must
// close the connection (not keep trying to send the records it had
// encrypted), log it, and go on serving, in every model.
mod vanishing_client {
    per_model!(
        #[ignore = "full tier: needs openssl (apt-get install openssl)"]
        super::a_client_leaving_mid_answer_is_closed_and_others_are_served
    );
}

fn a_client_leaving_mid_answer_is_closed_and_others_are_served(model: &str) {
    use hftp_client::{Endpoint, Tls, Trust};
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let big = std::fs::File::create(dir.path().join("big.bin")).unwrap();
    big.set_len(32 << 20).unwrap();
    let server = tls_server(&pki, dir.path(), model, &[]);
    let endpoint = Endpoint::parse(&format!("localhost:{}", server.addr().port()))
        .unwrap()
        .with_tls(Some(
            Tls::new().with_trust(Trust::CaFile(pki.file("ca.pem"))),
        ));
    for round in 0..3 {
        let mut s = endpoint.open_stream().unwrap();
        s.write_all(b"get_slice big.bin 0 33554432\r\n").unwrap();
        let mut head = [0u8; 6];
        s.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"0 OK\r\n", "--model {model}, round {round}");
        drop(s);
    }
    server.wait_stderr("end=client closed", TIMEOUT);
    // Still serving: a new client gets its answer.
    let mut s = endpoint.open_stream().unwrap();
    s.write_all(b"get_metadata big.bin\r\n").unwrap();
    let mut answer = [0u8; 16];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"0 OK\r\n33554432\r\n", "--model {model}");
}
