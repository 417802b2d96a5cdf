//! The examples in the libraries' documentation, run for real: the pure
//! ones as written, the ones that need a server (`no_run` in the docs)
//! against `hftp serve`. Doc tests are off (`doctest = false` in each
//! library) so that `cargo test --workspace` ends with the tiers line; an
//! example changed in the docs is changed here too.
//!
//! Tier: quick.

use std::path::Path;

use crate::support::Server;

const HOLA: &[u8] = b"Que calor que hace hoy, pinocho!";

fn served() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("hola.txt"), HOLA).expect("hola.txt");
    std::fs::write(dir.path().join("a.txt"), b"abc").expect("a.txt");
    std::fs::write(
        dir.path().join("big.iso"),
        crate::support::noise(3 << 20, 7),
    )
    .expect("big.iso");
    dir
}

/// hftp-proto, the crate's front page.
#[test]
fn proto_scanner() {
    use hftp_proto::{Event, Request, Scanner};

    let mut scanner = Scanner::default();
    let (used, event) = scanner.feed(b"help\r\nquit\r\n");
    assert_eq!((used, event), (6, Some(Event::Request(Request::Help))));
}

/// hftp-proto, `reply`'s front page.
#[test]
fn proto_reply_decoder() {
    use hftp_proto::reply::{Expect, Reply, ReplyDecoder};
    use hftp_proto::SliceMode;

    let mut dec = ReplyDecoder::new(Expect::Slice {
        mode: SliceMode::Base64,
        size: 19,
    });
    let mut body = Vec::new();
    let wire = b"0 OK\r\nY2Fsb3IgcXVlIGhhY2UgaG95LA==\r\n";
    let (used, reply) = dec.feed(&wire[..11], &mut body).unwrap();
    assert_eq!((used, reply), (11, None));
    let (used, reply) = dec.feed(&wire[11..], &mut body).unwrap();
    assert_eq!(
        (used, reply),
        (wire.len() - 11, Some(Reply::Slice { len: 19 }))
    );
    assert_eq!(body, b"calor que hace hoy,");
}

/// hftp-proto, `ReplyDecoder::take_lines`.
#[test]
fn proto_take_lines() {
    use hftp_proto::reply::{Expect, Reply, ReplyDecoder};
    let mut dec = ReplyDecoder::new(Expect::Listing);
    let (_, reply) = dec
        .feed(b"0 OK\r\na.txt\r\nb.txt\r\n", &mut Vec::new())
        .unwrap();
    assert_eq!(
        (reply, dec.take_lines()),
        (None, vec!["a.txt".to_owned(), "b.txt".to_owned()])
    );
    let (_, reply) = dec.feed(b"c.txt\r\n\r\n", &mut Vec::new()).unwrap();
    assert_eq!(reply, Some(Reply::Lines(vec!["c.txt".to_owned()])));
}

/// hftp-client, `glob_match`.
#[test]
fn client_glob_match() {
    use hftp_client::glob_match;
    assert!(glob_match("*.txt", "hola.txt"));
    assert!(glob_match("f?to.*", "foto.png"));
    assert!(!glob_match("*.txt", "hola.txt.bak"));
    assert!(glob_match("*", ".hidden"));
}

/// hftp-client, `Proxy::parse`.
#[test]
fn client_proxy_parse() {
    let p = hftp_client::Proxy::parse("socks5h://127.0.0.1:9050").unwrap();
    assert!(p.remote_dns);
    assert_eq!(p.port, 9050);
}

/// hftp-client, the crate's front page.
#[test]
fn client_front_page() -> hftp_client::Result<()> {
    use hftp_client::Endpoint;
    let dir = served();
    let server = Server::builder(dir.path()).start();

    let mut client = Endpoint::parse(&server.target())?.connect()?;
    let mut sizes = Vec::new();
    for name in client.list()? {
        sizes.push((client.metadata(&name)?, name));
    }
    let mut first_bytes = Vec::new();
    client.slice_to("hola.txt", 0, 5, &mut first_bytes)?;
    client.quit()?;

    assert_eq!(
        sizes,
        [
            (3, "a.txt".to_string()),
            (3 << 20, "big.iso".to_string()),
            (HOLA.len() as u64, "hola.txt".to_string())
        ]
    );
    assert_eq!(first_bytes, &HOLA[..5]);
    Ok(())
}

/// hftp-client, `Client::connect`.
#[test]
fn client_connect() -> hftp_client::Result<()> {
    let dir = served();
    let server = Server::builder(dir.path()).start();
    let mut client = hftp_client::Client::connect(&server.target())?;
    assert_eq!(client.list()?, ["a.txt", "big.iso", "hola.txt"]);
    Ok(())
}

/// hftp-client, `download`.
#[test]
fn client_download() -> hftp_client::Result<()> {
    use hftp_client::{download, DownloadOptions, Endpoint, NoProgress};
    let dir = served();
    let server = Server::builder(dir.path()).start();
    let out = tempfile::tempdir().expect("temp dir");
    let dest = out.path().join("big.iso");

    let endpoint = Endpoint::parse(&server.target())?;
    let mut client = endpoint.connect()?;
    let opts = DownloadOptions {
        jobs: 4,
        ..DownloadOptions::default()
    };
    let done = download(&mut client, &endpoint, "big.iso", &dest, &opts, &NoProgress)?;

    assert_eq!(done.size, 3 << 20);
    assert_eq!(
        std::fs::read(&dest).expect("downloaded"),
        std::fs::read(dir.path().join("big.iso")).expect("served")
    );
    Ok(())
}

/// hftp-bench, the crate's front page (fewer requests).
#[test]
fn bench_front_page() {
    use hftp_bench::{run, Config, Stop};
    let dir = served();
    let server = Server::builder(dir.path()).start();
    let cfg = Config {
        workload: "metadata:a.txt".parse().unwrap(),
        conns: 64,
        stop: Stop::Requests(2_000),
        ..Config::new(server.addr())
    };
    let report = run(&cfg, Default::default()).unwrap();
    assert_eq!(report.requests, 2_000, "{}", report.to_text());
    assert!(report.error_kinds.is_empty(), "{}", report.to_text());
}

/// hftp-check, the crate's front page: every case that needs no fixture
/// passes against `hftp serve`.
#[test]
fn check_front_page() {
    let dir = served();
    let server = Server::builder(Path::new(dir.path())).start();
    let config = hftp_check::Config::new(server.addr());
    let cases = hftp_check::cases::all();
    let selection: Vec<_> = cases.iter().collect();
    let mut lines = Vec::new();
    let results = hftp_check::run(&config, &selection, |r| {
        lines.push(hftp_check::report::text(r))
    })
    .unwrap();
    let summary = hftp_check::Summary::of(&results);
    assert!(
        !results
            .iter()
            .any(|r| matches!(r.outcome, hftp_check::Outcome::Fail(_))),
        "{summary}\n{}",
        lines.join("\n")
    );
    assert_eq!(lines.len(), results.len());
}
