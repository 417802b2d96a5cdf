//! The client's one error type, and the exit code each error maps to.
//! Its messages, English (the `Display`) and Spanish, are rows of one
//! table in `error/messages.rs`, both languages side by side.

use std::fmt;
use std::io;
use std::path::PathBuf;

use hftp_proto::reply::ReplyError;

mod messages;
use hftp_proto::Status;
use messages::{message, Lang};

/// Exit codes of the `hftp` client subcommands: the one place they are
/// defined. [`exit::TABLE`] describes them for `--help` (and
/// `docs/client.md` is checked against it by a test).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// An internal error of the client (a bug): please report it.
    pub const OTHER: u8 = 1;
    /// Bad command line: target, file name, range, options (a missing or
    /// bad PEM file of the TLS options among them).
    pub const USAGE: u8 = 2;
    /// The server has no such file (`202`), or the range lies outside it (`203`).
    pub const NOT_FOUND: u8 = 3;
    /// The server broke the protocol, answered an error status other than
    /// `202`/`203`, closed the connection early, sent a listing longer than
    /// the client holds, the file changed while it was downloaded, or
    /// mirrors disagree on its size.
    pub const PROTOCOL: u8 = 4;
    /// Could not connect: refused, unreachable, name not resolved, proxy
    /// failure, TLS failure (certificate not trusted, for another name,
    /// expired; client certificate missing or refused; not a TLS server).
    pub const CONNECT: u8 = 5;
    /// A connect, read or write timed out, or the total time limit
    /// (`--max-time`) passed.
    pub const TIMEOUT: u8 = 6;
    /// Local problem: the target file exists (no `--force`), the part file
    /// holds another download, or a local file could not be created,
    /// written or renamed.
    pub const LOCAL: u8 = 7;
    /// Interrupted by the user (Ctrl-C), as a shell reports SIGINT.
    pub const INTERRUPTED: u8 = 130;

    /// Every code with its one-line meaning, in order.
    pub const TABLE: &[(u8, &str)] = &[
        (OK, "success"),
        (
            OTHER,
            "internal error of the client (a bug: please report it)",
        ),
        (
            USAGE,
            "usage: bad target, option (or its PEM file), file name or range",
        ),
        (
            NOT_FOUND,
            "no such file on the server (202), or range outside the file (203)",
        ),
        (
            PROTOCOL,
            "protocol error: malformed or cut reply, server closed the connection, \
             other error status (199, 200, 201, 1xx), listing longer than the client \
             holds, file changed while downloading, mirrors disagree on its size",
        ),
        (
            CONNECT,
            "cannot connect: refused, unreachable, unknown host, proxy failure, \
             TLS failure (certificate not trusted, wrong name, expired, client \
             certificate missing or refused, not a TLS server)",
        ),
        (
            TIMEOUT,
            "timeout: connect, read or write (--timeout), or --max-time passed",
        ),
        (
            LOCAL,
            "local file problem: target exists (use -f/--force), part file of \
             another download, cannot create or write",
        ),
        (INTERRUPTED, "interrupted (Ctrl-C)"),
    ];
}

