//! What a registration asks for. Part of the vocabulary: imports nothing of the crate but
//! [`crate::ids`].

use std::collections::BTreeMap;

use crate::ids::{filter_task_url, TaskId};

/// How the TLS certificate of an https source is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceTls {
    /// Against the system's roots and these extra CA certificates (PEM).
    Verify { extra_roots: Vec<Vec<u8>> },
    /// Not at all: the client asked for it (`insecure`), which overrides any `rootCAs`.
    Insecure,
}

impl Default for SourceTls {
    fn default() -> Self {
        SourceTls::Verify { extra_roots: Vec::new() }
    }
}

impl SourceTls {
    /// From the registration's `insecure` flag and `rootCAs` list.
    pub fn from_request(insecure: bool, root_cas: Vec<Vec<u8>>) -> SourceTls {
        if insecure {
            SourceTls::Insecure
        } else {
            SourceTls::Verify { extra_roots: root_cas }
        }
    }

    pub fn is_insecure(&self) -> bool {
        matches!(self, SourceTls::Insecure)
    }

    pub fn extra_roots(&self) -> &[Vec<u8>] {
        match self {
            SourceTls::Verify { extra_roots } => extra_roots,
            SourceTls::Insecure => &[],
        }
    }
}

/// The source, how to reach it, and what identifies the task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSpec {
    pub raw_url: String,
    /// The URL that identifies the task (see [`task_url`]).
    pub task_url: String,
    /// Sent to the source; a `Range` header is part of the task's identity.
    pub headers: BTreeMap<String, String>,
    pub md5: String,
    pub identifier: String,
    pub tls: SourceTls,
}

impl TaskSpec {
    pub fn task_id(&self) -> TaskId {
        TaskId::compute(&self.task_url, &self.md5, &self.identifier, self.headers.get("Range").map(String::as_str))
    }

    /// Whether a registration of `other` names the same resource: same task URL, and the same
    /// md5 or, when neither gives one, the same identifier.
    pub fn same_resource(&self, other: &TaskSpec) -> bool {
        self.task_url == other.task_url
            && self.md5 == other.md5
            && (!self.md5.is_empty() || self.identifier == other.identifier)
    }
}

/// The task URL of a registration: the one the client computed when it sends one (dfget
/// does), else `raw_url` without the query keys in `filter`.
pub fn task_url(raw_url: &str, given: &str, filter: &[&str]) -> String {
    if given.is_empty() {
        filter_task_url(raw_url, filter)
    } else {
        given.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_url_prefers_the_clients() {
        assert_eq!(task_url("http://a/b?t=1", "", &["t"]), "http://a/b");
        assert_eq!(task_url("http://a/b?t=1", "http://a/b?t=1", &["t"]), "http://a/b?t=1");
        assert_eq!(task_url("http://a/b?t=1", "", &[]), "http://a/b?t=1");
    }

    #[test]
    fn insecure_overrides_roots() {
        assert_eq!(SourceTls::from_request(true, vec![b"pem".to_vec()]), SourceTls::Insecure);
        assert_eq!(SourceTls::from_request(false, vec![]).extra_roots().len(), 0);
    }

    #[test]
    fn same_resource_needs_same_sign() {
        let a = TaskSpec { task_url: "u".into(), identifier: "x".into(), ..TaskSpec::default() };
        let b = TaskSpec { identifier: "y".into(), ..a.clone() };
        assert!(!a.same_resource(&b));
        let md5 = TaskSpec { md5: "m".into(), ..a.clone() };
        assert!(md5.same_resource(&TaskSpec { identifier: "z".into(), ..md5.clone() }));
    }
}
