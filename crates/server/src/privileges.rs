//! Dropping root privileges after the listening sockets are bound, so that a
//! port below 1024 can be used without serving clients as root.

use std::ffi::CString;

use nix::unistd::{getuid, initgroups, setgid, setuid, Uid, User};

/// Why privileges could not be dropped.
#[derive(Debug)]
pub enum DropError {
    NoSuchUser(String),
    TargetIsRoot(String),
    NotRoot { user: String, uid: u32 },
    Failed(String),
}

impl std::fmt::Display for DropError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DropError::NoSuchUser(u) => write!(f, "--user {u}: no such user"),
            DropError::TargetIsRoot(u) => write!(f, "--user {u}: refusing to serve as root; name an unprivileged user"),
            DropError::NotRoot { user, uid } => write!(
                f,
                "--user {user}: only root can switch users (running as uid {uid}); start as root or omit --user"
            ),
            DropError::Failed(e) => write!(f, "dropping privileges failed: {e}"),
        }
    }
}

impl std::error::Error for DropError {}

/// Switches the process (all of it: call before starting threads) to
/// `name`'s uid, gid and supplementary groups, then checks that root cannot
/// be regained. Running as `name` already is accepted as is.
pub fn drop_to(name: &str) -> Result<User, DropError> {
    let user = User::from_name(name)
        .map_err(|e| DropError::Failed(e.to_string()))?
        .ok_or_else(|| DropError::NoSuchUser(name.to_owned()))?;
    if user.uid.is_root() {
        return Err(DropError::TargetIsRoot(name.to_owned()));
    }
    let current = getuid();
    if current == user.uid {
        return Ok(user);
    }
    if !current.is_root() {
        return Err(DropError::NotRoot {
            user: name.to_owned(),
            uid: current.as_raw(),
        });
    }
    let cname = CString::new(name).map_err(|e| DropError::Failed(e.to_string()))?;
    let failed = |what: &str, e: nix::Error| DropError::Failed(format!("{what}: {e}"));
    initgroups(&cname, user.gid).map_err(|e| failed("initgroups", e))?;
    setgid(user.gid).map_err(|e| failed("setgid", e))?;
    setuid(user.uid).map_err(|e| failed("setuid", e))?;
    // Paranoia: root must be gone for good.
    if setuid(Uid::from_raw(0)).is_ok() || nix::unistd::geteuid().is_root() {
        return Err(DropError::Failed(
            "root privileges could be regained".into(),
        ));
    }
    Ok(user)
}
