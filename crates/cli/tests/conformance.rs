//! The conformance suite (`hftp-check`) against the real `hftp serve`, one
//! test per concurrency model, the server running unprivileged so that the
//! permission (`199`) cases run too.
//!
//! Tier: quick.

use std::fs::{self, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::support::Server;
use hftp_check::{report, Config, Outcome, Summary};

per_model!(conformance);

fn conformance(model: &str) {
    // Readable and traversable by the unprivileged server.
    let scratch = tempfile::tempdir().expect("temp dir");
    fs::set_permissions(scratch.path(), Permissions::from_mode(0o755)).expect("chmod temp dir");
    let served = scratch.path().join("served");
    fs::create_dir(&served).expect("served dir");
    fs::set_permissions(&served, Permissions::from_mode(0o755)).expect("chmod served dir");

    let mut server = Server::builder(&served).model(model).unprivileged().start();
    let config = Config {
        addr: server.addr(),
        via: None,
        dir: Some(served),
        unprivileged_server: true,
        timeout: Duration::from_secs(5),
        wipe_dir: false,
    };
    let cases = hftp_check::cases::all();
    let selection: Vec<_> = cases.iter().collect();
    let results = hftp_check::run(&config, &selection, |_| {}).expect("suite runs");

    let problems: Vec<String> = results
        .iter()
        .filter(|r| r.outcome != Outcome::Pass)
        .map(report::text)
        .collect();
    assert!(
        server.is_running(),
        "server ({model}) died during the suite; stderr:\n{}",
        server.stderr()
    );
    assert!(
        problems.is_empty(),
        "model {model}: {}\n{}\n(every case must run and pass here)",
        Summary::of(&results),
        problems.join("\n")
    );
}
