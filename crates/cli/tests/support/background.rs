//! An `hftp` client command (`hftp get ...`) run in the background by a
//! test, its standard error collected line by line, so that the test can
//! wait for the client's own progress lines (a real event) before it kills
//! a server under it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const HFTP: &str = env!("CARGO_BIN_EXE_hftp");
/// Far beyond any download of the tests; only a client that hangs reaches it.
const WATCHDOG: Duration = Duration::from_secs(180);

/// An `hftp get` running in the background, its standard error collected.
pub struct Background {
    child: Child,
    stderr: Arc<Mutex<String>>,
    lines: mpsc::Receiver<String>,
}

impl Background {
    pub fn start(args: &[&str], cwd: &Path) -> Background {
        let mut command = Command::new(HFTP);
        command
            .args(args)
            .current_dir(cwd)
            .env_remove("HFTP_PROXY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = super::tied::spawn(command).expect("start hftp get");
        let pipe = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut all = sink.lock().expect("lock");
                all.push_str(&line);
                all.push('\n');
                drop(all);
                let _ = tx.send(line);
            }
        });
        Background {
            child,
            stderr,
            lines,
        }
    }

    /// Waits for the client's first progress line: bytes have arrived.
    pub fn wait_progress(&mut self) {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(" of ") && line.contains("%) after") => return,
                Ok(_) => {}
                Err(_) => panic!(
                    "no progress line from the client; stderr:\n{}",
                    self.stderr()
                ),
            }
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has not exited yet.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// Waits for the client to exit (killed, and the test failed, after
    /// the watchdog) and returns its exit code and standard error.
    pub fn finish(mut self) -> (i32, String) {
        let deadline = Instant::now() + WATCHDOG;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("hftp get did not end; stderr:\n{}", self.stderr());
            }
            // Polling, bounded by the deadline: not a stand-in for synchronisation.
            thread::sleep(Duration::from_millis(10));
        };
        // The reader thread ends with the pipe; what it has is complete
        // once the channel is closed.
        while self.lines.recv_timeout(WATCHDOG).is_ok() {}
        (status.code().expect("exited normally"), self.stderr())
    }
}

/// Runs `hftp ARGS` in `cwd` to completion (no proxy from the environment,
/// no standard input).
pub fn hftp(args: &[&str], cwd: &Path) -> Output {
    Command::new(HFTP)
        .args(args)
        .current_dir(cwd)
        .env_remove("HFTP_PROXY")
        .stdin(Stdio::null())
        .output()
        .expect("run hftp")
}
