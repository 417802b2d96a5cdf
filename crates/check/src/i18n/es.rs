//! The checker's text in Spanish, the language of the course.

use super::Catalogue;

pub struct Spanish;

/// Cases whose requirement is written in code (not a plain exchange), with
/// their Spanish words. A unit test checks it covers every such case.
const TITLES: &[(&str, &str)] = &[
    ("clients.idle-do-not-block", "con un cliente callado y otro detenido a mitad de línea, otro cliente recibe respuesta; luego también el detenido"),
    ("clients.non-reader-does-not-block", "un cliente que pide 20 × 32 MiB y no lee nada no demora a otro cliente"),
    ("clients.vanishing-client", "clientes que cierran a mitad de un pedido o de una respuesta, sin `quit`, no perturban al servidor"),
    ("clients.half-close-still-answered", "los pedidos enviados antes de que el cliente cierre su lado de escritura (`printf ... | nc`) se responden, luego EOF"),
    ("clients.ten-interleaved", "diez conexiones abiertas a la vez, pedidos intercalados, cada una respondida en su propia conexión"),
    ("error.unreadable-directory", "directorio servido con chmod 000 → `get_file_listing` recibe `199 INTERNAL SERVER ERROR\\r\\n`, luego EOF"),
    ("frag.one-byte-at-a-time", "`get_slice hola.txt 4 19\\r\\n` enviado de a un byte por escritura, cada 20 ms → `0 OK\\r\\nY2Fsb3IgcXVlIGhhY2UgaG95LA==\\r\\n`"),
    ("frag.crlf-split", "`get_metadata hola.txt\\r`, luego `\\n` en otra escritura → `0 OK\\r\\n32\\r\\n` (un CRLF partido es válido)"),
    ("frag.pipelined-1000", "1000 × `get_metadata hola.txt\\r\\n` en una sola escritura → 1000 × `0 OK\\r\\n32\\r\\n`"),
    ("limit.name-5mib", "`get_metadata` + un nombre de 5 MiB de `x` → `202 FILE NOT FOUND\\r\\n`, y `quit` → `0 OK\\r\\n`, EOF"),
    ("limit.over-default-8mib", "8 MiB + 1 KiB sin CRLF → `101 BAD REQUEST\\r\\n` apenas se pasa el límite, luego EOF"),
    ("listing.well-formed", "`0 OK\\r\\n`, luego nombres válidos en orden de bytes estrictamente creciente, uno por línea, luego una línea vacía"),
    ("live.file-added", "un archivo creado durante la conexión aparece en el listado y se sirve en el pedido siguiente"),
    ("live.file-grown", "un archivo al que se le agregan bytes durante la conexión tiene su nuevo tamaño y contenido en el pedido siguiente"),
    ("live.file-removed", "un archivo borrado durante la conexión da `202` y desaparece del listado en el pedido siguiente"),
    ("live.directory-recreated", "el directorio servido borrado y vuelto a crear (misma ruta, archivos nuevos): una conexión nueva ve los archivos nuevos"),
    ("name.symlink-inside", "un enlace simbólico a un archivo regular dentro del directorio servido se sirve como su destino"),
    ("name.symlink-reentering-consistent", "los enlaces que vuelven al directorio servido por `../DIR/plain.txt` o por una ruta absoluta se listan exactamente cuando se sirven"),
    ("raw.nothing-after-body", "`get_slice hola.txt 4 19 raw` → encabezado + exactamente 19 bytes; la respuesta al pedido siguiente llega enseguida"),
    ("raw.all-bytes-32mib", "un archivo de 32 MiB con todos los valores de byte, pedido entero en raw, es igual al archivo"),
    ("quit.eof-within-0.5s", "`quit` → `0 OK\\r\\n`, luego EOF dentro de los 0,5 s siguientes"),
    ("quit.pipelined-after", "`quit\\r\\n` + 64 KiB de otros pedidos en una sola escritura → `0 OK\\r\\n` intacto, luego EOF (sin reset)"),
    ("quit.after-other-requests", "`verdura`, `get_file_listing x`, `quit` encadenados → 200, 201, `0 OK`, EOF"),
    ("fatal.101-junk-after", "una línea con TAB + 1 MiB de pedidos en una sola escritura → `101 BAD REQUEST\\r\\n` intacto, nada más, EOF"),
    ("fatal.100-junk-after", "`quit\\n` + 1 MiB de pedidos en una sola escritura → `100 BAD EOL\\r\\n` intacto, nada más, EOF"),
    ("fatal.empty-line-junk-after", "`\\r\\n` + 1 MiB de pedidos en una sola escritura → `101 BAD REQUEST\\r\\n` intacto, nada más, EOF"),
    ("slice.all-bytes-32mib", "un archivo de 32 MiB con todos los valores de byte, pedido entero en base64, es igual al archivo"),
];

/// The ids [`TITLES`] names, for the coverage test.
#[cfg(test)]
pub const TITLED: &[&str] = &{
    let mut ids = [""; TITLES.len()];
    let mut i = 0;
    while i < TITLES.len() {
        ids[i] = TITLES[i].0;
        i += 1;
    }
    ids
};

