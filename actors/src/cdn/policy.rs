//! Which sources the supernode may fetch: it fetches any URL a client names, so by default
//! it refuses link-local and cloud metadata addresses, and operators can add allow and deny
//! lists of host names and CIDRs.
//!
//! Host names are checked on the URL as named; addresses are checked on every TCP
//! connection the source client opens, so DNS names and redirects cannot get around it.

use std::net::IpAddr;
use std::rc::Rc;

use std::net::SocketAddr;

use actix_service::Service;
use actix_tls::connect::tcp::TcpConnectorService;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, Resolver, ResolverService};
use awc::http::Uri;
use futures_util::future::LocalBoxFuture;
use tokio::net::TcpStream;

use crate::failure::PolicyRefusal;

/// An entry of an allow or deny list that is neither an address block nor a host name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostRuleError {
    #[error("empty host rule")]
    Empty,
    #[error("{0:?}: bad prefix length")]
    PrefixLength(String),
    #[error("{0:?} is neither an address block nor a host name")]
    Neither(String),
}

/// Which list of the policy a rule is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyList {
    Allow,
    Deny,
}

/// A rule of the policy that does not parse, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {index}: {error}")]
pub struct PolicyError {
    pub list: PolicyList,
    pub index: usize,
    pub error: HostRuleError,
}

/// One entry of an allow or deny list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRule {
    /// An address block, e.g. `169.254.0.0/16`; a bare address is a /32 or /128.
    Cidr(IpAddr, u8),
    /// `example.com` matches exactly; `.example.com` matches its subdomains.
    Name(String),
}

