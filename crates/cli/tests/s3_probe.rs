//! `hftp serve --storage s3://...` checks its bucket before it listens:
//! without credentials it exits 1 naming the variables to set, before any
//! request (the EC2 metadata service is asked only with
//! `--s3-instance-credentials`); a store that cannot be reached, a missing
//! bucket and a refused key each exit 1 with one line saying what to fix,
//! no secret in it; `--s3-start-anyway` serves regardless, in every model.
//!
//! Every server here runs with no `AWS_*` or `HFTP_*` variable but those
//! the test sets, and every endpoint is on loopback: nothing leaves the host.
//!
//! Tier: quick, but for the checks against a real store (bucket missing,
//! access denied, a healthy bucket), full (each marked `#[ignore = "full
//! tier: ..."]`): they need Garage 2.5.0.

use crate::support;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::support::garage;
use hftp_check::fixtures::FixtureSink;

/// A bound on a server's start (the probe itself gives up after 5 s).
const STARTUP: Duration = Duration::from_secs(60);
/// A bound on any answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A secret that must never appear in what the server prints.
const SECRET: &str = "pr0be-s3cr3t-never-printed-0123456789";
/// A key id (the backend treats it as a secret too).
const KEY_ID: &str = "GK0000aaaa1111bbbb2222cccc";

/// What became of `hftp serve`.
enum Outcome {
    Exited { code: Option<i32>, stderr: String },
    Listening(Running),
}

/// A server that printed `listening on ADDR`; killed when dropped.
struct Running {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<u8>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The whole answer to `request` (the connection closed after it by
    /// `quit`, or by the server after a `199`).
    fn ask(&self, request: &str) -> String {
        let mut stream = support::connect(self.addr, TIMEOUT);
        support::ask(&mut stream, format!("{request}\r\nquit\r\n").as_bytes())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        for thread in self.threads.drain(..) {
            thread.join().ok();
        }
    }
}

/// Starts `hftp serve --storage STORAGE -p 0 -a 127.0.0.1 ARGS` with only
/// the variables of `env` among `AWS_*`, `HFTP_*` and `RUST_LOG`, and
/// waits until it listens or exits.
fn serve(storage: &str, env: &[(&str, &str)], args: &[&str]) -> Outcome {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hftp"));
    command
        .args(["serve", "--storage", storage, "-p", "0", "-a", "127.0.0.1"])
        .args(args);
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("AWS_") || name.starts_with("HFTP_") || name == "RUST_LOG" {
            command.env_remove(&key);
        }
    }
    command
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = support::tied::spawn(command).expect("start hftp serve");
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let stderr_thread = {
        let (sink, mut pipe) = (Arc::clone(&stderr), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let (lines_tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let stdout_thread = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            lines_tx.send(line).ok();
        }
    });
    loop {
        match lines.recv_timeout(STARTUP) {
            Ok(line) => {
                let addr = line
                    .strip_prefix("listening on ")
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|addr| addr.parse().ok());
                if let Some(addr) = addr {
                    return Outcome::Listening(Running {
                        child,
                        addr,
                        stderr,
                        threads: vec![stdout_thread, stderr_thread],
                    });
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().expect("wait");
                stderr_thread.join().ok();
                stdout_thread.join().ok();
                let stderr = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
                return Outcome::Exited {
                    code: status.code(),
                    stderr,
                };
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                child.kill().ok();
                child.wait().ok();
                panic!(
                    "hftp serve --storage {storage} neither listened nor exited within {STARTUP:?}"
                );
            }
        }
    }
}

