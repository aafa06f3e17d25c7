//! `POST /peer/registry`: the request exactly as dfget builds it, and the reply as dfget reads it.
//!
//! The supernode under test is meant to accept the real client unchanged, so the body keeps
//! dfget's keys, their order, what it leaves out (an empty `md5`, `callSystem` or `headers`;
//! `identifier` when there is an md5) and Go's HTML-safe escaping; the reply is decoded with
//! Go's lenient key matching.

use serde::Serialize;
use serde_json::Value;

use crate::client::{lossy, Control};
use crate::config::PeerConfig;
use crate::error::SimError;
use crate::wire::{get_ci, get_int, get_str, go_json, reply_code, CODE_SUCCESS, DFGET_VERSION, PIECE_META};

/// The `data` of a successful `/peer/registry` reply.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Registration {
    pub task_id: String,
    /// Source length as probed (`-1` unknown).
    pub file_length: i64,
    pub piece_size: u64,
    pub cdn_source: String,
}

/// Who registers: the parts of the request that are this run's identity, not its configuration.
pub(crate) struct Registrant<'a> {
    /// The host part of the supernode address (`superNodeIp`).
    pub(crate) super_node_host: &'a str,
    pub(crate) cid: &'a str,
    pub(crate) port: u16,
    /// `/peer/file/<taskFileName>`.
    pub(crate) path: String,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Sends the registration and decodes the reply.
pub(crate) async fn register(ctl: &Control, c: &PeerConfig, who: Registrant<'_>) -> Result<Registration, SimError> {
    #[derive(Serialize)]
    struct Req<'a> {
        #[serde(rename = "superNodeIp")]
        super_node_ip: &'a str,
        #[serde(rename = "rawUrl")]
        raw_url: &'a str,
        #[serde(rename = "taskUrl")]
        task_url: &'a str,
        cid: &'a str,
        ip: String,
        #[serde(rename = "hostName")]
        host_name: String,
        port: u16,
        path: String,
        version: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        md5: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        identifier: Option<&'a str>,
        #[serde(rename = "callSystem", skip_serializing_if = "Option::is_none")]
        call_system: Option<&'a str>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        headers: &'a Vec<String>,
        pattern: &'static str,
    }
    let md5 = c.md5.as_deref().filter(|s| !s.is_empty());
    let req = Req {
        super_node_ip: who.super_node_host,
        raw_url: &c.url,
        task_url: &c.url,
        cid: who.cid,
        ip: c.ip.to_string(),
        host_name: c.host_name.clone().unwrap_or_else(host_name),
        port: who.port,
        path: who.path,
        version: DFGET_VERSION,
        md5,
        identifier: if md5.is_none() { c.identifier.as_deref().filter(|s| !s.is_empty()) } else { None },
        call_system: c.callsystem.as_deref().filter(|s| !s.is_empty()),
        headers: &c.headers,
        pattern: "p2p",
    };
    let body = go_json(&req)?;
    let (status, bytes) = ctl.post_json("/peer/registry", &body).await?;
    if status != 200 {
        return Err(SimError::Register {
            http_status: status,
            code: reply_code(&bytes),
            msg: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| SimError::Transport(format!("/peer/registry: not JSON ({e}): {}", lossy(&bytes))))?;
    let code =
        get_int(&v, "code").ok_or_else(|| SimError::Protocol("/peer/registry: code is not an integer".into()))?;
    if code != CODE_SUCCESS {
        return Err(SimError::Register {
            http_status: status,
            code: Some(code),
            msg: get_str(&v, "msg").unwrap_or_default(),
        });
    }
    let data = get_ci(&v, "data")
        .filter(|d| d.is_object())
        .ok_or_else(|| SimError::Protocol(format!("/peer/registry: success without data: {}", lossy(&bytes))))?;
    let bad = |k: &str| SimError::Protocol(format!("/peer/registry: data.{k} has the wrong type"));
    let task_id = get_str(data, "taskId").ok_or_else(|| bad("taskId"))?;
    let file_length = get_int(data, "fileLength").ok_or_else(|| bad("fileLength"))?;
    let piece_size = get_int(data, "pieceSize").ok_or_else(|| bad("pieceSize"))?;
    let cdn_source = get_str(data, "cdnSource").ok_or_else(|| bad("cdnSource"))?;
    if task_id.is_empty() {
        return Err(SimError::Protocol("/peer/registry: empty taskId".into()));
    }
    if piece_size <= PIECE_META as i64 || piece_size > u32::MAX as i64 {
        return Err(SimError::Protocol(format!("/peer/registry: unusable pieceSize {piece_size}")));
    }
    Ok(Registration { task_id, file_length, piece_size: piece_size as u64, cdn_source })
}
