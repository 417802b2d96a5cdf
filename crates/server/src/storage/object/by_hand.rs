//! Slices from a plain-http store, read by hand on a connection of their
//! own. Raw ones are spliced: the store's socket to a pipe, the pipe to the
//! client's socket, never copied through user space (as HAProxy relays,
//! and as `sendfile` serves a local file). Base64 ones are read from the
//! socket straight into the block they are encoded from.
//!
//! **Why.** Through `object_store`, each byte of a raw slice is copied
//! three times on the server (socket to the HTTP client's buffer, to the
//! connection's block, to the client's socket), and passes four threads
//! (the HTTP client's task, a channel, the storage step, the driver). On
//! two cores that shared the store, it cost a quarter of the store's own
//! throughput. Here a storage step moves up to a pipe's worth (1 MiB) from
//! the store's socket into the pipe with `splice`, and the driver splices
//! the pipe to its client as it would `sendfile` a file: the kernel moves
//! page references, the server touches no byte.
//!
//! **What stays the same.** The request is the same ranged `GET`, signed
//! by `object_store` (a presigned URL, so the signing code is the crate's),
//! sent by hand on a connection of the slice's own (`Connection: close`),
//! its head parsed with `httparse`. The slice is pinned to the ETag the
//! `GET` that opened it answered, resumed from the byte where it stopped
//! with `If-Match` up to [`BODY_RESUMES`] times if the answer breaks off,
//! and checked by a `HEAD` every [`VERSION_CHECK_BYTES`] and once more
//! before its last bytes leave (the last pipe's worth waits for it), as
//! the streamed read does.
//!
//! **Where it applies.** Slices from a plain-http endpoint (TLS would need
//! user space anyway). Raw slices get the pipe. Base64 slices must read
//! the bytes to encode them: they are opened without a pipe and `read`
//! straight from the store's socket into the connection's block. That is
//! one copy, where `object_store` made two (its buffer, then the block)
//! and handed each chunk through a task and a channel. The socket's
//! receive buffer is the read-ahead: the store keeps sending while the
//! block is encoded. A whole object read this way is checked end to end
//! ([`super::integrity`]): against the full-object CRC the store keeps,
//! asked by a `HEAD` alongside the body, or else its ETag's MD5, as the
//! streamed read does.
//! Anything else, and any answer to the opening `GET` other than `206`
//! with the range asked or `404`, goes the `object_store` way, whose
//! retries and error mapping then decide.
//!
//! **Waking up less.** A wait for the store's socket holds out for
//! [`LOW_WATER`] bytes (`SO_RCVLOWAT`, [`http::Answer::wait_body`]), not
//! the first 64 KiB segment: a fill or a block then takes a few large
//! moves instead of one wake-up and one `splice` or `read` per segment. A
//! wait settles for fewer bytes after 2 ms, so a slow store's bytes are
//! late by that much at most, and its wake-ups are as few.
//!
//! **Cost.** Two descriptors for the pipe (raw slices only) and one socket
//! per slice being sent, and one TCP connection per slice (not pooled; on a store
//! nearby a connect costs tens of microseconds against milliseconds for
//! the `GET`).

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use hftp_proto::{FileName, Range};
use object_store::path::Path;
use object_store::signer::Signer;
use rustix::pipe::SpliceFlags;

use super::floor::SpeedFloor;
use super::http::{self, Answer};
use super::integrity::{self, StoreCrc, WholeCheck};
use super::{
    last_version, redact, version, ObjectStorage, Version, BODY_RESUMES, CALL_TIMEOUT,
    LAST_CHECK_TIMEOUT, VERSION_CHECK_BYTES,
};
use crate::pipe::Pipe;
use crate::storage::RangeReader;

/// What a pipe is asked to hold (the most an unprivileged process may set
/// by default, `/proc/sys/fs/pipe-max-size`).
const PIPE_BYTES: usize = 1 << 20;

/// A fill returns once the store's socket has no more for now and it
/// holds this much, or has waited [`FILL_PATIENCE`] for more: a fast store
/// fills most of the pipe per step (each step is a round of thread
/// hand-offs: 768 KiB instead of 256 KiB took the node's CPU per 256 MiB
/// from about 0.22 s to 0.19 s), a slow one reaches the client as it sends.
const FILL_EARLY: usize = 768 << 10;

