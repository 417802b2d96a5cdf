//! Writes the gradebook: `gradebook.csv` and `index.html` for the class,
//! and for each submission `NAME/report.txt`, `NAME/report.html` and
//! `NAME/report.json`.
//!
//! Everything a student controls (the directory's name, the server's
//! output, the bytes it answered) is escaped where it lands: HTML-escaped
//! in the pages, percent-encoded in links, quoted in the CSV (a leading
//! `=`, `+`, `-` or `@` gets a `'` so that no spreadsheet takes it for a
//! formula), control characters shown as `\xNN` in the text report.
//!
//! The CSV's header and status keys are English in every language (the
//! scripts that read it stay the same); the detail and the pages are in
//! the report's language. Files are written to a temporary name and
//! renamed, so a reader never sees half a gradebook; the class files are
//! rewritten after each submission, so an interrupted run leaves the rows
//! done so far.
//!
//! Cost: the class files are rewritten whole after each submission, which
//! is quadratic in the class's size (a few kilobytes a row: negligible for
//! a class of hundreds). Where it breaks: names that differ only in bytes
//! that are not UTF-8 show alike (the directories and links stay apart).

use std::fmt::Write as _;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::Context;
use serde_json::json;

use super::verdict::{Bug, CaseEntry, Row};
use super::words::Words;
use super::Class;
use crate::escape::printable;

/// Lines of a server's output shown under a case.
const OUTPUT_LINES: usize = 8;
/// Case ids shown under a bug.
const BUG_CASES_SHOWN: usize = 8;

/// The CSV's columns.
pub const CSV_HEADER: &str =
    "submission,status,passed,failed,skipped,not_run,limits,bugs,detail,seconds";

/// Writes `name` to `dir` through a temporary file and a rename.
fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, dir.join(name))
        .with_context(|| format!("writing {}", dir.join(name).display()))
}

/// Writes the class's `gradebook.csv` and `index.html`, rows sorted by
/// name.
pub fn write_class(class: &Class, rows: &[Row]) -> anyhow::Result<()> {
    let mut rows: Vec<&Row> = rows.iter().collect();
    rows.sort_by(|a, b| a.dir.as_bytes().cmp(b.dir.as_bytes()));
    write_atomic(&class.out_dir, "gradebook.csv", csv(&rows).as_bytes())?;
    write_atomic(&class.out_dir, "index.html", index(class, &rows).as_bytes())
}

/// Writes one submission's reports into `OUT_DIR/NAME/`.
pub fn write_submission(class: &Class, row: &Row) -> anyhow::Result<()> {
    let dir = class.out_dir.join(&row.dir);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = report_text(class, row);
    write_atomic(&dir, "report.txt", text.as_bytes())?;
    write_atomic(
        &dir,
        "report.html",
        report_html(class, row, &text).as_bytes(),
    )?;
    write_atomic(&dir, "report.json", report_json(row).as_bytes())
}

/// A CSV field: quoted when it holds a comma, a quote or a line break;
/// a leading formula character neutralised.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) || text.starts_with(' ') || text.ends_with(' ') {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn count_field(row: &Row, pick: fn(&super::verdict::Counts) -> usize) -> String {
    row.counts
        .as_ref()
        .map_or(String::new(), |c| pick(c).to_string())
}

/// `rule (N); rule (N)`.
fn bugs_field(bugs: &[Bug]) -> String {
    bugs.iter()
        .map(|b| format!("{} ({})", b.rule, b.cases.len()))
        .collect::<Vec<_>>()
        .join("; ")
}

