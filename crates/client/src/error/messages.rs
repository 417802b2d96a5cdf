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
use crate::tls::{NotTls, PemProblem, PemRole, TlsProblem};

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
    fn tls_untrusted(peer: &str) -> String {
        en: "{peer}: the server's certificate is not trusted: no CA this client trusts signed it; \
             give the server's CA with --cacert FILE, or install that CA in the system's store",
        es: "{peer}: el certificado del servidor no es de confianza: no lo firmó ninguna CA en la \
             que este cliente confíe; indique la CA del servidor con --cacert ARCHIVO, o instale \
             esa CA en el almacén del sistema",
    }
    /// `names` from [`Lang::tls_names`] or [`Lang::tls_no_names`].
    fn tls_wrong_name(peer: &str, host: &str, names: &str) -> String {
        en: "{peer}: the server's certificate is for another name ({names}), not {host}: \
             connect with a name the certificate lists",
        es: "{peer}: el certificado del servidor es para otro nombre ({names}), no para {host}: \
             conéctese con un nombre que figure en el certificado",
    }
    fn tls_names(names: &str) -> String {
        en: "it lists {names}",
        es: "lista {names}",
    }
    fn tls_no_names() -> String {
        en: "no name it lists matches",
        es: "ningún nombre que lista coincide",
    }
    /// `on` from [`Lang::tls_on`], or empty.
    fn tls_expired(peer: &str, on: &str) -> String {
        en: "{peer}: the server's certificate expired{on}: the server must renew it \
             (or this machine's clock is wrong)",
        es: "{peer}: el certificado del servidor venció{on}: el servidor debe renovarlo \
             (o el reloj de esta máquina está mal)",
    }
    fn tls_on(date: &str) -> String {
        en: " on {date}",
        es: " el {date}",
    }
    fn tls_not_yet_valid(peer: &str) -> String {
        en: "{peer}: the server's certificate is not valid yet: check this machine's clock",
        es: "{peer}: el certificado del servidor todavía no es válido: revise el reloj de esta máquina",
    }
    fn tls_cert_required(peer: &str) -> String {
        en: "{peer}: the server asks for a client certificate (mutual TLS) and none was given: \
             give yours with --cert FILE --key FILE",
        es: "{peer}: el servidor pide un certificado de cliente (TLS mutuo) y no se dio ninguno: \
             indique el suyo con --cert ARCHIVO --key ARCHIVO",
    }
    fn tls_cert_refused(peer: &str, alert: &str) -> String {
        en: "{peer}: the server refused our client certificate ({alert}): it must be signed by \
             a CA the server trusts, and be valid now",
        es: "{peer}: el servidor rechazó nuestro certificado de cliente ({alert}): debe estar \
             firmado por una CA en la que el servidor confíe, y ser válido ahora",
    }
    fn tls_refused(peer: &str, alert: &str) -> String {
        en: "{peer}: the server refused the TLS handshake ({alert}); if it requires a client \
             certificate, give one with --cert FILE --key FILE",
        es: "{peer}: el servidor rechazó el saludo TLS ({alert}); si exige un certificado de \
             cliente, indique uno con --cert ARCHIVO --key ARCHIVO",
    }
    /// `how` from [`Lang::tls_sent`], [`Lang::tls_closed`], ...
    fn tls_not_tls(peer: &str, how: &str) -> String {
        en: "the server at {peer} did not answer the TLS handshake ({how}): is it serving TLS? \
             try without --tls / with hftp://",
        es: "el servidor en {peer} no respondió al saludo TLS ({how}): ¿sirve TLS? \
             pruebe sin --tls / con hftp://",
    }
    fn tls_sent(sent: &str) -> String {
        en: "it sent \"{sent}\"",
        es: "envió \"{sent}\"",
    }
    fn tls_garbled() -> String {
        en: "it answered bytes that are not TLS",
        es: "respondió bytes que no son TLS",
    }
    fn tls_closed() -> String {
        en: "it closed the connection",
        es: "cerró la conexión",
    }
    fn tls_reset() -> String {
        en: "it reset the connection",
        es: "reinició la conexión",
    }
    fn tls_silent(secs: f64) -> String {
        en: "no answer within {secs} s",
        es: "sin respuesta en {secs} s",
    }
    fn tls_other(peer: &str, error: &str) -> String {
        en: "{peer}: TLS failed: {error}",
        es: "{peer}: falló TLS: {error}",
    }
    fn speaks_tls(peer: &str, request: &str) -> String {
        en: "{peer} answered {request} in TLS: it serves HFTP over TLS; use hftps://{peer}/ or --tls",
        es: "{peer} respondió a {request} en TLS: sirve HFTP sobre TLS; use hftps://{peer}/ o --tls",
    }
    /// `role` from [`Lang::pem_role`], `why` from [`Lang::pem_problem`].
    fn tls_file(role: &str, path: Display<'_>, why: &str) -> String {
        en: "cannot use {path} as {role}: {why}",
        es: "no se puede usar {path} como {role}: {why}",
    }
    fn role_ca() -> &'static str {
        en: "the CA certificates (--cacert)",
        es: "los certificados de CA (--cacert)",
    }
    fn role_cert() -> &'static str {
        en: "the client certificate (--cert)",
        es: "el certificado de cliente (--cert)",
    }
    fn role_key() -> &'static str {
        en: "the client key (--key)",
        es: "la clave de cliente (--key)",
    }
    fn pem_no_cert() -> &'static str {
        en: "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        es: "no contiene ningún certificado PEM (-----BEGIN CERTIFICATE-----)",
    }
    fn pem_no_key() -> &'static str {
        en: "it holds no PEM private key (-----BEGIN PRIVATE KEY-----, or EC or RSA); \
             is it the certificate?",
        es: "no contiene ninguna clave privada PEM (-----BEGIN PRIVATE KEY-----, o EC o RSA); \
             ¿es el certificado?",
    }
    fn pem_malformed() -> &'static str {
        en: "it is not a valid PEM file",
        es: "no es un archivo PEM válido",
    }
    fn pem_key_mismatch() -> &'static str {
        en: "the key is not the one of the certificate (--cert)",
        es: "la clave no es la del certificado (--cert)",
    }
    fn tls_system_store(why: &str) -> String {
        en: "no trusted CA in the system's store ({why}): install the package ca-certificates, \
             or give the server's CA with --cacert FILE",
        es: "no hay ninguna CA de confianza en el almacén del sistema ({why}): instale el paquete \
             ca-certificates, o indique la CA del servidor con --cacert ARCHIVO",
    }
    fn insecure() -> &'static str {
        en: "WARNING: --insecure: the server's certificate is not checked; anyone on the path \
             can read and change this transfer",
        es: "AVISO: --insecure: no se verifica el certificado del servidor; cualquiera en el \
             camino puede leer y cambiar esta transferencia",
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

