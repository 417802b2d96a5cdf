//! TLS around HFTP (`hftps://`, `--tls`): HFTP itself is unchanged, TLS
//! wraps the TCP connection as it wraps HTTP in HTTPS. rustls with the
//! `ring` provider, TLS 1.3 and 1.2, ALPN `hftp`, SNI the target's host
//! name (or its IP address, which rustls checks against the certificate's
//! IP names).
//!
//! [`Tls`] says what to trust and who we are: the system's CAs (the
//! default), the CAs of a PEM file (`--cacert`), or nothing at all
//! (`--insecure`); optionally a client certificate and key for mutual TLS.
//! The rustls configuration is built once, on first use, and shared by
//! every connection of the endpoint. `SSLKEYLOGFILE` in the environment
//! makes every connection append its secrets there, as curl and browsers
//! do, so that Wireshark can decrypt a capture.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct,
    RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::{self, PemObject};

use crate::error::{Error, Result};

/// The ALPN protocol name HFTP over TLS offers.
pub const ALPN: &[u8] = b"hftp";

/// Whose signature makes a server's certificate good.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Trust {
    /// The CAs the system trusts (what curl trusts: `/etc/ssl/certs`,
    /// or `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    #[default]
    System,
    /// The CA certificates of this PEM file (`--cacert`): a course's own
    /// CA, or a self-signed server certificate itself.
    CaFile(PathBuf),
    /// Nothing is checked (`--insecure`): not the signer, not the name,
    /// not the dates. The handshake's own signatures still are.
    Insecure,
}

/// A client certificate (its chain, leaf first) and its private key, PEM
/// files, for servers that ask for one (mutual TLS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How to speak TLS to a server: whom to trust, who we are.
///
/// ```
/// use hftp_client::{Endpoint, Tls, Trust};
/// let e = Endpoint::parse("localhost:19500")
///     .unwrap()
///     .with_tls(Some(Tls::new().with_trust(Trust::CaFile("ca.pem".into()))));
/// assert!(e.tls.is_some());
/// ```
#[derive(Clone, Default)]
pub struct Tls {
    trust: Trust,
    identity: Option<Identity>,
    /// Built on first use, shared by every clone (every connection).
    config: Arc<Mutex<Option<Arc<ClientConfig>>>>,
}

impl PartialEq for Tls {
    fn eq(&self, other: &Self) -> bool {
        self.trust == other.trust && self.identity == other.identity
    }
}
impl Eq for Tls {}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Paths only: nothing read from the files.
        f.debug_struct("Tls")
            .field("trust", &self.trust)
            .field("identity", &self.identity)
            .finish()
    }
}

impl Tls {
    /// Trust the system's CAs, no client certificate.
    pub fn new() -> Tls {
        Tls::default()
    }

    pub fn with_trust(self, trust: Trust) -> Tls {
        Tls {
            trust,
            identity: self.identity,
            config: Arc::default(),
        }
    }

    pub fn with_identity(self, identity: Option<Identity>) -> Tls {
        Tls {
            trust: self.trust,
            identity,
            config: Arc::default(),
        }
    }

    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// Whether the server's certificate goes unchecked (`--insecure`).
    pub fn is_insecure(&self) -> bool {
        self.trust == Trust::Insecure
    }

    /// The rustls configuration: read from the files (and the system's
    /// store) the first time, then shared.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        let mut slot = self.config.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(config) = slot.as_ref() {
            return Ok(Arc::clone(config));
        }
        let config = Arc::new(self.build()?);
        *slot = Some(Arc::clone(&config));
        Ok(config)
    }

    fn build(&self) -> Result<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::Internal(format!("TLS versions: {e}")))?;
        let builder = match &self.trust {
            Trust::System => builder.with_root_certificates(system_roots()?),
            Trust::CaFile(path) => builder.with_root_certificates(file_roots(path)?),
            Trust::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerifier(provider))),
        };
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some(id) => {
                let chain = read_certs(&id.cert, PemRole::ClientCert)?;
                let key = read_key(&id.key)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| Error::TlsFile {
                        role: PemRole::ClientKey,
                        path: id.key.clone(),
                        problem: match e {
                            rustls::Error::InconsistentKeys(_) => PemProblem::KeyMismatch,
                            other => PemProblem::Unusable(other.to_string()),
                        },
                    })?
            }
        };
        config.alpn_protocols = vec![ALPN.to_vec()];
        // Does nothing unless SSLKEYLOGFILE names a file.
        config.key_log = Arc::new(rustls::KeyLogFile::new());
        Ok(config)
    }
}

