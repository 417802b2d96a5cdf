//! Section 5, `get_file_listing`.

use super::listing_answer;
use crate::case::{Case, Ctx, Then};
use crate::escape::show;
use crate::fixtures::{self, HOLA};
use crate::outcome::Failure;

pub fn cases() -> Vec<Case> {
    let mut thousand = fixtures::thousand_names();
    thousand.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    vec![
        Case::exchange("listing.empty", "5", "get_file_listing\r\n", b"0 OK\r\n\r\n".as_slice(), Then::Open)
            .fixture(fixtures::empty),
        Case::exchange(
            "listing.spec-example",
            "7",
            "get_file_listing\r\n",
            b"0 OK\r\nfoto.jpg\r\nhola.txt\r\n\r\n".as_slice(),
            Then::Open,
        )
        .fixture(fixtures::hola),
        Case::exchange("listing.1000-sorted", "5", "get_file_listing\r\n", listing_answer(&thousand), Then::Open)
            .fixture(fixtures::thousand),
        Case::exchange(
            "listing.byte-order",
            "5",
            "get_file_listing\r\n",
            listing_answer(&["-a", ".b", "0", "A", "B", "_", "a", "b"]),
            Then::Open,
        )
        .fixture(|dir| {
            for name in ["b", "a", "_", "B", "A", "0", ".b", "-a"] {
                dir.file(name, HOLA)?;
            }
            Ok(())
        }),
        Case::exchange(
            "listing.special-entries",
            "4",
            "get_file_listing\r\n",
            listing_answer(&["link-in.txt", "plain.txt"]),
            Then::Open,
        )
        .fixture(fixtures::special_entries),
        Case::exchange(
            "listing.unlistable-names",
            "4",
            "get_file_listing\r\n",
            listing_answer(&["ok.txt"]),
            Then::Open,
        )
        .fixture(|dir| {
            dir.file("ok.txt", HOLA)?;
            dir.file("with space.txt", HOLA)?;
            dir.file("caf\u{e9}.txt", HOLA)?;
            dir.file("a?b", HOLA)
        }),
        Case::custom(
            "listing.well-formed",
            "5",
            "`0 OK\\r\\n`, then valid names in strictly increasing byte order, one per line, then an empty line",
            well_formed,
        ),
    ]
}

/// Structure of whatever the server lists (works without a fixture).
fn well_formed(ctx: &Ctx) -> Result<(), Failure> {
    let mut conn = ctx.connect()?;
    conn.request(b"get_file_listing\r\n", b"0 OK\r\n")?;
    let mut previous: Option<Vec<u8>> = None;
    loop {
        let line = conn.read_line()?;
        let name = &line[..line.len() - 2];
        if name.is_empty() {
            break;
        }
        let valid = name.len() <= 255
            && name != b"."
            && name != b".."
            && name
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b));
        if !valid {
            return Err(Failure::new(
                "listing line",
                "a valid file name (section 4)",
                format!("`{}`", show(name)),
            ));
        }
        if previous.as_deref().is_some_and(|p| p >= name) {
            return Err(Failure::new(
                "listing order",
                "names in strictly increasing byte order",
                format!(
                    "`{}` after `{}`",
                    show(name),
                    show(previous.as_deref().unwrap_or_default())
                ),
            ));
        }
        previous = Some(name.to_vec());
    }
    conn.expect_open()
}
