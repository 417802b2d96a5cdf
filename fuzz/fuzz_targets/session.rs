//! Fuzz target: the whole connection state machine
//! (`hftp_server::connection::Connection` over a real directory).
//!
//! The connection is driven the way the drivers drive it (storage steps run
//! inline, `sendfile` replaced by `pread`), over fuzzer-chosen fragments of
//! a client stream, against a served directory with regular
//! files, links inside and escaping, a FIFO and a sub-directory. The bytes it
//! produces (inline answers and streamed slice bodies) must be exactly the
//! spec's answers to the requests the naive spec model finds in the stream,
//! in order, and nothing after `quit` or a fatal error; the close must come
//! exactly there, for the right reason; a session closed by a fatal error
//! must stay silent whatever else arrives.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hftp_fuzz::{oracle, FuzzInput, Served};
use hftp_proto::{Event, Request};
use hftp_server::connection::{Action, Connection, End};
use hftp_server::session::{CloseReason, SessionConfig};
use hftp_server::storage::{LocalDir, Storage};
use hftp_server::{Config, Model};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    served: Served,
    storage: Arc<LocalDir>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let served = Served::create();
        let storage = Arc::new(LocalDir::new(&served.root, false).expect("served dir"));
        Fixture { served, storage }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = FuzzInput::parse(data) else {
        return;
    };
    let fixture = fixture();
    let storage: Arc<dyn Storage> = fixture.storage.clone();
    let config = Config {
        session: SessionConfig {
            storage: Arc::clone(&storage),
            max_line: input.max_line,
        },
        model: Model::Poll,
        workers: 1,
        max_connections: 1,
        max_per_ip: 0,
        idle_timeout: Duration::from_secs(60),
        write_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(1),
        metrics: None,
    };
    let now = Instant::now();
    let mut conn = Connection::new(&config, None, now);

    // Drive the connection as a driver does.
    let mut out = Vec::new();
    let mut pieces = input.pieces().into_iter();
    let mut write_shut = false;
    let mut steps = 0u64;
    let closed = loop {
        steps += 1;
        assert!(steps < 10_000_000, "the connection does not settle");
        match conn.poll() {
            Action::Send(bytes) => {
                out.extend_from_slice(bytes);
                let n = bytes.len();
                conn.sent(n, now);
            }
            Action::SendFile { fd, offset, len } => {
                let mut buf = vec![0u8; len];
                // SAFETY: a plain pread into a buffer of `len` bytes.
                let n = unsafe {
                    libc::pread(
                        std::os::fd::AsRawFd::as_raw_fd(&fd),
                        buf.as_mut_ptr().cast(),
                        len,
                        offset as libc::off_t,
                    )
                };
                assert!(n > 0, "sendfile source of an unchanged file");
                out.extend_from_slice(&buf[..n as usize]);
                conn.sent(n as usize, now);
            }
            Action::Storage(step) => {
                let reply = step.run(&*storage);
                conn.storage_done(reply, now);
            }
            Action::ShutdownWrite => {
                assert!(!write_shut, "shut down twice");
                write_shut = true;
                conn.write_shut(true, now);
            }
            Action::Receive => match pieces.next() {
                Some(piece) => conn.handle_input(piece, now),
                None => conn.handle_eof(now),
            },
            Action::Yield => {}
            Action::Park => panic!("parked with storage run inline"),
            Action::Close(end) => break end,
        }
    };
    // Whatever came after the close is never answered: the connection is
    // gone, and `out` holds everything it ever sent.
    let closed = match closed {
        End::Closed(reason) => {
            assert!(write_shut, "closed after {reason} without shutting down writing");
            Some(reason)
        }
        End::ClientClosed => None,
        other => panic!("unexpected end {other:?}"),
    };

    // What the spec says.
    let mut expected = Vec::new();
    let mut expected_close = None;
    let mut answered = 0u64;
    for (_, event) in oracle::scan(input.stream, input.max_line) {
        answered += 1;
        if fixture.served.answer(&event, &mut expected) {
            expected_close = Some(match event {
                Event::Fatal(status) => CloseReason::Fatal(status),
                Event::Request(Request::Quit) => CloseReason::Quit,
                other => panic!("model closes after {other:?}"),
            });
            break;
        }
    }
    if out != expected {
        panic!(
            "answers differ from the spec\n got: {:?}\nwant: {:?}",
            String::from_utf8_lossy(&out[..out.len().min(400)]),
            String::from_utf8_lossy(&expected[..expected.len().min(400)])
        );
    }
    assert_eq!(closed, expected_close, "close reason");
    assert_eq!(conn.requests(), answered, "requests counted");
});
