//! Reading the PROXY protocol header (v1 text or v2 binary, as HAProxy's
//! `send-proxy`/`send-proxy-v2` and nginx's `proxy_protocol` send it) that
//! begins every connection under `--proxy-protocol`, without I/O.
//!
//! A driver feeds what it reads to a [`ProxyHeaderReader`] until it says
//! [`Progress::Done`]: the header then names the real client (or is a
//! `LOCAL` header, such as a health check, and the proxy itself is the
//! client), and the bytes read past the header are the connection's first
//! HFTP input. Parsing is done by the `ppp` crate; this module only decides
//! when enough bytes have arrived and bounds what it keeps:
//!
//! - a v1 header is at most 107 bytes (the protocol's own limit);
//! - a v2 header is at most [`MAX_V2_HEADER`] bytes (536, HAProxy's own
//!   default buffer for it), which leaves room for the usual TLVs (ALPN,
//!   authority, unique id, SSL information) and refuses the 64 KiB the
//!   length field allows.
//!
//! How long a header may take to arrive, and what a refusal costs, is the
//! [`Endpoint`](crate::endpoint::Endpoint)'s business: this reader has no
//! clock.

use std::net::{IpAddr, SocketAddr};

/// The longest v1 header, `\r\n` included (the protocol's limit).
pub const MAX_V1_HEADER: usize = 107;

/// The longest v2 header accepted, its 16 fixed bytes included.
pub const MAX_V2_HEADER: usize = 536;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
const V2_FIXED: usize = 16;

/// Who is at the other end of the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The real client's address, as the proxy saw it.
    Client(SocketAddr),
    /// A `LOCAL` header (the proxy speaking for itself: health checks), or
    /// one whose addresses are not TCP ones (v1 `UNKNOWN`, v2 `UNSPEC` or
    /// UNIX): the proxy's own address stands for the client.
    Local,
}

impl Origin {
    /// The client's address, given the address the connection came from
    /// (the proxy's).
    pub fn client(self, proxy: SocketAddr) -> SocketAddr {
        match self {
            Origin::Client(addr) => addr,
            Origin::Local => proxy,
        }
    }
}

/// A complete header, and what came after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub origin: Origin,
    /// Bytes read past the header: the first HFTP input.
    pub leftover: Vec<u8>,
}

/// What the bytes fed so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A valid beginning of a header: feed more.
    Incomplete,
    Done(Header),
    /// Not a header we accept, and more bytes would not change that.
    Invalid(String),
}

/// Accumulates the beginning of a connection until its PROXY header is
/// complete; holds at most a header plus one read.
#[derive(Debug, Default)]
pub struct ProxyHeaderReader {
    buf: Vec<u8>,
}

impl ProxyHeaderReader {
    pub fn new() -> ProxyHeaderReader {
        ProxyHeaderReader::default()
    }

    /// Adds `bytes` read from the connection; say what they amount to.
    /// After `Done` or `Invalid` the reader must not be fed again.
    pub fn feed(&mut self, bytes: &[u8]) -> Progress {
        self.buf.extend_from_slice(bytes);
        match self.buf.first() {
            None => Progress::Incomplete,
            Some(b'P') => self.v1(),
            Some(b'\r') => self.v2(),
            Some(_) => Progress::Invalid("no PROXY protocol header".into()),
        }
    }

