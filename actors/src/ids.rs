//! Identifiers and the strings derived from them. Part of the vocabulary: imports nothing of
//! the crate.
//!
//! Each kind of ID is its own type, so a client ID can never be passed where a peer ID is
//! meant. The hashes follow the Go supernode exactly, since dfget compares the task ID it
//! gets with the one it computes itself.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Fixed salt before and after every task ID / preheat ID hash (Go's `K`).
const ID_SALT: &[u8; 32] = b">I$pg-~AS~sP'rqu_`Oh&lz#9]\"=;nE%";

/// A task ID: 64 lowercase hex characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TaskId(String);

/// Read back only what [`TaskId::parse`] accepts, wherever it comes from.
impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TaskId, D::Error> {
        let s = String::deserialize(d)?;
        TaskId::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a task ID")))
    }
}

impl TaskId {
    /// `sha256(K + taskURL + sign + range + K)`, where sign is the md5 when one is given and
    /// the identifier otherwise; the `Range` header, when present, is part of the identity.
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
        is_sha256_hex(s).then(|| TaskId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// First three characters: the cache sub-directory the Go supernode also uses.
    pub fn prefix(&self) -> &str {
        &self.0[..3]
    }

    /// HTTP path of the CDN file on the download port.
    pub fn download_path(&self) -> String {
        format!("/download/{}/{}", self.prefix(), self.0)
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A peer ID. Clients get a stable `<hostName>-<IP>`, so a host registering again is the same
/// peer; the super peer carries a suffix no registration can produce.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(String);

impl PeerId {
    pub fn for_host(host_name: &str, ip: &str) -> PeerId {
        PeerId(format!("{host_name}-{ip}"))
    }

    pub fn for_supernode(host_name: &str, ip: &str) -> PeerId {
        PeerId(format!("{host_name}-{ip}-supernode"))
    }

    /// A peer ID as a request names it (it may name no peer at all).
    pub fn from_raw(s: &str) -> PeerId {
        PeerId(s.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A client ID (dfget's `cid`): one dfget run, unique per process. The supernode has one per
/// task: `cdnnode:<advertiseIP>~<taskID>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientId(String);

impl ClientId {
    pub fn new(s: impl Into<String>) -> ClientId {
        ClientId(s.into())
    }

    pub fn for_supernode(advertise_ip: &str, task: &TaskId) -> ClientId {
        ClientId(format!("cdnnode:{advertise_ip}~{task}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A preheat ID: the task ID that a later registration of the same filtered URL gets, so a
/// preheated file is found by the dfget that asks for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PreheatId(String);

impl PreheatId {
    /// `filter` is the `&`-separated list of query keys left out of the task URL.
    pub fn compute(url: &str, filter: &str, identifier: &str, range: Option<&str>) -> PreheatId {
        let keys: Vec<&str> = if filter.is_empty() { Vec::new() } else { filter.split('&').collect() };
        let task = TaskId::compute(&filter_task_url(url, &keys), "", identifier, range);
        PreheatId(task.0)
    }

    pub fn from_raw(s: &str) -> PreheatId {
        PreheatId(s.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The task a file preheat registers.
    pub fn task_id(&self) -> Option<TaskId> {
        TaskId::parse(&self.0)
    }
}

/// [`PreheatId::compute`] as a function.
pub fn preheat_id(url: &str, filter: &str, identifier: &str, range: Option<&str>) -> PreheatId {
    PreheatId::compute(url, filter, identifier, range)
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
display_as_str!(TaskId, PeerId, ClientId, PreheatId);

/// Removes the query parameters named in `filter` from `url`: the task URL that identifies a
/// download whose URL carries per-request tokens. An empty query or filter leaves it as it is.
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
    fn preheat_id_is_the_task_id_of_the_filtered_url() {
        let id = PreheatId::compute("http://a/b?x=1&token=2", "token", "", None);
        assert_eq!(id.task_id(), Some(TaskId::compute("http://a/b?x=1", "", "", None)));
    }

    #[test]
    fn task_id_parse_is_strict() {
        assert!(TaskId::parse("../etc/passwd").is_none());
        assert!(TaskId::parse(&"A".repeat(64)).is_none());
        assert!(TaskId::parse(&"a".repeat(64)).is_some());
    }

    #[test]
    fn supernode_ids_cannot_collide_with_clients() {
        let task = TaskId::compute("http://a/b", "", "", None);
        assert_eq!(ClientId::for_supernode("10.0.0.1", &task).as_str(), format!("cdnnode:10.0.0.1~{task}"));
        assert_ne!(PeerId::for_supernode("h", "10.0.0.1"), PeerId::for_host("h", "10.0.0.1"));
    }
}
