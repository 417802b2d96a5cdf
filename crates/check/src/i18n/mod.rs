//! The checker's human-readable text in each language it speaks: English
//! (the default) and Spanish, the language of the course.
//!
//! One module per language, each an implementation of [`Catalogue`]. A
//! trait with no default methods is the lightest thing that works here: no
//! dependency, no message files to load at run time, parameters typed, and
//! the compiler refuses a language that lacks a message. Wire bytes (the
//! protocol's status texts, requests, answers) are never translated; case
//! ids, the words PASS/FAIL/SKIP/NOT RUN and the last summary line stay the
//! same in every language so that scripts reading them work either way.
//!
//! The language is a process-wide setting ([`set`]), chosen once by the
//! command line before the suite runs.

use std::sync::atomic::{AtomicU8, Ordering};

mod en;
pub(crate) use en::English;
mod es;

/// A language of the checker's reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    Es,
}

impl Lang {
    /// Parses `en`/`es` (and `english`/`spanish`/`español`, any case).
    pub fn parse(text: &str) -> Option<Lang> {
        match text.to_ascii_lowercase().as_str() {
            "en" | "english" => Some(Lang::En),
            "es" | "spanish" | "español" => Some(Lang::Es),
            _ => None,
        }
    }

    /// The language the environment asks for: the first non-empty of
    /// `LC_ALL`, `LC_MESSAGES`, `LANG` (the POSIX order) decides; Spanish
    /// when it starts with `es`, English otherwise.
    pub fn from_env() -> Lang {
        Lang::from_locale_vars(|name| std::env::var(name).ok())
    }

    /// [`Lang::from_env`] over any source of variables.
    pub fn from_locale_vars(var: impl Fn(&str) -> Option<String>) -> Lang {
        let locale = ["LC_ALL", "LC_MESSAGES", "LANG"]
            .into_iter()
            .filter_map(var)
            .find(|value| !value.is_empty());
        match locale {
            Some(value) if value.starts_with("es") => Lang::Es,
            _ => Lang::En,
        }
    }
}

static CURRENT: AtomicU8 = AtomicU8::new(0);

/// Sets the language of every later report line.
pub fn set(lang: Lang) {
    CURRENT.store(lang as u8, Ordering::Relaxed);
}

/// The language in force.
pub fn current() -> Lang {
    match CURRENT.load(Ordering::Relaxed) {
        1 => Lang::Es,
        _ => Lang::En,
    }
}

/// The catalogue of the language in force.
pub fn tr() -> &'static dyn Catalogue {
    match current() {
        Lang::En => &en::English,
        Lang::Es => &es::Spanish,
    }
}

/// Every message of the checker, in one language. Arguments are already
/// rendered (wire bytes escaped, numbers formatted).
pub trait Catalogue: Sync {
    // ---- case titles ----
    /// A plain exchange's requirement: `send` → `answer`, then the connection
    /// stays open (`closed` false) or ends (`closed` true).
    fn exchange_title(&self, send: &str, answer: &str, closed: bool) -> String;
    /// A coded case's requirement, when this language has its own words for
    /// it (`None`: the case's English title).
    fn case_title(&self, id: &str) -> Option<&'static str>;

    // ---- report labels ----
    fn label_requires(&self) -> &'static str;
    fn label_step(&self) -> &'static str;
    fn label_expected(&self) -> &'static str;
    fn label_got(&self) -> &'static str;
    fn label_server(&self) -> &'static str;
    fn by_section(&self) -> &'static str;
    /// One section's counts in the closing summary.
    fn section_counts(
        &self,
        passed: usize,
        failed: usize,
        skipped: usize,
        not_run: usize,
    ) -> String;
    fn troubled_cases(&self) -> &'static str;
    /// `nothing more` after a complete answer, before the next request.
    fn nothing_more(&self) -> String;
    /// After a case's id: it passed on its second attempt, the first timed out.
    fn passed_slowly(&self) -> &'static str;
    /// Why the run stopped: `count` cases in a row got answers a few bytes
    /// at a time, the last one `case`.
    fn trickle_stop(&self, count: usize, case: &str) -> String;
    /// The heading of the list of bugs.
    fn bugs_heading(&self, count: usize) -> String;
    /// One bug's line: its number, title and how many cases it fails.
    fn bug_line(&self, number: usize, title: &str, cases: usize) -> String;
    /// Under a failed case: the bug that explains it.
    fn caused_by(&self, number: usize) -> String;
    /// A failure with `202` where `201` was due, that the same request
    /// answers `201` with `name` present: the order of checks is wrong.
    fn with_file_present(&self, name: &str) -> String;
    /// What the checker held when the server stopped answering.
    fn hang_context(&self, held: usize, abandoned_by: &str) -> String;
    /// The likely cause of a hang after clients left without `quit`.
    fn hang_hint_abandoned(&self) -> String;
    /// The likely cause of a hang otherwise.
    fn hang_hint(&self) -> String;
    /// The label of a bug's smallest reproduction.
    fn label_reproduce(&self) -> &'static str;
    /// The head of the one line for `count` cases skipped for one reason:
    /// `first` are a few of their ids, `more` how many others.
    fn skipped_cases(&self, count: usize, first: &str, more: usize) -> String;

