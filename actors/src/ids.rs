//! Identifiers and the strings derived from them (PROTOCOL.md §2).

use std::fmt;

use sha2::{Digest, Sha256};

/// Fixed salt around every taskID / preheat ID hash (§2.2).
const ID_SALT: &[u8; 32] = b">I$pg-~AS~sP'rqu_`Oh&lz#9]\"=;nE%";

/// A task ID: 64 lowercase hex characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(String);

impl TaskId {
    /// `sha256(K + taskURL + sign + rangePart + K)` where sign is md5, else identifier (§2.2).
    pub fn compute(task_url: &str, md5: &str, identifier: &str, range: Option<&str>) -> TaskId {
        let sign = if !md5.is_empty() { md5 } else { identifier };
        let mut h = Sha256::new();
        h.update(ID_SALT);
        h.update(task_url.as_bytes());
        h.update(sign.as_bytes());
        if let Some(r) = range {
            h.update(r.as_bytes());
        }
        h.update(ID_SALT);
        TaskId(hex::encode(h.finalize()))
    }

    /// Accepts only what `compute` can produce, so an ID is always safe as a file name.
    pub fn parse(s: &str) -> Option<TaskId> {
        let ok = s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| TaskId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// First three characters: the cache sub-directory (§5.6).
    pub fn prefix(&self) -> &str {
        &self.0[..3]
    }

    /// HTTP path of the CDN file on the download port.
    pub fn download_path(&self) -> String {
        format!("/download/{}/{}", self.prefix(), self.0)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A peer ID: stable `<hostName>-<IP>` for clients (§16 P6).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(String);

impl PeerId {
    pub fn for_host(host_name: &str, ip: &str) -> PeerId {
        PeerId(format!("{host_name}-{ip}"))
    }

    /// The super peer carries a suffix no registration can produce.
    pub fn for_supernode(host_name: &str, ip: &str) -> PeerId {
        PeerId(format!("{host_name}-{ip}-supernode"))
    }

    pub fn from_raw(s: &str) -> PeerId {
        PeerId(s.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The supernode's client ID for one task: `cdnnode:<advertiseIP>~<taskID>` (§2.5).
pub fn super_cid(advertise_ip: &str, task: &TaskId) -> String {
    format!("cdnnode:{advertise_ip}~{task}")
}

/// Removes the query parameters named in `filter` from `url` (§2.1).
pub fn filter_task_url(url: &str, filter: &[&str]) -> String {
    let Some((prefix, query)) = url.split_once('?') else {
        return url.to_string();
    };
    if query.trim().is_empty() || filter.is_empty() {
        return url.to_string();
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|param| {
            let key = param.split_once('=').map_or(*param, |(k, _)| k);
            !filter.contains(&key)
        })
        .collect();
    if kept.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}?{}", kept.join("&"))
    }
}

/// Preheat ID: the taskID a later registration of the same filtered URL gets (§2.6).
pub fn preheat_id(url: &str, filter: &str, identifier: &str, range: Option<&str>) -> TaskId {
    let keys: Vec<&str> = if filter.is_empty() { Vec::new() } else { filter.split('&').collect() };
    let filtered = filter_task_url(url, &keys);
    TaskId::compute(&filtered, "", identifier, range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_id_vectors() {
        assert_eq!(
            TaskId::compute("http://127.0.0.1:8080/file64m.bin", "", "", None).as_str(),
            "b821b8c59e77c81dee5362002547f48b97b18f1dbf233b7f847a63055749f6ad"
        );
        assert_eq!(
            TaskId::compute("http://127.0.0.1:28080/f10m.bin", "", "", None).as_str(),
            "88f1a0f396adfcb04390fe63af4d7379499c21293d8bafed859e252943f398d2"
        );
        assert_eq!(
            TaskId::compute("http://example.com/a.bin", "", "", None).as_str(),
            "53ade305c42cd57ce4b5db7dc3538ce62e7df286f425d7043073b604e568450a"
        );
        assert_eq!(
            TaskId::compute("http://example.com/a.bin", "abc", "", None).as_str(),
            "c2922018a03fa2fd5fe8b1764afbc58a4d13f6e437137ae62bf4050883740040"
        );
        assert_eq!(
            TaskId::compute("http://example.com/a.bin", "", "", Some("bytes=0-99")).as_str(),
            "7f88e1b3df36dad7c036e7bb67a54e2d3742dfbdf9a12681ce4e6fe3ad4d2e8f"
        );
    }

    #[test]
    fn salt_matches_hex() {
        assert_eq!(hex::encode(ID_SALT), "3e492470672d7e41537e7350277271755f604f68266c7a23395d223d3b6e4525");
    }

    #[test]
    fn filters_query() {
        assert_eq!(filter_task_url("http://a/b?x=1&token=2&y", &["token"]), "http://a/b?x=1&y");
        assert_eq!(filter_task_url("http://a/b?token=2", &["token"]), "http://a/b");
        assert_eq!(filter_task_url("http://a/b?token=2", &[]), "http://a/b?token=2");
        assert_eq!(filter_task_url("http://a/b", &["token"]), "http://a/b");
        assert_eq!(filter_task_url("http://a/b?&a=1", &[""]), "http://a/b?a=1");
    }

    #[test]
    fn task_id_parse_is_strict() {
        assert!(TaskId::parse("../etc/passwd").is_none());
        assert!(TaskId::parse(&"A".repeat(64)).is_none());
        assert!(TaskId::parse(&"a".repeat(64)).is_some());
    }
}
