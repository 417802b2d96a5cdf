//! Whole-file downloads: parallel segments, written in place, resumable.
//!
//! The bytes go to a part file `.NAME.hftp-part` beside the target, sized
//! to the file from the start; each segment is written at its offset. Next
//! to it, a state file `.NAME.hftp-state` records the file's size and the
//! segment size on its first line, then the index of each segment once it
//! is completely written, one per line (appended, so a kill leaves at worst
//! an unfinished last line, which is ignored). A download that is resumed
//! (`resume`) with a state file whose first line still matches the remote
//! size fetches only the segments not listed; otherwise it starts over.
//! When every segment is written and the remote size is unchanged, the part
//! file is flushed to disk and moved to the target name (never replacing an
//! existing file unless `force`), and the state file is removed.
//!
//! A segment that fails for a passing reason (refused, reset or closed
//! connection, timeout, `199`) is fetched again from the byte where it
//! stopped, over a new connection, after a backoff ([`Backoff`]), up to
//! [`DownloadOptions::retries`] times per segment. Each new connection
//! first checks the file's size again: a file that changed size or
//! vanished (`202`, `203`) ends the download and its part file is removed,
//! since its bytes belong to a version the server no longer has.
//!
//! [`download_from`] takes several mirrors of one file: their sizes must
//! agree, an unreachable one is dropped, connections are spread over them
//! round-robin, and a failed segment moves to the mirror with the fewest
//! failures (the failed one last).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hftp_proto::Status;

use crate::error::{Error, Result};
use crate::{check_name, Client, Endpoint};

/// Suffix of the part file, after `.NAME`.
pub const PART_SUFFIX: &str = ".hftp-part";
/// Suffix of the state file, after `.NAME`.
pub const STATE_SUFFIX: &str = ".hftp-state";

const MIB: u64 = 1024 * 1024;

/// How to download.
#[derive(Clone, Debug)]
pub struct DownloadOptions {
    /// Connections for a large file (at least 1).
    pub jobs: usize,
    /// Files smaller than this use one connection.
    pub parallel_threshold: u64,
    /// Replace an existing target file.
    pub force: bool,
    /// Resume from an earlier part file instead of starting over.
    pub resume: bool,
    /// How many times each segment is fetched again after a passing
    /// failure (0: never); so at most `retries + 1` attempts per segment.
    pub retries: u32,
    /// How long to wait before each retry.
    pub backoff: Backoff,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            jobs: 4,
            parallel_threshold: 8 * MIB,
            force: false,
            resume: false,
            retries: 5,
            backoff: Backoff::default(),
        }
    }
}

/// The wait before a retry: `first`, doubled for each retry before it, at
/// most `cap`, with ±20 % jitter so that the clients one failure stopped
/// do not all come back at the same instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    /// 0.2 s, 0.4 s, 0.8 s, ... up to 5 s.
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(200),
            cap: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// The wait before retry number `retry` (1 for the first).
    pub fn delay(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        let base = self.first.saturating_mul(1 << doublings).min(self.cap);
        base.mul_f64(0.8 + 0.4 * jitter(retry)).min(self.cap)
    }
}

/// A number in [0, 1), different at each call: std's `RandomState` is
/// keyed afresh for each instance, which is all the randomness jitter needs.
fn jitter(salt: u32) -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(salt) >> 11;
    bits as f64 / (1u64 << 53) as f64
}

/// Something a download recovered from, for the user to know; `hftp get`
/// prints each as one line on standard error.
#[derive(Debug)]
pub enum DownloadEvent<'a> {
    /// A segment failed and is fetched again, from byte `at`, on `to`.
    Retry {
        name: &'a str,
        segment: usize,
        error: &'a Error,
        at: u64,
        retry: u32,
        retries: u32,
        delay: Duration,
        from: &'a str,
        to: &'a str,
    },
    /// A mirror could not be reached before the download started: the
    /// others serve the file without it.
    MirrorDropped { mirror: &'a str, error: &'a Error },
}

impl std::fmt::Display for DownloadEvent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownloadEvent::Retry {
                name,
                segment,
                error,
                at,
                retry,
                retries,
                delay,
                from,
                to,
            } => {
                write!(
                    f,
                    "{name}: segment {segment}: {error} (at byte {at}); retry {retry}/{retries} in {:.1} s on {to}",
                    delay.as_secs_f64()
                )?;
                if from != to {
                    write!(f, " (moved from {from})")?;
                }
                Ok(())
            }
            DownloadEvent::MirrorDropped { mirror, error } => {
                write!(f, "mirror {mirror} dropped: {error}")
            }
        }
    }
}

