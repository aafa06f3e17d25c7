//! The v1 piece API under `/api/v1/tasks/{id}/pieces`: the piece loop of `/peer/task` as a
//! REST API (swagger's design, never implemented by the Go supernode). Clients are named
//! by their CID (`clientID`), sources by their peer ID.

use actix_web::http::Method;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use supernode_actors::piece::PieceRange;
use supernode_actors::scheduler::{ApplyPieceResult, ClientStatus, Poll, PollReply, ReportPieceError, SourceRef};
use supernode_actors::task_manager::PieceError;
use supernode_actors::{ClientId, PeerId, TaskId};

use super::error::ApiError;
use super::json::{bind_json, query_pairs, read_body};
use super::reply::json_response;
use super::schedule::{parse_error_type, parse_result, parse_status, poll_message, sched_error};
use super::tasks::task_id;
use super::{AppState, RouteSet};

pub fn routes(r: &mut RouteSet) {
    r.add("/api/v1/tasks/{id}/pieces", vec![(Method::GET, web::to(pull_pieces))]);
    r.add("/api/v1/tasks/{id}/pieces/{pieceRange}", vec![(Method::PUT, web::to(update_piece))]);
    // Go answered GET with a JSON body; swagger says POST. Both work.
    r.add(
        "/api/v1/tasks/{id}/pieces/{pieceRange}/error",
        vec![(Method::POST, web::to(piece_error)), (Method::GET, web::to(piece_error))],
    );
}

/// `/api/v1/tasks/{id}/pieces/{pieceRange}…` with a JSON body: the task ID, the piece range
/// and the body.
async fn piece_request<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<(TaskId, PieceRange, T), ApiError> {
    let (raw_id, raw_range) = path.into_inner();
    let id = task_id(&raw_id)?;
    let range = raw_range.parse().map_err(|e| ApiError::BadRequest(format!("pieceRange: {e}")))?;
    let body = read_body(req, payload).await?;
    Ok((id, range, bind_json(&body)?))
}

fn source(dst_pid: &str) -> SourceRef {
    SourceRef::Peer(PeerId::from_raw(dst_pid))
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
        ClientStatus::Started
    } else {
        parse_status(&r.dfget_task_status).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "dfgetTaskStatus: {:?} is not STARTED, RUNNING or FINISHED",
                r.dfget_task_status
            ))
        })?
    };
    let report = if status == ClientStatus::Running {
        let range: PieceRange = r.piece_range.parse().map_err(|e| ApiError::BadRequest(format!("pieceRange: {e}")))?;
        let result = parse_result(&r.piece_result).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "pieceResult: {:?} is not FAILED, SUCCESS, INVALID or SEMISUC",
                r.piece_result
            ))
        })?;
        Some((range, source(&r.dst_pid), result))
    } else {
        None
    };
    let poll = Poll { task_id: id.clone(), cid: ClientId::new(client_id), status, report, max: Some(num) };
    let reply = state.scheduler.send(poll).await?;
    let pieces: Vec<PieceInfo> = match reply {
        PollReply::Continue(list) => list
            .into_iter()
            .map(|a| PieceInfo {
                pid: a.peer_id.to_string(),
                piece_range: a.range.to_string(),
                piece_size: a.piece_size,
                piece_md5: a.digest.map(|d| d.to_string()).unwrap_or_default(),
                peer_ip: a.peer_ip,
                peer_port: a.peer_port,
                path: a.path,
            })
            .collect(),
        PollReply::Finish { .. } | PollReply::Ended | PollReply::Wait(_) | PollReply::Limited => Vec::new(),
        PollReply::NotFound(e) => return Err(ApiError::NotFound(e.to_string())),
        PollReply::Invalid(m) => return Err(ApiError::BadRequest(m.to_string())),
        failed @ (PollReply::CdnFailed(_) | PollReply::SourceError(_)) => {
            return Err(ApiError::Conflict(poll_message(&id, &failed)))
        }
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
    let (id, range, r): (_, _, PieceUpdateRequest) = piece_request(&req, path, payload).await?;
    if r.client_id.is_empty() {
        return Err(ApiError::BadRequest("clientID: required".into()));
    }
    let result = parse_result(&r.piece_status).ok_or_else(|| {
        ApiError::BadRequest(format!("pieceStatus: {:?} is not FAILED, SUCCESS, INVALID or SEMISUC", r.piece_status))
    })?;
    let update =
        ApplyPieceResult { task_id: id, cid: ClientId::new(r.client_id), dst: source(&r.dst_pid), range, result };
    state.scheduler.send(update).await?.map_err(sched_error)?;
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
    let (id, range, r): (_, _, PieceErrorRequest) = piece_request(&req, path, payload).await?;
    if !r.range.is_empty() && r.range.parse() != Ok(range) {
        return Err(ApiError::BadRequest(format!("range: {:?} differs from the path's {range}", r.range)));
    }
    let kind = parse_error_type(&r.error_type).ok_or_else(|| {
        ApiError::BadRequest(format!("errorType: {:?} is not FILE_NOT_EXIST or FILE_MD5_NOT_MATCH", r.error_type))
    })?;
    if r.dst_pid.is_empty() {
        return Err(ApiError::BadRequest("dstPid: empty value".into()));
    }
    let report =
        ReportPieceError { task_id: id, reporter: ClientId::new(r.src_cid), dst: r.dst_pid, kind, range: Some(range) };
    state.tasks.send(PieceError(report)).await?.map_err(sched_error)?;
    Ok(HttpResponse::Ok().finish())
}
