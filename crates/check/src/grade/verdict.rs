//! From what came out of a sandbox (the checker's JSON on stdout, its
//! messages and pid 1's [`Stats`] on stderr, the exit code) to a row of
//! the gradebook: a status, the counts, the limits reached, the bugs by
//! rule and a one-line detail.
//!
//! The bugs come from the checker's `bugs` array when it has one (rule,
//! title, cases); a checker without it gets its failed cases grouped by
//! spec section instead, so the gradebook reads the same either way.
//!
//! Cost: one parse of the checker's JSON per submission (its size grows
//! with the server's output kept per crash, a few kilobytes each).
//!
//! Where it breaks: a limit is said "reached" from evidence, not from the
//! kernel's own count (RLIMIT_* keep none): the peak of tasks sampled every
//! 20 ms equal to `--procs`, the tmpfs within a little of `--disk`, or the
//! server's own words (`MemoryError`, `No space left on device`, SIGXCPU).
//! A fork bomb that dies and forks again between two samples may peak
//! unseen below the limit.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::sandbox::{Stats, MARKER};
use super::words::Words;
use super::{Limit, Limits, Status};

/// What the checker reported, as read back from its JSON.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub cases: Vec<CaseEntry>,
    pub counts: Counts,
    /// `None` when the checker has no `bugs` array (an older one).
    pub bugs: Option<Vec<Bug>>,
    pub stopped: Option<String>,
}

/// The four counts of a run, as the checker keeps them (its `Display` is
/// the checker's own last line).
pub type Counts = crate::outcome::Summary;

/// One case of the report.
#[derive(Clone, Debug, Default)]
pub struct CaseEntry {
    pub id: String,
    pub section: String,
    /// What the spec requires (the case's `expected`).
    pub requires: String,
    /// `pass`, `fail`, `skip` or `not_run`.
    pub status: String,
    pub step: String,
    /// What a failed step expected (the failure's `expected`).
    pub expected: String,
    pub got: String,
    pub note: String,
    pub reason: String,
    pub server: Option<ServerEntry>,
}

/// What happened to the server during a case.
#[derive(Clone, Debug, Default)]
pub struct ServerEntry {
    /// `crashed` or `hung`.
    pub kind: String,
    pub status: String,
    pub probe: String,
    pub output: String,
    pub hint: String,
    pub stop: Option<String>,
}

/// One bug: a rule of the spec broken, with the cases it explains.
#[derive(Clone, Debug, Default)]
pub struct Bug {
    pub rule: String,
    pub section: String,
    pub title: String,
    pub cases: Vec<String>,
    /// Its smallest reproduction: case, step, expected, got.
    pub example: Option<[String; 4]>,
}

/// One submission's row.
#[derive(Clone, Debug)]
pub struct Row {
    /// The directory's name, as it is (not necessarily UTF-8).
    pub dir: std::ffi::OsString,
    /// The name for display (lossy).
    pub name: String,
    pub status: Status,
    /// `None` when the checker gave no results (never started, timed out).
    pub counts: Option<Counts>,
    pub limits: Vec<Limit>,
    pub bugs: Vec<Bug>,
    pub detail: String,
    pub seconds: f64,
    pub stats: Option<Stats>,
    pub report: Option<Report>,
    /// The checker's messages on stderr (crashes, hangs, errors).
    pub messages: String,
}

/// An object's entries in order, duplicates kept: a failed case's JSON
/// holds `expected` twice (the requirement, then what the step expected),
/// which a map would fold into one.
struct Ordered(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        d.deserialize_map(Entries)
    }
}

