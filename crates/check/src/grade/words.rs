//! The gradebook's words in English and Spanish: labels of the HTML pages
//! and of the per-submission reports, status names, and the one-line
//! details of each row.
//!
//! A small table of its own rather than more methods on the checker's
//! [`Catalogue`](crate::i18n::Catalogue): the grader's words are few, and
//! keeping them here leaves the checker's catalogue to the checker. The
//! CSV's column names and status keys are not here: they are the same in
//! every language, for the scripts that read them.
//!
//! Cost: none at run time (static strings, a `match` per word). Where it
//! breaks: a third language means a third arm in every method; past a few
//! languages a catalogue trait like the checker's would pay off.

use crate::i18n::Lang;

/// The words of one language.
#[derive(Clone, Copy, Debug)]
pub struct Words {
    pub lang: Lang,
}

impl Words {
    pub fn new(lang: Lang) -> Words {
        Words { lang }
    }

    fn es(&self) -> bool {
        self.lang == Lang::Es
    }

    fn pick(&self, en: &'static str, es: &'static str) -> &'static str {
        if self.es() {
            es
        } else {
            en
        }
    }

    /// `en` or `es`, for `<html lang>`.
    pub fn code(&self) -> &'static str {
        self.pick("en", "es")
    }

    pub fn gradebook(&self) -> &'static str {
        self.pick("Gradebook", "Planilla de notas")
    }
    pub fn submission(&self) -> &'static str {
        self.pick("Submission", "Entrega")
    }
    pub fn status(&self) -> &'static str {
        self.pick("Status", "Estado")
    }
    pub fn passed(&self) -> &'static str {
        self.pick("Passed", "Pasaron")
    }
    pub fn failed(&self) -> &'static str {
        self.pick("Failed", "Fallaron")
    }
    pub fn skipped(&self) -> &'static str {
        self.pick("Skipped", "Omitidos")
    }
    pub fn not_run(&self) -> &'static str {
        self.pick("Not run", "Sin correr")
    }
    pub fn limits(&self) -> &'static str {
        self.pick("Limits hit", "Límites alcanzados")
    }
    pub fn bugs(&self) -> &'static str {
        self.pick("Bugs by rule", "Errores por regla")
    }
    pub fn detail(&self) -> &'static str {
        self.pick("Detail", "Detalle")
    }
    pub fn report(&self) -> &'static str {
        self.pick("Full report", "Informe completo")
    }
    pub fn time(&self) -> &'static str {
        self.pick("Time", "Tiempo")
    }
    pub fn sandbox(&self) -> &'static str {
        self.pick("Sandbox", "Aislamiento")
    }
    pub fn peaks(&self) -> &'static str {
        self.pick("Peak use", "Uso máximo")
    }
    pub fn cases(&self) -> &'static str {
        self.pick("Cases", "Casos")
    }
    pub fn checker_said(&self) -> &'static str {
        self.pick("What the checker said", "Lo que dijo el verificador")
    }
    pub fn none(&self) -> &'static str {
        self.pick("none", "ninguno")
    }
    pub fn requires(&self) -> &'static str {
        self.pick("requires:", "requiere:")
    }
    pub fn step(&self) -> &'static str {
        self.pick("step:    ", "paso:    ")
    }
    pub fn expected(&self) -> &'static str {
        self.pick("expected:", "esperado:")
    }
    pub fn got(&self) -> &'static str {
        self.pick("got:     ", "recibido:")
    }
    pub fn server(&self) -> &'static str {
        self.pick("server:  ", "servidor:")
    }
    pub fn its_output(&self) -> &'static str {
        self.pick("its last output:", "lo último que escribió:")
    }
    pub fn reproduce(&self) -> &'static str {
        self.pick("reproduce:", "reproducir:")
    }

    /// The status as people read it (the CSV keeps [`super::Status::key`]).
    pub fn status_label(&self, status: super::Status) -> &'static str {
        use super::Status::*;
        match status {
            Ok => self.pick("ok", "ok"),
            Failed => self.pick("failed", "con fallos"),
            NeverStarted => self.pick("never started", "no arrancó"),
            Stopped => self.pick("stopped answering", "dejó de responder"),
            TimedOut => self.pick("timed out", "tiempo agotado"),
            Limit => self.pick("hit a limit", "superó un límite"),
            Error => self.pick("could not grade", "no se pudo corregir"),
        }
    }

    pub fn limit_label(&self, limit: super::Limit) -> &'static str {
        use super::Limit::*;
        match limit {
            Processes => self.pick("processes", "procesos"),
            Memory => self.pick("memory", "memoria"),
            Disk => self.pick("disk", "disco"),
            Cpu => self.pick("CPU time", "tiempo de CPU"),
        }
    }

    /// One sentence per limit reached, for the detail column.
    pub fn limit_sentence(&self, limit: super::Limit, limits: &super::Limits) -> String {
        use super::Limit::*;
        match (limit, self.es()) {
            (Processes, false) => format!("reached its limit of {} processes", limits.procs),
            (Processes, true) => format!("alcanzó su límite de {} procesos", limits.procs),
            (Memory, false) => format!(
                "ran out of memory ({} per process)",
                super::size_text(limits.mem)
            ),
            (Memory, true) => format!(
                "se quedó sin memoria ({} por proceso)",
                super::size_text(limits.mem)
            ),
            (Disk, false) => format!("filled its {} of disk", super::size_text(limits.disk)),
            (Disk, true) => format!("llenó sus {} de disco", super::size_text(limits.disk)),
            (Cpu, false) => format!(
                "used up its CPU time ({} s per process)",
                limits.time.as_secs()
            ),
            (Cpu, true) => format!(
                "agotó su tiempo de CPU ({} s por proceso)",
                limits.time.as_secs()
            ),
        }
    }

    pub fn exited_before_listening(&self, how: &str) -> String {
        if self.es() {
            format!("el servidor terminó ({how}) antes de escuchar")
        } else {
            format!("the server exited ({how}) before listening")
        }
    }

    pub fn did_not_listen(&self, port: Option<u16>) -> String {
        match (port, self.es()) {
            (Some(port), false) => format!(
                "the server did not listen on the port it was given ({port}) within --start-timeout"
            ),
            (Some(port), true) => format!(
                "el servidor no escuchó en el puerto indicado ({port}) dentro de --start-timeout"
            ),
            (None, false) => {
                "the server did not listen on the port it was given within --start-timeout".into()
            }
            (None, true) => {
                "el servidor no escuchó en el puerto indicado dentro de --start-timeout".into()
            }
        }
    }

    pub fn never_answered(&self) -> String {
        self.pick(
            "the server accepted connections but never answered",
            "el servidor aceptó conexiones pero nunca respondió",
        )
        .into()
    }

    pub fn listened_elsewhere(&self, ports: &str) -> String {
        if self.es() {
            format!("escuchó en otro puerto: {ports}")
        } else {
            format!("it listened on another port: {ports}")
        }
    }

    pub fn timed_out(&self, seconds: u64) -> String {
        if self.es() {
            format!("seguía corriendo a los {seconds} s (--time): detenido, con todo lo que inició")
        } else {
            format!("still running after {seconds} s (--time): stopped, with all it started")
        }
    }

    pub fn too_big(&self, disk: u64) -> String {
        if self.es() {
            format!(
                "la entrega no cabe en su disco (--disk {})",
                super::size_text(disk)
            )
        } else {
            format!(
                "the submission does not fit in its disk (--disk {})",
                super::size_text(disk)
            )
        }
    }

    pub fn sandbox_failed(&self, why: &str) -> String {
        if self.es() {
            format!("falló el aislamiento: {why}")
        } else {
            format!("the sandbox failed: {why}")
        }
    }

    pub fn checker_failed(&self, why: &str) -> String {
        if self.es() {
            format!("el verificador no pudo correr: {why}")
        } else {
            format!("the checker could not run: {why}")
        }
    }

    pub fn section_bug(&self, section: &str) -> String {
        if self.es() {
            format!("casos fallidos de §{section}")
        } else {
            format!("failed cases of §{section}")
        }
    }

    pub fn crashed(&self, status: &str) -> String {
        if self.es() {
            format!("el servidor terminó durante este caso ({status})")
        } else {
            format!("the server exited during this case ({status})")
        }
    }

    pub fn hung(&self, probe: &str) -> String {
        if self.es() {
            format!("el servidor dejó de responder durante este caso ({probe})")
        } else {
            format!("the server stopped answering during this case ({probe})")
        }
    }

    pub fn restarted(&self) -> &'static str {
        self.pick(
            "restarted it; the next cases run against a fresh server",
            "se lo reinició; los casos siguientes corren contra un servidor nuevo",
        )
    }

    pub fn cases_count(&self, n: usize) -> String {
        match (n, self.es()) {
            (1, false) => "1 case".into(),
            (1, true) => "1 caso".into(),
            (n, false) => format!("{n} cases"),
            (n, true) => format!("{n} casos"),
        }
    }

    /// `12 tasks, 80 MiB of memory, 3 MiB of disk`.
    pub fn peak_line(&self, tasks: u64, rss: u64, disk: u64) -> String {
        if self.es() {
            format!(
                "{tasks} tareas (procesos e hilos), {} de memoria, {} de disco",
                super::size_text(rss),
                super::size_text(disk)
            )
        } else {
            format!(
                "{tasks} tasks (processes and threads), {} of memory, {} of disk",
                super::size_text(rss),
                super::size_text(disk)
            )
        }
    }

    /// The header line of the index page.
    pub fn graded(&self, n: usize, version: &str) -> String {
        if self.es() {
            format!("{n} entregas, corregidas con hftp {version}")
        } else {
            format!("{n} submissions, graded with hftp {version}")
        }
    }

    /// The limits line of the index page.
    pub fn limits_line(&self, limits: &super::Limits) -> String {
        let (mem, disk) = (super::size_text(limits.mem), super::size_text(limits.disk));
        let (procs, time) = (limits.procs, limits.time.as_secs());
        if self.es() {
            format!("Límites por entrega: {mem} de memoria por proceso, {procs} procesos, {disk} de disco, {time} s")
        } else {
            format!("Limits per submission: {mem} of memory per process, {procs} processes, {disk} of disk, {time} s")
        }
    }

    /// The first line on stderr: how many, how many at once, which sandbox.
    pub fn started(&self, total: usize, jobs: usize, sandbox: &str) -> String {
        if self.es() {
            format!("{total} entregas, {jobs} a la vez; aislamiento: {sandbox}")
        } else {
            format!("{total} submissions, {jobs} at a time; sandbox: {sandbox}")
        }
    }

    /// The last line on stderr: where the gradebook is.
    pub fn written(&self, csv: &str, html: &str) -> String {
        if self.es() {
            format!("planilla: {csv} y {html}")
        } else {
            format!("gradebook: {csv} and {html}")
        }
    }

    /// The progress line of one finished submission.
    pub fn progress(
        &self,
        done: usize,
        total: usize,
        name: &str,
        status: super::Status,
        counts: &str,
        seconds: f64,
    ) -> String {
        format!(
            "[{done}/{total}] {name}: {}{counts} ({seconds:.1} s)",
            self.status_label(status)
        )
    }
}
