//! A deliberately naive model of spec section 2, 4 and 5 (request side),
//! written straight from `docs/protocol.md` and sharing no code with
//! `hftp_proto::Scanner`: it buffers each whole line (unbounded memory) and
//! decides it with string operations. The fuzz targets and the proptests in
//! `crates/proto/tests/props.rs` (which includes this file by path) compare
//! the real scanner against it, so a disagreement is a bug in one of the two
//! readings of the spec.

use hftp_proto::{Event, FileName, Range, Request, SliceMode, Status};

/// One event and the stream offset just past the byte that completed it.
pub type Timed = (usize, Event);

/// What the spec says `input` amounts to, for a server whose line limit is
/// `max_line` bytes (CRLF excluded). Events after a fatal one never come.
pub fn scan(input: &[u8], max_line: usize) -> Vec<Timed> {
    let mut events = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    let mut after_cr = false;
    for (i, &b) in input.iter().enumerate() {
        let end = i + 1;
        if after_cr {
            if b != b'\n' {
                events.push((end, Event::Fatal(Status::BadEol)));
                return events;
            }
            after_cr = false;
            let event = decide(&line);
            let fatal = matches!(event, Event::Fatal(_));
            events.push((end, event));
            if fatal {
                return events;
            }
            line.clear();
            continue;
        }
        match b {
            b'\r' => after_cr = true,
            b'\n' => {
                events.push((end, Event::Fatal(Status::BadEol)));
                return events;
            }
            0x20..=0x7e => {
                line.push(b);
                if line.len() > max_line {
                    events.push((end, Event::Fatal(Status::BadRequest)));
                    return events;
                }
            }
            _ => {
                events.push((end, Event::Fatal(Status::BadRequest)));
                return events;
            }
        }
    }
    events
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'
}

/// Decimal digits to a number, saturating at `u64::MAX` (the spec: digits
/// that exceed 64 bits are still numbers, and the range check answers 203).
fn number(token: &[u8]) -> Option<u64> {
    if token.is_empty() || !token.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let digits = std::str::from_utf8(token).ok()?;
    Some(digits.parse::<u64>().unwrap_or(u64::MAX))
}

/// A complete line (CRLF excluded, all bytes printable ASCII).
fn decide(line: &[u8]) -> Event {
    if line.iter().all(|&b| b == b' ') {
        return Event::Fatal(Status::BadRequest);
    }
    let tokens: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let arity: &[usize] = match tokens[0] {
        b"get_file_listing" | b"help" | b"quit" => &[1],
        b"get_metadata" => &[2],
        b"get_slice" => &[4, 5],
        _ => return Event::Reject(Status::NoSuchCommand),
    };
    if !arity.contains(&tokens.len())
        || tokens.iter().any(|t| t.is_empty())
        || (tokens.len() == 5 && tokens[4] != b"raw")
    {
        return Event::Reject(Status::InvalidArguments);
    }
    match tokens[0] {
        b"get_file_listing" => return Event::Request(Request::GetFileListing),
        b"help" => return Event::Request(Request::Help),
        b"quit" => return Event::Request(Request::Quit),
        _ => {}
    }
    let name = tokens[1];
    if !name.iter().all(|&b| is_name_byte(b)) || name == b"." || name == b".." {
        return Event::Reject(Status::InvalidArguments);
    }
    let range = if tokens.len() >= 4 {
        match (number(tokens[2]), number(tokens[3])) {
            (Some(offset), Some(size)) => Some(Range { offset, size }),
            _ => return Event::Reject(Status::InvalidArguments),
        }
    } else {
        None
    };
    if name.len() > 255 {
        return Event::Reject(Status::FileNotFound);
    }
    let name = FileName::new(std::str::from_utf8(name).expect("name bytes are ASCII"))
        .expect("checked above: a valid name of at most 255 bytes");
    Event::Request(match range {
        None => Request::GetMetadata { name },
        Some(range) => Request::GetSlice {
            name,
            range,
            mode: if tokens.len() == 5 {
                SliceMode::Raw
            } else {
                SliceMode::Base64
            },
        },
    })
}

/// Feeds `input` to a fresh scanner in the pieces that `cuts` (offsets into
/// `input`, any order, duplicates and out-of-range ones ignored) delimit, and
/// returns its events with their stream offsets. Panics if the scanner breaks
/// a rule of its `feed` contract: consuming nothing or more than it was
/// given, leaving input unconsumed without an event, or producing an event
/// after a fatal one.
pub fn feed_in_pieces(
    scanner: &mut hftp_proto::Scanner,
    input: &[u8],
    cuts: &[usize],
) -> Vec<Timed> {
    let mut cuts: Vec<usize> = cuts
        .iter()
        .copied()
        .filter(|&c| c > 0 && c < input.len())
        .collect();
    cuts.push(input.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut events: Vec<Timed> = Vec::new();
    let mut start = 0;
    for cut in cuts {
        let mut piece = &input[start..cut];
        let mut pos = start;
        while !piece.is_empty() {
            let dead_before = scanner.is_dead();
            let (used, event) = scanner.feed(piece);
            assert!(
                used > 0 && used <= piece.len(),
                "feed consumed {used} of {} bytes",
                piece.len()
            );
            if dead_before {
                assert_eq!(
                    (used, &event),
                    (piece.len(), &None),
                    "a dead scanner must swallow everything"
                );
            }
            pos += used;
            piece = &piece[used..];
            match event {
                Some(event) => {
                    assert!(
                        !matches!(events.last(), Some((_, Event::Fatal(_)))),
                        "event {event:?} after a fatal one"
                    );
                    let fatal = matches!(event, Event::Fatal(_));
                    assert_eq!(scanner.is_dead(), fatal, "is_dead disagrees with {event:?}");
                    assert!(!scanner.in_line(), "in_line right after an event");
                    events.push((pos, event));
                }
                None => assert!(piece.is_empty(), "feed stopped early without an event"),
            }
        }
        start = cut;
    }
    events
}
