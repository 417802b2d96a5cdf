//! # hftp-proto — the HFTP protocol without I/O
//!
//! This crate turns bytes into requests ([`Scanner`]) and responses into
//! bytes ([`response`]); it owns no sockets, files or runtimes. Every server
//! driver, the client and the tools sit on it, so a fix to the protocol is
//! one fix. The protocol itself is specified in `docs/protocol.md`.
//!
//! ```
//! use hftp_proto::{Event, Request, Scanner};
//!
//! let mut scanner = Scanner::default();
//! let (used, event) = scanner.feed(b"help\r\nquit\r\n");
//! assert_eq!((used, event), (6, Some(Event::Request(Request::Help))));
//! ```

pub mod reply;
pub mod request;
pub mod response;
pub mod scanner;
pub mod status;

pub use request::{FileName, NameError, Range, Request, SliceMode, COMMANDS, MAX_NAME_LEN};
pub use scanner::{Event, Scanner, DEFAULT_MAX_LINE};
pub use status::Status;
