//! `/api/v1/tasks…` (§4.2, §4.3): the task API the original left unimplemented, plus
//! pause/resume for operators.

use std::collections::BTreeMap;

use actix_web::http::Method;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use supernode_actors::ids::filter_task_url;
use supernode_actors::peer_registry::GetPeer;
use supernode_actors::piece::PieceRange;
use supernode_actors::scheduler::{
    ApplyPieceResult, PeerCompletedTask, Poll, PollReply, Progress, RegisterClient, ReportPieceError, ResolvePeer,
};
use supernode_actors::task_manager::{
    DeleteTask, GetTask, ListTasks, RegisterError, RegisterTask, SetPaused, Task, TaskSpec,
};
use supernode_actors::{PeerId, TaskId};

use super::error::ApiError;
use super::json::{bind_json, json_response, query_pairs, read_body};
use super::registry::{check_headers, check_source_url};
use super::schedule::{handle_piece_error, parse_error_type, parse_result, parse_status, sched_error};
use super::{AppState, RouteSet};

pub fn routes(r: &mut RouteSet) {
    r.add("/api/v1/tasks", vec![(Method::POST, web::to(create)), (Method::GET, web::to(list))]);
    r.add(
        "/api/v1/tasks/{id}",
        vec![(Method::GET, web::to(get)), (Method::PUT, web::to(update)), (Method::DELETE, web::to(delete))],
    );
    r.add("/api/v1/tasks/{id}/pieces", vec![(Method::GET, web::to(pull_pieces))]);
    r.add("/api/v1/tasks/{id}/pieces/{pieceRange}", vec![(Method::PUT, web::to(update_piece))]);
    // Go answered GET with a JSON body; swagger says POST. Both work.
    r.add(
        "/api/v1/tasks/{id}/pieces/{pieceRange}/error",
        vec![(Method::POST, web::to(piece_error)), (Method::GET, web::to(piece_error))],
    );
}

/// TaskInfo (§4.2): every key omitted when empty; `paused` and `errorMsg` are ours.
#[derive(Serialize)]
pub struct TaskInfo {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "cdnStatus")]
    cdn_status: &'static str,
    #[serde(rename = "fileLength", skip_serializing_if = "is_zero")]
    file_length: u64,
    #[serde(rename = "httpFileLength", skip_serializing_if = "is_zero_i64")]
    http_file_length: i64,
    #[serde(rename = "pieceSize", skip_serializing_if = "is_zero")]
    piece_size: u64,
    #[serde(rename = "pieceTotal", skip_serializing_if = "is_zero")]
    piece_total: u64,
    #[serde(rename = "rawURL")]
    raw_url: String,
    #[serde(rename = "taskURL")]
    task_url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    md5: String,
    #[serde(rename = "realMd5", skip_serializing_if = "String::is_empty")]
    real_md5: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    identifier: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    paused: bool,
    #[serde(rename = "errorMsg", skip_serializing_if = "String::is_empty")]
    error_msg: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

impl From<Task> for TaskInfo {
    fn from(t: Task) -> Self {
        TaskInfo {
            id: t.id.to_string(),
            cdn_status: t.cdn_status.as_str(),
            file_length: t.file_length,
            http_file_length: t.http_file_length,
            piece_size: t.piece_size,
            piece_total: t.piece_total,
            raw_url: t.spec.raw_url,
            task_url: t.spec.task_url,
            md5: t.spec.md5,
            real_md5: t.real_md5,
            identifier: t.spec.identifier,
            headers: t.spec.headers,
            paused: t.paused,
            error_msg: t.failure,
        }
    }
}

/// The v1 API names sources by peer ID; the scheduler knows them by their download's CID.
async fn client_of_peer(state: &AppState, task_id: &TaskId, peer_id: &str) -> Result<Option<String>, ApiError> {
    Ok(state.scheduler.send(ResolvePeer { task_id: task_id.clone(), peer_id: PeerId::from_raw(peer_id) }).await?)
}

fn task_id(raw: &str) -> Result<TaskId, ApiError> {
    TaskId::parse(raw).ok_or_else(|| ApiError::NotFound(format!("task {raw:?} not found")))
}

