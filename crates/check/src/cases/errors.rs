//! Section 3, `199 INTERNAL SERVER ERROR`: provoked with permissions, so only
//! meaningful against a server that does not run as root.

use super::{INTERNAL_ERROR, OK};
use crate::case::{setup, Case, Ctx, Then};
use crate::fixtures::{FixtureDir, HOLA};
use crate::outcome::Failure;

fn unreadable_file(dir: &FixtureDir) -> std::io::Result<()> {
    dir.file("secret.txt", HOLA)?;
    dir.chmod("secret.txt", 0o000)
}

pub fn cases() -> Vec<Case> {
    vec![
        Case::exchange("error.unreadable-file", "3", "get_slice secret.txt 0 5\r\n", INTERNAL_ERROR, Then::Closed)
            .fixture(unreadable_file)
            .unprivileged(),
        Case::exchange("error.unreadable-file-raw", "3", "get_slice secret.txt 0 5 raw\r\n", INTERNAL_ERROR, Then::Closed)
            .fixture(unreadable_file)
            .unprivileged()
            .rev2026(),
        Case::custom(
            "error.unreadable-directory",
            "5",
            "served directory chmod 000 → `get_file_listing` gets `199 INTERNAL SERVER ERROR\\r\\n`, then EOF",
            unreadable_directory,
        )
        .fixture(|dir| dir.file("hola.txt", HOLA))
        .unprivileged(),
    ]
}

fn unreadable_directory(ctx: &Ctx) -> Result<(), Failure> {
    let mut conn = ctx.connect()?;
    // The connection works before the directory turns unreadable.
    conn.request(b"verdura\r\n", b"200 NO SUCH COMMAND\r\n")?;
    ctx.dir()
        .chmod_self(0o000)
        .map_err(|e| setup("chmod 000 on the served directory", e))?;
    let answer = conn
        .request(b"get_file_listing\r\n", INTERNAL_ERROR)
        .and_then(|()| conn.expect_eof());
    ctx.dir()
        .reset()
        .map_err(|e| setup("restoring the served directory", e))?;
    answer?;
    // And the server is still fine once it is readable again.
    let mut conn = ctx.connect()?;
    conn.request(b"get_file_listing\r\n", &[OK, b"\r\n"].concat())?;
    conn.expect_open()
}
