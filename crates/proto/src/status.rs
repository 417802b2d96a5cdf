//! Status codes and their fixed texts (spec section 3).

/// Every status an HFTP server may answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Ok,
    BadEol,
    BadRequest,
    InternalError,
    NoSuchCommand,
    InvalidArguments,
    FileNotFound,
    OffsetExceedsFileSize,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Ok,
        Status::BadEol,
        Status::BadRequest,
        Status::InternalError,
        Status::NoSuchCommand,
        Status::InvalidArguments,
        Status::FileNotFound,
        Status::OffsetExceedsFileSize,
    ];

    pub const fn code(self) -> u16 {
        match self {
            Status::Ok => 0,
            Status::BadEol => 100,
            Status::BadRequest => 101,
            Status::InternalError => 199,
            Status::NoSuchCommand => 200,
            Status::InvalidArguments => 201,
            Status::FileNotFound => 202,
            Status::OffsetExceedsFileSize => 203,
        }
    }

    pub const fn text(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadEol => "BAD EOL",
            Status::BadRequest => "BAD REQUEST",
            Status::InternalError => "INTERNAL SERVER ERROR",
            Status::NoSuchCommand => "NO SUCH COMMAND",
            Status::InvalidArguments => "INVALID ARGUMENTS FOR COMMAND",
            Status::FileNotFound => "FILE NOT FOUND",
            Status::OffsetExceedsFileSize => "OFFSET EXCEEDS FILE SIZE",
        }
    }

    /// The full status line, CRLF included, as sent on the wire.
    pub const fn line(self) -> &'static [u8] {
        match self {
            Status::Ok => b"0 OK\r\n",
            Status::BadEol => b"100 BAD EOL\r\n",
            Status::BadRequest => b"101 BAD REQUEST\r\n",
            Status::InternalError => b"199 INTERNAL SERVER ERROR\r\n",
            Status::NoSuchCommand => b"200 NO SUCH COMMAND\r\n",
            Status::InvalidArguments => b"201 INVALID ARGUMENTS FOR COMMAND\r\n",
            Status::FileNotFound => b"202 FILE NOT FOUND\r\n",
            Status::OffsetExceedsFileSize => b"203 OFFSET EXCEEDS FILE SIZE\r\n",
        }
    }

    /// 1xx statuses end the connection.
    pub const fn is_fatal(self) -> bool {
        matches!(
            self,
            Status::BadEol | Status::BadRequest | Status::InternalError
        )
    }

    pub fn from_code(code: u16) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code(), self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_is_code_space_text_crlf() {
        for s in Status::ALL {
            assert_eq!(
                s.line(),
                format!("{} {}\r\n", s.code(), s.text()).as_bytes()
            );
            assert_eq!(Status::from_code(s.code()), Some(s));
            assert_eq!(s.is_fatal(), (100..200).contains(&s.code()));
        }
    }
}
