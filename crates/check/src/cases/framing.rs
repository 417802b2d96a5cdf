//! Sections 1–2: fragmentation, pipelining, line ends and the line limit.

use std::time::Duration;

use super::{BAD_EOL, BAD_REQUEST, FILE_NOT_FOUND, NO_SUCH_COMMAND, OFFSET_EXCEEDS};
use crate::case::{Case, Ctx, Then};
use crate::fixtures;
use crate::outcome::Failure;

/// Pause between the writes of a fragmented request.
const PAUSE: Duration = Duration::from_millis(20);
/// The server's default request-line limit.
const DEFAULT_LIMIT: usize = 8 << 20;

const PIPELINE_5: &[u8] = b"get_metadata hola.txt\r\nget_slice hola.txt 0 5\r\nverdura\r\n\
get_slice hola.txt 30 3\r\nget_file_listing\r\n";

pub fn cases() -> Vec<Case> {
    let pipeline_answers = [
        b"0 OK\r\n32\r\n".as_slice(),
        b"0 OK\r\nUXVlIGM=\r\n",
        NO_SUCH_COMMAND,
        OFFSET_EXCEEDS,
        b"0 OK\r\nfoto.jpg\r\nhola.txt\r\n\r\n",
    ]
    .concat();
    let long_lf = [b"get_metadata ".as_slice(), &[b'x'; 100 * 1024], b"\n"].concat();
    vec![
        Case::custom(
            "frag.one-byte-at-a-time",
            "1",
            "`get_slice hola.txt 4 19\\r\\n` sent one byte per write, 20 ms apart → \
             `0 OK\\r\\nY2Fsb3IgcXVlIGhhY2UgaG95LA==\\r\\n`",
            one_byte_at_a_time,
        )
        .fixture(fixtures::hola),
        Case::custom(
            "frag.crlf-split",
            "2",
            "`get_metadata hola.txt\\r`, then `\\n` in a later write → `0 OK\\r\\n32\\r\\n` (a split CRLF is valid)",
            crlf_split,
        )
        .fixture(fixtures::hola),
        Case::exchange("frag.pipelined-5", "1", PIPELINE_5, pipeline_answers, Then::Open).fixture(fixtures::hola),
        Case::custom(
            "frag.pipelined-1000",
            "1",
            "1000 × `get_metadata hola.txt\\r\\n` in one write → 1000 × `0 OK\\r\\n32\\r\\n`",
            pipelined_1000,
        )
        .fixture(fixtures::hola),
        Case::exchange("eol.lf-alone", "2", "quit\n", BAD_EOL, Then::Closed),
        Case::exchange("eol.lf-only-line", "2", "\n", BAD_EOL, Then::Closed),
        Case::exchange("eol.lf-mid-line", "2", "get_me\ntadata hola.txt\r\n", BAD_EOL, Then::Closed),
        Case::exchange("eol.lf-after-long-line", "2", long_lf, BAD_EOL, Then::Closed),
        Case::exchange("eol.cr-alone", "2", "quit\rx", BAD_EOL, Then::Closed),
        Case::exchange("eol.cr-cr-lf", "2", "quit\r\r\n", BAD_EOL, Then::Closed),
        Case::exchange("eol.cr-at-start", "2", "\rquit\r\n", BAD_EOL, Then::Closed),
        Case::exchange("eol.lf-cr", "2", "quit\n\r", BAD_EOL, Then::Closed),
        Case::exchange(
            "eol.after-good-request",
            "2",
            "verdura\r\nquit\n",
            [NO_SUCH_COMMAND, BAD_EOL].concat(),
            Then::Closed,
        ),
        Case::custom(
            "limit.name-5mib",
            "2",
            "`get_metadata` + a 5 MiB name of `x` → `202 FILE NOT FOUND\\r\\n`, and `quit` → `0 OK\\r\\n`, EOF",
            name_5mib,
        ),
        Case::custom(
            "limit.over-default-8mib",
            "2",
            "8 MiB + 1 KiB without CRLF → `101 BAD REQUEST\\r\\n` as soon as the limit is passed, then EOF",
            over_limit,
        ),
    ]
}

fn one_byte_at_a_time(ctx: &Ctx) -> Result<(), Failure> {
    let mut conn = ctx.connect()?;
    conn.send_bytewise(b"get_slice hola.txt 4 19\r\n", PAUSE)?;
    conn.expect(b"0 OK\r\nY2Fsb3IgcXVlIGhhY2UgaG95LA==\r\n")?;
    conn.expect_open()
}

fn crlf_split(ctx: &Ctx) -> Result<(), Failure> {
    let mut conn = ctx.connect()?;
    conn.send(b"get_metadata hola.txt\r")?;
    std::thread::sleep(PAUSE);
    conn.send(b"\n")?;
    conn.expect(b"0 OK\r\n32\r\n")?;
    conn.expect_open()
}

fn pipelined_1000(ctx: &Ctx) -> Result<(), Failure> {
    let mut conn = ctx.connect()?;
    conn.send(&b"get_metadata hola.txt\r\n".repeat(1000))?;
    conn.expect(&b"0 OK\r\n32\r\n".repeat(1000))?;
    conn.expect_open()
}

fn name_5mib(ctx: &Ctx) -> Result<(), Failure> {
    let mut conn = ctx.connect()?;
    let line = [b"get_metadata ".as_slice(), &vec![b'x'; 5 << 20], b"\r\n"].concat();
    let writer = conn.send_in_background(line)?;
    conn.expect(FILE_NOT_FOUND)?;
    writer.join().ok();
    conn.expect_open()
}

fn over_limit(ctx: &Ctx) -> Result<(), Failure> {
    let mut conn = ctx.connect()?;
    let mut line = b"get_metadata ".to_vec();
    line.resize(DEFAULT_LIMIT + 1024, b'x');
    let writer = conn.send_in_background(line)?;
    let answer = conn.expect(BAD_REQUEST).and_then(|()| conn.expect_eof());
    writer.join().ok();
    answer
}
