//! How a transfer shows itself: a bar on a terminal, a line every few
//! seconds elsewhere (as wget's dot mode, so that a CI log shows a long
//! transfer is alive), sizes in human units; and `--limit-rate`.

use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hftp_client::{DownloadEvent, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `bytes` in binary units with one decimal (`512.0 MiB`), or exact bytes
/// with `exact` (`--bytes`).
pub fn size(bytes: u64, exact: bool) -> String {
    if exact {
        format!("{bytes} B")
    } else {
        hftp_client::iec(bytes)
    }
}

/// Parses a rate as curl does: bytes per second, with an optional suffix
/// `K`, `M` or `G` (powers of 1024), decimals allowed: `500K`, `1.5M`.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?}: expected a rate such as 200K, 1.5M or 100000 (bytes per second)");
    let (digits, scale) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1024.0),
        Some((i, 'm' | 'M')) => (&s[..i], 1024.0 * 1024.0),
        Some((i, 'g' | 'G')) => (&s[..i], 1024.0 * 1024.0 * 1024.0),
        _ => (s, 1.0),
    };
    let value: f64 = digits.parse().map_err(|_| bad())?;
    let rate = value * scale;
    if !rate.is_finite() || rate < 1.0 || rate > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(rate as u64)
}

/// An average rate, shared by every connection of a transfer: each chunk
/// waits until the bytes so far are due at `rate` since the start.
pub struct RateLimit {
    rate: u64,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimit {
    pub fn new(rate: u64) -> RateLimit {
        RateLimit {
            rate,
            state: Mutex::new((None, 0)),
        }
    }

    /// Accounts for `n` more bytes, sleeping as long as they are early.
    pub fn take(&self, n: u64) {
        let due = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let start = *state.0.get_or_insert_with(Instant::now);
            state.1 += n;
            start + Duration::from_secs_f64(state.1 as f64 / self.rate as f64)
        };
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

/// A writer that keeps to a [`RateLimit`] (for `cat`).
pub struct Throttled<'a, W: Write> {
    pub inner: W,
    pub limit: Option<&'a RateLimit>,
}

impl<W: Write> Write for Throttled<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(limit) = self.limit {
            limit.take(n as u64);
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// How `get` reports.
pub struct Bar {
    bar: ProgressBar,
    /// A bar is drawn (standard error is a terminal).
    pub visible: bool,
    quiet: bool,
    exact: bool,
    /// Off a terminal: a line every `every`.
    every: Duration,
    lines: Mutex<Lines>,
    limit: Option<RateLimit>,
}

#[derive(Default)]
struct Lines {
    name: String,
    total: u64,
    done: u64,
    started: Option<Instant>,
    last: Option<Instant>,
}

impl Bar {
    pub fn new(quiet: bool, exact: bool, every: Duration, limit: Option<u64>) -> Bar {
        let visible = !quiet && io::stderr().is_terminal();
        let bar = if visible {
            ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        let style = ProgressStyle::with_template(
            "{msg:20!} [{bar:30}] {binary_bytes:>10}/{binary_total_bytes:10} {binary_bytes_per_sec:>12} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        Bar {
            bar,
            visible,
            quiet,
            exact,
            every,
            lines: Mutex::new(Lines::default()),
            limit: limit.map(RateLimit::new),
        }
    }

    /// Whether a summary line is printed after each file.
    pub fn summarises(&self) -> bool {
        !self.quiet
    }

    pub fn size(&self, bytes: u64) -> String {
        size(bytes, self.exact)
    }

    fn line(&self, l: &Lines, now: Instant) {
        let secs = l.started.map_or(0.0, |s| (now - s).as_secs_f64());
        let pct = if l.total == 0 {
            100
        } else {
            (l.done as u128 * 100 / l.total as u128) as u64
        };
        eprintln!(
            "hftp: {}: {} of {} ({pct}%) after {secs:.0} s",
            l.name,
            self.size(l.done),
            self.size(l.total)
        );
    }
}

impl Progress for Bar {
    fn start(&self, name: &str, total: u64, done: u64) {
        if done > 0 && !self.quiet {
            eprintln!(
                "hftp: {name}: resuming, {} of {} already downloaded",
                self.size(done),
                self.size(total)
            );
        }
        self.bar.reset();
        self.bar.set_message(name.to_owned());
        self.bar.set_length(total);
        self.bar.set_position(done);
        let now = Instant::now();
        let mut l = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        *l = Lines {
            name: name.to_owned(),
            total,
            done,
            started: Some(now),
            last: Some(now),
        };
    }

    fn advance(&self, n: u64) {
        self.bar.inc(n);
        if !self.visible && !self.quiet {
            let now = Instant::now();
            let mut l = self.lines.lock().unwrap_or_else(|p| p.into_inner());
            l.done += n;
            if l.last.is_some_and(|last| now - last >= self.every) {
                l.last = Some(now);
                self.line(&l, now);
            }
        }
        if let Some(limit) = &self.limit {
            limit.take(n);
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Retries and dropped mirrors are reported even with `-q`, which
    /// keeps errors: each is an error that was survived.
    fn event(&self, event: &DownloadEvent) {
        self.bar.suspend(|| eprintln!("hftp: {event}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(0, false), "0 B");
        assert_eq!(size(1023, false), "1023 B");
        assert_eq!(size(1024, false), "1.0 KiB");
        assert_eq!(size(512 * 1024 * 1024, false), "512.0 MiB");
        assert_eq!(size(512 * 1024 * 1024, true), "536870912 B");
        assert_eq!(size(u64::MAX, false), "16.0 EiB");
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100"), Ok(100));
        assert_eq!(parse_rate("200K"), Ok(200 * 1024));
        assert_eq!(parse_rate("1.5m"), Ok(3 * 512 * 1024));
        assert_eq!(parse_rate("1G"), Ok(1 << 30));
        for bad in ["", "K", "0", "-1M", "1T", "abc", "0.5"] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
    }
}