/// `/api/v1/tasks/{id}/pieces/{pieceRange}…`: the task ID and the piece range.
fn piece_path(path: web::Path<(String, String)>) -> Result<(TaskId, PieceRange), ApiError> {
    let (raw_id, raw_range) = path.into_inner();
    let id = task_id(&raw_id)?;
    let range = raw_range.parse().map_err(|e| ApiError::BadRequest(format!("pieceRange: {e}")))?;
    Ok((id, range))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TaskCreateRequest {
    #[serde(rename = "cID")]
    cid: String,
    #[serde(rename = "rawURL")]
    raw_url: String,
    #[serde(rename = "taskURL")]
    task_url: String,
    md5: String,
    identifier: String,
    path: String,
    headers: BTreeMap<String, String>,
    dfdaemon: bool,
    #[serde(rename = "callSystem")]
    call_system: Option<String>,
    filter: Vec<String>,
    #[serde(rename = "taskId")]
    task_id: String,
    #[serde(rename = "fileLength")]
    file_length: i64,
    #[serde(rename = "peerID")]
    peer_id: String,
    #[serde(rename = "supernodeIP")]
    supernode_ip: String,
}

#[derive(Serialize)]
struct TaskCreateResponse {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "fileLength")]
    file_length: i64,
    #[serde(rename = "pieceSize")]
    piece_size: u64,
    #[serde(rename = "cdnSource")]
    cdn_source: &'static str,
}

/// Registration failures on the v1 API.
fn register_error(e: RegisterError) -> ApiError {
    match &e {
        RegisterError::TooMany(_) => ApiError::Overloaded(e.to_string()),
        RegisterError::Denied(m) => ApiError::Forbidden(m.clone()),
        RegisterError::Conflict(_) => ApiError::Conflict(e.to_string()),
        RegisterError::SourceUnreachable(_) | RegisterError::SourceAuth(_) => ApiError::SourceFailed(e.to_string()),
    }
}

async fn create(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload).await?;
    let r: TaskCreateRequest = bind_json(&body)?;
    check_source_url("rawURL", &r.raw_url)?;
    if r.call_system.as_deref() == Some("") {
        return Err(ApiError::BadRequest("callSystem: empty value".into()));
    }
    state.check_list_len("headers", r.headers.len())?;
    state.check_list_len("filter", r.filter.len())?;
    check_headers(&r.headers)?;
    state.check_call_system(r.call_system.as_deref().unwrap_or(""))?;
    state.check_source(&r.raw_url)?;
    let peer = if r.peer_id.is_empty() {
        None
    } else {
        let p = state
            .peers
            .send(GetPeer(PeerId::from_raw(&r.peer_id)))
            .await?
            .map_err(|_| ApiError::BadRequest(format!("peerID: peer {:?} is not registered", r.peer_id)))?;
        Some(p)
    };
    if peer.is_some() == r.cid.is_empty() {
        return Err(ApiError::BadRequest("cID and peerID: give both to register a download, or neither".into()));
    }
    if peer.is_some() && r.path.is_empty() {
        return Err(ApiError::BadRequest("path: empty value".into()));
    }
    let keys: Vec<&str> = r.filter.iter().map(String::as_str).collect();
    let task_url = if r.task_url.is_empty() { filter_task_url(&r.raw_url, &keys) } else { r.task_url.clone() };
    let spec = TaskSpec {
        raw_url: r.raw_url.clone(),
        task_url,
        headers: r.headers.clone(),
        md5: r.md5.clone(),
        identifier: r.identifier.clone(),
        insecure: false,
        root_cas: Vec::new(),
    };
    let task = state.tasks.send(RegisterTask(spec)).await?.map_err(register_error)?;
    if let Some(p) = peer {
        let client = RegisterClient {
            task_id: task.id.clone(),
            cid: r.cid.clone(),
            peer_id: p.id,
            ip: p.ip,
            port: p.port,
            path: r.path.clone(),
            super_node_ip: r.supernode_ip.clone(),
            serves: p.port != 0,
            as_seed: false,
            call_system: r.call_system.clone().unwrap_or_default(),
        };
        state.scheduler.send(client).await?.map_err(sched_error)?;
    }
    let reply = TaskCreateResponse {
        id: task.id.to_string(),
        file_length: task.http_file_length,
        piece_size: task.piece_size,
        cdn_source: "supernode",
    };
    Ok(json_response(StatusCode::CREATED, &reply))
}

/// One task with its download progress, for `GET /api/v1/tasks` and the ops page.
#[derive(Serialize)]
struct TaskSummary {
    #[serde(flatten)]
    info: TaskInfo,
    clients: usize,
    #[serde(rename = "finishedClients")]
    finished_clients: usize,
    /// Pieces the CDN has on disk.
    #[serde(rename = "cdnPieces")]
    cdn_pieces: usize,
}

