//! Fuzz target: the request scanner (`hftp_proto::Scanner`).
//!
//! For every input it checks that
//! - the scanner never panics and keeps its `feed` contract (consumes at
//!   least one and at most all bytes; stops early only at an event; after a
//!   fatal event swallows everything and reports nothing);
//! - the stream cut at fuzzer-chosen points, fed whole, and fed one byte at
//!   a time gives the same events at the same stream offsets;
//! - those events are exactly what the naive spec model (`oracle`) says.
#![no_main]

use hftp_fuzz::{oracle, FuzzInput};
use hftp_proto::Scanner;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = FuzzInput::parse(data) else {
        return;
    };
    let stream = input.stream;

    let whole = oracle::feed_in_pieces(&mut Scanner::new(input.max_line), stream, &[]);
    let cut = oracle::feed_in_pieces(&mut Scanner::new(input.max_line), stream, &input.cuts);
    assert_eq!(
        whole, cut,
        "cutting the stream at {:?} changed the events",
        input.cuts
    );

    let mut scanner = Scanner::new(input.max_line);
    let mut bytewise = Vec::new();
    for (i, b) in stream.iter().enumerate() {
        let (used, event) = scanner.feed(std::slice::from_ref(b));
        assert_eq!(used, 1);
        bytewise.extend(event.map(|e| (i + 1, e)));
    }
    assert_eq!(
        whole, bytewise,
        "feeding one byte at a time changed the events"
    );

    let expected = oracle::scan(stream, input.max_line);
    assert_eq!(whole, expected, "the scanner disagrees with the spec model");
});
