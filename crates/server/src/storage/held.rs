//! A store whose calls for one name do not return until released: what a
//! remote store stuck on one key looks like to a driver, made exact for
//! the tests that show such a call holds nobody else (the reactor's own, in
//! virtual time, and `tests/slow_storage.rs` for every in-process model).
//! No timing is involved: a test waits until the call is held, checks the
//! others, then releases it.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use hftp_proto::{FileName, Range};

use super::{ListPage, LocalDir, RangeReader, Storage, StorageError};

/// A local directory whose sizes and opens of `name` are held.
pub struct HeldStore {
    files: LocalDir,
    name: String,
    /// Calls held now, and whether they may go on.
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

impl HeldStore {
    /// Holds every size and open of `name` in `files` until
    /// [`HeldStore::release`].
    pub fn new(files: LocalDir, name: &str) -> HeldStore {
        HeldStore {
            files,
            name: name.to_string(),
            state: Mutex::new((0, false)),
            changed: Condvar::new(),
        }
    }

    /// Calls held now.
    pub fn held(&self) -> usize {
        self.lock().0
    }

    /// Waits, at most `limit`, until a call is held; whether one is.
    pub fn wait_held(&self, limit: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, limit, |s| s.0 == 0)
            .unwrap_or_else(PoisonError::into_inner);
        state.0 > 0
    }

    /// Lets every call held, and every later one, go on.
    pub fn release(&self) {
        self.lock().1 = true;
        self.changed.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, bool)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hold(&self, name: &FileName) {
        if name.as_str() != self.name {
            return;
        }
        let mut state = self.lock();
        state.0 += 1;
        self.changed.notify_all();
        while !state.1 {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.0 -= 1;
    }
}

impl Storage for HeldStore {
    fn backend(&self) -> &'static str {
        "held"
    }

    fn list_page(&self, cursor: Option<&str>) -> Result<ListPage, StorageError> {
        self.files.list_page(cursor)
    }

    fn size(&self, name: &FileName) -> Result<u64, StorageError> {
        self.hold(name);
        self.files.size(name)
    }

    fn open_range(
        &self,
        name: &FileName,
        range: Range,
    ) -> Result<Box<dyn RangeReader>, StorageError> {
        self.hold(name);
        self.files.open_range(name, range)
    }

    /// As a remote store's: the drivers must not call it on their loop.
    fn may_block(&self) -> bool {
        true
    }
}