/// See [`FILL_EARLY`].
const FILL_PATIENCE: Duration = Duration::from_millis(20);

/// Bytes a wait for the store's socket holds out for
/// ([`http::Answer::wait_body`]): a quarter of [`FILL_EARLY`], so a fill
/// wakes up a few times, not once per 64 KiB segment.
const LOW_WATER: usize = 256 << 10;

/// The least time a slice's opening `GET` is given for its head, however
/// long it waited for a free call.
const MIN_HEAD_WAIT: Duration = Duration::from_millis(100);

/// The least size of a whole object whose store CRC is asked for when its
/// ETag is an MD5: below it the MD5 costs a core under 15 ms, less than
/// the `HEAD` is worth (one more request to the store).
const CRC_WORTH_BYTES: u64 = 8 << 20;

/// How long a presigned URL is good for: longer than any resume needs (a
/// new one is signed for each request).
const SIGNED_FOR: Duration = Duration::from_secs(15 * 60);

/// The outcome of trying to open a slice this way.
pub enum Opened {
    Spliced(Box<HandRange>),
    NotFound,
    /// The store did not answer in time: asking again the other way would
    /// only wait as long again.
    TimedOut(io::Error),
    /// Not for this path (https, or an answer best handled by
    /// `object_store`): the reason, for the debug log.
    Elsewhere(String),
}

/// One slice of one version of an object, read by hand from the store:
/// spliced into a pipe (raw), or read into user space (base64).
pub struct HandRange {
    storage: ObjectStorage,
    name: FileName,
    path: Path,
    e_tag: Option<String>,
    pos: u64,
    end: u64,
    answer: Option<Answer>,
    /// Raw slices only.
    pipe: Option<Pipe>,
    /// The check of a whole object's bytes (read, not spliced: spliced
    /// bytes never reach user space).
    integrity: Option<WholeCheck>,
    /// The `HEAD` asking which CRC the store keeps, until it answers.
    crc_asked: Option<tokio::task::JoinHandle<Option<StoreCrc>>>,
    /// The failure that ended a block gathered before it: the next read's.
    deferred: Option<io::Error>,
    resumes: u32,
    /// Bytes since the last version check was started.
    unchecked: u64,
    total: u64,
    check: Option<tokio::task::JoinHandle<Version>>,
    /// The check before the last bytes leave was made.
    end_checked: bool,
    /// The body's measure against the low-speed floor.
    speed: SpeedFloor,
    /// When the last bytes came from the store (or the range opened).
    last_byte: Instant,
}

/// Opens `range` (not empty) with one ranged `GET` of its own, with a
/// pipe to splice into when `raw`.
pub fn open(
    storage: &ObjectStorage,
    name: &FileName,
    path: &Path,
    range: Range,
    waited: Duration,
    raw: bool,
) -> Opened {
    let end = range.offset + range.size;
    let url = match sign(storage, path) {
        Ok(url) if url.starts_with("http://") => url,
        Ok(_) => return Opened::Elsewhere("the endpoint is not plain http".into()),
        Err(e) => return Opened::Elsewhere(e),
    };
    // The head within what is left of the first-byte bound (the object's
    // call was waited for).
    let head_within = storage
        .inner
        .first_byte
        .saturating_sub(waited)
        .max(MIN_HEAD_WAIT);
    let answer = match http::ranged_get(&url, (range.offset, end), None, head_within) {
        Ok(answer) => answer,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => return Opened::TimedOut(e),
        Err(e) => return Opened::Elsewhere(redact(&e.to_string(), &storage.inner.secrets)),
    };
    match answer.status {
        206 if answer.content_range.map(|(a, b, _)| (a, b)) == Some((range.offset, end))
            && !answer.chunked => {}
        404 => return Opened::NotFound,
        status => {
            return Opened::Elsewhere(format!(
                "the store answered {status} with range {:?}",
                answer.content_range
            ))
        }
    }
    let pipe = match raw.then(|| Pipe::new(PIPE_BYTES, true)).transpose() {
        Ok(pipe) => pipe,
        Err(e) => return Opened::Elsewhere(format!("no pipe: {e}")),
    };
    let whole = range.offset == 0 && answer.content_range.and_then(|(_, _, of)| of) == Some(end);
    let (integrity, crc_asked) = match answer.e_tag.as_deref().filter(|_| whole && !raw) {
        Some(tag) => {
            let worth = end >= CRC_WORTH_BYTES || integrity::Whole::for_e_tag(tag).is_none();
            let asked = worth.then(|| ask_store_crc(storage, &url, tag)).flatten();
            (WholeCheck::new(tag, asked.is_some()), asked)
        }
        None => (None, None),
    };
    Opened::Spliced(Box::new(HandRange {
        storage: storage.clone(),
        name: name.clone(),
        path: path.clone(),
        e_tag: answer.e_tag.clone(),
        pos: range.offset,
        end,
        answer: Some(answer),
        pipe,
        integrity,
        crc_asked,
        deferred: None,
        resumes: 0,
        unchecked: 0,
        total: 0,
        check: None,
        end_checked: false,
        speed: SpeedFloor::new(storage.inner.low_speed),
        last_byte: Instant::now(),
    }))
}

