//! Registering a task with its owner: `POST /api/v1/cluster/tasks` on the owner's control
//! API, the one supernode-to-supernode call. The owner registers the task as its own (it
//! fetches the source) and answers the task's state, or why it refused.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::view::Member;
use crate::ids::TaskId;
use crate::spec::{SourceTls, TaskSpec};
use crate::status::CdnStatus;

/// The path of the owner's endpoint.
pub const OWNER_TASKS_PATH: &str = "/api/v1/cluster/tasks";

/// How long the owner may take: dfget gives the whole registration 5 s.
const FORWARD_TIMEOUT: Duration = Duration::from_millis(4500);

/// The body of `POST /api/v1/cluster/tasks`: a registration's task, TLS options included.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OwnerTaskRequest {
    #[serde(rename = "rawURL")]
    pub raw_url: String,
    #[serde(rename = "taskURL")]
    pub task_url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub md5: String,
    #[serde(default)]
    pub identifier: String,
    #[serde(default)]
    pub insecure: bool,
    /// Base64 PEM certificates.
    #[serde(default, rename = "rootCAs")]
    pub root_cas: Vec<String>,
}

impl OwnerTaskRequest {
    pub fn from_spec(spec: &TaskSpec) -> OwnerTaskRequest {
        let b64 = base64::engine::general_purpose::STANDARD;
        OwnerTaskRequest {
            raw_url: spec.raw_url.clone(),
            task_url: spec.task_url.clone(),
            headers: spec.headers.clone(),
            md5: spec.md5.clone(),
            identifier: spec.identifier.clone(),
            insecure: spec.tls.is_insecure(),
            root_cas: spec.tls.extra_roots().iter().map(|p| b64.encode(p)).collect(),
        }
    }

    /// The spec it names; `Err` names the field that does not decode.
    pub fn to_spec(&self) -> Result<TaskSpec, String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let roots = self
            .root_cas
            .iter()
            .map(|r| b64.decode(r.trim()).map_err(|e| format!("rootCAs: not base64: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TaskSpec {
            raw_url: self.raw_url.clone(),
            task_url: self.task_url.clone(),
            headers: self.headers.clone(),
            md5: self.md5.clone(),
            identifier: self.identifier.clone(),
            tls: SourceTls::from_request(self.insecure, roots),
        })
    }
}

/// The owner's answer: the task as it is there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OwnerTask {
    #[serde(rename = "taskId")]
    pub task_id: TaskId,
    #[serde(rename = "runId")]
    pub run_id: u64,
    pub status: CdnStatus,
    #[serde(rename = "httpLength")]
    pub http_len: Option<u64>,
    #[serde(rename = "pieceSize")]
    pub piece_size: u64,
    #[serde(rename = "pieceTotal")]
    pub piece_total: u64,
    #[serde(rename = "fileLength")]
    pub file_length: u64,
    #[serde(rename = "realMd5")]
    pub real_md5: String,
    pub failure: Option<String>,
}

/// Why the owner refused a registration, as the client must be told.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "kind", content = "status")]
pub enum RefusalKind {
    /// The source cannot be used (607).
    Source,
    /// The source wants credentials (608), with its HTTP status.
    Auth(u16),
    /// The source policy refuses it (403).
    Denied,
    /// Another task has that ID (606).
    Conflict,
    /// A limit of the owner is reached (503).
    Limit,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OwnerRefusal {
    pub refusal: RefusalKind,
    pub message: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ForwardError {
    #[error(transparent)]
    Refused(OwnerRefusal),
    /// The owner could not be asked (down, or answering nonsense).
    #[error("task owner {owner}: {reason}")]
    Unreachable { owner: String, reason: String },
}

/// Calls owners; one per arbiter (the HTTP client is not shared across threads).
#[derive(Clone)]
pub struct Forwarder {
    client: awc::Client,
    /// The cluster's `api_token`, when the API needs one.
    token: Option<String>,
}

impl Forwarder {
    pub fn new(token: Option<String>) -> Forwarder {
        let client = awc::Client::builder().timeout(FORWARD_TIMEOUT).finish();
        Forwarder { client, token: token.filter(|t| !t.is_empty()) }
    }

    pub async fn register(&self, owner: &Member, spec: &TaskSpec) -> Result<OwnerTask, ForwardError> {
        let unreachable = |reason: String| ForwardError::Unreachable { owner: owner.id.to_string(), reason };
        let mut req = self.client.post(format!("{}{OWNER_TASKS_PATH}", owner.control_url()));
        if let Some(t) = &self.token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        let mut res =
            req.send_json(&OwnerTaskRequest::from_spec(spec)).await.map_err(|e| unreachable(e.to_string()))?;
        let body = res.body().limit(1 << 20).await.map_err(|e| unreachable(e.to_string()))?;
        if res.status().is_success() {
            return serde_json::from_slice(&body).map_err(|e| unreachable(format!("unreadable answer: {e}")));
        }
        match serde_json::from_slice::<OwnerRefusal>(&body) {
            Ok(refusal) => Err(ForwardError::Refused(refusal)),
            Err(_) => Err(unreachable(format!("answered {}", res.status()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_whole_spec() {
        let spec = TaskSpec {
            raw_url: "https://h/x?t=1".into(),
            task_url: "https://h/x".into(),
            headers: [("Range".to_string(), "bytes=0-9".to_string())].into(),
            md5: "m".into(),
            identifier: "i".into(),
            tls: SourceTls::Verify { extra_roots: vec![b"PEM".to_vec()] },
        };
        let wire = serde_json::to_string(&OwnerTaskRequest::from_spec(&spec)).unwrap();
        let back: OwnerTaskRequest = serde_json::from_str(&wire).unwrap();
        assert_eq!(back.to_spec().unwrap(), spec);
        let refusal = OwnerRefusal { refusal: RefusalKind::Auth(401), message: "m".into() };
        let wire = serde_json::to_string(&refusal).unwrap();
        assert_eq!(serde_json::from_str::<OwnerRefusal>(&wire).unwrap(), refusal);
    }
}
