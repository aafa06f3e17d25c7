//! `/peer/heartbeat` and `/peer/network` (dfdaemon's seed pattern). Both answer one body
//! that is the ResultInfo envelope the dfget client functions expect and, at the top
//! level, the bare payload swagger describes.

use std::collections::BTreeMap;

use actix_web::http::Method;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use supernode_actors::scheduler::Heartbeat;
use supernode_actors::task_manager::SeedNetwork;
use supernode_actors::ClientId;

use super::error::ApiError;
use super::json::{bind_json, query_pairs, read_body};
use super::peers::PeerInfoDto;
use super::reply::json_response;
use super::tasks::TaskInfo;
use super::{AppState, RouteSet};

pub fn routes(r: &mut RouteSet) {
    for prefix in ["", "/api/v1"] {
        r.add(&format!("{prefix}/peer/heartbeat"), vec![(Method::POST, web::to(heartbeat))]);
        r.add(&format!("{prefix}/peer/network"), vec![(Method::POST, web::to(network))]);
    }
}

/// `{"code":200,"msg":"success","data":P, …P}`: both shapes in one body.
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
    let info = state.scheduler.send(Heartbeat { cid: ClientId::new(r.cid) }).await?;
    let seeds: Vec<String> = info.seed_task_ids.iter().map(ToString::to_string).collect();
    let reply = HeartBeatResponse {
        need_register: info.need_register,
        seed_task_ids: (!seeds.is_empty()).then_some(seeds),
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
    let seeds = state.tasks.send(SeedNetwork { urls }).await?;
    let nodes: Vec<Node> = seeds
        .into_iter()
        .map(|s| Node {
            basic: PeerInfoDto::from(s.peer),
            extra: BTreeMap::new(),
            load: s.load,
            tasks: s
                .tasks
                .into_iter()
                .map(|(task, seed)| TaskFetchInfo {
                    task: TaskInfo::from(task),
                    pieces: vec![SeedPiece {
                        pid: seed.peer_id.to_string(),
                        piece_size: seed.piece_size,
                        peer_ip: seed.ip.to_string(),
                        peer_port: seed.port,
                        path: seed.path,
                    }],
                })
                .collect(),
        })
        .collect();
    Ok(both_shapes(&NetworkInfoFetchResponse { nodes: (!nodes.is_empty()).then_some(nodes) }))
}
