//! End-to-end integrity where S3 allows it: the bytes of a whole object
//! streamed to a client, against a checksum the store keeps.
//!
//! Two promises can be checked:
//! - **the store's own full-object CRC** (`x-amz-checksum-crc32`,
//!   `-crc32c` or `-crc64nvme` with `x-amz-checksum-type: FULL_OBJECT`),
//!   which a `HEAD` with `x-amz-checksum-mode: ENABLED` returns for an
//!   object uploaded with one (AWS adds CRC64NVME to every new object;
//!   Garage keeps the one the uploader sent). A CRC runs at several GB/s
//!   a core; it also covers multipart objects uploaded with one.
//! - **the ETag's MD5**: an object uploaded in one part has the MD5 of its
//!   bytes as its ETag (32 hex digits); one uploaded in parts has
//!   `MD5-of-MD5s-N`, which says nothing checkable. MD5 is one serial
//!   chain, about 0.6 GB/s: 0.4 s of a core per 256 MiB here.
//!
//! A ranged `GET` carries neither (S3 sends checksums only for a whole
//! `GET`), so the reader asks the `HEAD` alongside (for an object of
//! 8 MiB or more, or one whose ETag is no MD5: below that the MD5 costs
//! less than the request) and, until it answers, hashes every candidate:
//! the MD5 and each CRC ([`WholeCheck`]). Once the store says which CRC it
//! keeps, only that one goes on; if it keeps none, only the MD5. At the
//! last bytes an answer still on its way is waited for, up to a second.
//! A mismatch fails the last block: the client sees the connection closed
//! short, never a corrupt slice announced whole, and the log says why.
//! Ranged slices, spliced raw slices (the bytes never reach user space)
//! and objects with neither promise are not verified;
//! `docs/scale-out.md` says what an operator can do.

use std::io;

use crc_fast::{CrcAlgorithm, Digest as CrcDigest};
use md5::{Digest, Md5};

/// The CRCs S3 keeps for a whole object, by the header that carries each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crc {
    Crc32,
    Crc32c,
    Crc64Nvme,
}

impl Crc {
    pub const ALL: [Crc; 3] = [Crc::Crc32, Crc::Crc32c, Crc::Crc64Nvme];

    pub fn header(self) -> &'static str {
        match self {
            Crc::Crc32 => "x-amz-checksum-crc32",
            Crc::Crc32c => "x-amz-checksum-crc32c",
            Crc::Crc64Nvme => "x-amz-checksum-crc64nvme",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Crc::Crc32 => "CRC32",
            Crc::Crc32c => "CRC32C",
            Crc::Crc64Nvme => "CRC64NVME",
        }
    }

    fn algorithm(self) -> CrcAlgorithm {
        match self {
            Crc::Crc32 => CrcAlgorithm::Crc32IsoHdlc,
            Crc::Crc32c => CrcAlgorithm::Crc32Iscsi,
            Crc::Crc64Nvme => CrcAlgorithm::Crc64Nvme,
        }
    }

    fn bytes(self) -> usize {
        match self {
            Crc::Crc64Nvme => 8,
            Crc::Crc32 | Crc::Crc32c => 4,
        }
    }
}

/// A full-object CRC the store keeps for one version of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreCrc {
    pub crc: Crc,
    pub value: u64,
}

impl StoreCrc {
    /// The first full-object CRC among an answer's `(name, value)`
    /// headers: base64 of the big-endian value, as S3 sends it. A
    /// composite one (of a multipart upload: `x-amz-checksum-type:
    /// COMPOSITE`, or a value ending in `-N`) is not of the bytes, and is
    /// skipped.
    pub fn from_headers<'a>(
        headers: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
    ) -> Option<StoreCrc> {
        let composite = headers.clone().into_iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("x-amz-checksum-type")
                && !value.trim().eq_ignore_ascii_case("FULL_OBJECT")
        });
        if composite {
            return None;
        }
        Crc::ALL.into_iter().find_map(|crc| {
            let (_, value) = headers
                .clone()
                .into_iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(crc.header()))?;
            let raw = base64_simd::STANDARD.decode_to_vec(value.trim()).ok()?;
            (raw.len() == crc.bytes()).then(|| StoreCrc {
                crc,
                value: raw.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)),
            })
        })
    }
}

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
        Err(corrupt(
            key,
            "MD5",
            &hex(&got),
            &hex(&self.expected),
            "ETag's",
        ))
    }
}

/// The check of one whole object read by hand: the MD5 its ETag promises
/// and every CRC until the store says which it keeps ([`WholeCheck::settle`]).
pub struct WholeCheck {
    md5: Option<Whole>,
    /// Every CRC, until settled.
    candidates: Vec<(Crc, CrcDigest)>,
    /// The CRC the store keeps, and its running value.
    chosen: Option<(StoreCrc, CrcDigest)>,
}

impl WholeCheck {
    /// A check for an object whose ETag is `e_tag`, the store's CRC not
    /// known yet (`ask_crc`: a `HEAD` went to ask; otherwise the MD5 only).
    pub fn new(e_tag: &str, ask_crc: bool) -> Option<WholeCheck> {
        let candidates = if ask_crc {
            Crc::ALL
                .into_iter()
                .map(|crc| (crc, CrcDigest::new(crc.algorithm())))
                .collect()
        } else {
            Vec::new()
        };
        let check = WholeCheck {
            md5: Whole::for_e_tag(e_tag),
            candidates,
            chosen: None,
        };
        check.checks_anything().then_some(check)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        if let Some((_, digest)) = self.chosen.as_mut() {
            digest.update(bytes);
            return;
        }
        for (_, digest) in self.candidates.iter_mut() {
            digest.update(bytes);
        }
        if let Some(md5) = self.md5.as_mut() {
            md5.update(bytes);
        }
    }

