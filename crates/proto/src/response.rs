//! Response encoding (spec sections 3 and 5): everything a server writes.
//!
//! Slices are produced in chunks so that memory never grows with `SIZE`:
//! the driver reads up to [`BASE64_CHUNK`] bytes of the file at a time (a
//! multiple of 3, so the concatenated encodings form one valid base64 string)
//! and appends their encoding with [`encode_base64`].

use crate::request::{SliceMode, COMMANDS};
use crate::status::Status;

/// Input bytes per base64 chunk: a multiple of 3, encoding to 64 KiB.
pub const BASE64_CHUNK: usize = 48 * 1024;

/// Appends the status line of `status`.
pub fn write_status(out: &mut Vec<u8>, status: Status) {
    out.extend_from_slice(status.line());
}

/// Appends a whole `get_file_listing` answer. `names` must already be sorted
/// and valid file names.
pub fn write_listing<'a>(out: &mut Vec<u8>, names: impl IntoIterator<Item = &'a str>) {
    write_status(out, Status::Ok);
    for name in names {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a whole `get_metadata` answer.
pub fn write_metadata(out: &mut Vec<u8>, size: u64) {
    write_status(out, Status::Ok);
    write_decimal(out, size);
    out.extend_from_slice(b"\r\n");
}

/// Appends the whole `help` answer.
pub fn write_help(out: &mut Vec<u8>) {
    write_listing(out, COMMANDS);
}

/// Appends what precedes the slice bytes: `0 OK` and, in raw mode, the
/// `Content-Length` header and its blank line.
pub fn write_slice_head(out: &mut Vec<u8>, mode: SliceMode, size: u64) {
    write_status(out, Status::Ok);
    if mode == SliceMode::Raw {
        out.extend_from_slice(b"Content-Length: ");
        write_decimal(out, size);
        out.extend_from_slice(b"\r\n\r\n");
    }
}

/// What follows the slice bytes: the CRLF ending the base64 line, or nothing.
pub fn slice_tail(mode: SliceMode) -> &'static [u8] {
    match mode {
        SliceMode::Base64 => b"\r\n",
        SliceMode::Raw => b"",
    }
}

/// Appends the standard base64 encoding of `input`. Every chunk but the last
/// of a slice must be a multiple of 3 bytes long.
pub fn encode_base64(input: &[u8], out: &mut Vec<u8>) {
    let b64 = base64_simd::STANDARD;
    let len = b64.encoded_length(input.len());
    out.reserve(len);
    let start = out.len();
    // Encode straight into the spare capacity: no zero-filling first.
    let spare = &mut out.spare_capacity_mut()[..len];
    let written = b64
        .encode(input, base64_simd::Out::from_uninit_slice(spare))
        .len();
    debug_assert_eq!(written, len);
    // SAFETY: `encode` initialised the first `written` spare bytes.
    unsafe { out.set_len(start + written) };
}

/// Number of wire bytes a base64 slice body of `size` bytes takes (no CRLF).
pub fn base64_len(size: u64) -> u64 {
    size.div_ceil(3) * 4
}

fn write_decimal(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        let mut out = Vec::new();
        write_slice_head(&mut out, SliceMode::Base64, 19);
        encode_base64(&b"Que calor que hace hoy, pinocho!"[4..23], &mut out);
        out.extend_from_slice(slice_tail(SliceMode::Base64));
        assert_eq!(out, b"0 OK\r\nY2Fsb3IgcXVlIGhhY2UgaG95LA==\r\n");

        let mut out = Vec::new();
        write_slice_head(&mut out, SliceMode::Raw, 5);
        assert_eq!(out, b"0 OK\r\nContent-Length: 5\r\n\r\n");

        let mut out = Vec::new();
        write_metadata(&mut out, 3199);
        assert_eq!(out, b"0 OK\r\n3199\r\n");
        out.clear();
        write_metadata(&mut out, 0);
        assert_eq!(out, b"0 OK\r\n0\r\n");

        let mut out = Vec::new();
        write_listing(&mut out, ["foto.jpg", "hola.txt"]);
        assert_eq!(out, b"0 OK\r\nfoto.jpg\r\nhola.txt\r\n\r\n");
        out.clear();
        write_listing(&mut out, []);
        assert_eq!(out, b"0 OK\r\n\r\n");

        let mut out = Vec::new();
        write_help(&mut out);
        assert_eq!(
            out,
            b"0 OK\r\nget_file_listing\r\nget_metadata\r\nget_slice\r\nhelp\r\nquit\r\n\r\n"
        );
    }

    #[test]
    fn chunked_base64_is_one_valid_string() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut whole = Vec::new();
        encode_base64(&data, &mut whole);
        let mut chunked = Vec::new();
        for chunk in data.chunks(BASE64_CHUNK) {
            encode_base64(chunk, &mut chunked);
        }
        assert_eq!(whole, chunked);
        assert_eq!(whole.len() as u64, base64_len(data.len() as u64));
    }
}
