//! TLS around HFTP (`--tls-cert`, `--tls-key`, `--tls-client-ca`), without
//! I/O: a layer between the socket's bytes and the connection's.
//!
//! **How it works.** The protocol does not change: the bytes a client
//! sends are TLS records, which [`TlsLayer::receive`] decrypts (rustls'
//! sans-IO `ServerConnection`) and hands to the connection as if they had
//! come from the socket; what the connection would write goes through
//! [`TlsLayer::encrypt`] and the driver sends the records instead. Every
//! driver therefore serves TLS unchanged: it still only moves bytes.
//!
//! **What it costs.** A copy through user space for every byte: a raw
//! slice cannot go out with `sendfile` or `splice` (the kernel would send
//! the file's bytes in clear), so the connection reads the file and
//! encrypts it. Kernel TLS (kTLS) would keep the zero-copy path (the
//! kernel encrypts what `sendfile` moves); [`ktls_available`] says whether
//! this kernel offers it, and the server logs which path it uses. Per
//! connection, rustls keeps its buffers (a few tens of KiB while data
//! moves); a handshake costs a few hundred microseconds of CPU.
//!
//! **Where it breaks.** A client that opens connections and never
//! completes a handshake holds a place until `--tls-handshake-timeout`
//! (counted as refused, as a missing PROXY header is). A certificate
//! renewal needs a restart: the files are read once, at start, before
//! privileges are dropped.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

/// The ALPN protocol name HFTP over TLS announces (clients that offer
/// none are served too).
pub const ALPN: &[u8] = b"hftp";

/// Plaintext encrypted per step: one TLS record holds at most 16 KiB, and
/// this many make one write of about the size the plain path batches.
const ENCRYPT_CHUNK: usize = 64 * 1024;

