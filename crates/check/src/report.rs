//! Renders results: text (one line per passing case, details for failures)
//! or JSON.

use serde::Serialize;

use crate::case::Case;
use crate::outcome::{CaseResult, Outcome, Summary};

/// The text report of one case: one line when it passed or was skipped, the
/// requirement, the step, what was expected and what came when it failed.
pub fn text(result: &CaseResult) -> String {
    let head = format!("{} [§{}]", result.id, result.section);
    match &result.outcome {
        Outcome::Pass => format!("PASS {head}"),
        Outcome::Skip { reason } => format!("SKIP {head}: {reason}"),
        Outcome::Fail(failure) => format!(
            "FAIL {head}\n     requires: {}\n     step:     {}\n     expected: {}\n     got:      {}",
            result.expected, failure.step, failure.expected, failure.got
        ),
    }
}

/// The whole run as one JSON document: `{"cases": [...], "summary": {...}}`.
pub fn json(results: &[CaseResult]) -> String {
    #[derive(Serialize)]
    struct Document<'a> {
        cases: &'a [CaseResult],
        summary: Summary,
    }
    serde_json::to_string_pretty(&Document {
        cases: results,
        summary: Summary::of(results),
    })
    .expect("results serialize")
}

/// The catalogue as JSON: `[{"id", "section", "expected", "needs"}, ...]`.
pub fn list_json(cases: &[&Case]) -> String {
    let entries: Vec<_> = cases
        .iter()
        .map(|c| serde_json::json!({"id": c.id, "section": c.section, "expected": c.expected, "needs": c.needs()}))
        .collect();
    serde_json::to_string_pretty(&entries).expect("catalogue serializes")
}
