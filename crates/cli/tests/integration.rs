//! The integration tests of `hftp`: one test binary (as ripgrep's
//! `tests/tests.rs`), one module per area, one compile of the support code.
//! Every test starts the real `hftp` binary and talks to it over loopback
//! (or across network namespaces it creates).
//!
//! # Tiers
//!
//! - **Quick** (`cargo test --workspace`): needs Rust and python3 only, no
//!   root, no external tool or service. A test with no mark is in it.
//! - **Full** (`.ci/run`, as root: installs what is missing, then runs both
//!   tiers with `--include-ignored`): every test that needs a tool, a
//!   service or root carries `#[ignore = "full tier: needs ..."]`, which
//!   names what it needs. In the full tier a missing tool is a failure whose
//!   message names the install command, never a skip.
//!
//! `cargo test --workspace` ends with one line from `tests/tiers.rs` of
//! the server crate: how many full-tier tests it left out, and the command
//! that runs them.

#[macro_use]
mod support;
mod hostile;

// Quick tier (a few full-tier tests among them carry their own mark).
mod address_rules;
mod bench;
mod check_grader;
mod client;
mod client_hostile;
mod concurrency;
mod conformance;
mod docs_agree;
mod get_retry;
mod library_examples;
mod limits;
mod metrics;
mod product;
mod protocol_doc;
mod proxy_protocol;
mod rate_limit;
mod s3_probe;
mod serve_cli;
mod shutdown;
mod soak;

// Full tier: each test needs a tool, a service or root.
mod faulty_store;
mod garage_recipe;
mod grade;
mod haproxy;
mod netns;
mod object_store;
mod packages;
mod scale_out;
mod socks;
mod tls_client;
mod tls_server;
mod tor;
mod wireshark;
