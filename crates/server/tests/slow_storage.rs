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
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use hftp_proto::{FileName, Range};
use hftp_server::session::SessionConfig;
use hftp_server::storage::{ListPage, LocalDir, RangeReader, Storage, StorageError};
use hftp_server::{Config, Model};

/// A bound on every wait, so that a regression fails instead of hanging.
const HANG: Duration = Duration::from_secs(60);

struct HeldStore {
    files: LocalDir,
    /// Calls for `slow` held now, and whether they may go on.
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

impl HeldStore {
    fn hold(&self, name: &FileName) {
        if name.as_str() != "slow" {
            return;
        }
        let mut state = self.state.lock().unwrap();
        state.0 += 1;
        self.changed.notify_all();
        while !state.1 {
            state = self.changed.wait(state).unwrap();
        }
        state.0 -= 1;
    }

    fn wait_held(&self) {
        let state = self.state.lock().unwrap();
        let (state, timeout) = self
            .changed
            .wait_timeout_while(state, HANG, |s| s.0 == 0)
            .unwrap();
        assert!(
            !timeout.timed_out() && state.0 == 1,
            "the store never got the call"
        );
    }

    fn release(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

impl Storage for HeldStore {
    fn backend(&self) -> &'static str {
        "test"
    }
    fn list_page(&self, cursor: Option<&str>) -> Result<ListPage, StorageError> {
        self.files.list_page(cursor)
    }
    fn size(&self, name: &FileName) -> Result<u64, StorageError> {
        self.hold(name);
        self.files.size(name)
    }
    fn open_range(
        &self,
        name: &FileName,
        range: Range,
    ) -> Result<Box<dyn RangeReader>, StorageError> {
        self.hold(name);
        self.files.open_range(name, range)
    }
    fn may_block(&self) -> bool {
        true
    }
}

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
    let store = Arc::new(HeldStore {
        files: LocalDir::new(dir.path(), false).unwrap(),
        state: Mutex::new((0, false)),
        changed: Condvar::new(),
    });
    let port = start(model, Arc::clone(&store));

    let mut a = connect(port);
    a.write_all(b"get_metadata slow\r\n").unwrap();
    store.wait_held();

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
