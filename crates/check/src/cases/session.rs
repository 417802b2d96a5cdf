//! Sections 3 and 5: `help`, `quit`, and how fatal errors end a connection.

use std::time::Duration;

use super::{BAD_EOL, BAD_REQUEST, OK};
use crate::case::{Case, Ctx, Then};
use crate::outcome::Failure;

/// The spec's bound on EOF after `quit`'s `0 OK`.
const QUIT_EOF: Duration = Duration::from_millis(500);
/// Junk sent after a fatal line: requests that must not be answered.
const JUNK_LEN: usize = 1 << 20;

pub fn cases() -> Vec<Case> {
    vec![
        Case::exchange(
            "help.exact",
            "5",
            "help\r\n",
            b"0 OK\r\nget_file_listing\r\nget_metadata\r\nget_slice\r\nhelp\r\nquit\r\n\r\n".as_slice(),
            Then::Open,
        )
        .rev2026(),
        Case::custom("quit.eof-within-0.5s", "5", "`quit` → `0 OK\\r\\n`, then EOF within 0.5 s of it", quit_eof),
        Case::custom(
            "quit.pipelined-after",
            "5",
            "`quit\\r\\n` + 64 KiB of further requests in one write → `0 OK\\r\\n` intact, then EOF (no reset)",
            quit_pipelined,
        ),
        Case::custom(
            "quit.after-other-requests",
            "5",
            "`verdura`, `get_file_listing x`, `quit` pipelined → 200, 201, `0 OK`, EOF",
            quit_after_others,
        ),
        Case::custom(
            "fatal.101-junk-after",
            "3",
            "a TAB line + 1 MiB of requests in one write → `101 BAD REQUEST\\r\\n` intact, nothing more, EOF",
            |ctx| fatal_with_junk(ctx, b"get_metadata\thola.txt\r\n", BAD_REQUEST),
        ),
        Case::custom(
            "fatal.100-junk-after",
            "3",
            "`quit\\n` + 1 MiB of requests in one write → `100 BAD EOL\\r\\n` intact, nothing more, EOF",
            |ctx| fatal_with_junk(ctx, b"quit\n", BAD_EOL),
        ),
        Case::custom(
            "fatal.empty-line-junk-after",
            "3",
            "`\\r\\n` + 1 MiB of requests in one write → `101 BAD REQUEST\\r\\n` intact, nothing more, EOF",
            |ctx| fatal_with_junk(ctx, b"\r\n", BAD_REQUEST),
        ),
    ]
}

fn quit_eof(ctx: &Ctx) -> Result<(), Failure> {
    let mut conn = ctx.connect()?;
    conn.request(b"quit\r\n", OK)?;
    conn.expect_eof_within(QUIT_EOF + ctx.slack)
}

fn quit_pipelined(ctx: &Ctx) -> Result<(), Failure> {
    let mut conn = ctx.connect()?;
    let mut bytes = b"quit\r\n".to_vec();
    while bytes.len() < 64 * 1024 {
        bytes.extend_from_slice(b"get_file_listing\r\nget_metadata hola.txt\r\n");
    }
    let writer = conn.send_in_background(bytes)?;
    let answer = conn
        .expect(OK)
        .and_then(|()| conn.expect_eof_within(QUIT_EOF + ctx.slack));
    writer.join().ok();
    answer
}

fn quit_after_others(ctx: &Ctx) -> Result<(), Failure> {
    let mut conn = ctx.connect()?;
    conn.send(b"verdura\r\nget_file_listing x\r\nquit\r\n")?;
    conn.expect(b"200 NO SUCH COMMAND\r\n201 INVALID ARGUMENTS FOR COMMAND\r\n0 OK\r\n")?;
    conn.expect_eof_within(QUIT_EOF + ctx.slack)
}

fn fatal_with_junk(ctx: &Ctx, bad_line: &[u8], status: &[u8]) -> Result<(), Failure> {
    let mut conn = ctx.connect()?;
    let mut bytes = bad_line.to_vec();
    while bytes.len() < JUNK_LEN {
        bytes.extend_from_slice(b"get_file_listing\r\nhelp\r\nget_metadata hola.txt\r\n");
    }
    let writer = conn.send_in_background(bytes)?;
    let answer = conn.expect(status).and_then(|()| conn.expect_eof());
    writer.join().ok();
    answer
}
