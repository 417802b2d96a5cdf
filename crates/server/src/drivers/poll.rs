//! # `--model poll`: one thread, non-blocking sockets, a readiness loop
//!
//! **How it works.** Every socket is non-blocking and registered with epoll
//! (through `mio`). One thread asks the kernel "which sockets are ready?",
//! then for each ready one does only what can be done without waiting: read
//! what arrived, answer the complete requests, write what the socket
//! accepts. A connection's progress lives in its
//! [`Connection`](crate::connection::Connection) record (pending output, the
//! slice being streamed, leftover input), not on a stack, so a large slice
//! is produced chunk by chunk as the socket becomes writable and never
//! blocks the other clients. A storage call that may block (a remote store)
//! would stop the only thread, so the connection is parked and the call
//! runs in a small thread pool ([`crate::storage::offload`]) that wakes the
//! loop when it is done.
//!
//! **What it costs.** No thread or stack per client: an idle connection is
//! a small record (its buffers are freed while it is idle), so tens of
//! thousands fit in a few tens of MiB. No context switches between clients.
//!
//! **Where it breaks.** Everything runs on one core: CPU-heavy work (base64
//! of large slices) on behalf of one client delays all others, and the
//! server cannot use a second core; a cold read of a local disk (run
//! inline, since the page cache usually answers in microseconds) stalls
//! everyone for its duration. Every step must be written as an
//! explicit state machine, which is what async/await automates.

use std::io;
use std::net::TcpListener;

use crate::config::Config;
use crate::drivers::reactor::{self, Inline};
use crate::drivers::OnReady;

pub fn serve(config: Config, listeners: Vec<TcpListener>, on_ready: OnReady) -> io::Result<()> {
    reactor::run(&config, listeners, on_ready, |_, mode| {
        Ok(Inline::new(mode))
    })
}
