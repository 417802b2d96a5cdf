//! Not a test: the closing line of `cargo test --workspace` (quick tier).
//! It says how many tests belong to the full tier, which the quick tier
//! leaves out, and the command that runs them. The count is read from the
//! integration-test binary of `crates/cli` (`--list --ignored`), built by
//! the same `cargo test` in the same directory as this one.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The command that installs the full tier's tools and runs both tiers.
const FULL_TIER: &str = "sudo .ci/run";
/// Both tiers without the installs, once the tools are there.
const BOTH_TIERS: &str = "cargo test --workspace -- --include-ignored";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        return; // `cargo test -- --list`: nothing to list here.
    }
    let full_ran = args
        .iter()
        .any(|a| a == "--include-ignored" || a == "--ignored");
    let count = integration_binary().and_then(|binary| full_tier_count(&binary));
    let tests = match count {
        Some(1) => "1 test".to_string(),
        Some(n) => format!("{n} tests"),
        None => "the tests".to_string(),
    };
    if full_ran {
        println!(
            "tiers: both ran: {tests} of the full tier (root, Garage, HAProxy, tshark, SOCKS \
             proxies, Tor, packages) were included."
        );
    } else {
        println!(
            "tiers: quick tier done; {tests} of the full tier (need root, Garage, HAProxy, tshark, \
             microsocks, danted, tor, openssl, cargo-deb, maturin) were not run: `{FULL_TIER}` installs what is missing and runs both \
             tiers (or `{BOTH_TIERS}` once the tools are installed)."
        );
    }
}

/// The newest `integration-HASH` executable beside this one
/// (`target/debug/deps`).
fn integration_binary() -> Option<PathBuf> {
    let me = std::env::current_exe().ok()?;
    let deps = me.parent()?;
    std::fs::read_dir(deps)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| is_integration_binary(path))
        .max_by_key(|path| path.metadata().and_then(|m| m.modified()).ok())
}

fn is_integration_binary(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let Some(hash) = name.strip_prefix("integration-") else {
        return false;
    };
    hash.chars().all(|c| c.is_ascii_hexdigit())
        && path
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// How many tests `binary` marks as ignored, that is in the full tier.
fn full_tier_count(binary: &Path) -> Option<usize> {
    let out = Command::new(binary)
        .args(["--list", "--ignored", "--format", "terse"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| line.ends_with(": test"))
            .count(),
    )
}
