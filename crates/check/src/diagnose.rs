//! From failed cases to bugs. One bug of a student's server fails many
//! cases, some of them far from the rule it breaks (an unsorted listing
//! fails pipelining and live-directory cases too, since they list). So
//! after the run each failure is classified by the rule its answer breaks,
//! read from what was expected and what came (the listing's lines in
//! another order, `202` where the shape of the arguments decides `201`,
//! bytes after a complete answer, a timeout...), and the report opens with
//! the bugs, most cases first, each with its smallest reproduction. A
//! failure no rule explains is grouped by its section and the two status
//! lines, so that the same symptom is still one entry.
//!
//! The rules are heuristics over the rendered answers: they name the likely
//! cause, and the cases keep the exact bytes.

use serde::Serialize;

use crate::i18n::{current, Lang};
use crate::outcome::{CaseResult, FailKind, Failure, Outcome, Trouble};

/// One bug: the rule it breaks and the cases it fails.
#[derive(Clone, Debug, Serialize)]
pub struct Bug {
    /// Short id of the rule (`listing-order`, `existence-before-shape`).
    pub rule: String,
    /// Section of the spec the rule is in.
    pub section: String,
    /// The bug in one line, in the report's language.
    pub title: String,
    /// The failed cases it explains, in run order.
    pub cases: Vec<&'static str>,
    /// The smallest reproduction among them.
    pub example: Example,
}

/// One failed case's exchange, to reproduce a bug by hand.
#[derive(Clone, Debug, Serialize)]
pub struct Example {
    pub case: &'static str,
    pub step: String,
    pub expected: String,
    pub got: String,
}

/// The bugs behind the failed cases of `results`, most cases first (ties
/// in run order).
pub fn bugs(results: &[CaseResult]) -> Vec<Bug> {
    let mut bugs: Vec<Bug> = Vec::new();
    for result in results {
        let Some((rule, section, title)) = classify(result) else {
            continue;
        };
        let example = match &result.outcome {
            Outcome::Fail(failure) => Example {
                case: result.id,
                step: failure.step.clone(),
                expected: failure.expected.clone(),
                got: failure.got.clone(),
            },
            _ => continue,
        };
        match bugs.iter_mut().find(|b| b.rule == rule) {
            Some(bug) => {
                bug.cases.push(result.id);
                if size(&example) < size(&bug.example) {
                    bug.example = example;
                }
            }
            None => bugs.push(Bug {
                rule,
                section,
                title,
                cases: vec![result.id],
                example,
            }),
        }
    }
    // A mismatch deep inside a long listing shows only a window of it:
    // when the listing-order bug is there, it is the likely cause.
    if let Some(order) = bugs.iter().position(|b| b.rule == "listing-order") {
        let mut i = 0;
        while i < bugs.len() {
            let inside_listing = bugs[i].rule.starts_with("section-")
                && bugs[i].example.step.contains("get_file_listing")
                && !bugs[i].example.expected.starts_with('`');
            if i != order && inside_listing {
                let moved = bugs.remove(i);
                let order = bugs
                    .iter()
                    .position(|b| b.rule == "listing-order")
                    .unwrap_or(0);
                bugs[order].cases.extend(moved.cases);
            } else {
                i += 1;
            }
        }
    }
    // Stable: equal counts keep the order of their first case.
    bugs.sort_by_key(|b| std::cmp::Reverse(b.cases.len()));
    bugs
}

/// The 1-based number of the bug that explains `case`, if any.
pub fn bug_of(bugs: &[Bug], case: &str) -> Option<usize> {
    bugs.iter()
        .position(|b| b.cases.contains(&case))
        .map(|i| i + 1)
}

fn size(example: &Example) -> usize {
    example.step.len() + example.expected.len()
}

