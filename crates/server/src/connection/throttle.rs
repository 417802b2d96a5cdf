//! `--limit-rate`: a token bucket on the bytes of a connection's answer
//! bodies (as curl's and nginx's `limit_rate`), without a clock: the
//! connection hands it the `now` the driver gave it.
//!
//! Tokens accrue at `rate` bytes a second up to a burst of a tenth of a
//! second's worth (at least [`MIN_BURST`], at most [`MAX_BURST`]); a body
//! sends at most the tokens it has, and with none it sleeps until a
//! quantum has accrued, so bursts stay bounded and the average holds over
//! any span longer than a burst.

use std::time::{Duration, Instant};

/// The smallest burst: below it, every write would be a few bytes.
pub const MIN_BURST: u64 = 4 * 1024;
/// The largest burst: a fast limit still moves in steps of a few writes.
pub const MAX_BURST: u64 = 1 << 20;

#[derive(Debug)]
pub struct Throttle {
    rate: u64,
    burst: u64,
    tokens: u64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

impl Throttle {
    /// `rate` bytes a second (at least 1), full at `now`.
    pub fn new(rate: u64, now: Instant) -> Throttle {
        let rate = rate.max(1);
        let burst = (rate / 10).clamp(MIN_BURST, MAX_BURST);
        Throttle {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Bytes that may go now (0: wait until [`Throttle::wake_at`]).
    pub fn allowance(&mut self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.at);
        let earned = (elapsed.as_nanos() * u128::from(self.rate) / 1_000_000_000)
            .min(u128::from(u64::MAX)) as u64;
        if earned > 0 {
            self.tokens = self.tokens.saturating_add(earned).min(self.burst);
            // Keep the remainder of the nanoseconds that earned no byte.
            let spent = Duration::from_nanos(earned.saturating_mul(1_000_000_000) / self.rate);
            self.at = if self.tokens == self.burst {
                now
            } else {
                self.at + spent
            };
        }
        self.tokens
    }

    /// `n` body bytes went out.
    pub fn spend(&mut self, n: usize) {
        self.tokens = self.tokens.saturating_sub(n as u64);
    }

    /// When a quantum (the smaller of the burst and 16 KiB) will have
    /// accrued, given the tokens at hand.
    pub fn wake_at(&self) -> Instant {
        let quantum = self.burst.min(16 * 1024);
        let missing = quantum.saturating_sub(self.tokens);
        let nanos = u128::from(missing) * 1_000_000_000 / u128::from(self.rate);
        self.at + Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_average_holds_and_bursts_stay_bounded() {
        let t0 = Instant::now();
        let mut t = Throttle::new(100_000, t0);
        // A full burst at once (10,000 bytes), then nothing.
        assert_eq!(t.allowance(t0), 10_000);
        t.spend(10_000);
        assert_eq!(t.allowance(t0), 0);
        // Sending as fast as allowed for 10 s of virtual time moves the
        // burst plus 10 s at the rate, never more.
        let mut now = t0;
        let mut sent = 10_000u64;
        let mut wakes = 0;
        while now < t0 + Duration::from_secs(10) {
            now = t.wake_at().max(now + Duration::from_micros(1));
            let n = t.allowance(now);
            assert!(n <= 10_000, "a burst of {n}");
            t.spend(n as usize);
            sent += n;
            wakes += 1;
        }
        let expected = 10_000 + 1_000_000;
        assert!(sent <= expected + 16 * 1024, "{sent}");
        assert!(sent >= expected - 2 * 16 * 1024, "{sent}");
        assert!(wakes < 200, "{wakes} wake-ups for 1 MB");
    }

    #[test]
    fn tiny_and_huge_rates_are_sane() {
        let t0 = Instant::now();
        let mut slow = Throttle::new(1, t0);
        assert_eq!(slow.allowance(t0), MIN_BURST);
        slow.spend(MIN_BURST as usize);
        assert!(slow.wake_at() > t0 + Duration::from_secs(1000));
        let mut fast = Throttle::new(u64::MAX, t0);
        assert_eq!(fast.allowance(t0), MAX_BURST);
        fast.spend(usize::MAX);
        assert_eq!(fast.allowance(t0 + Duration::from_secs(1)), MAX_BURST);
    }
}
