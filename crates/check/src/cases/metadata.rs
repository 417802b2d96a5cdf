//! Section 5, `get_metadata`.

use super::metadata_answer;
use crate::case::{Case, Then};
use crate::fixtures::{self, AWKWARD};

fn metadata(id: &'static str, name: &str, size: usize) -> Case {
    Case::exchange(
        id,
        "5",
        format!("get_metadata {name}\r\n"),
        metadata_answer(size),
        Then::Open,
    )
    .fixture(fixtures::sizes)
}

pub fn cases() -> Vec<Case> {
    vec![
        Case::exchange(
            "metadata.spec-example",
            "7",
            "get_metadata hola.txt\r\n",
            b"0 OK\r\n32\r\n".as_slice(),
            Then::Open,
        )
        .fixture(fixtures::hola),
        Case::exchange(
            "metadata.empty-file",
            "5",
            "get_metadata empty.bin\r\n",
            b"0 OK\r\n0\r\n".as_slice(),
            Then::Open,
        )
        .fixture(fixtures::sizes),
        Case::exchange(
            "metadata.123459-bytes",
            "5",
            "get_metadata big.bin\r\n",
            b"0 OK\r\n123459\r\n".as_slice(),
            Then::Open,
        )
        .fixture(fixtures::sizes),
        metadata("metadata.binary-content", "awkward.bin", AWKWARD.len()),
    ]
}
