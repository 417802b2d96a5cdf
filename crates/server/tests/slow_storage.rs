//! A storage call that does not return must not delay another client: the
//! server runs in this process (so the test controls its store), on real
//! loopback sockets, for every model that can run inside a test process
//! (`fork` cannot: it forks a multi-threaded process; there every client
//! has its own process, so one client's storage call cannot hold another).
//!
//! The store holds a call for the name `slow` until the test releases it,
//! so the test needs no timing: client A asks for `slow`, the test waits
//! until the store has the call, then client B's `help` must be answered
//! while A's call is still held.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use hftp_server::session::SessionConfig;
use hftp_server::storage::{HeldStore, LocalDir};
use hftp_server::{Config, Model};

/// A bound on every wait, so that a regression fails instead of hanging.
const HANG: Duration = Duration::from_secs(60);

fn start(model: Model, store: Arc<HeldStore>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = Config {
        session: SessionConfig {
            storage: store,
            max_line: hftp_proto::DEFAULT_MAX_LINE,
        },
        model,
        // One worker: the pool must not need a second one to stay live.
        workers: 1,
        max_connections: 100,
        max_per_ip: 0,
        idle_timeout: HANG,
        write_timeout: HANG,
        shutdown_grace: Duration::from_secs(1),
        metrics: None,
        proxy_protocol: None,
        tls: None,
        address_rules: Default::default(),
        limit_rate: None,
    };
    let (ready_tx, ready) = mpsc::channel();
    std::thread::spawn(move || {
        let on_ready = Box::new(move || {
            let _ = ready_tx.send(());
        });
        // Runs until the test process exits.
        let _ = hftp_server::serve(config, vec![listener], on_ready);
    });
    ready.recv_timeout(HANG).expect("server ready");
    port
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(HANG)).unwrap();
    s
}

fn read_exactly(s: &mut TcpStream, n: usize) -> String {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).expect("answer");
    String::from_utf8(buf).unwrap()
}

fn held_call_does_not_delay_others(model: Model) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("slow"), b"12345").unwrap();
    let store = Arc::new(HeldStore::new(
        LocalDir::new(dir.path(), false).unwrap(),
        "slow",
    ));
    let port = start(model, Arc::clone(&store));

    let mut a = connect(port);
    a.write_all(b"get_metadata slow\r\n").unwrap();
    assert!(
        store.wait_held(HANG),
        "{model}: the store never got the call"
    );

    let mut b = connect(port);
    b.write_all(b"help\r\nget_slice slow 0 2\r\n").unwrap();
    let help = "0 OK\r\nget_file_listing\r\nget_metadata\r\nget_slice\r\nhelp\r\nquit\r\n\r\n";
    assert_eq!(
        read_exactly(&mut b, help.len()),
        help,
        "{model}: help while A waits"
    );
    // B's own storage call is held too; A's still is.
    store.release();
    assert_eq!(
        read_exactly(&mut a, 9),
        "0 OK\r\n5\r\n",
        "{model}: A answered"
    );
    assert_eq!(
        read_exactly(&mut b, 12),
        "0 OK\r\nMTI=\r\n",
        "{model}: B answered"
    );
}

#[test]
fn async_model() {
    held_call_does_not_delay_others(Model::Async);
}

#[test]
fn threads_model() {
    held_call_does_not_delay_others(Model::Threads);
}

#[test]
fn pool_model() {
    held_call_does_not_delay_others(Model::Pool);
}

#[test]
fn poll_model() {
    held_call_does_not_delay_others(Model::Poll);
}

#[test]
fn uring_model() {
    held_call_does_not_delay_others(Model::Uring);
}