/// The rule a failed case breaks: (id, section, title).
fn classify(result: &CaseResult) -> Option<(String, String, String)> {
    let Outcome::Fail(failure) = &result.outcome else {
        return None;
    };
    let es = current() == Lang::Es;
    let rule = |id: &str, section: &str, en: &str, es_text: &str| {
        let title = if es { es_text } else { en };
        Some((
            id.to_owned(),
            section.to_owned(),
            format!("{title} (§{section})"),
        ))
    };
    let expected = status(&failure.expected);
    let got = status(&failure.got);
    // A fatal line not answered as such is the cause, whether the server
    // answered otherwise, went silent or hung on it.
    let crashed = matches!(
        result.server.as_ref().map(|e| &e.trouble),
        Some(Trouble::Crashed { .. })
    );
    if !crashed && failure.kind != FailKind::Trickle && got.as_deref() != expected.as_deref() {
        match expected.as_deref() {
            Some("100") => {
                return rule(
                    "bad-eol",
                    "2",
                    "a CR or LF outside a CR LF pair is not answered 100 BAD EOL at once",
                    "un CR o LF fuera de un par CR LF no se responde 100 BAD EOL en el acto",
                )
            }
            Some("101") => {
                return rule(
                    "bad-request",
                    "2",
                    "an empty, non-ASCII or too long line is not answered 101 BAD REQUEST",
                    "una línea vacía, no ASCII o demasiado larga no se responde 101 BAD REQUEST",
                )
            }
            _ => {}
        }
    }
    match result.server.as_ref().map(|e| &e.trouble) {
        Some(Trouble::Crashed { .. }) => {
            return rule(
                "crash",
                "6",
                "the server crashes (its output is shown under the case)",
                "el servidor se cae (su salida se muestra bajo el caso)",
            )
        }
        // A run stopped for a dripping server is that, not a hang.
        Some(Trouble::Hung { .. }) if failure.kind != FailKind::Trickle => {
            return rule(
                "hang",
                "6",
                "the server stops answering new clients",
                "el servidor deja de atender clientes nuevos",
            )
        }
        Some(Trouble::Hung { .. }) | None => {}
    }
    match failure.kind {
        FailKind::ExtraBytes => {
            return rule(
                "extra-bytes",
                "3",
                "bytes after a complete answer that no request asked for",
                "bytes después de una respuesta completa que ningún pedido pidió",
            )
        }
        FailKind::Trickle => {
            return rule(
                "trickle",
                "1",
                "answers a few bytes at a time, too slowly to finish",
                "responde de a pocos bytes, demasiado lento para terminar",
            )
        }
        FailKind::Timeout => {
            return rule(
                "timeout",
                "1",
                "no answer within the time limit (slow, or waiting for something)",
                "sin respuesta dentro del plazo (lento, o esperando algo)",
            )
        }
        FailKind::Mismatch | FailKind::Closed => {}
    }
    if has_one_extra_line(failure) {
        return rule(
            "extra-bytes",
            "3",
            "bytes after a complete answer that no request asked for",
            "bytes después de una respuesta completa que ningún pedido pidió",
        );
    }
    if is_reordered_listing(failure) {
        return rule(
            "listing-order",
            "5",
            "the listing is not sorted by byte value",
            "el listado no está ordenado por valor de byte",
        );
    }
    match (expected.as_deref(), got.as_deref()) {
        (Some("201"), Some("202")) => rule(
            "existence-before-shape",
            "5",
            "looks for the file before it checks the shape of the arguments \
             (shape, name and numbers come first: 201 before 202)",
            "busca el archivo antes de revisar la forma de los argumentos \
             (forma, nombre y números van primero: 201 antes que 202)",
        ),
        (Some("201"), Some("203")) => rule(
            "range-before-shape",
            "5",
            "checks the range before the shape of the arguments (201 before 203)",
            "revisa el rango antes que la forma de los argumentos (201 antes que 203)",
        ),
        (Some("202"), Some("203")) => rule(
            "range-before-existence",
            "5",
            "checks the range before the file exists (202 before 203)",
            "revisa el rango antes de que exista el archivo (202 antes que 203)",
        ),
        (Some(e), Some(g)) if e != g => {
            let id = format!("status-{e}-answered-{g}");
            let title = if es {
                format!("responde {g} donde la especificación pide {e}")
            } else {
                format!("answers {g} where the spec requires {e}")
            };
            Some((
                id,
                result.section.to_owned(),
                format!("{title} (§{})", result.section),
            ))
        }
        _ if failure.kind == FailKind::Closed => rule(
            "closes-early",
            "1",
            "closes the connection before the answer is complete",
            "cierra la conexión antes de completar la respuesta",
        ),
        _ => {
            let id = format!("section-{}-answer", result.section);
            let title = if es {
                "respuestas distintas de las de la especificación"
            } else {
                "answers that differ from the spec's"
            };
            Some((
                id,
                result.section.to_owned(),
                format!("{title} (§{})", result.section),
            ))
        }
    }
}

