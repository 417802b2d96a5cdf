//! The catalogue of cases, one module per area of the spec. Expected answers
//! are written as literal bytes; only base64 of fixture content is computed.

use crate::b64;
use crate::case::Case;

mod clients;
mod errors;
mod framing;
mod listing;
mod live;
mod metadata;
mod names;
mod raw;
mod session;
mod slice;
mod syntax;

/// Every case, in the order they run.
pub fn all() -> Vec<Case> {
    [
        framing::cases(),
        syntax::cases(),
        names::cases(),
        listing::cases(),
        metadata::cases(),
        slice::cases(),
        raw::cases(),
        session::cases(),
        errors::cases(),
        live::cases(),
        clients::cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

// The status lines of section 3, byte for byte.
const OK: &[u8] = b"0 OK\r\n";
const BAD_EOL: &[u8] = b"100 BAD EOL\r\n";
const BAD_REQUEST: &[u8] = b"101 BAD REQUEST\r\n";
const INTERNAL_ERROR: &[u8] = b"199 INTERNAL SERVER ERROR\r\n";
const NO_SUCH_COMMAND: &[u8] = b"200 NO SUCH COMMAND\r\n";
const INVALID_ARGUMENTS: &[u8] = b"201 INVALID ARGUMENTS FOR COMMAND\r\n";
const FILE_NOT_FOUND: &[u8] = b"202 FILE NOT FOUND\r\n";
const OFFSET_EXCEEDS: &[u8] = b"203 OFFSET EXCEEDS FILE SIZE\r\n";

/// A name that no fixture creates and no sane served directory holds.
const ABSENT: &str = "hftp-check-absent.bin";

/// `0 OK\r\n` + base64 of `content` + `\r\n`.
fn base64_answer(content: &[u8]) -> Vec<u8> {
    [OK, &b64::encode(content), b"\r\n"].concat()
}

/// `0 OK\r\nContent-Length: N\r\n\r\n` + `content`.
fn raw_answer(content: &[u8]) -> Vec<u8> {
    [
        OK,
        format!("Content-Length: {}\r\n\r\n", content.len()).as_bytes(),
        content,
    ]
    .concat()
}

/// `0 OK\r\n` + one line per name + the empty line.
fn listing_answer<S: AsRef<str>>(names: &[S]) -> Vec<u8> {
    let mut answer = OK.to_vec();
    for name in names {
        answer.extend_from_slice(name.as_ref().as_bytes());
        answer.extend_from_slice(b"\r\n");
    }
    answer.extend_from_slice(b"\r\n");
    answer
}

/// `0 OK\r\n` + `size` + `\r\n`.
fn metadata_answer(size: usize) -> Vec<u8> {
    format!("0 OK\r\n{size}\r\n").into_bytes()
}
