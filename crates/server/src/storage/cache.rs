//! `--stat-cache SECONDS`: sizes and listing pages answered from memory for
//! a few seconds, for deployments that accept staleness.
//!
//! The protocol wants live answers (a file added is listed at once), so the
//! default is no cache. With a store a round trip away, a short cache turns
//! repeated `get_metadata` and listings into memory lookups. What is
//! cached: a successful size, and each listing page by its cursor. What is
//! not: errors and "not found" (a file created is seen at once), and
//! slices (they always ask the store, pinned to the object's version; a
//! size from the cache may thus disagree with a slice for up to the TTL).
//! Memory is bounded: at most [`MAX_SIZES`] sizes and [`MAX_PAGES`]
//! pages; when full, expired entries go, and if none has expired the
//! cache starts afresh.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hftp_proto::{FileName, Range};

use super::{ListPage, RangeReader, StepDone, Storage, StorageError, StorageReply, StorageStep};

/// Sizes kept at most.
pub const MAX_SIZES: usize = 65_536;
/// Listing pages kept at most (a page is up to a few thousand names).
pub const MAX_PAGES: usize = 64;

/// A backend whose sizes and listing pages are kept for `ttl`.
pub struct StatCache {
    inner: Box<dyn Storage>,
    ttl: Duration,
    sizes: Arc<Mutex<Entries<FileName, u64>>>,
    pages: Arc<Mutex<Entries<Option<String>, ListPage>>>,
}

struct Entries<K, V> {
    map: HashMap<K, (Instant, V)>,
    limit: usize,
}

impl<K: Hash + Eq, V: Clone> Entries<K, V> {
    fn new(limit: usize) -> Self {
        Entries {
            map: HashMap::new(),
            limit,
        }
    }

    fn get(&self, key: &K, now: Instant) -> Option<V> {
        self.map
            .get(key)
            .filter(|(expires, _)| now < *expires)
            .map(|(_, v)| v.clone())
    }

    fn insert(&mut self, key: K, value: V, expires: Instant, now: Instant) {
        if self.map.len() >= self.limit {
            self.map.retain(|_, (until, _)| now < *until);
            if self.map.len() >= self.limit {
                self.map.clear();
            }
        }
        self.map.insert(key, (expires, value));
    }
}

impl StatCache {
    /// `inner`, with sizes and listing pages kept for `ttl`.
    pub fn new(inner: Box<dyn Storage>, ttl: Duration) -> StatCache {
        StatCache {
            inner,
            ttl,
            sizes: Arc::new(Mutex::new(Entries::new(MAX_SIZES))),
            pages: Arc::new(Mutex::new(Entries::new(MAX_PAGES))),
        }
    }
}

impl Storage for StatCache {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn list_page(&self, cursor: Option<&str>) -> Result<ListPage, StorageError> {
        let key = cursor.map(str::to_string);
        let now = Instant::now();
        let cached = self
            .pages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key, now);
        if let Some(page) = cached {
            return Ok(page);
        }
        let page = self.inner.list_page(cursor)?;
        self.pages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, page.clone(), now + self.ttl, now);
        Ok(page)
    }

    fn size(&self, name: &FileName) -> Result<u64, StorageError> {
        let now = Instant::now();
        let cached = self
            .sizes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name, now);
        if let Some(size) = cached {
            return Ok(size);
        }
        let size = self.inner.size(name)?;
        self.sizes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.clone(), size, now + self.ttl, now);
        Ok(size)
    }

    fn open_range(
        &self,
        name: &FileName,
        range: Range,
    ) -> Result<Box<dyn RangeReader>, StorageError> {
        self.inner.open_range(name, range)
    }

    fn open_raw_range(
        &self,
        name: &FileName,
        range: Range,
    ) -> Result<Box<dyn RangeReader>, StorageError> {
        self.inner.open_raw_range(name, range)
    }

    fn may_block(&self) -> bool {
        self.inner.may_block()
    }

    fn spawns_steps(&self) -> bool {
        self.inner.spawns_steps()
    }

    /// Answers from the cache at once, else passes the step on and keeps
    /// its answer on the way back.
    fn spawn_step(&self, step: StorageStep, done: StepDone) {
        let now = Instant::now();
        let expires = now + self.ttl;
        match step {
            StorageStep::Size(name) => {
                let sizes = Arc::clone(&self.sizes);
                if let Some(size) = lock(&sizes).get(&name, now) {
                    return done(StorageReply::Size(Ok(size)));
                }
                let key = name.clone();
                self.inner.spawn_step(
                    StorageStep::Size(name),
                    Box::new(move |reply| {
                        if let StorageReply::Size(Ok(size)) = &reply {
                            lock(&sizes).insert(key, *size, expires, now);
                        }
                        done(reply);
                    }),
                );
            }
            StorageStep::ListPage { cursor } => {
                let pages = Arc::clone(&self.pages);
                if let Some(page) = lock(&pages).get(&cursor, now) {
                    return done(StorageReply::Listing(Ok(page)));
                }
                let key = cursor.clone();
                self.inner.spawn_step(
                    StorageStep::ListPage { cursor },
                    Box::new(move |reply| {
                        if let StorageReply::Listing(Ok(page)) = &reply {
                            lock(&pages).insert(key, page.clone(), expires, now);
                        }
                        done(reply);
                    }),
                );
            }
            other => self.inner.spawn_step(other, done),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{list_all, LocalDir};

    #[test]
    fn sizes_and_listings_are_kept_for_the_ttl_only() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a"), b"1").unwrap();
        let local = LocalDir::new(tmp.path(), false).unwrap();
        let name = FileName::new("a").unwrap();

        let cached = StatCache::new(Box::new(local.clone()), Duration::from_secs(3600));
        assert_eq!(cached.size(&name).unwrap(), 1);
        assert_eq!(list_all(&cached).unwrap(), ["a"]);
        std::fs::write(tmp.path().join("a"), b"12").unwrap();
        std::fs::write(tmp.path().join("b"), b"").unwrap();
        assert_eq!(cached.size(&name).unwrap(), 1, "size served from the cache");
        assert_eq!(
            list_all(&cached).unwrap(),
            ["a"],
            "listing served from the cache"
        );
        // A name never seen is asked for live, "not found" is never kept.
        let b = FileName::new("b").unwrap();
        assert_eq!(cached.size(&b).unwrap(), 0);
        assert!(matches!(
            cached.size(&FileName::new("c").unwrap()),
            Err(StorageError::NotFound)
        ));

        // A zero TTL is live.
        let live = StatCache::new(Box::new(local), Duration::ZERO);
        assert_eq!(live.size(&name).unwrap(), 2);
        std::fs::write(tmp.path().join("a"), b"123").unwrap();
        assert_eq!(live.size(&name).unwrap(), 3);
        assert_eq!(list_all(&live).unwrap(), ["a", "b"]);
    }

    #[test]
    fn entries_stay_bounded() {
        let mut entries = Entries::new(4);
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        for i in 0..100 {
            entries.insert(i, i, later, now);
            assert!(entries.map.len() <= 4);
        }
        assert_eq!(entries.get(&99, now), Some(99));
        assert_eq!(entries.get(&99, later), None, "expired");
    }
}
