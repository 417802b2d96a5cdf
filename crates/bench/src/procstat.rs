//! What a run costs: the server's memory and CPU read from `/proc` (its
//! whole process tree, so that the fork model's children count), and the
//! generator's own CPU time.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde::Serialize;

/// The process `pid` and all its descendants.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        i += 1;
        let Ok(tasks) = fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(children) = fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            out.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// A `kB` field of `/proc/PID/status` or `smaps_rollup`, in KiB.
fn kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Memory of one process: (VmRSS, VmHWM, threads).
pub fn status(pid: u32) -> Option<(u64, u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some((
        kib_field(&text, "VmRSS")?,
        kib_field(&text, "VmHWM").unwrap_or(0),
        kib_field(&text, "Threads").unwrap_or(1),
    ))
}

/// Proportional set size of one process, in KiB.
pub fn pss(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    kib_field(&text, "Pss")
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU seconds of one process: its own plus those of reaped children.
fn cpu(pid: u32) -> Option<(f64, f64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14..=17 of stat(5) are utime stime cutime cstime; `rest` starts at field 3.
    let tick = clock_ticks();
    Some((
        (f.get(11)? + f.get(12)?) as f64 / tick,
        (f.get(13)? + f.get(14)?) as f64 / tick,
    ))
}

/// CPU seconds used by the tree of `pid` so far (children that exited and
/// were reaped count through the parent's `cutime`).
pub fn tree_cpu(pid: u32) -> f64 {
    let pids = tree(pid);
    let mut total = 0.0;
    for (i, p) in pids.iter().enumerate() {
        if let Some((own, reaped)) = cpu(*p) {
            total += own + if i == 0 { reaped } else { 0.0 };
        }
    }
    total
}

/// CPU seconds used by this process (all threads).
pub fn self_cpu() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Memory of a whole tree at one instant.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct TreeMemory {
    /// Sum of VmRSS over the tree, KiB.
    pub rss_kib: u64,
    /// Sum of Pss over the tree, KiB (only when asked for: it is costly).
    pub pss_kib: Option<u64>,
    pub processes: u64,
    pub threads: u64,
}

pub fn tree_memory(pid: u32, with_pss: bool) -> TreeMemory {
    let mut m = TreeMemory {
        pss_kib: with_pss.then_some(0),
        ..TreeMemory::default()
    };
    for p in tree(pid) {
        if let Some((rss, _, threads)) = status(p) {
            m.rss_kib += rss;
            m.processes += 1;
            m.threads += threads;
            if let (Some(total), Some(pss)) =
                (m.pss_kib.as_mut(), with_pss.then(|| pss(p)).flatten())
            {
                *total += pss;
            }
        }
    }
    m
}

/// What the server used during a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerUsage {
    pub pid: u32,
    /// Before the load started (after the connections were opened).
    pub start: TreeMemory,
    /// The largest sums seen while sampling every 50 ms.
    pub peak: TreeMemory,
    /// When the load stopped, before the connections were closed.
    pub end: TreeMemory,
    /// VmHWM of the main process at the end, KiB.
    pub main_hwm_kib: u64,
    /// CPU seconds of the tree during the run.
    pub cpu_s: f64,
}

/// Samples a server tree in the background.
pub struct Sampler {
    pid: u32,
    with_pss: bool,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<TreeMemory>>,
    start: TreeMemory,
    cpu_start: f64,
}

impl Sampler {
    /// Starts sampling; `None` when `pid` is not a running process.
    pub fn start(pid: u32, with_pss: bool) -> Option<Sampler> {
        status(pid)?;
        let start = tree_memory(pid, with_pss);
        let cpu_start = tree_cpu(pid);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::Builder::new()
            .name("bench-sampler".into())
            .spawn(move || {
                let mut peak = TreeMemory {
                    pss_kib: with_pss.then_some(0),
                    ..TreeMemory::default()
                };
                loop {
                    let m = tree_memory(pid, with_pss);
                    peak.rss_kib = peak.rss_kib.max(m.rss_kib);
                    peak.processes = peak.processes.max(m.processes);
                    peak.threads = peak.threads.max(m.threads);
                    if let (Some(p), Some(x)) = (peak.pss_kib.as_mut(), m.pss_kib) {
                        *p = (*p).max(x);
                    }
                    if flag.load(Ordering::Relaxed) {
                        return peak;
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            })
            .ok()?;
        Some(Sampler {
            pid,
            with_pss,
            stop,
            handle: Some(handle),
            start,
            cpu_start,
        })
    }

    pub fn finish(mut self) -> ServerUsage {
        let end = tree_memory(self.pid, self.with_pss);
        let cpu_s = (tree_cpu(self.pid) - self.cpu_start).max(0.0);
        self.stop.store(true, Ordering::Relaxed);
        let mut peak = self
            .handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        for m in [self.start, end] {
            peak.rss_kib = peak.rss_kib.max(m.rss_kib);
            peak.processes = peak.processes.max(m.processes);
            peak.threads = peak.threads.max(m.threads);
            if let (Some(p), Some(x)) = (peak.pss_kib.as_mut(), m.pss_kib) {
                *p = (*p).max(x);
            }
        }
        let main_hwm_kib = status(self.pid).map(|s| s.1).unwrap_or(0);
        ServerUsage {
            pid: self.pid,
            start: self.start,
            peak,
            end,
            main_hwm_kib,
            cpu_s,
        }
    }
}

/// Raises this process's soft limit on descriptors to the hard limit.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
        lim.rlim_cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        let (rss, hwm, threads) = status(me).unwrap();
        assert!(rss > 0 && hwm >= rss && threads >= 1);
        assert!(tree(me).contains(&me));
        assert!(tree_cpu(me) >= 0.0);
        assert!(tree_memory(me, true).pss_kib.unwrap() > 0);
    }
}
