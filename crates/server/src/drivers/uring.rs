//! # `--model uring`: completion-based I/O, one io_uring per thread
//!
//! **Readiness versus completion.** Every other model asks the kernel a
//! question and then does the work itself: `poll` asks epoll "which sockets
//! are ready?" and then calls `read`, `write` or `sendfile` on each; the
//! blocking models ask "wait until this one is ready" by calling `read`.
//! Either way there is one system call to learn that a socket is ready and
//! at least one more to move the bytes. With io_uring the program hands the
//! kernel the work itself — "receive into one of these buffers", "send
//! these bytes", "read 48 KiB of this file at this offset", "accept every
//! client of this listener" — as entries of a *submission queue* shared in
//! memory, and later reads the results from a *completion queue*. One
//! `io_uring_enter` call submits everything queued since the last one and
//! waits for the next completions: under load, hundreds of operations per
//! system call, and no readiness step at all.
//!
//! **How it works here.** `--workers` threads (one per core by default),
//! each with its own ring and its own share of the clients; they share only
//! the endpoint (admission, the bound on PROXY headers) and the listening sockets. Each ring keeps:
//!
//! - a *multishot accept* per listener: one submission, one completion per
//!   new client, for as long as the listener lives;
//! - one operation in flight per connection, chosen by its
//!   [`Connection`](crate::connection::Connection): a receive, a send, a
//!   file read, or a splice pair. The connection's bytes stay put until the
//!   completion reports on them (a guarantee of `Connection`), so a send
//!   hands the kernel a pointer into the connection's own output, no copy.
//!   Large writes (a slice's body, [`INLINE_SEND`] and up) the loop makes
//!   itself when the socket has room (`send` with `MSG_DONTWAIT`; a full
//!   socket costs a one-shot poll for room): one call moves 64–256 KiB, so
//!   the ring would batch nothing, and waiting for the completion of each
//!   would cost a round trip per block;
//! - a *buffer ring*: [`RECV_BUFFERS`] receive buffers of [`READ_BUF`]
//!   shared by all the thread's connections. A receive names the group, not
//!   a buffer; the kernel picks one only when bytes arrive, and the loop
//!   gives it back as soon as the connection has taken the bytes. An idle
//!   connection therefore holds no buffer at all, only its record;
//! - slices of local files read at once when the page cache holds the
//!   bytes (`preadv2` with `RWF_NOWAIT`, which refuses to wait for the
//!   disk), and otherwise through the ring (an `IORING_OP_READ` at the
//!   body's offset: a cold disk read never stalls the loop). Raw
//!   slices go from the page cache to the socket without a copy through
//!   user space: when every page of the next chunk is cached
//!   ([`page_cache`], `cachestat`), the loop calls `sendfile` itself on
//!   the socket made non-blocking for the call, and a full socket costs
//!   a one-shot poll for room (`IORING_OP_POLL_ADD`); otherwise the chunk
//!   is spliced from the file into a per-connection pipe and from the
//!   pipe into the socket, the two splices *linked* so they go in one
//!   submission. io_uring has no `sendfile`, and the kernel runs every
//!   splice on its `io-wq` threads: one thread wake-up per chunk, which
//!   on one fast connection left `uring` at 0.65–0.72× of `poll`. The disk
//!   is worth that hand-off, cached pages are not;
//! - a multishot poll on the signal pipe (shutdown) and, for a storage
//!   backend whose calls may block, on the eventfd that the
//!   [`offload`](crate::storage::offload) pool rings when a step is done.
//!
//! **Behind a proxy** (`--proxy-protocol`) an accepted socket is not a
//! connection yet: it waits in a small table of its own, with one receive
//! (from the same buffer ring) in flight, while its bytes go to the PROXY
//! header reader. Once the header is complete the client it names is
//! admitted and the bytes after the header are the connection's first
//! input; an invalid header, or none within `--proxy-header-timeout`
//! (checked every [`TICK`]: the receive is cancelled), closes the socket.
//!
//! Idle, write and drain deadlines are the connection's own, checked every
//! [`TICK`] (the wait for completions is bounded by it); ending a
//! connection with an operation in flight cancels the operation
//! (`IORING_OP_ASYNC_CANCEL`) and frees the record only once the kernel has
//! reported the cancellation, since until then it may still write into the
//! connection's buffers.
//!
//! **What it costs.** The submission queue depth ([`SQ_ENTRIES`]) bounds
//! what one `io_uring_enter` can submit, not how many operations are in
//! flight (a full queue is simply submitted early); the completion queue
//! ([`CQ_ENTRIES`]) must hold every completion that can arrive between two
//! visits, or the kernel keeps the overflow on a slower list. Both are
//! memory shared with the kernel, 64 and 16 bytes an entry. The buffer
//! ring costs its buffers, [`RECV_BUFFERS`] × [`READ_BUF`] = 4 MiB of
//! address space per thread, of which only the pages the kernel has written
//! are resident; a pending receive costs the kernel a poll entry, a few
//! hundred bytes, whatever the number of buffers.
//!
//! **Where it breaks.** io_uring may be unavailable: kernels before 5.19
//! lack multishot accept and buffer rings, `kernel.io_uring_disabled`
//! turns it off, container runtimes' seccomp policies forbid
//! `io_uring_setup`; then `--model uring` fails at start and says so, it
//! never falls back to another model. Splice is not a true asynchronous
//! operation: the kernel runs it on its own worker threads (`io-wq`), and a
//! splice into the socket of a client that reads slowly holds one of those
//! threads until the socket drains, so many slow raw downloads of files
//! not in the page cache (or of a remote store's pipe) cost kernel threads
//! where `poll` costs nothing; cached files go by `sendfile` and cost
//! only a poll entry. A send buffer more than one
//! operation deep would need a copy (the connection's buffer is handed out
//! once), and every connection's CPU work (base64) still runs on its
//! ring's thread, as in `poll`.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};
use slab::Slab;

use crate::admission::Ticket;
use crate::config::{Config, READ_BUF};
use crate::connection::{Action, Connection, End};
use crate::drivers::page_cache;
use crate::drivers::OnReady;
use crate::endpoint::{Accept, Admitted, Endpoint, Opened, Opening};
use crate::listen::AcceptFailures;
use crate::pipe::Pipe;
use crate::signals::Signals;
use crate::storage::offload::{self, Offload};
use crate::storage::{FileRead, Prepared, Storage, StorageReply};

