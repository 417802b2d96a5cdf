//! The front end of every connection, written once and without I/O (the
//! shape of `quinn-proto`'s `Endpoint` beside its `Connection`).
//!
//! **The endpoint's job.** Everything between an accepted socket and its
//! [`Connection`]: reading the PROXY header a load balancer sends
//! (`--proxy-protocol`) against its deadline, admission
//! (`--max-connections`, `--max-per-ip`, and one bound, shared by every
//! thread and ring, on the connections still waiting for their header),
//! the log line and the metric of every refusal, and the hand-over: a
//! [`Connection`] already fed the bytes that came after the header.
//!
//! **The driver's job.** Moving bytes and time, as for a connection:
//!
//! | the driver has | it calls | and gets |
//! |---|---|---|
//! | a socket accepted from `peer` | [`Endpoint::accept`] | [`Accept`] |
//! | bytes of an [`Opening`] | [`Opening::handle_input`] | [`Opened`] |
//! | end of input, an error | [`Opening::handle_eof`], [`Opening::io_failed`] | [`Opened`] |
//! | reached [`Opening::deadline`] | [`Opening::handle_timeout`] | [`Opened`] |
//! | a shutdown | [`Opening::stop`] | [`Opened`] |
//! | an [`Admitted`] client | [`Endpoint::start`] | a [`Connection`] and its [`Ticket`] |
//!
//! `Opened::Refused` means: close the socket (already counted and
//! logged). The [`Ticket`] holds the client's place until it is dropped,
//! after the socket is closed. Nothing here reads the clock, so refusals,
//! deadlines and the shared bounds are tested without a socket (below).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::admission::{Admission, Ticket};
use crate::config::{Config, TlsSettings};
use crate::connection::{Connection, ConnectionConfig};
use crate::metrics::{self, Refusal};
use crate::transport::address::AddressRules;
use crate::transport::proxy_header::{Progress, ProxyHeaderReader};
use crate::transport::tls::TlsLayer;

/// The front end shared by every connection of a server.
pub struct Endpoint {
    admission: Arc<Admission>,
    /// Connections waiting for their PROXY header, which admission does not
    /// count yet (it needs the header to know the client): a flood that
    /// never sends one must not hold unbounded descriptors.
    waiting: Arc<AtomicUsize>,
    /// `--max-connections`: also the bound on `waiting`.
    max_waiting: usize,
    /// `--proxy-protocol` and its header deadline.
    proxy_header: Option<Duration>,
    /// `--allow`/`--deny`.
    rules: Arc<AddressRules>,
    /// `--tls-cert`.
    tls: Option<TlsSettings>,
    connection: ConnectionConfig,
}

/// What to do with a socket just accepted.
pub enum Accept {
    /// Serve it: [`Endpoint::start`].
    Admitted(Admitted),
    /// Read its PROXY header first.
    Opening(Opening),
    /// Close it (counted and logged).
    Refused,
}

/// An admitted client, not yet a [`Connection`].
pub struct Admitted {
    /// The client: the socket's peer, or the one its PROXY header named.
    pub peer: SocketAddr,
    /// The proxy it came through (`--proxy-protocol`).
    pub via: Option<SocketAddr>,
    /// Bytes read past the PROXY header: the first HFTP input.
    first: Vec<u8>,
    ticket: Ticket,
}

/// Where an [`Opening`] stands.
pub enum Opened {
    /// No complete header yet: read more, until [`Opening::deadline`].
    Incomplete,
    Admitted(Admitted),
    /// Close the socket (counted and logged).
    Refused,
}

/// A connection reading its PROXY header; holds a place among those
/// waiting until dropped.
pub struct Opening {
    proxy: SocketAddr,
    reader: ProxyHeaderReader,
    deadline: Instant,
    admission: Arc<Admission>,
    rules: Arc<AddressRules>,
    waiting: Arc<AtomicUsize>,
    /// Admitted or refused already: later calls refuse silently.
    spent: bool,
}

