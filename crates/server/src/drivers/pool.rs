//! # `--model pool`: a fixed pool of threads and a queue
//!
//! **How it works.** `--workers N` threads are started once. The main thread
//! accepts connections and puts them in a queue; each worker takes one,
//! serves it until it ends, then takes the next.
//!
//! **What it costs.** Memory and thread count are fixed whatever the load:
//! N stacks, no thread creation per client. Requests cost the same context
//! switches as with a thread per connection.
//!
//! **Where it breaks.** A blocking worker serves one client at a time, so at
//! most N clients are served at once; the others wait in the queue, possibly
//! for as long as a client stays connected. N idle clients (or N slow
//! readers, until the write timeout) stall everyone else: the pool trades
//! fairness for bounded resources. Use it when connections are short.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::admission::{Admission, Ticket};
use crate::blocking::{accept_loop, serve_connection};
use crate::config::Config;
use crate::drivers::threads::STACK_SIZE;
use crate::drivers::tracker::{Registration, Tracker};
use crate::signals::Signals;

type Queue = Arc<Mutex<mpsc::Receiver<(TcpStream, Registration, Ticket)>>>;

pub fn serve(config: Config, listeners: Vec<TcpListener>) -> io::Result<()> {
    let signals = Signals::install()?;
    let tracker = Arc::new(Tracker::default());
    let admission = Admission::new(config.max_connections, config.max_per_ip);
    let config = Arc::new(config);
    let (queue_in, queue_out) = mpsc::channel();
    let queue: Queue = Arc::new(Mutex::new(queue_out));
    let workers = (0..config.workers.max(1))
        .map(|i| {
            let (queue, config) = (Arc::clone(&queue), Arc::clone(&config));
            std::thread::Builder::new()
                .name(format!("hftp-worker-{i}"))
                .stack_size(STACK_SIZE)
                .spawn(move || work(&queue, &config))
        })
        .collect::<io::Result<Vec<_>>>()?;
    // Queued connections count against the limit too: they hold a descriptor.
    accept_loop(
        &listeners,
        &signals,
        &admission,
        |stream, _peer, ticket| {
            let registration = tracker.register(&stream);
            let _ = queue_in.send((stream, registration, ticket));
        },
        || {},
    )?;
    drop(listeners);
    drop(queue_in);
    tracker.stop_reading();
    let left = tracker.wait_idle(config.shutdown_grace);
    if left == 0 {
        for w in workers {
            let _ = w.join();
        }
    }
    tracing::info!(unfinished = left, "shut down");
    Ok(())
}

fn work(queue: &Queue, config: &Config) {
    loop {
        let next = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        let Ok((stream, registration, ticket)) = next else { return };
        serve_connection(stream, config);
        drop(registration);
        drop(ticket);
    }
}
