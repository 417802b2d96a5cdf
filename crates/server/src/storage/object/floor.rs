//! The low-speed floor of a body streaming from the store, as curl's
//! `--speed-limit`/`--speed-time`: a store that sends fewer than
//! `limit` bytes a second for `time` (counting only the time spent waiting
//! for the store, never the time the client took), or nothing at all for
//! `time`, ends the slice, closed short and logged, instead of holding
//! its client for as long as the store trickles.

use std::time::Duration;

/// `--s3-low-speed-limit` and `--s3-low-speed-time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowSpeed {
    /// Bytes a second; 0: only a store that sends nothing for `time` ends
    /// the slice.
    pub limit: u64,
    pub time: Duration,
}

/// The default floor: 16 KiB/s over 10 s. A store a thousand times slower
/// than a disk is broken, not busy.
pub const DEFAULT: LowSpeed = LowSpeed {
    limit: 16 << 10,
    time: Duration::from_secs(10),
};

/// One body's measure against the floor.
#[derive(Debug)]
pub struct SpeedFloor {
    floor: LowSpeed,
    waited: Duration,
    bytes: u64,
}

impl SpeedFloor {
    pub fn new(floor: LowSpeed) -> SpeedFloor {
        SpeedFloor {
            floor,
            waited: Duration::ZERO,
            bytes: 0,
        }
    }

    /// The longest wait for the next bytes: past it the store sent nothing
    /// for a whole window.
    pub fn stall_limit(&self) -> Duration {
        self.floor.time
    }

    /// `bytes` came after waiting `waited` for the store: an error message
    /// once a whole window of waiting brought fewer than the floor.
    pub fn record(&mut self, waited: Duration, bytes: u64) -> Result<(), String> {
        self.waited += waited;
        self.bytes += bytes;
        if self.waited < self.floor.time {
            return Ok(());
        }
        let rate = self.bytes as f64 / self.waited.as_secs_f64();
        let (waited, got) = (self.waited, self.bytes);
        self.waited = Duration::ZERO;
        self.bytes = 0;
        if rate < self.floor.limit as f64 {
            return Err(format!(
                "the store sent {got} bytes in {waited:.1?} ({rate:.0} B/s), below the floor of {} B/s (--s3-low-speed-limit, --s3-low-speed-time)",
                self.floor.limit
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trickle_ends_after_one_window_and_a_fast_store_never_does() {
        let floor = LowSpeed {
            limit: 1000,
            time: Duration::from_secs(10),
        };
        let mut slow = SpeedFloor::new(floor);
        // 4 s of waiting for 400 bytes each: 100 B/s.
        assert!(slow.record(Duration::from_secs(4), 400).is_ok());
        assert!(slow.record(Duration::from_secs(4), 400).is_ok());
        let e = slow.record(Duration::from_secs(4), 400).unwrap_err();
        assert!(e.contains("below the floor of 1000 B/s"), "{e}");

        let mut fast = SpeedFloor::new(floor);
        for _ in 0..100 {
            assert!(fast.record(Duration::from_secs(1), 1 << 20).is_ok());
        }
        // A zero limit only ends a store that sends nothing (the stall
        // limit does that).
        let mut none = SpeedFloor::new(LowSpeed { limit: 0, ..floor });
        assert!(none.record(Duration::from_secs(30), 1).is_ok());
    }
}