/// A presigned `GET` URL of `path`.
fn sign(storage: &ObjectStorage, path: &Path) -> Result<String, String> {
    let inner = &storage.inner;
    if inner.credentials == super::credentials::Source::Unsigned {
        // object_store presigns with the credential provider even then:
        // with no key configured, that would ask the instance metadata
        // service (see `super::credentials`).
        return Err("requests are unsigned (AWS_SKIP_SIGNATURE): nothing to presign".into());
    }
    let process = inner.process().map_err(|e| e.to_string())?;
    let signing = process
        .store
        .signed_url(http_method_get(), path, SIGNED_FOR);
    match process
        .runtime
        .block_on(async { tokio::time::timeout(CALL_TIMEOUT, signing).await })
    {
        Ok(Ok(url)) => Ok(url.to_string()),
        Ok(Err(e)) => Err(redact(&e.to_string(), &inner.secrets)),
        Err(_) => Err("signing timed out".into()),
    }
}

fn http_method_get() -> ::http::Method {
    ::http::Method::GET
}

/// Asks the store, alongside the body, which full-object CRC it keeps for
/// version `e_tag` of the object: a `HEAD` with `x-amz-checksum-mode:
/// ENABLED`, signed in its headers by `object_store`'s signer (a presigned
/// URL must not carry an unsigned `x-amz-` header), sent by hand (the
/// crate's `HEAD` keeps no checksum). `get_url` is the slice's presigned
/// `GET`: without its query, the object's URL as the crate addresses it
/// (path or host style). `None` when it cannot be asked.
fn ask_store_crc(
    storage: &ObjectStorage,
    get_url: &str,
    e_tag: &str,
) -> Option<tokio::task::JoinHandle<Option<StoreCrc>>> {
    let process = storage.inner.process().ok()?;
    let region = storage.inner.region();
    let url = get_url
        .split_once('?')
        .map_or(get_url, |(url, _)| url)
        .to_string();
    let (store, e_tag) = (process.store.clone(), e_tag.to_string());
    Some(process.runtime.spawn(async move {
        let credential = store.credentials().get_credential().await.ok()?;
        let mut request = ::http::Request::builder()
            .method(::http::Method::HEAD)
            .uri(&url)
            .header("x-amz-checksum-mode", "ENABLED")
            .body(object_store::client::HttpRequestBody::empty())
            .ok()?;
        object_store::aws::AwsAuthorizer::new(&credential, "s3", &region)
            .with_sign_payload(false)
            .authorize(&mut request, None);
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
            .collect();
        let answer =
            tokio::task::spawn_blocking(move || http::head(&url, &headers, LAST_CHECK_TIMEOUT))
                .await
                .ok()?
                .ok()?;
        if answer.status != 200 || answer.e_tag.as_deref() != Some(e_tag.as_str()) {
            return None;
        }
        StoreCrc::from_headers(
            answer
                .checksums
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        )
    }))
}

/// Why a resumed `GET` brought no body.
enum Reopen {
    /// The object changed: the slice cannot be finished.
    Final(io::Error),
    /// The store failed: it counts as one more resume.
    Again(io::Error),
}