fn csv(rows: &[&Row]) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for row in rows {
        let limits: Vec<&str> = row.limits.iter().map(|l| l.key()).collect();
        let fields = [
            csv_field(&printable(&row.name)),
            row.status.key().to_string(),
            count_field(row, |c| c.passed),
            count_field(row, |c| c.failed),
            count_field(row, |c| c.skipped),
            count_field(row, |c| c.not_run),
            limits.join(";"),
            csv_field(&bugs_field(&row.bugs)),
            csv_field(&printable(&row.detail)),
            format!("{:.1}", row.seconds),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// `text` safe inside HTML text and attribute values.
pub fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The bytes of a name percent-encoded for a relative link: everything
/// but `A-Z a-z 0-9 - . _ ~`.
pub fn percent(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em}\
table{border-collapse:collapse}th,td{border:1px solid #bbb;padding:.3em .5em;vertical-align:top;text-align:left}\
td.n{text-align:right}tr.ok td.s{background:#d8f5d8}tr.failed td.s{background:#fde9c8}\
tr.limit td.s,tr.timed-out td.s,tr.stopped td.s{background:#f9d0d0}tr.never-started td.s,tr.error td.s{background:#ddd}\
ul{margin:0;padding-left:1.2em}pre{white-space:pre-wrap}";

fn index(class: &Class, rows: &[&Row]) -> String {
    let w = &class.words;
    let title = format!("{} — {}", w.gradebook(), class.title);
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        w.code(),
        html(&title),
        html(&title)
    );
    let _ = writeln!(
        out,
        "<p>{}</p>\n<p>{}: {}</p>\n<p>{}</p>",
        html(&w.graded(rows.len(), &class.version)),
        html(w.sandbox()),
        html(&class.sandbox),
        html(&w.limits_line(&class.limits))
    );
    let _ = writeln!(
        out,
        "<table>\n<thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead>\n<tbody>",
        w.submission(),
        w.status(),
        w.passed(),
        w.failed(),
        w.skipped(),
        w.not_run(),
        w.limits(),
        w.bugs(),
        w.detail(),
        w.report()
    );
    for row in rows {
        let link = percent(row.dir.as_bytes());
        let limits: Vec<&str> = row.limits.iter().map(|&l| w.limit_label(l)).collect();
        let mut bugs = String::new();
        if !row.bugs.is_empty() {
            bugs.push_str("<ul>");
            for bug in &row.bugs {
                let _ = write!(
                    bugs,
                    "<li><code>{}</code> {} ({})</li>",
                    html(&bug.rule),
                    html(&bug.title),
                    html(&w.cases_count(bug.cases.len()))
                );
            }
            bugs.push_str("</ul>");
        }
        let count = |pick: fn(&super::verdict::Counts) -> usize| count_field(row, pick);
        let _ = writeln!(
            out,
            "<tr class=\"{}\"><td><a href=\"{link}/report.html\">{}</a></td><td class=\"s\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{bugs}</td><td>{}</td><td><a href=\"{link}/report.html\">html</a> <a href=\"{link}/report.txt\">txt</a> <a href=\"{link}/report.json\">json</a></td></tr>",
            row.status.key(),
            html(&row.name),
            html(w.status_label(row.status)),
            count(|c| c.passed),
            count(|c| c.failed),
            count(|c| c.skipped),
            count(|c| c.not_run),
            html(&limits.join(", ")),
            html(&row.detail),
        );
    }
    out.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    out
}

fn report_html(class: &Class, row: &Row, text: &str) -> String {
    let w = &class.words;
    let title = format!("{} — {}", row.name, w.status_label(row.status));
    format!(
        "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<p><a href=\"../index.html\">{}</a></p>\n<pre>{}</pre>\n</body>\n</html>\n",
        w.code(),
        html(&title),
        html(w.gradebook()),
        html(text)
    )
}

fn report_json(row: &Row) -> String {
    let limits: Vec<&str> = row.limits.iter().map(|l| l.key()).collect();
    let bugs: Vec<_> = row
        .bugs
        .iter()
        .map(|b| json!({"rule": b.rule, "section": b.section, "title": b.title, "cases": b.cases}))
        .collect();
    let counts = row.counts.map(|c| {
        json!({"passed": c.passed, "failed": c.failed, "skipped": c.skipped, "not_run": c.not_run})
    });
    let doc = json!({
        "submission": row.name,
        "status": row.status.key(),
        "summary": counts,
        "limits": limits,
        "bugs": bugs,
        "detail": row.detail,
        "seconds": row.seconds,
        "sandbox": row.stats,
        "messages": row.messages,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into()) + "\n"
}

/// The text report of one submission: its row, its bugs, every case, and
/// what the checker said.
fn report_text(class: &Class, row: &Row) -> String {
    let w = &class.words;
    let mut out = format!("hftp grade — {}\n\n", printable(&row.name));
    let counts = row.counts.map(|c| format!(" — {c}")).unwrap_or_default();
    let _ = writeln!(
        out,
        "{}: {}{counts}",
        w.status(),
        w.status_label(row.status)
    );
    if !row.detail.is_empty() {
        let _ = writeln!(out, "{}: {}", w.detail(), printable(&row.detail));
    }
    let limits: Vec<&str> = row.limits.iter().map(|&l| w.limit_label(l)).collect();
    let _ = writeln!(
        out,
        "{}: {}",
        w.limits(),
        if limits.is_empty() {
            w.none().to_string()
        } else {
            limits.join(", ")
        }
    );
    if let Some(stats) = &row.stats {
        let _ = writeln!(
            out,
            "{}: {}",
            w.peaks(),
            w.peak_line(stats.peak_tasks, stats.peak_rss, stats.peak_disk)
        );
    }
    let _ = writeln!(out, "{}: {:.1} s", w.time(), row.seconds);
    let _ = writeln!(out, "{}: {}", w.sandbox(), class.sandbox);
    let _ = writeln!(out, "{}", w.limits_line(&class.limits));
    if !row.bugs.is_empty() {
        let _ = writeln!(out, "\n{} ({}):", w.bugs(), row.bugs.len());
        for (i, bug) in row.bugs.iter().enumerate() {
            let _ = writeln!(
                out,
                "{:>3}. {} — {} ({})",
                i + 1,
                printable(&bug.rule),
                printable(&bug.title),
                w.cases_count(bug.cases.len())
            );
            let shown: Vec<&str> = bug
                .cases
                .iter()
                .take(BUG_CASES_SHOWN)
                .map(String::as_str)
                .collect();
            let more = bug.cases.len().saturating_sub(shown.len());
            let more = if more > 0 {
                format!(", … (+{more})")
            } else {
                String::new()
            };
            let _ = writeln!(out, "     {}{more}", shown.join(", "));
            if let Some([case, step, expected, got]) = &bug.example {
                let _ = writeln!(
                    out,
                    "     {} {}\n       {} {}\n       {} {}\n       {} {}",
                    w.reproduce(),
                    printable(case),
                    w.step(),
                    printable(step),
                    w.expected(),
                    printable(expected),
                    w.got(),
                    printable(got)
                );
            }
        }
    }
    if let Some(report) = &row.report {
        let _ = writeln!(out, "\n{}:", w.cases());
        for case in &report.cases {
            out.push_str(&case_text(case, w));
            out.push('\n');
        }
        let _ = writeln!(out, "\n{}", report.counts);
    }
    if !row.messages.trim().is_empty() {
        let _ = writeln!(out, "\n{}:", w.checker_said());
        for line in row.messages.lines() {
            let _ = writeln!(out, "  {}", printable(line));
        }
    }
    out.trim_end().to_string() + "\n"
}

/// One case, as `hftp check` prints it.
fn case_text(case: &CaseEntry, w: &Words) -> String {
    let head = format!("{} [§{}]", printable(&case.id), printable(&case.section));
    let mut text = match case.status.as_str() {
        "pass" => format!("PASS {head}"),
        "skip" => format!("SKIP {head}: {}", printable(&case.reason)),
        "not_run" => format!("NOT RUN {head}"),
        _ => {
            let mut text = format!(
                "FAIL {head}\n     {} {}\n     {} {}\n     {} {}\n     {} {}",
                w.requires(),
                printable(&case.requires),
                w.step(),
                printable(&case.step),
                w.expected(),
                printable(&case.expected),
                w.got(),
                printable(&case.got)
            );
            if !case.note.is_empty() {
                let _ = write!(text, "\n     → {}", printable(&case.note));
            }
            text
        }
    };
    if let Some(server) = &case.server {
        let what = if server.kind == "crashed" {
            w.crashed(&server.status)
        } else {
            w.hung(&server.probe)
        };
        let then = server.stop.clone().unwrap_or_else(|| w.restarted().into());
        let _ = write!(
            text,
            "\n     {} {}; {}",
            w.server(),
            printable(&what),
            printable(&then)
        );
        if !server.hint.is_empty() {
            let _ = write!(text, "\n     {}", printable(&server.hint));
        }
        let lines: Vec<&str> = server.output.lines().rev().take(OUTPUT_LINES).collect();
        if !lines.is_empty() {
            let _ = write!(text, "\n     {}", w.its_output());
            for line in lines.into_iter().rev() {
                let _ = write!(text, "\n       | {}", printable(line));
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_and_links_escape_everything_a_student_names() {
        assert_eq!(
            html(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(html("a\x1b[31mb"), "a\\x1b[31mb");
        assert_eq!(percent("a b/<ñ>".as_bytes()), "a%20b%2F%3C%C3%B1%3E");
        assert_eq!(percent(b"alice_1-x.y~"), "alice_1-x.y~");
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1"), "'-1");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
    }
}