async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let tasks = state.tasks.send(ListTasks).await?;
    let progress = state.scheduler.send(Progress).await?;
    let all: Vec<TaskSummary> = tasks
        .into_iter()
        .map(|t| {
            let p = progress.get(&t.id).cloned().unwrap_or_default();
            TaskSummary {
                info: TaskInfo::from(t),
                clients: p.clients,
                finished_clients: p.finished_clients,
                cdn_pieces: p.cdn_pieces,
            }
        })
        .collect();
    Ok(json_response(StatusCode::OK, &all))
}

async fn get(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let id = task_id(&path)?;
    let task = state
        .tasks
        .send(GetTask(id.clone()))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("task {id} not found")))?;
    Ok(json_response(StatusCode::OK, &TaskInfo::from(task)))
}

/// Go's `strconv.ParseBool`; anything else is false (§4.2).
fn go_bool(s: &str) -> bool {
    matches!(s, "1" | "t" | "T" | "TRUE" | "true" | "True")
}

async fn delete(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = task_id(&path)?;
    let full = query_pairs(&req)?.into_iter().find(|(k, _)| k == "full").is_some_and(|(_, v)| go_bool(&v));
    if state.tasks.send(DeleteTask { task_id: id.clone(), delete_files: full }).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound(format!("task {id} not found")))
    }
}

/// TaskUpdateRequest: `peerID` finished the task (it seeds it); `paused` pauses or resumes it.
#[derive(Deserialize, Default)]
#[serde(default)]
struct TaskUpdateRequest {
    #[serde(rename = "peerID")]
    peer_id: String,
    paused: Option<bool>,
}

async fn update(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = task_id(&path)?;
    let body = read_body(&req, payload).await?;
    let r: TaskUpdateRequest = bind_json(&body)?;
    if r.peer_id.is_empty() && r.paused.is_none() {
        return Err(ApiError::BadRequest("peerID or paused: give at least one".into()));
    }
    let mut task = state
        .tasks
        .send(GetTask(id.clone()))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("task {id} not found")))?;
    if !r.peer_id.is_empty() {
        state
            .scheduler
            .send(PeerCompletedTask { task_id: id.clone(), peer_id: PeerId::from_raw(&r.peer_id) })
            .await?
            .map_err(sched_error)?;
    }
    if let Some(paused) = r.paused {
        task = state
            .tasks
            .send(SetPaused { task_id: id.clone(), paused })
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("task {id} not found")))?;
        tracing::info!(task = %id, paused, "task pause state changed");
    }
    Ok(json_response(StatusCode::OK, &TaskInfo::from(task)))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PiecePullRequest {
    #[serde(rename = "dstPID")]
    dst_pid: String,
    #[serde(rename = "dfgetTaskStatus")]
    dfget_task_status: String,
    #[serde(rename = "pieceResult")]
    piece_result: String,
    #[serde(rename = "pieceRange")]
    piece_range: String,
}

/// PieceInfo (swagger).
#[derive(Serialize)]
struct PieceInfo {
    #[serde(rename = "pID")]
    pid: String,
    #[serde(rename = "pieceRange")]
    piece_range: String,
    #[serde(rename = "pieceSize")]
    piece_size: u64,
    #[serde(rename = "pieceMD5")]
    piece_md5: String,
    #[serde(rename = "peerIP")]
    peer_ip: String,
    #[serde(rename = "peerPort")]
    peer_port: u16,
    path: String,
}