/// Which file of the TLS options a [`PemProblem`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PemRole {
    /// `--cacert`
    CaCert,
    /// `--cert`
    ClientCert,
    /// `--key`
    ClientKey,
}

/// What is wrong with a PEM file of the TLS options. Never says anything
/// read from a key file.
#[derive(Debug)]
pub enum PemProblem {
    /// It could not be read.
    Io(io::Error),
    /// It holds no `CERTIFICATE` block.
    NoCertificate,
    /// It holds no private key block.
    NoKey,
    /// It is not valid PEM (what was wrong, for certificate files only).
    Malformed(Option<String>),
    /// The key is not the certificate's.
    KeyMismatch,
    /// rustls cannot use it (an unsupported key type, say).
    Unusable(String),
}

fn pem_problem(err: pem::Error, role: PemRole) -> PemProblem {
    match err {
        pem::Error::Io(e) => PemProblem::Io(e),
        pem::Error::NoItemsFound if role == PemRole::ClientKey => PemProblem::NoKey,
        pem::Error::NoItemsFound => PemProblem::NoCertificate,
        // A key file's contents stay out of every message.
        _ if role == PemRole::ClientKey => PemProblem::Malformed(None),
        other => PemProblem::Malformed(Some(other.to_string())),
    }
}

fn read_certs(path: &Path, role: PemRole) -> Result<Vec<CertificateDer<'static>>> {
    let bad = |problem| Error::TlsFile {
        role,
        path: path.to_owned(),
        problem,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(pem_problem(e, role)))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(pem_problem(e, role)))?;
    if certs.is_empty() {
        return Err(bad(PemProblem::NoCertificate));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| Error::TlsFile {
        role: PemRole::ClientKey,
        path: path.to_owned(),
        problem: pem_problem(e, PemRole::ClientKey),
    })
}

fn file_roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path, PemRole::CaCert)? {
        roots.add(cert).map_err(|e| Error::TlsFile {
            role: PemRole::CaCert,
            path: path.to_owned(),
            problem: PemProblem::Unusable(e.to_string()),
        })?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(Error::TlsSystemStore(why));
    }
    Ok(roots)
}

/// `--insecure`: any certificate, any name, any date. The signatures of
/// the handshake are still checked (the server must hold the key of the
/// certificate it shows), as curl's `-k` does.
#[derive(Debug)]
struct NoVerifier(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The name a server's certificate must carry: the host as written (a
/// DNS name, or an IP address, checked against the certificate's IP
/// names).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(host.to_owned())
        .map_err(|_| Error::Usage(format!("{host:?} is not a name TLS can check")))
}

/// Why TLS failed, in terms a user can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsProblem {
    /// No CA we trust signed the server's certificate.
    Untrusted,
    /// The certificate is for other names (`presented`, maybe none), not `host`.
    WrongName {
        host: String,
        presented: Vec<String>,
    },
    /// The certificate expired (on this date, `YYYY-MM-DD`, when known).
    Expired { on: Option<String> },
    /// The certificate is not valid yet.
    NotYetValid,
    /// The server asked for a client certificate and none was given.
    ClientCertRequired,
    /// The server refused our client certificate (with this alert).
    ClientCertRefused { alert: String },
    /// The server refused the handshake (this alert) and we gave no
    /// client certificate: it may want one.
    Refused { alert: String },
    /// The peer does not speak TLS: what it did instead.
    NotTls(NotTls),
    /// Anything else, as rustls says it.
    Other(String),
}

/// What a peer that is not a TLS server did with our `ClientHello`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotTls {
    /// Answered bytes that are no TLS record (escaped, the first few).
    Sent(String),
    /// Answered bytes that are no TLS record (not kept).
    Garbled,
    Closed,
    Reset,
    /// Said nothing for this long.
    Silent(Duration),
}