/// Where the bytes of one transfer go.
enum Sink<'a> {
    Buf(&'a mut [u8]),
    /// As `Buf`, but only what has arrived: `WouldBlock` instead of a wait.
    Ready(&'a mut [u8]),
    /// The pipe, with room for this many bytes.
    Pipe(&'a Pipe, usize),
}

impl HandRange {
    /// Moves at least one byte (at most what `sink` takes) of the range
    /// from the store, resuming a broken answer; `Ok(0)` at the end of the
    /// range, or when the pipe has no room.
    fn transfer(&mut self, mut sink: Sink<'_>) -> io::Result<usize> {
        if self.pos >= self.end {
            return Ok(0);
        }
        loop {
            let failure = match self.answer.as_mut() {
                None => match self.reopen() {
                    Ok(answer) => {
                        self.answer = Some(answer);
                        continue;
                    }
                    Err(Reopen::Final(e)) => return Err(e),
                    Err(Reopen::Again(e)) => e,
                },
                Some(answer) => {
                    let left = self.end - self.pos;
                    let (asked, stall) = (Instant::now(), self.speed.stall_limit());
                    match move_some(answer, &mut sink, left, stall) {
                        Ok(0) => io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the answer ended before the range did",
                        ),
                        Ok(n) => {
                            if let Err(why) = self.speed.record(asked.elapsed(), n as u64) {
                                return Err(
                                    self.ended(io::Error::new(io::ErrorKind::TimedOut, why))
                                );
                            }
                            self.moved(n as u64);
                            return Ok(n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                        // Nothing for a whole window: asking again would
                        // keep the client waiting longer than that.
                        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                            return Err(self.ended(e));
                        }
                        Err(e) => e,
                    }
                }
            };
            self.answer = None;
            // Resumes end once the client went a whole low-speed window
            // without a byte.
            let waited_out = self.last_byte.elapsed() >= self.storage.inner.low_speed.time;
            if waited_out || self.resumes >= BODY_RESUMES {
                return Err(self.ended(failure));
            }
            self.resumes += 1;
            tracing::warn!(
                object = %self.name,
                at = self.pos,
                resume = self.resumes,
                "the store's answer broke off ({failure}): asking again from where it stopped"
            );
        }
    }

    /// The failure that ends the slice, saying where.
    fn ended(&self, failure: io::Error) -> io::Error {
        io::Error::new(
            failure.kind(),
            format!(
                "{failure} (object {} from byte {}, after {} resumes)",
                self.storage.key(self.name.as_str()),
                self.pos,
                self.resumes
            ),
        )
    }

    /// A new `GET` of the rest of the range, pinned to the version.
    fn reopen(&self) -> Result<Answer, Reopen> {
        let url =
            sign(&self.storage, &self.path).map_err(|e| Reopen::Again(io::Error::other(e)))?;
        let answer = http::ranged_get(
            &url,
            (self.pos, self.end),
            self.e_tag.as_deref(),
            // What is left of the client's window without a byte.
            self.storage
                .inner
                .first_byte
                .min(
                    self.storage
                        .inner
                        .low_speed
                        .time
                        .saturating_sub(self.last_byte.elapsed()),
                )
                .max(MIN_HEAD_WAIT),
        )
        .map_err(Reopen::Again)?;
        match answer.status {
            206 if answer.content_range.map(|(a, b, _)| (a, b)) == Some((self.pos, self.end))
                && !answer.chunked =>
            {
                Ok(answer)
            }
            412 => Err(Reopen::Final(self.replaced())),
            404 => Err(Reopen::Final(self.deleted())),
            status => Err(Reopen::Again(io::Error::other(format!(
                "the store answered {status}"
            )))),
        }
    }

    fn replaced(&self) -> io::Error {
        io::Error::other(format!(
            "object {} was replaced while its slice was being sent (ETag changed)",
            self.name
        ))
    }

    fn deleted(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "object {} was deleted while its slice was being sent",
                self.name
            ),
        )
    }

    /// Counts `n` bytes moved, and starts a version check every
    /// [`VERSION_CHECK_BYTES`].
    fn moved(&mut self, n: u64) {
        self.last_byte = Instant::now();
        self.pos += n;
        self.total += n;
        self.unchecked += n;
        let Some(tag) = self.e_tag.clone() else {
            return;
        };
        if self.check.is_none() && self.unchecked >= VERSION_CHECK_BYTES {
            self.unchecked = 0;
            if let Ok(process) = self.storage.inner.process() {
                let (store, path) = (process.store.clone(), self.path.clone());
                self.check = Some(
                    process
                        .runtime
                        .spawn(async move { version(&store, &path, &tag).await }),
                );
            }
        }
    }

    /// Hashes `bytes`, just read, for the whole-object check; at the range's
    /// end, fails if the hash is not the one promised.
    fn checked(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(mut check) = self.integrity.take() else {
            return Ok(());
        };
        let last = self.pos >= self.end;
        if check.unsettled() {
            // At the end the answer is waited for (it was asked at the
            // start, and the MD5 of so much costs more than its wait).
            match self.store_crc(last) {
                Some(kept) => check.settle(kept),
                None if last => check.settle(None),
                None => {}
            }
        }
        check.update(bytes);
        if !last {
            self.integrity = Some(check);
            return Ok(());
        }
        let key = self.storage.key(self.name.as_str());
        tracing::debug!(object = %key, against = check.against(), "whole object checked");
        check
            .verify(&key)
            .inspect_err(|e| tracing::error!(object = %key, "{e}"))
    }

    /// The `HEAD`'s answer once it came (waiting up to
    /// [`LAST_CHECK_TIMEOUT`] if `wait`): the CRC the store keeps, or
    /// `Some(None)` if none (or no answer); `None` while it is on its way.
    fn store_crc(&mut self, wait: bool) -> Option<Option<StoreCrc>> {
        let asked = self.crc_asked.as_ref()?;
        if !wait && !asked.is_finished() {
            return None;
        }
        let asked = self.crc_asked.take()?;
        let Ok(process) = self.storage.inner.process() else {
            asked.abort();
            return Some(None);
        };
        let abort = asked.abort_handle();
        let kept = process
            .runtime
            .block_on(async { tokio::time::timeout(LAST_CHECK_TIMEOUT, asked).await });
        abort.abort();
        Some(kept.ok().and_then(Result::ok).flatten())
    }

    /// Fails if a version check found the object replaced or deleted; at
    /// the range's end (of a slice longer than one check's worth) waits
    /// for a last check first.
    fn verify(&mut self) -> io::Result<()> {
        let done = self.check.as_ref().is_some_and(|c| c.is_finished());
        let last = self.pos >= self.end && self.total > VERSION_CHECK_BYTES && !self.end_checked;
        if !(done || last) {
            return Ok(());
        }
        let Ok(process) = self.storage.inner.process() else {
            return Ok(());
        };
        self.end_checked |= last;
        let mut outcome = match self.check.take().filter(|_| done) {
            Some(check) => process.runtime.block_on(check).unwrap_or(Version::Unknown),
            None => Version::Same,
        };
        if let (Version::Same, true, Some(tag)) = (&outcome, last, &self.e_tag) {
            let (store, path) = (process.store.clone(), self.path.clone());
            outcome = process
                .runtime
                .block_on(async { last_version(&store, &path, tag).await });
        }
        match outcome {
            Version::Replaced => Err(self.replaced()),
            Version::Deleted => Err(self.deleted()),
            Version::Same | Version::Unknown => Ok(()),
        }
    }
}

