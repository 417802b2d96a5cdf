//! The served directory's content for each case. The suite owns that
//! directory: before every case the runner empties it (the path itself stays)
//! and lays out the files the case declares.
//!
//! The files may go elsewhere than a local directory, to a bucket of an
//! object store for instance, through a [`FixtureSink`]: plain files,
//! appends, removals and `a/b` names work there too; symbolic links, FIFOs
//! and permissions do not, and cases that need them are skipped.

use std::ffi::CString;
use std::fs::{self, Permissions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Lays out a case's files in the (emptied) served directory.
pub type Fixture = fn(&FixtureDir) -> io::Result<()>;

/// The spec's example file content (32 bytes).
pub const HOLA: &[u8] = b"Que calor que hace hoy, pinocho!";
/// The name [`hola`] lays [`HOLA`] out under.
pub const HOLA_NAME: &str = "hola.txt";
/// Size of the mid-sized fixture file `big.bin`.
pub const BIG_LEN: usize = 123_459;
/// Size of the file holding every byte value, fetched whole.
pub const HUGE_LEN: usize = 32 << 20;
/// Content with NUL, CR, LF and high bytes: nothing in a body is special.
pub const AWKWARD: &[u8] = b"\0\r\n\n\r\0\0CRLF\r\n in body\xff\xfe\x80\x00end\r";

/// Mode of fixture files: readable by a server that runs as anyone.
const FILE_MODE: u32 = 0o644;
/// Mode of fixture subdirectories.
const DIR_MODE: u32 = 0o755;

/// Where a suite lays out files when the server serves no local directory.
pub trait FixtureSink: Send + Sync {
    /// Creates or replaces the file `name` (which may contain `/`).
    fn put(&self, name: &str, content: &[u8]) -> io::Result<()>;
    /// Creates or replaces several files: one [`FixtureSink::put`] each
    /// unless the sink can do better (a remote store writes them at once
    /// and waits for them together).
    fn put_many(&self, files: &[(String, Vec<u8>)]) -> io::Result<()> {
        files
            .iter()
            .try_for_each(|(name, content)| self.put(name, content))
    }
    fn get(&self, name: &str) -> io::Result<Vec<u8>>;
    fn delete(&self, name: &str) -> io::Result<()>;
    /// Removes every file, so the next case starts from nothing.
    fn clear(&self) -> io::Result<()>;
    /// Runs `layout` (a [`FixtureSink::clear`] and the puts of one case's
    /// fixture) as one change: a sink whose writes take a while to show
    /// (a replicated store's listing) may make them all, then wait once
    /// for the result. Changes a case makes while it runs still go
    /// through the methods above, each complete when it returns.
    fn lay_out(&self, layout: &mut dyn FnMut() -> io::Result<()>) -> io::Result<()> {
        layout()
    }
}

/// The served directory, as seen by a fixture or a case.
pub struct FixtureDir {
    path: PathBuf,
    mode: u32,
    /// Files go there instead of `path`.
    sink: Option<Arc<dyn FixtureSink>>,
}

/// What a sink cannot hold: the case needs a local directory.
fn unsupported(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{what} needs a local directory, not a fixture sink"),
    )
}

impl FixtureDir {
    /// `mode` is the served directory's own permission bits, restored by
    /// [`FixtureDir::reset`].
    pub fn new(path: &Path, mode: u32) -> FixtureDir {
        FixtureDir {
            path: path.to_path_buf(),
            mode,
            sink: None,
        }
    }