async fn pull_pieces(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = task_id(&path)?;
    let mut client_id = String::new();
    let mut num = 4usize;
    for (k, v) in query_pairs(&req)? {
        match k.as_str() {
            "clientID" => client_id = v,
            "num" => {
                num = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| ApiError::BadRequest(format!("num: {v:?} is not an integer from 1 to 64")))?
            }
            _ => {}
        }
    }
    if client_id.is_empty() {
        return Err(ApiError::BadRequest("clientID: required".into()));
    }
    let body = read_body(&req, payload).await?;
    let r: PiecePullRequest =
        if body.iter().all(u8::is_ascii_whitespace) { PiecePullRequest::default() } else { bind_json(&body)? };
    let status = if r.dfget_task_status.is_empty() {
        supernode_actors::scheduler::ClientStatus::Started
    } else {
        parse_status(&r.dfget_task_status).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "dfgetTaskStatus: {:?} is not STARTED, RUNNING or FINISHED",
                r.dfget_task_status
            ))
        })?
    };
    let report = if status == supernode_actors::scheduler::ClientStatus::Running {
        let range: PieceRange = r.piece_range.parse().map_err(|e| ApiError::BadRequest(format!("pieceRange: {e}")))?;
        let result = parse_result(&r.piece_result).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "pieceResult: {:?} is not FAILED, SUCCESS, INVALID or SEMISUC",
                r.piece_result
            ))
        })?;
        let dst = client_of_peer(&state, &id, &r.dst_pid).await?.unwrap_or_default();
        Some((range, dst, result))
    } else {
        None
    };
    let reply = state.scheduler.send(Poll { task_id: id, cid: client_id, status, report, max: Some(num) }).await?;
    let pieces: Vec<PieceInfo> = match reply {
        PollReply::Continue(list) => list
            .into_iter()
            .map(|a| PieceInfo {
                pid: a.peer_id.to_string(),
                piece_range: a.range.to_string(),
                piece_size: a.piece_size,
                piece_md5: a.piece_md5,
                peer_ip: a.peer_ip,
                peer_port: a.peer_port,
                path: a.path,
            })
            .collect(),
        PollReply::Finish { .. } | PollReply::Ended | PollReply::Wait(_) | PollReply::Limited => Vec::new(),
        PollReply::NotFound(m) => return Err(ApiError::NotFound(m)),
        PollReply::Invalid(m) => return Err(ApiError::BadRequest(m)),
        PollReply::CdnFailed(m) | PollReply::SourceError(m) => return Err(ApiError::Conflict(m)),
    };
    Ok(json_response(StatusCode::OK, &pieces))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PieceUpdateRequest {
    #[serde(rename = "clientID")]
    client_id: String,
    #[serde(rename = "dstPID")]
    dst_pid: String,
    #[serde(rename = "pieceStatus")]
    piece_status: String,
}

async fn update_piece(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (id, range) = piece_path(path)?;
    let body = read_body(&req, payload).await?;
    let r: PieceUpdateRequest = bind_json(&body)?;
    if r.client_id.is_empty() {
        return Err(ApiError::BadRequest("clientID: required".into()));
    }
    let result = parse_result(&r.piece_status).ok_or_else(|| {
        ApiError::BadRequest(format!("pieceStatus: {:?} is not FAILED, SUCCESS, INVALID or SEMISUC", r.piece_status))
    })?;
    let dst_cid = client_of_peer(&state, &id, &r.dst_pid).await?.unwrap_or_default();
    state
        .scheduler
        .send(ApplyPieceResult { task_id: id, cid: r.client_id, dst_cid, range, result })
        .await?
        .map_err(sched_error)?;
    Ok(HttpResponse::Ok().finish())
}

/// PieceErrorRequest: the keys this server reads (`taskId`, `dstIP`, `realMd5`,
/// `expectedMd5` are accepted and ignored; the path names the task and the piece).
#[derive(Deserialize, Default)]
#[serde(default)]
struct PieceErrorRequest {
    #[serde(rename = "srcCid")]
    src_cid: String,
    #[serde(rename = "dstPid")]
    dst_pid: String,
    range: String,
    #[serde(rename = "errorType")]
    error_type: String,
}

async fn piece_error(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (id, range) = piece_path(path)?;
    let body = read_body(&req, payload).await?;
    let r: PieceErrorRequest = bind_json(&body)?;
    if !r.range.is_empty() && r.range.parse() != Ok(range) {
        return Err(ApiError::BadRequest(format!("range: {:?} differs from the path's {range}", r.range)));
    }
    let kind = parse_error_type(&r.error_type).ok_or_else(|| {
        ApiError::BadRequest(format!("errorType: {:?} is not FILE_NOT_EXIST or FILE_MD5_NOT_MATCH", r.error_type))
    })?;
    if r.dst_pid.is_empty() {
        return Err(ApiError::BadRequest("dstPid: empty value".into()));
    }
    if state.tasks.send(GetTask(id.clone())).await?.is_none() {
        return Err(ApiError::NotFound(format!("task {id} not found")));
    }
    let dst = client_of_peer(&state, &id, &r.dst_pid).await?.unwrap_or(r.dst_pid);
    handle_piece_error(&state, ReportPieceError { task_id: id, reporter: r.src_cid, dst, kind, range: Some(range) })
        .await?;
    Ok(HttpResponse::Ok().finish())
}