/// One move of bytes from the answer (its early bytes first) into `sink`:
/// `WouldBlock` only when the pipe has no room left.
fn move_some(
    answer: &mut Answer,
    sink: &mut Sink<'_>,
    left: u64,
    stall: Duration,
) -> io::Result<usize> {
    let deadline = Instant::now() + stall;
    let room = match sink {
        Sink::Buf(buf) | Sink::Ready(buf) => buf.len(),
        Sink::Pipe(_, room) => *room,
    };
    // Never more than this move takes: the wait would outlast the bytes.
    let mark = LOW_WATER
        .min(room)
        .min(usize::try_from(left).unwrap_or(usize::MAX));
    loop {
        let early = &answer.early[answer.early_pos..];
        let result = match sink {
            Sink::Buf(buf) | Sink::Ready(buf) => {
                let want = (buf.len() as u64).min(left) as usize;
                if !early.is_empty() {
                    let n = want.min(early.len());
                    buf[..n].copy_from_slice(&early[..n]);
                    Ok(n)
                } else {
                    (&answer.socket).read(&mut buf[..want])
                }
            }
            Sink::Pipe(pipe, room) => {
                let want = (*room as u64).min(left) as usize;
                if !early.is_empty() {
                    let n = want.min(early.len());
                    rustix::io::write(&pipe.write, &early[..n]).map_err(io::Error::from)
                } else {
                    rustix::pipe::splice(
                        answer.socket.as_fd(),
                        None,
                        &pipe.write,
                        None,
                        want,
                        SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
                    )
                    .map_err(io::Error::from)
                }
            }
        };
        match result {
            Ok(n) => {
                if !early.is_empty() {
                    answer.early_pos += n;
                } else {
                    answer.took(n);
                }
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // The socket has nothing yet, or the pipe is full: a pipe
                // holds page-sized pieces, fewer bytes than its size when
                // the pieces are small.
                match sink {
                    Sink::Pipe(pipe, _) if pipe_full(pipe) => return Err(e),
                    Sink::Ready(_) => return Err(e),
                    _ => {}
                }
                answer.wait_body(mark, deadline, stall)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether the pipe takes no more bytes now.
fn pipe_full(pipe: &Pipe) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(&pipe.write, PollFlags::OUT)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    !matches!(poll(&mut fds, Some(&now)), Ok(n) if n > 0)
}

impl RangeReader for HandRange {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.transfer(Sink::Buf(buf))?;
        self.checked(&buf[..n])?;
        self.verify()?;
        Ok(n)
    }

    /// What has arrived, as soon as something has (`0 OK` goes out with
    /// the first bytes of the store's answer), and whatever more has
    /// arrived meanwhile, up to `want`: one storage step per socket's
    /// worth, not per `read`.
    fn read_block(&mut self, buf: &mut Vec<u8>, want: usize) -> io::Result<()> {
        crate::storage::read_some_block(self, buf, want)?;
        let mut got = buf.len();
        if !got.is_multiple_of(3) || got >= want {
            return Ok(());
        }
        buf.resize(want, 0);
        while got < want {
            let n = match self.transfer(Sink::Ready(&mut buf[got..want])) {
                Ok(n) => n,
                // The block gathered so far goes out; the next read
                // reports the failure.
                Err(e) => {
                    self.deferred = Some(e);
                    0
                }
            };
            if n == 0 {
                break;
            }
            self.checked(&buf[got..got + n])?;
            got += n;
        }
        let keep = crate::storage::partial_block(got, want);
        if got < keep {
            crate::storage::read_exact(self, &mut buf[got..keep])?;
        }
        buf.truncate(keep);
        self.verify()
    }

    fn block_size(&self) -> usize {
        self.pipe.as_ref().map_or(PIPE_BYTES, |pipe| pipe.capacity)
    }

    fn pipe(&self) -> Option<BorrowedFd<'_>> {
        self.pipe.as_ref().map(|pipe| pipe.read.as_fd())
    }

    /// Moves up to `want` bytes (at most the pipe's size) into the pipe,
    /// which the caller emptied: all of them, or, once the store has no
    /// more for now, at least [`FILL_EARLY`] or what came in
    /// [`FILL_PATIENCE`] (and never longer than [`CALL_TIMEOUT`]).
    fn fill_pipe(&mut self, want: usize) -> io::Result<usize> {
        let Some(pipe) = self.pipe.take() else {
            return Err(io::Error::other("this slice was opened without a pipe"));
        };
        let filled = self.fill(&pipe, want);
        self.pipe = Some(pipe);
        let filled = filled?;
        self.verify()?;
        Ok(filled)
    }
}

impl HandRange {
    /// [`RangeReader::fill_pipe`] into `pipe`, taken out of the range for
    /// the while (the transfers borrow the range whole).
    fn fill(&mut self, pipe: &Pipe, want: usize) -> io::Result<usize> {
        let want = want.min(pipe.capacity);
        let started = Instant::now();
        let deadline = started + CALL_TIMEOUT;
        let mut filled = 0;
        while filled < want {
            let asked = want - filled;
            let n = self.transfer(Sink::Pipe(pipe, asked))?;
            filled += n;
            let dry = n < asked;
            let now = Instant::now();
            let enough = filled >= FILL_EARLY || now - started >= FILL_PATIENCE;
            if n == 0 || (dry && enough) || now >= deadline {
                break;
            }
        }
        Ok(filled)
    }
}

impl Drop for HandRange {
    fn drop(&mut self) {
        if let Some(asked) = self.crc_asked.take() {
            asked.abort();
        }
    }
}

impl std::fmt::Debug for HandRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandRange")
            .field("name", &self.name)
            .field("pos", &self.pos)
            .field("end", &self.end)
            .finish()
    }
}