/// Reports download progress; called from several threads.
pub trait Progress: Sync {
    /// The download of `total` bytes starts, `done` of them already there.
    fn start(&self, _name: &str, _total: u64, _done: u64) {}
    /// `n` more bytes were written.
    fn advance(&self, _n: u64) {}
    /// The download ended (successfully or not).
    fn finish(&self) {}
    /// A failure was survived (a retry, a mirror dropped).
    fn event(&self, _event: &DownloadEvent) {}
}

/// A [`Progress`] that reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What a finished download did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Download {
    pub path: PathBuf,
    pub size: u64,
    /// Bytes that were already in the part file and were not fetched again.
    pub resumed: u64,
    /// Connections used.
    pub connections: usize,
}

fn local<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Local {
        path: path.to_owned(),
        what,
        source,
    }
}

/// The part and state file paths for a target.
pub fn part_paths(dest: &Path) -> Result<(PathBuf, PathBuf)> {
    let file_name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Usage(format!("{}: not a file path", dest.display())))?;
    let dir = dest.parent().unwrap_or(Path::new(""));
    Ok((
        dir.join(format!(".{file_name}{PART_SUFFIX}")),
        dir.join(format!(".{file_name}{STATE_SUFFIX}")),
    ))
}

/// `EFBIG`: the file system's largest file is smaller (Linux's number on
/// every architecture).
const EFBIG: i32 = 27;

