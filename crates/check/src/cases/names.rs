//! Section 4: which names are valid, and which directory entries are served.

use super::{base64_answer, metadata_answer, FILE_NOT_FOUND, INVALID_ARGUMENTS};
use crate::case::{setup, Case, Ctx, Then};
use crate::escape::show;
use crate::fixtures::{self, FixtureDir, HOLA};
use crate::outcome::Failure;

fn invalid_name(id: &'static str, send: &str) -> Case {
    Case::exchange(id, "4", send, INVALID_ARGUMENTS, Then::Open)
}

fn not_found(id: &'static str, send: String) -> Case {
    Case::exchange(id, "4", send, FILE_NOT_FOUND, Then::Open)
}

/// Both `get_metadata` and `get_slice` of `name` answered `202`.
fn never_served(id: &'static str, name: &str) -> Case {
    let send = format!("get_metadata {name}\r\nget_slice {name} 0 1\r\n");
    Case::exchange(
        id,
        "4",
        send,
        [FILE_NOT_FOUND, FILE_NOT_FOUND].concat(),
        Then::Open,
    )
    .fixture(fixtures::special_entries)
}

pub fn cases() -> Vec<Case> {
    let name_255 = "n".repeat(255);
    vec![
        invalid_name("name.parent-path", "get_metadata ../x\r\n"),
        invalid_name("name.dot", "get_metadata .\r\n"),
        invalid_name("name.dot-dot", "get_metadata ..\r\n"),
        invalid_name("name.question-mark", "get_metadata a?b\r\n"),
        invalid_name("name.bar-question-dollar", "get_metadata bar?$ola\r\n"),
        invalid_name("name.slash", "get_metadata a/b\r\n"),
        invalid_name("name.absolute", "get_metadata /etc/passwd\r\n"),
        invalid_name("name.star", "get_metadata *\r\n"),
        invalid_name("name.tilde", "get_metadata ~root\r\n"),
        invalid_name("name.slice-parent-path", "get_slice ../secret 0 1\r\n"),
        invalid_name("name.slice-dot-dot", "get_slice .. 0 1\r\n"),
        Case::exchange(
            "name.three-dots-is-valid",
            "4",
            "get_metadata ...\r\nget_metadata .hidden\r\n",
            [FILE_NOT_FOUND, b"0 OK\r\n32\r\n"].concat(),
            Then::Open,
        )
        .fixture(|dir| dir.file(".hidden", HOLA)),
        Case::exchange(
            "name.255-bytes-served",
            "4",
            format!("get_metadata {name_255}\r\n"),
            b"0 OK\r\n32\r\n".as_slice(),
            Then::Open,
        )
        .fixture(|dir| dir.file(&"n".repeat(255), HOLA)),
        not_found("name.256-bytes", format!("get_metadata {}\r\n", "n".repeat(256))),
        not_found("name.long-slice", format!("get_slice {} 0 1\r\n", "n".repeat(4096))),
        Case::exchange("name.absent", "4", "get_metadata nope.txt\r\n", FILE_NOT_FOUND, Then::Open)
            .fixture(fixtures::hola),
        Case::exchange(
            "name.case-sensitive",
            "4",
            "get_metadata HOLA.TXT\r\n",
            FILE_NOT_FOUND,
            Then::Open,
        )
        .fixture(fixtures::hola),
        never_served("name.directory", "subdir"),
        never_served("name.fifo", "fifo"),
        never_served("name.symlink-outside", "link-out.txt"),
        never_served("name.symlink-to-parent", "link-up.txt"),
        never_served("name.symlink-dangling", "link-dangling.txt"),
        never_served("name.symlink-to-directory", "link-dir"),
        Case::custom(
            "name.symlink-inside",
            "4",
            "a symlink to a regular file inside the served directory is served like its target",
            symlink_inside,
        )
        .fixture(fixtures::special_entries),
        Case::custom(
            "name.symlink-reentering-consistent",
            "4",
            "links into the served directory by `../DIR/plain.txt` or an absolute path are listed exactly when served",
            listed_iff_served,
        )
        .fixture(reentering),
    ]
}

/// Links that resolve to `plain.txt` inside by leaving the directory first:
/// `back-in.txt` through `..`, `absolute.txt` by an absolute path. Whether
/// such links are served the spec leaves open.
fn reentering(dir: &FixtureDir) -> std::io::Result<()> {
    dir.file("plain.txt", HOLA)?;
    let base = dir
        .local_path("links by the directory's own path")?
        .file_name()
        .ok_or_else(|| std::io::Error::other("served directory has no name"))?;
    dir.symlink(
        "back-in.txt",
        std::path::Path::new("..").join(base).join("plain.txt"),
    )?;
    let absolute = std::fs::canonicalize(dir.path())?.join("plain.txt");
    dir.symlink("absolute.txt", absolute)
}

/// Section 5: the listing holds exactly the servable files.
fn listed_iff_served(ctx: &Ctx) -> Result<(), Failure> {
    let mut conn = ctx.connect()?;
    conn.request(b"get_file_listing\r\n", b"0 OK\r\n")?;
    let mut listed = Vec::new();
    loop {
        let line = conn.read_line()?;
        if line == b"\r\n" {
            break;
        }
        listed.push(line[..line.len() - 2].to_vec());
    }
    for name in ["absolute.txt", "back-in.txt"] {
        let is_listed = listed.iter().any(|l| l == name.as_bytes());
        conn.send(format!("get_metadata {name}\r\n").as_bytes())?;
        let answer = conn.read_line()?;
        let served = answer == b"0 OK\r\n";
        if served {
            conn.expect(b"32\r\n")?;
        }
        if served != is_listed {
            return Err(Failure::new(
                format!("`{name}`"),
                "listed exactly when served",
                format!(
                    "listed: {is_listed}, `get_metadata` answered `{}`",
                    show(&answer)
                ),
            ));
        }
    }
    conn.expect_open()
}

fn symlink_inside(ctx: &Ctx) -> Result<(), Failure> {
    if !ctx.dir().path().join("link-in.txt").exists() {
        return Err(setup(
            "link-in.txt",
            std::io::Error::other("symlink does not resolve"),
        ));
    }
    let mut conn = ctx.connect()?;
    conn.request(
        b"get_metadata link-in.txt\r\n",
        &metadata_answer(HOLA.len()),
    )?;
    conn.request(b"get_slice link-in.txt 0 32\r\n", &base64_answer(HOLA))?;
    conn.expect_open()
}