impl HostRule {
    pub fn parse(s: &str) -> Result<HostRule, HostRuleError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(HostRuleError::Empty);
        }
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        if let Ok(ip) = addr.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len = match len {
                Some(l) => l
                    .parse::<u8>()
                    .ok()
                    .filter(|l| *l <= max)
                    .ok_or_else(|| HostRuleError::PrefixLength(s.to_string()))?,
                None => max,
            };
            return Ok(HostRule::Cidr(ip, len));
        }
        if len.is_some() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            return Err(HostRuleError::Neither(s.to_string()));
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
    pub fn new(allow: &[String], deny: &[String]) -> Result<SourcePolicy, PolicyError> {
        let parse = |list: PolicyList, rules: &[String]| {
            rules
                .iter()
                .enumerate()
                .map(|(index, s)| HostRule::parse(s).map_err(|error| PolicyError { list, index, error }))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(SourcePolicy { allow: parse(PolicyList::Allow, allow)?, deny: parse(PolicyList::Deny, deny)? })
    }

    /// Whether a connection to `host` (as named in the URL) may be made, at address `ip` once
    /// resolved. With `ip` unknown, a name that only an address rule could admit passes; the
    /// connector decides once it has resolved it.
    pub fn check(&self, host: &str, ip: Option<IpAddr>) -> Result<(), PolicyRefusal> {
        let bare = host.trim_matches(|c| c == '[' || c == ']').trim_end_matches('.');
        let literal = bare.parse::<IpAddr>().ok();
        let addr = literal.or(ip);
        if literal.is_none() && self.deny.iter().any(|r| r.matches_name(bare)) {
            return Err(PolicyRefusal::DeniedHost(bare.to_string()));
        }
        if let Some(a) = addr {
            if self.deny.iter().any(|r| r.matches_ip(a)) {
                return Err(PolicyRefusal::DeniedAddress(a));
            }
        }
        if self.allow.is_empty() {
            return Ok(());
        }
        let by_name = literal.is_none() && self.allow.iter().any(|r| r.matches_name(bare));
        let by_addr = addr.is_some_and(|a| self.allow.iter().any(|r| r.matches_ip(a)));
        let undecided = addr.is_none() && self.allow.iter().any(|r| matches!(r, HostRule::Cidr(..)));
        if by_name || by_addr || undecided {
            Ok(())
        } else {
            Err(PolicyRefusal::NotAllowed(addr.map_or(bare.to_string(), |a| a.to_string())))
        }
    }

    /// Checks the host of `url`.
    pub fn check_url(&self, url: &str) -> Result<(), PolicyRefusal> {
        let uri: Uri = url.parse().map_err(|e: awc::http::uri::InvalidUri| PolicyRefusal::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        self.check(uri.host().unwrap_or(""), None)
    }
}

/// The TCP connector of the source client: resolves, drops the addresses the policy
/// refuses, and only then connects, so a refused address is never contacted.
#[derive(Clone)]
pub struct GuardedConnector {
    resolver: ResolverService,
    tcp: TcpConnectorService,
    policy: Rc<SourcePolicy>,
}

impl GuardedConnector {
    pub fn new(policy: SourcePolicy) -> Self {
        GuardedConnector {
            resolver: Resolver::default().service(),
            tcp: TcpConnectorService::default(),
            policy: Rc::new(policy),
        }
    }
}

fn denied(refusal: PolicyRefusal) -> ConnectError {
    ConnectError::Io(std::io::Error::new(std::io::ErrorKind::PermissionDenied, refusal))
}

impl Service<ConnectInfo<Uri>> for GuardedConnector {
    type Response = Connection<Uri, TcpStream>;
    type Error = ConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_service::always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let (resolver, tcp, policy) = (self.resolver.clone(), self.tcp, self.policy.clone());
        Box::pin(async move {
            let host = req.hostname().to_string();
            policy.check(&host, None).map_err(denied)?;
            let resolved = resolver.call(req).await?;
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = resolved
                .addrs()
                .filter(|a| match policy.check(&host, Some(a.ip())) {
                    Ok(()) => true,
                    Err(e) => {
                        refusal = Some(e);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                return Err(denied(refusal.unwrap_or(PolicyRefusal::NoAllowedAddress(host))));
            }
            tcp.call(resolved.set_addrs(allowed)).await
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
        assert!(p.check("169.254.169.254", None).is_err());
        assert!(p.check("[fd00:ec2::254]", None).is_err());
        assert!(p.check("metadata.example", Some("::ffff:169.254.169.254".parse().unwrap())).is_err());
        assert!(p.check("100.100.100.200", None).is_err());
        assert!(p.check("127.0.0.1", None).is_ok());
        assert!(p.check("example.com", None).is_ok());
    }

    #[test]
    fn allow_lists() {
        let p = policy(&["10.0.0.0/8", ".corp.example"], &["bad.corp.example"]);
        assert!(p.check("a.corp.example", Some("192.0.2.1".parse().unwrap())).is_ok());
        assert!(p.check("bad.corp.example", None).is_err());
        assert!(p.check("10.1.2.3", None).is_ok());
        assert!(p.check("11.1.2.3", None).is_err());
        assert!(p.check("other.example", None).is_ok(), "undecided until resolved");
        assert!(p.check("other.example", Some("11.1.2.3".parse().unwrap())).is_err());
        assert!(p.check("other.example", Some("10.9.9.9".parse().unwrap())).is_ok());
        let names_only = policy(&["registry.example"], &[]);
        assert!(names_only.check("registry.example", Some("127.0.0.1".parse().unwrap())).is_ok());
        assert!(names_only.check("other.example", None).is_err());
        assert!(names_only.check("127.0.0.1", None).is_err(), "an address literal is not an allowed name");
        let deny_name = policy(&[], &["localhost"]);
        assert!(deny_name.check("LOCALHOST.", None).is_err());
    }

    #[test]
    fn rules_parse() {
        assert_eq!(HostRule::parse("10.0.0.0/8").unwrap(), HostRule::Cidr("10.0.0.0".parse().unwrap(), 8));
        assert_eq!(HostRule::parse("10.0.0.0/33"), Err(HostRuleError::PrefixLength("10.0.0.0/33".into())));
        assert!(HostRule::parse("a b").is_err());
        assert_eq!(HostRule::parse(""), Err(HostRuleError::Empty));
        let err = SourcePolicy::new(&[], &["10.0.0.0/8".into(), "x/1".into()]).unwrap_err();
        assert_eq!((err.list, err.index), (PolicyList::Deny, 1));
        assert!(prefix_eq(&[10, 1, 2, 3], &[10, 200, 0, 0], 8));
        assert!(!prefix_eq(&[192, 168, 0, 0], &[192, 169, 0, 0], 16));
        assert!(prefix_eq(&[192, 168, 0, 0], &[192, 168, 0, 255], 23));
    }
}
