//! Every message of the checker, once, its English and Spanish side by side.
//!
//! A row of `messages!` reads like a method: name, parameters (text
//! already rendered: wire bytes escaped, numbers as numbers), return type
//! (`&'static str` for fixed words, `String` for a template whose `{holes}`
//! name the parameters), then its `en:` and `es:` text. A row lacking either
//! does not compile. Where the shape of a message depends on its arguments
//! (one or many, an optional part), a plain method after the table picks
//! among rows: the choice is made once, for every language.

use super::{Catalogue, Lang};

/// Defines each row as a method of [`Catalogue`] that picks its language's
/// text (and, in tests, `every_row`: each row rendered with sample
/// arguments).
macro_rules! messages {
    (@pick str, $lang:expr, $en:literal, $es:literal) => {
        match $lang {
            Lang::En => $en,
            Lang::Es => $es,
        }
    };
    (@pick String, $lang:expr, $en:literal, $es:literal) => {
        match $lang {
            Lang::En => format!($en),
            Lang::Es => format!($es),
        }
    };
    ($(
        $(#[$doc:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $(& $lt:lifetime)? $ret:ident {
            en: $en:literal,
            es: $es:literal $(,)?
        }
    )*) => {
        impl Catalogue {
            $(
                $(#[$doc])*
                $vis fn $name(self, $($arg: $ty),*) -> $(& $lt)? $ret {
                    messages!(@pick $ret, self.lang, $en, $es)
                }
            )*
        }

        #[cfg(test)]
        impl Catalogue {
            /// Every row, by name, rendered with sample arguments.
            fn every_row(self) -> Vec<(&'static str, String)> {
                vec![$(
                    (stringify!($name), self.$name($(<$ty as Sample>::sample()),*).to_string())
                ),*]
            }
        }
    };
}

messages! {
    // ---- case titles ----
    fn exchange_open(send: &str, answer: &str) -> String {
        en: "`{send}` → `{answer}`, connection stays open",
        es: "`{send}` → `{answer}`, la conexión sigue abierta",
    }
    fn exchange_closed(send: &str, answer: &str) -> String {
        en: "`{send}` → `{answer}`, then EOF",
        es: "`{send}` → `{answer}`, luego EOF",
    }

    // ---- report labels ----
    pub fn label_requires() -> &'static str {
        en: "requires:",
        es: "requiere:",
    }
    pub fn label_step() -> &'static str {
        en: "step:    ",
        es: "paso:    ",
    }
    pub fn label_expected() -> &'static str {
        en: "expected:",
        es: "esperado:",
    }
    pub fn label_got() -> &'static str {
        en: "got:     ",
        es: "recibido:",
    }
    pub fn label_server() -> &'static str {
        en: "server:  ",
        es: "servidor:",
    }
    /// The label of a bug's smallest reproduction.
    pub fn label_reproduce() -> &'static str {
        en: "reproduce:",
        es: "reproducir:",
    }
    pub fn by_section() -> &'static str {
        en: "By section of the spec:",
        es: "Por sección de la especificación:",
    }
    fn section_counts_run(passed: usize, failed: usize, skipped: usize) -> String {
        en: "{passed} passed, {failed} failed, {skipped} skipped",
        es: "{passed} aprobados, {failed} fallidos, {skipped} omitidos",
    }
    fn section_counts_not_run(not_run: usize) -> String {
        en: ", {not_run} not run",
        es: ", {not_run} sin ejecutar",
    }
    pub fn troubled_cases() -> &'static str {
        en: "Cases that crashed or hung the server:",
        es: "Casos que hicieron caer o colgaron al servidor:",
    }
    /// `nothing more` after a complete answer, before the next request.
    pub fn nothing_more() -> String {
        en: "nothing more before the next request",
        es: "nada más antes del próximo pedido",
    }
    /// After a case's id: it passed on its second attempt, the first timed out.
    pub fn passed_slowly() -> &'static str {
        en: "(slow: the first attempt timed out, the second passed)",
        es: "(lento: el primer intento agotó el tiempo, el segundo pasó)",
    }
    /// Why the run stopped: `count` cases in a row got answers a few bytes
    /// at a time, the last one `case`.
    pub fn trickle_stop(count: usize, case: &str) -> String {
        en: "the server answers a few bytes at a time: {count} cases timed out \
             while bytes were still coming (the last: {case}); checking it would take hours, \
             so the remaining cases are not run",
        es: "el servidor responde de a pocos bytes: {count} casos agotaron el tiempo \
             mientras todavía llegaban bytes (el último: {case}); verificarlo llevaría horas, \
             así que los casos restantes no se ejecutan",
    }
    fn bugs_heading_one() -> &'static str {
        en: "1 bug, behind every failed case:",
        es: "1 error, detrás de todos los casos fallidos:",
    }
    fn bugs_heading_many(count: usize) -> String {
        en: "{count} bugs, the one behind most failed cases first:",
        es: "{count} errores, primero el que está detrás de más casos fallidos:",
    }
    fn bug_line_one(number: usize, title: &str) -> String {
        en: "{number}. {title}: 1 case",
        es: "{number}. {title}: 1 caso",
    }
    fn bug_line_many(number: usize, title: &str, cases: usize) -> String {
        en: "{number}. {title}: {cases} cases",
        es: "{number}. {title}: {cases} casos",
    }
    /// Under a failed case: the bug that explains it.
    pub fn caused_by(number: usize) -> String {
        en: "bug {number} (see the list above)",
        es: "error {number} (vea la lista de arriba)",
    }
    /// A failure with `202` where `201` was due, that the same request
    /// answers `201` with `name` present: the order of checks is wrong.
    pub fn with_file_present(name: &str) -> String {
        en: "with {name} present the same request gets 201 as required: the server looks \
             for the file before it checks the arguments (§5: shape, name and numbers come \
             before existence)",
        es: "con {name} presente el mismo pedido recibe 201 como corresponde: el servidor \
             busca el archivo antes de revisar los argumentos (§5: forma, nombre y números \
             van antes que la existencia)",
    }
    fn hang_context_held(held: usize) -> String {
        en: "the checker held up to {held} connection(s) open during the case",
        es: "el verificador tuvo hasta {held} conexión(es) abiertas durante el caso",
    }
    fn hang_context_abandoned(held: usize, abandoned_by: &str) -> String {
        en: "the checker held up to {held} connection(s) open during the case; earlier \
             cases left clients without quit: {abandoned_by}",
        es: "el verificador tuvo hasta {held} conexión(es) abiertas durante el caso; casos \
             anteriores dejaron clientes sin quit: {abandoned_by}",
    }
    /// The likely cause of a hang after clients left without `quit`.
    pub fn hang_hint_abandoned() -> String {
        en: "likely cause: each client holds a worker until it sends quit, and clients that \
             left without it (closed or reset, as §1 allows) still hold theirs, so new clients \
             wait for ever",
        es: "causa probable: cada cliente ocupa un worker hasta que manda quit, y los clientes \
             que se fueron sin mandarlo (cerrando o con reset, como permite §1) siguen ocupando \
             el suyo, así que los clientes nuevos esperan para siempre",
    }
    /// The likely cause of a hang otherwise.
    pub fn hang_hint() -> String {
        en: "likely cause: the server stopped accepting or answering after this case: \
             look at what it printed",
        es: "causa probable: el servidor dejó de aceptar o de responder después de este caso: \
             mire lo que imprimió",
    }
    fn skipped_cases_listed(count: usize, first: &str) -> String {
        en: "SKIP {count} cases ({first})",
        es: "SKIP {count} casos ({first})",
    }
    fn skipped_cases_more(count: usize, first: &str, more: usize) -> String {
        en: "SKIP {count} cases ({first}, and {more} more)",
        es: "SKIP {count} casos ({first}, y {more} más)",
    }

    // ---- skips, stops, the server's troubles ----
    pub fn skip_needs_dir() -> String {
        en: "needs the served directory to lay out its files: add --dir DIR (the directory the server serves) or --server-cmd CMD (the checker starts the server)",
        es: "necesita el directorio servido para poner sus archivos: agregue --dir DIR (el directorio que sirve el servidor) o --server-cmd CMD (el verificador arranca el servidor)",
    }
    pub fn skip_needs_unprivileged() -> String {
        en: "needs a server that does not run as root (--unprivileged-server)",
        es: "necesita un servidor que no corra como root (--unprivileged-server)",
    }
    pub fn skip_needs_direct() -> String {
        en: "needs a direct connection: a half-close does not cross a SOCKS proxy or Tor (run it without --proxy)",
        es: "necesita una conexión directa: el cierre de media conexión no atraviesa un proxy SOCKS ni Tor (ejecútelo sin --proxy)",
    }
    pub fn skip_classic() -> String {
        en: "2026 revision only; the server answers `help` with 200 (classic)",
        es: "solo para la revisión 2026; el servidor responde 200 a `help` (clásico)",
    }
    /// Why the rest of the run was not run.
    pub fn not_run(stop: &str) -> String {
        en: "not run: {stop}",
        es: "sin ejecutar: {stop}",
    }
    fn stopped_answering_after(after: &str, during: &str) -> String {
        en: "the server stopped answering after case {after} (while case {during} was running)",
        es: "el servidor dejó de responder después del caso {after} (mientras corría el caso {during})",
    }
    fn stopped_answering_first(during: &str) -> String {
        en: "the server stopped answering during case {during}, before any case had run",
        es: "el servidor dejó de responder durante el caso {during}, antes de que corriera ningún caso",
    }
    /// The server exited while this case ran (or right after).
    pub fn crashed_during(status: &str) -> String {
        en: "the server exited during this case ({status})",
        es: "el servidor terminó durante este caso ({status})",
    }
    /// The server stopped answering while this case ran.
    pub fn hung_during(probe: &str) -> String {
        en: "the server stopped answering during this case ({probe})",
        es: "el servidor dejó de responder durante este caso ({probe})",
    }
    pub fn restarted() -> String {
        en: "restarted it; the next cases run against a fresh server",
        es: "se lo reinició; los casos siguientes corren contra un servidor nuevo",
    }
    /// The step of a case that passed but ended the server.
    pub fn after_case_step() -> String {
        en: "after the case",
        es: "después del caso",
    }
    pub fn keeps_running() -> String {
        en: "the server keeps running",
        es: "el servidor sigue corriendo",
    }
    pub fn restart_failed(during: &str, error: &str) -> String {
        en: "the server could not be restarted after case {during}: {error}",
        es: "no se pudo reiniciar el servidor después del caso {during}: {error}",
    }
    pub fn restarts_exhausted(during: &str, max: u32) -> String {
        en: "the server failed again in case {during} after {max} restarts (--max-restarts); not restarted",
        es: "el servidor volvió a fallar en el caso {during} después de {max} reinicios (--max-restarts); no se lo reinicia",
    }
    pub fn probe_no_answer(secs: f64) -> String {
        en: "a new connection got no answer to `quit` within {secs:.1} s",
        es: "una conexión nueva no recibió respuesta a `quit` en {secs:.1} s",
    }
    pub fn probe_eof() -> String {
        en: "a new connection was closed without an answer to `quit`",
        es: "una conexión nueva se cerró sin responder a `quit`",
    }
    pub fn log_tail() -> &'static str {
        en: "its last output:",
        es: "su última salida:",
    }
    pub fn crashed_word() -> &'static str {
        en: "crashed the server",
        es: "hizo caer al servidor",
    }
    pub fn hung_word() -> &'static str {
        en: "hung the server",
        es: "colgó al servidor",
    }

    // ---- failures while talking to the server ----
    pub fn connect_step(addr: &str) -> String {
        en: "connect to {addr}",
        es: "conectar a {addr}",
    }
    pub fn server_accepts() -> String {
        en: "the server accepts",
        es: "el servidor acepta la conexión",
    }
    pub fn send_step(sent: &str) -> String {
        en: "send `{sent}`",
        es: "enviar `{sent}`",
    }
    pub fn server_reads() -> String {
        en: "the server reads the request",
        es: "el servidor lee el pedido",
    }
    pub fn write_failed(error: &str) -> String {
        en: "write failed: {error}",
        es: "falló la escritura: {error}",
    }
    pub fn answer_step(sent: &str) -> String {
        en: "answer to `{sent}`",
        es: "respuesta a `{sent}`",
    }
    pub fn after_answer_step(sent: &str) -> String {
        en: "after the answer to `{sent}`",
        es: "después de la respuesta a `{sent}`",
    }
    pub fn eof_after(seen: &str, matched: usize, total: usize) -> String {
        en: "`{seen}`, then EOF after {matched} of {total} bytes",
        es: "`{seen}`, luego EOF tras {matched} de {total} bytes",
    }
    pub fn reset_after(seen: &str, matched: usize, total: usize) -> String {
        en: "`{seen}`, then connection reset after {matched} of {total} bytes",
        es: "`{seen}`, luego la conexión se reinició (reset) tras {matched} de {total} bytes",
    }
    pub fn timeout_bytes(matched: usize, total: usize, secs: f64, seen: &str) -> String {
        en: "timeout: {matched} of {total} bytes in {secs:.1} s: `{seen}`",
        es: "tiempo agotado: {matched} de {total} bytes en {secs:.1} s: `{seen}`",
    }
    pub fn read_error_after(seen: &str, error: &str) -> String {
        en: "`{seen}`, then read error: {error}",
        es: "`{seen}`, luego error de lectura: {error}",
    }
    pub fn a_crlf_line() -> String {
        en: "a line ended by CRLF",
        es: "una línea terminada en CRLF",
    }
    pub fn line_too_long() -> String {
        en: "over 1 MiB without CRLF",
        es: "más de 1 MiB sin CRLF",
    }
    pub fn then_eof(seen: &str) -> String {
        en: "`{seen}`, then EOF",
        es: "`{seen}`, luego EOF",
    }
    pub fn then_reset(seen: &str) -> String {
        en: "`{seen}`, then connection reset",
        es: "`{seen}`, luego la conexión se reinició (reset)",
    }
    pub fn timeout_received(seen: &str) -> String {
        en: "timeout; received `{seen}`",
        es: "tiempo agotado; se recibió `{seen}`",
    }
    pub fn read_error(error: &str) -> String {
        en: "read error: {error}",
        es: "error de lectura: {error}",
    }
    pub fn eof_within(secs: f64) -> String {
        en: "EOF within {secs:.1} s, nothing more",
        es: "EOF en menos de {secs:.1} s, nada más",
    }
    pub fn more_bytes(bytes: &str) -> String {
        en: "more bytes: `{bytes}`",
        es: "más bytes: `{bytes}`",
    }
    pub fn reset_not_close() -> String {
        en: "connection reset (RST) instead of an orderly close",
        es: "la conexión se reinició (RST) en lugar de cerrarse ordenadamente",
    }
    pub fn stayed_open() -> String {
        en: "timeout: the connection stayed open",
        es: "tiempo agotado: la conexión siguió abierta",
    }
    pub fn mismatch_expected(total: usize, offset: usize, window: &str) -> String {
        en: "{total} bytes; from byte {offset}: `{window}`",
        es: "{total} bytes; desde el byte {offset}: `{window}`",
    }
    pub fn mismatch_got(offset: usize, window: &str, began: &str) -> String {
        en: "from byte {offset}: `{window}` (answer began `{began}`)",
        es: "desde el byte {offset}: `{window}` (la respuesta empezó `{began}`)",
    }
    pub fn setup_step(what: &str) -> String {
        en: "set-up: {what}",
        es: "preparación: {what}",
    }
    pub fn setup_expected() -> String {
        en: "the suite can prepare the served directory",
        es: "el checker puede preparar el directorio servido",
    }
    pub fn fixture_step() -> String {
        en: "set-up: laying out the fixture",
        es: "preparación: poner los archivos del caso",
    }
    pub fn fixture_expected() -> String {
        en: "a writable served directory",
        es: "un directorio servido con permiso de escritura",
    }
    pub fn panic_step() -> String {
        en: "running the case",
        es: "correr el caso",
    }
    pub fn panic_expected() -> String {
        en: "no panic in the suite",
        es: "ningún pánico en el checker",
    }
}