/// The one line `hftp serve` printed before it exited 1.
fn exits_1(storage: &str, env: &[(&str, &str)], args: &[&str]) -> String {
    match serve(storage, env, args) {
        Outcome::Exited { code, stderr } => {
            assert_eq!(
                code,
                Some(1),
                "exit status of serve {args:?}; stderr:\n{stderr}"
            );
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "one line on stderr, got:\n{stderr}");
            assert!(
                lines[0].starts_with(&format!("hftp: cannot serve {storage}: ")),
                "{stderr}"
            );
            for secret in [SECRET, KEY_ID, garage::SECRET] {
                assert!(
                    !stderr.contains(secret),
                    "a credential was printed:\n{stderr}"
                );
            }
            eprintln!("serve {args:?} said: {}", lines[0]);
            lines[0].to_string()
        }
        Outcome::Listening(server) => panic!(
            "serve {args:?} started although it should have refused; stderr:\n{}",
            server.stderr()
        ),
    }
}

/// A loopback port nothing listens on (free a moment ago).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether anything connected to `listener` (it is never accepted from
/// while the server runs: a connection waits in its backlog).
fn connected(listener: &TcpListener) -> Option<TcpStream> {
    listener.set_nonblocking(true).unwrap();
    match listener.accept() {
        Ok((stream, _)) => Some(stream),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(e) => panic!("accept: {e}"),
    }
}

/// A store endpoint on loopback, with a key, plain http.
fn store_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_REGION", "garage".into()),
        ("AWS_ACCESS_KEY_ID", KEY_ID.into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
    ]
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn without_credentials_serve_exits_1_naming_the_variables_and_asks_nothing() {
    // Where the store and the metadata service would be: listening, so
    // that any request would be seen.
    let store = TcpListener::bind("127.0.0.1:0").unwrap();
    let metadata = TcpListener::bind("127.0.0.1:0").unwrap();
    let store_url = format!("http://{}", store.local_addr().unwrap());
    let metadata_url = format!("http://{}", metadata.local_addr().unwrap());
    let base = [
        ("AWS_ENDPOINT_URL", store_url.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", "garage"),
        ("AWS_METADATA_ENDPOINT", metadata_url.as_str()),
    ];
    // Empty variables (a template of settings) are no credentials either.
    let empty = [
        base.as_slice(),
        &[("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")],
    ]
    .concat();
    for (env, args) in [
        (&base[..], &[][..]),
        (&empty[..], &[]),
        // Starting anyway is for a store that comes up later: credentials
        // do not.
        (&base[..], &["--s3-start-anyway"]),
    ] {
        let line = exits_1("s3://files/public", env, args);
        assert!(
            line.contains("no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
                && line.contains("--s3-instance-credentials"),
            "{line}"
        );
    }
    assert!(connected(&store).is_none(), "the store was asked");
    assert!(
        connected(&metadata).is_none(),
        "the instance metadata service was asked"
    );
}

#[test]
fn half_a_key_names_the_missing_variable() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    for (set, value, missing) in [
        ("AWS_ACCESS_KEY_ID", KEY_ID, "AWS_SECRET_ACCESS_KEY"),
        ("AWS_SECRET_ACCESS_KEY", SECRET, "AWS_ACCESS_KEY_ID"),
    ] {
        let env = [("AWS_ENDPOINT_URL", endpoint.as_str()), (set, value)];
        let line = exits_1("s3://files", &env, &[]);
        assert!(
            line.ends_with(&format!(
                "no credentials: {set} is set but {missing} is not (set both)"
            )),
            "{line}"
        );
    }
}

#[test]
fn an_unreachable_store_exits_1_naming_the_endpoint_variable() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    // Both spellings object_store reads; the line names the one set.
    for variable in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"] {
        let mut env = store_env(&endpoint);
        env[0].0 = variable;
        let line = exits_1("s3://files/public", &borrowed(&env), &[]);
        assert_eq!(
            line,
            format!(
                "hftp: cannot serve s3://files/public: the store at {endpoint} cannot be \
                 reached (Connection refused (os error 111)): check {variable}"
            )
        );
    }
}

