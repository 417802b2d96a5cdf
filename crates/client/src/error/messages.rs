//! The client's error messages, each once, its English and Spanish side by
//! side (Spanish is the language of the course).
//!
//! A row of `messages!` reads like a method: name, parameters, return
//! type (`&'static str` for fixed words, `String` for a template whose
//! `{holes}` name the parameters), then its `en:` and `es:` text; a row
//! lacking either does not compile. [`message`] is the one `match` over
//! [`Error`] that picks the rows, for every language. The protocol's status
//! lines (`202 FILE NOT FOUND`), the requests, and messages that come from
//! the operating system or the reply decoder are quoted as they are.

use std::io;
use std::path::Display;

use hftp_proto::reply::ReplyError;
use hftp_proto::Status;

use super::{iec, is_timeout, Error};

/// A language of the messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lang {
    En,
    Es,
}

/// Defines each row as a method of [`Lang`] that picks its text.
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
        fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $(& $lt:lifetime)? $ret:ident {
            en: $en:literal,
            es: $es:literal $(,)?
        }
    )*) => {
        impl Lang {
            $(
                $(#[$doc])*
                fn $name(self, $($arg: $ty),*) -> $(& $lt)? $ret {
                    messages!(@pick $ret, self, $en, $es)
                }
            )*
        }
    };
}

messages! {
    fn internal(msg: &str) -> String {
        en: "internal error (a bug, please report it): {msg}",
        es: "error interno (un bug, por favor repórtelo): {msg}",
    }
    /// `what` is a gloss of the status, or empty.
    fn status(request: &str, status: &Status, what: &str) -> String {
        en: "{request}: server answered {status}{what}",
        es: "{request}: el servidor respondió {status}{what}",
    }
    fn no_such_file() -> &'static str {
        en: " (no such file)",
        es: " (no existe el archivo)",
    }
    fn range_outside() -> &'static str {
        en: " (range outside the file)",
        es: " (el rango cae fuera del archivo)",
    }
    fn protocol(request: &str, error: &ReplyError) -> String {
        en: "{request}: protocol error in the reply: {error}",
        es: "{request}: error de protocolo en la respuesta: {error}",
    }
    fn not_hftp(peer: &str, request: &str, sent: &str) -> String {
        en: "{peer} does not speak HFTP: it answered {request} with \"{sent}\"",
        es: "{peer} no habla HFTP: respondió a {request} con \"{sent}\"",
    }
    fn connect(target: &str, source: &io::Error) -> String {
        en: "cannot connect to {target}: {source}",
        es: "no se puede conectar a {target}: {source}",
    }
    fn timed_out(what: &str) -> String {
        en: "{what}: timed out",
        es: "{what}: se agotó el tiempo de espera",
    }
    fn interrupted(what: &str) -> String {
        en: "{what}: interrupted",
        es: "{what}: interrumpido",
    }
    fn max_time(what: &str, secs: f64) -> String {
        en: "{what}: gave up: the total time limit of {secs} s passed (--max-time)",
        es: "{what}: abandonado: pasó el tiempo total límite de {secs} s (--max-time)",
    }
    fn listing_too_long(request: &str, names: u64, bytes: u64) -> String {
        en: "{request}: the listing is longer than this client holds \
             (more than {names} names or {bytes} bytes); `hftp ls -U` prints any number",
        es: "{request}: el listado es más largo de lo que este cliente guarda \
             (más de {names} nombres o {bytes} bytes); `hftp ls -U` imprime cualquier cantidad",
    }
    fn output(source: &io::Error) -> String {
        en: "writing the output: {source}",
        es: "al escribir la salida: {source}",
    }
    fn exists(path: Display<'_>) -> String {
        en: "{path} already exists (use -f/--force to overwrite)",
        es: "{path} ya existe (use -f/--force para sobrescribirlo)",
    }
    fn part_mismatch(part: Display<'_>, held: &str, wanted: &str) -> String {
        en: "{part} holds {held}, not {wanted}; kept: use --continue to resume it from \
             this server anyway (same name and size), or --force to start over",
        es: "{part} contiene {held}, no {wanted}; se conserva: use --continue para reanudarlo \
             desde este servidor de todos modos (mismo nombre y tamaño), o --force para empezar de nuevo",
    }
    /// `verb` from [`VERBS`].
    fn local(verb: &str, path: Display<'_>, source: &io::Error) -> String {
        en: "cannot {verb} {path}: {source}",
        es: "no se puede {verb} {path}: {source}",
    }
    fn too_large_for_room(name: &str, size: u64, size_iec: &str, room: &str, dir: Display<'_>) -> String {
        en: "{name} is {size} bytes ({size_iec}): more than the {room} free in {dir}; nothing was written",
        es: "{name} tiene {size} bytes ({size_iec}): más que los {room} libres en {dir}; no se escribió nada",
    }
    fn too_large_for_fs(name: &str, size: u64, size_iec: &str, dir: Display<'_>) -> String {
        en: "{name} is {size} bytes ({size_iec}): larger than the file system of {dir} can hold \
             in one file; nothing was written",
        es: "{name} tiene {size} bytes ({size_iec}): más de lo que el sistema de archivos de {dir} \
             admite en un archivo; no se escribió nada",
    }
    fn changed(name: &str, before: u64, after: u64) -> String {
        en: "{name}: the remote file changed size during the download ({before} -> {after} bytes)",
        es: "{name}: el archivo remoto cambió de tamaño durante la descarga ({before} -> {after} bytes)",
    }
    /// After the message of a download that was superseded.
    fn part_removed(part: Display<'_>) -> String {
        en: "; removed {part}: its bytes are of a version the server no longer has",
        es: "; se borró {part}: sus bytes son de una versión que el servidor ya no tiene",
    }
    fn kept_interrupted(part: Display<'_>) -> String {
        en: "interrupted: the finished segments are kept in {part}; \
             run the same command again to resume",
        es: "interrumpido: los segmentos terminados se conservan en {part}; \
             ejecute el mismo comando otra vez para reanudar",
    }
    fn kept(cause: &str, part: Display<'_>) -> String {
        en: "{cause}; partial download kept in {part}: run the same command again to resume",
        es: "{cause}; la descarga parcial se conserva en {part}: ejecute el mismo comando \
             otra vez para reanudar",
    }
    /// `names` from [`Lang::names_one`] or [`Lang::names_many`].
    fn no_match(pattern: &str, names: &str) -> String {
        en: "get {pattern}: no file on the server matches {pattern} (its listing has {names})",
        es: "get {pattern}: ningún archivo del servidor coincide con {pattern} \
             (su listado tiene {names})",
    }
    fn names_one() -> String {
        en: "1 name",
        es: "1 nombre",
    }
    fn names_many(listed: usize) -> String {
        en: "{listed} names",
        es: "{listed} nombres",
    }
    fn mirror_has(size: u64, name: &str) -> String {
        en: "has {size} bytes of {name}",
        es: "tiene {size} bytes de {name}",
    }
    fn mirror_lacks(name: &str) -> String {
        en: "has no file {name}",
        es: "no tiene el archivo {name}",
    }
    /// `has` from [`Lang::mirror_has`] or [`Lang::mirror_lacks`].
    fn mirrors_differ(mirror: &str, has: &str, reference: &str, expected: u64) -> String {
        en: "mirrors disagree: {mirror} {has}, {reference} has {expected} bytes; \
             leave out the mirror that differs",
        es: "los espejos no coinciden: {mirror} {has}, {reference} tiene {expected} bytes; \
             deje fuera el espejo que difiere",
    }
}

