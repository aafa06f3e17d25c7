//! `/peer/heartbeat` and `/peer/network` (§10.1, §16 P5, P17). Both answer one body that
//! is the ResultInfo envelope the dfget client functions expect and, at the top level,
//! the bare payload swagger describes.

use std::collections::BTreeMap;

use actix_web::http::Method;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use supernode_actors::peer_registry::GetPeer;
use supernode_actors::scheduler::{Heartbeat, NetworkInfo, SeedNode};
use supernode_actors::task_manager::GetTask;

use super::error::ApiError;
use super::json::{bind_json, json_response, query_pairs, read_body};
use super::peers::PeerInfoDto;
use super::tasks::TaskInfo;
use super::{AppState, RouteSet};

pub fn routes(r: &mut RouteSet) {
    for prefix in ["", "/api/v1"] {
        r.add(&format!("{prefix}/peer/heartbeat"), vec![(Method::POST, web::to(heartbeat))]);
        r.add(&format!("{prefix}/peer/network"), vec![(Method::POST, web::to(network))]);
    }
}

/// `{"code":200,"msg":"success","data":P, …P}` (§16 P5).
#[derive(Serialize)]
struct BothShapes<'a, P: Serialize> {
    code: i32,
    msg: &'static str,
    data: &'a P,
    #[serde(flatten)]
    payload: &'a P,
}

fn both_shapes<P: Serialize>(payload: &P) -> HttpResponse {
    json_response(StatusCode::OK, &BothShapes { code: 200, msg: "success", data: payload, payload })
}

fn read_optional<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        bind_json(body)
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct HeartBeatRequest {
    #[serde(rename = "cID")]
    cid: String,
}

#[derive(Serialize)]
struct HeartBeatResponse {
    #[serde(rename = "needRegister", skip_serializing_if = "std::ops::Not::not")]
    need_register: bool,
    #[serde(rename = "seedTaskIDs")]
    seed_task_ids: Option<Vec<String>>,
    version: String,
}

async fn heartbeat(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload).await?;
    let r: HeartBeatRequest = read_optional(&body)?;
    let info = state.scheduler.send(Heartbeat { cid: r.cid }).await?;
    let reply = HeartBeatResponse {
        need_register: info.need_register,
        seed_task_ids: (!info.seed_task_ids.is_empty()).then_some(info.seed_task_ids),
        version: state.instance.clone(),
    };
    Ok(both_shapes(&reply))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NetworkInfoFetchRequest {
    urls: Vec<String>,
}

#[derive(Serialize)]
struct SeedPiece {
    #[serde(rename = "pID")]
    pid: String,
    #[serde(rename = "pieceSize")]
    piece_size: u64,
    #[serde(rename = "peerIP")]
    peer_ip: String,
    #[serde(rename = "peerPort")]
    peer_port: u16,
    path: String,
}

#[derive(Serialize)]
struct TaskFetchInfo {
    task: TaskInfo,
    pieces: Vec<SeedPiece>,
}

#[derive(Serialize)]
struct Node {
    basic: PeerInfoDto,
    extra: BTreeMap<String, String>,
    load: u32,
    tasks: Vec<TaskFetchInfo>,
}

#[derive(Serialize)]
struct NetworkInfoFetchResponse {
    nodes: Option<Vec<Node>>,
}

async fn network(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut start = 0usize;
    let mut limit: i64 = 500;
    for (k, v) in query_pairs(&req)? {
        match k.as_str() {
            "start" => {
                start = v
                    .parse()
                    .map_err(|_| ApiError::BadRequest(format!("start: {v:?} is not a non-negative integer")))?
            }
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|l| *l >= -1)
                    .ok_or_else(|| ApiError::BadRequest(format!("limit: {v:?} is not an integer >= -1")))?
            }
            _ => {}
        }
    }
    let body = read_body(&req, payload).await?;
    let r: NetworkInfoFetchRequest = read_optional(&body)?;
    state.check_list_len("urls", r.urls.len())?;
    let urls: Vec<String> =
        r.urls.into_iter().skip(start).take(if limit < 0 { usize::MAX } else { limit as usize }).collect();
    let seeds = state.scheduler.send(NetworkInfo { urls }).await?;
    let mut by_peer: BTreeMap<String, Vec<SeedNode>> = BTreeMap::new();
    for s in seeds {
        by_peer.entry(s.peer_id.to_string()).or_default().push(s);
    }
    let mut nodes = Vec::new();
    for (_, seeds) in by_peer {
        let Ok(peer) = state.peers.send(GetPeer(seeds[0].peer_id.clone())).await? else { continue };
        let mut tasks = Vec::new();
        for s in &seeds {
            let Some(task) = state.tasks.send(GetTask(s.task_id.clone())).await? else { continue };
            let piece = SeedPiece {
                pid: s.peer_id.to_string(),
                piece_size: s.piece_size,
                peer_ip: s.ip.to_string(),
                peer_port: s.port,
                path: s.path.clone(),
            };
            tasks.push(TaskFetchInfo { task: TaskInfo::from(task), pieces: vec![piece] });
        }
        let load = seeds.iter().map(|s| s.load).max().unwrap_or(0);
        nodes.push(Node { basic: PeerInfoDto::from(peer), extra: BTreeMap::new(), load, tasks });
    }
    Ok(both_shapes(&NetworkInfoFetchResponse { nodes: (!nodes.is_empty()).then_some(nodes) }))
}
