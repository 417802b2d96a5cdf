//! The incremental request scanner (spec section 2).
//!
//! Fed any fragmentation of the byte stream (one byte at a time, or many
//! pipelined requests in one chunk), it yields one [`Event`] per request line.
//! Memory is bounded whatever the client sends: each token keeps at most
//! [`MAX_NAME_LEN`] bytes plus a few flags, so a 5 MiB file name is *scanned*
//! (it is still a valid-looking name, answered `202`) but never stored.

use crate::request::{is_name_byte, FileName, Range, Request, SliceMode, COMMANDS, MAX_NAME_LEN};
use crate::status::Status;

/// Default limit on a request line (CRLF excluded): 8 MiB.
pub const DEFAULT_MAX_LINE: usize = 8 * 1024 * 1024;

/// Tokens beyond this are only counted: no command takes more than five.
const MAX_TOKENS: usize = 5;

/// What one request line amounts to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A well-formed request for the server to carry out.
    Request(Request),
    /// A non-fatal error (`200`..`203`) decided from the line alone: answer it
    /// and go on with the next line.
    Reject(Status),
    /// A fatal error (`100`, `101`): answer it and close; the scanner ignores
    /// everything after it.
    Fatal(Status),
}

/// [`is_name_byte`] as a table: one load a byte instead of four ranges.
const NAME_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = is_name_byte(b as u8);
        b += 1;
    }
    table
};

/// What is kept of one token: a prefix and the facts the rules need.
#[derive(Clone)]
struct Token {
    len: usize,
    stored: [u8; MAX_NAME_LEN],
    name_bytes_only: bool,
    digits_only: bool,
    /// Decimal value, saturating at `u64::MAX`.
    value: u64,
}

impl Token {
    const EMPTY: Token = Token {
        len: 0,
        stored: [0; MAX_NAME_LEN],
        name_bytes_only: true,
        digits_only: true,
        value: 0,
    };

    #[inline]
    fn push(&mut self, b: u8) {
        if self.len < MAX_NAME_LEN {
            self.stored[self.len] = b;
        }
        self.len += 1;
        self.name_bytes_only &= is_name_byte(b);
        if b.is_ascii_digit() {
            self.value = self
                .value
                .saturating_mul(10)
                .saturating_add(u64::from(b - b'0'));
        } else {
            self.digits_only = false;
        }
    }

    /// Starts the token over. The kept bytes are not cleared: only
    /// `stored[..len]` is ever read.
    #[inline]
    fn reset(&mut self) {
        self.len = 0;
        self.name_bytes_only = true;
        self.digits_only = true;
        self.value = 0;
    }

    /// [`Token::push`] for every byte of `part`, in one pass each.
    fn extend(&mut self, part: &[u8]) {
        let keep = MAX_NAME_LEN.saturating_sub(self.len).min(part.len());
        if keep > 0 {
            self.stored[self.len..self.len + keep].copy_from_slice(&part[..keep]);
        }
        self.len += part.len();
        self.name_bytes_only &= part.iter().all(|&b| NAME_BYTE[usize::from(b)]);
        if self.digits_only {
            // The value only matters while the token is all digits.
            for &b in part {
                if !b.is_ascii_digit() {
                    self.digits_only = false;
                    break;
                }
                self.value = self
                    .value
                    .saturating_mul(10)
                    .saturating_add(u64::from(b - b'0'));
            }
        }
    }

    /// The token's bytes, when it was short enough to keep whole.
    fn bytes(&self) -> Option<&[u8]> {
        (self.len <= MAX_NAME_LEN).then(|| &self.stored[..self.len])
    }

    fn is(&self, word: &str) -> bool {
        self.bytes() == Some(word.as_bytes())
    }

    fn number(&self) -> Option<u64> {
        (self.len > 0 && self.digits_only).then_some(self.value)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Inside a line.
    Line,
    /// A CR arrived; only LF may follow.
    AfterCr,
    /// A fatal error was reported; input is ignored from now on.
    Dead,
}

/// Incremental HFTP request scanner. See the module docs.
#[derive(Clone)]
pub struct Scanner {
    max_line: usize,
    state: State,
    line_len: usize,
    only_spaces: bool,
    /// Number of tokens started on this line (the current one included).
    token_count: usize,
    tokens: Box<[Token; MAX_TOKENS]>,
    /// The command the last complete line named, if it named one.
    last_command: Option<&'static str>,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner::new(DEFAULT_MAX_LINE)
    }
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("state", &self.state)
            .field("line_len", &self.line_len)
            .field("token_count", &self.token_count)
            .finish()
    }
}