/// The first status code in a rendered answer: `` `202 FILE NOT FOUND\r\n` ``
/// gives `202`; `0 OK` gives `0`.
fn status(text: &str) -> Option<String> {
    let start = text.find('`')? + 1;
    let rest = &text[start..];
    let code: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let after = rest[code.len()..].chars().next();
    (!code.is_empty() && code.len() <= 3 && after == Some(' ')).then_some(code)
}

/// The lines of a rendered answer between its backquotes.
fn rendered_lines(text: &str) -> Option<Vec<&str>> {
    let start = text.find('`')? + 1;
    let end = text.rfind('`')?;
    (end > start).then(|| text[start..end].split("\\r\\n").collect())
}

/// Whether got is expected with one line more (a `0 OK` after a `203` in
/// a pipelined answer): bytes nobody asked for, seen mid-answer.
fn has_one_extra_line(failure: &Failure) -> bool {
    let (Some(expected), Some(got)) = (
        rendered_lines(&failure.expected),
        rendered_lines(&failure.got),
    ) else {
        return false;
    };
    got.len() == expected.len() + 1
        && (0..got.len()).any(|skip| {
            got.iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, l)| *l)
                .eq(expected.iter().copied())
        })
}

/// Whether expected and got hold the same listing lines in another order.
fn is_reordered_listing(failure: &Failure) -> bool {
    let lines = |text: &str| -> Option<Vec<String>> {
        let start = text.find('`')? + 1;
        let end = text.rfind('`')?;
        (end > start).then(|| {
            text[start..end]
                .split("\\r\\n")
                .map(str::to_owned)
                .collect()
        })
    };
    let (Some(mut expected), Some(mut got)) = (lines(&failure.expected), lines(&failure.got))
    else {
        return false;
    };
    if expected == got || expected.len() < 3 || !expected[0].starts_with("0 OK") {
        return false;
    }
    expected.sort();
    got.sort();
    expected == got
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(id: &'static str, section: &'static str, expected: &str, got: &str) -> CaseResult {
        CaseResult {
            id,
            section,
            expected: String::new(),
            outcome: Outcome::Fail(Failure::new("step", expected, got)),
            millis: 0,
            retried: false,
            server: None,
        }
    }

    #[test]
    fn one_bug_many_cases_most_first() {
        let results = vec![
            failed(
                "args.x",
                "2",
                "`201 INVALID ARGUMENTS FOR COMMAND\\r\\n`",
                "`202 FILE NOT FOUND\\r\\n`",
            ),
            failed(
                "listing.a",
                "5",
                "`0 OK\\r\\na\\r\\nb\\r\\n\\r\\n`",
                "`0 OK\\r\\nb\\r\\na\\r\\n\\r\\n`",
            ),
            failed(
                "frag.p",
                "2",
                "`0 OK\\r\\na\\r\\nb\\r\\n\\r\\n0 OK\\r\\n`",
                "`0 OK\\r\\nb\\r\\na\\r\\n\\r\\n0 OK\\r\\n`",
            ),
        ];
        let bugs = bugs(&results);
        assert_eq!(bugs[0].rule, "listing-order");
        assert_eq!(bugs[0].cases, ["listing.a", "frag.p"]);
        assert_eq!(bugs[0].example.case, "listing.a");
        assert_eq!(bugs[1].rule, "existence-before-shape");
        assert_eq!(bug_of(&bugs, "frag.p"), Some(1));
        assert_eq!(bug_of(&bugs, "nothing"), None);
    }

    #[test]
    fn status_codes_are_read_from_rendered_answers() {
        assert_eq!(status("`202 FILE NOT FOUND\\r\\n`").as_deref(), Some("202"));
        assert_eq!(status("`0 OK\\r\\n5\\r\\n`").as_deref(), Some("0"));
        assert_eq!(status("EOF after 3 bytes"), None);
        assert_eq!(status("`12345`"), None);
    }
}