/// Submission queue entries per ring.
pub const SQ_ENTRIES: u32 = 4096;
/// Completion queue entries per ring: one operation per connection is in
/// flight, and a thread serves a few thousand connections at most.
pub const CQ_ENTRIES: u32 = 16384;
/// Receive buffers per ring (a power of two, as the buffer ring requires).
pub const RECV_BUFFERS: u16 = 256;
/// The one buffer group of a ring.
const BUFFER_GROUP: u16 = 0;
/// How often deadlines are checked.
pub const TICK: Duration = Duration::from_millis(500);
/// Writes this large or larger are made by the loop itself when the
/// socket has room (see `Action::Send` in `advance`); smaller answers are
/// batched in the ring.
const INLINE_SEND: usize = crate::body::WRITE_BATCH;
/// Bytes asked of one splice pair: as `sendfile`'s chunk in `poll`.
const SPLICE_CHUNK: usize = 1 << 20;

/// The operations a connection may have in flight, one bit each.
const RECV: u16 = 1;
const SEND: u16 = 2;
const READ: u16 = 4;
const SPLICE_IN: u16 = 8;
const SPLICE_OUT: u16 = 16;
/// A storage step in the offload pool (not a ring operation: it cannot be
/// cancelled, only waited for).
const OFFLOAD: u16 = 32;
/// A splice from a reader's own pipe (a remote store's body) to the socket.
const PIPE_OUT: u16 = 64;
/// A timeout: the connection sleeps on its rate limit (`--limit-rate`).
const TIMER: u16 = 128;
/// A poll for room in the socket, after the loop's own `sendfile` or send
/// found it full.
const WRITABLE: u16 = 256;

/// Completions that belong to no connection carry this bit.
const SPECIAL: u64 = 1 << 63;
const SIGNALS: u64 = SPECIAL | 1;
const MAILBOX: u64 = SPECIAL | 2;
const CANCELLED: u64 = SPECIAL | 3;
/// Accepts carry `ACCEPT | listener index`.
const ACCEPT: u64 = SPECIAL | 1 << 16;
/// Receives of connections still reading their PROXY header carry
/// `HEADER | key` (a key of [`Worker::headers`]).
const HEADER: u64 = SPECIAL | 1 << 32;
/// The part of a `HEADER` user data that is the key.
const HEADER_KEY: u64 = (1 << 32) - 1;

/// The user data of an operation of connection `key`.
fn token(key: usize, op: u16) -> u64 {
    (key as u64) << 16 | u64::from(op)
}

/// `sendfile` into `socket` without waiting: the socket is made
/// non-blocking for the call only (the ring's own operations on it expect
/// a blocking socket and arm their own polls).
fn sendfile_now(
    socket: &OwnedFd,
    file: std::os::fd::BorrowedFd<'_>,
    offset: u64,
    len: usize,
) -> io::Result<usize> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    let flags = fcntl_getfl(socket)?;
    fcntl_setfl(socket, flags | OFlags::NONBLOCK)?;
    let mut offset = offset;
    let sent = rustix::fs::sendfile(socket, file, Some(&mut offset), len);
    fcntl_setfl(socket, flags)?;
    Ok(sent?)
}

/// Reads what the page cache holds at once, as `poll` does
/// (`preadv2(RWF_NOWAIT)` reads cached pages and refuses to wait for the
/// disk): only a read the disk must serve costs a trip through the ring.
/// The read back when it is not (or not wholly) done.
fn read_if_cached(mut read: FileRead) -> Result<StorageReply, FileRead> {
    loop {
        let Some(fd) = read.fd().map(|fd| fd.as_raw_fd()) else {
            return Err(read);
        };
        let offset = read.offset();
        // SAFETY: `read` owns the reader, which keeps the descriptor open
        // for the duration of these calls.
        let file = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let mut bufs = [io::IoSliceMut::new(read.buf_mut())];
        match rustix::io::preadv2(file, &mut bufs, offset, rustix::io::ReadWriteFlags::NOWAIT) {
            // End of file: the ring's read reports the file that shrank.
            Ok(0) => return Err(read),
            Ok(n) => match read.filled(n) {
                Ok(reply) => return Ok(reply),
                Err(more) => read = more,
            },
            Err(rustix::io::Errno::INTR) => {}
            // EAGAIN: not cached; EOPNOTSUPP: a file system without it.
            Err(_) => return Err(read),
        }
    }
}

/// Offload keys carry the ring's index above the connection's key.
const RING_SHIFT: u32 = 40;

pub fn serve(config: Config, listeners: Vec<TcpListener>, on_ready: OnReady) -> io::Result<()> {
    let threads = config.workers.max(1);
    // The rings come first: if io_uring is unavailable, nothing else starts.
    let rings = (0..threads)
        .map(|_| new_ring())
        .collect::<io::Result<Vec<_>>>()?;
    let signals = Signals::install()?;
    if let Some(l) = &config.metrics {
        // Scrapes are rare and short: a thread of their own, not a ring.
        crate::metrics::endpoint::spawn_thread(l.try_clone()?)?;
    }
    let endpoint = Endpoint::new(&config);
    let storage = Arc::clone(&config.session.storage);
    let mailboxes = (0..threads)
        .map(|_| Mailbox::new().map(Arc::new))
        .collect::<io::Result<Vec<_>>>()?;
    let offload = if storage.may_block() {
        let mailboxes = mailboxes.clone();
        Some(Offload::start(
            offload::THREADS,
            Arc::clone(&storage),
            move |key, reply| {
                if let Some(mailbox) = mailboxes.get(key >> RING_SHIFT) {
                    mailbox.post(key & ((1 << RING_SHIFT) - 1), reply);
                }
            },
        )?)
    } else {
        None
    };
    // Each ring accepts on its own descriptors of the listeners, so that
    // when every ring has dropped them at shutdown the sockets are closed.
    let mut per_ring = Vec::new();
    for _ in 0..threads {
        per_ring.push(
            listeners
                .iter()
                .map(|l| l.try_clone().map(OwnedFd::from))
                .collect::<io::Result<Vec<_>>>()?,
        );
    }
    drop(listeners);
    on_ready();

    let unfinished = std::thread::scope(|scope| {
        let handles: Vec<_> = rings
            .into_iter()
            .zip(per_ring)
            .zip(&mailboxes)
            .enumerate()
            .map(|(index, ((ring, listeners), mailbox))| {
                let worker = Worker::new(
                    index,
                    ring,
                    listeners,
                    Shared {
                        config: &config,
                        endpoint: &endpoint,
                        signals: Some(&signals),
                        mailbox,
                        mailboxes: &mailboxes,
                        offload: offload.as_ref(),
                        storage: &*storage,
                    },
                );
                std::thread::Builder::new()
                    .name(format!("hftp-uring-{index}"))
                    .spawn_scoped(scope, move || worker?.run())
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut unfinished = 0;
        for handle in handles {
            match handle.join() {
                Ok(result) => unfinished += result?,
                Err(_) => return Err(io::Error::other("a ring thread panicked")),
            }
        }
        Ok::<usize, io::Error>(unfinished)
    })?;
    tracing::info!(unfinished, "shut down");
    Ok(())
}

/// A ring, or the one-line reason why io_uring cannot be used here.
fn new_ring() -> io::Result<IoUring> {
    let unavailable = |what: String| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "io_uring is unavailable ({what}): it needs Linux 5.19 or later, \
                 kernel.io_uring_disabled=0 and no seccomp policy forbidding it; \
                 choose another --model"
            ),
        )
    };
    let ring = IoUring::builder()
        .setup_cqsize(CQ_ENTRIES)
        .setup_coop_taskrun()
        .build(SQ_ENTRIES)
        .map_err(|e| unavailable(format!("io_uring_setup: {e}")))?;
    if !ring.params().is_feature_nodrop() || !ring.params().is_feature_ext_arg() {
        return Err(unavailable("the kernel lacks NODROP or EXT_ARG".into()));
    }
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| unavailable(format!("probe: {e}")))?;
    let needed = [
        ("accept", opcode::AcceptMulti::CODE),
        ("recv", opcode::Recv::CODE),
        ("send", opcode::Send::CODE),
        ("read", opcode::Read::CODE),
        ("splice", opcode::Splice::CODE),
        ("poll", opcode::PollAdd::CODE),
        ("cancel", opcode::AsyncCancel::CODE),
    ];
    for (name, code) in needed {
        if !probe.is_supported(code) {
            return Err(unavailable(format!("no {name} operation")));
        }
    }
    Ok(ring)
}

