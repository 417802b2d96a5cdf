//! Properties of the request scanner (spec section 2), checked with proptest
//! on every CI run:
//!
//! 1. any byte stream, cut at any points, gives the same events at the same
//!    stream offsets as when fed whole, and those are what an independent,
//!    naive model of the spec (`fuzz/src/oracle.rs`) says; `feed` never
//!    panics and keeps its contract (checked inside `feed_in_pieces`);
//! 2. a sequence of valid request lines mixed with invalid ones of known
//!    class, possibly ended by a fatal line and trailing garbage, yields
//!    exactly the event each line's class calls for, and nothing after the
//!    fatal one;
//! 3. the line limit answers `101` at exactly the first byte past it;
//! 4. memory is bounded: scanning a 1 MiB token (a name, a number, a run of
//!    spaces, many tokens) allocates no more than scanning a short one.
//!
//! Case counts are kept moderate so the suite stays fast; raise them with
//! `PROPTEST_CASES=N` for a longer local run.

#[path = "../../../fuzz/src/oracle.rs"]
mod oracle;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use hftp_proto::{
    Event, FileName, Range, Request, Scanner, SliceMode, Status, COMMANDS, DEFAULT_MAX_LINE,
};
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------
// Allocation accounting, per thread (the test harness runs tests in parallel).

struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: delegates every call to the system allocator unchanged; the
// thread-local is const-initialised, has no destructor and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.with(|a| a.set(a.get() + layout.size()));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.with(|a| a.set(a.get() + new_size));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes allocated on this thread while `f` runs.
fn allocated_by<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATED.with(Cell::get);
    let value = f();
    (ALLOCATED.with(Cell::get) - before, value)
}

// ---------------------------------------------------------------------------
// Generators.

/// Pieces that make streams likely to contain requests, errors and edges.
fn segment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "get_file_listing", "get_metadata", "get_slice", "help", "quit", "raw", "hola.txt", "a",
            "..", ".", "0", "007", "18446744073709551615", "18446744073709551616", "x?y", "RAW",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        4 => Just(b" ".to_vec()),
        4 => Just(b"\r\n".to_vec()),
        1 => Just(b"\r".to_vec()),
        1 => Just(b"\n".to_vec()),
        2 => "[ -~]{0,12}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..6),
    ]
}

fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(segment(), 0..60).prop_map(|segments| segments.concat())
}

fn limit() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![1usize, 17, 300, DEFAULT_MAX_LINE])
}

/// Cut points, as fractions of whatever length the stream turns out to have.
fn cuts() -> impl Strategy<Value = Vec<Index>> {
    prop::collection::vec(any::<Index>(), 0..24)
}

fn resolve(cuts: &[Index], len: usize) -> Vec<usize> {
    cuts.iter().map(|i| i.index(len + 1)).collect()
}

/// A request line (no CRLF) and the event the spec says it yields.
type Line = (String, Event);

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,40}".prop_filter("not . or ..", |n| n != "." && n != "..")
}

/// A decimal number as a client may write it, and its value (saturated).
fn number() -> impl Strategy<Value = (String, u64)> {
    prop_oneof![
        (any::<u64>(), 0usize..3).prop_map(|(n, zeros)| (format!("{}{n}", "0".repeat(zeros)), n)),
        (0u64..100).prop_map(|n| (n.to_string(), n)),
        "[1-9][0-9]{20,30}".prop_map(|digits| (digits, u64::MAX)),
    ]
}

fn valid_line() -> impl Strategy<Value = Line> {
    prop_oneof![
        Just((
            "get_file_listing".to_owned(),
            Event::Request(Request::GetFileListing)
        )),
        Just(("help".to_owned(), Event::Request(Request::Help))),
        Just(("quit".to_owned(), Event::Request(Request::Quit))),
        name().prop_map(|n| {
            let request = Request::GetMetadata {
                name: FileName::new(&n).unwrap(),
            };
            (format!("get_metadata {n}"), Event::Request(request))
        }),
        (name(), number(), number(), any::<bool>()).prop_map(|(n, (o, offset), (s, size), raw)| {
            let mode = if raw {
                SliceMode::Raw
            } else {
                SliceMode::Base64
            };
            let line = format!("get_slice {n} {o} {s}{}", if raw { " raw" } else { "" });
            let name = FileName::new(&n).unwrap();
            (
                line,
                Event::Request(Request::GetSlice {
                    name,
                    range: Range { offset, size },
                    mode,
                }),
            )
        }),
    ]
}