#[test]
fn instance_credentials_are_asked_for_only_when_allowed() {
    // A metadata service that never answers: the request waits in its
    // socket, and the probe gives up after its bound.
    let metadata = TcpListener::bind("127.0.0.1:0").unwrap();
    let metadata_url = format!("http://{}", metadata.local_addr().unwrap());
    let store = format!("http://127.0.0.1:{}", closed_port());
    let env = [
        ("AWS_ENDPOINT_URL", store.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_METADATA_ENDPOINT", metadata_url.as_str()),
        ("HFTP_S3_INSTANCE_CREDENTIALS", "true"),
    ];
    let line = exits_1("s3://files", &env, &[]);
    assert_eq!(
        line,
        format!(
            "hftp: cannot serve s3://files: cannot get credentials from the EC2 instance \
             metadata service (--s3-instance-credentials) at {metadata_url}: no answer within 5 s"
        )
    );
    let mut asked = connected(&metadata).expect("the metadata service was not asked");
    asked.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut request = [0u8; 64];
    let n = asked.read(&mut request).unwrap();
    assert!(
        request[..n].starts_with(b"PUT /latest/api/token HTTP/1.1\r\n"),
        "{:?}",
        String::from_utf8_lossy(&request[..n])
    );
}

#[test]
fn unsigned_requests_need_no_credentials_and_never_ask_the_metadata_service() {
    let metadata = TcpListener::bind("127.0.0.1:0").unwrap();
    let metadata_url = format!("http://{}", metadata.local_addr().unwrap());
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_SKIP_SIGNATURE", "true"),
        ("AWS_METADATA_ENDPOINT", metadata_url.as_str()),
    ];
    // A public bucket: no credentials needed, so the store is what fails.
    let line = exits_1("s3://public", &env, &[]);
    assert!(line.contains("cannot be reached"), "{line}");
    // Served anyway, a raw slice (presigned when spliced) is 199 without
    // a credential asked for anywhere.
    let server = match serve("s3://public", &env, &["--s3-start-anyway"]) {
        Outcome::Listening(server) => server,
        Outcome::Exited { code, stderr } => panic!("serve exited ({code:?}):\n{stderr}"),
    };
    assert!(
        server
            .ask("get_slice hola.txt 0 4 raw")
            .starts_with("199 INTERNAL SERVER ERROR\r\n"),
        "{}",
        server.stderr()
    );
    drop(server);
    assert!(
        connected(&metadata).is_none(),
        "the instance metadata service was asked"
    );
}

/// With `--s3-start-anyway` (or `HFTP_S3_START_ANYWAY`), a store that
/// cannot be reached is a warning: the server listens, answers `help`,
/// answers `199` what needs the store, and the `fork` model's parent
/// still has a single thread (the probe left none).
fn starts_anyway(model: &str) {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let mut env = store_env(&endpoint);
    let mut args = vec!["--model", model];
    if model == "poll" {
        env.push(("HFTP_S3_START_ANYWAY", "true".into()));
    } else {
        args.push("--s3-start-anyway");
    }
    let server = match serve("s3://files/anyway", &borrowed(&env), &args) {
        Outcome::Listening(server) => server,
        Outcome::Exited { code, stderr } => {
            panic!("model {model}: serve exited ({code:?}) despite --s3-start-anyway:\n{stderr}")
        }
    };
    if model == "fork" {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
        assert!(
            status.lines().any(|l| l == "Threads:\t1"),
            "the fork model's parent must stay single-threaded after the probe:\n{status}"
        );
    }
    assert_eq!(
        server.ask("help"),
        format!("{}0 OK\r\n", support::HELP_ANSWER),
        "model {model}"
    );
    assert!(
        server
            .ask("get_metadata hola.txt")
            .starts_with("199 INTERNAL SERVER ERROR\r\n"),
        "model {model}"
    );
    let stderr = server.stderr();
    assert!(
        stderr.contains(&format!(
            "s3://files/anyway: the store at {endpoint} cannot be reached \
             (Connection refused (os error 111)): check AWS_ENDPOINT_URL; serving anyway \
             (--s3-start-anyway)"
        )),
        "model {model}: the warning names the cause:\n{stderr}"
    );
    assert!(
        stderr.contains("WARN"),
        "model {model}: a warning:\n{stderr}"
    );
    for secret in [SECRET, KEY_ID] {
        assert!(
            !stderr.contains(secret),
            "model {model}: a credential was logged:\n{stderr}"
        );
    }
}