    // ---- skips, stops, the server's troubles ----
    fn skip_needs_dir(&self) -> String;
    fn skip_needs_unprivileged(&self) -> String;
    fn skip_needs_direct(&self) -> String;
    fn skip_classic(&self) -> String;
    /// Why the rest of the run was not run.
    fn not_run(&self, stop: &str) -> String;
    /// The server stopped answering: `after` is the last case after which it
    /// still answered, `during` the case that was running.
    fn stopped_answering(&self, after: Option<&str>, during: &str) -> String;
    /// The server exited while `during` ran (or right after).
    fn crashed_during(&self, status: &str) -> String;
    /// The server stopped answering while this case ran.
    fn hung_during(&self, probe: &str) -> String;
    fn restarted(&self) -> String;
    /// The step of a case that passed but ended the server.
    fn after_case_step(&self) -> String;
    fn keeps_running(&self) -> String;
    fn restart_failed(&self, during: &str, error: &str) -> String;
    fn restarts_exhausted(&self, during: &str, max: u32) -> String;
    fn probe_no_answer(&self, secs: f64) -> String;
    fn probe_eof(&self) -> String;
    fn log_tail(&self) -> &'static str;
    fn crashed_word(&self) -> &'static str;
    fn hung_word(&self) -> &'static str;

    // ---- failures while talking to the server ----
    fn connect_step(&self, addr: &str) -> String;
    fn server_accepts(&self) -> String;
    fn send_step(&self, sent: &str) -> String;
    fn server_reads(&self) -> String;
    fn write_failed(&self, error: &str) -> String;
    fn answer_step(&self, sent: &str) -> String;
    fn after_answer_step(&self, sent: &str) -> String;
    fn eof_after(&self, seen: &str, matched: usize, total: usize) -> String;
    fn reset_after(&self, seen: &str, matched: usize, total: usize) -> String;
    fn timeout_bytes(&self, matched: usize, total: usize, secs: f64, seen: &str) -> String;
    fn read_error_after(&self, seen: &str, error: &str) -> String;
    fn a_crlf_line(&self) -> String;
    fn line_too_long(&self) -> String;
    fn then_eof(&self, seen: &str) -> String;
    fn then_reset(&self, seen: &str) -> String;
    fn timeout_received(&self, seen: &str) -> String;
    fn read_error(&self, error: &str) -> String;
    fn eof_within(&self, secs: f64) -> String;
    fn more_bytes(&self, bytes: &str) -> String;
    fn reset_not_close(&self) -> String;
    fn stayed_open(&self) -> String;
    fn mismatch_expected(&self, total: usize, offset: usize, window: &str) -> String;
    fn mismatch_got(&self, offset: usize, window: &str, began: &str) -> String;
    fn setup_step(&self, what: &str) -> String;
    fn setup_expected(&self) -> String;
    fn fixture_step(&self) -> String;
    fn fixture_expected(&self) -> String;
    fn panic_step(&self) -> String;
    fn panic_expected(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::Lang;

    #[test]
    fn locale_variables_in_posix_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Lang::from_locale_vars(env(&[])), Lang::En);
        assert_eq!(
            Lang::from_locale_vars(env(&[("LANG", "es_AR.UTF-8")])),
            Lang::Es
        );
        assert_eq!(
            Lang::from_locale_vars(env(&[("LANG", "es_AR.UTF-8"), ("LC_ALL", "C")])),
            Lang::En
        );
        assert_eq!(
            Lang::from_locale_vars(env(&[
                ("LC_ALL", ""),
                ("LC_MESSAGES", "es_ES"),
                ("LANG", "C")
            ])),
            Lang::Es
        );
        assert_eq!(Lang::parse("ES"), Some(Lang::Es));
        assert_eq!(Lang::parse("fr"), None);
    }

    /// Every coded case has Spanish words, and the catalogue names no case
    /// that does not exist.
    #[test]
    fn spanish_titles_cover_the_coded_cases() {
        use super::Catalogue;
        let cases = crate::cases::all();
        for case in &cases {
            if case.is_coded() {
                assert!(
                    super::es::Spanish.case_title(case.id).is_some(),
                    "no Spanish title for {}",
                    case.id
                );
            }
        }
        for id in super::es::TITLED {
            assert!(
                cases.iter().any(|c| c.id == *id),
                "Spanish title for unknown case {id}"
            );
        }
    }
}
