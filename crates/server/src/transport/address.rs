//! Address rules (`--allow CIDR`, `--deny CIDR`), checked before any byte
//! of a connection is read (under `--proxy-protocol`, on the client the
//! header names, once it is read).
//!
//! The rule is the one a reader expects from two lists: a client in any
//! `--deny` range is refused; otherwise, if there is any `--allow`, only a
//! client in one of them is let in. (nginx's `allow`/`deny` are ordered,
//! first match wins; two flags cannot carry an order, so deny wins.)
//! IPv4 clients reaching an IPv6 socket (`::ffff:a.b.c.d`) are matched as
//! IPv4.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Clone, Debug, Default)]
pub struct AddressRules {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl AddressRules {
    pub fn new(allow: Vec<IpNet>, deny: Vec<IpNet>) -> AddressRules {
        AddressRules { allow, deny }
    }

    /// No rule at all: everyone is let in without a look.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether `ip` may connect.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.deny.iter().any(|net| net.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip))
    }
}

/// Parses `ADDR/LEN` or a bare address (one host), for the command line.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    match text.parse::<IpAddr>() {
        Ok(ip) => Ok(IpNet::from(ip)),
        Err(_) => Err(format!(
            "{text:?} is not an address range: write ADDR/LEN (192.0.2.0/24, 2001:db8::/32) or one address"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str], deny: &[&str]) -> AddressRules {
        let nets = |list: &[&str]| list.iter().map(|t| parse_cidr(t).unwrap()).collect();
        AddressRules::new(nets(allow), nets(deny))
    }

    #[test]
    fn deny_wins_and_allow_lists_who_may_come() {
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        let none = rules(&[], &[]);
        assert!(none.is_empty() && none.permits(ip("203.0.113.9")));
        let r = rules(&["127.0.0.0/8", "::1"], &["127.0.0.66"]);
        assert!(r.permits(ip("127.0.0.1")));
        assert!(r.permits(ip("::ffff:127.0.0.5")), "a mapped IPv4 client");
        assert!(r.permits(ip("::1")));
        assert!(
            !r.permits(ip("127.0.0.66")),
            "denied inside an allowed range"
        );
        assert!(!r.permits(ip("192.0.2.1")), "outside every allowed range");
        let only_deny = rules(&[], &["10.0.0.0/8"]);
        assert!(!only_deny.permits(ip("10.1.2.3")));
        assert!(only_deny.permits(ip("192.0.2.1")));
    }

    #[test]
    fn ranges_parse_or_say_how_to_write_them() {
        assert_eq!(parse_cidr("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("::1").unwrap().to_string(), "::1/128");
        let e = parse_cidr("10.0.0.0/33").unwrap_err();
        assert!(e.contains("ADDR/LEN"), "{e}");
        assert!(parse_cidr("localhost").is_err());
    }
}
