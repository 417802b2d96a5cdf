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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

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
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            jobs: 4,
            parallel_threshold: 8 * MIB,
            force: false,
            resume: false,
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

/// Segment size: a few segments per connection so that fast connections
/// take over from slow ones, between 1 and 32 MiB.
fn segment_size(size: u64, jobs: usize) -> u64 {
    size.div_ceil(jobs as u64 * 4).clamp(MIB, 32 * MIB)
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
    check_name(name)?;
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
    let jobs = if size < opts.parallel_threshold {
        1
    } else {
        opts.jobs.max(1)
    };
    let server = endpoint.to_string();
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
    let part = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(!resumed)
        .open(&part_path)
        .map_err(local(&part_path, "create"))?;
    part.set_len(size).map_err(local(&part_path, "resize"))?;
    let state = if resumed {
        OpenOptions::new().append(true).open(&state_path)
    } else {
        File::create(&state_path).and_then(|mut f| f.write_all(header.as_bytes()).map(|()| f))
    }
    .map_err(local(&state_path, "write"))?;

    let pending: Vec<usize> = (0..segments).filter(|&i| !done[i]).collect();
    let already: u64 = (0..segments)
        .filter(|&i| done[i])
        .map(|i| segment.min(size - i as u64 * segment))
        .sum();
    progress.start(name, size, already);

    let connections = jobs.min(pending.len()).max(1);
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
        sockets: Mutex::new(client.socket().into_iter().collect()),
    };
    let mut used = 1;
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for _ in 1..connections {
            handles.push(scope.spawn(|| match endpoint.connect() {
                // A connection that cannot be opened (a server limit, say)
                // just means fewer in parallel.
                Ok(mut extra) => {
                    job.add_socket(&extra);
                    job.work(&mut extra);
                    let _ = extra.quit();
                    true
                }
                Err(_) => false,
            }));
        }
        job.work(client);
        for h in handles {
            used += usize::from(h.join().unwrap_or(false));
        }
    });
    progress.finish();
    if let Some(err) = job.error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        // Its socket was shut down with the others.
        client.broken = true;
        return Err(err);
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
    let now = client.metadata(name)?;
    if now != size {
        return Err(Error::Changed {
            name: name.to_owned(),
            before: size,
            after: now,
        });
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
    if segment == 0 {
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
    /// Every connection's socket: the first failure (or Ctrl-C) shuts them
    /// all down, so that no thread waits out a stalled read.
    sockets: Mutex<Vec<std::net::TcpStream>>,
}

impl Job<'_> {
    fn work(&self, client: &mut Client) {
        while !self.abort.load(Ordering::Relaxed) {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(&seg) = self.pending.get(i) else {
                return;
            };
            if let Err(e) = self.fetch(client, seg) {
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

    fn add_socket(&self, client: &Client) {
        let mut sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        sockets.extend(client.socket());
        if self.abort.load(Ordering::SeqCst) {
            drop(sockets);
            self.stop_all();
        }
    }

    fn stop_all(&self) {
        let sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        for s in sockets.iter() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn fetch(&self, client: &mut Client, seg: usize) -> Result<()> {
        let offset = seg as u64 * self.segment;
        let len = self.segment.min(self.size - offset);
        let mut writer = AtWriter {
            file: self.part,
            pos: offset,
            progress: self.progress,
        };
        client
            .slice_to(self.name, offset, len, &mut writer)
            .map_err(|e| match e {
                Error::Output(source) => Error::Local {
                    path: self.part_path.to_owned(),
                    what: "write",
                    source,
                },
                other => other,
            })?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .write_all(format!("{seg}\n").as_bytes())
            .map_err(local(self.state_path, "write"))
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
