//! `/api/v1/tasks…`: the task API the Go supernode left unimplemented, plus pause/resume
//! for operators. The piece endpoints under a task are in `pieces.rs`.

use std::collections::BTreeMap;

use actix_web::http::Method;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use supernode_actors::cdn::CacheFiles;
use supernode_actors::cluster::forward::RefusalKind;
use supernode_actors::scheduler::TaskProgress;
use supernode_actors::spec::{task_url, TaskSpec};
use supernode_actors::task_manager::{
    ClientRequest, DeleteTask, Downloader, GetTask, ListTasks, Pattern, Register, RegisterError, Route, Task,
    UpdateTask,
};
use supernode_actors::{ClientId, PeerId, TaskId};

use super::error::ApiError;
use super::json::{bind_json, query_pairs, read_body};
use super::registry::{check_headers, check_source_url};
use super::reply::json_response;
use super::schedule::sched_error;
use super::{AppState, RouteSet};

pub fn routes(r: &mut RouteSet) {
    r.add("/api/v1/tasks", vec![(Method::POST, web::to(create)), (Method::GET, web::to(list))]);
    r.add(
        "/api/v1/tasks/{id}",
        vec![(Method::GET, web::to(get)), (Method::PUT, web::to(update)), (Method::DELETE, web::to(delete))],
    );
}

/// TaskInfo: every key omitted when empty; `paused` and `errorMsg` are ours.
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
            http_file_length: t.http_file_length.map_or(-1, |l| l as i64),
            piece_size: t.piece_size,
            piece_total: t.piece_total,
            raw_url: t.spec.raw_url,
            task_url: t.spec.task_url,
            md5: t.spec.md5,
            real_md5: t.real_md5,
            identifier: t.spec.identifier,
            headers: t.spec.headers,
            paused: t.paused,
            error_msg: t.failure.map(|f| f.to_string()).unwrap_or_default(),
        }
    }
}

pub fn task_id(raw: &str) -> Result<TaskId, ApiError> {
    TaskId::parse(raw).ok_or_else(|| ApiError::NotFound(format!("task {raw:?} not found")))
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

/// Registration failures on the v1 API: a source that cannot be used is 422, a conflicting
/// task 409, a refused source 403, a limit 503.
fn register_error(e: RegisterError) -> ApiError {
    if let Some(supernode_actors::failure::SourceFailure::Denied(m)) = e.source_failure() {
        return ApiError::Forbidden(m.to_string());
    }
    match &e {
        RegisterError::TooManyTasks(_) | RegisterError::Peer(_) | RegisterError::Client(_) => {
            ApiError::Overloaded(e.to_string())
        }
        RegisterError::Conflict(_) => ApiError::Conflict(e.to_string()),
        RegisterError::UnknownPeer(_) => ApiError::BadRequest(e.to_string()),
        RegisterError::Stopped => ApiError::Unavailable,
        RegisterError::Owner(r) => match r.refusal {
            RefusalKind::Source | RefusalKind::Auth(_) => ApiError::SourceFailed(r.message.clone()),
            RefusalKind::Denied => ApiError::Forbidden(r.message.clone()),
            RefusalKind::Conflict => ApiError::Conflict(r.message.clone()),
            RefusalKind::Limit => ApiError::Overloaded(r.message.clone()),
        },
        RegisterError::Source(_)
        | RegisterError::Remembered(_)
        | RegisterError::OpenTimeout(_)
        | RegisterError::Removed => ApiError::SourceFailed(e.to_string()),
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
    let call_system = r.call_system.clone().unwrap_or_default();
    state.check_call_system(&call_system)?;
    state.check_source(&r.raw_url)?;
    if r.peer_id.is_empty() != r.cid.is_empty() {
        return Err(ApiError::BadRequest("cID and peerID: give both to register a download, or neither".into()));
    }
    if !r.peer_id.is_empty() && r.path.is_empty() {
        return Err(ApiError::BadRequest("path: empty value".into()));
    }
    let keys: Vec<&str> = r.filter.iter().map(String::as_str).collect();
    let spec = TaskSpec {
        raw_url: r.raw_url.clone(),
        task_url: task_url(&r.raw_url, &r.task_url, &keys),
        headers: r.headers.clone(),
        md5: r.md5.clone(),
        identifier: r.identifier.clone(),
        ..TaskSpec::default()
    };
    let downloader = if r.peer_id.is_empty() {
        Downloader::Nobody
    } else {
        let client = ClientRequest {
            cid: ClientId::new(r.cid.clone()),
            path: r.path.clone(),
            super_node_ip: r.supernode_ip.clone(),
            pattern: Pattern::P2p,
            as_seed: false,
            call_system,
        };
        Downloader::Peer { peer_id: PeerId::from_raw(&r.peer_id), client }
    };
    let task =
        state.tasks.send(Register { spec, downloader, route: Route::ToOwner }).await?.map_err(register_error)?.task;
    let reply = TaskCreateResponse {
        id: task.id.to_string(),
        file_length: task.http_file_length.map_or(-1, |l| l as i64),
        piece_size: task.piece_size,
        cdn_source: state.cdn_source(),
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

impl From<(Task, TaskProgress)> for TaskSummary {
    fn from((t, p): (Task, TaskProgress)) -> Self {
        TaskSummary {
            info: TaskInfo::from(t),
            clients: p.clients,
            finished_clients: p.finished_clients,
            cdn_pieces: p.cdn_pieces,
        }
    }
}

async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let all: Vec<TaskSummary> = state.tasks.send(ListTasks).await?.into_iter().map(TaskSummary::from).collect();
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

/// Go's `strconv.ParseBool`; anything else is false.
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
    let files = if full { CacheFiles::Remove } else { CacheFiles::Keep };
    if state.tasks.send(DeleteTask { task_id: id.clone(), files }).await? {
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
    let completed_by = (!r.peer_id.is_empty()).then(|| PeerId::from_raw(&r.peer_id));
    let update = UpdateTask { task_id: id, completed_by, paused: r.paused };
    let task = state.tasks.send(update).await?.map_err(sched_error)?;
    Ok(json_response(StatusCode::OK, &TaskInfo::from(task)))
}
