//! What a full-tier test needs from the machine: a tool on `PATH`, or
//! root. A missing one fails the test with the command that installs it
//! (`.ci/run` installs them all), never skips it.

use std::path::{Path, PathBuf};

/// The path of `name`, looked for on `PATH` and in the system directories
/// a user's `PATH` may lack (`/usr/sbin` holds `haproxy`); fails the test,
/// naming `install`, when it is nowhere.
pub fn require(name: &str, install: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .chain(std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin")))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed, and this full-tier test needs it: {install} \
                 (or run `.ci/run` as root, which installs every tool of the full tier)"
            )
        })
}

/// Fails the test unless it runs as root, saying why `what` needs it.
pub fn require_root(what: &str) {
    assert!(
        super::running_as_root(),
        "this full-tier test needs root ({what}): run it as root, as `.ci/run` does"
    );
}
