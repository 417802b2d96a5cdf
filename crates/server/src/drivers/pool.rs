//! # `--model pool`: a fixed pool of worker threads behind a readiness loop
//!
//! **How it works.** `--workers N` threads are started once. One thread runs
//! the epoll loop of the `poll` model; when a connection's socket is ready
//! it hands the connection to the pool, a worker does everything the socket
//! allows without waiting (answer the complete requests, write what fits),
//! and hands it back to the loop to wait for the next readiness.
//!
//! **What it costs.** Memory and thread count are fixed whatever the load:
//! N stacks, no thread creation per client, an idle client costs a small
//! record. Every hand-over costs two queue operations and a wake-up.
//!
//! **Where it breaks.** N bounds the requests *being worked on* at once, not
//! the clients: a worker never waits for a client, so idle clients and
//! clients that stop reading do not hold workers (the classic pool of
//! blocking workers, where N idle clients stall everyone else, breaks the
//! protocol's rule that such clients must not delay others). A storage call
//! of a backend that may block (a remote store) does not hold a worker
//! either: the connection is parked and the call runs in the offload pool
//! ([`crate::storage::offload`]). Work that is slow without waiting, such
//! as a cold read of a local disk, does hold a worker, and N of them stall
//! the pool.

use std::io;
use std::net::TcpListener;

use crate::config::Config;
use crate::drivers::reactor::{self, Workers};
use crate::drivers::OnReady;

pub fn serve(config: Config, listeners: Vec<TcpListener>, on_ready: OnReady) -> io::Result<()> {
    let workers = config.workers;
    reactor::run(&config, listeners, on_ready, |waker, mode| {
        Workers::start(workers, waker, mode)
    })
}