/// The local file operations of [`Error::Local`] as (English, Spanish):
/// the English is what the error carries, and stays when it has no row.
const VERBS: &[(&str, &str)] = &[
    ("create", "crear"),
    ("create the directory", "crear el directorio"),
    ("download to", "descargar en"),
    ("open", "abrir"),
    ("write", "escribir"),
    ("read", "leer"),
    ("rename", "renombrar"),
    ("rename to", "renombrar a"),
    ("resize", "cambiar el tamaño de"),
    ("inspect", "examinar"),
    ("flush", "volcar a disco"),
    ("remove", "borrar"),
    ("use", "usar"),
];

fn verb(what: &'static str, lang: Lang) -> &'static str {
    match lang {
        Lang::En => what,
        Lang::Es => VERBS
            .iter()
            .find(|(en, _)| *en == what)
            .map_or(what, |(_, es)| es),
    }
}

/// `err` in `lang`, one line.
pub(super) fn message(err: &Error, lang: Lang) -> String {
    match err {
        // Usage messages are written where the bad input is found, in English.
        Error::Usage(msg) => msg.clone(),
        Error::Internal(msg) => lang.internal(msg),
        Error::Status { request, status } => {
            let what = match status {
                Status::FileNotFound => lang.no_such_file(),
                Status::OffsetExceedsFileSize => lang.range_outside(),
                _ => "",
            };
            lang.status(request, status, what)
        }
        Error::Protocol { request, error } => lang.protocol(request, error),
        Error::Closed { request, error } => format!("{request}: {error}"),
        Error::NotHftp {
            peer,
            request,
            sent,
        } => lang.not_hftp(peer, request, sent),
        Error::Connect { target, source } => lang.connect(target, source),
        Error::Proxy(msg) => format!("proxy: {msg}"),
        Error::Timeout { what } => lang.timed_out(what),
        Error::Interrupted { what } => lang.interrupted(what),
        Error::MaxTime { what, limit } => lang.max_time(what, limit.as_secs_f64()),
        Error::ListingTooLong {
            request,
            names,
            bytes,
        } => lang.listing_too_long(request, *names, *bytes),
        Error::Network { what, source } if is_timeout(source) => lang.timed_out(what),
        Error::Network { what, source } => format!("{what}: {source}"),
        Error::Output(source) => lang.output(source),
        Error::Exists(path) => lang.exists(path.display()),
        Error::PartMismatch { part, held, wanted } => {
            lang.part_mismatch(part.display(), held, wanted)
        }
        Error::Local { path, what, source } => lang.local(verb(what, lang), path.display(), source),
        Error::TooLarge {
            name,
            size,
            dir,
            room,
        } => match room {
            Some(room) => {
                lang.too_large_for_room(name, *size, &iec(*size), &iec(*room), dir.display())
            }
            None => lang.too_large_for_fs(name, *size, &iec(*size), dir.display()),
        },
        Error::Changed {
            name,
            before,
            after,
        } => lang.changed(name, *before, *after),
        Error::Superseded {
            source,
            part,
            removed,
        } => {
            let mut text = message(source, lang);
            if *removed {
                text.push_str(&lang.part_removed(part.display()));
            }
            text
        }
        Error::Kept { source, part } => match source.as_ref() {
            Error::Interrupted { .. } => lang.kept_interrupted(part.display()),
            other => lang.kept(&message(other, lang), part.display()),
        },
        Error::NoMatch { pattern, listed } => {
            let names = match listed {
                1 => lang.names_one(),
                _ => lang.names_many(*listed),
            };
            lang.no_match(pattern, &names)
        }
        Error::MirrorsDiffer {
            name,
            mirror,
            size,
            reference,
            expected,
        } => {
            let has = match size {
                Some(size) => lang.mirror_has(*size, name),
                None => lang.mirror_lacks(name),
            };
            lang.mirrors_differ(mirror, &has, reference, *expected)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn status_texts_stay_as_the_protocol_writes_them() {
        let err = Error::Status {
            request: "get_metadata nada.txt".into(),
            status: Status::FileNotFound,
        };
        assert_eq!(
            message(&err, Lang::Es),
            "get_metadata nada.txt: el servidor respondió 202 FILE NOT FOUND (no existe el archivo)"
        );
    }

    fn os(kind: io::ErrorKind) -> io::Error {
        io::Error::new(kind, "OSERR")
    }

    /// One error of each kind, and of each shape of its message.
    fn samples() -> Vec<Error> {
        let changed = || Error::Changed {
            name: "N".into(),
            before: 1,
            after: 2,
        };
        let mut errors = vec![
            Error::Internal("INTERNAL".into()),
            Error::Protocol {
                request: "REQ".into(),
                error: ReplyError::AfterError,
            },
            Error::NotHftp {
                peer: "PEER".into(),
                request: "REQ".into(),
                sent: "HTTP/1.1".into(),
            },
            Error::Connect {
                target: "T:1".into(),
                source: os(io::ErrorKind::ConnectionRefused),
            },
            Error::Timeout { what: "W".into() },
            Error::Network {
                what: "W".into(),
                source: os(io::ErrorKind::TimedOut),
            },
            Error::Interrupted { what: "W".into() },
            Error::MaxTime {
                what: "W".into(),
                limit: Duration::from_millis(2500),
            },
            Error::ListingTooLong {
                request: "REQ".into(),
                names: 10,
                bytes: 20,
            },
            Error::Output(os(io::ErrorKind::BrokenPipe)),
            Error::Exists("/out".into()),
            Error::PartMismatch {
                part: "a.part".into(),
                held: "HELD".into(),
                wanted: "WANTED".into(),
            },
            Error::TooLarge {
                name: "N".into(),
                size: 5_000_000,
                dir: "/d".into(),
                room: Some(1_000_000),
            },
            Error::TooLarge {
                name: "N".into(),
                size: 5_000_000,
                dir: "/d".into(),
                room: None,
            },
            changed(),
            Error::Superseded {
                source: Box::new(changed()),
                part: "n.part".into(),
                removed: true,
            },
            Error::Kept {
                source: Box::new(Error::Interrupted { what: "W".into() }),
                part: "k.part".into(),
            },
            Error::Kept {
                source: Box::new(changed()),
                part: "k.part".into(),
            },
            Error::MirrorsDiffer {
                name: "N".into(),
                mirror: "M".into(),
                size: Some(5),
                reference: "R".into(),
                expected: 6,
            },
            Error::MirrorsDiffer {
                name: "N".into(),
                mirror: "M".into(),
                size: None,
                reference: "R".into(),
                expected: 6,
            },
        ];
        for status in [Status::FileNotFound, Status::OffsetExceedsFileSize] {
            errors.push(Error::Status {
                request: "REQ".into(),
                status,
            });
        }
        for (what, _) in VERBS {
            errors.push(Error::Local {
                path: "/p".into(),
                what,
                source: os(io::ErrorKind::PermissionDenied),
            });
        }
        for listed in [1, 2] {
            errors.push(Error::NoMatch {
                pattern: "*.txt".into(),
                listed,
            });
        }
        errors
    }

    /// Every message renders in both languages, with no hole left unfilled
    /// and no Spanish that is a copy of the English; `Display` is the
    /// English. (Usage, proxy and closed-connection messages, and OS
    /// errors, are the same in every language and are not here.)
    #[test]
    fn every_message_has_both_languages() {
        for err in samples() {
            let (en, es) = (message(&err, Lang::En), err.in_spanish());
            assert_eq!(err.to_string(), en);
            for text in [&en, &es] {
                assert!(!text.is_empty() && !text.contains(['{', '}']), "{text:?}");
            }
            assert_ne!(en, es, "the Spanish is the English");
        }
    }
}