/// The messages whose shape depends on their arguments: the choice among
/// rows, once for every language.
impl Catalogue {
    /// A plain exchange's requirement: `send` → `answer`, then the connection
    /// stays open (`closed` false) or ends (`closed` true).
    pub fn exchange_title(self, send: &str, answer: &str, closed: bool) -> String {
        if closed {
            self.exchange_closed(send, answer)
        } else {
            self.exchange_open(send, answer)
        }
    }

    /// A coded case's requirement, when this language has its own words for
    /// it (`None`: the case's English title, written with the case).
    pub fn case_title(self, id: &str) -> Option<&'static str> {
        match self.lang {
            Lang::En => None,
            Lang::Es => super::titles::spanish(id),
        }
    }

    /// One section's counts in the closing summary.
    pub fn section_counts(
        self,
        passed: usize,
        failed: usize,
        skipped: usize,
        not_run: usize,
    ) -> String {
        let mut text = self.section_counts_run(passed, failed, skipped);
        if not_run > 0 {
            text.push_str(&self.section_counts_not_run(not_run));
        }
        text
    }

    /// The heading of the list of bugs.
    pub fn bugs_heading(self, count: usize) -> String {
        match count {
            1 => self.bugs_heading_one().into(),
            _ => self.bugs_heading_many(count),
        }
    }

    /// One bug's line: its number, title and how many cases it fails.
    pub fn bug_line(self, number: usize, title: &str, cases: usize) -> String {
        match cases {
            1 => self.bug_line_one(number, title),
            _ => self.bug_line_many(number, title, cases),
        }
    }

    /// What the checker held when the server stopped answering, and which
    /// earlier cases left clients without `quit` (`abandoned_by`, if any).
    pub fn hang_context(self, held: usize, abandoned_by: &str) -> String {
        if abandoned_by.is_empty() {
            self.hang_context_held(held)
        } else {
            self.hang_context_abandoned(held, abandoned_by)
        }
    }

    /// The head of the one line for `count` cases skipped for one reason:
    /// `first` are a few of their ids, `more` how many others.
    pub fn skipped_cases(self, count: usize, first: &str, more: usize) -> String {
        match more {
            0 => self.skipped_cases_listed(count, first),
            _ => self.skipped_cases_more(count, first, more),
        }
    }

    /// The server stopped answering: `after` is the last case after which it
    /// still answered, `during` the case that was running.
    pub fn stopped_answering(self, after: Option<&str>, during: &str) -> String {
        match after {
            Some(after) => self.stopped_answering_after(after, during),
            None => self.stopped_answering_first(during),
        }
    }
}

