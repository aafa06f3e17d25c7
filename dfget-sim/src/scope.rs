//! Which addresses a peer may use: its own IP, its supernodes and the sources of its pieces.
//!
//! A simulated peer is a test tool, so by default it talks to loopback only and a test cannot
//! reach out of the machine. A harness that builds its own private network (network
//! namespaces with addresses of its choosing) names that network explicitly, and only then may
//! the peer use addresses in it. The scope decides what the peer refuses, never what it sends.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use crate::error::SimError;

/// An IPv4 network `a.b.c.d/len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Network {
    base: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Network {
    /// The network of `addr` with a prefix of `prefix_len` bits (at most 32); host bits of
    /// `addr` are dropped.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Ipv4Network, SimError> {
        if prefix_len > 32 {
            return Err(SimError::Config(format!("network {addr}/{prefix_len}: a prefix is at most 32 bits")));
        }
        let base = Ipv4Addr::from(u32::from(addr) & Self::mask(prefix_len));
        Ok(Ipv4Network { base, prefix_len })
    }

    fn mask(prefix_len: u8) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(prefix_len)).unwrap_or(0)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.prefix_len) == u32::from(self.base)
    }
}

impl FromStr for Ipv4Network {
    type Err = SimError;

    fn from_str(s: &str) -> Result<Self, SimError> {
        let bad = |why: &str| SimError::Config(format!("network {s:?}: {why} (expected a.b.c.d/len)"));
        let (addr, len) = s.trim().split_once('/').ok_or_else(|| bad("no prefix length"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
        let len: u8 = len.parse().map_err(|_| bad("the prefix length is not a number"))?;
        Ipv4Network::new(addr, len)
    }
}

impl fmt::Display for Ipv4Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix_len)
    }
}

/// The addresses a peer may use: loopback, and the networks it was allowed besides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressScope {
    allowed: Vec<Ipv4Network>,
}

impl AddressScope {
    /// Loopback only.
    pub fn loopback() -> AddressScope {
        AddressScope::default()
    }

    /// Loopback and `network`.
    pub fn allow(mut self, network: Ipv4Network) -> AddressScope {
        self.allowed.push(network);
        self
    }

    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        match ip {
            _ if ip.is_loopback() => true,
            IpAddr::V4(v4) => self.allowed.iter().any(|n| n.contains(v4)),
            IpAddr::V6(_) => false,
        }
    }

    /// A host as it appears in an address (`localhost`, an IP, `[v6]`); names other than
    /// `localhost` are refused, since where they resolve to is not known here.
    pub fn allows_host(&self, host: &str) -> bool {
        if host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        let h = host.trim_start_matches('[').trim_end_matches(']');
        h.parse::<IpAddr>().map(|ip| self.allows_ip(ip)).unwrap_or(false)
    }

    /// What the scope is, for error messages.
    pub(crate) fn describe(&self) -> String {
        let mut parts = vec!["loopback".to_string()];
        parts.extend(self.allowed.iter().map(|n| n.to_string()));
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let n: Ipv4Network = "10.77.0.9/24".parse().unwrap();
        assert_eq!(n.to_string(), "10.77.0.0/24");
        assert!(n.contains(Ipv4Addr::new(10, 77, 0, 200)));
        assert!(!n.contains(Ipv4Addr::new(10, 77, 1, 1)));
        let all: Ipv4Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(8, 8, 8, 8)));
        let one: Ipv4Network = "10.0.0.1/32".parse().unwrap();
        assert!(one.contains(Ipv4Addr::new(10, 0, 0, 1)) && !one.contains(Ipv4Addr::new(10, 0, 0, 2)));
        for bad in ["10.0.0.0", "10.0.0.0/33", "10.0.0/8", "x/8", "10.0.0.0/-1", ""] {
            assert!(bad.parse::<Ipv4Network>().is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes() {
        let lo = AddressScope::loopback();
        assert!(lo.allows_host("127.0.0.1") && lo.allows_host("localhost") && lo.allows_host("[::1]"));
        assert!(!lo.allows_host("10.77.0.3") && !lo.allows_host("example.com"));
        let lab = lo.allow("10.77.0.0/24".parse().unwrap());
        assert!(lab.allows_host("10.77.0.3") && lab.allows_host("127.0.0.1"));
        assert!(!lab.allows_host("10.77.1.3") && !lab.allows_host("fe80::1"));
        assert_eq!(lab.describe(), "loopback, 10.77.0.0/24");
    }
}
