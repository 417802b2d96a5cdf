//! File access, behind one small interface so that other backends (object
//! storage shared by many servers) can replace the local directory.
//!
//! [`LocalDir`] resolves the served directory anew for every request, so a
//! directory deleted and re-created under the same path is picked up, and
//! opens names with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`: a
//! name can only reach a regular file beneath the served directory, whatever
//! symbolic links or races the directory holds. Special files are checked
//! through an `O_PATH` handle first and are never opened for reading, so a
//! FIFO cannot block the server.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use hftp_proto::FileName;
use rustix::fs::{openat2, FileType, Mode, OFlags, ResolveFlags};

/// Why a file could not be listed, measured or read.
#[derive(Debug)]
pub enum StorageError {
    /// No servable file of that name: answered `202`.
    NotFound,
    /// Something that should have worked did not: answered `199`.
    Io(io::Error),
}

impl From<io::Error> for StorageError {
    fn from(e: io::Error) -> Self {
        StorageError::Io(e)
    }
}

/// An opened file, read by byte ranges.
pub trait SliceSource: Send {
    /// Size when opened.
    fn size(&self) -> u64;
    /// Reads at `offset`; `Ok(0)` means end of file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// A descriptor for zero-copy `sendfile`, when the backend has one.
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

/// What every backend offers: list, stat, open.
pub trait Storage: Send + Sync {
    /// Servable names, sorted in byte order.
    fn list(&self) -> Result<Vec<String>, StorageError>;
    /// Size of a servable file.
    fn stat(&self, name: &FileName) -> Result<u64, StorageError>;
    /// Opens a servable file for reading.
    fn open(&self, name: &FileName) -> Result<Box<dyn SliceSource>, StorageError>;
}

/// A local directory, served live.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
    follow_symlinks: bool,
}

struct LocalFile {
    file: File,
    size: u64,
}

impl SliceSource for LocalFile {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.file.as_fd())
    }
}