/// The rustls error inside an I/O error of a TLS stream, if that is what it is.
pub(crate) fn rustls_error(err: &io::Error) -> Option<&rustls::Error> {
    err.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Whether an I/O error of a TLS stream is TLS's own (an alert, a bad
/// record), to be read with [`error_of`].
pub fn is_tls_error(err: &io::Error) -> bool {
    rustls_error(err).is_some()
}

/// What a rustls error means for the user; `identity` says whether we
/// had a client certificate to give.
pub fn classify(err: &rustls::Error, identity: bool) -> TlsProblem {
    use rustls::Error as E;
    match err {
        E::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                TlsProblem::Untrusted
            }
            CertificateError::NotValidForName => TlsProblem::WrongName {
                host: String::new(),
                presented: Vec::new(),
            },
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => TlsProblem::WrongName {
                host: expected.to_str().into_owned(),
                presented: presented.iter().map(|n| bare_name(n)).collect(),
            },
            CertificateError::Expired => TlsProblem::Expired { on: None },
            CertificateError::ExpiredContext { not_after, .. } => TlsProblem::Expired {
                on: Some(date(not_after.as_secs())),
            },
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                TlsProblem::NotYetValid
            }
            _ => TlsProblem::Other(err.to_string()),
        },
        E::AlertReceived(AlertDescription::CertificateRequired) => TlsProblem::ClientCertRequired,
        E::AlertReceived(alert) if identity && is_certificate_alert(*alert) => {
            TlsProblem::ClientCertRefused {
                alert: alert_name(*alert),
            }
        }
        E::AlertReceived(alert @ AlertDescription::HandshakeFailure) if !identity => {
            TlsProblem::Refused {
                alert: alert_name(*alert),
            }
        }
        _ => TlsProblem::Other(err.to_string()),
    }
}

/// A name of a certificate as rustls presents it (`DnsName("localhost")`,
/// `IpAddress(127.0.0.1)`), bare.
fn bare_name(presented: &str) -> String {
    let inner = ["DnsName(", "IpAddress(", "URI("]
        .iter()
        .find_map(|kind| presented.strip_prefix(kind)?.strip_suffix(')'))
        .unwrap_or(presented);
    inner.trim_matches('"').to_owned()
}

/// Alerts a server sends about a client certificate it does not accept.
fn is_certificate_alert(alert: AlertDescription) -> bool {
    matches!(
        alert,
        AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied
            | AlertDescription::DecryptError
            | AlertDescription::HandshakeFailure
    )
}