/// Bytes an unprivileged user may still write in `dir`'s file system;
/// `None` when the file system does not say.
fn free_space(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Sizes the part file; a size past what `set_len` takes (over 2^63 - 1)
/// is the file system's limit too.
fn sized(part: &File, size: u64) -> io::Result<()> {
    if i64::try_from(size).is_err() {
        return Err(io::Error::from_raw_os_error(EFBIG));
    }
    part.set_len(size)
}

fn too_large(name: &str, size: u64, dir: &Path, room: Option<u64>) -> Error {
    Error::TooLarge {
        name: name.to_owned(),
        size,
        dir: dir.to_owned(),
        room,
    }
}

/// The most segments one download is cut into. Each has an entry in the
/// table of segments done, so this bounds what a server's size (a peer's
/// number, up to 2^64 - 1) can make the client allocate: 1 MiB of table.
const MAX_SEGMENTS: u64 = 1 << 20;

/// Segment size: a few segments per connection so that fast connections
/// take over from slow ones, between 1 and 32 MiB; larger only for a file
/// that would need more than [`MAX_SEGMENTS`] of them (over 32 TiB).
fn segment_size(size: u64, jobs: usize) -> u64 {
    size.div_ceil(jobs as u64 * 4)
        .clamp(MIB, 32 * MIB)
        .max(size.div_ceil(MAX_SEGMENTS))
}

/// Downloads remote file `name` to `dest`. `client` carries the first
/// segment stream (and the metadata requests); up to `opts.jobs - 1` more
/// connections are opened from `endpoint` for a large file.
///
/// ```no_run
/// use hftp_client::{download, DownloadOptions, Endpoint, NoProgress};
/// use std::path::Path;
///
/// let endpoint = Endpoint::parse("localhost:19500")?;
/// let mut client = endpoint.connect()?;
/// let opts = DownloadOptions { jobs: 4, ..DownloadOptions::default() };
/// let done = download(&mut client, &endpoint, "big.iso", Path::new("big.iso"), &opts, &NoProgress)?;
/// println!("{} bytes", done.size);
/// # Ok::<(), hftp_client::Error>(())
/// ```
pub fn download(
    client: &mut Client,
    endpoint: &Endpoint,
    name: &str,
    dest: &Path,
    opts: &DownloadOptions,
    progress: &dyn Progress,
) -> Result<Download> {
    download_from(
        client,
        std::slice::from_ref(endpoint),
        name,
        dest,
        opts,
        progress,
    )
}

/// Downloads remote file `name` to `dest` from several `mirrors` of it at
/// once; `client` is a connection to one of them (it carries the first
/// segment stream and the metadata requests). Every other mirror is asked
/// the file's size first: one that answers another size, or has no such
/// file, is an error naming it ([`Error::MirrorsDiffer`]); one that cannot
/// be reached is dropped (a [`DownloadEvent::MirrorDropped`]). Connections
/// are spread over the mirrors round-robin; a failed segment is retried on
/// the mirror with the fewest failures so far.
///
/// ```no_run
/// use hftp_client::{download_from, DownloadOptions, Endpoint, NoProgress};
/// use std::path::Path;
///
/// let mirrors = [Endpoint::parse("a.example:19500")?, Endpoint::parse("b.example")?];
/// let mut client = mirrors[0].connect()?;
/// download_from(&mut client, &mirrors, "big.iso", Path::new("big.iso"), &DownloadOptions::default(), &NoProgress)?;
/// # Ok::<(), hftp_client::Error>(())
/// ```
pub fn download_from(
    client: &mut Client,
    mirrors: &[Endpoint],
    name: &str,
    dest: &Path,
    opts: &DownloadOptions,
    progress: &dyn Progress,
) -> Result<Download> {
    check_name(name)?;
    if mirrors.is_empty() {
        return Err(Error::Internal("download_from: no mirror given".into()));
    }
    // Before anything is created: a directory is never a destination, even
    // with `force` (nothing of it is replaced, no part file is left).
    if dest.is_dir() {
        return Err(Error::Local {
            path: dest.to_owned(),
            what: "download to",
            source: io::Error::new(
                io::ErrorKind::IsADirectory,
                "it is a directory (-O DIR downloads into one)",
            ),
        });
    }
    if !opts.force && fs::symlink_metadata(dest).is_ok() {
        return Err(Error::Exists(dest.to_owned()));
    }
    let (part_path, state_path) = part_paths(dest)?;
    let size = client.metadata(name)?;
    let primary = mirrors
        .iter()
        .position(|m| m.to_string() == client.peer())
        .unwrap_or(0);
    let (mirrors, spare) = probe_mirrors(mirrors, primary, name, size, progress)?;
    let jobs = if size < opts.parallel_threshold {
        1
    } else {
        opts.jobs.max(1)
    };
    let server = mirrors
        .iter()
        .map(|m| m.label.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let saved = match part_path.exists() {
        true => load_state(&state_path)?,
        false => None,
    };
    let (segment, resumed) = match saved {
        Some(saved) if saved.size == size && (opts.resume || saved.same(&server, name)) => {
            (saved.segment, Some(saved.done))
        }
        Some(saved) if !saved.done.is_empty() && !opts.force => {
            return Err(Error::PartMismatch {
                part: part_path,
                held: saved.describe(),
                wanted: format!("{name} from {server} ({size} bytes)"),
            });
        }
        _ => (segment_size(size, jobs), None),
    };
    let segments = size.div_ceil(segment) as usize;
    let header = format!("hftp-part 2 {size} {segment} {server} {name}\n");
    let mut done = vec![false; segments];
    for &i in resumed.iter().flatten() {
        if let Some(d) = done.get_mut(i) {
            *d = true;
        }
    }
    let resumed = resumed.is_some();
    let already: u64 = (0..segments)
        .filter(|&i| done[i])
        .map(|i| segment.min(size - i as u64 * segment))
        .sum();
    // Before anything is written: a size the disk cannot hold (a huge file,
    // or a server that lies) ends here, with nothing created.
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Some(room) = free_space(dir) {
        if size - already > room {
            return Err(too_large(name, size, dir, Some(room)));
        }
    }
    let part = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(!resumed)
        .open(&part_path)
        .map_err(local(&part_path, "create"))?;
    if let Err(e) = sized(&part, size) {
        if !resumed {
            let _ = fs::remove_file(&part_path);
        }
        return Err(match e.raw_os_error() {
            Some(EFBIG) => too_large(name, size, dir, None),
            _ => local(&part_path, "resize")(e),
        });
    }
    let state = if resumed {
        OpenOptions::new().append(true).open(&state_path)
    } else {
        File::create(&state_path).and_then(|mut f| f.write_all(header.as_bytes()).map(|()| f))
    }
    .map_err(local(&state_path, "write"))?;

    let pending: Vec<usize> = (0..segments).filter(|&i| !done[i]).collect();
    progress.start(name, size, already);

    let connections = jobs.min(pending.len()).max(1);
    // Connection k goes to the k-th live mirror, round-robin, the
    // primary (that of `client`) first.
    let live: Vec<usize> = std::iter::once(primary)
        .chain((0..mirrors.len()).filter(|&i| i != primary && mirrors[i].live))
        .collect();
    let spare = Mutex::new(spare);
    let job = Job {
        name,
        size,
        segment,
        pending: &pending,
        next: AtomicUsize::new(0),
        abort: AtomicBool::new(false),
        error: Mutex::new(None),
        part: &part,
        part_path: &part_path,
        state: Mutex::new(state),
        state_path: &state_path,
        progress,
        mirrors: &mirrors,
        retries: opts.retries,
        backoff: opts.backoff,
        sockets: Mutex::new(
            std::iter::once(client.socket())
                .chain((1..connections).map(|_| None))
                .collect(),
        ),
    };
    let mut used = 1;
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for slot in 1..connections {
            let (job, spare) = (&job, &spare);
            let mirror = live[slot % live.len()];
            handles.push(scope.spawn(move || {
                let reused = {
                    let mut spare = spare.lock().unwrap_or_else(|p| p.into_inner());
                    let found = spare.iter().position(|(m, _)| *m == mirror);
                    found.map(|i| spare.swap_remove(i).1)
                };
                match reused.map_or_else(|| job.mirrors[mirror].endpoint.connect(), Ok) {
                    // A connection that cannot be opened (a server limit, say)
                    // just means fewer in parallel.
                    Ok(mut extra) => {
                        job.set_socket(slot, &extra);
                        job.work(slot, &mut extra, mirror);
                        let _ = extra.quit();
                        true
                    }
                    Err(_) => false,
                }
            }));
        }
        job.work(0, client, primary);
        for h in handles {
            used += usize::from(h.join().unwrap_or(false));
        }
    });
    for (_, extra) in spare.into_inner().unwrap_or_else(|p| p.into_inner()) {
        let _ = extra.quit();
    }
    progress.finish();
    if let Some(err) = job.error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        // Its socket was shut down with the others.
        client.broken = true;
        return Err(discard_if_superseded(err, part, &part_path, &state_path));
    }
    // Verify: the file is whole and the remote size did not change.
    let len = part.metadata().map_err(local(&part_path, "inspect"))?.len();
    if len != size {
        return Err(Error::Changed {
            name: name.to_owned(),
            before: size,
            after: len,
        });
    }
    let now = match client.metadata(name) {
        Ok(now) => now,
        Err(err) => return Err(discard_if_superseded(err, part, &part_path, &state_path)),
    };
    if now != size {
        let err = Error::Changed {
            name: name.to_owned(),
            before: size,
            after: now,
        };
        return Err(discard_if_superseded(err, part, &part_path, &state_path));
    }
    part.sync_all().map_err(local(&part_path, "flush"))?;
    drop(part);
    finalize(&part_path, dest, opts.force)?;
    let _ = fs::remove_file(&state_path);
    Ok(Download {
        path: dest.to_owned(),
        size,
        resumed: already,
        connections: used,
    })
}

