//! Running storage steps off a readiness loop: a small pool of blocking
//! threads, as nginx's `aio threads`.
//!
//! **How it works.** A loop (`poll`, `pool`, a ring of `uring`) must never
//! wait: when a connection needs a storage step from a backend whose calls
//! may block (a remote store answers in milliseconds), the loop parks the
//! connection, queues the step here with the connection's key, and goes on
//! serving the others. A pool thread runs the step, queues the reply and
//! calls the loop's wake-up (an `eventfd`: behind `mio::Waker` for the
//! readiness loops, a ring's mailbox for `uring`); the loop resumes the
//! connection with the reply on its next round.
//!
//! A backend that runs steps as tasks of its own ([`Storage::spawns_steps`]:
//! the object store) gets them directly, with the same wake-up: its calls
//! then never wait for a pool thread, and the pool keeps one thread as a
//! fallback.
//!
//! **What it costs.** Two queue operations and a wake-up per step, and a
//! fixed set of threads (their stacks are small). Steps of the local
//! directory are not sent here at all: they take microseconds, less than
//! the hand-over.
//!
//! **Where it breaks.** The pool bounds the storage calls in flight: with
//! [`THREADS`] threads and a store that takes 10 ms a call, at most 3,200
//! calls a second complete; more clients wait in the queue (but never
//! delay clients that need no storage, such as `help`).

use std::io;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};

use super::{Storage, StorageReply, StorageStep};

/// Threads of the pool: as nginx's default `thread_pool`.
pub const THREADS: usize = 32;

/// Stack size of a pool thread: steps need little.
const STACK_SIZE: usize = 256 * 1024;

type Job = (usize, StorageStep);

/// A running pool; dropping it lets the threads finish their steps and end.
pub struct Offload {
    jobs: Option<Sender<Job>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Set when the backend runs steps itself.
    spawner: Option<(Arc<dyn Storage>, Done)>,
}

type Done = Arc<dyn Fn(usize, StorageReply) + Send + Sync>;

impl Offload {
    /// Starts `threads` threads running steps against `storage`; each reply
    /// is handed to `done` with the key it was submitted with.
    pub fn start(
        threads: usize,
        storage: Arc<dyn Storage>,
        done: impl Fn(usize, StorageReply) + Send + Sync + 'static,
    ) -> io::Result<Offload> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let done: Done = Arc::new(done);
        let spawner = storage
            .spawns_steps()
            .then(|| (Arc::clone(&storage), Arc::clone(&done)));
        let threads = if spawner.is_some() { 1 } else { threads.max(1) };
        let threads = (0..threads)
            .map(|i| {
                let (queue, done, storage) =
                    (Arc::clone(&queue), Arc::clone(&done), Arc::clone(&storage));
                std::thread::Builder::new()
                    .name(format!("hftp-storage-{i}"))
                    .stack_size(STACK_SIZE)
                    .spawn(move || loop {
                        let job = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => return,
                        };
                        let Ok((key, step)) = job else { return };
                        done(key, step.run(&*storage));
                    })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Offload {
            jobs: Some(jobs),
            threads,
            spawner,
        })
    }

    /// Queues `step` for the connection `key`. Fails only once the pool is
    /// gone, giving the step back.
    pub fn submit(&self, key: usize, step: StorageStep) -> Result<(), StorageStep> {
        if let Some((storage, done)) = &self.spawner {
            let done = Arc::clone(done);
            step.spawn(&**storage, Box::new(move |reply| done(key, reply)));
            return Ok(());
        }
        let Some(jobs) = &self.jobs else {
            return Err(step);
        };
        jobs.send((key, step))
            .map_err(|mpsc::SendError((_, step))| step)
    }
}

impl Drop for Offload {
    fn drop(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