/// An alert as RFC 8446 names it (`unknown_ca`).
fn alert_name(alert: AlertDescription) -> String {
    let camel = format!("{alert:?}");
    let mut out = String::new();
    let chars: Vec<char> = camel.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
        let prev_lower = i > 0 && chars[i - 1].is_ascii_lowercase();
        if c.is_ascii_uppercase() && i > 0 && (prev_lower || next_lower) {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// `YYYY-MM-DD` of a Unix time (UTC).
fn date(secs: u64) -> String {
    // Howard Hinnant's days-to-civil.
    let days = (secs / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// What an I/O error of a TLS connection to `peer` means, for a caller
/// that drives the session itself (the load generator's loop):
/// `handshaking` says whether the handshake was still under way (a
/// non-TLS answer then means a server that does not speak TLS), `identity`
/// whether we had a client certificate to give.
pub fn error_of(peer: &str, err: io::Error, handshaking: bool, identity: bool) -> Error {
    let tls = |problem| Error::Tls {
        peer: peer.to_owned(),
        problem,
    };
    match rustls_error(&err) {
        Some(
            rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::PeerSentOversizedRecord,
        ) if handshaking => tls(TlsProblem::NotTls(NotTls::Garbled)),
        Some(e) => tls(classify(e, identity)),
        None if handshaking && err.kind() == io::ErrorKind::UnexpectedEof => {
            tls(TlsProblem::NotTls(NotTls::Closed))
        }
        None if handshaking && err.kind() == io::ErrorKind::ConnectionReset => {
            tls(TlsProblem::NotTls(NotTls::Reset))
        }
        None => Error::Network {
            what: format!("{peer}: TLS"),
            source: err,
        },
    }
}

/// A socket that keeps the first bytes read from it: when the handshake
/// fails on something that is not TLS, they say what the peer speaks.
struct Recording<'a> {
    tcp: &'a mut TcpStream,
    first: Vec<u8>,
}

const RECORDED: usize = 48;

impl Read for Recording<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.tcp.read(buf)?;
        let room = RECORDED.saturating_sub(self.first.len()).min(n);
        self.first.extend_from_slice(&buf[..room]);
        Ok(n)
    }
}

impl Write for Recording<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// Runs the client side of the handshake on `tcp` (its timeouts set):
/// returns the session once it is complete. `peer` names the server in
/// errors; `wait` is the timeout in force, for the message.
pub(crate) fn handshake(
    tls: &Tls,
    host: &str,
    peer: &str,
    mut tcp: TcpStream,
    wait: Option<Duration>,
) -> Result<rustls::StreamOwned<ClientConnection, TcpStream>> {
    let config = tls.client_config()?;
    let mut conn = ClientConnection::new(config, server_name(host)?)
        .map_err(|e| Error::Internal(format!("TLS session: {e}")))?;
    let identity = tls.identity.is_some();
    let mut wire = Recording {
        tcp: &mut tcp,
        first: Vec::new(),
    };
    let mut received_tls = false;
    while conn.is_handshaking() {
        match conn.complete_io(&mut wire) {
            Ok(_) => received_tls |= !wire.first.is_empty(),
            Err(e) => {
                let not_tls = |how| Error::Tls {
                    peer: peer.to_owned(),
                    problem: TlsProblem::NotTls(how),
                };
                let answered = !wire.first.is_empty();
                return Err(match rustls_error(&e) {
                    Some(
                        rustls::Error::InvalidMessage(_)
                        | rustls::Error::InappropriateMessage { .. }
                        | rustls::Error::PeerSentOversizedRecord,
                    ) if !received_tls => {
                        not_tls(NotTls::Sent(wire.first.escape_ascii().to_string()))
                    }
                    Some(err) => Error::Tls {
                        peer: peer.to_owned(),
                        problem: classify(err, identity),
                    },
                    None if crate::error::is_timeout(&e) && !answered => {
                        not_tls(NotTls::Silent(wait.unwrap_or_default()))
                    }
                    None if e.kind() == io::ErrorKind::UnexpectedEof && !received_tls => {
                        not_tls(NotTls::Closed)
                    }
                    None if e.kind() == io::ErrorKind::ConnectionReset && !received_tls => {
                        not_tls(NotTls::Reset)
                    }
                    None if crate::error::is_timeout(&e) => Error::Timeout {
                        what: format!("{peer}: TLS handshake"),
                    },
                    None => Error::Network {
                        what: format!("{peer}: TLS handshake"),
                        source: e,
                    },
                });
            }
        }
    }
    Ok(rustls::StreamOwned::new(conn, tcp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(978_307_200), "2001-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(4_102_444_799), "2099-12-31");
    }

    #[test]
    fn names_are_bare() {
        assert_eq!(bare_name("DnsName(\"localhost\")"), "localhost");
        assert_eq!(bare_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(bare_name("other"), "other");
    }

    #[test]
    fn alert_names() {
        assert_eq!(alert_name(AlertDescription::UnknownCA), "unknown_ca");
        assert_eq!(
            alert_name(AlertDescription::CertificateRequired),
            "certificate_required"
        );
        assert_eq!(
            alert_name(AlertDescription::BadCertificate),
            "bad_certificate"
        );
    }

    #[test]
    fn problems() {
        let cert = |e| rustls::Error::InvalidCertificate(e);
        assert_eq!(
            classify(&cert(CertificateError::UnknownIssuer), false),
            TlsProblem::Untrusted
        );
        assert_eq!(
            classify(&cert(CertificateError::Expired), false),
            TlsProblem::Expired { on: None }
        );
        assert_eq!(
            classify(
                &rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
                false
            ),
            TlsProblem::ClientCertRequired
        );
        assert_eq!(
            classify(
                &rustls::Error::AlertReceived(AlertDescription::UnknownCA),
                true
            ),
            TlsProblem::ClientCertRefused {
                alert: "unknown_ca".into()
            }
        );
        assert!(matches!(
            classify(
                &rustls::Error::AlertReceived(AlertDescription::UnknownCA),
                false
            ),
            TlsProblem::Other(_)
        ));
    }

    #[test]
    fn missing_files_are_named() {
        let tls = Tls::new().with_trust(Trust::CaFile("/nonexistent/ca.pem".into()));
        let err = tls.client_config().unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