    /// Files laid out through `sink` rather than in a directory.
    pub fn with_sink(sink: Arc<dyn FixtureSink>) -> FixtureDir {
        FixtureDir {
            path: PathBuf::new(),
            mode: 0,
            sink: Some(sink),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory's path, for a fixture that needs a real directory
    /// (links by path); `Unsupported` when files go to a sink.
    pub fn local_path(&self, what: &str) -> io::Result<&Path> {
        match self.sink {
            Some(_) => Err(unsupported(what)),
            None => Ok(&self.path),
        }
    }

    /// Creates (or replaces) a regular file.
    pub fn file(&self, name: &str, content: &[u8]) -> io::Result<()> {
        if let Some(sink) = &self.sink {
            return sink.put(name, content);
        }
        let path = self.path.join(name);
        fs::write(&path, content)?;
        fs::set_permissions(&path, Permissions::from_mode(FILE_MODE))
    }

    /// Creates several files with [`FixtureDir::file`]'s modes (at once
    /// where a sink can).
    pub fn files(&self, files: &[(String, Vec<u8>)]) -> io::Result<()> {
        if let Some(sink) = &self.sink {
            return sink.put_many(files);
        }
        files
            .iter()
            .try_for_each(|(name, content)| self.file(name, content))
    }

    /// Appends to a file.
    pub fn append(&self, name: &str, content: &[u8]) -> io::Result<()> {
        if let Some(sink) = &self.sink {
            let mut data = sink.get(name)?;
            data.extend_from_slice(content);
            return sink.put(name, &data);
        }
        fs::OpenOptions::new()
            .append(true)
            .open(self.path.join(name))?
            .write_all(content)
    }

    pub fn remove(&self, name: &str) -> io::Result<()> {
        if let Some(sink) = &self.sink {
            return sink.delete(name);
        }
        fs::remove_file(self.path.join(name))
    }

    pub fn subdir(&self, name: &str) -> io::Result<()> {
        if let Some(sink) = &self.sink {
            // A directory of keys exists through its keys.
            let _ = (sink, name);
            return Ok(());
        }
        let path = self.path.join(name);
        fs::create_dir(&path)?;
        fs::set_permissions(&path, Permissions::from_mode(DIR_MODE))
    }

    pub fn fifo(&self, name: &str) -> io::Result<()> {
        if let Some(sink) = &self.sink {
            let _ = sink;
            return Err(unsupported(&format!("FIFO {name}")));
        }
        let path = CString::new(self.path.join(name).as_os_str().as_bytes())?;
        // SAFETY: `path` is a valid NUL-terminated string for the call.
        if unsafe { libc::mkfifo(path.as_ptr(), FILE_MODE as libc::mode_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn symlink(&self, name: &str, target: impl AsRef<Path>) -> io::Result<()> {
        if let Some(sink) = &self.sink {
            let _ = sink;
            return Err(unsupported(&format!("symbolic link {name}")));
        }
        symlink(target, self.path.join(name))
    }

    pub fn chmod(&self, name: &str, mode: u32) -> io::Result<()> {
        if let Some(sink) = &self.sink {
            let _ = (sink, mode);
            return Err(unsupported(&format!("permissions of {name}")));
        }
        fs::set_permissions(self.path.join(name), Permissions::from_mode(mode))
    }

    /// Changes the served directory's own permission bits.
    pub fn chmod_self(&self, mode: u32) -> io::Result<()> {
        if let Some(sink) = &self.sink {
            let _ = (sink, mode);
            return Err(unsupported("permissions of the served directory"));
        }
        fs::set_permissions(&self.path, Permissions::from_mode(mode))
    }

    /// Deletes the served directory and creates it anew, empty, under the
    /// same path and with the same permissions.
    pub fn recreate(&self) -> io::Result<()> {
        if let Some(sink) = &self.sink {
            return sink.clear();
        }
        self.chmod_self(self.mode)?;
        fs::remove_dir_all(&self.path)?;
        self.reset()
    }

    /// Empties the served directory and lays out `fixture` in it, as one
    /// change where a sink can (see [`FixtureSink::lay_out`]).
    pub fn lay_out(&self, fixture: Fixture) -> io::Result<()> {
        match &self.sink {
            Some(sink) => sink.lay_out(&mut || self.reset().and_then(|()| fixture(self))),
            None => self.reset().and_then(|()| fixture(self)),
        }
    }

    /// Empties the served directory (re-creating it if a case removed it)
    /// and restores its permission bits.
    pub fn reset(&self) -> io::Result<()> {
        if let Some(sink) = &self.sink {
            return sink.clear();
        }
        match fs::symlink_metadata(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&self.path)?,
            Err(e) => return Err(e),
            Ok(meta) if !meta.is_dir() => {
                return Err(io::Error::other(format!(
                    "{} is not a directory",
                    self.path.display()
                )))
            }
            Ok(_) => {}
        }
        self.chmod_self(self.mode)?;
        for entry in fs::read_dir(&self.path)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                fs::remove_dir_all(entry.path())?;
            } else {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

/// Whether `dir` holds no entries.
pub fn is_empty(dir: &Path) -> io::Result<bool> {
    Ok(fs::read_dir(dir)?.next().is_none())
}

/// `len` deterministic bytes in which every byte value occurs, in no short
/// period.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i ^ (i >> 8) ^ (i >> 17)) as u8).collect()
}

// ---- the fixtures cases declare ----

/// Nothing: an empty served directory.
pub fn empty(_: &FixtureDir) -> io::Result<()> {
    Ok(())
}

/// The spec's examples: `hola.txt` (32 bytes) and `foto.jpg`.
pub fn hola(dir: &FixtureDir) -> io::Result<()> {
    dir.file("hola.txt", HOLA)?;
    dir.file("foto.jpg", &pattern(2048))
}

/// Files of telling sizes: `empty.bin` (0), `big.bin` ([`BIG_LEN`]),
/// `awkward.bin` ([`AWKWARD`]) and the spec's `hola.txt`.
pub fn sizes(dir: &FixtureDir) -> io::Result<()> {
    dir.file("empty.bin", b"")?;
    dir.file("big.bin", &pattern(BIG_LEN))?;
    dir.file("awkward.bin", AWKWARD)?;
    dir.file("hola.txt", HOLA)
}

/// `all.bin`: [`HUGE_LEN`] bytes of [`pattern`].
pub fn huge(dir: &FixtureDir) -> io::Result<()> {
    dir.file("all.bin", &pattern(HUGE_LEN))
}

/// Entries that must be neither listed nor served, beside two that must:
/// `plain.txt` and `link-in.txt` (a symlink to it).
pub fn special_entries(dir: &FixtureDir) -> io::Result<()> {
    dir.file("plain.txt", HOLA)?;
    dir.symlink("link-in.txt", "plain.txt")?;
    dir.subdir("subdir")?;
    dir.file("subdir/inner.txt", HOLA)?;
    dir.fifo("fifo")?;
    dir.symlink("link-out.txt", "/etc/passwd")?;
    dir.symlink("link-up.txt", "../")?;
    dir.symlink("link-dangling.txt", "no-such-target")?;
    dir.symlink("link-dir", "subdir")
}

/// 1000 files whose byte order differs from any case-folded or numeric order.
pub fn thousand(dir: &FixtureDir) -> io::Result<()> {
    let files: Vec<(String, Vec<u8>)> = thousand_names()
        .into_iter()
        .map(|name| {
            let content = name.clone().into_bytes();
            (name, content)
        })
        .collect();
    dir.files(&files)
}

/// The names [`thousand`] creates, in creation order (not sorted).
pub fn thousand_names() -> Vec<String> {
    const PREFIXES: [&str; 8] = ["a", "B", "_", "-", "0", "Z", ".h", "z"];
    (0..1000)
        .rev()
        .map(|i| {
            format!(
                "{}{}.{}",
                PREFIXES[i % PREFIXES.len()],
                i,
                ["txt", "TXT", "t_x"][i % 3]
            )
        })
        .collect()
}