/// Storage replies from the offload pool for one ring, and the eventfd
/// that tells the ring they are there (or that the server is stopping).
struct Mailbox {
    replies: Mutex<Vec<(usize, StorageReply)>>,
    bell: OwnedFd,
}

impl Mailbox {
    fn new() -> io::Result<Mailbox> {
        let bell = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        Ok(Mailbox {
            replies: Mutex::new(Vec::new()),
            bell,
        })
    }

    fn post(&self, key: usize, reply: StorageReply) {
        self.replies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((key, reply));
        self.ring();
    }

    /// Wakes the mailbox's ring.
    fn ring(&self) {
        let _ = rustix::io::write(&self.bell, &1u64.to_ne_bytes());
    }

    fn take(&self) -> Vec<(usize, StorageReply)> {
        let mut count = [0u8; 8];
        let _ = rustix::io::read(&self.bell, &mut count);
        std::mem::take(&mut *self.replies.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The receive buffers of one ring, registered with the kernel as a buffer
/// ring: the kernel takes buffers from the ring's head, the loop gives them
/// back at its tail.
struct BufferRing {
    /// The ring of entries: page-aligned memory shared with the kernel.
    entries: *mut types::BufRingEntry,
    entries_layout: std::alloc::Layout,
    /// The buffers, `RECV_BUFFERS` of `READ_BUF` bytes, back to back.
    buffers: Box<[u8]>,
    tail: u16,
}

impl BufferRing {
    fn register(ring: &IoUring) -> io::Result<BufferRing> {
        let count = usize::from(RECV_BUFFERS);
        let entries_layout = std::alloc::Layout::from_size_align(
            count * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .map_err(io::Error::other)?;
        // SAFETY: the layout has a non-zero size.
        let entries =
            unsafe { std::alloc::alloc_zeroed(entries_layout) }.cast::<types::BufRingEntry>();
        if entries.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let mut bufs = BufferRing {
            entries,
            entries_layout,
            buffers: vec![0u8; count * READ_BUF].into_boxed_slice(),
            tail: 0,
        };
        // SAFETY: the entries stay allocated until `Drop`, which runs after
        // the ring is dropped (the worker drops its ring first).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                entries as u64,
                RECV_BUFFERS,
                BUFFER_GROUP,
                0,
            )
        }
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("io_uring is unavailable (buffer ring: {e}): it needs Linux 5.19 or later; choose another --model"),
            )
        })?;
        for id in 0..RECV_BUFFERS {
            bufs.give_back(id);
        }
        Ok(bufs)
    }

    /// The bytes the kernel received into buffer `id`.
    fn bytes(&self, id: u16, len: usize) -> &[u8] {
        let start = usize::from(id) * READ_BUF;
        &self.buffers[start..start + len.min(READ_BUF)]
    }

    /// Makes buffer `id` available to the kernel again.
    fn give_back(&mut self, id: u16) {
        if id >= RECV_BUFFERS {
            return;
        }
        let index = usize::from(self.tail & (RECV_BUFFERS - 1));
        let addr = self.buffers.as_ptr() as u64 + u64::from(id) * READ_BUF as u64;
        // SAFETY: `index` is within the entries; the kernel reads only the
        // entries between its head and the published tail, and this one is
        // beyond the tail until the store below.
        unsafe {
            let entry = &mut *self.entries.add(index);
            entry.set_addr(addr);
            entry.set_len(READ_BUF as u32);
            entry.set_bid(id);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail lives in the first entry's reserved field, as the
        // kernel's ABI says; it is written with release ordering so the
        // kernel sees the entry before the new tail.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

// SAFETY: the entries are plain memory owned by this value alone (the
// kernel reads them on behalf of whichever thread owns the ring).
unsafe impl Send for BufferRing {}

impl Drop for BufferRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `register` with this layout.
        unsafe { std::alloc::dealloc(self.entries.cast(), self.entries_layout) };
    }
}

/// One client of a ring.
struct Slot {
    socket: OwnedFd,
    conn: Connection,
    _ticket: Ticket,
    /// Operations in flight (bits `RECV`...`OFFLOAD`).
    inflight: u16,
    /// The file read in flight: its buffer must outlive the operation.
    file_read: Option<FileRead>,
    pipe: Option<Pipe>,
    /// File bytes spliced into the pipe and not yet into the socket.
    in_pipe: usize,
    /// The last splice from the file moved nothing: the file shrank.
    file_ended: bool,
    /// Ending: freed once nothing is in flight.
    closing: Option<End>,
    /// The receive was cancelled to tell the connection of a shutdown: its
    /// `ECANCELED` is no error.
    stop_cancel: bool,
    /// The time a `TIMER` operation in flight points to (boxed: the slab
    /// may move the slot, the kernel reads this address).
    timer: Option<Box<types::Timespec>>,
}