    /// Whether the store's answer is still awaited.
    pub fn unsettled(&self) -> bool {
        !self.candidates.is_empty()
    }

    /// The store's answer: the CRC it keeps (the MD5 and the other CRCs
    /// stop), or none (the MD5 alone goes on).
    pub fn settle(&mut self, kept: Option<StoreCrc>) {
        let candidates = std::mem::take(&mut self.candidates);
        let Some(kept) = kept else {
            return;
        };
        if let Some((_, digest)) = candidates.into_iter().find(|(crc, _)| *crc == kept.crc) {
            self.chosen = Some((kept, digest));
            self.md5 = None;
        }
    }

    /// Whether any promise is left to check.
    pub fn checks_anything(&self) -> bool {
        self.md5.is_some() || !self.candidates.is_empty() || self.chosen.is_some()
    }

    /// What the bytes will be checked against, for the debug log.
    pub fn against(&self) -> &'static str {
        match (&self.chosen, &self.md5) {
            (Some((kept, _)), _) => kept.crc.name(),
            (None, Some(_)) => "MD5",
            (None, None) => "nothing",
        }
    }

    /// Fails when the bytes hashed are not those promised (settle first:
    /// unsettled CRCs are not checked).
    pub fn verify(self, key: &str) -> io::Result<()> {
        if let Some((kept, digest)) = self.chosen {
            let got = digest.finalize();
            if got == kept.value {
                return Ok(());
            }
            let width = kept.crc.bytes() * 2;
            return Err(corrupt(
                key,
                kept.crc.name(),
                &format!("{got:0width$x}"),
                &format!("{:0width$x}", kept.value),
                "store's",
            ));
        }
        self.md5.map_or(Ok(()), |md5| md5.verify(key))
    }
}

fn corrupt(key: &str, what: &str, got: &str, expected: &str, whose: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "object {key}: the {what} of the bytes the store sent ({got}) is not its {whose} ({expected}): corrupt bytes, the slice is closed short"
        ),
    )
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

    /// CRC32("123456789") = cbf43926, CRC32C = e3069283, CRC64NVME =
    /// ae8b14860a799888 (the catalogue's check values).
    const CHECKS: [(Crc, u64); 3] = [
        (Crc::Crc32, 0xcbf4_3926),
        (Crc::Crc32c, 0xe306_9283),
        (Crc::Crc64Nvme, 0xae8b_1486_0a79_9888),
    ];

    fn header(crc: Crc, value: u64) -> String {
        let be = value.to_be_bytes();
        base64_simd::STANDARD.encode_to_string(&be[8 - crc.bytes()..])
    }

    #[test]
    fn the_crc_the_store_keeps_is_checked_and_the_md5_dropped() {
        for (crc, value) in CHECKS {
            let sent = header(crc, value);
            let kept = StoreCrc::from_headers([
                ("X-Amz-Checksum-Type", "FULL_OBJECT"),
                (crc.header(), sent.as_str()),
            ])
            .expect("a full-object CRC");
            assert_eq!(kept, StoreCrc { crc, value });
            // An ETag that is not the bytes' MD5: only the CRC is checked.
            let tag = "\"00000000000000000000000000000000\"";
            let mut check = WholeCheck::new(tag, true).unwrap();
            check.update(b"1234");
            check.settle(Some(kept));
            check.update(b"56789");
            assert_eq!(check.against(), crc.name());
            check.verify("k").expect("the bytes' CRC");
            let mut check = WholeCheck::new(tag, true).unwrap();
            check.settle(Some(kept));
            check.update(b"123456788");
            let e = check.verify("files/k").unwrap_err();
            assert!(e.to_string().contains(crc.name()), "{e}");
            assert!(e.to_string().contains("files/k"), "{e}");
        }
    }

    #[test]
    fn no_crc_kept_leaves_the_md5() {
        let tag = "5d41402abc4b2a76b9719d911017c592";
        let mut check = WholeCheck::new(tag, true).unwrap();
        check.update(b"hel");
        assert!(check.unsettled());
        check.settle(None);
        assert!(!check.unsettled());
        check.update(b"lp");
        assert_eq!(check.against(), "MD5");
        assert!(check.verify("k").unwrap_err().to_string().contains("MD5"));
        // A multipart ETag and no CRC: nothing to check.
        let mut check = WholeCheck::new("\"abc-3\"", true).unwrap();
        check.settle(None);
        assert!(!check.checks_anything());
        assert!(WholeCheck::new("\"abc-3\"", false).is_none());
    }

    #[test]
    fn composite_or_malformed_checksums_are_not_taken() {
        let crc32 = header(Crc::Crc32, 0xcbf4_3926);
        for headers in [
            vec![
                ("x-amz-checksum-type", "COMPOSITE"),
                ("x-amz-checksum-crc32", crc32.as_str()),
            ],
            vec![("x-amz-checksum-crc32", "y/Q5Jg==-3")],
            vec![("x-amz-checksum-crc32", "AAAAAAAAAAA=")],
            vec![("x-amz-checksum-sha256", "AAAA")],
            vec![],
        ] {
            assert_eq!(StoreCrc::from_headers(headers.clone()), None, "{headers:?}");
        }
        assert!(StoreCrc::from_headers([("x-amz-checksum-crc32", crc32.as_str())]).is_some());
    }
}