impl Catalogue for Spanish {
    fn exchange_title(&self, send: &str, answer: &str, closed: bool) -> String {
        let after = if closed {
            "luego EOF"
        } else {
            "la conexión sigue abierta"
        };
        format!("`{send}` → `{answer}`, {after}")
    }
    fn case_title(&self, id: &str) -> Option<&'static str> {
        TITLES
            .iter()
            .find(|(case, _)| *case == id)
            .map(|(_, title)| *title)
    }

    fn label_requires(&self) -> &'static str {
        "requiere:"
    }
    fn label_step(&self) -> &'static str {
        "paso:    "
    }
    fn label_expected(&self) -> &'static str {
        "esperado:"
    }
    fn label_got(&self) -> &'static str {
        "recibido:"
    }
    fn label_server(&self) -> &'static str {
        "servidor:"
    }
    fn by_section(&self) -> &'static str {
        "Por sección de la especificación:"
    }
    fn skipped_cases(&self, count: usize, first: &str, more: usize) -> String {
        match more {
            0 => format!("SKIP {count} casos ({first})"),
            _ => format!("SKIP {count} casos ({first}, y {more} más)"),
        }
    }
    fn nothing_more(&self) -> String {
        "nada más antes del próximo pedido".into()
    }
    fn passed_slowly(&self) -> &'static str {
        "(lento: el primer intento agotó el tiempo, el segundo pasó)"
    }
    fn trickle_stop(&self, count: usize, case: &str) -> String {
        format!(
            "el servidor responde de a pocos bytes: {count} casos agotaron el tiempo \
             mientras todavía llegaban bytes (el último: {case}); verificarlo llevaría horas, \
             así que los casos restantes no se ejecutan"
        )
    }
    fn bugs_heading(&self, count: usize) -> String {
        match count {
            1 => "1 error, detrás de todos los casos fallidos:".into(),
            _ => format!("{count} errores, primero el que está detrás de más casos fallidos:"),
        }
    }
    fn bug_line(&self, number: usize, title: &str, cases: usize) -> String {
        let s = if cases == 1 { "" } else { "s" };
        format!("{number}. {title}: {cases} caso{s}")
    }
    fn caused_by(&self, number: usize) -> String {
        format!("error {number} (vea la lista de arriba)")
    }
    fn with_file_present(&self, name: &str) -> String {
        format!(
            "con {name} presente el mismo pedido recibe 201 como corresponde: el servidor \
             busca el archivo antes de revisar los argumentos (§5: forma, nombre y números \
             van antes que la existencia)"
        )
    }
    fn hang_context(&self, held: usize, abandoned_by: &str) -> String {
        if abandoned_by.is_empty() {
            format!("el verificador tuvo hasta {held} conexión(es) abiertas durante el caso")
        } else {
            format!(
                "el verificador tuvo hasta {held} conexión(es) abiertas durante el caso; casos \
                 anteriores dejaron \
                 clientes sin quit: {abandoned_by}"
            )
        }
    }
    fn hang_hint_abandoned(&self) -> String {
        "causa probable: cada cliente ocupa un worker hasta que manda quit, y los clientes \
         que se fueron sin mandarlo (cerrando o con reset, como permite §1) siguen ocupando \
         el suyo, así que los clientes nuevos esperan para siempre"
            .into()
    }
    fn hang_hint(&self) -> String {
        "causa probable: el servidor dejó de aceptar o de responder después de este caso: \
         mire lo que imprimió"
            .into()
    }
    fn label_reproduce(&self) -> &'static str {
        "reproducir:"
    }
    fn section_counts(
        &self,
        passed: usize,
        failed: usize,
        skipped: usize,
        not_run: usize,
    ) -> String {
        let mut text = format!("{passed} aprobados, {failed} fallidos, {skipped} omitidos");
        if not_run > 0 {
            text.push_str(&format!(", {not_run} sin ejecutar"));
        }
        text
    }
    fn troubled_cases(&self) -> &'static str {
        "Casos que hicieron caer o colgaron al servidor:"
    }

    fn skip_needs_dir(&self) -> String {
        "necesita el directorio servido para poner sus archivos: agregue --dir DIR (el directorio que sirve el servidor) o --server-cmd CMD (el verificador arranca el servidor)".into()
    }
    fn skip_needs_direct(&self) -> String {
        "necesita una conexión directa: el cierre de media conexión no atraviesa un proxy SOCKS ni Tor (ejecútelo sin --proxy)".into()
    }
    fn skip_needs_unprivileged(&self) -> String {
        "necesita un servidor que no corra como root (--unprivileged-server)".into()
    }
    fn skip_classic(&self) -> String {
        "solo para la revisión 2026; el servidor responde 200 a `help` (clásico)".into()
    }
    fn not_run(&self, stop: &str) -> String {
        format!("sin ejecutar: {stop}")
    }
    fn stopped_answering(&self, after: Option<&str>, during: &str) -> String {
        match after {
            Some(after) => format!(
                "el servidor dejó de responder después del caso {after} (mientras corría el caso {during})"
            ),
            None => format!(
                "el servidor dejó de responder durante el caso {during}, antes de que corriera ningún caso"
            ),
        }
    }
    fn crashed_during(&self, status: &str) -> String {
        format!("el servidor terminó durante este caso ({status})")
    }
    fn hung_during(&self, probe: &str) -> String {
        format!("el servidor dejó de responder durante este caso ({probe})")
    }
    fn restarted(&self) -> String {
        "se lo reinició; los casos siguientes corren contra un servidor nuevo".into()
    }
    fn after_case_step(&self) -> String {
        "después del caso".into()
    }
    fn keeps_running(&self) -> String {
        "el servidor sigue corriendo".into()
    }
    fn restart_failed(&self, during: &str, error: &str) -> String {
        format!("no se pudo reiniciar el servidor después del caso {during}: {error}")
    }
    fn restarts_exhausted(&self, during: &str, max: u32) -> String {
        format!(
            "el servidor volvió a fallar en el caso {during} después de {max} reinicios (--max-restarts); no se lo reinicia"
        )
    }
    fn probe_no_answer(&self, secs: f64) -> String {
        format!("una conexión nueva no recibió respuesta a `quit` en {secs:.1} s")
    }
    fn probe_eof(&self) -> String {
        "una conexión nueva se cerró sin responder a `quit`".into()
    }
    fn log_tail(&self) -> &'static str {
        "su última salida:"
    }
    fn crashed_word(&self) -> &'static str {
        "hizo caer al servidor"
    }
    fn hung_word(&self) -> &'static str {
        "colgó al servidor"
    }

    fn connect_step(&self, addr: &str) -> String {
        format!("conectar a {addr}")
    }
    fn server_accepts(&self) -> String {
        "el servidor acepta la conexión".into()
    }
    fn send_step(&self, sent: &str) -> String {
        format!("enviar `{sent}`")
    }
    fn server_reads(&self) -> String {
        "el servidor lee el pedido".into()
    }
    fn write_failed(&self, error: &str) -> String {
        format!("falló la escritura: {error}")
    }
    fn answer_step(&self, sent: &str) -> String {
        format!("respuesta a `{sent}`")
    }
    fn after_answer_step(&self, sent: &str) -> String {
        format!("después de la respuesta a `{sent}`")
    }
    fn eof_after(&self, seen: &str, matched: usize, total: usize) -> String {
        format!("`{seen}`, luego EOF tras {matched} de {total} bytes")
    }
    fn reset_after(&self, seen: &str, matched: usize, total: usize) -> String {
        format!("`{seen}`, luego la conexión se reinició (reset) tras {matched} de {total} bytes")
    }
    fn timeout_bytes(&self, matched: usize, total: usize, secs: f64, seen: &str) -> String {
        format!("tiempo agotado: {matched} de {total} bytes en {secs:.1} s: `{seen}`")
    }
    fn read_error_after(&self, seen: &str, error: &str) -> String {
        format!("`{seen}`, luego error de lectura: {error}")
    }
    fn a_crlf_line(&self) -> String {
        "una línea terminada en CRLF".into()
    }
    fn line_too_long(&self) -> String {
        "más de 1 MiB sin CRLF".into()
    }
    fn then_eof(&self, seen: &str) -> String {
        format!("`{seen}`, luego EOF")
    }
    fn then_reset(&self, seen: &str) -> String {
        format!("`{seen}`, luego la conexión se reinició (reset)")
    }
    fn timeout_received(&self, seen: &str) -> String {
        format!("tiempo agotado; se recibió `{seen}`")
    }
    fn read_error(&self, error: &str) -> String {
        format!("error de lectura: {error}")
    }
    fn eof_within(&self, secs: f64) -> String {
        format!("EOF en menos de {secs:.1} s, nada más")
    }
    fn more_bytes(&self, bytes: &str) -> String {
        format!("más bytes: `{bytes}`")
    }
    fn reset_not_close(&self) -> String {
        "la conexión se reinició (RST) en lugar de cerrarse ordenadamente".into()
    }
    fn stayed_open(&self) -> String {
        "tiempo agotado: la conexión siguió abierta".into()
    }
    fn mismatch_expected(&self, total: usize, offset: usize, window: &str) -> String {
        format!("{total} bytes; desde el byte {offset}: `{window}`")
    }
    fn mismatch_got(&self, offset: usize, window: &str, began: &str) -> String {
        format!("desde el byte {offset}: `{window}` (la respuesta empezó `{began}`)")
    }
    fn setup_step(&self, what: &str) -> String {
        format!("preparación: {what}")
    }
    fn setup_expected(&self) -> String {
        "el checker puede preparar el directorio servido".into()
    }
    fn fixture_step(&self) -> String {
        "preparación: poner los archivos del caso".into()
    }
    fn fixture_expected(&self) -> String {
        "un directorio servido con permiso de escritura".into()
    }
    fn panic_step(&self) -> String {
        "correr el caso".into()
    }
    fn panic_expected(&self) -> String {
        "ningún pánico en el checker".into()
    }
}