/// A sample argument of each type a row takes.
#[cfg(test)]
trait Sample {
    fn sample() -> Self;
}

#[cfg(test)]
impl Sample for &'static str {
    fn sample() -> Self {
        "ARG"
    }
}

#[cfg(test)]
impl Sample for usize {
    fn sample() -> Self {
        2
    }
}

#[cfg(test)]
impl Sample for u32 {
    fn sample() -> Self {
        3
    }
}

#[cfg(test)]
impl Sample for f64 {
    fn sample() -> Self {
        1.5
    }
}

#[cfg(test)]
mod tests {
    use super::{Catalogue, Lang};

    /// Every row renders in both languages, with no hole left unfilled and
    /// no Spanish text that is a copy of the English.
    #[test]
    fn every_message_has_both_languages() {
        let en = Catalogue::of(Lang::En).every_row();
        let es = Catalogue::of(Lang::Es).every_row();
        assert_eq!(en.len(), es.len());
        for ((name, en), (_, es)) in en.iter().zip(&es) {
            for text in [en, es] {
                assert!(!text.is_empty(), "{name}: empty");
                assert!(
                    !text.contains(['{', '}']),
                    "{name}: a hole left in {text:?}"
                );
            }
            assert_ne!(en, es, "{name}: the Spanish is the English");
        }
    }
}