/// Whether the remote file is no longer the one being downloaded: it
/// changed size, or vanished (`202`), or shrank under a range (`203`).
fn superseded(err: &Error) -> bool {
    matches!(
        err,
        Error::Changed { .. }
            | Error::Status {
                status: Status::FileNotFound | Status::OffsetExceedsFileSize,
                ..
            }
    )
}

/// A download of a file that changed on the server removes its part and
/// state files: their bytes are of a version the server no longer has, and
/// finishing them from the new one (even of the same size) would mix two
/// versions. Any other error keeps them for a resume.
fn discard_if_superseded(err: Error, part: File, part_path: &Path, state_path: &Path) -> Error {
    if !superseded(&err) {
        return err;
    }
    drop(part);
    let _ = fs::remove_file(state_path);
    let removed = fs::remove_file(part_path).is_ok();
    Error::Superseded {
        source: Box::new(err),
        part: part_path.to_owned(),
        removed,
    }
}

/// Which errors are worth another attempt on a new connection: those of a
/// server or network that failed for now. A usage, local or protocol
/// error, a time limit, Ctrl-C or a missing file would fail again.
pub(crate) fn retryable(err: &Error) -> bool {
    match err {
        Error::Connect { .. } | Error::Closed { .. } | Error::Network { .. } => true,
        Error::Timeout { .. } => true,
        Error::Status { status, .. } => *status == Status::InternalError,
        _ => false,
    }
}

/// One server of a download, with its record of failures.
struct Mirror<'a> {
    endpoint: &'a Endpoint,
    /// `HOST:PORT`.
    label: String,
    /// False once dropped: unreachable when the download started.
    live: bool,
    failures: AtomicU32,
}

