//! Runs a selection of cases, one after the other, against one server:
//! decides skips, lays out each case's fixture, records outcomes, and
//! watches the server: after a failed case a fresh connection checks that
//! it still answers; one that does not is restarted (when the checker
//! started it) or ends the run, the remaining cases marked not run.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::case::{Case, Ctx, Revision};
use crate::conn;
use crate::conn::Conn;
use crate::fixtures::{self, Fixture, FixtureDir, FixtureSink};
use crate::i18n::tr;
use crate::outcome::{CaseResult, FailKind, Failure, Outcome, ServerEvent, Trouble};
use crate::route::{Dialer, Route};
use crate::supervisor::Supervisor;

/// Where and how to run the suite.
#[derive(Clone, Debug)]
pub struct Config {
    pub addr: SocketAddr,
    /// Reach the server through this instead of connecting to `addr` (a
    /// SOCKS5 proxy, as Tor's), or through this layer on each connection
    /// to `addr` (TLS: [`Dialer::layered`]).
    pub via: Option<Dialer>,
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
            via: None,
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

impl Config {
    /// Where the suite's connections go.
    pub fn route(&self) -> Route {
        self.route_to(self.addr)
    }

    /// Where the suite's connections go once the server listens on `addr`
    /// (a restarted server): a layer stays on them.
    fn route_to(&self, addr: SocketAddr) -> Route {
        match &self.via {
            Some(dialer) => Route::Dialed(dialer.at(addr)),
            None => Route::Direct(addr),
        }
    }