impl Endpoint {
    pub fn new(config: &Config) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            admission: Admission::new(config.max_connections, config.max_per_ip),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting: config.max_connections,
            proxy_header: config.proxy_protocol,
            rules: Arc::new(config.address_rules.clone()),
            tls: config.tls.clone(),
            connection: config.connection(),
        })
    }

    /// A socket from `peer` was accepted at `now`.
    pub fn accept(&self, peer: SocketAddr, now: Instant) -> Accept {
        let Some(timeout) = self.proxy_header else {
            if !admits_address(&self.rules, peer, now) {
                return Accept::Refused;
            }
            return match self.admission.admit(peer) {
                Some(ticket) => Accept::Admitted(Admitted {
                    peer,
                    via: None,
                    first: Vec::new(),
                    ticket,
                }),
                None => Accept::Refused,
            };
        };
        let entered = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_waiting).then_some(n + 1)
            })
            .is_ok();
        if !entered {
            refuse(
                peer,
                "too many connections waiting for their PROXY header",
                now,
            );
            return Accept::Refused;
        }
        Accept::Opening(Opening {
            proxy: peer,
            reader: ProxyHeaderReader::new(),
            deadline: now + timeout,
            admission: Arc::clone(&self.admission),
            rules: Arc::clone(&self.rules),
            waiting: Arc::clone(&self.waiting),
            spent: false,
        })
    }

    /// The connection of an admitted client, fed what it sent already; the
    /// ticket must outlive the socket.
    pub fn start(&self, admitted: Admitted, now: Instant) -> (Connection, Ticket) {
        let mut conn =
            Connection::new(&self.connection, Some(admitted.peer), now).via(admitted.via);
        if let Some(tls) = &self.tls {
            conn = conn.tls(TlsLayer::new(&tls.config), tls.handshake_timeout, now);
        }
        // Under TLS these are the first records of the handshake.
        conn.handle_input(&admitted.first, now);
        (conn, admitted.ticket)
    }

    /// Connections admitted and not yet finished.
    pub fn active(&self) -> usize {
        self.admission.active()
    }

    /// Connections still reading their PROXY header.
    #[cfg(test)]
    pub fn opening(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Waits until no connection is active, at most `grace`; returns how
    /// many still are (for the drivers that block a thread on it).
    pub fn wait_idle(&self, grace: Duration) -> usize {
        self.admission.wait_idle(grace)
    }
}

