//! Section 2 (and the first steps of section 5's order of checks): empty and
//! non-ASCII lines, unknown commands, token counts and shapes.

use super::{BAD_REQUEST, FILE_NOT_FOUND, INVALID_ARGUMENTS, NO_SUCH_COMMAND};
use crate::case::{Case, Then};

/// A fatal `101` exchange.
fn bad_request(id: &'static str, send: &[u8]) -> Case {
    Case::exchange(id, "2", send, BAD_REQUEST, Then::Closed)
}

/// A non-fatal exchange answered `status`.
fn answered(id: &'static str, section: &'static str, send: &str, status: &[u8]) -> Case {
    Case::exchange(id, section, send, status, Then::Open)
}

pub fn cases() -> Vec<Case> {
    let invalid = |id, send| answered(id, "2", send, INVALID_ARGUMENTS);
    let order = |id, send, status| answered(id, "5", send, status);
    vec![
        bad_request("line.empty", b"\r\n"),
        bad_request("line.one-space", b" \r\n"),
        bad_request("line.spaces", b"     \r\n"),
        bad_request("line.tab", b"get_metadata\thola.txt\r\n"),
        bad_request("line.tab-alone", b"\t\r\n"),
        bad_request("line.utf8", "get_metadata café.txt\r\n".as_bytes()),
        bad_request("line.nul", b"get_metadata a\0b\r\n"),
        bad_request("line.nul-alone", b"\0\r\n"),
        bad_request("line.del", b"get_metadata a\x7fb\r\n"),
        bad_request("line.high-byte-in-command", b"\xffquit\r\n"),
        bad_request("line.control-byte", b"quit\x1b\r\n"),
        answered("cmd.unknown", "2", "verdura\r\n", NO_SUCH_COMMAND),
        answered(
            "cmd.upper-case",
            "2",
            "GET_FILE_LISTING\r\n",
            NO_SUCH_COMMAND,
        ),
        answered("cmd.upper-case-quit", "2", "QUIT\r\n", NO_SUCH_COMMAND),
        answered("cmd.prefix", "2", "get_file\r\n", NO_SUCH_COMMAND),
        answered(
            "cmd.suffix",
            "2",
            "get_slicex hola.txt 0 1\r\n",
            NO_SUCH_COMMAND,
        ),
        answered(
            "cmd.leading-space",
            "2",
            " get_file_listing\r\n",
            NO_SUCH_COMMAND,
        ),
        answered("cmd.leading-space-quit", "2", " quit\r\n", NO_SUCH_COMMAND),
        answered(
            "cmd.unknown-with-args",
            "2",
            "put_file hola.txt\r\n",
            NO_SUCH_COMMAND,
        ),
        invalid("args.get_file_listing.extra", "get_file_listing x\r\n"),
        invalid(
            "args.get_file_listing.trailing-space",
            "get_file_listing \r\n",
        ),
        invalid("args.get_metadata.missing", "get_metadata\r\n"),
        invalid("args.get_metadata.empty", "get_metadata \r\n"),
        invalid("args.get_metadata.extra", "get_metadata hola.txt x\r\n"),
        invalid(
            "args.get_metadata.double-space",
            "get_metadata  hola.txt\r\n",
        ),
        invalid(
            "args.get_metadata.trailing-space",
            "get_metadata hola.txt \r\n",
        ),
        invalid("args.get_slice.none", "get_slice\r\n"),
        invalid("args.get_slice.name-only", "get_slice hola.txt\r\n"),
        invalid("args.get_slice.no-size", "get_slice hola.txt 0\r\n"),
        invalid("args.get_slice.extra", "get_slice hola.txt 0 1 raw x\r\n"),
        invalid("args.get_slice.double-space", "get_slice hola.txt  0 1\r\n"),
        invalid(
            "args.get_slice.trailing-space",
            "get_slice hola.txt 0 1 \r\n",
        ),
        invalid(
            "args.get_slice.raw-trailing-space",
            "get_slice hola.txt 0 1 raw \r\n",
        ),
        invalid("args.get_slice.rawx", "get_slice hola.txt 0 1 rawx\r\n"),
        invalid("args.get_slice.RAW", "get_slice hola.txt 0 1 RAW\r\n"),
        invalid("args.get_slice.ra", "get_slice hola.txt 0 1 ra\r\n"),
        invalid(
            "args.get_slice.base64-word",
            "get_slice hola.txt 0 1 base64\r\n",
        ),
        invalid(
            "args.get_slice.negative-offset",
            "get_slice hola.txt -1 5\r\n",
        ),
        invalid(
            "args.get_slice.negative-size",
            "get_slice hola.txt 0 -1\r\n",
        ),
        invalid("args.get_slice.plus-sign", "get_slice hola.txt +1 5\r\n"),
        invalid("args.get_slice.letter", "get_slice hola.txt 1a 5\r\n"),
        invalid("args.get_slice.hex", "get_slice hola.txt 0x10 5\r\n"),
        invalid(
            "args.get_slice.decimal-point",
            "get_slice hola.txt 0 1.0\r\n",
        ),
        answered("args.help.extra", "5", "help x\r\n", INVALID_ARGUMENTS).rev2026(),
        answered(
            "args.help.trailing-space",
            "5",
            "help \r\n",
            INVALID_ARGUMENTS,
        )
        .rev2026(),
        invalid("args.quit.extra", "quit x\r\n"),
        invalid("args.quit.trailing-space", "quit \r\n"),
        order(
            "order.token-shape-before-name",
            "get_slice ../x 0 1 rawx\r\n",
            INVALID_ARGUMENTS,
        ),
        order(
            "order.raw-token-before-existence",
            &format!("get_slice {} 0 1 RAW\r\n", super::ABSENT),
            INVALID_ARGUMENTS,
        ),
        order(
            "order.number-before-existence",
            &format!("get_slice {} -1 1\r\n", super::ABSENT),
            INVALID_ARGUMENTS,
        ),
        order(
            "order.name-before-number",
            "get_slice a?b x y\r\n",
            INVALID_ARGUMENTS,
        ),
        order(
            "order.existence-before-range",
            &format!("get_slice {} 99999999999999999999999 1\r\n", super::ABSENT),
            FILE_NOT_FOUND,
        ),
    ]
}