    /// Whether connections go through a proxy.
    fn proxied(&self) -> bool {
        self.via.as_ref().is_some_and(Dialer::is_proxied)
    }
}

/// Asks the server for `help`: a classic server answers `200`.
pub fn probe_revision(route: &Route, timeout: Duration) -> Revision {
    let classic = Conn::connect(route, timeout)
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

/// How long a server whose listener is gone gets to finish exiting before
/// the supervisor calls it hung rather than crashed.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// Whether the server at `route` still answers: a fresh connection, `quit`,
/// and any byte back within `timeout`. `Err` says what the probe saw.
pub fn probe_alive(route: &Route, timeout: Duration) -> Result<(), String> {
    let mut conn = Conn::connect(route, timeout).map_err(|f| f.got)?;
    conn.send(b"quit\r\n").map_err(|f| f.got)?;
    match conn.read_some() {
        Ok(true) => Ok(()),
        Ok(false) => Err(tr().probe_eof()),
        Err(_) => Err(tr().probe_no_answer(timeout.as_secs_f64())),
    }
}

/// Runs `cases` in order against the server at `config.addr`, calling
/// `on_result` after each, and leaves the served directory empty. After a
/// failed case it probes the server; once the server no longer answers,
/// the remaining cases are not run. Fails only when the served directory
/// is unusable or the server does not answer before the first case.
pub fn run(
    config: &Config,
    cases: &[&Case],
    on_result: impl FnMut(&CaseResult),
) -> anyhow::Result<Vec<CaseResult>> {
    run_against(config, local_dir(config)?, None, cases, on_result)
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
    run_against(
        config,
        Some(FixtureDir::with_sink(sink)),
        None,
        cases,
        on_result,
    )
}

/// Like [`run`], against a server the checker starts itself: in the
/// supervisor's directory, restarted (at most `max_restarts` times) when a
/// case crashes or hangs it. `config.addr` and `config.dir` are ignored.
pub fn run_supervised(
    config: &Config,
    supervisor: &mut Supervisor,
    max_restarts: u32,
    cases: &[&Case],
    on_result: impl FnMut(&CaseResult),
) -> anyhow::Result<Vec<CaseResult>> {
    let addr = supervisor.start()?;
    let config = Config {
        addr,
        dir: Some(supervisor.dir().to_path_buf()),
        ..config.clone()
    };
    let dir = local_dir(&config)?;
    let results = run_against(
        &config,
        dir,
        Some((supervisor, max_restarts)),
        cases,
        on_result,
    );
    supervisor.stop();
    results
}

/// The served directory of `config`, checked.
fn local_dir(config: &Config) -> anyhow::Result<Option<FixtureDir>> {
    Ok(match &config.dir {
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
    })
}

fn run_against(
    config: &Config,
    dir: Option<FixtureDir>,
    mut supervised: Option<(&mut Supervisor, u32)>,
    cases: &[&Case],
    mut on_result: impl FnMut(&CaseResult),
) -> anyhow::Result<Vec<CaseResult>> {
    let has_files = dir.is_some();
    let route = config.route();
    let probed = Instant::now();
    if let Err(probe) = probe_alive(&route, config.timeout) {
        bail!("the server at {route} does not answer: {probe}");
    }
    let round_trip = probed.elapsed();
    let revision = if cases.iter().any(|c| c.revision == Revision::Rev2026) {
        probe_revision(&route, config.timeout)
    } else {
        Revision::Rev2026
    };
    let mut ctx = Ctx::new(route, config.timeout, dir);
    if ctx.route.is_indirect() {
        // A connect and an answer through the proxy, twice over: the spec's
        // own bounds hold at the server, the path adds this much.
        ctx.slack = round_trip * 2;
    }
    let mut results = Vec::with_capacity(cases.len());
    let mut last_answered: Option<&'static str> = None;
    let mut restarts = 0u32;
    let mut stop: Option<String> = None;
    // Cases whose answers trickled in too slowly to finish.
    let mut trickles = 0usize;
    // Cases that left connections without `quit`, with how many.
    let mut abandoned_by: Vec<(&'static str, usize)> = Vec::new();
    for case in cases {
        if let Some(stop) = &stop {
            let result = CaseResult {
                id: case.id,
                section: case.section,
                expected: case.title(),
                outcome: Outcome::NotRun {
                    reason: tr().not_run(stop),
                },
                millis: 0,
                retried: false,
                server: None,
            };
            on_result(&result);
            results.push(result);
            continue;
        }
        let started = Instant::now();
        let abandoned_before = conn::abandoned_connections();
        conn::reset_peak();
        let mut retried = false;
        let mut outcome = match skip_reason(case, config, has_files, revision) {
            Some(reason) => Outcome::Skip { reason },
            None => run_one(case, &ctx, has_files, None),
        };
        // Slow is not wrong: when the checker started the server, a case
        // that met silence gets a second attempt on a fresh server, if the
        // server still answers at all. (A server it did not start is not
        // retried: a second attempt could wedge the worker a first one
        // left busy, and hide where the server stopped.)
        if matches!(&outcome, Outcome::Fail(f) if f.kind == FailKind::Timeout)
            && supervised.is_some()
            && probe_alive(&ctx.route, config.timeout).is_ok()
        {
            if let Some((supervisor, _)) = supervised.as_mut() {
                if let Ok(addr) = supervisor.start() {
                    ctx.route = config.route_to(addr);
                }
            }
            retried = true;
            outcome = run_one(case, &ctx, has_files, None);
        }
        // 202 where the shape of the request decides 201: the same request
        // with the file present tells a wrong order of checks apart.
        if let Outcome::Fail(failure) = &mut outcome {
            if has_files && case.fixture.is_none() && wants_201_got_202(failure) {
                if let Outcome::Pass = run_one(case, &ctx, has_files, Some(fixtures::hola)) {
                    failure.note = Some(tr().with_file_present(fixtures::HOLA_NAME));
                }
            }
        }
        // Connections a passing case left without `quit` are its point
        // (clients vanish, §1); a failing case's are only its failure's.
        let left = conn::abandoned_connections().saturating_sub(abandoned_before);
        if left > 0 && matches!(outcome, Outcome::Pass) {
            abandoned_by.push((case.id, left));
        }
        let trouble = match &outcome {
            Outcome::Skip { .. } | Outcome::NotRun { .. } => None,
            Outcome::Pass => supervised
                .as_mut()
                .and_then(|(supervisor, _)| crashed(supervisor)),
            Outcome::Fail(_) => match supervised.as_mut().and_then(|(s, _)| crashed(s)) {
                Some(trouble) => Some(trouble),
                None => probe_alive(&ctx.route, config.timeout).err().map(|probe| {
                    // A server whose listener is gone may be on its way out.
                    match supervised.as_mut().and_then(|(s, _)| {
                        s.wait_exit(EXIT_GRACE).map(|st| (st, stopped_output(s)))
                    }) {
                        Some((status, output)) => Trouble::Crashed { status, output },
                        None => hung(
                            probe,
                            supervised.as_mut().map(|(s, _)| &mut **s),
                            &abandoned_by,
                        ),
                    }
                }),
            },
        };
        // A server that exits has failed the case, whatever it answered.
        let outcome =
            match (&outcome, &trouble) {
                (Outcome::Pass, Some(Trouble::Crashed { status, .. })) => Outcome::Fail(
                    Failure::new(tr().after_case_step(), tr().keeps_running(), status.clone()),
                ),
                _ => outcome,
            };
        let server = trouble.map(|trouble| {
            let mut event = ServerEvent {
                trouble,
                last_answered,
                restarted: false,
                stop: None,
            };
            match supervised.as_mut() {
                None => {
                    event.stop = Some(tr().stopped_answering(last_answered, case.id));
                }
                Some((_, max)) if restarts >= *max => {
                    event.stop = Some(tr().restarts_exhausted(case.id, *max));
                }
                Some((supervisor, _)) => {
                    restarts += 1;
                    match supervisor.start() {
                        Ok(addr) => {
                            ctx.route = config.route_to(addr);
                            event.restarted = true;
                        }
                        Err(err) => {
                            event.stop = Some(tr().restart_failed(case.id, &format!("{err:#}")));
                        }
                    }
                }
            }
            stop.clone_from(&event.stop);
            event
        });
        // A server that drips its answers would hold the run for hours:
        // after a few such cases, stop and say why.
        if matches!(&outcome, Outcome::Fail(f) if f.kind == FailKind::Trickle) {
            trickles += 1;
        }
        let server = match server {
            None if trickles >= TRICKLES_TO_STOP => {
                let probe = tr().trickle_stop(trickles, case.id);
                let event = ServerEvent {
                    trouble: Trouble::Hung {
                        probe: probe.clone(),
                        output: String::new(),
                        held: conn::open_connections(),
                        abandoned_by: Vec::new(),
                        hint: String::new(),
                    },
                    last_answered,
                    restarted: false,
                    stop: Some(probe),
                };
                stop.clone_from(&event.stop);
                Some(event)
            }
            other => other,
        };
        if server.is_none() && !matches!(outcome, Outcome::Skip { .. }) {
            last_answered = Some(case.id);
        }
        let result = CaseResult {
            id: case.id,
            section: case.section,
            expected: case.title(),
            outcome,
            millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            retried,
            server,
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

/// The server's exit, if the supervised server has exited.
fn crashed(supervisor: &mut Supervisor) -> Option<Trouble> {
    let status = supervisor.exited()?;
    Some(Trouble::Crashed {
        status,
        output: stopped_output(supervisor),
    })
}

/// The output of a server that exited, once what it left running is
/// stopped too (it would hold the server's pipes open).
fn stopped_output(supervisor: &mut Supervisor) -> String {
    supervisor.stop();
    supervisor.output()
}

fn skip_reason(
    case: &Case,
    config: &Config,
    has_files: bool,
    revision: Revision,
) -> Option<String> {
    if case.fixture.is_some() && !has_files {
        return Some(tr().skip_needs_dir());
    }
    if case.needs_unprivileged && !config.unprivileged_server {
        return Some(tr().skip_needs_unprivileged());
    }
    if case.needs_direct && config.proxied() {
        return Some(tr().skip_needs_direct());
    }
    if case.revision == Revision::Rev2026 && revision == Revision::Classic {
        return Some(tr().skip_classic());
    }
    None
}

/// Cases whose answers trickle before the run stops.
const TRICKLES_TO_STOP: usize = 3;

/// Whether `failure` is a `202` where `201` was due.
fn wants_201_got_202(failure: &Failure) -> bool {
    failure.expected.starts_with("`201 ") && failure.got.starts_with("`202 ")
}

/// A server that no longer answers, explained: its output (when the
/// checker started it), the connections the checker held, the cases that
/// left clients without `quit`, and the likely cause.
fn hung(
    probe: String,
    supervisor: Option<&mut Supervisor>,
    abandoned_by: &[(&'static str, usize)],
) -> Trouble {
    let output = supervisor.map(|s| s.output()).unwrap_or_default();
    let recent: Vec<(&'static str, usize)> =
        abandoned_by.iter().rev().take(5).rev().copied().collect();
    let hint = if recent.is_empty() {
        tr().hang_hint()
    } else {
        tr().hang_hint_abandoned()
    };
    Trouble::Hung {
        probe,
        output,
        held: conn::peak_connections(),
        abandoned_by: recent,
        hint,
    }
}

/// Runs `case`, with `fixture` laid out instead of its own when given.
fn run_one(case: &Case, ctx: &Ctx, has_files: bool, fixture: Option<Fixture>) -> Outcome {
    if has_files {
        let fixture = fixture.or(case.fixture).unwrap_or(fixtures::empty);
        if let Err(err) = ctx.dir().lay_out(fixture) {
            if err.kind() == std::io::ErrorKind::Unsupported {
                return Outcome::Skip {
                    reason: err.to_string(),
                };
            }
            return Outcome::Fail(Failure::new(
                tr().fixture_step(),
                tr().fixture_expected(),
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
                tr().panic_step(),
                tr().panic_expected(),
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
