//! Wide blocks: a few base64 slices at a time stream in 192 KiB blocks.
//!
//! A base64 body holds one block of the file and its encoding, 48 KiB and
//! 64 KiB, so that a thousand clients streaming at once cost about 110 MiB.
//! One fast client is held back by that size: every 64 KiB written is a
//! system call, a segment train and a wake-up of the reader, and every
//! 48 KiB read another call. With 192 KiB blocks (256 KiB writes) one
//! connection's server CPU per MB fell from 0.75–1.0 ms to 0.70 ms, the
//! load generator's by a fifth, and the rate rose a third (bench/notes.md).
//!
//! So at most [`WIDE_SLOTS`] bodies at a time, across the whole process
//! tree, read wide blocks; the others keep 48 KiB. Memory stays bounded:
//! the wide ones add at most `WIDE_SLOTS` × 400 KiB, about 6 MiB, whatever
//! the number of clients. The count is kept in shared memory mapped before
//! the first connection, so that fork children share it (a child killed
//! with SIGKILL leaks its slot: fewer wide blocks afterwards, never more
//! memory).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The block of a wide body: a multiple of 3, so base64 chunks stay whole.
pub const WIDE_BLOCK: usize = 192 * 1024;
/// Bodies that may read wide blocks at once.
pub const WIDE_SLOTS: usize = 16;

/// A pool of slots, counted in memory that may be shared across processes.
pub struct Slots {
    taken: &'static AtomicUsize,
    max: usize,
}

static SHARED: OnceLock<Slots> = OnceLock::new();

/// Maps the shared count; called before the server forks or spawns
/// anything, so that every child counts into the same place.
pub fn init() {
    shared();
}

fn shared() -> &'static Slots {
    SHARED.get_or_init(|| Slots {
        taken: map_shared().unwrap_or_else(|| Box::leak(Box::new(AtomicUsize::new(0)))),
        max: WIDE_SLOTS,
    })
}

/// A zeroed atomic in `MAP_SHARED` memory, never unmapped.
fn map_shared() -> Option<&'static AtomicUsize> {
    // SAFETY: zero is a valid atomic.
    unsafe { crate::shared_memory::map_zeroed() }.ok()
}

/// One wide slot, given back when dropped.
pub struct Wide {
    slots: &'static Slots,
}

impl std::fmt::Debug for Wide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wide")
    }
}

impl Wide {
    /// A slot of the process tree's pool, if one is free.
    pub fn take() -> Option<Wide> {
        shared().take()
    }
}

impl Slots {
    fn take(&'static self) -> Option<Wide> {
        let mut taken = self.taken.load(Ordering::Relaxed);
        loop {
            if taken >= self.max {
                return None;
            }
            match self.taken.compare_exchange_weak(
                taken,
                taken + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Wide { slots: self }),
                Err(now) => taken = now,
            }
        }
    }
}

impl Drop for Wide {
    fn drop(&mut self) {
        self.slots.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Quick tier: a pool of its own (the shared one is used by bodies in
    // other tests running meanwhile).
    #[test]
    fn at_most_max_slots_are_out_and_dropping_frees_one() {
        let slots: &'static Slots = Box::leak(Box::new(Slots {
            taken: Box::leak(Box::new(AtomicUsize::new(0))),
            max: 3,
        }));
        let mut held: Vec<Wide> = (0..5).filter_map(|_| slots.take()).collect();
        assert_eq!(held.len(), 3);
        assert!(slots.take().is_none());
        held.pop();
        let again = slots.take();
        assert!(again.is_some());
        assert!(slots.take().is_none());
        assert_eq!(slots.taken.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn the_shared_count_is_in_shared_memory() {
        // A child process's slot is seen by the parent: the count is not
        // copied on fork.
        // Other tests' bodies hold at most WIDE_SLOTS meanwhile.
        init();
        // SAFETY: the child only touches an atomic and exits at once.
        match unsafe { libc::fork() } {
            0 => {
                shared().taken.fetch_add(1000, Ordering::Relaxed);
                // SAFETY: ends the child without running anything else.
                unsafe { libc::_exit(0) };
            }
            pid if pid > 0 => {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                let seen = shared().taken.fetch_sub(1000, Ordering::Relaxed);
                assert!((1000..=1000 + WIDE_SLOTS).contains(&seen), "{seen}");
            }
            _ => panic!("fork failed"),
        }
    }
}
