//! Fuzz target: the whole connection state machine
//! (`hftp_server::session::Session` over a real directory).
//!
//! The session is driven the way the drivers drive it, over fuzzer-chosen
//! fragments of a client stream, against a served directory with regular
//! files, links inside and escaping, a FIFO and a sub-directory. The bytes it
//! produces (inline answers and streamed slice bodies) must be exactly the
//! spec's answers to the requests the naive spec model finds in the stream,
//! in order, and nothing after `quit` or a fatal error; the close must come
//! exactly there, for the right reason; a session closed by a fatal error
//! must stay silent whatever else arrives.
#![no_main]

use std::sync::{Arc, OnceLock};

use hftp_fuzz::{oracle, FuzzInput, Served};
use hftp_proto::{Event, Request};
use hftp_server::session::{CloseReason, Outcome, Session, SessionConfig};
use hftp_server::storage::LocalDir;
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
    let config = SessionConfig {
        storage: fixture.storage.clone(),
        max_line: input.max_line,
    };
    let mut session = Session::new(&config);

    // Drive the session as a driver does.
    let mut out = Vec::new();
    let mut closed = None;
    let mut leftover: Vec<u8> = Vec::new();
    for piece in input.pieces() {
        if closed.is_some() {
            leftover.extend_from_slice(piece);
            continue;
        }
        let mut rest = piece;
        while !rest.is_empty() {
            let (used, outcome) = session.on_input(rest, &mut out);
            assert!(
                used > 0 && used <= rest.len(),
                "on_input consumed {used} of {}",
                rest.len()
            );
            rest = &rest[used..];
            match outcome {
                Outcome::NeedInput => assert!(rest.is_empty(), "NeedInput with input left"),
                Outcome::Replied => {}
                Outcome::Stream(mut body) => {
                    // As the blocking drivers do without sendfile: fill until
                    // the body says it is complete (its tail included).
                    let mut pieces = 0;
                    while !body
                        .fill(&mut out)
                        .expect("slice body of an unchanged file")
                    {
                        pieces += 1;
                        assert!(pieces < 1000, "slice body does not end");
                    }
                    assert!(body.is_complete());
                }
                Outcome::Close(reason) => {
                    closed = Some(reason);
                    leftover.extend_from_slice(rest);
                    break;
                }
            }
        }
    }

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
    assert_eq!(session.requests, answered, "requests counted");

    // After a fatal error the session must never answer again.
    if let Some(CloseReason::Fatal(_)) = closed {
        let mut after = Vec::new();
        let (used, outcome) = session.on_input(&leftover, &mut after);
        assert_eq!(used, leftover.len());
        assert!(
            matches!(outcome, Outcome::NeedInput),
            "{outcome:?} after a fatal error"
        );
        assert!(after.is_empty(), "answered after a fatal error");
    }
});