/// The server's TLS settings, read from PEM files: the certificate chain
/// (leaf first), its key, and, for mutual TLS, the CA whose certificates
/// clients must present. Errors name the file and what is wrong with it.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, String> {
    let named = |path: &Path, what: &str| format!("{}: {what}", path.display());
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| named(cert, &format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| named(cert, &format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(named(
            cert,
            "no certificate in it (expected -----BEGIN CERTIFICATE-----)",
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| named(key, &format!("no usable private key in it: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(ca)
                .map_err(|e| named(ca, &format!("cannot read certificates: {e}")))?;
            for c in certs {
                let c = c.map_err(|e| named(ca, &format!("not a PEM certificate: {e}")))?;
                roots
                    .add(c)
                    .map_err(|e| named(ca, &format!("not a usable CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(named(ca, "no certificate in it"));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| named(ca, &format!("cannot verify clients with it: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, private)
        .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    // Resumption tickets would let a client skip the handshake's CPU; the
    // default in-memory session cache is enough and bounded.
    Ok(Arc::new(config))
}

/// Whether this kernel has kernel TLS (the `tls` upper-layer protocol):
/// then raw slices could stay zero-copy under TLS. Read once at start for
/// the log.
pub fn ktls_available() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp")
        .is_ok_and(|ulps| ulps.split_whitespace().any(|u| u == "tls"))
}

/// What the TLS layer made of the bytes it was given.
pub enum Received {
    /// Go on (plaintext, if any, was handed over).
    Open,
    /// The client ended its side cleanly (`close_notify`).
    Closed,
    /// A fatal TLS error; an alert is queued for the client.
    Failed(String),
}

/// One connection's TLS state and its encrypted output.
pub struct TlsLayer {
    conn: ServerConnection,
    /// Records to send; `written` of them went out.
    out: Vec<u8>,
    written: usize,
    /// The close_notify alert was queued.
    notified: bool,
    /// Plaintext read out of rustls, or read from a file to encrypt.
    scratch: Vec<u8>,
}

impl TlsLayer {
    pub fn new(config: &Arc<ServerConfig>) -> Result<TlsLayer, String> {
        let mut conn = ServerConnection::new(Arc::clone(config)).map_err(|e| e.to_string())?;
        // rustls would take only part of a write past its 64 KiB buffer;
        // bytes read from a pipe cannot be read again, so every write must
        // be taken whole. The layer bounds what it hands over instead: at
        // most one chunk, and the records are drained after each.
        conn.set_buffer_limit(None);
        Ok(TlsLayer {
            conn,
            out: Vec::new(),
            written: 0,
            notified: false,
            scratch: Vec::new(),
        })
    }

    /// Takes records read from the socket; hands each piece of plaintext
    /// to `deliver` as it is decrypted.
    pub fn receive(&mut self, mut bytes: &[u8], mut deliver: impl FnMut(&[u8])) -> Received {
        let mut closed = false;
        while !bytes.is_empty() {
            if let Err(e) = self.conn.read_tls(&mut bytes) {
                return Received::Failed(e.to_string());
            }
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    // The alert that says why goes out before the close.
                    self.queue_records();
                    return Received::Failed(e.to_string());
                }
            };
            let mut left = state.plaintext_bytes_to_read();
            closed |= state.peer_has_closed();
            if left > 0 && self.scratch.len() < 16 * 1024 {
                self.scratch.resize(16 * 1024, 0);
            }
            while left > 0 {
                let want = left.min(self.scratch.len());
                match self.conn.reader().read(&mut self.scratch[..want]) {
                    Ok(0) => break,
                    Ok(n) => {
                        deliver(&self.scratch[..n]);
                        left -= n;
                    }
                    Err(_) => break,
                }
            }
        }
        self.queue_records();
        self.shrink_scratch();
        if closed {
            Received::Closed
        } else {
            Received::Open
        }
    }

    /// Encrypts what it can of `plain` (at most [`ENCRYPT_CHUNK`]); the
    /// records are then [`TlsLayer::pending`]. Returns the bytes taken.
    pub fn encrypt(&mut self, plain: &[u8]) -> usize {
        let take = plain.len().min(ENCRYPT_CHUNK);
        let n = self.conn.writer().write(&plain[..take]).unwrap_or(0);
        self.queue_records();
        n
    }

    /// Reads up to `len` bytes (at most [`ENCRYPT_CHUNK`]) from `fd` at
    /// `offset` (a local file) or from its current position (`None`: a
    /// pipe a store filled), and encrypts them: the copy path that replaces
    /// `sendfile` and `splice` under TLS. Returns the bytes taken; 0 at the
    /// end of the file.
    pub fn encrypt_from(
        &mut self,
        fd: std::os::fd::BorrowedFd<'_>,
        offset: Option<u64>,
        len: usize,
    ) -> io::Result<usize> {
        let want = len.min(ENCRYPT_CHUNK);
        if self.scratch.len() < want {
            self.scratch.resize(want, 0);
        }
        let buf = &mut self.scratch[..want];
        let n = match offset {
            Some(at) => rustix::io::pread(fd, buf, at)?,
            None => rustix::io::read(fd, buf)?,
        };
        let taken = self.conn.writer().write(&self.scratch[..n]).unwrap_or(0);
        self.queue_records();
        Ok(taken)
    }

    /// Queues the close_notify alert, once; true if it was queued now.
    pub fn notify_close(&mut self) -> bool {
        if std::mem::replace(&mut self.notified, true) {
            return false;
        }
        self.conn.send_close_notify();
        self.queue_records();
        true
    }

    /// Records not yet sent.
    pub fn pending(&self) -> &[u8] {
        &self.out[self.written..]
    }

    pub fn has_pending(&self) -> bool {
        self.written < self.out.len()
    }

    /// `n` bytes of [`TlsLayer::pending`] went out.
    pub fn sent(&mut self, n: usize) {
        self.written = (self.written + n).min(self.out.len());
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
            if self.out.capacity() > 2 * ENCRYPT_CHUNK {
                self.out = Vec::new();
            }
        }
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// For the connection's log line, once the handshake is done: the
    /// version, the cipher suite and, with mutual TLS, the client's
    /// certificate subject.
    pub fn describe(&self) -> String {
        let version = self
            .conn
            .protocol_version()
            .and_then(|v| v.as_str())
            .unwrap_or("?");
        let suite = self
            .conn
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("?");
        let mut line = format!("{version} {suite}");
        if let Some(cert) = self.conn.peer_certificates().and_then(|c| c.first()) {
            line += " client=";
            line += &subject(cert).unwrap_or_else(|| "(unreadable subject)".into());
        }
        line
    }

    /// Moves the records rustls made into `out`.
    fn queue_records(&mut self) {
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut self.out).is_err() {
                break;
            }
        }
    }

    /// An idle connection keeps no large buffer.
    fn shrink_scratch(&mut self) {
        if self.scratch.capacity() > ENCRYPT_CHUNK {
            self.scratch = Vec::new();
        }
    }
}

/// The subject of a DER certificate as RFC 4514 writes it (`CN=...,O=...`,
/// most specific first), or None when it cannot be read. Only walks the
/// structure: every length is checked against the bytes it is in.
pub fn subject(der: &[u8]) -> Option<String> {
    let (cert, _) = element(der, 0x30)?;
    let (mut tbs, _) = element(cert, 0x30)?;
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs, 0xa0)?.1; // version
    }
    let rest = element(tbs, 0x02)?.1; // serial number
    let rest = element(rest, 0x30)?.1; // signature algorithm
    let rest = element(rest, 0x30)?.1; // issuer
    let rest = element(rest, 0x30)?.1; // validity
    let (mut name, _) = element(rest, 0x30)?;
    let mut parts = Vec::new();
    while !name.is_empty() {
        let (set, after) = element(name, 0x31)?;
        name = after;
        let (pair, _) = element(set, 0x30)?;
        let (oid, value) = element(pair, 0x06)?;
        let tag = *value.first()?;
        let (text, _) = element(value, tag)?;
        let text = match tag {
            0x1e => text
                .chunks(2)
                .map(|c| char::from_u32(u32::from(c[0]) << 8 | u32::from(*c.get(1)?)))
                .collect::<Option<String>>()?,
            _ => String::from_utf8_lossy(text).into_owned(),
        };
        parts.push(format!("{}={}", attribute(oid), escape(&text)));
    }
    parts.reverse();
    Some(parts.join(","))
}

/// One DER element of `tag` at the start of `bytes`: its contents and
/// what follows it.
fn element(bytes: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *bytes.first()? != tag {
        return None;
    }
    let first = *bytes.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let len = bytes
            .get(2..2 + count)?
            .iter()
            .fold(0usize, |n, &b| n << 8 | usize::from(b));
        (len, 2 + count)
    };
    let end = header.checked_add(len)?;
    Some((bytes.get(header..end)?, bytes.get(end..)?))
}

