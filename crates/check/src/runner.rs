//! Runs a selection of cases, one after the other, against one server:
//! decides skips, lays out each case's fixture, records outcomes.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::case::{Case, Ctx, Revision};
use crate::conn::Conn;
use crate::fixtures::{self, FixtureDir, FixtureSink};
use crate::outcome::{CaseResult, Failure, Outcome};

/// Where and how to run the suite.
#[derive(Clone, Debug)]
pub struct Config {
    pub addr: SocketAddr,
    /// The directory the server serves, if this process can write it.
    pub dir: Option<PathBuf>,
    /// The server does not run as root, so permission errors can be provoked.
    pub unprivileged_server: bool,
    /// Bound on every wait for the server.
    pub timeout: Duration,
    /// Allow a non-empty `dir` (its contents are deleted).
    pub wipe_dir: bool,
}

impl Config {
    pub fn new(addr: SocketAddr) -> Config {
        Config {
            addr,
            dir: None,
            unprivileged_server: false,
            timeout: Duration::from_secs(5),
            wipe_dir: false,
        }
    }
}

/// Whether `id` matches any of `patterns` (globs with `*` and `?`; a pattern
/// without either matches ids containing it). No patterns match everything.
pub fn selected(id: &str, patterns: &[String]) -> bool {
    patterns.is_empty()
        || patterns.iter().any(|p| {
            if p.contains(['*', '?']) {
                glob(p.as_bytes(), id.as_bytes())
            } else {
                id.contains(p.as_str())
            }
        })
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

/// Asks the server for `help`: a classic server answers `200`.
pub fn probe_revision(addr: SocketAddr, timeout: Duration) -> Revision {
    let classic = Conn::connect(addr, timeout)
        .and_then(|mut conn| {
            conn.send(b"help\r\n")?;
            conn.read_line()
        })
        .is_ok_and(|line| line.starts_with(b"200 "));
    if classic {
        Revision::Classic
    } else {
        Revision::Rev2026
    }
}

/// Runs `cases` in order, calling `on_result` after each, and leaves the
/// served directory empty. Fails only when the served directory is unusable.
pub fn run(
    config: &Config,
    cases: &[&Case],
    on_result: impl FnMut(&CaseResult),
) -> anyhow::Result<Vec<CaseResult>> {
    let dir = match &config.dir {
        None => None,
        Some(path) => {
            let meta = std::fs::metadata(path)
                .with_context(|| format!("served directory {}", path.display()))?;
            if !meta.is_dir() {
                bail!("{} is not a directory", path.display());
            }
            if !config.wipe_dir && !fixtures::is_empty(path)? {
                bail!(
                    "{} is not empty: the suite replaces its contents before every case; \
                     empty it or pass --wipe-dir",
                    path.display()
                );
            }
            Some(FixtureDir::new(path, meta.permissions().mode() & 0o7777))
        }
    };
    run_in(config, dir, cases, on_result)
}

/// [`run`] with the files laid out through `sink` (a bucket the server
/// serves, say) instead of `config.dir`. Cases whose files a sink cannot
/// hold (links, FIFOs, permissions) are skipped; the sink is left empty.
pub fn run_with_sink(
    config: &Config,
    sink: Arc<dyn FixtureSink>,
    cases: &[&Case],
    on_result: impl FnMut(&CaseResult),
) -> anyhow::Result<Vec<CaseResult>> {
    run_in(config, Some(FixtureDir::with_sink(sink)), cases, on_result)
}

fn run_in(
    config: &Config,
    dir: Option<FixtureDir>,
    cases: &[&Case],
    mut on_result: impl FnMut(&CaseResult),
) -> anyhow::Result<Vec<CaseResult>> {
    let has_files = dir.is_some();
    let revision = if cases.iter().any(|c| c.revision == Revision::Rev2026) {
        probe_revision(config.addr, config.timeout)
    } else {
        Revision::Rev2026
    };
    let ctx = Ctx::new(config.addr, config.timeout, dir);
    let mut results = Vec::with_capacity(cases.len());
    for case in cases {
        let started = Instant::now();
        let outcome = match skip_reason(case, config, has_files, revision) {
            Some(reason) => Outcome::Skip { reason },
            None => run_one(case, &ctx, has_files),
        };
        let result = CaseResult {
            id: case.id,
            section: case.section,
            expected: case.expected.clone(),
            outcome,
            millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        on_result(&result);
        results.push(result);
    }
    if has_files {
        ctx.dir()
            .reset()
            .context("emptying the served directory after the run")?;
    }
    Ok(results)
}

fn skip_reason(
    case: &Case,
    config: &Config,
    has_files: bool,
    revision: Revision,
) -> Option<String> {
    if case.fixture.is_some() && !has_files {
        return Some("needs the served directory (--dir) to lay out its files".into());
    }
    if case.needs_unprivileged && !config.unprivileged_server {
        return Some("needs a server that does not run as root (--unprivileged-server)".into());
    }
    if case.revision == Revision::Rev2026 && revision == Revision::Classic {
        return Some("2026 revision only; the server answers `help` with 200 (classic)".into());
    }
    None
}

fn run_one(case: &Case, ctx: &Ctx, has_files: bool) -> Outcome {
    if has_files {
        let fixture = case.fixture.unwrap_or(fixtures::empty);
        if let Err(err) = ctx.dir().reset().and_then(|()| fixture(ctx.dir())) {
            if err.kind() == std::io::ErrorKind::Unsupported {
                return Outcome::Skip {
                    reason: err.to_string(),
                };
            }
            return Outcome::Fail(Failure::new(
                "set-up: laying out the fixture",
                "a writable served directory",
                err.to_string(),
            ));
        }
    }
    match catch_unwind(AssertUnwindSafe(|| case.run(ctx))) {
        Ok(Ok(())) => Outcome::Pass,
        Ok(Err(failure)) => Outcome::Fail(failure),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Outcome::Fail(Failure::new(
                "running the case",
                "no panic in the suite",
                message,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::selected;

    #[test]
    fn selection_by_glob_or_substring() {
        let p = |s: &str| vec![s.to_string()];
        assert!(selected("eol.lf-alone", &[]));
        assert!(selected("eol.lf-alone", &p("eol.*")));
        assert!(!selected("raw.framing", &p("eol.*")));
        assert!(selected("slice.raw", &p("raw")));
        assert!(selected("raw.x", &p("r?w.*")));
    }
}
