//! What running a case yields: pass, fail (with what was expected and what
//! came), skip (with the reason) or not run (the run stopped before it), and
//! what became of the server under test during the case.

use serde::Serialize;

use crate::i18n::tr;

/// A case's failure: the step that went wrong, what the spec requires and
/// what the server did instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub step: String,
    pub expected: String,
    pub got: String,
    /// What kind of wrong: a wrong answer, or slow, or extra bytes...
    pub kind: FailKind,
    /// What a second look found (the same request with the file present,
    /// say), to tell the cause apart from the symptom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// How a case failed, so that "slow" is reported apart from "wrong".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailKind {
    /// Bytes other than the spec's.
    Mismatch,
    /// Bytes after a complete answer that no request asked for.
    ExtraBytes,
    /// Nothing (more) came within the wait.
    Timeout,
    /// Bytes kept coming, too slowly to finish within the wait.
    Trickle,
    /// The server closed or reset the connection too early.
    Closed,
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
            kind: FailKind::Mismatch,
            note: None,
        }
    }

    /// The same failure, of kind `kind`.
    pub fn kind(mut self, kind: FailKind) -> Self {
        self.kind = kind;
        self
    }

    /// Whether the answer was slow rather than wrong.
    pub fn is_slow(&self) -> bool {
        matches!(self.kind, FailKind::Timeout | FailKind::Trickle)
    }
}

/// The verdict on one case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail(Failure),
    Skip {
        reason: String,
    },
    /// The run stopped before this case (the server stopped answering).
    NotRun {
        reason: String,
    },
}

/// What the server under test did during a case, when it did not simply
/// keep answering.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trouble {
    /// The server process exited (only seen when the checker started it).
    Crashed {
        /// How it ended: `exit status 1`, `killed by signal 11 (SIGSEGV)`.
        status: String,
        /// The end of what it printed, to show its traceback.
        output: String,
    },
    /// A fresh connection got no answer to a short request after the case.
    Hung {
        /// What the probe saw.
        probe: String,
        /// The end of what it printed (only when the checker started it).
        #[serde(skip_serializing_if = "String::is_empty")]
        output: String,
        /// Connections the checker held open at that moment.
        held: usize,
        /// Earlier cases that left connections without `quit`, with how
        /// many, most recent last.
        abandoned_by: Vec<(&'static str, usize)>,
        /// The likely cause, in one sentence.
        hint: String,
    },
}

/// The server's trouble during a case and what the checker did about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerEvent {
    #[serde(flatten)]
    pub trouble: Trouble,
    /// The last case after which the server still answered.
    pub last_answered: Option<&'static str>,
    /// The checker restarted the server and went on; when false the run
    /// stopped here and `stop` says why.
    pub restarted: bool,
    pub stop: Option<String>,
}

impl ServerEvent {
    /// One line saying what happened to the server during the case.
    pub fn describe(&self) -> String {
        match &self.trouble {
            Trouble::Crashed { status, .. } => tr().crashed_during(status),
            Trouble::Hung { probe, .. } => tr().hung_during(probe),
        }
    }
}

/// One case's report entry.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub id: &'static str,
    pub section: &'static str,
    /// What the spec requires, in a line (`requires` in JSON: a failure's
    /// own `expected` sits beside it).
    #[serde(rename = "requires")]
    pub expected: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub millis: u64,
    /// The first attempt timed out and this is the second (see
    /// [`FailKind::Timeout`]): a pass then means "slow", not "wrong".
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub retried: bool,
    /// Set when the server crashed or stopped answering during the case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerEvent>,
}

impl CaseResult {
    /// The case family: the id up to its first dot (`eol` of `eol.lf-alone`).
    pub fn family(&self) -> &'static str {
        self.id.split('.').next().unwrap_or(self.id)
    }
}

/// Counts over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub not_run: usize,
}

impl Summary {
    pub fn of<'a>(results: impl IntoIterator<Item = &'a CaseResult>) -> Summary {
        let mut summary = Summary::default();
        for result in results {
            match result.outcome {
                Outcome::Pass => summary.passed += 1,
                Outcome::Fail(_) => summary.failed += 1,
                Outcome::Skip { .. } => summary.skipped += 1,
                Outcome::NotRun { .. } => summary.not_run += 1,
            }
        }
        summary
    }
}

/// `N passed, N failed, N skipped`, and `, N not run` only when the run
/// stopped early: the same words in every language, since CI reads them.
impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )?;
        if self.not_run > 0 {
            write!(f, ", {} not run", self.not_run)?;
        }
        Ok(())
    }
}