/// The short name of an attribute type, or its dotted OID.
fn attribute(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        _ => {
            let mut arcs = Vec::new();
            let mut value = 0u64;
            for &b in oid {
                value = value << 7 | u64::from(b & 0x7f);
                if b & 0x80 == 0 {
                    arcs.push(value);
                    value = 0;
                }
            }
            let mut dotted = match arcs.first() {
                Some(&first) => {
                    format!("{}.{}", first.min(80) / 40, first - first.min(80) / 40 * 40)
                }
                None => return "?".into(),
            };
            for arc in &arcs[1..] {
                dotted += &format!(".{arc}");
            }
            dotted
        }
    }
}

/// A value safe for one log line: separators escaped as RFC 4514 does,
/// control characters as `\xNN`.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out += &format!("\\x{:02x}", u32::from(c)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name (O=hftp tests, CN=student-1) inside the fields before it.
    fn certificate(name: &[u8]) -> Vec<u8> {
        fn wrap(tag: u8, body: &[u8]) -> Vec<u8> {
            let mut v = vec![tag];
            if body.len() < 0x80 {
                v.push(body.len() as u8);
            } else {
                v.push(0x82);
                v.extend_from_slice(&(body.len() as u16).to_be_bytes());
            }
            v.extend_from_slice(body);
            v
        }
        let mut tbs = wrap(0xa0, &wrap(0x02, &[2]));
        tbs.extend(wrap(0x02, &[1, 2, 3]));
        tbs.extend(wrap(0x30, &wrap(0x06, &[0x2a, 0x86, 0x48])));
        tbs.extend(wrap(0x30, &[]));
        tbs.extend(wrap(0x30, &[]));
        tbs.extend(wrap(0x30, name));
        wrap(0x30, &wrap(0x30, &tbs))
    }

    fn rdn(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        let mut pair = vec![0x06, oid.len() as u8];
        pair.extend_from_slice(oid);
        pair.push(tag);
        pair.push(value.len() as u8);
        pair.extend_from_slice(value);
        let mut seq = vec![0x30, pair.len() as u8];
        seq.extend(pair);
        let mut set = vec![0x31, seq.len() as u8];
        set.extend(seq);
        set
    }

    #[test]
    fn subject_is_read_most_specific_first() {
        let mut name = rdn(&[0x55, 4, 10], 0x0c, b"hftp tests");
        name.extend(rdn(&[0x55, 4, 3], 0x13, b"student-1"));
        assert_eq!(
            subject(&certificate(&name)).as_deref(),
            Some("CN=student-1,O=hftp tests")
        );
        let odd = rdn(
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 9, 1],
            0x16,
            b"a,b\n",
        );
        assert_eq!(
            subject(&certificate(&odd)).as_deref(),
            Some("1.2.840.113549.1.9.1=a\\,b\\x0a")
        );
    }

    #[test]
    fn truncated_or_lying_der_gives_none() {
        let mut name = rdn(&[0x55, 4, 3], 0x0c, b"student-1");
        name.extend(rdn(&[0x55, 4, 10], 0x0c, b"x"));
        let cert = certificate(&name);
        for cut in 0..cert.len() {
            assert_eq!(subject(&cert[..cut]), None, "cut at {cut}");
        }
        let mut lying = cert.clone();
        lying[1] = 0x84;
        assert_eq!(subject(&lying), None);
        assert_eq!(subject(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
