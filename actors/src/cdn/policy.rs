//! Which sources the supernode may fetch (issue 7): it fetches any URL a client names,
//! so by default it refuses link-local and cloud metadata addresses, and operators can
//! add allow and deny lists of host names and CIDRs.
//!
//! Host names are checked on the URL as named; addresses are checked on every TCP
//! connection the source client opens, so DNS names and redirects cannot get around it.

use std::net::IpAddr;
use std::rc::Rc;

use actix_service::Service;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection};
use awc::http::Uri;
use futures_util::future::LocalBoxFuture;
use tokio::net::TcpStream;

/// One entry of an allow or deny list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRule {
    /// An address block, e.g. `169.254.0.0/16`; a bare address is a /32 or /128.
    Cidr(IpAddr, u8),
    /// `example.com` matches exactly; `.example.com` matches its subdomains.
    Name(String),
}

impl HostRule {
    pub fn parse(s: &str) -> Result<HostRule, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty host rule".into());
        }
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        if let Ok(ip) = addr.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len = match len {
                Some(l) => {
                    l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| format!("{s:?}: bad prefix length"))?
                }
                None => max,
            };
            return Ok(HostRule::Cidr(ip, len));
        }
        if len.is_some() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            return Err(format!("{s:?} is neither an address block nor a host name"));
        }
        Ok(HostRule::Name(s.to_ascii_lowercase()))
    }

    fn matches_ip(&self, ip: IpAddr) -> bool {
        let HostRule::Cidr(net, len) = self else { return false };
        match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => prefix_eq(&n.octets(), &i.octets(), *len),
            (IpAddr::V6(n), IpAddr::V6(i)) => prefix_eq(&n.octets(), &i.octets(), *len),
            (IpAddr::V4(_), IpAddr::V6(i)) => i.to_ipv4_mapped().is_some_and(|v4| self.matches_ip(IpAddr::V4(v4))),
            _ => false,
        }
    }

    fn matches_name(&self, host: &str) -> bool {
        let HostRule::Name(rule) = self else { return false };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match rule.strip_prefix('.') {
            Some(suffix) => host.ends_with(rule.as_str()) || host == suffix,
            None => host == *rule,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = (bits / 8) as usize;
    let rest = bits % 8;
    a[..full] == b[..full] && (rest == 0 || (a[full] ^ b[full]) >> (8 - rest) == 0)
}

/// Allow and deny lists; deny wins, and a non-empty allow list admits only what it names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourcePolicy {
    allow: Vec<HostRule>,
    deny: Vec<HostRule>,
}

/// Link-local (AWS, GCP, Azure metadata at 169.254.169.254), Alibaba's and AWS's IPv6 metadata.
pub const DEFAULT_DENY: &[&str] = &["169.254.0.0/16", "fe80::/10", "100.100.100.200", "fd00:ec2::254"];

impl SourcePolicy {
    pub fn new(allow: &[String], deny: &[String]) -> Result<SourcePolicy, String> {
        let parse = |list: &[String]| list.iter().map(|s| HostRule::parse(s)).collect::<Result<Vec<_>, _>>();
        Ok(SourcePolicy { allow: parse(allow)?, deny: parse(deny)? })
    }

    /// Checks the host of a URL as named (a name or an address literal).
    pub fn check_host(&self, host: &str) -> Result<(), String> {
        let bare = host.trim_matches(|c| c == '[' || c == ']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.check_ip(ip);
        }
        if self.deny.iter().any(|r| r.matches_name(bare)) {
            return Err(format!("source host {bare} is denied by the source policy"));
        }
        let names_allowed = self.allow.iter().any(|r| matches!(r, HostRule::Name(_)));
        let cidrs_allowed = self.allow.iter().any(|r| matches!(r, HostRule::Cidr(..)));
        if names_allowed && !cidrs_allowed && !self.allow.iter().any(|r| r.matches_name(bare)) {
            return Err(format!("source host {bare} is not in the allowed sources"));
        }
        Ok(())
    }

    /// Checks an address the source client is about to use.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        if self.deny.iter().any(|r| r.matches_ip(ip)) {
            return Err(format!("source address {ip} is denied by the source policy"));
        }
        let cidrs: Vec<&HostRule> = self.allow.iter().filter(|r| matches!(r, HostRule::Cidr(..))).collect();
        if !cidrs.is_empty() && !cidrs.iter().any(|r| r.matches_ip(ip)) {
            return Err(format!("source address {ip} is not in the allowed sources"));
        }
        Ok(())
    }

    /// Checks the host of `url`.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
        self.check_host(uri.host().unwrap_or(""))
    }
}

/// The TCP connector of the source client, refusing connections to denied addresses.
#[derive(Clone)]
pub struct GuardedConnector<S> {
    inner: S,
    policy: Rc<SourcePolicy>,
}

impl<S> GuardedConnector<S> {
    pub fn new(inner: S, policy: SourcePolicy) -> Self {
        GuardedConnector { inner, policy: Rc::new(policy) }
    }
}

impl<S> Service<ConnectInfo<Uri>> for GuardedConnector<S>
where
    S: Service<ConnectInfo<Uri>, Response = Connection<Uri, TcpStream>, Error = ConnectError>,
    S::Future: 'static,
{
    type Response = Connection<Uri, TcpStream>;
    type Error = ConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_service::forward_ready!(inner);

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let fut = self.inner.call(req);
        let policy = self.policy.clone();
        Box::pin(async move {
            let conn = fut.await?;
            let peer = conn.io_ref().peer_addr().map_err(ConnectError::Io)?;
            policy
                .check_ip(peer.ip())
                .map_err(|m| ConnectError::Io(std::io::Error::new(std::io::ErrorKind::PermissionDenied, m)))?;
            Ok(conn)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> SourcePolicy {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        SourcePolicy::new(&v(allow), &v(deny)).unwrap()
    }

    #[test]
    fn default_denies_metadata() {
        let p = policy(&[], DEFAULT_DENY);
        assert!(p.check_host("169.254.169.254").is_err());
        assert!(p.check_host("[fd00:ec2::254]").is_err());
        assert!(p.check_ip("::ffff:169.254.169.254".parse().unwrap()).is_err());
        assert!(p.check_host("100.100.100.200").is_err());
        assert!(p.check_host("127.0.0.1").is_ok());
        assert!(p.check_host("example.com").is_ok());
    }

    #[test]
    fn allow_lists() {
        let p = policy(&["10.0.0.0/8", ".corp.example"], &["bad.corp.example"]);
        assert!(p.check_host("a.corp.example").is_ok());
        assert!(p.check_host("bad.corp.example").is_err());
        assert!(p.check_ip("10.1.2.3".parse().unwrap()).is_ok());
        assert!(p.check_ip("11.1.2.3".parse().unwrap()).is_err());
        let names_only = policy(&["registry.example"], &[]);
        assert!(names_only.check_host("registry.example").is_ok());
        assert!(names_only.check_host("other.example").is_err());
    }

    #[test]
    fn rules_parse() {
        assert_eq!(HostRule::parse("10.0.0.0/8").unwrap(), HostRule::Cidr("10.0.0.0".parse().unwrap(), 8));
        assert!(HostRule::parse("10.0.0.0/33").is_err());
        assert!(HostRule::parse("a b").is_err());
        assert!(HostRule::parse("").is_err());
        assert!(prefix_eq(&[10, 1, 2, 3], &[10, 200, 0, 0], 8));
        assert!(!prefix_eq(&[192, 168, 0, 0], &[192, 169, 0, 0], 16));
        assert!(prefix_eq(&[192, 168, 0, 0], &[192, 168, 0, 255], 23));
    }
}
