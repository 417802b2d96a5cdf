//! Memory that fork children share with the parent, instead of copying.
//!
//! A block mapped `MAP_SHARED | MAP_ANONYMOUS` before a fork is inherited
//! as the mapping itself, so a child's writes land in the parent's pages.
//! The metrics counters and the wide-block count live in such blocks.

/// Maps a zeroed, never unmapped block holding one `T`.
///
/// # Safety
///
/// All-zero bytes must be a valid `T`, and `T` must be safe to share
/// between processes (atomics only: no pointers, no locks of a process).
pub unsafe fn map_zeroed<T>() -> std::io::Result<&'static T> {
    // SAFETY: a fresh anonymous mapping, never unmapped, so the reference
    // lives as long as the process; the kernel hands out zeroed pages,
    // aligned to a page (more than any `T` here needs); the caller vouches
    // that zeroes are a valid `T`.
    unsafe {
        let ptr = rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            std::mem::size_of::<T>(),
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::SHARED,
        )?;
        Ok(&*(ptr as *const T))
    }
}
