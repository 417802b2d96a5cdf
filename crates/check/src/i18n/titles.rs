//! The Spanish words of the cases whose requirement is written in code
//! (not a plain exchange). Their English is the title each case is written
//! with, in `cases/`; a unit test checks that every such case has a row
//! here and that every row names a case.

/// (case id, Spanish requirement).
pub(super) const TITLES: &[(&str, &str)] = &[
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

/// The Spanish words of case `id`, if it has a row.
pub(super) fn spanish(id: &str) -> Option<&'static str> {
    TITLES
        .iter()
        .find(|(case, _)| *case == id)
        .map(|(_, title)| *title)
}
