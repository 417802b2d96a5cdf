//! Section 4: the served directory is read live, and may be replaced.

use super::{base64_answer, listing_answer, metadata_answer, FILE_NOT_FOUND};
use crate::case::{setup, Case, Ctx};
use crate::fixtures::{self, HOLA};
use crate::outcome::Failure;

pub fn cases() -> Vec<Case> {
    vec![
        Case::custom(
            "live.file-added",
            "4",
            "a file created while connected is listed and served by the next request",
            file_added,
        )
        .fixture(fixtures::hola),
        Case::custom(
            "live.file-grown",
            "4",
            "a file appended to while connected has its new size and bytes at the next request",
            file_grown,
        )
        .fixture(fixtures::hola),
        Case::custom(
            "live.file-removed",
            "4",
            "a file removed while connected is `202` and unlisted at the next request",
            file_removed,
        )
        .fixture(fixtures::hola),
        Case::custom(
            "live.directory-recreated",
            "4",
            "the served directory deleted and re-created (same path, new files): a new connection sees the new files",
            directory_recreated,
        )
        .fixture(fixtures::hola),
    ]
}

fn file_added(ctx: &Ctx) -> Result<(), Failure> {
    let mut conn = ctx.connect()?;
    conn.request(
        b"get_file_listing\r\n",
        &listing_answer(&["foto.jpg", "hola.txt"]),
    )?;
    conn.request(b"get_metadata new.txt\r\n", FILE_NOT_FOUND)?;
    ctx.dir()
        .file("new.txt", b"fresh")
        .map_err(|e| setup("creating new.txt", e))?;
    conn.request(
        b"get_file_listing\r\n",
        &listing_answer(&["foto.jpg", "hola.txt", "new.txt"]),
    )?;
    conn.request(b"get_metadata new.txt\r\n", &metadata_answer(5))?;
    conn.request(b"get_slice new.txt 0 5\r\n", &base64_answer(b"fresh"))?;
    conn.expect_open()
}

fn file_grown(ctx: &Ctx) -> Result<(), Failure> {
    let mut conn = ctx.connect()?;
    conn.request(b"get_metadata hola.txt\r\n", &metadata_answer(32))?;
    conn.request(
        b"get_slice hola.txt 32 5\r\n",
        b"203 OFFSET EXCEEDS FILE SIZE\r\n",
    )?;
    ctx.dir()
        .append("hola.txt", b" y ya")
        .map_err(|e| setup("appending to hola.txt", e))?;
    conn.request(b"get_metadata hola.txt\r\n", &metadata_answer(37))?;
    conn.request(b"get_slice hola.txt 32 5\r\n", &base64_answer(b" y ya"))?;
    conn.expect_open()
}

fn file_removed(ctx: &Ctx) -> Result<(), Failure> {
    let mut conn = ctx.connect()?;
    conn.request(b"get_metadata hola.txt\r\n", &metadata_answer(32))?;
    ctx.dir()
        .remove("hola.txt")
        .map_err(|e| setup("removing hola.txt", e))?;
    conn.request(b"get_metadata hola.txt\r\n", FILE_NOT_FOUND)?;
    conn.request(b"get_slice hola.txt 0 1\r\n", FILE_NOT_FOUND)?;
    conn.request(b"get_file_listing\r\n", &listing_answer(&["foto.jpg"]))?;
    conn.expect_open()
}

fn directory_recreated(ctx: &Ctx) -> Result<(), Failure> {
    let mut conn = ctx.connect()?;
    conn.request(
        b"get_file_listing\r\n",
        &listing_answer(&["foto.jpg", "hola.txt"]),
    )?;
    conn.expect_open()?;
    let dir = ctx.dir();
    dir.recreate()
        .and_then(|()| dir.file("nuevo.txt", HOLA))
        .map_err(|e| setup("deleting and re-creating the served directory", e))?;
    let mut conn = ctx.connect()?;
    conn.request(b"get_file_listing\r\n", &listing_answer(&["nuevo.txt"]))?;
    conn.request(b"get_metadata nuevo.txt\r\n", &metadata_answer(32))?;
    conn.request(
        b"get_slice nuevo.txt 4 19\r\n",
        b"0 OK\r\nY2Fsb3IgcXVlIGhhY2UgaG95LA==\r\n",
    )?;
    conn.request(b"get_metadata hola.txt\r\n", FILE_NOT_FOUND)?;
    conn.expect_open()
}
