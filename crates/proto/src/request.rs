//! Requests as values: what the scanner yields and what clients encode.

use std::fmt;

/// Longest file name that can exist (spec section 4); longer valid names get `202`.
pub const MAX_NAME_LEN: usize = 255;

/// A file name that passed every rule of spec section 4: 1..=255 bytes from
/// `A-Z a-z 0-9 . _ -`, and neither `.` nor `..`. Such a name cannot contain a
/// path separator, so it can only ever refer to an entry of the served directory.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileName(String);

/// Why a string is not a [`FileName`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// Empty, a forbidden byte, `.` or `..`: answered `201`.
    Invalid,
    /// Valid shape but longer than 255 bytes: answered `202`.
    TooLong,
}

/// Bytes allowed in a file name.
pub const fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'
}

impl FileName {
    pub fn new(name: &str) -> Result<FileName, NameError> {
        let bytes = name.as_bytes();
        if bytes.is_empty()
            || name == "."
            || name == ".."
            || !bytes.iter().all(|&b| is_name_byte(b))
        {
            return Err(NameError::Invalid);
        }
        if bytes.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        Ok(FileName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for FileName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// How the bytes of a slice travel (spec section 5, `get_slice`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SliceMode {
    /// Classic: one line of standard base64.
    Base64,
    /// 2026 revision: a `Content-Length` header, then the bytes as they are.
    Raw,
}

/// A byte range as requested. Numbers of more than 64 bits saturate at
/// `u64::MAX`: no file is that large, so the range check answers `203` as the
/// spec demands, and [`Range::end`] never overflows silently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Range {
    pub offset: u64,
    pub size: u64,
}

impl Range {
    /// `OFFSET + SIZE`, or `None` when it does not fit in 64 bits.
    pub fn end(self) -> Option<u64> {
        self.offset.checked_add(self.size)
    }

    /// Whether the range lies inside a file of `file_size` bytes.
    pub fn fits(self, file_size: u64) -> bool {
        self.end().is_some_and(|end| end <= file_size)
    }
}

/// One well-formed request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Request {
    GetFileListing,
    GetMetadata {
        name: FileName,
    },
    GetSlice {
        name: FileName,
        range: Range,
        mode: SliceMode,
    },
    Help,
    Quit,
}

/// Command names, in the order `help` lists them.
pub const COMMANDS: [&str; 5] = [
    "get_file_listing",
    "get_metadata",
    "get_slice",
    "help",
    "quit",
];

impl Request {
    pub fn command(&self) -> &'static str {
        match self {
            Request::GetFileListing => "get_file_listing",
            Request::GetMetadata { .. } => "get_metadata",
            Request::GetSlice { .. } => "get_slice",
            Request::Help => "help",
            Request::Quit => "quit",
        }
    }

    /// Appends the request line, CRLF included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

impl fmt::Display for Request {
    /// The request line without its CRLF.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::GetMetadata { name } => write!(f, "get_metadata {name}"),
            Request::GetSlice { name, range, mode } => {
                write!(f, "get_slice {name} {} {}", range.offset, range.size)?;
                if *mode == SliceMode::Raw {
                    f.write_str(" raw")?;
                }
                Ok(())
            }
            other => f.write_str(other.command()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(FileName::new("hola.txt").is_ok());
        assert!(FileName::new("...").is_ok());
        assert_eq!(FileName::new("."), Err(NameError::Invalid));
        assert_eq!(FileName::new(".."), Err(NameError::Invalid));
        assert_eq!(FileName::new(""), Err(NameError::Invalid));
        assert_eq!(FileName::new("a/b"), Err(NameError::Invalid));
        assert_eq!(FileName::new("bar?$ola"), Err(NameError::Invalid));
        assert!(FileName::new(&"x".repeat(255)).is_ok());
        assert_eq!(FileName::new(&"x".repeat(256)), Err(NameError::TooLong));
    }

    #[test]
    fn range_end_never_overflows() {
        let r = Range {
            offset: u64::MAX,
            size: 1,
        };
        assert_eq!(r.end(), None);
        assert!(!r.fits(u64::MAX));
        assert!(Range { offset: 3, size: 0 }.fits(3));
        assert!(!Range { offset: 3, size: 1 }.fits(3));
    }

    #[test]
    fn encode() {
        let name = FileName::new("a.txt").unwrap();
        let mut out = Vec::new();
        Request::GetSlice {
            name,
            range: Range { offset: 1, size: 2 },
            mode: SliceMode::Raw,
        }
        .encode(&mut out);
        assert_eq!(out, b"get_slice a.txt 1 2 raw\r\n");
    }
}
