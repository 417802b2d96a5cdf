//! The client's error messages in Spanish, the language of the course: one
//! arm per [`Error`] variant, so that a new error cannot be added without
//! its Spanish words. English is the `Display` of [`Error`]. The protocol's
//! status lines (`202 FILE NOT FOUND`), the requests, and messages that come
//! from the operating system or the reply decoder are quoted as they are.

use super::{is_timeout, Error};
use hftp_proto::Status;

/// `err` in Spanish, one line.
pub fn message(err: &Error) -> String {
    match err {
        // Usage messages are written where the bad input is found, in English.
        Error::Usage(msg) => msg.clone(),
        Error::Internal(msg) => {
            format!("error interno (un bug, por favor repórtelo): {msg}")
        }
        Error::Status { request, status } => {
            let what = match status {
                Status::FileNotFound => " (no existe el archivo)",
                Status::OffsetExceedsFileSize => " (el rango cae fuera del archivo)",
                _ => "",
            };
            format!("{request}: el servidor respondió {status}{what}")
        }
        Error::Protocol { request, error } => {
            format!("{request}: error de protocolo en la respuesta: {error}")
        }
        Error::Closed { request, error } => format!("{request}: {error}"),
        Error::NotHftp {
            peer,
            request,
            sent,
        } => format!("{peer} no habla HFTP: respondió a {request} con \"{sent}\""),
        Error::Connect { target, source } => format!("no se puede conectar a {target}: {source}"),
        Error::Proxy(msg) => format!("proxy: {msg}"),
        Error::Timeout { what } => format!("{what}: se agotó el tiempo de espera"),
        Error::Interrupted { what } => format!("{what}: interrumpido"),
        Error::MaxTime { what, limit } => format!(
            "{what}: abandonado: pasó el tiempo total límite de {} s (--max-time)",
            limit.as_secs_f64()
        ),
        Error::ListingTooLong {
            request,
            names,
            bytes,
        } => format!(
            "{request}: el listado es más largo de lo que este cliente guarda \
             (más de {names} nombres o {bytes} bytes); `hftp ls -U` imprime cualquier cantidad"
        ),
        Error::Network { what, source } if is_timeout(source) => {
            format!("{what}: se agotó el tiempo de espera")
        }
        Error::Network { what, source } => format!("{what}: {source}"),
        Error::Output(source) => format!("al escribir la salida: {source}"),
        Error::Exists(path) => format!(
            "{} ya existe (use -f/--force para sobrescribirlo)",
            path.display()
        ),
        Error::PartMismatch { part, held, wanted } => format!(
            "{} contiene {held}, no {wanted}; se conserva: use --continue para reanudarlo \
             desde este servidor de todos modos (mismo nombre y tamaño), o --force para empezar de nuevo",
            part.display()
        ),
        Error::Local { path, what, source } => {
            format!("no se puede {} {}: {source}", verb(what), path.display())
        }
        Error::TooLarge {
            name,
            size,
            dir,
            room,
        } => {
            let why = match room {
                Some(room) => format!(
                    "más que los {} libres en {}",
                    super::iec(*room),
                    dir.display()
                ),
                None => format!(
                    "más de lo que el sistema de archivos de {} admite en un archivo",
                    dir.display()
                ),
            };
            format!(
                "{name} tiene {size} bytes ({}): {why}; no se escribió nada",
                super::iec(*size)
            )
        }
        Error::Changed {
            name,
            before,
            after,
        } => format!(
            "{name}: el archivo remoto cambió de tamaño durante la descarga ({before} -> {after} bytes)"
        ),
        Error::Superseded {
            source,
            part,
            removed,
        } => {
            let mut text = message(source);
            if *removed {
                text.push_str(&format!(
                    "; se borró {}: sus bytes son de una versión que el servidor ya no tiene",
                    part.display()
                ));
            }
            text
        }
        Error::Kept { source, part } => match source.as_ref() {
            Error::Interrupted { .. } => format!(
                "interrumpido: los segmentos terminados se conservan en {}; \
                 ejecute el mismo comando otra vez para reanudar",
                part.display()
            ),
            other => format!(
                "{}; la descarga parcial se conserva en {}: ejecute el mismo comando \
                 otra vez para reanudar",
                message(other),
                part.display()
            ),
        },
        Error::NoMatch { pattern, listed } => format!(
            "get {pattern}: ningún archivo del servidor coincide con {pattern} \
             (su listado tiene {listed} nombre{})",
            if *listed == 1 { "" } else { "s" }
        ),
        Error::MirrorsDiffer {
            name,
            mirror,
            size,
            reference,
            expected,
        } => {
            let has = match size {
                Some(size) => format!("tiene {size} bytes de {name}"),
                None => format!("no tiene el archivo {name}"),
            };
            format!(
                "los espejos no coinciden: {mirror} {has}, {reference} tiene {expected} bytes; \
                 deje fuera el espejo que difiere"
            )
        }
    }
}

/// The Spanish verb for a local file operation named in English.
fn verb(what: &str) -> String {
    match what {
        "create" => "crear".into(),
        "create the directory" => "crear el directorio".into(),
        "download to" => "descargar en".into(),
        "open" => "abrir".into(),
        "write" => "escribir".into(),
        "read" => "leer".into(),
        "rename" => "renombrar".into(),
        "rename to" => "renombrar a".into(),
        "resize" => "cambiar el tamaño de".into(),
        "inspect" => "examinar".into(),
        "flush" => "volcar a disco".into(),
        "remove" => "borrar".into(),
        "use" => "usar".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_texts_stay_as_the_protocol_writes_them() {
        let err = Error::Status {
            request: "get_metadata nada.txt".into(),
            status: Status::FileNotFound,
        };
        assert_eq!(
            message(&err),
            "get_metadata nada.txt: el servidor respondió 202 FILE NOT FOUND (no existe el archivo)"
        );
    }
}