/// Checks that every mirror but `primary` (already asked: `size`) has
/// `name` with the same size, in parallel. Returns every mirror, marked
/// live or dropped, and the connections opened to the live ones.
#[allow(clippy::type_complexity)]
fn probe_mirrors<'a>(
    mirrors: &'a [Endpoint],
    primary: usize,
    name: &str,
    size: u64,
    progress: &dyn Progress,
) -> Result<(Vec<Mirror<'a>>, Vec<(usize, Client)>)> {
    let mut all: Vec<Mirror<'a>> = mirrors
        .iter()
        .map(|endpoint| Mirror {
            endpoint,
            label: endpoint.to_string(),
            live: true,
            failures: AtomicU32::new(0),
        })
        .collect();
    let answers: Vec<(usize, Result<(Client, u64)>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..mirrors.len())
            .filter(|&i| i != primary)
            .map(|i| {
                let endpoint = &mirrors[i];
                (
                    i,
                    scope.spawn(move || {
                        let mut c = endpoint.connect()?;
                        let size = c.metadata(name)?;
                        Ok((c, size))
                    }),
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|(i, h)| {
                let answer = h
                    .join()
                    .unwrap_or_else(|_| Err(Error::Internal("mirror probe panicked".into())));
                (i, answer)
            })
            .collect()
    });
    let mut spare = Vec::new();
    for (i, answer) in answers {
        match answer {
            Ok((c, s)) if s == size => spare.push((i, c)),
            Ok((_, s)) => return Err(mirrors_differ(&all, i, primary, name, Some(s), size)),
            Err(Error::Status {
                status: Status::FileNotFound,
                ..
            }) => return Err(mirrors_differ(&all, i, primary, name, None, size)),
            Err(e) if retryable(&e) => {
                progress.event(&DownloadEvent::MirrorDropped {
                    mirror: &all[i].label,
                    error: &e,
                });
                all[i].live = false;
            }
            Err(e) => return Err(e),
        }
    }
    Ok((all, spare))
}

/// The mirror for a retry after `failed` failed: a live one with the
/// fewest failures, the next ones round-robin first and `failed` last.
fn next_mirror(mirrors: &[Mirror], failed: usize) -> usize {
    let n = mirrors.len();
    (1..=n)
        .map(|k| (failed + k) % n)
        .filter(|&i| mirrors[i].live)
        .min_by_key(|&i| mirrors[i].failures.load(Ordering::SeqCst))
        .unwrap_or(failed)
}

fn mirrors_differ(
    all: &[Mirror],
    mirror: usize,
    primary: usize,
    name: &str,
    size: Option<u64>,
    expected: u64,
) -> Error {
    Error::MirrorsDiffer {
        name: name.to_owned(),
        mirror: all[mirror].label.clone(),
        size,
        reference: all[primary].label.clone(),
        expected,
    }
}
/// Moves the part file to `dest`; without `force`, never replaces a file
/// that appeared meanwhile (a hard link fails if the name exists).
fn finalize(part: &Path, dest: &Path, force: bool) -> Result<()> {
    if force {
        return fs::rename(part, dest).map_err(local(dest, "rename to"));
    }
    match fs::hard_link(part, dest) {
        Ok(()) => fs::remove_file(part).map_err(local(part, "remove")),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(Error::Exists(dest.to_owned())),
        Err(_) => {
            // No hard links here (some file systems): check, then rename.
            if fs::symlink_metadata(dest).is_ok() {
                return Err(Error::Exists(dest.to_owned()));
            }
            fs::rename(part, dest).map_err(local(dest, "rename to"))
        }
    }
}

/// What a state file says: which file, from where, and the segments done.
#[derive(Debug, PartialEq, Eq)]
struct Saved {
    size: u64,
    segment: u64,
    /// `HOST:PORT` and remote name; unknown in version 1 files.
    origin: Option<(String, String)>,
    done: Vec<usize>,
}

impl Saved {
    fn same(&self, server: &str, name: &str) -> bool {
        self.origin
            .as_ref()
            .is_some_and(|(s, n)| s == server && n == name)
    }

    fn describe(&self) -> String {
        let what = match &self.origin {
            Some((server, name)) => format!("{name} from {server}"),
            None => "a file from an unknown server".to_owned(),
        };
        format!(
            "{} finished segment(s) of {what} ({} bytes)",
            self.done.len(),
            self.size
        )
    }
}

