//! # hftp-check — the HFTP conformance suite
//!
//! Named black-box cases, each an exchange over real TCP connections with
//! bounded waits, checked against literal bytes from the spec
//! (`docs/protocol.md`). Nothing here uses the project's own protocol
//! code, so the suite can judge it. Cases that need particular files declare
//! a fixture; the runner lays it out in the served directory before the case.
//! The runner survives buggy servers: after a failed case it checks that the
//! server still answers, and either stops (the rest not run) or, when it
//! started the server itself ([`supervisor`]), restarts it.
//!
//! ```no_run
//! let config = hftp_check::Config::new("127.0.0.1:19500".parse().unwrap());
//! let cases = hftp_check::cases::all();
//! let selection: Vec<_> = cases.iter().collect();
//! let results = hftp_check::run(&config, &selection, |r| println!("{}", hftp_check::report::text(r))).unwrap();
//! println!("{}", hftp_check::Summary::of(&results));
//! ```

mod b64;
pub mod case;
pub mod cases;
pub mod conn;
pub mod diagnose;
mod escape;
pub mod fixtures;
pub mod grade;
pub mod i18n;
pub mod outcome;
pub mod report;
pub mod route;
mod runner;
pub mod supervisor;

pub use case::{Case, Ctx, Revision, Then};
pub use i18n::Lang;
pub use outcome::{CaseResult, FailKind, Failure, Outcome, ServerEvent, Summary, Trouble};
pub use route::{Dialer, Route};
pub use runner::{
    probe_alive, probe_revision, run, run_supervised, run_with_sink, selected, Config,
};
