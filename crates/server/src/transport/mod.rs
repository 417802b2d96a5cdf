//! What happens on a connection before the HFTP scanner sees its first
//! byte: the address rules ([`address`], `--allow`/`--deny`), the PROXY
//! protocol header a load balancer sends ([`proxy_header`],
//! `--proxy-protocol`), and TLS ([`tls`], `--tls-cert`). Each is sans-IO:
//! the [`Endpoint`](crate::endpoint::Endpoint) and the
//! [`Connection`](crate::connection::Connection) feed them bytes and time.

pub mod address;
pub mod proxy_header;
pub mod tls;