/// Reads a state file: `None` if there is none or it is not one.
fn load_state(path: &Path) -> Result<Option<Saved>> {
    let mut text = String::new();
    match File::open(path) {
        Ok(mut f) => {
            if f.read_to_string(&mut text).is_err() {
                return Ok(None);
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Local {
                path: path.to_owned(),
                what: "read",
                source: e,
            })
        }
    }
    let Some((header, rest)) = text.split_once('\n') else {
        return Ok(None);
    };
    let fields: Vec<&str> = header.split(' ').collect();
    let (size, segment, origin) = match fields[..] {
        ["hftp-part", "1", size, segment] => (size, segment, None),
        ["hftp-part", "2", size, segment, server, name] => {
            (size, segment, Some((server.to_owned(), name.to_owned())))
        }
        _ => return Ok(None),
    };
    let (Ok(size), Ok(segment)) = (size.parse::<u64>(), segment.parse::<u64>()) else {
        return Ok(None);
    };
    // A state file this client could not have written (zero, or so small
    // a segment that the table would exceed its bound) resumes nothing.
    if segment == 0 || size.div_ceil(segment) > MAX_SEGMENTS {
        return Ok(None);
    }
    let segments = size.div_ceil(segment);
    // Only complete lines count: a kill may leave the last one unfinished.
    let complete = rest.rfind('\n').map_or("", |i| &rest[..i]);
    let mut done: Vec<usize> = complete
        .lines()
        .filter_map(|line| line.parse::<usize>().ok())
        .filter(|&i| (i as u64) < segments)
        .collect();
    done.sort_unstable();
    done.dedup();
    Ok(Some(Saved {
        size,
        segment,
        origin,
        done,
    }))
}

struct Job<'a> {
    name: &'a str,
    size: u64,
    segment: u64,
    pending: &'a [usize],
    next: AtomicUsize,
    abort: AtomicBool,
    error: Mutex<Option<Error>>,
    part: &'a File,
    part_path: &'a Path,
    state: Mutex<File>,
    state_path: &'a Path,
    progress: &'a dyn Progress,
    mirrors: &'a [Mirror<'a>],
    retries: u32,
    backoff: Backoff,
    /// Each connection's socket, by slot: the first failure (or Ctrl-C)
    /// shuts them all down, so that no thread waits out a stalled read.
    sockets: Mutex<Vec<Option<std::net::TcpStream>>>,
}