/// The `--insecure` warning in `lang`.
pub(super) fn insecure_warning(lang: Lang) -> &'static str {
    lang.insecure()
}

fn tls_problem(peer: &str, problem: &TlsProblem, lang: Lang) -> String {
    match problem {
        TlsProblem::Untrusted => lang.tls_untrusted(peer),
        TlsProblem::WrongName { host, presented } => {
            let names = if presented.is_empty() {
                lang.tls_no_names()
            } else {
                lang.tls_names(&presented.join(", "))
            };
            let host = match host.as_str() {
                "" => peer.rsplit_once(':').map_or(peer, |(h, _)| h),
                host => host,
            };
            lang.tls_wrong_name(peer, host, &names)
        }
        TlsProblem::Expired { on } => {
            let on = on.as_deref().map(|d| lang.tls_on(d)).unwrap_or_default();
            lang.tls_expired(peer, &on)
        }
        TlsProblem::NotYetValid => lang.tls_not_yet_valid(peer),
        TlsProblem::ClientCertRequired => lang.tls_cert_required(peer),
        TlsProblem::ClientCertRefused { alert } => lang.tls_cert_refused(peer, alert),
        TlsProblem::Refused { alert } => lang.tls_refused(peer, alert),
        TlsProblem::NotTls(how) => {
            let how = match how {
                NotTls::Sent(sent) => lang.tls_sent(sent),
                NotTls::Garbled => lang.tls_garbled(),
                NotTls::Closed => lang.tls_closed(),
                NotTls::Reset => lang.tls_reset(),
                NotTls::Silent(wait) => lang.tls_silent(wait.as_secs_f64()),
            };
            lang.tls_not_tls(peer, &how)
        }
        TlsProblem::Other(error) => lang.tls_other(peer, error),
    }
}

