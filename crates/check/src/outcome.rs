//! What running a case yields: pass, fail (with what was expected and what
//! came), or skip (with the reason).

use serde::Serialize;

/// A case's failure: the step that went wrong, what the spec requires and
/// what the server did instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub step: String,
    pub expected: String,
    pub got: String,
}

impl Failure {
    pub fn new(
        step: impl Into<String>,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        Failure {
            step: step.into(),
            expected: expected.into(),
            got: got.into(),
        }
    }
}

/// The verdict on one case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail(Failure),
    Skip { reason: String },
}

/// One case's report entry.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub id: &'static str,
    pub section: &'static str,
    pub expected: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub millis: u64,
}

/// Counts over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Summary {
    pub fn of(results: &[CaseResult]) -> Summary {
        let mut summary = Summary::default();
        for result in results {
            match result.outcome {
                Outcome::Pass => summary.passed += 1,
                Outcome::Fail(_) => summary.failed += 1,
                Outcome::Skip { .. } => summary.skipped += 1,
            }
        }
        summary
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}
