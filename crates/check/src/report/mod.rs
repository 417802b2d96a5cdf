//! Renders results: `text` for people (one line per passing case, details
//! for failures, a summary per spec section), `json` for programs and
//! `junit` (JUnit XML) for CI graders.

use serde::Serialize;

use crate::case::Case;
use crate::outcome::{CaseResult, Summary};

pub mod json;
pub mod junit;
pub mod text;

/// The whole run as one JSON document (see [`json::document`]).
pub use self::json::document as json;
/// The text report of one case (see [`text::case`]).
pub use self::text::case as text;

/// One spec section's counts.
#[derive(Clone, Debug, Serialize)]
pub struct SectionSummary {
    pub section: &'static str,
    #[serde(flatten)]
    pub summary: Summary,
}

/// Counts per spec section, in the spec's order (`1`, `2`, …, `10`).
pub fn by_section(results: &[CaseResult]) -> Vec<SectionSummary> {
    let mut sections: Vec<&'static str> = results.iter().map(|r| r.section).collect();
    sections.sort_by_key(|s| section_key(s));
    sections.dedup();
    sections
        .into_iter()
        .map(|section| SectionSummary {
            section,
            summary: Summary::of(results.iter().filter(|r| r.section == section)),
        })
        .collect()
}

/// `4.2` → `[4, 2]`, so that `10` sorts after `9`.
fn section_key(section: &str) -> Vec<u32> {
    section
        .split('.')
        .map(|part| part.parse().unwrap_or(u32::MAX))
        .collect()
}

/// Why the run stopped early, if it did.
pub fn stop(results: &[CaseResult]) -> Option<&str> {
    results
        .iter()
        .find_map(|r| r.server.as_ref().and_then(|event| event.stop.as_deref()))
}

/// The catalogue as JSON: `[{"id", "section", "expected", "needs"}, ...]`.
pub fn list_json(cases: &[&Case]) -> String {
    let entries: Vec<_> = cases
        .iter()
        .map(|c| serde_json::json!({"id": c.id, "section": c.section, "expected": c.title(), "needs": c.needs()}))
        .collect();
    serde_json::to_string_pretty(&entries).expect("catalogue serializes")
}
