//! The counters, laid out in one block of shared anonymous memory.
//!
//! The block is mapped `MAP_SHARED | MAP_ANONYMOUS` once and never
//! unmapped; fork children inherit the mapping itself, not a copy, so their
//! increments land in the parent's counters. The kernel hands the pages
//! out zeroed, and zero is a valid value of every atomic here.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use super::{StorageOp, COMMANDS};

/// Upper bounds of the latency buckets, in seconds: 100 µs to 10 s.
pub const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[repr(transparent)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[repr(transparent)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn sub(&self, n: i64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A latency histogram: a count per bucket (not cumulative), the sum in
/// nanoseconds, the number of observations.
#[repr(C)]
pub struct Histogram {
    buckets: [Counter; BUCKETS.len()],
    sum_nanos: Counter,
    count: Counter,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].add(1);
        }
        self.sum_nanos
            .add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.count.add(1);
    }

    /// Sum in seconds, count, and the count of each bucket by its upper
    /// bound (not cumulative: the encoder adds them up), `+Inf` last.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let count = self.count.get();
        let mut buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, c)| (bound, c.get()))
            .collect();
        let finite: u64 = buckets.iter().map(|(_, n)| n).sum();
        buckets.push((f64::INFINITY, count.saturating_sub(finite)));
        (self.sum_nanos.get() as f64 / 1e9, count, buckets)
    }
}

#[repr(C)]
pub struct Counters {
    pub accepted: Counter,
    pub refused_max_connections: Counter,
    pub refused_max_per_ip: Counter,
    pub refused_proxy_header: Counter,
    pub refused_address: Counter,
    pub refused_tls_handshake: Counter,
    pub open: Gauge,
    pub requests: [[Counter; 8]; COMMANDS.len()],
    pub request_seconds: Histogram,
    /// By mode: base64, raw.
    pub slice_bytes: [Counter; 2],
    pub slice_seconds: [Histogram; 2],
    pub storage_seconds: [Histogram; StorageOp::ALL.len()],
    pub storage_errors: [Counter; StorageOp::ALL.len()],
}

/// Maps a zeroed block for the counters, shared with future children.
pub fn map() -> std::io::Result<&'static Counters> {
    // SAFETY: zeroed memory is a valid `Counters` (all atomics).
    unsafe { crate::shared_memory::map_zeroed() }
}
