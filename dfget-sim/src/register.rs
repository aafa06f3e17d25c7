//! `POST /peer/registry`: the request exactly as dfget builds it, the reply as dfget reads it,
//! and which supernode of the list a registration goes to.
//!
//! The supernode under test is meant to accept the real client unchanged, so the body keeps
//! dfget's keys, their order, what it leaves out (an empty `md5`, `callSystem` or `headers`;
//! `identifier` when there is an md5) and Go's HTML-safe escaping; the reply is decoded with
//! Go's lenient key matching. With several supernodes the walk over the list is dfget's too
//! (see [`Registrar::register`]), because a cluster of supernodes must cope with exactly the
//! registrations it sends when a node fails.

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::client::{lossy, Control};
use crate::config::PeerConfig;
use crate::error::SimError;
use crate::nodes::{Node, NodeList};
use crate::stats::Stats;
use crate::wire::{
    get_ci, get_int, get_str, go_json, reply_code, CODE_NEED_AUTH, CODE_SUCCESS, CODE_URL_NOT_REACHABLE,
    CODE_WAIT_AUTH, DFGET_VERSION, PIECE_META,
};

/// The `data` of a successful `/peer/registry` reply.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Registration {
    pub task_id: String,
    /// Source length as probed (`-1` unknown).
    pub file_length: i64,
    pub piece_size: u64,
    pub cdn_source: String,
}

/// Who registers: the parts of the request that are this run's identity, not its
/// configuration. They stay the same for every supernode the run registers with.
pub(crate) struct Registrant {
    pub(crate) cid: String,
    pub(crate) port: u16,
    /// `/peer/file/<taskFileName>`.
    pub(crate) path: String,
}

/// A registration that a supernode accepted.
#[derive(Debug, Clone)]
pub(crate) struct Registered {
    pub(crate) node: Node,
    pub(crate) reg: Registration,
}

/// The node list of a run and the registration in use.
pub(crate) struct Registrar {
    nodes: tokio::sync::Mutex<NodeList>,
    current: Mutex<Option<Registered>>,
}

impl Registrar {
    pub(crate) fn new(nodes: NodeList) -> Registrar {
        Registrar { nodes: tokio::sync::Mutex::new(nodes), current: Mutex::new(None) }
    }

    /// The registration in use, if any.
    pub(crate) fn current(&self) -> Option<Registered> {
        self.current.lock().ok().and_then(|r| r.clone())
    }

    /// Registers with the node in use again (the run is registered already), else with the
    /// next node of the list that accepts.
    pub(crate) async fn register_again_or_next(
        &self,
        c: &PeerConfig,
        who: &Registrant,
        stats: &Stats,
    ) -> Result<Registered, SimError> {
        match self.current() {
            Some(r) => self.register_with(r.node, c, who, stats).await,
            None => self.register(c, who, stats).await,
        }
    }

    async fn register_with(
        &self,
        node: Node,
        c: &PeerConfig,
        who: &Registrant,
        stats: &Stats,
    ) -> Result<Registered, SimError> {
        let ctl = Control::new(&node.addr, c.control_timeout);
        match register(&ctl, c, &node.host, who).await {
            Ok(reg) => Ok(self.accepted(node, reg, stats)),
            Err(e) => {
                Stats::push(&stats.registration_failures, format!("{}: {e}", node.addr));
                Err(e)
            }
        }
    }

    fn accepted(&self, node: Node, reg: Registration, stats: &Stats) -> Registered {
        Stats::push(&stats.registrations, node.addr.clone());
        let r = Registered { node, reg };
        if let Ok(mut cur) = self.current.lock() {
            *cur = Some(r.clone());
        }
        r
    }

    /// dfget's walk: from where the list stands, skipping the node in use, registers with the
    /// first node that accepts. A node that cannot be reached, answers a non-200 status, an
    /// unreadable reply or another code is skipped; 609 ("wait for auth") is asked again up to 3
    /// times a second apart; 607 and 608 (the source cannot be fetched or needs authorisation)
    /// end the walk, since another node would meet the same source. Fails with the last node's
    /// error when none accepts.
    pub(crate) async fn register(
        &self,
        c: &PeerConfig,
        who: &Registrant,
        stats: &Stats,
    ) -> Result<Registered, SimError> {
        let mut list = self.nodes.lock().await;
        let mut auth_waits = 0;
        let mut last_error = None;
        let mut candidate = list.next();
        while let Some(node) = candidate.take() {
            let ctl = Control::new(&node.addr, c.control_timeout);
            let e = match register(&ctl, c, &node.host, who).await {
                Ok(reg) => {
                    list.set_in_use(Some(&node));
                    return Ok(self.accepted(node, reg, stats));
                }
                Err(e) => e,
            };
            Stats::push(&stats.registration_failures, format!("{}: {e}", node.addr));
            match e {
                SimError::Register {
                    http_status: 200, code: Some(CODE_URL_NOT_REACHABLE | CODE_NEED_AUTH), ..
                } => {
                    list.set_in_use(Some(&node));
                    return Err(e);
                }
                SimError::Register { http_status: 200, code: Some(CODE_WAIT_AUTH), .. } if auth_waits < 3 => {
                    auth_waits += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    candidate = Some(node);
                }
                _ => candidate = list.next(),
            }
            last_error = Some(e);
        }
        list.set_in_use(None);
        Err(last_error.unwrap_or_else(|| SimError::Register {
            http_status: 0,
            code: None,
            msg: "no supernode left to register with".into(),
        }))
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Sends the registration to `ctl`'s node (whose host part is `super_node_host`) and decodes
/// the reply.
async fn register(
    ctl: &Control,
    c: &PeerConfig,
    super_node_host: &str,
    who: &Registrant,
) -> Result<Registration, SimError> {
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
        path: &'a str,
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
        super_node_ip: super_node_host,
        raw_url: &c.url,
        task_url: &c.url,
        cid: &who.cid,
        ip: c.ip.to_string(),
        host_name: c.host_name.clone().unwrap_or_else(host_name),
        port: who.port,
        path: &who.path,
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
