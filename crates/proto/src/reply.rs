//! Response decoding (spec sections 3 and 5): everything a client reads.
//!
//! A [`ReplyDecoder`] is told what the reply answers ([`Expect`]) and is fed
//! the bytes of the connection in any fragmentation. It checks every byte
//! against the spec and yields one typed [`Reply`]; slice bodies are not
//! kept but appended, as they arrive, to a buffer the caller drains, so a
//! 4 GiB base64 line decodes with memory bounded by the size of the fed
//! chunks. Anything that is not exactly what the spec allows (an unknown
//! status line, a bare CR or LF, a bad file name in a listing, a size with a
//! leading zero, a non-alphabet or non-canonical base64 character, wrong
//! padding, a wrong `Content-Length`, a missing CRLF) is a [`ReplyError`]
//! that says what was expected where.
//!
//! ```
//! use hftp_proto::reply::{Expect, Reply, ReplyDecoder};
//! use hftp_proto::SliceMode;
//!
//! let mut dec = ReplyDecoder::new(Expect::Slice { mode: SliceMode::Base64, size: 19 });
//! let mut body = Vec::new();
//! let wire = b"0 OK\r\nY2Fsb3IgcXVlIGhhY2UgaG95LA==\r\n";
//! let (used, reply) = dec.feed(&wire[..11], &mut body).unwrap();
//! assert_eq!((used, reply), (11, None));
//! let (used, reply) = dec.feed(&wire[11..], &mut body).unwrap();
//! assert_eq!((used, reply), (wire.len() - 11, Some(Reply::Slice { len: 19 })));
//! assert_eq!(body, b"calor que hace hoy,");
//! ```

use std::fmt;

use crate::request::{FileName, Request, SliceMode, MAX_NAME_LEN};
use crate::response::base64_len;
use crate::status::Status;

/// What a reply answers, and so what it must contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expect {
    /// `get_file_listing`: valid file names, one per line, then an empty line.
    Listing,
    /// `help`: command names, one per line, then an empty line.
    Help,
    /// `get_metadata`: one decimal size.
    Metadata,
    /// `get_slice`: `size` bytes, in the given mode.
    Slice { mode: SliceMode, size: u64 },
    /// `quit`: the status line alone.
    Quit,
}

impl Expect {
    /// What the answer to `request` must contain.
    pub fn for_request(request: &Request) -> Expect {
        match request {
            Request::GetFileListing => Expect::Listing,
            Request::GetMetadata { .. } => Expect::Metadata,
            Request::GetSlice { range, mode, .. } => Expect::Slice {
                mode: *mode,
                size: range.size,
            },
            Request::Help => Expect::Help,
            Request::Quit => Expect::Quit,
        }
    }
}

/// One complete, valid reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The server answered with an error status (anything but `0 OK`); that
    /// status line is the whole reply. Fatal ones mean the server closes.
    Error(Status),
    /// The lines of a listing or of `help`, in the order received.
    Lines(Vec<String>),
    /// The size from `get_metadata`.
    Size(u64),
    /// A slice of `len` bytes (the requested size), all of which were
    /// appended to the output buffers passed to [`ReplyDecoder::feed`].
    Slice { len: u64 },
    /// `0 OK` to `quit`.
    Ok,
}

/// The part of a reply an error was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    StatusLine,
    ListingLine,
    HelpLine,
    Size,
    ContentLength,
    HeaderEnd,
    Base64Body,
    RawBody,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::StatusLine => "status line",
            Part::ListingLine => "listing line",
            Part::HelpLine => "help line",
            Part::Size => "size line",
            Part::ContentLength => "Content-Length line",
            Part::HeaderEnd => "empty line after Content-Length",
            Part::Base64Body => "base64 slice line",
            Part::RawBody => "raw slice body",
        })
    }
}

/// Why a reply is not what the spec allows. The `Display` form is one line
/// that says what was expected and what came instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// The status line is none of the eight of spec section 3 (shown escaped).
    UnknownStatus(String),
    /// A CR not followed by LF, or an LF not preceded by CR.
    BadEol { part: Part, byte: u8 },
    /// A line longer than anything the spec allows there.
    LineTooLong { part: Part, max: usize },
    /// A complete line whose content is wrong (shown escaped).
    BadLine {
        part: Part,
        line: String,
        why: &'static str,
    },
    /// A raw slice announced a `Content-Length` other than the size asked for.
    WrongLength { expected: u64, got: u64 },
    /// A byte of the base64 line that is not allowed at its offset (counted
    /// from the first character of the line).
    Base64Byte {
        offset: u64,
        byte: u8,
        why: &'static str,
    },
    /// The last base64 quantum has nonzero bits after the data (e.g. `QR==`
    /// instead of `QQ==`): standard encoders never produce it.
    Base64NonCanonical { offset: u64 },
    /// The byte after the complete base64 line or header is not the CRLF.
    MissingCrlf { part: Part, byte: u8 },
    /// The connection ended before the reply was complete.
    Truncated { part: Part, detail: String },
    /// `feed` was called again after an error.
    AfterError,
}

fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

fn show_byte(b: u8) -> String {
    format!("'{}'", std::slice::from_ref(&b).escape_ascii())
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::UnknownStatus(line) => write!(f, "unknown status line \"{line}\""),
            ReplyError::BadEol { part, byte } => {
                write!(f, "bare {} in the {part} (lines end with CRLF)", show_byte(*byte))
            }
            ReplyError::LineTooLong { part, max } => {
                write!(f, "{part} longer than {max} bytes")
            }
            ReplyError::BadLine { part, line, why } => write!(f, "bad {part} \"{line}\": {why}"),
            ReplyError::WrongLength { expected, got } => {
                write!(f, "raw slice announced Content-Length {got}, asked for {expected} bytes")
            }
            ReplyError::Base64Byte { offset, byte, why } => {
                write!(f, "base64 slice line: byte {} at offset {offset}: {why}", show_byte(*byte))
            }
            ReplyError::Base64NonCanonical { offset } => write!(
                f,
                "base64 slice line: non-canonical final quantum at offset {offset} (nonzero padding bits)"
            ),
            ReplyError::MissingCrlf { part, byte } => {
                write!(f, "expected CRLF after the {part}, got {}", show_byte(*byte))
            }
            ReplyError::Truncated { part, detail } => {
                write!(f, "connection closed in the {part}: {detail}")
            }
            ReplyError::AfterError => f.write_str("reply decoder used after an error"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Longest status line text: `203 OFFSET EXCEEDS FILE SIZE` and the like.
const MAX_STATUS_LINE: usize = 40;
/// Longest `help` line.
const MAX_HELP_LINE: usize = 64;
/// Longest size line: `u64::MAX` has 20 digits.
const MAX_SIZE_LINE: usize = 20;
/// `Content-Length: ` and 20 digits.
const MAX_HEADER_LINE: usize = 16 + 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Status,
    Lines,
    Size,
    Header,
    HeaderEnd,
    Raw,
    Base64,
    /// Expecting the CR (`false`) or the LF (`true`) ending the base64 line.
    Base64End(bool),
    Done,
    Failed,
}

/// Incremental, strict decoder of one reply at a time. See the module docs.
#[derive(Clone, Debug)]
pub struct ReplyDecoder {
    expect: Expect,
    state: State,
    line: Vec<u8>,
    cr: bool,
    lines: Vec<String>,
    /// Lines of this reply decoded so far, drained or not.
    lines_seen: u64,
    /// Raw: bytes left. Base64: characters left.
    remaining: u64,
    /// Base64: characters accepted so far.
    done_chars: u64,
    quad: [u8; 4],
    quad_len: usize,
    /// Raw slice bytes are counted here instead of copied to `out`.
    discard_raw: bool,
    discarded: u64,
}

impl ReplyDecoder {
    pub fn new(expect: Expect) -> ReplyDecoder {
        ReplyDecoder {
            expect,
            state: State::Status,
            line: Vec::with_capacity(64),
            cr: false,
            lines: Vec::new(),
            lines_seen: 0,
            remaining: 0,
            done_chars: 0,
            quad: [0; 4],
            quad_len: 0,
            discard_raw: false,
            discarded: 0,
        }
    }

    /// Raw slice bytes are validated (their count) but not copied to
    /// `out`: a load generator that does not look at them saves a copy of
    /// every byte. [`ReplyDecoder::take_discarded`] tells how many went.
    /// Kept across [`ReplyDecoder::reset`].
    pub fn discard_raw(&mut self, discard: bool) {
        self.discard_raw = discard;
    }

    /// Raw slice bytes consumed but not copied since the last call.
    pub fn take_discarded(&mut self) -> u64 {
        std::mem::take(&mut self.discarded)
    }

    /// Starts on the next reply, keeping the allocations.
    pub fn reset(&mut self, expect: Expect) {
        self.expect = expect;
        self.state = State::Status;
        self.line.clear();
        self.cr = false;
        self.lines = Vec::new();
        self.lines_seen = 0;
        self.remaining = 0;
        self.done_chars = 0;
        self.quad_len = 0;
    }

    pub fn expect(&self) -> Expect {
        self.expect
    }

    /// Whether nothing of the reply has arrived yet.
    pub fn is_idle(&self) -> bool {
        self.state == State::Status && self.line.is_empty() && !self.cr
    }

    /// Feeds bytes. Returns how many were consumed and, once the reply is
    /// complete, the reply; bytes after it are left unconsumed (they belong
    /// to the next reply). Slice data is appended to `out`, at most as many
    /// bytes as were consumed.
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Option<Reply>), ReplyError> {
        if self.state == State::Failed {
            return Err(ReplyError::AfterError);
        }
        let mut pos = 0;
        match self.run(input, &mut pos, out) {
            Ok(reply) => Ok((pos, reply)),
            Err(err) => {
                self.state = State::Failed;
                Err(err)
            }
        }
    }

    /// Takes the listing or `help` lines decoded so far, so that a reader
    /// can handle them as they arrive: memory then stays bounded however
    /// long the reply is. The final [`Reply::Lines`] holds only the lines
    /// not taken before.
    ///
    /// ```
    /// use hftp_proto::reply::{Expect, Reply, ReplyDecoder};
    /// let mut dec = ReplyDecoder::new(Expect::Listing);
    /// let (_, reply) = dec.feed(b"0 OK\r\na.txt\r\nb.txt\r\n", &mut Vec::new()).unwrap();
    /// assert_eq!((reply, dec.take_lines()), (None, vec!["a.txt".to_owned(), "b.txt".to_owned()]));
    /// let (_, reply) = dec.feed(b"c.txt\r\n\r\n", &mut Vec::new()).unwrap();
    /// assert_eq!(reply, Some(Reply::Lines(vec!["c.txt".to_owned()])));
    /// ```
    pub fn take_lines(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lines)
    }

    /// How many lines of the current listing or `help` reply were decoded,
    /// taken or not.
    pub fn lines_seen(&self) -> u64 {
        self.lines_seen
    }

    /// The error to report when the connection ends now.
    pub fn eof(&self) -> ReplyError {
        let (part, detail) = match self.state {
            State::Status if self.is_idle() => (Part::StatusLine, "no reply at all".to_owned()),
            State::Status => (
                Part::StatusLine,
                format!("after \"{}\"", escape(&self.line)),
            ),
            State::Lines => (
                self.lines_part(),
                format!("after {} line(s), before the empty line", self.lines_seen),
            ),
            State::Size => (Part::Size, "before its CRLF".to_owned()),
            State::Header => (Part::ContentLength, "before its CRLF".to_owned()),
            State::HeaderEnd => (Part::HeaderEnd, "before it".to_owned()),
            State::Raw => {
                let size = self.slice_size();
                (
                    Part::RawBody,
                    format!("after {} of {size} bytes", size - self.remaining),
                )
            }
            State::Base64 => {
                let total = base64_len(self.slice_size());
                (
                    Part::Base64Body,
                    format!(
                        "after {} of {total} characters",
                        self.done_chars + self.quad_len as u64
                    ),
                )
            }
            State::Base64End(_) => (Part::Base64Body, "before the CRLF ending it".to_owned()),
            State::Done | State::Failed => (Part::StatusLine, "no reply at all".to_owned()),
        };
        ReplyError::Truncated { part, detail }
    }

    fn slice_size(&self) -> u64 {
        match self.expect {
            Expect::Slice { size, .. } => size,
            _ => 0,
        }
    }

    fn lines_part(&self) -> Part {
        if self.expect == Expect::Help {
            Part::HelpLine
        } else {
            Part::ListingLine
        }
    }

    /// Collects one line; `Some` once its CRLF arrived (CRLF not included).
    fn take_line(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        part: Part,
        max: usize,
    ) -> Result<Option<Vec<u8>>, ReplyError> {
        while *pos < input.len() {
            let b = input[*pos];
            *pos += 1;
            if self.cr {
                if b != b'\n' {
                    return Err(ReplyError::BadEol { part, byte: b'\r' });
                }
                self.cr = false;
                return Ok(Some(std::mem::take(&mut self.line)));
            }
            match b {
                b'\r' => self.cr = true,
                b'\n' => return Err(ReplyError::BadEol { part, byte: b }),
                _ if self.line.len() >= max => return Err(ReplyError::LineTooLong { part, max }),
                _ => self.line.push(b),
            }
        }
        Ok(None)
    }

    fn run(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        out: &mut Vec<u8>,
    ) -> Result<Option<Reply>, ReplyError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Failed => return Err(ReplyError::AfterError),
                State::Status => {
                    let Some(line) =
                        self.take_line(input, pos, Part::StatusLine, MAX_STATUS_LINE)?
                    else {
                        return Ok(None);
                    };
                    let status = Status::ALL
                        .into_iter()
                        .find(|s| s.line().strip_suffix(b"\r\n") == Some(&line[..]))
                        .ok_or_else(|| ReplyError::UnknownStatus(escape(&line)))?;
                    if status != Status::Ok {
                        self.state = State::Done;
                        return Ok(Some(Reply::Error(status)));
                    }
                    match self.expect {
                        Expect::Listing | Expect::Help => self.state = State::Lines,
                        Expect::Metadata => self.state = State::Size,
                        Expect::Quit => {
                            self.state = State::Done;
                            return Ok(Some(Reply::Ok));
                        }
                        Expect::Slice {
                            mode: SliceMode::Raw,
                            ..
                        } => self.state = State::Header,
                        Expect::Slice {
                            mode: SliceMode::Base64,
                            size,
                        } => {
                            self.remaining = base64_len(size);
                            self.state = if self.remaining == 0 {
                                State::Base64End(false)
                            } else {
                                State::Base64
                            };
                        }
                    }
                }
                State::Lines => {
                    let part = self.lines_part();
                    let max = if part == Part::HelpLine {
                        MAX_HELP_LINE
                    } else {
                        MAX_NAME_LEN
                    };
                    let Some(line) = self.take_line(input, pos, part, max)? else {
                        return Ok(None);
                    };
                    if line.is_empty() {
                        self.state = State::Done;
                        return Ok(Some(Reply::Lines(std::mem::take(&mut self.lines))));
                    }
                    let text = String::from_utf8(line)
                        .map_err(|e| bad_line(part, e.as_bytes(), "not ASCII"))?;
                    if part == Part::HelpLine {
                        if !text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                            return Err(bad_line(part, text.as_bytes(), "not a command name"));
                        }
                    } else if FileName::new(&text).is_err() {
                        return Err(bad_line(part, text.as_bytes(), "not a valid file name"));
                    }
                    self.lines.push(text);
                    self.lines_seen += 1;
                }
                State::Size => {
                    let Some(line) = self.take_line(input, pos, Part::Size, MAX_SIZE_LINE)? else {
                        return Ok(None);
                    };
                    let size =
                        parse_decimal(&line).map_err(|why| bad_line(Part::Size, &line, why))?;
                    self.state = State::Done;
                    return Ok(Some(Reply::Size(size)));
                }
                State::Header => {
                    let Some(line) =
                        self.take_line(input, pos, Part::ContentLength, MAX_HEADER_LINE)?
                    else {
                        return Ok(None);
                    };
                    let digits = line.strip_prefix(b"Content-Length: ").ok_or_else(|| {
                        bad_line(
                            Part::ContentLength,
                            &line,
                            "expected \"Content-Length: SIZE\"",
                        )
                    })?;
                    let got = parse_decimal(digits)
                        .map_err(|why| bad_line(Part::ContentLength, &line, why))?;
                    let expected = self.slice_size();
                    if got != expected {
                        return Err(ReplyError::WrongLength { expected, got });
                    }
                    self.remaining = got;
                    self.state = State::HeaderEnd;
                }
                State::HeaderEnd => {
                    let Some(line) = self.take_line(input, pos, Part::HeaderEnd, 0)? else {
                        return Ok(None);
                    };
                    debug_assert!(line.is_empty());
                    self.state = State::Raw;
                }
                State::Raw => {
                    let avail = (input.len() - *pos) as u64;
                    let n = avail.min(self.remaining) as usize;
                    if self.discard_raw {
                        self.discarded += n as u64;
                    } else {
                        out.extend_from_slice(&input[*pos..*pos + n]);
                    }
                    *pos += n;
                    self.remaining -= n as u64;
                    if self.remaining > 0 {
                        return Ok(None);
                    }
                    self.state = State::Done;
                    return Ok(Some(Reply::Slice {
                        len: self.slice_size(),
                    }));
                }
                State::Base64 => {
                    self.base64(input, pos, out)?;
                    if self.remaining > 0 {
                        return Ok(None);
                    }
                    self.state = State::Base64End(false);
                }
                State::Base64End(after_cr) => {
                    let Some(&b) = input.get(*pos) else {
                        return Ok(None);
                    };
                    *pos += 1;
                    let want = if after_cr { b'\n' } else { b'\r' };
                    if b != want {
                        return Err(if after_cr {
                            ReplyError::BadEol {
                                part: Part::Base64Body,
                                byte: b'\r',
                            }
                        } else if b == b'\n' {
                            ReplyError::BadEol {
                                part: Part::Base64Body,
                                byte: b,
                            }
                        } else {
                            ReplyError::MissingCrlf {
                                part: Part::Base64Body,
                                byte: b,
                            }
                        });
                    }
                    if after_cr {
                        self.state = State::Done;
                        return Ok(Some(Reply::Slice {
                            len: self.slice_size(),
                        }));
                    }
                    self.state = State::Base64End(true);
                }
            }
        }
    }

    /// Consumes base64 characters (never more than remain), decoding whole
    /// quanta into `out` and keeping a partial one in `quad`.
    fn base64(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ReplyError> {
        while self.remaining > 0 && *pos < input.len() {
            if self.quad_len > 0 || (input.len() - *pos) < 4 {
                let n = (4 - self.quad_len).min(input.len() - *pos);
                for &b in &input[*pos..*pos + n] {
                    // Checked now, so that an error does not wait for bytes
                    // that may never come.
                    if let Some(err) = self.check_byte(self.done_chars + self.quad_len as u64, b) {
                        return Err(err);
                    }
                    self.quad[self.quad_len] = b;
                    self.quad_len += 1;
                    *pos += 1;
                }
                if self.quad_len == 4 {
                    let quad = self.quad;
                    self.quad_len = 0;
                    self.decode_quanta(&quad, out)?;
                }
                continue;
            }
            let avail = ((input.len() - *pos) as u64).min(self.remaining);
            let n = (avail - avail % 4) as usize;
            let chunk = &input[*pos..*pos + n];
            *pos += n;
            self.decode_quanta(chunk, out)?;
        }
        Ok(())
    }

    /// Decodes whole quanta; `chunk.len()` is a multiple of 4, at most
    /// `self.remaining`.
    fn decode_quanta(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), ReplyError> {
        let size = self.slice_size();
        let is_last = chunk.len() as u64 == self.remaining;
        let expected = if is_last {
            // Bytes still to come: those of this chunk.
            let before = self.done_chars / 4 * 3;
            (size - before) as usize
        } else {
            chunk.len() / 4 * 3
        };
        let start = out.len();
        // Decoded into the spare capacity: zeroing it first would cost a
        // pass over every byte.
        out.reserve(chunk.len() / 4 * 3);
        let ok = if !is_last && chunk.last() == Some(&b'=') {
            false
        } else {
            let spare = &mut out.spare_capacity_mut()[..chunk.len() / 4 * 3];
            match base64_simd::STANDARD.decode(chunk, base64_simd::Out::from_uninit_slice(spare)) {
                Ok(decoded) => decoded.len() == expected,
                Err(_) => false,
            }
        };
        if !ok {
            return Err(self.explain(chunk));
        }
        // SAFETY: the decoder wrote `expected` bytes (checked above) at
        // the start of the spare capacity.
        unsafe { out.set_len(start + expected) };
        self.done_chars += chunk.len() as u64;
        self.remaining -= chunk.len() as u64;
        Ok(())
    }

    /// Finds the first byte of `chunk` that is wrong where it stands. Slow:
    /// only called on error, and gives the same answer whatever the split.
    fn explain(&self, chunk: &[u8]) -> ReplyError {
        chunk
            .iter()
            .enumerate()
            .find_map(|(i, &b)| self.check_byte(self.done_chars + i as u64, b))
            .unwrap_or(ReplyError::Base64NonCanonical {
                offset: self.done_chars + chunk.len() as u64 - 4,
            })
    }

    /// Whether byte `b` may stand at `offset` of the base64 line.
    fn check_byte(&self, offset: u64, b: u8) -> Option<ReplyError> {
        let total = base64_len(self.slice_size());
        let padding = match self.slice_size() % 3 {
            0 => 0,
            1 => 2,
            _ => 1,
        };
        let in_padding = offset >= total - padding;
        let alphabet = b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
        let why = match b {
            b'\r' => "the line ended early",
            b'=' if !in_padding => "'=' padding before the end of the data",
            b'=' => return None,
            _ if in_padding && alphabet => "expected '=' padding here",
            _ if alphabet => return None,
            _ => "not in the base64 alphabet",
        };
        Some(ReplyError::Base64Byte {
            offset,
            byte: b,
            why,
        })
    }
}

