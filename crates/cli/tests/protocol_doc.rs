//! The wire examples of `docs/protocol.md` are true: every ```hftp block is
//! replayed against `hftp serve -d testdata`, one connection per block, and
//! the answers must match byte for byte.
//!
//! Tier: quick.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::support::Server;

/// One exchange of a block: what the client sends, what the server
/// answers, and whether the server then closes.
struct Exchange {
    send: Vec<u8>,
    expect: Vec<u8>,
    closes: bool,
}

/// `\r` and `\n` written out in the document stand for CR and LF.
fn unescape(text: &str) -> Vec<u8> {
    text.replace("\\r", "\r").replace("\\n", "\n").into_bytes()
}

/// Splits `S: text  # comment` into the text and the comment.
fn without_comment(line: &str) -> (&str, &str) {
    match line.split_once("  # ") {
        Some((text, comment)) => (text, comment),
        None => (line, ""),
    }
}

fn blocks(doc: &str) -> Vec<Vec<Exchange>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<Exchange>> = None;
    let mut pending: Option<Vec<u8>> = None;
    for (n, line) in doc.lines().enumerate() {
        let n = n + 1;
        match (&mut current, line) {
            (None, "```hftp") => current = Some(Vec::new()),
            (None, _) => {}
            (Some(_), "```") => {
                assert!(pending.is_none(), "line {n}: a C: line without its S:");
                blocks.push(current.take().unwrap());
            }
            (Some(exchanges), line) => {
                if let Some(sent) = line.strip_prefix("C: ") {
                    assert!(pending.is_none(), "line {n}: two C: lines in a row");
                    pending = Some(unescape(without_comment(sent).0));
                } else if let Some(answer) = line.strip_prefix("S: ") {
                    let (text, comment) = without_comment(answer);
                    let send = pending
                        .take()
                        .unwrap_or_else(|| panic!("line {n}: S: without C:"));
                    exchanges.push(Exchange {
                        send,
                        expect: unescape(text),
                        closes: comment.contains("the server closes"),
                    });
                } else {
                    panic!("line {n}: neither C: nor S: in an hftp block: {line:?}");
                }
            }
        }
    }
    assert!(current.is_none(), "an hftp block is not closed");
    blocks
}

#[test]
fn wire_examples_of_the_protocol_document_are_what_the_server_answers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("docs/protocol.md")).unwrap();
    let blocks = blocks(&doc);
    assert!(blocks.len() >= 3, "the wire examples are missing");
    let server = Server::builder(&root.join("testdata")).start();
    for (b, block) in blocks.iter().enumerate() {
        let mut s = TcpStream::connect(server.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        for ex in block {
            let shown = String::from_utf8_lossy(&ex.send);
            s.write_all(&ex.send).unwrap();
            let mut got = vec![0u8; ex.expect.len()];
            s.read_exact(&mut got)
                .unwrap_or_else(|e| panic!("block {b}, {shown:?}: {e}"));
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&ex.expect),
                "block {b}, {shown:?}"
            );
            if ex.closes {
                let mut rest = Vec::new();
                match s.read_to_end(&mut rest) {
                    Ok(_) => assert!(rest.is_empty(), "block {b}: more after {shown:?}"),
                    Err(e) => assert!(
                        !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                        "block {b}: the server did not close after {shown:?}"
                    ),
                }
            }
        }
    }
}
