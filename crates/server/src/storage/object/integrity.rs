//! End-to-end integrity where S3 allows it: the MD5 of a whole object
//! streamed to a client, against its ETag.
//!
//! An object uploaded in one part has the MD5 of its bytes as its ETag
//! (32 hex digits); one uploaded in parts has `MD5-of-MD5s-N`, which says
//! nothing checkable about a byte range. So when a slice is the whole
//! object, its bytes pass through this server (a base64 slice, or a raw
//! one with `--s3-splice false`), and the ETag is a plain MD5, the bytes
//! handed out are hashed, and a mismatch fails the last block: the client
//! sees the connection closed short, never a corrupt slice announced
//! whole, and the log says why. Ranged slices, spliced raw slices (the
//! bytes never reach user space) and multipart objects are not verified;
//! `docs/scale-out.md` says what an operator can do.

use std::io;

use md5::{Digest, Md5};

/// The running MD5 of a whole object and the one its ETag promises.
pub struct Whole {
    hasher: Md5,
    expected: [u8; 16],
}

impl Whole {
    /// A check for an object whose ETag is `e_tag`: `None` unless it is a
    /// plain MD5 (quoted or not).
    pub fn for_e_tag(e_tag: &str) -> Option<Whole> {
        let hex = e_tag.trim_matches('"');
        if hex.len() != 32 {
            return None;
        }
        let mut expected = [0u8; 16];
        for (i, byte) in expected.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Whole {
            hasher: Md5::new(),
            expected,
        })
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    /// Fails when the bytes hashed are not those the ETag promised.
    pub fn verify(self, key: &str) -> io::Result<()> {
        let got: [u8; 16] = self.hasher.finalize().into();
        if got == self.expected {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "object {key}: the MD5 of the bytes the store sent ({}) is not its ETag's ({}): corrupt bytes, the slice is closed short",
                hex(&got),
                hex(&self.expected)
            ),
        ))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_md5_etags_are_checked_and_multipart_ones_are_not() {
        // MD5("hello").
        let tag = "\"5d41402abc4b2a76b9719d911017c592\"";
        let mut good = Whole::for_e_tag(tag).expect("a plain MD5");
        good.update(b"hel");
        good.update(b"lo");
        assert!(good.verify("k").is_ok());
        let mut bad = Whole::for_e_tag(tag).unwrap();
        bad.update(b"hellp");
        let e = bad.verify("files/k").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("files/k"), "{e}");
        assert!(Whole::for_e_tag("\"5d41402abc4b2a76b9719d911017c592-3\"").is_none());
        assert!(Whole::for_e_tag("\"zz41402abc4b2a76b9719d911017c592\"").is_none());
    }
}