/// A connection reading its PROXY header (`--proxy-protocol`): not yet
/// admitted, so it has no [`Connection`]; its receives take buffers of the
/// ring like any other.
struct PendingHeader {
    socket: OwnedFd,
    opening: Opening,
    /// Refused (late, or a shutdown) while its receive was in flight: the
    /// record goes when the kernel reports the cancellation.
    cancelling: bool,
}

/// What every ring shares.
struct Shared<'a> {
    config: &'a Config,
    endpoint: &'a Arc<Endpoint>,
    /// Absent in tests, which call [`Worker::stop`] themselves.
    signals: Option<&'a Signals>,
    mailbox: &'a Mailbox,
    /// Every ring's mailbox: the ring that sees the stop signal rings them
    /// all (the others' polls on the signal pipe may find it drained).
    mailboxes: &'a [Arc<Mailbox>],
    offload: Option<&'a Offload>,
    storage: &'a dyn Storage,
}

struct Worker<'a> {
    index: usize,
    /// Dropped before `bufs` (field order), which it points into.
    ring: IoUring,
    bufs: BufferRing,
    shared: Shared<'a>,
    listeners: Vec<OwnedFd>,
    slots: Slab<Slot>,
    /// Connections still reading their PROXY header; each has exactly one
    /// receive in flight.
    headers: Slab<PendingHeader>,
    /// Header receives that found no buffer: submitted again next round.
    headers_again: Vec<usize>,
    /// Connections that used up their turn, or found no receive buffer.
    again: Vec<usize>,
    stopping: bool,
    /// The worker's clock: read once per round, after the wait, and handed
    /// to [`Worker::handle`] (a test hands it a virtual one).
    now: Instant,
    /// Set at shutdown: when the answers in flight must be done.
    stop_deadline: Option<Instant>,
    last_sweep: Instant,
    /// Completions reaped by the last wait, not yet handled.
    completions: Vec<(u64, i32, u32)>,
    /// A multishot accept ended in an error (out of descriptors): arm it
    /// again at the next tick.
    retry_accept: bool,
    accept_failures: AcceptFailures,
}

