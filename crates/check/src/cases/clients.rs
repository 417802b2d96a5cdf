//! Section 6: many clients at once; idle, stalled or vanishing clients must
//! not affect the others.

use super::{listing_answer, metadata_answer};
use crate::case::{Case, Ctx};
use crate::fixtures::{self, HUGE_LEN};
use crate::outcome::Failure;

pub fn cases() -> Vec<Case> {
    vec![
        Case::custom(
            "clients.idle-do-not-block",
            "6",
            "with one client silent and one stopped mid-line, another client is answered; then the stopped one too",
            idle_do_not_block,
        )
        .fixture(fixtures::hola),
        Case::custom(
            "clients.non-reader-does-not-block",
            "6",
            "a client that requests 20 × 32 MiB and reads nothing does not delay another client",
            non_reader_does_not_block,
        )
        .fixture(fixtures::huge),
        Case::custom(
            "clients.vanishing-client",
            "6",
            "clients closing mid-request or mid-answer without `quit` do not disturb the server",
            vanishing_client,
        )
        .fixture(fixtures::huge),
        Case::custom(
            "clients.half-close-still-answered",
            "6",
            "requests sent before the client shuts down its write side (`printf ... | nc`) are answered, then EOF",
            half_closed,
        )
        .fixture(fixtures::hola)
        .direct(),
        Case::custom(
            "clients.ten-interleaved",
            "6",
            "ten connections open at once, requests interleaved, each answered on its own connection",
            ten_interleaved,
        )
        .fixture(fixtures::hola),
    ]
}

fn idle_do_not_block(ctx: &Ctx) -> Result<(), Failure> {
    let _silent = ctx.connect()?;
    let mut stopped = ctx.connect()?;
    stopped.send(b"get_me")?;
    let mut other = ctx.connect()?;
    other.request(
        b"get_file_listing\r\n",
        &listing_answer(&["foto.jpg", "hola.txt"]),
    )?;
    other.expect_open()?;
    stopped.request(b"tadata hola.txt\r\n", &metadata_answer(32))?;
    stopped.expect_open()
}

fn non_reader_does_not_block(ctx: &Ctx) -> Result<(), Failure> {
    let mut stalled = ctx.connect()?;
    stalled.send(
        format!("get_slice all.bin 0 {HUGE_LEN}\r\n")
            .repeat(20)
            .as_bytes(),
    )?;
    let mut other = ctx.connect()?;
    other.request(b"get_metadata all.bin\r\n", &metadata_answer(HUGE_LEN))?;
    other.expect_open()
}

fn vanishing_client(ctx: &Ctx) -> Result<(), Failure> {
    let mut mid_request = ctx.connect()?;
    mid_request.send(b"get_metadata all")?;
    drop(mid_request);
    let mut mid_answer = ctx.connect()?;
    mid_answer.send(format!("get_slice all.bin 0 {HUGE_LEN}\r\n").as_bytes())?;
    mid_answer.expect(b"0 OK\r\n")?;
    drop(mid_answer);
    let mut other = ctx.connect()?;
    other.request(b"get_metadata all.bin\r\n", &metadata_answer(HUGE_LEN))?;
    other.expect_open()
}

fn half_closed(ctx: &Ctx) -> Result<(), Failure> {
    let mut conn = ctx.connect()?;
    conn.send(b"get_metadata hola.txt\r\nget_slice hola.txt 0 5\r\n")?;
    conn.shutdown_write();
    conn.expect(b"0 OK\r\n32\r\n0 OK\r\nUXVlIGM=\r\n")?;
    conn.expect_eof()
}

fn ten_interleaved(ctx: &Ctx) -> Result<(), Failure> {
    let mut conns = (0..10)
        .map(|_| ctx.connect())
        .collect::<Result<Vec<_>, _>>()?;
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send(format!("get_slice hola.txt {i} 0\r\nget_metadata hola.txt\r\n").as_bytes())?;
    }
    for conn in conns.iter_mut().rev() {
        conn.expect(b"0 OK\r\n\r\n0 OK\r\n32\r\n")?;
        conn.expect_open()?;
    }
    Ok(())
}
