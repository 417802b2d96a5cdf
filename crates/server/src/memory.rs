//! Giving memory back to the system after a burst of connections.
//!
//! **Why.** glibc's allocator keeps what a program frees: small blocks go
//! back to per-thread arenas and stay mapped, so after a thousand clients
//! streamed slices and left, the server's resident memory stays at the
//! peak for good. `malloc_trim(0)` walks every arena and returns its free
//! pages to the kernel.
//!
//! **When.** Trimming costs a walk over the heap (milliseconds for a large
//! one), so it runs once per burst, not per connection: when the open
//! connections fall to a quarter of the peak seen since the last trim, and
//! that peak was at least [`BURST`]. The caller runs it after releasing its
//! locks; in a readiness loop it is one pause per burst.
//!
//! **Where it breaks.** Memory fragmented by long-lived allocations between
//! free pages is not returned whole, and other allocators (musl, jemalloc)
//! have no `malloc_trim`: there this does nothing.

/// Open connections that make a burst worth trimming after.
pub const BURST: usize = 64;

/// Tracks the peak of open connections since the last trim.
#[derive(Debug, Default)]
pub struct Reclaim {
    peak: usize,
}

impl Reclaim {
    /// After a connection opened: `open` are open now.
    pub fn opened(&mut self, open: usize) {
        self.peak = self.peak.max(open);
    }

    /// After a connection closed: `open` are still open. True when a burst
    /// has ended and [`release_free_memory`] is due.
    pub fn closed(&mut self, open: usize) -> bool {
        if self.peak >= BURST && open <= self.peak / 4 {
            self.peak = open;
            true
        } else {
            false
        }
    }
}

/// Returns the allocator's free pages to the kernel (glibc only).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only rearranges the allocator's own free lists; it
    // is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_at_each_fourfold_drop_of_a_burst() {
        let mut r = Reclaim::default();
        for open in 1..=1024 {
            r.opened(open);
        }
        let due: Vec<usize> = (0..1024).rev().filter(|&open| r.closed(open)).collect();
        assert_eq!(due, vec![256, 64, 16]);
        // The next burst is measured from what stayed open.
        assert!(!r.closed(0));
    }

    #[test]
    fn small_crowds_never_trim() {
        let mut r = Reclaim::default();
        for open in 1..BURST {
            r.opened(open);
        }
        assert!((0..BURST).rev().all(|open| !r.closed(open)));
    }
}
