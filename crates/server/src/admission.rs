//! Admission control shared by every driver: at most `max_connections`
//! connections at once, and at most `max_per_ip` from one client address.
//!
//! A connection over a limit is accepted and closed at once (the client sees
//! end of file), which keeps the listen queue short and never exhausts
//! descriptors; refusals are logged at most once a second.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::memory::{self, Reclaim};
use crate::metrics::{self, Refusal};

pub struct Admission {
    max_total: usize,
    max_per_ip: usize,
    state: Mutex<State>,
    idle: Condvar,
}

#[derive(Default)]
struct State {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    last_log: Option<Instant>,
    refused_since_log: u64,
    reclaim: Reclaim,
}

/// Proof that a connection was admitted; frees its place when dropped.
pub struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    /// `max_per_ip == 0` means no limit per address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Admission> {
        Arc::new(Admission {
            max_total,
            max_per_ip: if max_per_ip == 0 {
                usize::MAX
            } else {
                max_per_ip
            },
            state: Mutex::new(State::default()),
            idle: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a connection from `peer`, or logs the refusal and returns None.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<Ticket> {
        let ip = peer.ip().to_canonical();
        let mut state = self.lock();
        let from_ip = state.per_ip.get(&ip).copied().unwrap_or(0);
        let (reason, refusal) = if state.total >= self.max_total {
            ("connection limit reached", Refusal::MaxConnections)
        } else if from_ip >= self.max_per_ip {
            ("per-address connection limit reached", Refusal::MaxPerIp)
        } else {
            state.total += 1;
            let total = state.total;
            state.reclaim.opened(total);
            *state.per_ip.entry(ip).or_insert(0) += 1;
            metrics::connection_opened();
            return Some(Ticket {
                admission: Arc::clone(self),
                ip,
            });
        };
        metrics::connection_refused(refusal);
        state.refused_since_log += 1;
        if state
            .last_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            tracing::warn!(%peer, refused = state.refused_since_log, "{reason}: closing new connections");
            state.last_log = Some(Instant::now());
            state.refused_since_log = 0;
        }
        None
    }

    /// Connections admitted and not yet finished.
    pub fn active(&self) -> usize {
        self.lock().total
    }

    /// Waits until no connection is active, at most `grace`; returns how
    /// many still are.
    pub fn wait_idle(&self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        let mut state = self.lock();
        while state.total > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = match self.idle.wait_timeout(state, left) {
                Ok((s, _)) => s,
                Err(e) => e.into_inner().0,
            };
        }
        state.total
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        metrics::connection_closed();
        let mut state = self.admission.lock();
        state.total -= 1;
        if let Some(n) = state.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                state.per_ip.remove(&self.ip);
            }
        }
        if state.total == 0 {
            self.admission.idle.notify_all();
        }
        let total = state.total;
        let trim = state.reclaim.closed(total);
        drop(state);
        // After a burst, give the connections' freed buffers back (see
        // `memory`), outside the lock.
        if trim {
            memory::release_free_memory();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_total_and_per_address() {
        let a = Admission::new(3, 2);
        let p1: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let p1_mapped: SocketAddr = "[::ffff:10.0.0.1]:2".parse().unwrap();
        let p2: SocketAddr = "10.0.0.2:1".parse().unwrap();
        let t1 = a.admit(p1).unwrap();
        let _t2 = a.admit(p1_mapped).unwrap();
        assert!(a.admit(p1).is_none(), "third from one address");
        let _t3 = a.admit(p2).unwrap();
        assert!(a.admit(p2).is_none(), "total limit");
        drop(t1);
        assert_eq!(a.active(), 2);
        assert!(a.admit(p1).is_some());
    }
}