impl Opening {
    /// When the header must be complete: call [`Opening::handle_timeout`]
    /// then.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Bytes read from the socket.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) -> Opened {
        if self.spent {
            return Opened::Refused;
        }
        match self.reader.feed(bytes) {
            Progress::Incomplete => Opened::Incomplete,
            Progress::Invalid(reason) => self.refuse(&reason, now),
            Progress::Done(header) => {
                self.spent = true;
                let client = header.origin.client(self.proxy);
                if !admits_address(&self.rules, client, now) {
                    return Opened::Refused;
                }
                match self.admission.admit(client) {
                    Some(ticket) => Opened::Admitted(Admitted {
                        peer: client,
                        via: Some(self.proxy),
                        first: header.leftover,
                        ticket,
                    }),
                    None => Opened::Refused,
                }
            }
        }
    }

    /// The proxy closed the connection.
    pub fn handle_eof(&mut self, now: Instant) -> Opened {
        self.refuse("connection closed before its PROXY header ended", now)
    }

    /// Reading failed.
    pub fn io_failed(&mut self, e: std::io::Error, now: Instant) -> Opened {
        self.refuse(&e.to_string(), now)
    }

    /// Refuses the connection if its deadline has passed by `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Opened {
        if now < self.deadline {
            return Opened::Incomplete;
        }
        self.refuse("no complete PROXY header in time", now)
    }

    /// The server is shutting down: nothing was admitted, nothing to finish.
    pub fn stop(&mut self, now: Instant) -> Opened {
        self.refuse("shutting down before its PROXY header ended", now)
    }

    fn refuse(&mut self, reason: &str, now: Instant) -> Opened {
        if !std::mem::replace(&mut self.spent, true) {
            refuse(self.proxy, reason, now);
        }
        Opened::Refused
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        self.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether `--allow`/`--deny` let `client` in; a refusal is counted and
/// logged.
fn admits_address(rules: &AddressRules, client: SocketAddr, now: Instant) -> bool {
    if rules.is_empty() || rules.permits(client.ip()) {
        return true;
    }
    metrics::connection_refused(Refusal::Address);
    log_refusal(client, "address not allowed", "--allow/--deny", now);
    false
}

/// When the last refusal was logged, and how many came since.
static REFUSALS: Mutex<(Option<Instant>, u64)> = Mutex::new((None, 0));

/// Counts a connection closed for a missing, bad or late header and logs
/// it.
fn refuse(proxy: SocketAddr, reason: &str, now: Instant) {
    metrics::connection_refused(Refusal::ProxyHeader);
    log_refusal(proxy, reason, "--proxy-protocol", now);
}

/// Logs a refused connection (a bad header, an address not let in, a
/// failed TLS handshake), at most once a second: a client that connects
/// the wrong way, or a flood, must not flood the log. `option` names the
/// setting that refused it.
pub(crate) fn log_refusal(peer: SocketAddr, reason: &str, option: &str, now: Instant) {
    let mut state = REFUSALS.lock().unwrap_or_else(|e| e.into_inner());
    state.1 += 1;
    if state
        .0
        .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
    {
        tracing::warn!(%peer, refused = state.1, "{reason}: closing the connection ({option})");
        *state = (Some(now), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::Action;
    use crate::session::SessionConfig;

    fn endpoint(max_connections: usize, proxy: Option<Duration>) -> Arc<Endpoint> {
        let dir = std::env::temp_dir();
        let storage = crate::storage::LocalDir::new(dir, false).expect("temp dir");
        Endpoint::new(&Config {
            session: SessionConfig {
                storage: Arc::new(storage),
                max_line: hftp_proto::DEFAULT_MAX_LINE,
            },
            model: crate::Model::Poll,
            workers: 1,
            max_connections,
            max_per_ip: 0,
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(1),
            metrics: None,
            proxy_protocol: proxy,
            tls: None,
            address_rules: Default::default(),
            limit_rate: None,
        })
    }

    const PROXY: &str = "127.0.0.9:4000";

    fn opening(e: &Endpoint, now: Instant) -> Opening {
        match e.accept(PROXY.parse().unwrap(), now) {
            Accept::Opening(o) => o,
            _ => panic!("expected a header to read"),
        }
    }

    #[test]
    fn without_proxy_protocol_admission_decides_at_once() {
        let e = endpoint(1, None);
        let now = Instant::now();
        let Accept::Admitted(first) = e.accept("127.0.0.2:1".parse().unwrap(), now) else {
            panic!("first client refused");
        };
        assert!(matches!(
            e.accept("127.0.0.3:1".parse().unwrap(), now),
            Accept::Refused
        ));
        let (_conn, ticket) = e.start(first, now);
        assert_eq!(e.active(), 1);
        drop(ticket);
        assert_eq!(e.active(), 0);
    }

    #[test]
    fn header_admits_the_client_it_names_with_the_bytes_after_it() {
        let e = endpoint(4, Some(Duration::from_secs(5)));
        let now = Instant::now();
        let mut o = opening(&e, now);
        assert_eq!(e.opening(), 1);
        assert!(matches!(
            o.handle_input(b"PROXY TCP4 192.0.2.1 127.0.0.1 5", now),
            Opened::Incomplete
        ));
        let Opened::Admitted(a) = o.handle_input(b"55 19500\r\nhelp\r\n", now) else {
            panic!("header refused");
        };
        drop(o);
        assert_eq!(e.opening(), 0);
        assert_eq!(a.peer, "192.0.2.1:555".parse().unwrap());
        assert_eq!(a.via, Some(PROXY.parse().unwrap()));
        let (mut conn, _ticket) = e.start(a, now);
        // `help` was answered from the leftover bytes.
        let Action::Send(out) = conn.poll() else {
            panic!("no answer to the leftover request");
        };
        assert!(
            out.starts_with(b"0 OK\r\n"),
            "{:?}",
            String::from_utf8_lossy(out)
        );
    }

    #[test]
    fn deadline_eof_garbage_and_shutdown_refuse_once() {
        let e = endpoint(4, Some(Duration::from_secs(5)));
        let t0 = Instant::now();
        let mut late = opening(&e, t0);
        assert!(matches!(
            late.handle_timeout(t0 + Duration::from_secs(4)),
            Opened::Incomplete
        ));
        assert!(matches!(
            late.handle_timeout(late.deadline()),
            Opened::Refused
        ));
        // Spent: input after the refusal admits nothing.
        assert!(matches!(
            late.handle_input(b"PROXY UNKNOWN\r\n", t0),
            Opened::Refused
        ));
        let mut eof = opening(&e, t0);
        assert!(matches!(eof.handle_eof(t0), Opened::Refused));
        let mut garbage = opening(&e, t0);
        assert!(matches!(
            garbage.handle_input(b"get_file_listing\r\n", t0),
            Opened::Refused
        ));
        let mut stopped = opening(&e, t0);
        assert!(matches!(stopped.stop(t0), Opened::Refused));
        assert_eq!(e.active(), 0, "nobody was admitted");
    }

    #[test]
    fn one_bound_on_connections_waiting_for_their_header() {
        let e = endpoint(2, Some(Duration::from_secs(5)));
        let now = Instant::now();
        let a = opening(&e, now);
        let _b = opening(&e, now);
        assert!(matches!(
            e.accept(PROXY.parse().unwrap(), now),
            Accept::Refused
        ));
        drop(a);
        let _c = opening(&e, now);
        assert_eq!(e.opening(), 2);
    }
}