fn unknown_command_line() -> impl Strategy<Value = Line> {
    let reject = Event::Reject(Status::NoSuchCommand);
    prop_oneof![
        ("[!-~]{1,20}", "( [ -~]{0,20})?")
            .prop_filter("not a command", |(c, _)| !COMMANDS.contains(&c.as_str()))
            .prop_map({
                let reject = reject.clone();
                move |(c, args)| (format!("{c}{args}"), reject.clone())
            }),
        // A leading space: the first token is empty.
        "[!-~][ -~]{0,30}".prop_map(move |rest| (format!(" {rest}"), reject.clone())),
    ]
}

/// A token that is not a valid file name: a forbidden printable byte
/// somewhere, or exactly `.` or `..`.
fn bad_name() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            "[A-Za-z0-9._-]{0,8}",
            "[!-,/:-@\\[-^`{-~]",
            "[A-Za-z0-9._-]{0,8}"
        )
            .prop_map(|(a, b, c)| format!("{a}{b}{c}")),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("../secret".to_owned()),
        Just("a/b".to_owned()),
    ]
}

/// A token that is not a number: a non-digit somewhere.
fn bad_number() -> impl Strategy<Value = String> {
    ("[0-9]{0,4}", "[!-/:-~]", "[0-9]{0,4}").prop_map(|(a, b, c)| format!("{a}{b}{c}"))
}

fn invalid_arguments_line() -> impl Strategy<Value = Line> {
    let lines = prop_oneof![
        (
            prop::sample::select(vec!["get_file_listing", "help", "quit"]),
            "[ -~]{0,10}"
        )
            .prop_map(|(c, args)| format!("{c} {args}")),
        Just("get_metadata".to_owned()),
        (name(), name()).prop_map(|(a, b)| format!("get_metadata {a} {b}")),
        name().prop_map(|n| format!("get_metadata  {n}")),
        name().prop_map(|n| format!("get_metadata {n} ")),
        bad_name().prop_map(|n| format!("get_metadata {n}")),
        (name(), number()).prop_map(|(n, (o, _))| format!("get_slice {n} {o}")),
        (bad_name(), number(), number())
            .prop_map(|(n, (o, _), (s, _))| format!("get_slice {n} {o} {s}")),
        (name(), bad_number(), number())
            .prop_map(|(n, o, (s, _))| format!("get_slice {n} {o} {s}")),
        (name(), number(), bad_number())
            .prop_map(|(n, (o, _), s)| format!("get_slice {n} {o} {s}")),
        (name(), number(), number(), "[!-~]{1,5}")
            .prop_filter("not raw", |(_, _, _, m)| m != "raw")
            .prop_map(|(n, (o, _), (s, _), m)| format!("get_slice {n} {o} {s} {m}")),
        (name(), number(), number())
            .prop_map(|(n, (o, _), (s, _))| format!("get_slice {n} {o} {s} raw x")),
        (name(), number(), number())
            .prop_map(|(n, (o, _), (s, _))| format!("get_slice {n} {o} {s} raw ")),
        (name(), number()).prop_map(|(n, (o, _))| format!("get_slice {n}  {o} 1")),
        // Number syntax is checked before "no such file can exist".
        (256usize..600, bad_number())
            .prop_map(|(len, o)| format!("get_slice {} {o} 1", "y".repeat(len))),
    ];
    lines.prop_map(|line| (line, Event::Reject(Status::InvalidArguments)))
}

fn file_not_found_line() -> impl Strategy<Value = Line> {
    let long_name = (256usize..3000, "[A-Za-z0-9._-]").prop_map(|(len, c)| c.repeat(len));
    prop_oneof![
        long_name.clone().prop_map(|n| format!("get_metadata {n}")),
        (long_name, number(), number(), any::<bool>()).prop_map(|(n, (o, _), (s, _), raw)| {
            format!("get_slice {n} {o} {s}{}", if raw { " raw" } else { "" })
        }),
    ]
    .prop_map(|line| (line, Event::Reject(Status::FileNotFound)))
}

