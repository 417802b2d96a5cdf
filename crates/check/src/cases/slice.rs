//! Section 5, `get_slice` in base64 mode.

use super::{base64_answer, FILE_NOT_FOUND, OFFSET_EXCEEDS};
use crate::case::{Case, Ctx, Then};
use crate::fixtures::{self, pattern, AWKWARD, BIG_LEN, HOLA, HUGE_LEN};
use crate::outcome::Failure;

/// `get_slice NAME OFFSET SIZE` on the `sizes` fixture, answered `answer`.
fn slice(id: &'static str, request: &str, answer: impl Into<Vec<u8>>) -> Case {
    Case::exchange(id, "5", format!("{request}\r\n"), answer, Then::Open).fixture(fixtures::sizes)
}

/// A slice of `big.bin` answered with its base64.
fn big(id: &'static str, offset: usize, size: usize) -> Case {
    let content = pattern(BIG_LEN);
    slice(
        id,
        &format!("get_slice big.bin {offset} {size}"),
        base64_answer(&content[offset..offset + size]),
    )
}

pub fn cases() -> Vec<Case> {
    let hola = |range: std::ops::Range<usize>| base64_answer(&HOLA[range]);
    vec![
        Case::exchange(
            "slice.spec-example",
            "5",
            "get_slice hola.txt 4 19\r\n",
            b"0 OK\r\nY2Fsb3IgcXVlIGhhY2UgaG95LA==\r\n".as_slice(),
            Then::Open,
        )
        .fixture(fixtures::hola),
        Case::exchange("slice.wire-example", "7", "get_slice hola.txt 0 5\r\n", b"0 OK\r\nUXVlIGM=\r\n".as_slice(), Then::Open)
            .fixture(fixtures::hola),
        Case::exchange("slice.wire-example-203", "7", "get_slice hola.txt 30 3\r\n", OFFSET_EXCEEDS, Then::Open)
            .fixture(fixtures::hola),
        big("slice.start", 0, 1000),
        big("slice.middle", 50_000, 777),
        big("slice.end", BIG_LEN - 1001, 1001),
        big("slice.whole-big", 0, BIG_LEN),
        big("slice.one-byte", 61_729, 1),
        slice("slice.size-zero", "get_slice hola.txt 0 0", b"0 OK\r\n\r\n".as_slice()),
        slice("slice.size-zero-mid", "get_slice hola.txt 7 0", b"0 OK\r\n\r\n".as_slice()),
        slice("slice.offset-at-end-size-zero", "get_slice hola.txt 32 0", b"0 OK\r\n\r\n".as_slice()),
        slice("slice.empty-file-size-zero", "get_slice empty.bin 0 0", b"0 OK\r\n\r\n".as_slice()),
        slice("slice.empty-file-one-byte", "get_slice empty.bin 0 1", OFFSET_EXCEEDS),
        slice("slice.to-exact-end", "get_slice hola.txt 0 32", hola(0..32)),
        slice("slice.tail-to-exact-end", "get_slice hola.txt 31 1", hola(31..32)),
        slice("slice.one-past-end", "get_slice hola.txt 0 33", OFFSET_EXCEEDS),
        slice("slice.shifted-past-end", "get_slice hola.txt 1 32", OFFSET_EXCEEDS),
        slice("slice.offset-past-end", "get_slice hola.txt 33 0", OFFSET_EXCEEDS),
        slice("slice.digits-beyond-64-bits", "get_slice hola.txt 99999999999999999999999999 1", OFFSET_EXCEEDS),
        slice("slice.size-beyond-64-bits", "get_slice hola.txt 0 18446744073709551616", OFFSET_EXCEEDS),
        slice("slice.sum-overflows-64-bits", "get_slice hola.txt 18446744073709551615 1", OFFSET_EXCEEDS),
        slice("slice.sum-overflows-64-bits-2", "get_slice hola.txt 1 18446744073709551615", OFFSET_EXCEEDS),
        slice(
            "slice.both-max-64-bits",
            "get_slice hola.txt 18446744073709551615 18446744073709551615",
            OFFSET_EXCEEDS,
        ),
        slice("slice.leading-zeros", "get_slice hola.txt 0004 00019", hola(4..23)),
        slice(
            "slice.many-leading-zeros",
            "get_slice hola.txt 000000000000000000000000000004 000000000000000000000000000000000019",
            hola(4..23),
        ),
        slice("slice.zero-zero-zero", "get_slice hola.txt 000 000", b"0 OK\r\n\r\n".as_slice()),
        slice("slice.absent-file", "get_slice nope.txt 0 1", FILE_NOT_FOUND),
        slice("slice.nul-cr-lf-in-content", &format!("get_slice awkward.bin 0 {}", AWKWARD.len()), base64_answer(AWKWARD)),
        Case::custom(
            "slice.all-bytes-32mib",
            "5",
            "a 32 MiB file holding every byte value, fetched whole in base64, equals the file",
            all_bytes_base64,
        )
        .fixture(fixtures::huge),
    ]
}

fn all_bytes_base64(ctx: &Ctx) -> Result<(), Failure> {
    let mut conn = ctx.connect()?;
    conn.send(format!("get_slice all.bin 0 {HUGE_LEN}\r\n").as_bytes())?;
    conn.expect(&base64_answer(&pattern(HUGE_LEN)))?;
    conn.expect_open()
}