impl Job<'_> {
    /// Fetches pending segments over the connection of `slot` (to mirror
    /// `mirror`) until none is left or the download fails.
    fn work(&self, slot: usize, client: &mut Client, mut mirror: usize) {
        while !self.abort.load(Ordering::Relaxed) {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(&seg) = self.pending.get(i) else {
                return;
            };
            if let Err(e) = self.fetch(slot, client, &mut mirror, seg) {
                let first = !self.abort.swap(true, Ordering::SeqCst);
                let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(e);
                drop(slot);
                if first {
                    self.stop_all();
                }
                return;
            }
        }
    }

    /// Makes `client`'s socket the one of `slot`, shut down at once if the
    /// download already failed.
    fn set_socket(&self, slot: usize, client: &Client) {
        let mut sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = sockets.get_mut(slot) {
            *s = client.socket();
        }
        if self.abort.load(Ordering::SeqCst) {
            drop(sockets);
            self.stop_all();
        }
    }

    fn stop_all(&self) {
        let sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        for s in sockets.iter().flatten() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Fetches segment `seg`, retrying from the last byte written after a
    /// passing failure, on a new connection (to the mirror chosen by
    /// [`Job::next_mirror`]), then records it in the state file.
    fn fetch(
        &self,
        slot: usize,
        client: &mut Client,
        mirror: &mut usize,
        seg: usize,
    ) -> Result<()> {
        let offset = seg as u64 * self.segment;
        let end = offset + self.segment.min(self.size - offset);
        let mut writer = AtWriter {
            file: self.part,
            pos: offset,
            progress: self.progress,
        };
        let mut reconnect = client.is_broken();
        let mut retry = 0;
        loop {
            let attempt = self.attempt(slot, client, *mirror, reconnect, &mut writer, end);
            let Err(err) = attempt else { break };
            if !retryable(&err) || retry >= self.retries || self.abort.load(Ordering::SeqCst) {
                return Err(err);
            }
            retry += 1;
            let failed = *mirror;
            self.mirrors[failed].failures.fetch_add(1, Ordering::SeqCst);
            *mirror = next_mirror(self.mirrors, failed);
            let delay = self.backoff.delay(retry);
            let endpoint = self.mirrors[failed].endpoint;
            if let Some(deadline) = endpoint.deadline {
                let what = format!(
                    "{}: segment {seg}: {err} (at byte {}); no time left for retry {retry}",
                    self.name, writer.pos
                );
                if deadline.remaining(&what)? <= delay {
                    return Err(Error::MaxTime {
                        what,
                        limit: deadline.limit,
                    });
                }
            }
            self.progress.event(&DownloadEvent::Retry {
                name: self.name,
                segment: seg,
                error: &err,
                at: writer.pos,
                retry,
                retries: self.retries,
                delay,
                from: &self.mirrors[failed].label,
                to: &self.mirrors[*mirror].label,
            });
            if !self.pause(delay, endpoint)? {
                return Err(err);
            }
            reconnect = true;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .write_all(format!("{seg}\n").as_bytes())
            .map_err(local(self.state_path, "write"))
    }

    /// One attempt at the rest of a segment, `[writer.pos, end)`: on a new
    /// connection to `mirror` if `reconnect` (which first checks that the
    /// file still has its size), else on `client`.
    fn attempt(
        &self,
        slot: usize,
        client: &mut Client,
        mirror: usize,
        reconnect: bool,
        writer: &mut AtWriter,
        end: u64,
    ) -> Result<()> {
        if reconnect {
            *client = self.mirrors[mirror].endpoint.connect()?;
            self.set_socket(slot, client);
            let now = client.metadata(self.name)?;
            if now != self.size {
                return Err(Error::Changed {
                    name: self.name.to_owned(),
                    before: self.size,
                    after: now,
                });
            }
        }
        let (from, len) = (writer.pos, end - writer.pos);
        client
            .slice_to(self.name, from, len, writer)
            .map(drop)
            .map_err(|e| match e {
                Error::Output(source) => Error::Local {
                    path: self.part_path.to_owned(),
                    what: "write",
                    source,
                },
                other => other,
            })
    }

    /// Waits `delay` before a retry, in short steps so that Ctrl-C (whose
    /// `EINTR` a plain sleep would swallow) and another connection's fatal
    /// failure end it. Returns false if the download failed meanwhile.
    fn pause(&self, delay: Duration, endpoint: &Endpoint) -> Result<bool> {
        const STEP: Duration = Duration::from_millis(20);
        let until = Instant::now() + delay;
        loop {
            if endpoint.interrupt.is_some_and(|i| i.is_set()) {
                return Err(Error::Interrupted {
                    what: format!("{}: waiting to retry", self.name),
                });
            }
            if self.abort.load(Ordering::SeqCst) {
                return Ok(false);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(true);
            }
            std::thread::sleep(left.min(STEP));
        }
    }
}

/// Writes sequentially from `pos` with positioned writes.
struct AtWriter<'a> {
    file: &'a File,
    pos: u64,
    progress: &'a dyn Progress,
}

