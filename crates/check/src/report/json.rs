//! The JSON report: the bugs behind the failures (most cases first), every
//! case, the counts, the counts per section, and why the run stopped early
//! (if it did).

use serde::Serialize;

use super::{by_section, stop, SectionSummary};
use crate::diagnose::{bugs, Bug};
use crate::outcome::{CaseResult, Summary};

/// The whole run as one JSON document:
/// `{"bugs": [...], "cases": [...], "summary": {...}, "sections": [...],
/// "stopped": null}`; each bug is `{"rule", "section", "title", "cases",
/// "example"}`.
pub fn document(results: &[CaseResult]) -> String {
    #[derive(Serialize)]
    struct Document<'a> {
        bugs: Vec<Bug>,
        cases: &'a [CaseResult],
        summary: Summary,
        sections: Vec<SectionSummary>,
        stopped: Option<&'a str>,
    }
    serde_json::to_string_pretty(&Document {
        bugs: bugs(results),
        cases: results,
        summary: Summary::of(results),
        sections: by_section(results),
        stopped: stop(results),
    })
    .expect("results serialize")
}