#[derive(Deserialize)]
struct Document {
    cases: Vec<Ordered>,
    #[serde(default)]
    summary: Value,
    #[serde(default)]
    bugs: Option<Vec<Value>>,
    #[serde(default)]
    stopped: Option<String>,
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Reads the checker's JSON document; `None` if it is not one.
pub fn parse_report(json: &[u8]) -> Option<Report> {
    let doc: Document = serde_json::from_slice(json).ok()?;
    let count = |name: &str| {
        let n = doc.summary.get(name).and_then(Value::as_u64).unwrap_or(0);
        usize::try_from(n).unwrap_or(usize::MAX)
    };
    let counts = Counts {
        passed: count("passed"),
        failed: count("failed"),
        skipped: count("skipped"),
        not_run: count("not_run"),
    };
    let cases = doc.cases.iter().map(case_entry).collect();
    let bugs = doc.bugs.map(|bugs| {
        bugs.iter()
            .map(|b| Bug {
                rule: text(b.get("rule")),
                section: text(b.get("section")),
                title: text(b.get("title")),
                cases: b
                    .get("cases")
                    .and_then(Value::as_array)
                    .map(|ids| ids.iter().map(|id| text(Some(id))).collect())
                    .unwrap_or_default(),
                example: b
                    .get("example")
                    .map(|ex| ["case", "step", "expected", "got"].map(|key| text(ex.get(key)))),
            })
            .collect()
    });
    Some(Report {
        cases,
        counts,
        bugs,
        stopped: doc.stopped,
    })
}

fn case_entry(entries: &Ordered) -> CaseEntry {
    let mut case = CaseEntry::default();
    let mut expected_seen = 0;
    for (key, value) in &entries.0 {
        match key.as_str() {
            "id" => case.id = text(Some(value)),
            "section" => case.section = text(Some(value)),
            "requires" => case.requires = text(Some(value)),
            // Older checkers wrote the requirement as a first `expected`.
            "expected" if !entries.0.iter().any(|(k, _)| k == "requires") => {
                if expected_seen == 0 {
                    case.requires = text(Some(value));
                } else {
                    case.expected = text(Some(value));
                }
                expected_seen += 1;
            }
            "expected" => case.expected = text(Some(value)),
            "status" => case.status = text(Some(value)),
            "step" => case.step = text(Some(value)),
            "got" => case.got = text(Some(value)),
            "note" => case.note = text(Some(value)),
            "reason" => case.reason = text(Some(value)),
            "server" if value.is_object() => {
                case.server = Some(ServerEntry {
                    kind: text(value.get("kind")),
                    status: text(value.get("status")),
                    probe: text(value.get("probe")),
                    output: text(value.get("output")),
                    hint: text(value.get("hint")),
                    stop: value.get("stop").and_then(Value::as_str).map(String::from),
                });
            }
            _ => {}
        }
    }
    case
}

/// The bugs of a report: the checker's own list, or the failed cases
/// grouped by section, most cases first.
pub fn bugs_of(report: &Report, words: &Words) -> Vec<Bug> {
    if let Some(bugs) = &report.bugs {
        return bugs.clone();
    }
    let mut by_section: Vec<Bug> = Vec::new();
    for case in report.cases.iter().filter(|c| c.status == "fail") {
        match by_section.iter_mut().find(|b| b.section == case.section) {
            Some(bug) => bug.cases.push(case.id.clone()),
            None => by_section.push(Bug {
                rule: format!("§{}", case.section),
                section: case.section.clone(),
                title: words.section_bug(&case.section),
                cases: vec![case.id.clone()],
                example: Some([
                    case.id.clone(),
                    case.step.clone(),
                    case.expected.clone(),
                    case.got.clone(),
                ]),
            }),
        }
    }
    by_section.sort_by_key(|b| std::cmp::Reverse(b.cases.len()));
    by_section
}

/// Splits a sandbox's stderr into the checker's messages and pid 1's
/// stats (its last marker line: pid 1 writes it after every other process
/// of the namespace is dead).
pub fn split_stderr(stderr: &str) -> (String, Option<Stats>) {
    let mut messages = String::new();
    let mut stats = None;
    for line in stderr.lines() {
        match line.strip_prefix(MARKER) {
            Some(json) => stats = serde_json::from_str(json).ok(),
            None => {
                messages.push_str(line);
                messages.push('\n');
            }
        }
    }
    (messages, stats)
}

/// What the checker said when it could not start the server, made short:
/// the long wrapped command line is left out.
pub fn without_command(messages: &str) -> String {
    messages
        .lines()
        .map(|line| match line.find(": sh -c ") {
            Some(at) => {
                let rest = &line[at..];
                let tail = rest.find("; its last output:").map_or("", |i| &rest[i..]);
                format!("{}{tail}", &line[..at])
            }
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The row of one submission.
pub struct Judged<'a> {
    pub dir: std::ffi::OsString,
    pub stdout: &'a [u8],
    pub stderr: &'a str,
    pub seconds: f64,
    pub limits: &'a Limits,
    pub words: &'a Words,
}

pub fn judge(input: Judged) -> Row {
    let Judged {
        dir,
        stdout,
        stderr,
        seconds,
        limits,
        words,
    } = input;
    let (messages, stats) = split_stderr(stderr);
    let mut row = Row {
        name: dir.to_string_lossy().into_owned(),
        dir,
        status: Status::Error,
        counts: None,
        limits: Vec::new(),
        bugs: Vec::new(),
        detail: String::new(),
        seconds,
        stats: stats.clone(),
        report: parse_report(stdout),
        messages: without_command(&messages),
    };
    let Some(stats) = stats else {
        let last = messages.lines().last().unwrap_or("it ended without a word");
        row.detail = words.sandbox_failed(last);
        return row;
    };
    if let Some(error) = &stats.setup_error {
        row.detail = if stats.too_big {
            words.too_big(limits.disk)
        } else {
            words.sandbox_failed(error)
        };
        return row;
    }
    row.limits = limits_reached(&stats, row.report.as_ref(), &messages, limits);
    if let Some(report) = &row.report {
        row.counts = Some(report.counts);
        row.bugs = bugs_of(report, words);
    }
    let mut detail = Vec::new();
    row.status = if stats.timed_out {
        detail.push(words.timed_out(limits.time.as_secs()));
        Status::TimedOut
    } else {
        match (stats.check_exit, &row.report) {
            (Some(0), Some(_)) => Status::Ok,
            (Some(1), Some(_)) => Status::Failed,
            (Some(3), Some(report)) => {
                detail.extend(report.stopped.clone());
                Status::Stopped
            }
            (Some(2), _) => match never_started(&messages, &stats, words) {
                Some(why) => {
                    detail.push(why);
                    Status::NeverStarted
                }
                None if messages.contains("does not answer") => {
                    detail.push(words.never_answered());
                    Status::NeverStarted
                }
                None => {
                    let first = messages
                        .lines()
                        .find(|l| l.starts_with("hftp: "))
                        .unwrap_or("exit status 2");
                    detail.push(words.checker_failed(&without_command(first)));
                    Status::Error
                }
            },
            (code, _) => {
                let how = match (code, stats.check_signal) {
                    (_, Some(signal)) => format!("killed by signal {signal}"),
                    (Some(code), None) => format!("exit status {code}, no report"),
                    (None, None) => "no exit status".into(),
                };
                detail.push(words.checker_failed(&how));
                Status::Error
            }
        }
    };
    // A limit explains the rest (a fork bomb's server that never answers,
    // a disk filler's that stops): it comes first, but for the clock.
    if !row.limits.is_empty() && row.status != Status::TimedOut {
        row.status = Status::Limit;
    }
    let mut sentences: Vec<String> = row
        .limits
        .iter()
        .map(|&l| words.limit_sentence(l, limits))
        .collect();
    sentences.extend(detail);
    row.detail = sentences.join("; ");
    row
}

/// Why the server never started, when that is why the checker gave up
/// (exit code 2): it exited first, or it did not listen on its port (and
/// maybe listened on another).
fn never_started(messages: &str, stats: &Stats, words: &Words) -> Option<String> {
    let line = messages
        .lines()
        .find(|l| l.contains("before listening on") || l.contains("did not listen on"))?;
    let port = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse::<u16>().ok());
    let mut why = if let Some(start) = line.find("exited (") {
        let rest = &line[start + "exited (".len()..];
        let how = rest.split(") before listening").next().unwrap_or(rest);
        words.exited_before_listening(how)
    } else {
        words.did_not_listen(port)
    };
    let others: Vec<String> = stats
        .listening
        .iter()
        .filter(|&&p| Some(p) != port)
        .map(u16::to_string)
        .collect();
    if !others.is_empty() {
        why.push_str(&format!(
            "; {}",
            words.listened_elsewhere(&others.join(", "))
        ));
    }
    // The server's last word (its traceback's last line, say).
    let output: Vec<&str> = messages
        .lines()
        .skip_while(|l| !l.contains("its last output:"))
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if let Some(last) = output.last() {
        why.push_str(&format!(": {last}"));
    }
    Some(why)
}

/// Substrings of a server's output that say it hit a limit.
const SAID: [(Limit, &str); 9] = [
    (Limit::Memory, "MemoryError"),
    (Limit::Memory, "Cannot allocate memory"),
    (Limit::Memory, "std::bad_alloc"),
    (Limit::Disk, "No space left on device"),
    (Limit::Disk, "File too large"),
    (Limit::Processes, "can't start new thread"),
    (Limit::Cpu, "SIGXCPU"),
    (Limit::Cpu, "killed by signal 24"),
    (Limit::Cpu, "CPU time limit exceeded"),
];

/// The limits a submission reached, by the evidence pid 1 sampled and the
/// words of its server (see the module doc).
pub fn limits_reached(
    stats: &Stats,
    report: Option<&Report>,
    messages: &str,
    limits: &Limits,
) -> Vec<Limit> {
    let mut found = Vec::new();
    if stats.peak_tasks >= u64::from(limits.procs) {
        found.push(Limit::Processes);
    }
    let slack = (limits.disk / 16).min(1 << 20);
    if stats.inodes_full || stats.peak_disk.saturating_add(slack) >= limits.disk {
        found.push(Limit::Disk);
    }
    let mut said = String::from(messages);
    if let Some(report) = report {
        for server in report.cases.iter().filter_map(|c| c.server.as_ref()) {
            said.push_str(&server.status);
            said.push('\n');
            said.push_str(&server.output);
            said.push('\n');
        }
    }
    for (limit, words) in SAID {
        if said.contains(words) && !found.contains(&limit) {
            found.push(limit);
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Lang;
    use std::time::Duration;

    fn limits() -> Limits {
        Limits {
            mem: 1 << 30,
            procs: 32,
            disk: 64 << 20,
            time: Duration::from_secs(60),
        }
    }

    fn stats_line(stats: &Stats) -> String {
        format!("{MARKER}{}\n", serde_json::to_string(stats).unwrap())
    }

    #[test]
    fn a_failed_case_keeps_both_expecteds() {
        let json =
            br#"{"cases": [{"id": "a.b", "section": "3", "expected": "REQ", "status": "fail",
            "step": "S", "expected": "EXP", "got": "GOT", "kind": "mismatch", "millis": 1}],
            "summary": {"passed": 0, "failed": 1, "skipped": 0, "not_run": 0},
            "sections": [], "stopped": null}"#;
        let report = parse_report(json).unwrap();
        assert_eq!(report.cases[0].requires, "REQ");
        assert_eq!(report.cases[0].expected, "EXP");
        assert!(report.bugs.is_none());
        let bugs = bugs_of(&report, &Words::new(Lang::En));
        assert_eq!(bugs[0].rule, "§3");
        assert_eq!(bugs[0].cases, ["a.b"]);
    }

    #[test]
    fn a_server_that_listens_elsewhere_is_told() {
        let stats = Stats {
            check_exit: Some(2),
            listening: vec![19500],
            ..Stats::default()
        };
        let stderr = format!(
            "hftp: the server command did not listen on 127.0.0.1:40123 within 3.0 s (--start-timeout): sh -c 'exec env -i x'; its last output:\n    listening on 19500\n{}",
            stats_line(&stats)
        );
        let row = judge(Judged {
            dir: "bob".into(),
            stdout: b"",
            stderr: &stderr,
            seconds: 1.0,
            limits: &limits(),
            words: &Words::new(Lang::En),
        });
        assert_eq!(row.status, Status::NeverStarted);
        assert!(row.detail.contains("(40123)"), "{}", row.detail);
        assert!(row.detail.contains("another port: 19500"), "{}", row.detail);
        assert!(
            row.detail.ends_with(": listening on 19500"),
            "{}",
            row.detail
        );
        assert!(!row.messages.contains("env -i"), "{}", row.messages);
    }

    #[test]
    fn limits_come_from_peaks_and_words() {
        let stats = Stats {
            peak_tasks: 32,
            peak_disk: (64 << 20) - 4096,
            ..Stats::default()
        };
        let found = limits_reached(&stats, None, "MemoryError\n", &limits());
        assert_eq!(found, [Limit::Processes, Limit::Memory, Limit::Disk]);
        assert!(limits_reached(&Stats::default(), None, "", &limits()).is_empty());
    }
}
