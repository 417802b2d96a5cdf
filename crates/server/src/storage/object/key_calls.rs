//! A bound on the store calls in flight for one object, so that a key the
//! store never answers (a stalled node, a hot object) holds a few calls,
//! not every client of the server, and never delays calls for other keys.
//!
//! **How it works.** One semaphore of [`CALLS_PER_KEY`] permits per key
//! with calls in flight, made on the first call and dropped with the last
//! (the map holds only keys being asked for). A call waits for a permit
//! as a task does (no thread), at most as long as the call itself may
//! take; the permit is held until the store's answer begins (a body then
//! streams without one, so a popular file is still sent to any number of
//! clients at once).
//!
//! **Where it breaks.** A key with more waiting callers than permits
//! answers the late ones `199` when their wait runs out, by design: the
//! store is not asked more than [`CALLS_PER_KEY`] times at once for one
//! object.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Store calls in flight for one object key at most.
pub const CALLS_PER_KEY: usize = 8;

type Keys = Arc<Mutex<HashMap<String, Arc<Semaphore>>>>;

/// The semaphores of the keys being asked for.
#[derive(Default)]
pub struct KeyCalls {
    keys: Keys,
}

/// A call's right to go to the store; given back when dropped.
pub struct KeyPermit {
    keys: Keys,
    key: String,
    semaphore: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
}

impl KeyCalls {
    /// Waits at most `limit` for a permit to call the store about `key`;
    /// `None` when every permit stayed taken that long.
    pub async fn acquire(&self, key: &str, limit: Duration) -> Option<KeyPermit> {
        let semaphore = Arc::clone(
            lock(&self.keys)
                .entry(key.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(CALLS_PER_KEY))),
        );
        // Made before the wait, so that a wait given up removes the key too.
        let mut permit = KeyPermit {
            keys: Arc::clone(&self.keys),
            key: key.to_string(),
            semaphore: Arc::clone(&semaphore),
            permit: None,
        };
        match tokio::time::timeout(limit, semaphore.acquire_owned()).await {
            Ok(Ok(taken)) => {
                permit.permit = Some(taken);
                Some(permit)
            }
            _ => None,
        }
    }

    /// Keys with calls in flight or waiting (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.keys).len()
    }
}

impl Drop for KeyPermit {
    fn drop(&mut self) {
        let mut keys = lock(&self.keys);
        self.permit = None;
        // Only the map and this permit hold the semaphore: nobody else
        // calls or waits for this key.
        if Arc::strong_count(&self.semaphore) == 2 {
            keys.remove(&self.key);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_busy_key_makes_its_callers_wait_and_leaves_other_keys_alone() {
        let calls = KeyCalls::default();
        let limit = Duration::from_secs(20);
        let mut held = Vec::new();
        for _ in 0..CALLS_PER_KEY {
            held.push(
                calls
                    .acquire("big.bin", limit)
                    .await
                    .expect("a free permit"),
            );
        }
        // The next caller for the same key waits its whole limit (virtual
        // time: the paused clock jumps to the deadline), then gives up.
        assert!(calls.acquire("big.bin", limit).await.is_none());
        // Another key is not held back.
        let other = calls.acquire("small.bin", limit).await;
        assert!(other.is_some());
        assert_eq!(calls.len(), 2);
        drop(other);
        assert_eq!(calls.len(), 1, "a key without calls is forgotten");
        // A permit given back lets a waiting caller in.
        let waiter = tokio::spawn({
            let keys = KeyCalls {
                keys: Arc::clone(&calls.keys),
            };
            async move { keys.acquire("big.bin", limit).await.is_some() }
        });
        tokio::task::yield_now().await;
        held.pop();
        assert!(waiter.await.unwrap());
        held.clear();
        assert_eq!(calls.len(), 0);
    }
}
