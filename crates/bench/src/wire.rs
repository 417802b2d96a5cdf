//! One connection's bytes in the generator's loops: plain TCP, or TLS over
//! it (`--tls`), both non-blocking. With TLS each connection runs its own
//! handshake in the loop, as the TCP connect runs there, and every request
//! is then encrypted and every reply decrypted on the generator's threads:
//! what a TLS server costs its clients is measured too.
//!
//! Reads and writes carry HFTP's bytes; [`Wire::read`] returns
//! `WouldBlock` only once the socket did (mio's readiness is
//! edge-triggered), and records a write could not send yet are pushed by
//! [`Wire::push`] on the next writable event.

use std::io::{self, Read, Write};

use mio::net::TcpStream;
use rustls::ClientConnection;

/// Plaintext accepted from the caller at once while nothing is pending.
const ACCEPT: usize = 64 * 1024;

pub(crate) struct Wire {
    tcp: TcpStream,
    tls: Option<Box<ClientConnection>>,
}

impl Wire {
    pub(crate) fn new(tcp: TcpStream, tls: Option<ClientConnection>) -> Wire {
        Wire {
            tcp,
            tls: tls.map(Box::new),
        }
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub(crate) fn tcp_mut(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    /// Whether the TLS handshake is still to finish.
    pub(crate) fn handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// Runs the handshake as far as the socket allows: `Ok(true)` once it
    /// is complete (at once without TLS). An error wraps rustls' (an
    /// alert, a bad certificate) as `InvalidData`, or is the socket's;
    /// the end of the connection is `UnexpectedEof`.
    pub(crate) fn handshake(&mut self) -> io::Result<bool> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(true);
        };
        loop {
            let mut progress = false;
            while tls.wants_write() {
                match tls.write_tls(&mut self.tcp) {
                    Ok(_) => progress = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if !tls.is_handshaking() {
                return Ok(true);
            }
            if tls.wants_read() {
                match tls.read_tls(&mut self.tcp) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "closed during the TLS handshake",
                        ))
                    }
                    Ok(_) => {
                        progress = true;
                        process(tls, &mut self.tcp)?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                    Err(e) => return Err(e),
                }
            }
            if !progress {
                return Ok(false);
            }
        }
    }

    /// Reads HFTP's bytes. `Ok(0)` is the end (`close_notify`, or TCP's
    /// end: HFTP's replies carry their own lengths, so a cut reply is seen
    /// by the decoder anyway).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else {
            return self.tcp.read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match tls.read_tls(&mut self.tcp) {
                // The session sees the end: what it still holds, then 0.
                Ok(0) => {
                    process(tls, &mut self.tcp)?;
                    return match tls.reader().read(buf) {
                        Ok(n) => Ok(n),
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::UnexpectedEof | io::ErrorKind::WouldBlock
                            ) =>
                        {
                            Ok(0)
                        }
                        Err(e) => Err(e),
                    };
                }
                Ok(_) => process(tls, &mut self.tcp)?,
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes up to `buf.len()` bytes to send. With TLS they are taken only
    /// when the records of earlier ones have gone out (else `WouldBlock`),
    /// so a server that does not read holds the caller's bytes, not ours.
    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else {
            return self.tcp.write(buf);
        };
        push(tls, &mut self.tcp)?;
        if tls.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = tls.writer().write(&buf[..buf.len().min(ACCEPT)])?;
        push(tls, &mut self.tcp)?;
        Ok(n)
    }

    /// Sends the records still pending (TLS), as far as the socket takes them.
    pub(crate) fn push(&mut self) -> io::Result<()> {
        match self.tls.as_mut() {
            Some(tls) => push(tls, &mut self.tcp),
            None => Ok(()),
        }
    }
}

/// Writes pending records until the socket is full.
fn push(tls: &mut ClientConnection, tcp: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(tcp) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Processes received records; a TLS error goes out as its alert and
/// comes back as `InvalidData` wrapping rustls' error.
fn process(tls: &mut ClientConnection, tcp: &mut TcpStream) -> io::Result<()> {
    match tls.process_new_packets() {
        Ok(_) => {
            // What the records ask back (a key update) goes out now.
            push(tls, tcp)
        }
        Err(e) => {
            let _ = push(tls, tcp);
            Err(io::Error::new(io::ErrorKind::InvalidData, e))
        }
    }
}