fn bad_line(part: Part, line: &[u8], why: &'static str) -> ReplyError {
    ReplyError::BadLine {
        part,
        line: escape(line),
        why,
    }
}

/// A canonical decimal: digits only, no leading zero (except `0` itself),
/// fitting in 64 bits.
fn parse_decimal(digits: &[u8]) -> Result<u64, &'static str> {
    if digits.is_empty() {
        return Err("empty number");
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err("not a decimal number");
    }
    if digits.len() > 1 && digits[0] == b'0' {
        return Err("leading zero");
    }
    digits
        .iter()
        .try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or("more than 64 bits")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response;
    use proptest::prelude::*;

    fn decode(expect: Expect, wire: &[u8]) -> Result<(usize, Reply, Vec<u8>), ReplyError> {
        let mut dec = ReplyDecoder::new(expect);
        let mut out = Vec::new();
        match dec.feed(wire, &mut out)? {
            (used, Some(reply)) => Ok((used, reply, out)),
            (used, None) => {
                assert_eq!(used, wire.len());
                Err(dec.eof())
            }
        }
    }

    /// Feeds `wire` cut at `cuts`, then reports EOF if the reply is incomplete.
    fn decode_split(
        expect: Expect,
        wire: &[u8],
        cuts: &[usize],
    ) -> Result<(usize, Reply, Vec<u8>), ReplyError> {
        let mut dec = ReplyDecoder::new(expect);
        let mut out = Vec::new();
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        bounds.push(0);
        bounds.push(wire.len());
        bounds.sort_unstable();
        let mut consumed = 0;
        for w in bounds.windows(2) {
            let mut piece = &wire[w[0]..w[1]];
            while !piece.is_empty() {
                let (used, reply) = dec.feed(piece, &mut out)?;
                consumed += used;
                if let Some(reply) = reply {
                    return Ok((consumed, reply, out));
                }
                assert_eq!(used, piece.len());
                piece = &piece[used..];
            }
        }
        Err(dec.eof())
    }

    fn b64(size: u64) -> Expect {
        Expect::Slice {
            mode: SliceMode::Base64,
            size,
        }
    }

    fn raw(size: u64) -> Expect {
        Expect::Slice {
            mode: SliceMode::Raw,
            size,
        }
    }

    fn slice_wire(data: &[u8], mode: SliceMode) -> Vec<u8> {
        let mut wire = Vec::new();
        response::write_slice_head(&mut wire, mode, data.len() as u64);
        match mode {
            SliceMode::Base64 => response::encode_base64(data, &mut wire),
            SliceMode::Raw => wire.extend_from_slice(data),
        }
        wire.extend_from_slice(response::slice_tail(mode));
        wire
    }

    #[test]
    fn discarded_raw_bytes_are_counted_not_copied() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = slice_wire(&data, SliceMode::Raw);
        wire.extend_from_slice(b"0 OK\r\n");
        let mut dec = ReplyDecoder::new(raw(5000));
        dec.discard_raw(true);
        let mut out = Vec::new();
        let (used, reply) = dec.feed(&wire[..3000], &mut out).unwrap();
        assert_eq!((used, reply), (3000, None));
        let (used, reply) = dec.feed(&wire[3000..], &mut out).unwrap();
        assert_eq!(reply, Some(Reply::Slice { len: 5000 }));
        assert_eq!(3000 + used, wire.len() - 6, "the next reply is left");
        assert!(out.is_empty());
        assert_eq!(dec.take_discarded(), 5000);
        assert_eq!(dec.take_discarded(), 0);
        // Kept across replies; a short body is still an error.
        dec.reset(raw(10));
        let short = slice_wire(&data[..10], SliceMode::Raw);
        let (used, reply) = dec.feed(&short[..short.len() - 2], &mut out).unwrap();
        assert_eq!((used, reply), (short.len() - 2, None));
        assert_eq!(dec.take_discarded(), 8);
        assert!(matches!(dec.eof(), ReplyError::Truncated { .. }));
        assert!(out.is_empty());
    }

    #[test]
    fn spec_examples() {
        let wire = b"0 OK\r\nfoto.jpg\r\nhola.txt\r\n\r\n";
        let lines = vec!["foto.jpg".to_owned(), "hola.txt".to_owned()];
        assert_eq!(
            decode(Expect::Listing, wire),
            Ok((wire.len(), Reply::Lines(lines), vec![]))
        );
        assert_eq!(
            decode(Expect::Listing, b"0 OK\r\n\r\n").unwrap().1,
            Reply::Lines(vec![])
        );
        assert_eq!(
            decode(Expect::Metadata, b"0 OK\r\n32\r\n").unwrap().1,
            Reply::Size(32)
        );
        assert_eq!(
            decode(Expect::Metadata, b"0 OK\r\n0\r\n").unwrap().1,
            Reply::Size(0)
        );
        let (_, reply, out) = decode(b64(5), b"0 OK\r\nUXVlIGM=\r\n").unwrap();
        assert_eq!((reply, &out[..]), (Reply::Slice { len: 5 }, &b"Que c"[..]));
        let (_, reply, out) = decode(raw(5), b"0 OK\r\nContent-Length: 5\r\n\r\nQue c").unwrap();
        assert_eq!((reply, &out[..]), (Reply::Slice { len: 5 }, &b"Que c"[..]));
        let (_, reply, out) = decode(b64(0), b"0 OK\r\n\r\n").unwrap();
        assert_eq!((reply, out.len()), (Reply::Slice { len: 0 }, 0));
        let (_, reply, _) = decode(raw(0), b"0 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(reply, Reply::Slice { len: 0 });
        for s in Status::ALL.into_iter().filter(|&s| s != Status::Ok) {
            for expect in [
                Expect::Listing,
                Expect::Metadata,
                b64(3),
                raw(3),
                Expect::Quit,
            ] {
                assert_eq!(decode(expect, s.line()).unwrap().1, Reply::Error(s));
            }
        }
        assert_eq!(decode(Expect::Quit, b"0 OK\r\n").unwrap().1, Reply::Ok);
        let mut help = Vec::new();
        response::write_help(&mut help);
        let names: Vec<String> = crate::COMMANDS.iter().map(|c| c.to_string()).collect();
        assert_eq!(decode(Expect::Help, &help).unwrap().1, Reply::Lines(names));
    }

    #[test]
    fn leaves_the_next_reply_alone() {
        let wire = b"0 OK\r\n32\r\n202 FILE NOT FOUND\r\n";
        let mut dec = ReplyDecoder::new(Expect::Metadata);
        let mut out = Vec::new();
        assert_eq!(dec.feed(wire, &mut out), Ok((10, Some(Reply::Size(32)))));
        dec.reset(Expect::Metadata);
        assert_eq!(
            dec.feed(&wire[10..], &mut out),
            Ok((20, Some(Reply::Error(Status::FileNotFound))))
        );
        let wire = b"0 OK\r\nContent-Length: 2\r\n\r\nab0 OK\r\n";
        let mut dec = ReplyDecoder::new(raw(2));
        assert_eq!(
            dec.feed(wire, &mut out),
            Ok((29, Some(Reply::Slice { len: 2 })))
        );
        assert_eq!(out, b"ab");
    }

    #[test]
    fn rejections() {
        use ReplyError::*;
        let cases: Vec<(Expect, &[u8], ReplyError)> = vec![
            (Expect::Quit, b"0 ok\r\n", UnknownStatus("0 ok".into())),
            (Expect::Quit, b"0 OK \r\n", UnknownStatus("0 OK ".into())),
            (
                Expect::Quit,
                b"204 WHATEVER\r\n",
                UnknownStatus("204 WHATEVER".into()),
            ),
            (
                Expect::Quit,
                b"0 OK\n",
                BadEol {
                    part: Part::StatusLine,
                    byte: b'\n',
                },
            ),
            (
                Expect::Quit,
                b"0 OK\rx",
                BadEol {
                    part: Part::StatusLine,
                    byte: b'\r',
                },
            ),
            (
                Expect::Quit,
                &[b'x'; 41],
                LineTooLong {
                    part: Part::StatusLine,
                    max: 40,
                },
            ),
            (
                Expect::Metadata,
                b"0 OK\r\n032\r\n",
                BadLine {
                    part: Part::Size,
                    line: "032".into(),
                    why: "leading zero",
                },
            ),
            (
                Expect::Metadata,
                b"0 OK\r\n\r\n",
                BadLine {
                    part: Part::Size,
                    line: "".into(),
                    why: "empty number",
                },
            ),
            (
                Expect::Metadata,
                b"0 OK\r\n-1\r\n",
                BadLine {
                    part: Part::Size,
                    line: "-1".into(),
                    why: "not a decimal number",
                },
            ),
            (
                Expect::Metadata,
                b"0 OK\r\n18446744073709551616\r\n",
                BadLine {
                    part: Part::Size,
                    line: "18446744073709551616".into(),
                    why: "more than 64 bits",
                },
            ),
            (
                Expect::Listing,
                b"0 OK\r\na b\r\n\r\n",
                BadLine {
                    part: Part::ListingLine,
                    line: "a b".into(),
                    why: "not a valid file name",
                },
            ),
            (
                Expect::Listing,
                b"0 OK\r\n..\r\n\r\n",
                BadLine {
                    part: Part::ListingLine,
                    line: "..".into(),
                    why: "not a valid file name",
                },
            ),
            (
                Expect::Listing,
                b"0 OK\r\n\xc3\xa9\r\n\r\n",
                BadLine {
                    part: Part::ListingLine,
                    line: "\\xc3\\xa9".into(),
                    why: "not a valid file name",
                },
            ),
            (
                Expect::Help,
                b"0 OK\r\nHELP\r\n\r\n",
                BadLine {
                    part: Part::HelpLine,
                    line: "HELP".into(),
                    why: "not a command name",
                },
            ),
            (
                raw(5),
                b"0 OK\r\nContent-Length: 4\r\n\r\n",
                WrongLength {
                    expected: 5,
                    got: 4,
                },
            ),
            (
                raw(5),
                b"0 OK\r\ncontent-length: 5\r\n",
                BadLine {
                    part: Part::ContentLength,
                    line: "content-length: 5".into(),
                    why: "expected \"Content-Length: SIZE\"",
                },
            ),
            (
                raw(5),
                b"0 OK\r\nContent-Length: 5\r\nx",
                LineTooLong {
                    part: Part::HeaderEnd,
                    max: 0,
                },
            ),
            (
                raw(5),
                b"0 OK\r\nContent-Length: 5\r\n\r\nabc",
                Truncated {
                    part: Part::RawBody,
                    detail: "after 3 of 5 bytes".into(),
                },
            ),
            (
                b64(5),
                b"0 OK\r\nUXVlIGM=",
                Truncated {
                    part: Part::Base64Body,
                    detail: "before the CRLF ending it".into(),
                },
            ),
            (
                b64(5),
                b"0 OK\r\nUXVlIG",
                Truncated {
                    part: Part::Base64Body,
                    detail: "after 6 of 8 characters".into(),
                },
            ),
            (
                b64(5),
                b"0 OK\r\nUXVlIGM=x",
                MissingCrlf {
                    part: Part::Base64Body,
                    byte: b'x',
                },
            ),
            (
                b64(5),
                b"0 OK\r\nUXVlIGM=\n",
                BadEol {
                    part: Part::Base64Body,
                    byte: b'\n',
                },
            ),
            (
                b64(5),
                b"0 OK\r\nUXVlIGM=\rx",
                BadEol {
                    part: Part::Base64Body,
                    byte: b'\r',
                },
            ),
            (
                b64(5),
                b"0 OK\r\nUXVl\r\n",
                Base64Byte {
                    offset: 4,
                    byte: b'\r',
                    why: "the line ended early",
                },
            ),
            (
                b64(5),
                b"0 OK\r\nUX-lIGM=\r\n",
                Base64Byte {
                    offset: 2,
                    byte: b'-',
                    why: "not in the base64 alphabet",
                },
            ),
            (
                b64(5),
                b"0 OK\r\nUXVlIGMA\r\n",
                Base64Byte {
                    offset: 7,
                    byte: b'A',
                    why: "expected '=' padding here",
                },
            ),
            (
                b64(5),
                b"0 OK\r\nUXV=IGM=\r\n",
                Base64Byte {
                    offset: 3,
                    byte: b'=',
                    why: "'=' padding before the end of the data",
                },
            ),
            (
                b64(5),
                b"0 OK\r\nUXVlIG==\r\n",
                Base64Byte {
                    offset: 6,
                    byte: b'=',
                    why: "'=' padding before the end of the data",
                },
            ),
            (
                b64(5),
                b"0 OK\r\nUXVlIGN=\r\n",
                Base64NonCanonical { offset: 4 },
            ),
            (
                b64(1),
                b"0 OK\r\nQR==\r\n",
                Base64NonCanonical { offset: 0 },
            ),
            (
                b64(1),
                b"0 OK\r\nQQ==QQ==\r\n",
                MissingCrlf {
                    part: Part::Base64Body,
                    byte: b'Q',
                },
            ),
            (
                Expect::Listing,
                b"0 OK\r\na\r\n",
                Truncated {
                    part: Part::ListingLine,
                    detail: "after 1 line(s), before the empty line".into(),
                },
            ),
            (
                Expect::Listing,
                b"",
                Truncated {
                    part: Part::StatusLine,
                    detail: "no reply at all".into(),
                },
            ),
        ];
        for (expect, wire, want) in cases {
            assert_eq!(
                decode(expect, wire).map(|r| r.1),
                Err(want.clone()),
                "{}",
                wire.escape_ascii()
            );
            for i in 0..wire.len() {
                assert_eq!(
                    decode_split(expect, wire, &[i]).map(|r| r.1),
                    Err(want.clone()),
                    "{} split at {i}",
                    wire.escape_ascii()
                );
            }
        }
    }

    #[test]
    fn errors_read_well() {
        let err = decode(b64(5), b"0 OK\r\nUXVlIGN=\r\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "base64 slice line: non-canonical final quantum at offset 4 (nonzero padding bits)"
        );
        let err = decode(Expect::Quit, b"0 OK\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "bare '\\n' in the status line (lines end with CRLF)"
        );
    }

    #[test]
    fn after_error_stays_failed() {
        let mut dec = ReplyDecoder::new(Expect::Quit);
        let mut out = Vec::new();
        assert!(dec.feed(b"9 NO\r\n", &mut out).is_err());
        assert_eq!(dec.feed(b"0 OK\r\n", &mut out), Err(ReplyError::AfterError));
    }

    /// A big base64 line fed in small pieces keeps no more than a piece.
    #[test]
    fn big_slice_streams() {
        let data: Vec<u8> = (0..3_000_001u32).map(|i| (i * 31 % 253) as u8).collect();
        let wire = slice_wire(&data, SliceMode::Base64);
        let mut dec = ReplyDecoder::new(b64(data.len() as u64));
        let mut got = Vec::new();
        let mut out = Vec::new();
        let mut reply = None;
        for piece in wire.chunks(4093) {
            let (used, r) = dec.feed(piece, &mut out).unwrap();
            assert_eq!(used, piece.len());
            assert!(out.len() <= piece.len());
            got.extend_from_slice(&out);
            out.clear();
            reply = reply.or(r);
        }
        assert_eq!(
            reply,
            Some(Reply::Slice {
                len: data.len() as u64
            })
        );
        assert!(got == data);
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_slice(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            raw_mode in any::<bool>(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mode = if raw_mode { SliceMode::Raw } else { SliceMode::Base64 };
            let wire = slice_wire(&data, mode);
            let expect = Expect::Slice { mode, size: data.len() as u64 };
            let whole = decode(expect, &wire);
            prop_assert_eq!(&whole, &Ok((wire.len(), Reply::Slice { len: data.len() as u64 }, data.clone())));
            prop_assert_eq!(decode_split(expect, &wire, &cuts), whole);
        }

        #[test]
        fn any_split_of_any_bytes_agrees(
            data in proptest::collection::vec(any::<u8>(), 0..60),
            which in 0..5usize,
            flips in proptest::collection::vec((any::<usize>(), prop_oneof![
                Just(b'='), Just(b'\r'), Just(b'\n'), Just(b'A'), Just(b'x'), any::<u8>()
            ]), 0..3),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let size = data.len() as u64;
            let (expect, mut wire) = match which {
                0 => (b64(size), slice_wire(&data, SliceMode::Base64)),
                1 => (raw(size), slice_wire(&data, SliceMode::Raw)),
                2 => {
                    let mut w = Vec::new();
                    response::write_metadata(&mut w, size * 1_000_003);
                    (Expect::Metadata, w)
                }
                3 => {
                    let mut w = Vec::new();
                    response::write_listing(&mut w, ["a.txt", "b", "c-d_e.f"]);
                    (Expect::Listing, w)
                }
                _ => {
                    let mut w = Vec::new();
                    response::write_help(&mut w);
                    (Expect::Help, w)
                }
            };
            if !wire.is_empty() {
                for (at, byte) in flips {
                    let n = wire.len();
                    wire[at % n] = byte;
                }
            }
            let whole = decode(expect, &wire);
            let split = decode_split(expect, &wire, &cuts);
            prop_assert_eq!(split, whole);
        }
    }
}