impl LocalDir {
    /// Serves `root`, which must be an existing directory. With
    /// `follow_symlinks`, links may point anywhere; without it (the default)
    /// only links that stay beneath `root` are followed.
    pub fn new(root: impl Into<PathBuf>, follow_symlinks: bool) -> io::Result<LocalDir> {
        let root = root.into();
        let meta = std::fs::metadata(&root)?;
        if !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        Ok(LocalDir {
            root,
            follow_symlinks,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn open_root(&self, flags: OFlags) -> io::Result<OwnedFd> {
        Ok(rustix::fs::open(
            &self.root,
            flags | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    fn resolve_flags(&self) -> ResolveFlags {
        if self.follow_symlinks {
            ResolveFlags::NO_MAGICLINKS
        } else {
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS
        }
    }

    /// Opens `name` beneath `dir` and checks that it is a regular file.
    /// `O_PATH` opens nothing for reading, so special files have no effect.
    fn open_checked(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        flags: OFlags,
    ) -> Result<(OwnedFd, u64), StorageError> {
        // openat2 rejects flags that do not apply (NOCTTY with O_PATH).
        let flags = if flags.contains(OFlags::PATH) {
            flags
        } else {
            flags | OFlags::NOCTTY
        };
        let fd = match openat2(
            dir,
            name,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            self.resolve_flags(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::XDEV) if !self.follow_symlinks => {
                self.open_absolute_link(dir, name, flags)?
            }
            Err(e) => return Err(classify(e.into())),
        };
        let st = rustix::fs::fstat(&fd).map_err(io::Error::from)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(StorageError::NotFound);
        }
        Ok((fd, st.st_size as u64))
    }

    /// `RESOLVE_BENEATH` refuses every absolute symbolic link, even one
    /// that points back inside the served directory. Such a link is
    /// resolved here: if its target lies beneath the directory, the target
    /// is opened by its path relative to the directory with no link
    /// followed at all, so a race cannot swap in an escaping link.
    fn open_absolute_link(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        flags: OFlags,
    ) -> Result<OwnedFd, StorageError> {
        let root = std::fs::canonicalize(&self.root)?;
        let target =
            std::fs::canonicalize(self.root.join(name)).map_err(|_| StorageError::NotFound)?;
        let relative = target
            .strip_prefix(&root)
            .map_err(|_| StorageError::NotFound)?;
        if relative.as_os_str().is_empty() {
            return Err(StorageError::NotFound);
        }
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        openat2(
            dir,
            relative,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        )
        .map_err(|e| classify(e.into()))
    }

    /// The common case in one system call: `lstat` says the name is a
    /// regular file (not a link). A valid name has no `/` and its last
    /// component is not followed, so nothing can lead outside the directory.
    /// Anything else (a link, absent, an error) takes the careful path.
    fn plain_file_size(&self, name: &FileName) -> Option<u64> {
        let st = rustix::fs::lstat(self.root.join(name.as_str())).ok()?;
        (FileType::from_raw_mode(st.st_mode) == FileType::RegularFile).then_some(st.st_size as u64)
    }

    /// [`Self::plain_file_size`], then open without following a link; a file
    /// swapped for a link or a special file meanwhile takes the careful path.
    fn open_plain_file(&self, name: &FileName) -> Option<LocalFile> {
        let path = self.root.join(name.as_str());
        let st = rustix::fs::lstat(&path).ok()?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return None;
        }
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(&path, flags, Mode::empty()).ok()?;
        let st = rustix::fs::fstat(&fd).ok()?;
        (FileType::from_raw_mode(st.st_mode) == FileType::RegularFile).then(|| LocalFile {
            file: File::from(fd),
            size: st.st_size as u64,
        })
    }

    fn stat_in(&self, dir: BorrowedFd<'_>, name: &str) -> Result<u64, StorageError> {
        self.open_checked(dir, name, OFlags::PATH)
            .map(|(_, size)| size)
    }
}

/// Errors that mean "there is no servable file of that name".
fn classify(e: io::Error) -> StorageError {
    match e.raw_os_error() {
        // ENOENT: absent; ENOTDIR: a path component is not a directory;
        // ELOOP: a link loop or a magic link; EXDEV: a link leaves the
        // directory; ENXIO/ENODEV: a special file.
        Some(
            libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::EXDEV | libc::ENXIO | libc::ENODEV,
        ) => StorageError::NotFound,
        _ => StorageError::Io(e),
    }
}

impl Storage for LocalDir {
    fn list(&self) -> Result<Vec<String>, StorageError> {
        let dir = self.open_root(OFlags::RDONLY)?;
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&dir).map_err(io::Error::from)? {
            let entry = entry.map_err(io::Error::from)?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            // Names that cannot be requested (spaces, other bytes) are not listed.
            if FileName::new(name).is_err() {
                continue;
            }
            match self.stat_in(dir.as_fd(), name) {
                Ok(_) => names.push(name.to_owned()),
                // Gone since the directory was read, not regular, escaping: skip.
                Err(StorageError::NotFound) => {}
                Err(StorageError::Io(e)) if e.kind() == io::ErrorKind::PermissionDenied => {}
                Err(e) => return Err(e),
            }
        }
        names.sort_unstable();
        Ok(names)
    }

    fn stat(&self, name: &FileName) -> Result<u64, StorageError> {
        if let Some(size) = self.plain_file_size(name) {
            return Ok(size);
        }
        let dir = self.open_root(OFlags::PATH)?;
        self.stat_in(dir.as_fd(), name.as_str())
    }

    fn open(&self, name: &FileName) -> Result<Box<dyn SliceSource>, StorageError> {
        if let Some(file) = self.open_plain_file(name) {
            return Ok(Box::new(file));
        }
        let dir = self.open_root(OFlags::PATH)?;
        // Check the type through O_PATH before opening for reading: opening a
        // device or FIFO for reading could block or have side effects.
        self.stat_in(dir.as_fd(), name.as_str())?;
        let (fd, size) = self.open_checked(
            dir.as_fd(),
            name.as_str(),
            OFlags::RDONLY | OFlags::NONBLOCK,
        )?;
        Ok(Box::new(LocalFile {
            file: File::from(fd),
            size,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> FileName {
        FileName::new(s).unwrap()
    }

    #[test]
    fn lists_and_serves_only_regular_files_beneath() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("served");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("b.txt"), b"hello").unwrap();
        std::fs::write(root.join("a.txt"), b"").unwrap();
        std::fs::write(root.join("with space"), b"x").unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(tmp.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink("../secret", root.join("escape")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret"), root.join("abs-escape")).unwrap();
        std::os::unix::fs::symlink("b.txt", root.join("inside")).unwrap();
        std::os::unix::fs::symlink(root.join("b.txt"), root.join("abs-inside")).unwrap();
        nix::unistd::mkfifo(
            &root.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();

        let dir = LocalDir::new(&root, false).unwrap();
        assert_eq!(
            dir.list().unwrap(),
            ["a.txt", "abs-inside", "b.txt", "inside"]
        );
        assert_eq!(dir.stat(&name("b.txt")).unwrap(), 5);
        assert_eq!(dir.stat(&name("abs-inside")).unwrap(), 5);
        assert_eq!(dir.stat(&name("inside")).unwrap(), 5);
        for n in ["escape", "abs-escape", "sub", "fifo", "missing"] {
            assert!(
                matches!(dir.stat(&name(n)), Err(StorageError::NotFound)),
                "{n}"
            );
            assert!(
                matches!(dir.open(&name(n)), Err(StorageError::NotFound)),
                "{n}"
            );
        }
        let f = dir.open(&name("b.txt")).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(f.read_at(&mut buf, 1).unwrap(), 4);
        assert_eq!(&buf[..4], b"ello");

        // The directory is resolved anew: delete and re-create it.
        std::fs::remove_dir_all(&root).unwrap();
        assert!(matches!(dir.list(), Err(StorageError::Io(_))));
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("new"), b"1").unwrap();
        assert_eq!(dir.list().unwrap(), ["new"]);
    }
}