fn any_line() -> impl Strategy<Value = Line> {
    prop_oneof![
        4 => valid_line(),
        2 => unknown_command_line(),
        3 => invalid_arguments_line(),
        1 => file_not_found_line(),
    ]
}

/// Bytes ending a stream with a fatal error (the whole tail, its event).
fn fatal_tail() -> impl Strategy<Value = (Vec<u8>, Event)> {
    let bad_byte = prop_oneof![0u8..=8, Just(11u8), Just(12u8), 14u8..=31, 127u8..=255];
    let prefix = "[ -~]{0,20}";
    prop_oneof![
        Just((b"\r\n".to_vec(), Event::Fatal(Status::BadRequest))),
        " {1,10}".prop_map(|s| (
            format!("{s}\r\n").into_bytes(),
            Event::Fatal(Status::BadRequest)
        )),
        (prefix, bad_byte).prop_map(|(p, b)| {
            let mut bytes = p.into_bytes();
            bytes.push(b);
            (bytes, Event::Fatal(Status::BadRequest))
        }),
        prefix.prop_map(|p| (format!("{p}\n").into_bytes(), Event::Fatal(Status::BadEol))),
        (prefix, any::<u8>().prop_filter("not LF", |&b| b != b'\n')).prop_map(|(p, b)| {
            let mut bytes = format!("{p}\r").into_bytes();
            bytes.push(b);
            (bytes, Event::Fatal(Status::BadEol))
        }),
    ]
}

fn events(timed: Vec<oracle::Timed>) -> Vec<Event> {
    timed.into_iter().map(|(_, e)| e).collect()
}

// ---------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    /// Property 1: fragmentation never matters, and the scanner agrees with
    /// the naive model of the spec.
    #[test]
    fn any_stream_any_cuts_same_events(input in stream(), cuts in cuts(), max_line in limit()) {
        let cuts = resolve(&cuts, input.len());
        let whole = oracle::feed_in_pieces(&mut Scanner::new(max_line), &input, &[]);
        let cut = oracle::feed_in_pieces(&mut Scanner::new(max_line), &input, &cuts);
        prop_assert_eq!(&whole, &cut);
        let every_byte: Vec<usize> = (1..input.len()).collect();
        let bytewise = oracle::feed_in_pieces(&mut Scanner::new(max_line), &input, &every_byte);
        prop_assert_eq!(&whole, &bytewise);
        prop_assert_eq!(&whole, &oracle::scan(&input, max_line));
    }

    /// Property 1 on raw bytes: no structure at all.
    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..512), cuts in cuts()) {
        let cuts = resolve(&cuts, input.len());
        let got = oracle::feed_in_pieces(&mut Scanner::default(), &input, &cuts);
        prop_assert_eq!(got, oracle::scan(&input, DEFAULT_MAX_LINE));
    }

    /// Property 2: each line of known class gets exactly its answer, in
    /// order; a fatal line ends the events whatever follows it.
    #[test]
    fn known_lines_get_their_answer(
        lines in prop::collection::vec(any_line(), 0..24),
        tail in prop::option::of((fatal_tail(), prop::collection::vec(any::<u8>(), 0..64))),
        cuts in cuts(),
    ) {
        let mut input = Vec::new();
        let mut expected = Vec::new();
        for (line, event) in &lines {
            input.extend_from_slice(line.as_bytes());
            input.extend_from_slice(b"\r\n");
            expected.push(event.clone());
        }
        if let Some(((fatal, event), garbage)) = &tail {
            input.extend_from_slice(fatal);
            input.extend_from_slice(garbage);
            expected.push(event.clone());
        }
        let cuts = resolve(&cuts, input.len());
        let got = events(oracle::feed_in_pieces(&mut Scanner::default(), &input, &cuts));
        prop_assert_eq!(&got, &expected);
        // The model agrees with the hand-made classification too.
        prop_assert_eq!(&events(oracle::scan(&input, DEFAULT_MAX_LINE)), &expected);
    }

    /// Property 3: a line of `max_line` bytes is scanned normally; one byte
    /// more is `101`, reported at that byte without waiting for the CRLF.
    /// (The limit is at least 4 so that the `help` line after it fits.)
    #[test]
    fn line_limit_is_exact(max_line in 4usize..200, len in 1usize..400) {
        let mut input = vec![b'a'; len];
        input.extend_from_slice(b"\r\nhelp\r\n");
        let got = oracle::feed_in_pieces(&mut Scanner::new(max_line), &input, &[]);
        if len <= max_line {
            prop_assert_eq!(got, vec![
                (len + 2, Event::Reject(Status::NoSuchCommand)),
                (len + 8, Event::Request(Request::Help)),
            ]);
        } else {
            prop_assert_eq!(got, vec![(max_line + 1, Event::Fatal(Status::BadRequest))]);
        }
    }
}

