//! A listing that never ends, fed to the reply decoder in any
//! fragmentation: a reader that takes the lines as they come
//! ([`ReplyDecoder::take_lines`]) holds no more than one fed chunk's worth,
//! however long the listing. Live heap bytes are measured per thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use hftp_proto::reply::{Expect, ReplyDecoder};
use proptest::prelude::*;

struct Tracking;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn add(n: isize) {
    LIVE.with(|l| {
        let now = l.get() + n;
        l.set(now);
        PEAK.with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: delegates every call to the system allocator unchanged; the
// thread-locals are const-initialised, have no destructor and never allocate.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as isize - layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,255}".prop_filter("not . or ..", |n| n != "." && n != "..")
}

/// Bytes fed per case: "endless" for the decoder, which never sees an end.
const FED: usize = 4 * 1024 * 1024;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn endless_listing_taken_as_it_comes_stays_small(
        names in prop::collection::vec(name(), 1..20),
        chunk in 1usize..8192,
    ) {
        let mut wire = Vec::new();
        for n in &names {
            wire.extend_from_slice(n.as_bytes());
            wire.extend_from_slice(b"\r\n");
        }
        let mut dec = ReplyDecoder::new(Expect::Listing);
        let mut out = Vec::new();
        let mut stream = b"0 OK\r\n".iter().chain(wire.iter().cycle()).copied();
        let mut buf = vec![0u8; chunk];
        let (mut fed, mut taken) = (0usize, 0u64);
        let base = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(base));
        while fed < FED {
            for b in buf.iter_mut() {
                *b = stream.next().expect("endless");
            }
            let (used, reply) = dec.feed(&buf, &mut out).expect("valid listing");
            prop_assert_eq!((used, reply), (chunk, None));
            for line in dec.take_lines() {
                prop_assert_eq!(&line, &names[(taken % names.len() as u64) as usize]);
                taken += 1;
            }
            fed += chunk;
        }
        prop_assert_eq!(dec.lines_seen(), taken);
        prop_assert!(taken as usize >= (FED - 6) / wire.len() * names.len() - names.len());
        // One chunk's names (each String at least 24 bytes of Vec plus its
        // text) and the decoder's partial line: far below what was fed.
        let peak = PEAK.with(Cell::get) - base;
        prop_assert!(peak < 64 * 1024 + 64 * chunk as isize, "peak {} bytes", peak);
    }
}
