//! The checker's human-readable text in each language it speaks: English
//! (the default) and Spanish, the language of the course.
//!
//! Each message is written once, as a row of the table in `messages.rs`
//! that holds its English and Spanish text side by side, so the two cannot
//! drift apart in separate files and a message cannot be added in one
//! language only (the row does not compile). No dependency, no message
//! files to load at run time, parameters typed. Wire bytes (the
//! protocol's status texts, requests, answers) are never translated; case
//! ids, the words PASS/FAIL/SKIP/NOT RUN and the last summary line stay the
//! same in every language so that scripts reading them work either way.
//!
//! The language is a process-wide setting ([`set`]), chosen once by the
//! command line before the suite runs.

use std::sync::atomic::{AtomicU8, Ordering};

mod messages;
mod titles;

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

/// The checker's messages in one language: one method per message (the
/// rows of `messages.rs`), each returning the text in that language.
#[derive(Clone, Copy, Debug)]
pub struct Catalogue {
    lang: Lang,
}

impl Catalogue {
    /// The messages in `lang`.
    pub fn of(lang: Lang) -> Catalogue {
        Catalogue { lang }
    }
}

/// The messages in the language in force.
pub fn tr() -> Catalogue {
    Catalogue::of(current())
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

    /// Every coded case has Spanish words, and the table names no case
    /// that does not exist.
    #[test]
    fn spanish_titles_cover_the_coded_cases() {
        let cases = crate::cases::all();
        for case in &cases {
            if case.is_coded() {
                assert!(
                    super::titles::spanish(case.id).is_some(),
                    "no Spanish title for {}",
                    case.id
                );
            }
        }
        for (id, _) in super::titles::TITLES {
            assert!(
                cases.iter().any(|c| c.id == *id),
                "Spanish title for unknown case {id}"
            );
        }
    }
}