fn pem_problem(problem: &PemProblem, lang: Lang) -> String {
    match problem {
        PemProblem::Io(source) => source.to_string(),
        PemProblem::NoCertificate => lang.pem_no_cert().to_owned(),
        PemProblem::NoKey => lang.pem_no_key().to_owned(),
        PemProblem::Malformed(None) => lang.pem_malformed().to_owned(),
        PemProblem::Malformed(Some(why)) => format!("{} ({why})", lang.pem_malformed()),
        PemProblem::KeyMismatch => lang.pem_key_mismatch().to_owned(),
        PemProblem::Unusable(why) => why.clone(),
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
        Error::Tls { peer, problem } => tls_problem(peer, problem, lang),
        Error::SpeaksTls { peer, request } => lang.speaks_tls(peer, request),
        Error::TlsFile {
            role,
            path,
            problem,
        } => {
            let role = match role {
                PemRole::CaCert => lang.role_ca(),
                PemRole::ClientCert => lang.role_cert(),
                PemRole::ClientKey => lang.role_key(),
            };
            lang.tls_file(role, path.display(), &pem_problem(problem, lang))
        }
        Error::TlsSystemStore(why) => lang.tls_system_store(why),
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
            Error::SpeaksTls {
                peer: "P:1".into(),
                request: "REQ".into(),
            },
            Error::TlsSystemStore("none found".into()),
        ];
        for problem in [
            TlsProblem::Untrusted,
            TlsProblem::WrongName {
                host: "h".into(),
                presented: vec!["a".into(), "b".into()],
            },
            TlsProblem::WrongName {
                host: String::new(),
                presented: vec![],
            },
            TlsProblem::Expired {
                on: Some("2001-01-01".into()),
            },
            TlsProblem::Expired { on: None },
            TlsProblem::NotYetValid,
            TlsProblem::ClientCertRequired,
            TlsProblem::ClientCertRefused {
                alert: "unknown_ca".into(),
            },
            TlsProblem::Refused {
                alert: "handshake_failure".into(),
            },
            TlsProblem::NotTls(NotTls::Sent("200 NO".into())),
            TlsProblem::NotTls(NotTls::Closed),
            TlsProblem::NotTls(NotTls::Garbled),
            TlsProblem::NotTls(NotTls::Reset),
            TlsProblem::NotTls(NotTls::Silent(Duration::from_secs(3))),
            TlsProblem::Other("E".into()),
        ] {
            errors.push(Error::Tls {
                peer: "P:1".into(),
                problem,
            });
        }
        for role in [PemRole::CaCert, PemRole::ClientCert, PemRole::ClientKey] {
            for problem in [
                PemProblem::NoCertificate,
                PemProblem::NoKey,
                PemProblem::Malformed(None),
                PemProblem::KeyMismatch,
            ] {
                errors.push(Error::TlsFile {
                    role,
                    path: "/f.pem".into(),
                    problem,
                });
            }
        }
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
    fn the_insecure_warning_reads_as_documented() {
        assert_eq!(
            insecure_warning(Lang::En),
            "WARNING: --insecure: the server's certificate is not checked; anyone on the path \
             can read and change this transfer"
        );
        assert_ne!(insecure_warning(Lang::Es), insecure_warning(Lang::En));
    }

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