// ---------------------------------------------------------------------------
// Property 4: bounded memory.

/// Feeds `line` in 4 KiB pieces and returns the bytes allocated meanwhile
/// and the events (collected into a vector reserved beforehand).
fn scan_counting(line: &[u8]) -> (usize, Vec<Event>) {
    let mut scanner = Scanner::default();
    let mut events = Vec::with_capacity(8);
    let (bytes, ()) = allocated_by(|| {
        for piece in line.chunks(4096) {
            let mut rest = piece;
            while !rest.is_empty() {
                let (used, event) = scanner.feed(rest);
                rest = &rest[used..];
                if let Some(event) = event {
                    events.push(event);
                }
            }
        }
    });
    (bytes, events)
}

/// A kind of line: its name, the line with a token of `n` bytes, its event.
type Shape = (&'static str, fn(usize) -> String, Event);

#[test]
fn a_huge_token_costs_no_more_than_a_small_one() {
    const MIB: usize = 1 << 20;
    let shapes: [Shape; 6] = [
        (
            "name",
            |n| format!("get_metadata {}\r\n", "x".repeat(n)),
            Event::Reject(Status::FileNotFound),
        ),
        (
            "number",
            |n| format!("get_slice a {} 1\r\n", "9".repeat(n)),
            Event::Request(Request::GetSlice {
                name: FileName::new("a").unwrap(),
                range: Range {
                    offset: u64::MAX,
                    size: 1,
                },
                mode: SliceMode::Base64,
            }),
        ),
        (
            "command",
            |n| format!("{}\r\n", "q".repeat(n)),
            Event::Reject(Status::NoSuchCommand),
        ),
        (
            "spaces",
            |n| format!("get_metadata{}a\r\n", " ".repeat(n)),
            Event::Reject(Status::InvalidArguments),
        ),
        (
            "tokens",
            |n| format!("get_slice{}\r\n", " a".repeat(n / 2)),
            Event::Reject(Status::InvalidArguments),
        ),
        (
            "garbage",
            |n| format!("{}\r\n", "?".repeat(n)),
            Event::Reject(Status::NoSuchCommand),
        ),
    ];
    for (shape, make, event) in shapes {
        let (small, small_events) = scan_counting(make(300).as_bytes());
        let (huge, huge_events) = scan_counting(make(MIB).as_bytes());
        assert_eq!(huge_events, [event], "{shape}: 1 MiB line");
        assert_eq!(
            small_events.len(),
            1,
            "{shape}: short line gave {small_events:?}"
        );
        assert!(
            huge <= small,
            "{shape}: scanning a 1 MiB token allocated {huge} bytes, a short one {small}: memory grows with the input"
        );
    }
    // The scanner's own footprint is fixed, whatever it has seen.
    let mut scanner = Scanner::default();
    let (allocated, _) = allocated_by(|| {
        for _ in 0..64 {
            scanner.feed(&[b'x'; 64 * 1024]);
        }
    });
    assert_eq!(allocated, 0, "feeding 4 MiB of one token allocated");
    assert!(!scanner.is_dead() && scanner.in_line());
}

#[test]
fn five_mib_name_is_file_not_found_and_the_connection_stays_usable() {
    // The spec's own example (section 2).
    let mut input = format!("get_metadata {}\r\n", "x".repeat(5 * 1024 * 1024)).into_bytes();
    input.extend_from_slice(b"help\r\n");
    let got = events(oracle::feed_in_pieces(
        &mut Scanner::default(),
        &input,
        &[1000, 3 << 20],
    ));
    assert_eq!(
        got,
        [
            Event::Reject(Status::FileNotFound),
            Event::Request(Request::Help)
        ]
    );
}
