//! The text report, for people: one line per passing or not-run case, one
//! per reason cases were skipped for, the requirement, step, expectation and answer of a failing one,
//! what happened to the server when it crashed or hung, and a closing
//! summary per spec section.

use super::{by_section, stop};
use crate::diagnose::Bug;
use crate::escape::printable;
use crate::i18n::tr;
use crate::outcome::{CaseResult, Outcome, ServerEvent, Trouble};

/// Lines of a crashed server's output shown under its case.
const OUTPUT_LINES: usize = 8;

/// One case: one line when it passed, was skipped or not run; the
/// requirement, the step, what was expected and what came when it failed;
/// then what became of the server, if anything did.
pub fn case(result: &CaseResult) -> String {
    case_of_bug(result, None)
}

/// [`case`], with a failed case's line saying which bug of the list
/// explains it (see [`bugs`]).
pub fn case_of_bug(result: &CaseResult, bug: Option<usize>) -> String {
    let head = format!("{} [§{}]", result.id, result.section);
    let t = tr();
    let mut text = match &result.outcome {
        Outcome::Pass if result.retried => format!("PASS {head} {}", t.passed_slowly()),
        Outcome::Pass => format!("PASS {head}"),
        Outcome::Skip { reason } => format!("SKIP {head}: {reason}"),
        // The reason is the same for every case after the stop, and said
        // once under the case where the run stopped.
        Outcome::NotRun { .. } => format!("NOT RUN {head}"),
        Outcome::Fail(failure) => format!(
            "FAIL {head}\n     {} {}\n     {} {}\n     {} {}\n     {} {}",
            t.label_requires(),
            result.expected,
            t.label_step(),
            failure.step,
            t.label_expected(),
            failure.expected,
            t.label_got(),
            failure.got
        ),
    };
    if let Outcome::Fail(failure) = &result.outcome {
        if let Some(note) = &failure.note {
            text.push_str(&format!("\n     → {note}"));
        }
        if let Some(number) = bug {
            text.push_str(&format!("\n     → {}", t.caused_by(number)));
        }
    }
    if let Some(event) = &result.server {
        text.push_str(&server_lines(event));
    }
    text
}

/// Ids shown under a bug.
const BUG_CASES_SHOWN: usize = 6;

/// The bugs behind the failed cases, most cases first, each with the ids
/// it explains and its smallest reproduction; empty when nothing failed.
pub fn bugs(bugs: &[Bug]) -> String {
    if bugs.is_empty() {
        return String::new();
    }
    let t = tr();
    let mut text = format!("{}\n", t.bugs_heading(bugs.len()));
    for (i, bug) in bugs.iter().enumerate() {
        text.push_str(&t.bug_line(i + 1, &bug.title, bug.cases.len()));
        text.push('\n');
        let shown: Vec<&str> = bug.cases.iter().take(BUG_CASES_SHOWN).copied().collect();
        let more = bug.cases.len() - shown.len();
        text.push_str(&format!("   {}", shown.join(", ")));
        if more > 0 {
            text.push_str(&format!(", … (+{more})"));
        }
        text.push('\n');
        let ex = &bug.example;
        text.push_str(&format!(
            "   {} {}\n     {} {}\n     {} {}\n     {} {}\n",
            t.label_reproduce(),
            ex.case,
            t.label_step(),
            ex.step,
            t.label_expected(),
            ex.expected,
            t.label_got(),
            ex.got
        ));
    }
    text.push('\n');
    text
}

fn server_lines(event: &ServerEvent) -> String {
    let t = tr();
    let then = match &event.stop {
        None => t.restarted(),
        Some(stop) => stop.clone(),
    };
    let mut text = format!("\n     {} {}; {then}", t.label_server(), event.describe());
    if let Trouble::Hung {
        held,
        abandoned_by,
        hint,
        ..
    } = &event.trouble
    {
        if !hint.is_empty() {
            let by: Vec<String> = abandoned_by
                .iter()
                .map(|(id, n)| format!("{id} ({n})"))
                .collect();
            text.push_str(&format!("\n     {}", t.hang_context(*held, &by.join(", "))));
            text.push_str(&format!("\n     {hint}"));
        }
    }
    // What the server printed last, whether it crashed or hung.
    let (Trouble::Crashed { output, .. } | Trouble::Hung { output, .. }) = &event.trouble;
    let lines: Vec<&str> = output.lines().rev().take(OUTPUT_LINES).collect();
    if !lines.is_empty() {
        text.push_str(&format!("\n     {}", t.log_tail()));
        for line in lines.into_iter().rev() {
            text.push_str(&format!("\n       | {}", printable(line)));
        }
    }
    text
}

/// Ids shown in the line of several cases skipped for one reason.
const SKIPPED_SHOWN: usize = 3;

/// The skipped cases, one line per reason: a run without the served
/// directory skips dozens of cases for the same reason, and one line
/// says why and how to run them. A reason with a single case gets that
/// case's own line.
pub fn skipped(results: &[CaseResult]) -> String {
    let mut reasons: Vec<(&str, Vec<&CaseResult>)> = Vec::new();
    for result in results {
        if let Outcome::Skip { reason } = &result.outcome {
            match reasons.iter_mut().find(|(r, _)| r == reason) {
                Some((_, cases)) => cases.push(result),
                None => reasons.push((reason, vec![result])),
            }
        }
    }
    let mut text = String::new();
    for (reason, cases) in reasons {
        if let [one] = cases[..] {
            text.push_str(&case(one));
        } else {
            let first: Vec<&str> = cases.iter().take(SKIPPED_SHOWN).map(|c| c.id).collect();
            let more = cases.len() - first.len();
            text.push_str(&tr().skipped_cases(cases.len(), &first.join(", "), more));
            text.push_str(": ");
            text.push_str(reason);
        }
        text.push('\n');
    }
    text
}

/// What follows the cases: the cases that crashed or hung the server, the
/// counts per section, and why the run stopped, if it did (the final
/// `N passed, ...` line is the caller's).
pub fn closing(results: &[CaseResult]) -> String {
    let t = tr();
    let mut text = String::new();
    let troubled: Vec<_> = results
        .iter()
        .filter_map(|r| r.server.as_ref().map(|event| (r.id, event)))
        .collect();
    if !troubled.is_empty() {
        text.push_str(t.troubled_cases());
        text.push('\n');
        for (id, event) in troubled {
            let word = match event.trouble {
                Trouble::Crashed { .. } => t.crashed_word(),
                Trouble::Hung { .. } => t.hung_word(),
            };
            text.push_str(&format!("  {id}: {word} ({})\n", detail(event)));
        }
    }
    text.push_str(t.by_section());
    text.push('\n');
    for section in by_section(results) {
        let s = section.summary;
        text.push_str(&format!(
            "  §{:<3} {}\n",
            section.section,
            t.section_counts(s.passed, s.failed, s.skipped, s.not_run)
        ));
    }
    if let Some(stop) = stop(results) {
        text.push_str(stop);
        text.push('\n');
    }
    text
}

fn detail(event: &ServerEvent) -> &str {
    match &event.trouble {
        Trouble::Crashed { status, .. } => status,
        Trouble::Hung { probe, .. } => probe,
    }
}