/// Everything that can go wrong talking to a server or writing a download.
#[derive(Debug)]
pub enum Error {
    /// Bad input from the user: target syntax, file name, range.
    Usage(String),
    /// A bug in the client: something it assumed did not hold.
    Internal(String),
    /// The server answered `request` with an error status.
    Status { request: String, status: Status },
    /// The server's reply to `request` broke the protocol.
    Protocol { request: String, error: ReplyError },
    /// The first reply on a connection did not even start like an HFTP
    /// status line: the peer speaks another protocol (an HTTP server, say).
    NotHftp {
        peer: String,
        request: String,
        sent: String,
    },
    /// The server closed the connection before its reply to `request` was complete.
    Closed { request: String, error: ReplyError },
    /// Connecting to `target` failed.
    Connect { target: String, source: io::Error },
    /// The SOCKS5 proxy refused or failed.
    Proxy(String),
    /// TLS with `peer` failed: its handshake, or an alert after it.
    Tls {
        peer: String,
        problem: crate::tls::TlsProblem,
    },
    /// A plain connection's first answer was TLS: the server speaks HFTP
    /// over TLS only.
    SpeaksTls { peer: String, request: String },
    /// A PEM file of the TLS options cannot be used.
    TlsFile {
        role: crate::tls::PemRole,
        path: PathBuf,
        problem: crate::tls::PemProblem,
    },
    /// The system's store of trusted CAs is empty or unreadable (why).
    TlsSystemStore(String),
    /// No progress for the configured timeout while doing `what`.
    Timeout { what: String },
    /// The total time limit ([`Deadline`](crate::Deadline)) passed while doing `what`.
    MaxTime {
        what: String,
        limit: std::time::Duration,
    },
    /// A listing longer than the client agreed to hold
    /// ([`ListingLimit`](crate::ListingLimit)).
    ListingTooLong {
        request: String,
        names: u64,
        bytes: u64,
    },
    /// The user interrupted (Ctrl-C) while `what` was under way.
    Interrupted { what: String },
    /// A network error on an established connection.
    Network { what: String, source: io::Error },
    /// The writer a slice was streamed into failed.
    Output(io::Error),
    /// The download target already exists (and `force` was not given).
    Exists(PathBuf),
    /// The part file holds verified bytes of another download (another
    /// server, name or size): kept, unless the user forces a fresh start.
    PartMismatch {
        part: PathBuf,
        held: String,
        wanted: String,
    },
    /// A local file operation failed.
    Local {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    /// A download larger than the local file system can hold: `room`
    /// bytes free in `dir`, or (`None`) more than its largest file.
    /// Checked before anything is written.
    TooLarge {
        name: String,
        size: u64,
        dir: PathBuf,
        room: Option<u64>,
    },
    /// The remote file changed size during the download.
    Changed {
        name: String,
        before: u64,
        after: u64,
    },
    /// The remote file changed or vanished during a download (`source`
    /// says how), so the part file, of a version the server no longer has,
    /// was removed (`removed`: it was there to remove).
    Superseded {
        source: Box<Error>,
        part: PathBuf,
        removed: bool,
    },
    /// A download failed (`source`) and its part file `part`, with the
    /// segments done, was kept for the same command to resume.
    Kept { source: Box<Error>, part: PathBuf },
    /// A pattern of `get` (`*`, `?`) matched none of the `listed` names.
    NoMatch { pattern: String, listed: usize },
    /// Mirror `mirror` has `size` bytes of `name` (`None`: no such file)
    /// where `reference` has `expected`.
    MirrorsDiffer {
        name: String,
        mirror: String,
        size: Option<u64>,
        reference: String,
        expected: u64,
    },
}

impl Error {
    /// The documented process exit code for this error (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Internal(_) => exit::OTHER,
            Error::Status { status, .. } => match status {
                Status::FileNotFound | Status::OffsetExceedsFileSize => exit::NOT_FOUND,
                _ => exit::PROTOCOL,
            },
            Error::Protocol { .. }
            | Error::NotHftp { .. }
            | Error::Closed { .. }
            | Error::Changed { .. }
            | Error::MirrorsDiffer { .. }
            | Error::ListingTooLong { .. } => exit::PROTOCOL,
            Error::Superseded { source, .. } | Error::Kept { source, .. } => source.exit_code(),
            Error::NoMatch { .. } => exit::NOT_FOUND,
            Error::Network { source, .. } if is_timeout(source) => exit::TIMEOUT,
            Error::Network { .. } => exit::PROTOCOL,
            Error::Connect { source, .. } if is_timeout(source) => exit::TIMEOUT,
            Error::Connect { .. } | Error::Proxy(_) => exit::CONNECT,
            Error::Tls {
                problem: crate::tls::TlsProblem::NotTls(crate::tls::NotTls::Silent(_)),
                ..
            } => exit::TIMEOUT,
            Error::Tls { .. } | Error::SpeaksTls { .. } | Error::TlsSystemStore(_) => exit::CONNECT,
            Error::TlsFile { .. } => exit::USAGE,
            Error::Timeout { .. } | Error::MaxTime { .. } => exit::TIMEOUT,
            Error::Interrupted { .. } => exit::INTERRUPTED,
            Error::Output(_)
            | Error::Exists(_)
            | Error::Local { .. }
            | Error::TooLarge { .. }
            | Error::PartMismatch { .. } => exit::LOCAL,
        }
    }

    /// The message in Spanish (the `Display` is English), for users who
    /// ask for it (`LANG=es...`, `--lang es`).
    pub fn in_spanish(&self) -> String {
        message(self, Lang::Es)
    }

    /// The error under the wrappers that only add what was done about it
    /// ([`Error::Kept`], [`Error::Superseded`]).
    pub fn cause(&self) -> &Error {
        match self {
            Error::Kept { source, .. } | Error::Superseded { source, .. } => source.cause(),
            other => other,
        }
    }

    /// Whether the connection that produced this error can no longer be used.
    pub fn breaks_connection(&self) -> bool {
        match self {
            Error::Usage(_)
            | Error::TlsFile { .. }
            | Error::TlsSystemStore(_)
            | Error::Exists(_)
            | Error::Local { .. }
            | Error::TooLarge { .. }
            | Error::Changed { .. }
            | Error::MirrorsDiffer { .. }
            | Error::PartMismatch { .. } => false,
            Error::Superseded { source, .. } | Error::Kept { source, .. } => {
                source.breaks_connection()
            }
            Error::NoMatch { .. } => false,
            Error::Status { status, .. } => status.is_fatal(),
            _ => true,
        }
    }
}

pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&message(self, Lang::En))
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::TlsFile {
                problem: crate::tls::PemProblem::Io(source),
                ..
            }
            | Error::Connect { source, .. }
            | Error::Network { source, .. }
            | Error::Output(source)
            | Error::Local { source, .. } => Some(source),
            Error::Protocol { error, .. } | Error::Closed { error, .. } => Some(error),
            Error::Superseded { source, .. } | Error::Kept { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// The line `--insecure` prints on standard error, every run: in
/// Spanish when `spanish`.
pub fn insecure_warning(spanish: bool) -> &'static str {
    let lang = if spanish { Lang::Es } else { Lang::En };
    messages::insecure_warning(lang)
}

/// `bytes` in binary units, one decimal: `4.0 EiB`, `512 B`.
pub fn iec(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Result with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    /// docs/client.md shows the same table as `--help`.
    #[test]
    fn documented_exit_codes_match_the_table() {
        let doc = include_str!("../../../docs/client.md");
        for (code, meaning) in super::exit::TABLE {
            let row = format!(
                "| {code} | {} |",
                meaning.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            assert!(doc.contains(&row), "docs/client.md lacks the row {row}");
        }
    }
}