impl Scanner {
    /// A scanner that answers `101` to request lines longer than `max_line`
    /// bytes (CRLF excluded).
    pub fn new(max_line: usize) -> Scanner {
        Scanner {
            max_line,
            state: State::Line,
            line_len: 0,
            only_spaces: true,
            token_count: 1,
            tokens: Box::new([
                Token::EMPTY,
                Token::EMPTY,
                Token::EMPTY,
                Token::EMPTY,
                Token::EMPTY,
            ]),
            last_command: None,
        }
    }

    /// The command named by the first token of the last complete line, when
    /// it is one of [`COMMANDS`], even if its arguments were rejected (for
    /// statistics: `get_metadata` answered `201`). `None` after a fatal
    /// error or an unknown command.
    pub fn last_command(&self) -> Option<&'static str> {
        self.last_command
    }

    /// Whether a fatal error was reported.
    pub fn is_dead(&self) -> bool {
        self.state == State::Dead
    }

    /// Whether part of a request line has arrived (a client closing now
    /// leaves an unfinished request behind).
    pub fn in_line(&self) -> bool {
        self.state != State::Dead && (self.line_len > 0 || self.state == State::AfterCr)
    }

    /// Scans `input` until one event is complete. Returns how many bytes were
    /// consumed and the event, if any. Call again with the rest of the input
    /// after handling the event; without an event all input was consumed.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Option<Event>) {
        let mut i = 0;
        while let Some(&b) = input.get(i) {
            if self.state == State::Line {
                // A run of printable bytes within the line limit is taken
                // whole (a request line is one such run and its CRLF); the
                // byte at a time path below decides everything else.
                let rest = &input[i..];
                let run = rest
                    .iter()
                    .position(|b| !matches!(b, 0x20..=0x7e))
                    .unwrap_or(rest.len());
                let take = run.min(self.max_line - self.line_len);
                if take > 0 {
                    self.take_printable(&rest[..take]);
                    i += take;
                    continue;
                }
            }
            match self.state {
                State::Dead => return (input.len(), None),
                State::AfterCr => {
                    if b != b'\n' {
                        return (i + 1, Some(self.fatal(Status::BadEol)));
                    }
                    let event = self.finish_line();
                    return (i + 1, Some(event));
                }
                State::Line => match b {
                    b'\r' => self.state = State::AfterCr,
                    b'\n' => return (i + 1, Some(self.fatal(Status::BadEol))),
                    0x20..=0x7e => {
                        self.line_len += 1;
                        if self.line_len > self.max_line {
                            return (i + 1, Some(self.fatal(Status::BadRequest)));
                        }
                        if b == b' ' {
                            self.token_count += 1;
                            if let Some(t) = self.tokens.get_mut(self.token_count - 1) {
                                t.reset();
                            }
                        } else {
                            self.only_spaces = false;
                            if let Some(t) = self.tokens.get_mut(self.token_count - 1) {
                                t.push(b);
                            }
                        }
                    }
                    _ => return (i + 1, Some(self.fatal(Status::BadRequest))),
                },
            }
            i += 1;
        }
        (input.len(), None)
    }

    /// Printable bytes of the line, within its limit: spaces end tokens.
    fn take_printable(&mut self, bytes: &[u8]) {
        self.line_len += bytes.len();
        let mut parts = bytes.split(|&b| b == b' ');
        if let Some(first) = parts.next() {
            self.extend_token(first);
        }
        for part in parts {
            self.token_count += 1;
            if let Some(t) = self.tokens.get_mut(self.token_count - 1) {
                t.reset();
            }
            self.extend_token(part);
        }
    }

    fn extend_token(&mut self, part: &[u8]) {
        if part.is_empty() {
            return;
        }
        self.only_spaces = false;
        if let Some(t) = self.tokens.get_mut(self.token_count - 1) {
            t.extend(part);
        }
    }

    fn fatal(&mut self, status: Status) -> Event {
        self.state = State::Dead;
        self.last_command = None;
        Event::Fatal(status)
    }

    fn finish_line(&mut self) -> Event {
        self.last_command = COMMANDS.iter().copied().find(|c| self.tokens[0].is(c));
        let event = if self.only_spaces {
            self.fatal(Status::BadRequest)
        } else {
            match self.interpret() {
                Ok(request) => Event::Request(request),
                Err(status) => Event::Reject(status),
            }
        };
        if self.state != State::Dead {
            self.state = State::Line;
        }
        self.line_len = 0;
        self.only_spaces = true;
        self.token_count = 1;
        self.tokens[0].reset();
        event
    }

    /// Applies the order of checks of spec section 5 to a complete line.
    fn interpret(&self) -> Result<Request, Status> {
        let t = &self.tokens;
        let n = self.token_count;
        let command = &t[0];
        let arity = if command.is("get_file_listing") || command.is("help") || command.is("quit") {
            1..=1
        } else if command.is("get_metadata") {
            2..=2
        } else if command.is("get_slice") {
            4..=5
        } else {
            return Err(Status::NoSuchCommand);
        };
        // Token count and shape: no empty token, the right count, `raw` exact.
        if !arity.contains(&n) || t[..n].iter().any(|t| t.len == 0) || (n == 5 && !t[4].is("raw")) {
            return Err(Status::InvalidArguments);
        }
        if n == 1 {
            return Ok(if command.is("help") {
                Request::Help
            } else if command.is("quit") {
                Request::Quit
            } else {
                Request::GetFileListing
            });
        }
        // Name validity, then number syntax, then "no such file can exist".
        let name_token = &t[1];
        let dots = name_token.is(".") || name_token.is("..");
        if !name_token.name_bytes_only || dots {
            return Err(Status::InvalidArguments);
        }
        let range = if n >= 4 {
            match (t[2].number(), t[3].number()) {
                (Some(offset), Some(size)) => Some(Range { offset, size }),
                _ => return Err(Status::InvalidArguments),
            }
        } else {
            None
        };
        let name = name_token
            .bytes()
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| FileName::new(s).ok())
            .ok_or(Status::FileNotFound)?;
        Ok(match range {
            None => Request::GetMetadata { name },
            Some(range) => Request::GetSlice {
                name,
                range,
                mode: if n == 5 {
                    SliceMode::Raw
                } else {
                    SliceMode::Base64
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8]) -> Vec<Event> {
        let mut s = Scanner::default();
        let mut rest = input;
        let mut out = Vec::new();
        while !rest.is_empty() {
            let (n, ev) = s.feed(rest);
            rest = &rest[n..];
            out.extend(ev);
        }
        out
    }

    fn one(line: &str) -> Event {
        let evs = scan_all(line.as_bytes());
        assert_eq!(evs.len(), 1, "{line:?} gave {evs:?}");
        evs.into_iter().next().unwrap()
    }

    fn name(s: &str) -> FileName {
        FileName::new(s).unwrap()
    }

    #[test]
    fn commands() {
        assert_eq!(
            one("get_file_listing\r\n"),
            Event::Request(Request::GetFileListing)
        );
        assert_eq!(one("help\r\n"), Event::Request(Request::Help));
        assert_eq!(one("quit\r\n"), Event::Request(Request::Quit));
        assert_eq!(
            one("get_metadata a.txt\r\n"),
            Event::Request(Request::GetMetadata {
                name: name("a.txt")
            })
        );
        assert_eq!(
            one("get_slice a 007 3\r\n"),
            Event::Request(Request::GetSlice {
                name: name("a"),
                range: Range { offset: 7, size: 3 },
                mode: SliceMode::Base64
            })
        );
        assert_eq!(
            one("get_slice a 0 3 raw\r\n"),
            Event::Request(Request::GetSlice {
                name: name("a"),
                range: Range { offset: 0, size: 3 },
                mode: SliceMode::Raw
            })
        );
    }

    #[test]
    fn errors() {
        use Status::*;
        let cases: &[(&str, Event)] = &[
            ("\r\n", Event::Fatal(BadRequest)),
            ("   \r\n", Event::Fatal(BadRequest)),
            ("a\tb\r\n", Event::Fatal(BadRequest)),
            ("a\0\r\n", Event::Fatal(BadRequest)),
            ("\u{e9}\r\n", Event::Fatal(BadRequest)),
            ("quit\n", Event::Fatal(BadEol)),
            ("qu\rit\r\n", Event::Fatal(BadEol)),
            ("verdura\r\n", Event::Reject(NoSuchCommand)),
            (" quit\r\n", Event::Reject(NoSuchCommand)),
            ("QUIT\r\n", Event::Reject(NoSuchCommand)),
            ("quit \r\n", Event::Reject(InvalidArguments)),
            ("quit x\r\n", Event::Reject(InvalidArguments)),
            ("help x\r\n", Event::Reject(InvalidArguments)),
            ("get_file_listing x\r\n", Event::Reject(InvalidArguments)),
            ("get_metadata\r\n", Event::Reject(InvalidArguments)),
            ("get_metadata  a\r\n", Event::Reject(InvalidArguments)),
            ("get_metadata a b\r\n", Event::Reject(InvalidArguments)),
            ("get_metadata ../x\r\n", Event::Reject(InvalidArguments)),
            ("get_metadata .\r\n", Event::Reject(InvalidArguments)),
            ("get_metadata ..\r\n", Event::Reject(InvalidArguments)),
            ("get_metadata a?b\r\n", Event::Reject(InvalidArguments)),
            ("get_slice a 1\r\n", Event::Reject(InvalidArguments)),
            ("get_slice a -1 2\r\n", Event::Reject(InvalidArguments)),
            ("get_slice a +1 2\r\n", Event::Reject(InvalidArguments)),
            ("get_slice a 1 2x\r\n", Event::Reject(InvalidArguments)),
            ("get_slice a 1 2 rawx\r\n", Event::Reject(InvalidArguments)),
            ("get_slice a 1 2 RAW\r\n", Event::Reject(InvalidArguments)),
            ("get_slice a 1 2 raw x\r\n", Event::Reject(InvalidArguments)),
            ("get_slice a 1 2 raw \r\n", Event::Reject(InvalidArguments)),
            ("get_slice a?b x 2\r\n", Event::Reject(InvalidArguments)),
        ];
        for (line, want) in cases {
            assert_eq!(&one(line), want, "{line:?}");
        }
    }

    #[test]
    fn long_names_and_numbers() {
        let long = "x".repeat(5 * 1024 * 1024);
        assert_eq!(
            one(&format!("get_metadata {long}\r\n")),
            Event::Reject(Status::FileNotFound)
        );
        assert_eq!(
            one(&format!("get_slice {} 0 1\r\n", "y".repeat(256))),
            Event::Reject(Status::FileNotFound)
        );
        // Number syntax comes before existence.
        assert_eq!(
            one(&format!("get_slice {} z 1\r\n", "y".repeat(256))),
            Event::Reject(Status::InvalidArguments)
        );
        let big = "9".repeat(40);
        match one(&format!("get_slice a {big} 1\r\n")) {
            Event::Request(Request::GetSlice { range, .. }) => assert_eq!(range.end(), None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn line_limit() {
        let mut s = Scanner::new(10);
        assert_eq!(
            s.feed(b"get_metadata a\r\n").1,
            Some(Event::Fatal(Status::BadRequest))
        );
        assert!(s.is_dead());
        assert_eq!(s.feed(b"quit\r\n"), (6, None));
        let mut s = Scanner::new(10);
        assert!(matches!(
            s.feed(b"0123456789\r\n").1,
            Some(Event::Reject(_))
        ));
    }

    #[test]
    fn bad_eol_is_detected_at_the_offending_byte() {
        let mut s = Scanner::default();
        assert_eq!(s.feed(b"get_meta"), (8, None));
        assert_eq!(s.feed(b"\r"), (1, None));
        assert_eq!(s.feed(b"x"), (1, Some(Event::Fatal(Status::BadEol))));
        let mut s = Scanner::default();
        assert_eq!(s.feed(b"abc\ndef"), (4, Some(Event::Fatal(Status::BadEol))));
    }

    #[test]
    fn pipelined_and_bytewise_agree() {
        let input = b"help\r\nget_metadata a\r\nverdura\r\nget_slice a 1 2 raw\r\nquit\r\n";
        let whole = scan_all(input);
        assert_eq!(whole.len(), 5);
        let mut s = Scanner::default();
        let mut bytewise = Vec::new();
        for b in input {
            let (n, ev) = s.feed(std::slice::from_ref(b));
            assert_eq!(n, 1);
            bytewise.extend(ev);
        }
        assert_eq!(whole, bytewise);
    }
}
