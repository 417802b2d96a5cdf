//! Counters, latency histograms and errors of one generator thread, merged
//! into the run's totals.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in nanoseconds, up to ten minutes, 3 significant digits.
const MAX_LATENCY_NS: u64 = 600_000_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("valid histogram bounds")
}

/// Counters the progress display reads while the run goes on.
#[derive(Debug, Default)]
pub struct Live {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub payload: AtomicU64,
    pub rx: AtomicU64,
}

/// How often a kind of error happened, and the first message seen.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ErrorKind {
    pub count: u64,
    pub example: String,
}

/// One thread's (or the merged) results.
#[derive(Debug)]
pub struct Stats {
    pub hist: Histogram<u64>,
    /// Replies received complete and valid.
    pub completed: u64,
    /// Requests that failed, by kind.
    pub errors: BTreeMap<String, ErrorKind>,
    /// Slice bytes decoded.
    pub payload: u64,
    /// Bytes read from and written to sockets.
    pub rx: u64,
    pub tx: u64,
    /// Connections (slots) that got at least one complete reply.
    pub served: u64,
    /// Connections opened again after the server closed one or it failed.
    pub reconnects: u64,
    /// Already added to [`Live`].
    flushed: [u64; 4],
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            hist: new_histogram(),
            completed: 0,
            errors: BTreeMap::new(),
            payload: 0,
            rx: 0,
            tx: 0,
            served: 0,
            reconnects: 0,
            flushed: [0; 4],
        }
    }
}

impl Stats {
    pub fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.hist.saturating_record(ns);
        self.completed += 1;
    }

    pub fn error(&mut self, kind: &str, example: impl FnOnce() -> String) {
        match self.errors.get_mut(kind) {
            Some(e) => e.count += 1,
            None => {
                self.errors.insert(
                    kind.to_owned(),
                    ErrorKind {
                        count: 1,
                        example: example(),
                    },
                );
            }
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|e| e.count).sum()
    }

    /// Publishes what changed since the last call.
    pub fn flush(&mut self, live: &Live) {
        let now = [self.completed, self.error_count(), self.payload, self.rx];
        let targets = [&live.requests, &live.errors, &live.payload, &live.rx];
        for ((now, old), target) in now.iter().zip(self.flushed.iter_mut()).zip(targets) {
            if *now > *old {
                target.fetch_add(*now - *old, Ordering::Relaxed);
                *old = *now;
            }
        }
    }

    pub fn merge(&mut self, other: Stats) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.completed += other.completed;
        for (kind, e) in other.errors {
            match self.errors.get_mut(&kind) {
                Some(mine) => mine.count += e.count,
                None => {
                    self.errors.insert(kind, e);
                }
            }
        }
        self.payload += other.payload;
        self.rx += other.rx;
        self.tx += other.tx;
        self.served += other.served;
        self.reconnects += other.reconnects;
    }

    pub fn latency(&self) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        let h = &self.hist;
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// Latency summary, microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}