impl<'a> Worker<'a> {
    fn new(
        index: usize,
        ring: IoUring,
        listeners: Vec<OwnedFd>,
        shared: Shared<'a>,
    ) -> io::Result<Worker<'a>> {
        let bufs = BufferRing::register(&ring)?;
        Ok(Worker {
            index,
            ring,
            bufs,
            shared,
            listeners,
            slots: Slab::new(),
            headers: Slab::new(),
            headers_again: Vec::new(),
            again: Vec::new(),
            stopping: false,
            now: Instant::now(),
            stop_deadline: None,
            last_sweep: Instant::now(),
            completions: Vec::with_capacity(1024),
            retry_accept: false,
            accept_failures: AcceptFailures::default(),
        })
    }

    /// Serves until shutdown; returns the connections left unfinished.
    fn run(mut self) -> io::Result<usize> {
        self.start();
        while !self.finished(self.now) {
            self.wait(TICK)?;
            // The one clock reading of the round: everything below sees it.
            self.handle(Instant::now());
        }
        Ok(self.unfinished())
    }

    /// Arms the accepts and the polls on the signal pipe and the mailbox.
    fn start(&mut self) {
        for i in 0..self.listeners.len() {
            self.arm_accept(i);
        }
        if let Some(signals) = self.shared.signals {
            let signal_fd = signals.fd().as_raw_fd();
            self.push(
                &opcode::PollAdd::new(types::Fd(signal_fd), libc::POLLIN as u32)
                    .multi(true)
                    .build()
                    .user_data(SIGNALS),
            );
        }
        let bell = self.shared.mailbox.bell.as_raw_fd();
        self.push(
            &opcode::PollAdd::new(types::Fd(bell), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(MAILBOX),
        );
    }

    /// Stopped, and every connection done or the grace period over.
    fn finished(&self, now: Instant) -> bool {
        self.stop_deadline.is_some_and(|deadline| {
            (self.slots.is_empty() && self.headers.is_empty()) || now >= deadline
        })
    }

    /// Advances the connections whose turn came again, submits, and waits
    /// for completions (at most `tick`, none when work is ready).
    fn wait(&mut self, tick: Duration) -> io::Result<()> {
        for key in std::mem::take(&mut self.again) {
            self.advance(key);
        }
        for key in std::mem::take(&mut self.headers_again) {
            self.receive_header(key);
        }
        let busy = !self.again.is_empty() || !self.headers_again.is_empty();
        let wait = types::Timespec::from(if busy { Duration::ZERO } else { tick });
        let args = types::SubmitArgs::new().timespec(&wait);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) => {}
            Err(e) => return Err(e),
        }
        let completions: Vec<_> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result(), c.flags()))
            .collect();
        self.completions.extend(completions);
        Ok(())
    }

    /// Handles at `now` the completions the last wait reaped, and the sweep
    /// when a tick has passed.
    fn handle(&mut self, now: Instant) {
        self.now = now;
        for (user_data, result, flags) in std::mem::take(&mut self.completions) {
            self.complete(user_data, result, flags);
        }
        if self.stopping && self.stop_deadline.is_none() {
            self.stop_deadline = Some(now + self.shared.config.shutdown_grace);
        }
        if now.saturating_duration_since(self.last_sweep) >= TICK {
            self.last_sweep = now;
            self.sweep();
            if std::mem::take(&mut self.retry_accept) && !self.stopping {
                for i in 0..self.listeners.len() {
                    self.arm_accept(i);
                }
            }
        }
    }

    /// Logs and counts what the grace period left unfinished.
    fn unfinished(mut self) -> usize {
        for (_, slot) in &self.slots {
            tracing::info!(conn = %slot.conn.describe(), "unfinished at shutdown");
        }
        let unfinished = self.slots.len();
        if unfinished > 0 || !self.headers.is_empty() {
            // Operations still in flight may write into these buffers until
            // the kernel has torn the ring down, after the ring is dropped:
            // the process is exiting, so they are left to it.
            std::mem::forget(std::mem::take(&mut self.slots));
            std::mem::forget(std::mem::take(&mut self.headers));
            std::mem::forget(self.bufs);
        }
        unfinished
    }

    /// Queues `entry`, submitting what is queued first if the queue is full.
    fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: every buffer an entry points to is owned by a slot (or
            // the worker) and outlives the operation: a slot is freed only
            // once no operation of it is in flight.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                if e.raw_os_error() != Some(libc::EBUSY) {
                    tracing::warn!(error = %e, "io_uring submit failed");
                }
                // The completion queue is full: make room by reaping
                // completions, which handling may queue more work for.
                let completions: Vec<_> = self
                    .ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags()))
                    .collect();
                for (user_data, result, flags) in completions {
                    self.complete(user_data, result, flags);
                }
            }
        }
    }

    fn arm_accept(&mut self, i: usize) {
        let Some(listener) = self.listeners.get(i) else {
            return;
        };
        let entry = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(ACCEPT | i as u64);
        self.push(&entry);
    }

    fn complete(&mut self, user_data: u64, result: i32, flags: u32) {
        if user_data & SPECIAL == 0 {
            let key = (user_data >> 16) as usize;
            let op = user_data as u16;
            return self.connection_done(key, op, result, flags);
        }
        match user_data {
            SIGNALS => {
                let Some(signals) = self.shared.signals else {
                    return;
                };
                signals.drain();
                if signals.stop_requested() && !self.stopping {
                    for mailbox in self.shared.mailboxes {
                        mailbox.ring();
                    }
                    self.stop();
                } else if !cqueue::more(flags) && !self.stopping {
                    let fd = signals.fd().as_raw_fd();
                    self.push(
                        &opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
                            .multi(true)
                            .build()
                            .user_data(SIGNALS),
                    );
                }
            }
            MAILBOX => {
                if self.shared.signals.is_some_and(Signals::stop_requested) && !self.stopping {
                    self.stop();
                }
                for (key, reply) in self.shared.mailbox.take() {
                    let Some(slot) = self.slots.get_mut(key) else {
                        continue;
                    };
                    slot.inflight &= !OFFLOAD;
                    if slot.closing.is_none() {
                        slot.conn.storage_done(reply, self.now);
                    }
                    self.advance(key);
                }
                if !cqueue::more(flags) {
                    let fd = self.shared.mailbox.bell.as_raw_fd();
                    self.push(
                        &opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
                            .multi(true)
                            .build()
                            .user_data(MAILBOX),
                    );
                }
            }
            CANCELLED => {}
            _ if user_data & HEADER == HEADER => {
                self.header_received((user_data & HEADER_KEY) as usize, result, flags)
            }
            _ if user_data & ACCEPT == ACCEPT => {
                self.accepted((user_data & 0xffff) as usize, result, flags)
            }
            _ => {}
        }
    }

    fn accepted(&mut self, listener: usize, result: i32, flags: u32) {
        if result < 0 {
            if result != -libc::ECANCELED && !self.stopping {
                self.accept_failures
                    .report(&io::Error::from_raw_os_error(-result));
                if !cqueue::more(flags) {
                    self.retry_accept = true;
                }
            }
            return;
        }
        // SAFETY: the kernel just created this descriptor for us.
        let socket = unsafe { OwnedFd::from_raw_fd(result as RawFd) };
        if !cqueue::more(flags) && !self.stopping {
            self.arm_accept(listener);
        }
        if self.stopping {
            return;
        }
        let sock = socket2::SockRef::from(&socket);
        let Some(peer) = sock.peer_addr().ok().and_then(|a| a.as_socket()) else {
            return;
        };
        let _ = sock.set_nodelay(true);
        match self.shared.endpoint.accept(peer, self.now) {
            Accept::Refused => {}
            Accept::Admitted(admitted) => self.admit(socket, admitted),
            Accept::Opening(opening) => {
                let key = self.headers.insert(PendingHeader {
                    socket,
                    opening,
                    cancelling: false,
                });
                self.receive_header(key);
            }
        }
    }

    /// Serves an admitted client.
    fn admit(&mut self, socket: OwnedFd, admitted: Admitted) {
        let (conn, ticket) = self.shared.endpoint.start(admitted, self.now);
        let key = self.slots.insert(Slot {
            socket,
            conn,
            _ticket: ticket,
            inflight: 0,
            file_read: None,
            pipe: None,
            in_pipe: 0,
            file_ended: false,
            closing: None,
            stop_cancel: false,
            timer: None,
        });
        self.advance(key);
    }

    /// `--proxy-protocol`: receives (more of) a connection's PROXY header.
    fn receive_header(&mut self, key: usize) {
        let Some(pending) = self.headers.get(key) else {
            return;
        };
        if pending.cancelling {
            // Refused while it waited for a buffer: no receive to cancel.
            self.headers.remove(key);
            return;
        }
        let fd = types::Fd(pending.socket.as_raw_fd());
        let entry = opcode::Recv::new(fd, std::ptr::null_mut(), READ_BUF as u32)
            .buf_group(BUFFER_GROUP)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(HEADER | key as u64);
        self.push(&entry);
    }

    fn header_received(&mut self, key: usize, result: i32, flags: u32) {
        let buffer = cqueue::buffer_select(flags);
        let now = self.now;
        let Some(pending) = self.headers.get_mut(key) else {
            if let Some(id) = buffer {
                self.bufs.give_back(id);
            }
            return;
        };
        let opened = match (result, buffer) {
            // Refused already (and logged): the cancelled receive is back.
            _ if pending.cancelling => Opened::Refused,
            (n, Some(id)) if n > 0 => pending
                .opening
                .handle_input(self.bufs.bytes(id, n as usize), now),
            (0, _) => pending.opening.handle_eof(now),
            (e, None) if e == -libc::ENOBUFS || e == -libc::EINTR => {
                return self.headers_again.push(key);
            }
            (e, _) if e < 0 => pending
                .opening
                .io_failed(io::Error::from_raw_os_error(-e), now),
            _ => pending
                .opening
                .io_failed(io::Error::other("receive completed without a buffer"), now),
        };
        if let Some(id) = buffer {
            self.bufs.give_back(id);
        }
        match opened {
            Opened::Incomplete => self.receive_header(key),
            Opened::Refused => {
                self.headers.remove(key);
            }
            Opened::Admitted(admitted) => {
                let pending = self.headers.remove(key);
                if !self.stopping {
                    self.admit(pending.socket, admitted);
                }
            }
        }
    }

    /// Hands a pending header's opening a deadline check or a stop; if it
    /// refuses, cancels the receive in flight (the record goes when the
    /// cancellation completes).
    fn check_header(&mut self, key: usize, how: fn(&mut Opening, Instant) -> Opened) {
        let now = self.now;
        let Some(pending) = self.headers.get_mut(key) else {
            return;
        };
        if pending.cancelling || matches!(how(&mut pending.opening, now), Opened::Incomplete) {
            return;
        }
        pending.cancelling = true;
        let entry = opcode::AsyncCancel::new(HEADER | key as u64)
            .build()
            .user_data(CANCELLED);
        self.push(&entry);
    }

    /// Does what the connection asks until it waits for a completion.
    fn advance(&mut self, key: usize) {
        // Called on a completion: every submission ends a turn.
        if let Some(slot) = self.slots.get_mut(key) {
            slot.conn.new_turn();
        }
        loop {
            let Some(slot) = self.slots.get_mut(key) else {
                return;
            };
            if slot.closing.is_some() {
                return self.release_if_done(key);
            }
            if slot.inflight != 0 {
                return;
            }
            let now = self.now;
            let fd = types::Fd(slot.socket.as_raw_fd());
            match slot.conn.poll() {
                Action::Send(bytes) if bytes.len() >= INLINE_SEND => {
                    // A large write (a slice's body) goes at once when the
                    // socket has room, as `sendfile` does: one call moves
                    // 64–256 KiB, so batching it in the ring saves nothing,
                    // while waiting for its completion costs a round trip.
                    let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
                    match rustix::net::send(&slot.socket, bytes, flags) {
                        Ok(n) => slot.conn.sent(n, now),
                        Err(rustix::io::Errno::AGAIN) => return self.wait_writable(key),
                        Err(rustix::io::Errno::INTR) => {}
                        Err(e) => slot.conn.io_failed(e.into()),
                    }
                }
                Action::Send(bytes) => {
                    // The bytes stay put until `sent` or `io_failed` (the
                    // guarantee in `connection`'s docs), and the slot is
                    // not freed while the send is in flight.
                    let len = bytes.len().min(u32::MAX as usize) as u32;
                    let entry = opcode::Send::new(fd, bytes.as_ptr(), len)
                        .flags(libc::MSG_NOSIGNAL)
                        .build()
                        .user_data(token(key, SEND));
                    slot.inflight |= SEND;
                    return self.push(&entry);
                }
                Action::SendFile {
                    fd: file,
                    offset,
                    len,
                } => {
                    // Cached pages go out at once, as in `poll`; only a
                    // range the disk must supply goes to the ring's
                    // splice pair, whose io-wq hand-off then costs little
                    // beside the disk.
                    let raw_file = file.as_raw_fd();
                    if slot.in_pipe == 0 && page_cache::holds(file, offset, len) {
                        match sendfile_now(&slot.socket, file, offset, len) {
                            Ok(n) => slot.conn.sent(n, now),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                return self.wait_writable(key)
                            }
                            Err(e) => slot.conn.io_failed(e),
                        }
                        continue;
                    }
                    return self.splice(key, raw_file, offset, len);
                }
                Action::SplicePipe { pipe, len } => {
                    // The reader's pipe lives in the connection, which
                    // stays in its slot until this completes.
                    let entry = opcode::Splice::new(
                        types::Fd(pipe.as_raw_fd()),
                        -1,
                        fd,
                        -1,
                        len.min(SPLICE_CHUNK) as u32,
                    )
                    .build()
                    .user_data(token(key, PIPE_OUT));
                    slot.inflight |= PIPE_OUT;
                    return self.push(&entry);
                }
                Action::Storage(step) => {
                    if let Some(offload) = self.shared.offload {
                        let ring_key = self.index << RING_SHIFT | key;
                        if offload.submit(ring_key, step).is_err() {
                            return self.close(key, End::Error("storage pool stopped".into()));
                        }
                        slot.inflight |= OFFLOAD;
                        return;
                    }
                    match step.run_until_file_read(self.shared.storage) {
                        Prepared::Done(reply) => slot.conn.storage_done(reply, now),
                        Prepared::FileRead(read) => match read_if_cached(read) {
                            Ok(reply) => slot.conn.storage_done(reply, now),
                            Err(read) => {
                                slot.file_read = Some(read);
                                return self.submit_read(key);
                            }
                        },
                    }
                }
                Action::ShutdownWrite => {
                    let ok =
                        rustix::net::shutdown(&slot.socket, rustix::net::Shutdown::Write).is_ok();
                    slot.conn.write_shut(ok, now);
                }
                Action::Receive => {
                    if slot.in_pipe == 0 {
                        // The slice is done: the pipe's descriptors go back.
                        slot.pipe = None;
                    }
                    let entry = opcode::Recv::new(fd, std::ptr::null_mut(), READ_BUF as u32)
                        .buf_group(BUFFER_GROUP)
                        .build()
                        .flags(squeue::Flags::BUFFER_SELECT)
                        .user_data(token(key, RECV));
                    slot.inflight |= RECV;
                    return self.push(&entry);
                }
                Action::Yield => return self.again.push(key),
                Action::Sleep => {
                    let wake = slot.conn.poll_timeout().unwrap_or(now);
                    let timer =
                        Box::new(types::Timespec::from(wake.saturating_duration_since(now)));
                    let entry = opcode::Timeout::new(&*timer)
                        .build()
                        .user_data(token(key, TIMER));
                    slot.timer = Some(timer);
                    slot.inflight |= TIMER;
                    return self.push(&entry);
                }
                Action::Park => {
                    return self.close(
                        key,
                        End::Error("waiting for a storage step never run".into()),
                    )
                }
                Action::Close(end) => return self.close(key, end),
            }
        }
    }

    /// Waits for room in the socket with a one-shot poll, after a write
    /// the loop made itself found it full; the next one goes inline again.
    fn wait_writable(&mut self, key: usize) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let entry = opcode::PollAdd::new(types::Fd(slot.socket.as_raw_fd()), libc::POLLOUT as u32)
            .build()
            .user_data(token(key, WRITABLE));
        slot.inflight |= WRITABLE;
        // Waiting ends the turn.
        slot.conn.new_turn();
        self.push(&entry);
    }

    /// Sends `len` bytes of `file` from `offset` through the slot's pipe:
    /// file to pipe and pipe to socket, linked into one submission. Bytes
    /// left in the pipe by a short send go first.
    fn splice(&mut self, key: usize, file: RawFd, offset: u64, len: usize) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if slot.pipe.is_none() {
            match Pipe::new(SPLICE_CHUNK, false) {
                Ok(pipe) => slot.pipe = Some(pipe),
                Err(e) => {
                    slot.conn.io_failed(e);
                    return self.advance(key);
                }
            }
        }
        let Some(pipe) = &slot.pipe else { return };
        let socket = types::Fd(slot.socket.as_raw_fd());
        let (pipe_read, pipe_write) = (pipe.read.as_raw_fd(), pipe.write.as_raw_fd());
        if slot.in_pipe > 0 {
            let entry = opcode::Splice::new(
                types::Fd(pipe_read),
                -1,
                socket,
                -1,
                slot.in_pipe.min(u32::MAX as usize) as u32,
            )
            .build()
            .user_data(token(key, SPLICE_OUT));
            slot.inflight |= SPLICE_OUT;
            return self.push(&entry);
        }
        let chunk = len.min(pipe.capacity).min(SPLICE_CHUNK) as u32;
        let Ok(offset) = i64::try_from(offset) else {
            slot.conn.io_failed(io::ErrorKind::InvalidInput.into());
            return self.advance(key);
        };
        let into_pipe =
            opcode::Splice::new(types::Fd(file), offset, types::Fd(pipe_write), -1, chunk)
                .build()
                .flags(squeue::Flags::IO_LINK)
                .user_data(token(key, SPLICE_IN));
        let out_of_pipe = opcode::Splice::new(types::Fd(pipe_read), -1, socket, -1, chunk)
            .build()
            .user_data(token(key, SPLICE_OUT));
        slot.inflight |= SPLICE_IN | SPLICE_OUT;
        // A link must not be split across submissions: make room for both.
        let room = {
            let queue = self.ring.submission();
            queue.capacity() - queue.len()
        };
        if room < 2 {
            let _ = self.ring.submit();
        }
        self.push(&into_pipe);
        self.push(&out_of_pipe);
    }

    fn submit_read(&mut self, key: usize) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let Some(read) = &mut slot.file_read else {
            return;
        };
        let Some(fd) = read.fd().map(|fd| fd.as_raw_fd()) else {
            return;
        };
        let offset = read.offset();
        let buf = read.buf_mut();
        let entry = opcode::Read::new(
            types::Fd(fd),
            buf.as_mut_ptr(),
            buf.len().min(u32::MAX as usize) as u32,
        )
        .offset(offset)
        .build()
        .user_data(token(key, READ));
        slot.inflight |= READ;
        self.push(&entry);
    }

    fn connection_done(&mut self, key: usize, op: u16, result: i32, flags: u32) {
        let buffer = cqueue::buffer_select(flags);
        let Some(slot) = self.slots.get_mut(key) else {
            if let Some(id) = buffer {
                self.bufs.give_back(id);
            }
            return;
        };
        slot.inflight &= !op;
        let now = self.now;
        if slot.closing.is_some() {
            if let Some(id) = buffer {
                self.bufs.give_back(id);
            }
            if op == READ {
                slot.file_read = None;
            }
            return self.release_if_done(key);
        }
        let error = || io::Error::from_raw_os_error(-result);
        match op {
            RECV => {
                match (result, buffer) {
                    (n, Some(id)) if n > 0 => {
                        slot.conn.handle_input(self.bufs.bytes(id, n as usize), now)
                    }
                    (0, _) => slot.conn.handle_eof(now),
                    // Cancelled to tell the connection of a shutdown: it
                    // decides now what that means (see `stop`).
                    (e, _) if e == -libc::ECANCELED && slot.stop_cancel => {}
                    // Every buffer was taken: try again on the next round,
                    // once the completions reaped meanwhile gave some back.
                    (e, None) if e == -libc::ENOBUFS || e == -libc::EINTR => {
                        return self.again.push(key);
                    }
                    (e, _) if e < 0 => slot.conn.io_failed(error()),
                    _ => slot
                        .conn
                        .io_failed(io::Error::other("receive completed without a buffer")),
                }
                if let Some(id) = buffer {
                    self.bufs.give_back(id);
                }
            }
            SEND => match result {
                n if n >= 0 => slot.conn.sent(n as usize, now),
                e if e == -libc::EINTR || e == -libc::EAGAIN => {}
                _ => slot.conn.io_failed(error()),
            },
            READ => {
                let Some(read) = slot.file_read.take() else {
                    return self.close(key, End::Error("file read without a buffer".into()));
                };
                match result {
                    n if n >= 0 => match read.filled(n as usize) {
                        Ok(reply) => slot.conn.storage_done(reply, now),
                        Err(more) => {
                            slot.file_read = Some(more);
                            return self.submit_read(key);
                        }
                    },
                    e if e == -libc::EAGAIN || e == -libc::EINTR => {
                        // The file was opened O_NONBLOCK (so that opening a
                        // FIFO cannot block) and its pages are not cached:
                        // io_uring then refuses to wait. Reading a regular
                        // file is otherwise unaffected by the flag.
                        if let Some(fd) = read.fd() {
                            if let Ok(fl) = rustix::fs::fcntl_getfl(fd) {
                                let _ =
                                    rustix::fs::fcntl_setfl(fd, fl - rustix::fs::OFlags::NONBLOCK);
                            }
                        }
                        slot.file_read = Some(read);
                        return self.submit_read(key);
                    }
                    _ => slot.conn.storage_done(read.failed(error()), now),
                }
            }
            SPLICE_IN => match result {
                0 => slot.file_ended = true,
                n if n > 0 => slot.in_pipe += n as usize,
                _ => slot.conn.io_failed(error()),
            },
            // Room in the socket: the next `sendfile` or large send goes
            // inline again.
            WRITABLE if result >= 0 => {}
            WRITABLE => slot.conn.io_failed(error()),
            TIMER => {
                slot.timer = None;
                slot.conn.handle_timeout(now);
            }
            PIPE_OUT => match result {
                n if n > 0 => slot.conn.sent(n as usize, now),
                e if e == -libc::EINTR || e == -libc::EAGAIN => {}
                e if e < 0 => slot.conn.io_failed(error()),
                // Nothing went although the pipe held bytes.
                _ => slot.conn.sent(0, now),
            },
            SPLICE_OUT => match result {
                n if n > 0 => {
                    slot.in_pipe -= (n as usize).min(slot.in_pipe);
                    slot.conn.sent(n as usize, now);
                }
                // The file splice was short, so its link was cut: the
                // bytes in the pipe go in the next round.
                e if e == -libc::ECANCELED || e == -libc::EINTR || e == -libc::EAGAIN => {}
                e if e < 0 => slot.conn.io_failed(error()),
                _ => {}
            },
            _ => {}
        }
        if slot.inflight & (SPLICE_IN | SPLICE_OUT) == 0
            && std::mem::take(&mut slot.file_ended)
            && slot.in_pipe == 0
        {
            // Nothing more comes from the file: the slice is cut short.
            slot.conn.sent(0, now);
        }
        self.advance(key);
    }

    /// Ends a connection: cancels what is in flight; the record goes once
    /// the kernel has answered for every operation.
    fn close(&mut self, key: usize, end: End) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if slot.closing.is_none() {
            slot.closing = Some(end);
        }
        let inflight = slot.inflight;
        for op in [
            RECV, SEND, READ, SPLICE_IN, SPLICE_OUT, PIPE_OUT, TIMER, WRITABLE,
        ] {
            if inflight & op != 0 {
                let entry = opcode::AsyncCancel::new(token(key, op))
                    .build()
                    .user_data(CANCELLED);
                self.push(&entry);
            }
        }
        self.release_if_done(key);
    }

    fn release_if_done(&mut self, key: usize) {
        match self.slots.get(key) {
            Some(slot) if slot.inflight == 0 => {}
            _ => return,
        }
        let slot = self.slots.remove(key);
        let end = slot.closing.clone().unwrap_or(End::Shutdown);
        slot.conn.finish(&end, self.now);
    }

    /// Shutdown: no more accepts; idle connections end now; answers in
    /// flight finish.
    fn stop(&mut self) {
        self.stopping = true;
        for i in 0..self.listeners.len() {
            let entry = opcode::AsyncCancel::new(ACCEPT | i as u64)
                .build()
                .user_data(CANCELLED);
            self.push(&entry);
        }
        // With every ring's accept cancelled and descriptor closed, the
        // listening sockets close and new clients are refused at once.
        let _ = self.ring.submit();
        self.listeners.clear();
        // Every connection is told; one waiting for a request is woken by
        // cancelling its receive, and then ends (its own decision).
        let mut wake = Vec::new();
        let mut advance = Vec::new();
        for (key, slot) in &mut self.slots {
            if slot.closing.is_some() {
                continue;
            }
            slot.conn.stop();
            match slot.inflight {
                RECV => {
                    slot.stop_cancel = true;
                    wake.push(key);
                }
                0 => advance.push(key),
                _ => {}
            }
        }
        tracing::info!(
            ring = self.index,
            open = self.slots.len(),
            "stopping: no new connections; answers in flight finish"
        );
        for key in wake {
            let entry = opcode::AsyncCancel::new(token(key, RECV))
                .build()
                .user_data(CANCELLED);
            self.push(&entry);
        }
        for key in advance {
            self.advance(key);
        }
        let pending: Vec<usize> = self.headers.iter().map(|(key, _)| key).collect();
        for key in pending {
            self.check_header(key, Opening::stop);
        }
    }

    /// Ends connections whose idle, write or drain time is up.
    fn sweep(&mut self) {
        let now = self.now;
        let pending: Vec<usize> = self.headers.iter().map(|(key, _)| key).collect();
        for key in pending {
            self.check_header(key, Opening::handle_timeout);
        }
        let mut expired = Vec::new();
        for (key, slot) in &mut self.slots {
            if slot.closing.is_some() {
                continue;
            }
            slot.conn.handle_timeout(now);
            if let Some(end) = slot.conn.ended() {
                expired.push((key, end.clone()));
            }
        }
        for (key, end) in expired {
            self.close(key, end);
        }
    }
}

