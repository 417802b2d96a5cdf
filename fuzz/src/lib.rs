//! Shared pieces of the HFTP fuzz targets (see `README.md`).
//!
//! - [`oracle`]: a naive, independent model of the request rules of the spec,
//!   which the real scanner is compared against.
//! - [`FuzzInput`]: how a fuzzer-made byte string is split into control bytes
//!   (where to cut the stream, which line limit) and the stream itself.
//! - [`Served`]: a served directory with known contents, and the exact bytes
//!   the spec says a server answers to each request.

pub mod oracle;

use std::collections::BTreeMap;
use std::path::PathBuf;

use hftp_proto::{Event, Request, SliceMode, Status};

/// A fuzzer input: `[n] [n cut offsets, u16 LE] [limit selector] stream...`.
pub struct FuzzInput<'a> {
    /// Offsets into `stream` where it is cut into separate `feed` calls.
    pub cuts: Vec<usize>,
    /// The line limit of the scanner under test.
    pub max_line: usize,
    /// The bytes a client sends.
    pub stream: &'a [u8],
}

/// Line limits the fuzzer picks from: tiny ones make the limit reachable,
/// the default one is what servers run with.
const LIMITS: [usize; 4] = [1, 17, 300, hftp_proto::DEFAULT_MAX_LINE];

impl<'a> FuzzInput<'a> {
    pub fn parse(data: &'a [u8]) -> Option<FuzzInput<'a>> {
        let (&n, rest) = data.split_first()?;
        let n = usize::from(n % 16);
        if rest.len() < 2 * n + 1 {
            return None;
        }
        let (cuts, rest) = rest.split_at(2 * n);
        let cuts = cuts
            .chunks_exact(2)
            .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])))
            .collect();
        let (&limit, stream) = rest.split_first()?;
        Some(FuzzInput {
            cuts,
            max_line: LIMITS[usize::from(limit) % LIMITS.len()],
            stream,
        })
    }

    /// The stream in the pieces the cuts delimit (none empty).
    pub fn pieces(&self) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = self
            .cuts
            .iter()
            .copied()
            .filter(|&c| c > 0 && c < self.stream.len())
            .collect();
        cuts.push(self.stream.len());
        cuts.sort_unstable();
        cuts.dedup();
        let mut start = 0;
        let mut pieces = Vec::new();
        for cut in cuts {
            if cut > start {
                pieces.push(&self.stream[start..cut]);
            }
            start = cut;
        }
        pieces
    }
}

/// A served directory holding regular files, symbolic links that stay
/// inside (relative, absolute, leaving and coming back) and ones that
/// escape (relative, absolute), a FIFO and a sub-directory, and what the
/// spec says about each.
pub struct Served {
    pub root: PathBuf,
    /// Servable names and their contents (links resolved).
    pub files: BTreeMap<String, Vec<u8>>,
}

static FIXTURE_BASE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

extern "C" fn remove_fixture() {
    if let Some(base) = FIXTURE_BASE.get() {
        let _ = std::fs::remove_dir_all(base);
    }
}

/// Larger than the session's inline-slice limit (48 KiB), so slices of it
/// are streamed through `SliceBody`.
pub const BIG: usize = 100_000;