mod start_anyway_serves_in_every_model {
    per_model!(super::starts_anyway);
}

/// The environment that reaches node 0 of the shared cluster, with
/// `replace` overriding some of it.
fn cluster_env(replace: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    garage::shared()
        .env(0)
        .into_iter()
        .map(|(key, value)| {
            let value = replace
                .iter()
                .find(|(k, _)| *k == key)
                .map_or(value, |(_, v)| v.to_string());
            (key, value)
        })
        .collect()
}

#[test]
#[ignore = "full tier: needs Garage 2.5.0 (cargo install garage)"]
fn a_missing_bucket_exits_1_naming_it() {
    let _load = garage::light_load();
    let env = cluster_env(&[]);
    let endpoint = garage::shared().endpoint(0);
    let line = exits_1("s3://no-such-bucket/files", &borrowed(&env), &[]);
    assert_eq!(
        line,
        format!(
            "hftp: cannot serve s3://no-such-bucket/files: bucket no-such-bucket does not \
             exist at {endpoint}: create it (`garage bucket create no-such-bucket`, \
             `aws s3 mb s3://no-such-bucket`) or name an existing one in --storage"
        )
    );
}

#[test]
#[ignore = "full tier: needs Garage 2.5.0 (cargo install garage)"]
fn a_refused_key_exits_1_naming_the_key_variables() {
    let _load = garage::light_load();
    let storage = format!("s3://{}/files", garage::BUCKET);
    // A wrong secret, and a key the store does not know.
    for replace in [
        [("AWS_SECRET_ACCESS_KEY", SECRET)],
        [("AWS_ACCESS_KEY_ID", KEY_ID)],
    ] {
        let env = cluster_env(&replace);
        let line = exits_1(&storage, &borrowed(&env), &[]);
        assert!(
            line.starts_with(&format!(
                "hftp: cannot serve {storage}: access denied (403 "
            )),
            "{line}"
        );
        assert!(
            line.ends_with(&format!(
                "check that AWS_ACCESS_KEY_ID names a key of the store, that \
                 AWS_SECRET_ACCESS_KEY is its secret, and that the key may read bucket {}",
                garage::BUCKET
            )),
            "{line}"
        );
    }
}

/// A healthy bucket: the server starts at once, says nothing of the probe,
/// and serves.
fn healthy(model: &str) {
    let _load = garage::light_load();
    let cluster = garage::shared();
    let prefix = format!("probe-{model}");
    let bucket = support::bucket::Bucket::new(cluster, &cluster.endpoint(0), &prefix);
    bucket.put("hola.txt", b"hola").unwrap();
    let env = cluster_env(&[]);
    let storage = format!("s3://{}/{prefix}", garage::BUCKET);
    let server = match serve(&storage, &borrowed(&env), &["--model", model]) {
        Outcome::Listening(server) => server,
        Outcome::Exited { code, stderr } => {
            panic!("model {model}: serve exited ({code:?}) on a healthy bucket:\n{stderr}")
        }
    };
    assert_eq!(
        server.ask("get_metadata hola.txt"),
        "0 OK\r\n4\r\n0 OK\r\n",
        "model {model}"
    );
    let stderr = server.stderr();
    assert!(!stderr.contains("WARN"), "model {model}: {stderr}");
    if model == "fork" {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
        assert!(status.lines().any(|l| l == "Threads:\t1"), "{status}");
    }
}

mod a_healthy_bucket_starts_in_every_model {
    per_model!(
        #[ignore = "full tier: needs Garage 2.5.0 (cargo install garage)"]
        super::healthy
    );
}