/// One ring over real loopback connections, handed a virtual clock: the
/// sweep and the grace period take no time.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::virtual_time::{self, received, GRACE, IDLE, MAX_ROUNDS};
    use std::io::Write;
    use std::net::SocketAddr;

    /// Runs `test` with a started worker over `files`, and its address.
    fn with_worker(files: &[(&str, usize)], test: impl FnOnce(&mut Worker<'_>, SocketAddr)) {
        let (_dir, config) = virtual_time::served(crate::Model::Uring, files);
        let endpoint = Endpoint::new(&config);
        let storage = Arc::clone(&config.session.storage);
        let mailboxes = vec![Arc::new(Mailbox::new().unwrap())];
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Shared {
            config: &config,
            endpoint: &endpoint,
            signals: None,
            mailbox: &mailboxes[0],
            mailboxes: &mailboxes,
            offload: None,
            storage: &*storage,
        };
        let mut worker =
            Worker::new(0, new_ring().unwrap(), vec![listener.into()], shared).unwrap();
        worker.start();
        test(&mut worker, addr);
        worker.unfinished();
    }

    /// One round at the virtual `now`, waiting at most 10 ms of real time.
    fn round(worker: &mut Worker<'_>, now: Instant) {
        worker.wait(Duration::from_millis(10)).unwrap();
        worker.handle(now);
    }

    #[test]
    fn idle_clients_are_swept_in_virtual_time() {
        with_worker(&[], |worker, addr| {
            let t0 = Instant::now();
            let mut quiet = virtual_time::client(addr);
            quiet.write_all(b"help\r\n").unwrap();
            let mut got = Vec::new();
            let mut rounds = 0;
            while !got.ends_with(b"\r\n\r\n") {
                assert!(rounds < MAX_ROUNDS, "never answered");
                round(worker, t0);
                received(&mut quiet, &mut got).expect("closed before its answer");
                rounds += 1;
            }
            round(worker, t0 + IDLE - TICK);
            round(worker, t0 + IDLE - TICK);
            assert!(received(&mut quiet, &mut got).is_some(), "closed early");
            round(worker, t0 + IDLE + TICK);
            // Its receive is cancelled; the record goes when that completes.
            let mut rounds = 0;
            while received(&mut quiet, &mut got).is_some() {
                assert!(rounds < MAX_ROUNDS, "not swept");
                round(worker, t0 + IDLE + TICK);
                rounds += 1;
            }
            assert!(worker.slots.is_empty());
        });
    }

    #[test]
    fn shutdown_ends_idle_clients_at_once_and_waits_out_answers_in_flight() {
        const BIG: usize = 32 << 20;
        with_worker(&[("big.bin", BIG)], |worker, addr| {
            let t0 = Instant::now();
            let mut idle = virtual_time::client(addr);
            let mut stuck = virtual_time::client(addr);
            // Far more than the socket buffers hold, and never read.
            stuck
                .write_all(format!("get_slice big.bin 0 {BIG} raw\r\n").as_bytes())
                .unwrap();
            for _ in 0..3 {
                round(worker, t0);
            }
            worker.stop();
            round(worker, t0);
            let mut got = Vec::new();
            let mut rounds = 0;
            while received(&mut idle, &mut got).is_some() {
                assert!(rounds < MAX_ROUNDS, "the idle client was never closed");
                round(worker, t0);
                rounds += 1;
            }
            assert!(got.is_empty());
            assert!(!worker.finished(t0), "an answer is in flight");
            round(worker, t0 + GRACE - TICK);
            assert!(!worker.finished(t0 + GRACE - TICK), "finished early");
            assert!(worker.finished(t0 + GRACE), "the grace period is over");
            assert_eq!(worker.slots.len(), 1, "the stuck answer is unfinished");
        });
    }
}