impl Served {
    /// Creates the directory under the system temp dir, named after the
    /// process, so parallel fuzz jobs do not collide; it is removed when the
    /// process exits normally (libFuzzer exits through `exit`).
    pub fn create() -> Served {
        let base = std::env::temp_dir().join(format!("hftp-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        if FIXTURE_BASE.set(base.clone()).is_ok() {
            // SAFETY: registers a plain function with no preconditions.
            unsafe { libc::atexit(remove_fixture) };
        }
        let root = base.join("served");
        std::fs::create_dir_all(&root).expect("create served dir");
        std::fs::write(base.join("secret"), b"outside the served directory").expect("secret");
        let big: Vec<u8> = (0..BIG).map(|i| (i * 7 % 251) as u8).collect();
        let mut files = BTreeMap::new();
        files.insert("a".to_owned(), b"Que calor que hace hoy, pinocho!".to_vec());
        files.insert("b".to_owned(), big);
        files.insert("e".to_owned(), Vec::new());
        files.insert(
            "hola.txt".to_owned(),
            b"Que calor que hace hoy, pinocho!".to_vec(),
        );
        for (name, data) in &files {
            std::fs::write(root.join(name), data).expect("write file");
        }
        std::os::unix::fs::symlink("a", root.join("l")).expect("inside link");
        files.insert("l".to_owned(), files["a"].clone());
        // An absolute link to a file inside, and a relative one that leaves
        // and comes back: both resolve to a regular file inside, so both
        // are served (spec section 4).
        std::os::unix::fs::symlink(root.join("a"), root.join("z")).expect("absolute inside link");
        files.insert("z".to_owned(), files["a"].clone());
        std::os::unix::fs::symlink("../served/a", root.join("w")).expect("out-and-back link");
        files.insert("w".to_owned(), files["a"].clone());
        std::os::unix::fs::symlink("../secret", root.join("x")).expect("escaping link");
        std::os::unix::fs::symlink(base.join("secret"), root.join("y"))
            .expect("absolute escaping link");
        std::fs::create_dir(root.join("d")).expect("sub dir");
        let fifo =
            std::ffi::CString::new(root.join("f").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0, "mkfifo");
        Served { root, files }
    }

    /// The exact bytes the spec says a server sends for `event`, and
    /// whether the server then closes the connection.
    pub fn answer(&self, event: &Event, out: &mut Vec<u8>) -> bool {
        let request = match event {
            Event::Fatal(status) => {
                out.extend_from_slice(status.line());
                return true;
            }
            Event::Reject(status) => {
                out.extend_from_slice(status.line());
                return false;
            }
            Event::Request(request) => request,
        };
        match request {
            Request::GetFileListing => {
                out.extend_from_slice(b"0 OK\r\n");
                for name in self.files.keys() {
                    out.extend_from_slice(name.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"\r\n");
            }
            Request::Help => out.extend_from_slice(
                b"0 OK\r\nget_file_listing\r\nget_metadata\r\nget_slice\r\nhelp\r\nquit\r\n\r\n",
            ),
            Request::Quit => {
                out.extend_from_slice(b"0 OK\r\n");
                return true;
            }
            Request::GetMetadata { name } => match self.files.get(name.as_str()) {
                Some(data) => {
                    out.extend_from_slice(format!("0 OK\r\n{}\r\n", data.len()).as_bytes())
                }
                None => out.extend_from_slice(Status::FileNotFound.line()),
            },
            Request::GetSlice { name, range, mode } => {
                let Some(data) = self.files.get(name.as_str()) else {
                    out.extend_from_slice(Status::FileNotFound.line());
                    return false;
                };
                let end = u128::from(range.offset) + u128::from(range.size);
                if end > data.len() as u128 {
                    out.extend_from_slice(Status::OffsetExceedsFileSize.line());
                    return false;
                }
                let bytes = &data[range.offset as usize..end as usize];
                out.extend_from_slice(b"0 OK\r\n");
                match mode {
                    SliceMode::Raw => {
                        out.extend_from_slice(
                            format!("Content-Length: {}\r\n\r\n", bytes.len()).as_bytes(),
                        );
                        out.extend_from_slice(bytes);
                    }
                    SliceMode::Base64 => {
                        base64(bytes, out);
                        out.extend_from_slice(b"\r\n");
                    }
                }
            }
        }
        false
    }
}

/// Standard base64 (RFC 4648, `=` padding), written out here so that the
/// check does not use the encoder under test.
pub fn base64(input: &[u8], out: &mut Vec<u8>) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for (i, &s) in sextets.iter().enumerate() {
            out.push(if i <= chunk.len() {
                ALPHABET[s as usize]
            } else {
                b'='
            });
        }
    }
}