impl Write for AtWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write_at(buf, self.pos)?;
        self.pos += n as u64;
        self.progress.advance(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments() {
        assert_eq!(segment_size(0, 1), MIB);
        assert_eq!(segment_size(64 * MIB, 4), 4 * MIB);
        assert_eq!(segment_size(100 * 1024 * MIB, 4), 32 * MIB);
    }

    #[test]
    fn a_size_from_the_peer_never_sizes_a_table_past_its_bound() {
        for size in [1 << 45, 1 << 54, 1 << 62, u64::MAX] {
            for jobs in [1, 4, 64] {
                let segment = segment_size(size, jobs);
                assert!(
                    size.div_ceil(segment) <= MAX_SEGMENTS,
                    "{size} with {jobs} jobs"
                );
            }
        }
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_bounded_jitter() {
        let backoff = Backoff::default();
        for _ in 0..200 {
            for (retry, base_ms) in [(1, 200.0), (2, 400.0), (3, 800.0), (5, 3200.0)] {
                let ms = backoff.delay(retry).as_secs_f64() * 1000.0;
                assert!(
                    (base_ms * 0.8..=base_ms * 1.2).contains(&ms),
                    "retry {retry}: {ms} ms"
                );
            }
            for retry in [6, 40, u32::MAX] {
                let d = backoff.delay(retry);
                assert!(d <= backoff.cap && d >= backoff.cap.mul_f64(0.8), "{d:?}");
            }
        }
        let samples: std::collections::HashSet<Duration> =
            (0..20).map(|_| backoff.delay(1)).collect();
        assert!(samples.len() > 1, "no jitter");
    }

    #[test]
    fn only_passing_failures_are_retried() {
        let io = |kind| io::Error::new(kind, "x");
        let status = |status| Error::Status {
            request: "get_slice".into(),
            status,
        };
        for err in [
            Error::Connect {
                target: "h".into(),
                source: io(io::ErrorKind::ConnectionRefused),
            },
            Error::Network {
                what: "r".into(),
                source: io(io::ErrorKind::ConnectionReset),
            },
            Error::Timeout { what: "r".into() },
            Error::Closed {
                request: "get_slice".into(),
                error: hftp_proto::reply::ReplyError::Truncated {
                    part: hftp_proto::reply::Part::RawBody,
                    detail: "x".into(),
                },
            },
            status(Status::InternalError),
        ] {
            assert!(retryable(&err), "{err:?}");
        }
        for err in [
            status(Status::FileNotFound),
            status(Status::OffsetExceedsFileSize),
            status(Status::InvalidArguments),
            status(Status::BadRequest),
            Error::Usage("x".into()),
            Error::Interrupted { what: "x".into() },
            Error::MaxTime {
                what: "x".into(),
                limit: Duration::from_secs(1),
            },
            Error::Local {
                path: "p".into(),
                what: "write",
                source: io(io::ErrorKind::StorageFull),
            },
            Error::Changed {
                name: "n".into(),
                before: 1,
                after: 2,
            },
        ] {
            assert!(!retryable(&err), "{err:?}");
        }
    }

    #[test]
    fn a_retry_moves_to_the_mirror_that_failed_least() {
        let endpoints: Vec<Endpoint> = (1..=3)
            .map(|p| Endpoint::parse(&format!("127.0.0.1:{p}")).unwrap())
            .collect();
        let mirrors: Vec<Mirror> = endpoints
            .iter()
            .map(|endpoint| Mirror {
                endpoint,
                label: endpoint.to_string(),
                live: true,
                failures: AtomicU32::new(0),
            })
            .collect();
        let fail = |i: usize| mirrors[i].failures.fetch_add(1, Ordering::SeqCst);
        fail(0);
        assert_eq!(next_mirror(&mirrors, 0), 1, "the next one, round-robin");
        fail(1);
        assert_eq!(next_mirror(&mirrors, 1), 2);
        fail(2);
        fail(2);
        assert_eq!(next_mirror(&mirrors, 2), 0, "the one that failed least");
        let one = &mirrors[..1];
        assert_eq!(next_mirror(one, 0), 0, "a lone mirror is retried");
        fail(0);
        fail(0);
        let mut dropped = mirrors;
        dropped[1].live = false;
        assert_eq!(next_mirror(&dropped, 0), 2, "never a dropped mirror");
    }

    #[test]
    fn state_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        fs::write(&path, "hftp-part 2 10 4 127.0.0.1:9 a.bin\n0\n2\n7\n1").unwrap();
        let saved = load_state(&path).unwrap().unwrap();
        assert_eq!(
            saved,
            Saved {
                size: 10,
                segment: 4,
                origin: Some(("127.0.0.1:9".into(), "a.bin".into())),
                done: vec![0, 2],
            }
        );
        assert!(saved.same("127.0.0.1:9", "a.bin"));
        assert!(!saved.same("127.0.0.1:8", "a.bin"));
        fs::write(&path, "hftp-part 1 10 4\n1\n").unwrap();
        let saved = load_state(&path).unwrap().unwrap();
        assert_eq!((saved.origin, saved.done), (None, vec![1]));
        for junk in ["", "hftp-part 1 10 0\n", "hftp-part 3 1 1\n", "x\n"] {
            fs::write(&path, junk).unwrap();
            assert_eq!(load_state(&path).unwrap(), None, "{junk:?}");
        }
        assert_eq!(load_state(&dir.path().join("none")).unwrap(), None);
        let (part, state) = part_paths(Path::new("/x/y.bin")).unwrap();
        assert_eq!(part, Path::new("/x/.y.bin.hftp-part"));
        assert_eq!(state, Path::new("/x/.y.bin.hftp-state"));
    }
}