    fn v1(&mut self) -> Progress {
        let seen = self.buf.len().min(V1_PREFIX.len());
        if self.buf[..seen] != V1_PREFIX[..seen] {
            return Progress::Invalid("no PROXY protocol header".into());
        }
        let Some(newline) = self
            .buf
            .iter()
            .take(MAX_V1_HEADER)
            .position(|&b| b == b'\n')
        else {
            return if self.buf.len() >= MAX_V1_HEADER {
                Progress::Invalid(format!("PROXY v1 header longer than {MAX_V1_HEADER} bytes"))
            } else {
                Progress::Incomplete
            };
        };
        let end = newline + 1;
        let origin = match ppp::v1::Header::try_from(&self.buf[..end]) {
            Ok(header) => match header.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    Origin::Client(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    Origin::Client(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                ppp::v1::Addresses::Unknown => Origin::Local,
            },
            Err(e) => return Progress::Invalid(format!("bad PROXY v1 header: {e}")),
        };
        self.done(origin, end)
    }

    fn v2(&mut self) -> Progress {
        let seen = self.buf.len().min(V2_SIGNATURE.len());
        if self.buf[..seen] != V2_SIGNATURE[..seen] {
            return Progress::Invalid("no PROXY protocol header".into());
        }
        if self.buf.len() < V2_FIXED {
            return Progress::Incomplete;
        }
        let end = V2_FIXED + usize::from(u16::from_be_bytes([self.buf[14], self.buf[15]]));
        if end > MAX_V2_HEADER {
            return Progress::Invalid(format!(
                "PROXY v2 header of {end} bytes, more than the {MAX_V2_HEADER} accepted"
            ));
        }
        if self.buf.len() < end {
            return Progress::Incomplete;
        }
        let origin = match ppp::v2::Header::try_from(&self.buf[..end]) {
            Ok(header) => match (header.command, header.addresses) {
                (ppp::v2::Command::Local, _) => Origin::Local,
                (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => {
                    Origin::Client(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => {
                    Origin::Client(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                (ppp::v2::Command::Proxy, _) => Origin::Local,
            },
            Err(e) => return Progress::Invalid(format!("bad PROXY v2 header: {e}")),
        };
        self.done(origin, end)
    }

    fn done(&mut self, origin: Origin, end: usize) -> Progress {
        let leftover = self.buf.split_off(end);
        self.buf = Vec::new();
        Progress::Done(Header { origin, leftover })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(bytes: &[u8]) -> Progress {
        ProxyHeaderReader::new().feed(bytes)
    }

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        h.extend_from_slice(addresses);
        h
    }

    fn tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut a = src.to_vec();
        a.extend_from_slice(&dst);
        a.extend_from_slice(&sport.to_be_bytes());
        a.extend_from_slice(&dport.to_be_bytes());
        v2(1, 0x11, &a)
    }

    fn done(origin: Origin, leftover: &[u8]) -> Progress {
        Progress::Done(Header {
            origin,
            leftover: leftover.to_vec(),
        })
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        assert_eq!(
            feed_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 19500\r\n"),
            done(Origin::Client("192.0.2.7:40000".parse().unwrap()), b"")
        );
        assert_eq!(
            feed_all(b"PROXY TCP6 2001:db8::1 ::1 5000 19500\r\n"),
            done(Origin::Client("[2001:db8::1]:5000".parse().unwrap()), b"")
        );
    }

    #[test]
    fn v1_unknown_is_local() {
        assert_eq!(feed_all(b"PROXY UNKNOWN\r\n"), done(Origin::Local, b""));
    }

    #[test]
    fn v2_tcp4_tcp6_local() {
        assert_eq!(
            feed_all(&tcp4([198, 51, 100, 9], [127, 0, 0, 1], 1234, 19500)),
            done(Origin::Client("198.51.100.9:1234".parse().unwrap()), b"")
        );
        let mut a = "2001:db8::2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets()
            .to_vec();
        a.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        a.extend_from_slice(&7u16.to_be_bytes());
        a.extend_from_slice(&19500u16.to_be_bytes());
        assert_eq!(
            feed_all(&v2(1, 0x21, &a)),
            done(Origin::Client("[2001:db8::2]:7".parse().unwrap()), b"")
        );
        // HAProxy's health checks: LOCAL, family UNSPEC, no addresses.
        assert_eq!(feed_all(&v2(0, 0x00, &[])), done(Origin::Local, b""));
    }

    #[test]
    fn v2_with_tlvs_is_accepted() {
        let mut a = vec![127, 0, 0, 2, 127, 0, 0, 1, 0, 9, 0, 10];
        // PP2_TYPE_UNIQUE_ID (0x05), 3 bytes.
        a.extend_from_slice(&[0x05, 0, 3, b'a', b'b', b'c']);
        assert_eq!(
            feed_all(&v2(1, 0x11, &a)),
            done(Origin::Client("127.0.0.2:9".parse().unwrap()), b"")
        );
    }

    #[test]
    fn one_byte_at_a_time() {
        let v1 = b"PROXY TCP4 10.1.2.3 10.0.0.1 1111 2222\r\nhelp\r\n".to_vec();
        let mut v2 = tcp4([10, 9, 8, 7], [10, 0, 0, 1], 3333, 2222);
        let v2_len = v2.len();
        v2.extend_from_slice(b"help\r\n");
        for (input, header_len, expected) in
            [(&v1, 40, "10.1.2.3:1111"), (&v2, v2_len, "10.9.8.7:3333")]
        {
            let mut reader = ProxyHeaderReader::new();
            for (i, byte) in input[..header_len].iter().enumerate() {
                let progress = reader.feed(std::slice::from_ref(byte));
                if i + 1 < header_len {
                    assert_eq!(progress, Progress::Incomplete, "after {} bytes", i + 1);
                } else {
                    assert_eq!(
                        progress,
                        done(Origin::Client(expected.parse().unwrap()), b"")
                    );
                }
            }
        }
    }

    #[test]
    fn leftover_bytes_are_returned() {
        let mut input = tcp4([127, 0, 0, 3], [127, 0, 0, 1], 1, 2);
        input.extend_from_slice(b"help\r\nquit\r\n");
        assert_eq!(
            feed_all(&input),
            done(
                Origin::Client("127.0.0.3:1".parse().unwrap()),
                b"help\r\nquit\r\n"
            )
        );
        assert_eq!(
            feed_all(b"PROXY UNKNOWN\r\nhelp\r\n"),
            done(Origin::Local, b"help\r\n")
        );
    }

    #[test]
    fn garbage_is_refused_at_once() {
        for input in [
            &b"help\r\n"[..],
            b"PROXX TCP4",
            b"\r\n\r\n\0\r\nQUIZ",
            b"GET / HTTP/1.1\r\n",
            b"\x00",
        ] {
            assert!(matches!(feed_all(input), Progress::Invalid(_)), "{input:?}");
        }
        // A complete line that is not a valid header.
        assert!(matches!(
            feed_all(b"PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n"),
            Progress::Invalid(_)
        ));
        assert!(matches!(
            feed_all(b"PROXY TCP4 127.0.0.1 127.0.0.1 1 99999\r\n"),
            Progress::Invalid(_)
        ));
        // v2 with a bad version, and a bad command.
        let mut bad = tcp4([1, 1, 1, 1], [2, 2, 2, 2], 1, 2);
        bad[12] = 0x11;
        assert!(matches!(feed_all(&bad), Progress::Invalid(_)));
        bad[12] = 0x2f;
        assert!(matches!(feed_all(&bad), Progress::Invalid(_)));
    }

    #[test]
    fn oversized_headers_are_refused() {
        let mut long_v1 = b"PROXY TCP4 ".to_vec();
        long_v1.resize(MAX_V1_HEADER, b'1');
        assert!(matches!(feed_all(&long_v1), Progress::Invalid(_)));
        let mut reader = ProxyHeaderReader::new();
        assert_eq!(
            reader.feed(&long_v1[..MAX_V1_HEADER - 1]),
            Progress::Incomplete
        );
        assert!(matches!(reader.feed(b"1"), Progress::Invalid(_)));

        // The length field announces more than accepted: refused as soon
        // as the 16 fixed bytes are in, without waiting for the rest.
        let mut big = v2(1, 0x11, &[0; 12]);
        let announced = (MAX_V2_HEADER - V2_FIXED + 1) as u16;
        big[14..16].copy_from_slice(&announced.to_be_bytes());
        assert!(matches!(feed_all(&big[..V2_FIXED]), Progress::Invalid(_)));
        // The largest accepted one is fine.
        let mut largest = vec![127, 0, 0, 1, 127, 0, 0, 1, 0, 1, 0, 2];
        let tlv_len = MAX_V2_HEADER - V2_FIXED - largest.len() - 3;
        largest.extend_from_slice(&[0x05]);
        largest.extend_from_slice(&(tlv_len as u16).to_be_bytes());
        largest.resize(MAX_V2_HEADER - V2_FIXED, b'x');
        assert!(matches!(
            feed_all(&v2(1, 0x11, &largest)),
            Progress::Done(_)
        ));
    }

    #[test]
    fn local_origin_stands_for_the_proxy() {
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(Origin::Local.client(proxy), proxy);
        let real: SocketAddr = "127.0.0.2:6000".parse().unwrap();
        assert_eq!(Origin::Client(real).client(proxy), real);
    }
}
