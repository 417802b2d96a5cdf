//! Section 5, `get_slice ... raw` (2026 revision): exact framing and bytes.

use super::{metadata_answer, raw_answer, FILE_NOT_FOUND, OFFSET_EXCEEDS};
use crate::case::{Case, Ctx, Then};
use crate::fixtures::{self, pattern, AWKWARD, BIG_LEN, HOLA, HUGE_LEN};
use crate::outcome::Failure;

/// A raw exchange on the `sizes` fixture.
fn raw(id: &'static str, request: &str, answer: impl Into<Vec<u8>>) -> Case {
    Case::exchange(id, "5", format!("{request}\r\n"), answer, Then::Open)
        .fixture(fixtures::sizes)
        .rev2026()
}

pub fn cases() -> Vec<Case> {
    let big = pattern(BIG_LEN);
    vec![
        Case::exchange(
            "raw.wire-example",
            "7",
            "get_slice hola.txt 0 5 raw\r\n",
            b"0 OK\r\nContent-Length: 5\r\n\r\nQue c".as_slice(),
            Then::Open,
        )
        .fixture(fixtures::hola)
        .rev2026(),
        Case::custom(
            "raw.nothing-after-body",
            "5",
            "`get_slice hola.txt 4 19 raw` → header + exactly 19 bytes; the next request's answer follows at once",
            nothing_after_body,
        )
        .fixture(fixtures::hola)
        .rev2026(),
        raw("raw.size-zero", "get_slice hola.txt 0 0 raw", b"0 OK\r\nContent-Length: 0\r\n\r\n".as_slice()),
        raw("raw.offset-at-end-size-zero", "get_slice hola.txt 32 0 raw", b"0 OK\r\nContent-Length: 0\r\n\r\n".as_slice()),
        raw("raw.to-exact-end", "get_slice hola.txt 0 32 raw", raw_answer(HOLA)),
        raw("raw.one-past-end", "get_slice hola.txt 30 3 raw", OFFSET_EXCEEDS),
        raw("raw.beyond-64-bits", "get_slice hola.txt 0 99999999999999999999999 raw", OFFSET_EXCEEDS),
        raw("raw.absent-file", "get_slice nope.txt 0 1 raw", FILE_NOT_FOUND),
        raw("raw.big-middle", "get_slice big.bin 1000 100000 raw", raw_answer(&big[1000..101_000])),
        raw(
            "raw.nul-cr-lf-in-content",
            &format!("get_slice awkward.bin 0 {} raw", AWKWARD.len()),
            raw_answer(AWKWARD),
        ),
        Case::exchange(
            "raw.pipelined",
            "5",
            "get_slice hola.txt 0 5 raw\r\nget_slice hola.txt 5 5 raw\r\nget_slice hola.txt 0 5\r\n",
            [raw_answer(&HOLA[..5]), raw_answer(&HOLA[5..10]), b"0 OK\r\nUXVlIGM=\r\n".to_vec()].concat(),
            Then::Open,
        )
        .fixture(fixtures::hola)
        .rev2026(),
        Case::custom(
            "raw.all-bytes-32mib",
            "5",
            "a 32 MiB file holding every byte value, fetched whole raw, equals the file",
            all_bytes_raw,
        )
        .fixture(fixtures::huge)
        .rev2026(),
    ]
}

fn nothing_after_body(ctx: &Ctx) -> Result<(), Failure> {
    let mut conn = ctx.connect()?;
    conn.request(
        b"get_slice hola.txt 4 19 raw\r\n",
        &raw_answer(&HOLA[4..23]),
    )?;
    // Sent only now: any stray byte after the body would precede this answer.
    conn.request(b"get_metadata hola.txt\r\n", &metadata_answer(HOLA.len()))?;
    conn.expect_open()
}

fn all_bytes_raw(ctx: &Ctx) -> Result<(), Failure> {
    let mut conn = ctx.connect()?;
    conn.send(format!("get_slice all.bin 0 {HUGE_LEN} raw\r\n").as_bytes())?;
    conn.expect(&raw_answer(&pattern(HUGE_LEN)))?;
    conn.expect_open()
}
