//! The dfget piece loop: `GET /peer/task`, `/peer/piece/suc`, `/peer/service/down`,
//! `/peer/piece/error`. Every `/peer/task` reply is HTTP 200 with a ResultInfo code,
//! because dfget treats any other status as a dead supernode: 600 finished, 601 pieces,
//! 602 wait, 603 at its piece limit, 604 CDN failed, 610 source error, 501/502 bad or
//! unknown request.

use std::collections::HashMap;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use supernode_actors::piece::PieceRange;
use supernode_actors::scheduler::{
    Assignment, ClientStatus, PieceErrorKind, PieceResult, PieceSuccess, Poll, PollReply, ReportPieceError, SchedError,
    ServiceDown, SourceRef, WaitReason,
};
use supernode_actors::task_manager::PieceError;
use supernode_actors::{ClientId, TaskId};

use super::error::ApiError;
use super::json::query_pairs;
use super::result::{result, result_msg, ResultCode};
use super::{AppState, RouteSet};

pub fn routes(r: &mut RouteSet) {
    r.add("/peer/task", vec![(Method::GET, web::to(poll))]);
    r.add("/peer/piece/suc", vec![(Method::GET, web::to(piece_success))]);
    r.add("/peer/service/down", vec![(Method::GET, web::to(service_down))]);
    r.add("/peer/piece/error", vec![(Method::GET, web::to(piece_error))]);
}

/// First value of each query key.
fn query_map(req: &HttpRequest) -> Result<HashMap<String, String>, ApiError> {
    let mut map = HashMap::new();
    for (k, v) in query_pairs(req)? {
        map.entry(k).or_insert(v);
    }
    Ok(map)
}

/// `700`/`STARTED` …: Go's numbers (what dfget sends) and swagger's names are both accepted.
pub fn parse_status(s: &str) -> Option<ClientStatus> {
    match s {
        "700" | "STARTED" => Some(ClientStatus::Started),
        "701" | "RUNNING" => Some(ClientStatus::Running),
        "702" | "FINISHED" => Some(ClientStatus::Finished),
        _ => None,
    }
}

pub fn parse_result(s: &str) -> Option<PieceResult> {
    match s {
        "500" | "FAILED" => Some(PieceResult::Failed),
        "501" | "SUCCESS" => Some(PieceResult::Success),
        "502" | "INVALID" => Some(PieceResult::Invalid),
        "503" | "SEMISUC" => Some(PieceResult::SemiSuccess),
        _ => None,
    }
}

/// A `/peer/task` continue item; all nine keys always present.
#[derive(Serialize)]
struct PieceTask<'a> {
    range: String,
    #[serde(rename = "pieceNum")]
    piece_num: u64,
    #[serde(rename = "pieceSize")]
    piece_size: u64,
    #[serde(rename = "pieceMd5")]
    piece_md5: String,
    cid: &'a str,
    #[serde(rename = "peerIp")]
    peer_ip: &'a str,
    #[serde(rename = "peerPort")]
    peer_port: u16,
    path: &'a str,
    #[serde(rename = "downLink")]
    down_link: u32,
}

impl<'a> From<&'a Assignment> for PieceTask<'a> {
    fn from(a: &'a Assignment) -> Self {
        PieceTask {
            range: a.range.to_string(),
            piece_num: a.piece_num,
            piece_size: a.piece_size,
            piece_md5: a.digest.map(|d| d.to_string()).unwrap_or_default(),
            cid: a.cid.as_str(),
            peer_ip: &a.peer_ip,
            peer_port: a.peer_port,
            path: &a.path,
            down_link: 0,
        }
    }
}

#[derive(Serialize)]
struct FinishData<'a> {
    #[serde(rename = "fileLength")]
    file_length: u64,
    md5: &'a str,
}

/// The `msg` of a poll reply that carries no data.
pub fn poll_message(task_id: &TaskId, reply: &PollReply) -> String {
    let reason =
        |f: &Option<supernode_actors::failure::CdnFailure>| f.as_ref().map(|f| f.to_string()).unwrap_or_default();
    match reply {
        PollReply::Finish { .. } | PollReply::Ended => "peer task end".into(),
        PollReply::Continue(_) => "peer task go on".into(),
        PollReply::Wait(WaitReason::Paused) => format!("task {task_id} is paused"),
        PollReply::Wait(WaitReason::NoPieceYet) => format!("task {task_id}: no piece available yet, peer should wait"),
        PollReply::Wait(WaitReason::AllSourcesBusy) => {
            format!("task {task_id}: every source is busy, peer should wait")
        }
        PollReply::Limited => "peer down limit".into(),
        PollReply::CdnFailed(f) => format!("task {task_id}: CDN failed: {}", reason(f)),
        PollReply::SourceError(f) => format!("task {task_id}: source error: {}", reason(f)),
        PollReply::NotFound(e) => e.to_string(),
        PollReply::Invalid(m) => m.to_string(),
    }
}

fn poll_reply(task_id: &TaskId, reply: &PollReply) -> HttpResponse {
    let msg = poll_message(task_id, reply);
    match reply {
        PollReply::Finish { file_length, md5 } => {
            result(ResultCode::PeerFinish, &msg, Some(FinishData { file_length: *file_length, md5 }))
        }
        PollReply::Ended => result_msg(ResultCode::PeerFinish, &msg),
        PollReply::Continue(list) => {
            let items: Vec<PieceTask> = list.iter().map(PieceTask::from).collect();
            result(ResultCode::PeerContinue, &msg, Some(items))
        }
        PollReply::Wait(_) => result_msg(ResultCode::PeerWait, &msg),
        PollReply::Limited => result_msg(ResultCode::PeerLimited, &msg),
        PollReply::CdnFailed(_) => result_msg(ResultCode::CdnFail, &msg),
        PollReply::SourceError(_) => result_msg(ResultCode::SourceError, &msg),
        PollReply::NotFound(_) => result_msg(ResultCode::TargetNotFound, &msg),
        PollReply::Invalid(_) => result_msg(ResultCode::ParamInvalid, &msg),
    }
}

/// Turns `/peer/task`'s query into a scheduler poll, or the 501/502 code and message.
fn parse_poll(q: &HashMap<String, String>) -> Result<Poll, (ResultCode, String)> {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let invalid = |m: String| (ResultCode::ParamInvalid, m);
    let status = parse_status(get("status"))
        .ok_or_else(|| invalid(format!("status: {:?} is not one of 700, 701, 702", get("status"))))?;
    let task_id = TaskId::parse(get("taskId"))
        .ok_or_else(|| (ResultCode::TargetNotFound, format!("taskId: {:?} not found", get("taskId"))))?;
    let cid = get("srcCid");
    if cid.is_empty() {
        return Err(invalid("srcCid: empty value".into()));
    }
    let report = if status == ClientStatus::Running {
        let range: PieceRange = get("range").parse().map_err(|e| invalid(format!("range: {e}")))?;
        let result = parse_result(get("result"))
            .ok_or_else(|| invalid(format!("result: {:?} is not one of 500, 501, 502, 503", get("result"))))?;
        Some((range, SourceRef::Client(ClientId::new(get("dstCid"))), result))
    } else {
        None
    };
    Ok(Poll { task_id, cid: ClientId::new(cid), status, report, max: None })
}

async fn poll(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q = query_map(&req)?;
    let msg = match parse_poll(&q) {
        Ok(m) => m,
        Err((code, m)) => return Ok(result_msg(code, &m)),
    };
    let task_id = msg.task_id.clone();
    let reply = state.scheduler.send(msg).await?;
    Ok(poll_reply(&task_id, &reply))
}

/// Scheduler errors on the report endpoints: 404 for unknown, 400 for malformed, 503 for a limit.
pub fn sched_error(e: SchedError) -> ApiError {
    match e {
        SchedError::UnknownTask(_) | SchedError::UnknownClient { .. } | SchedError::NoDownloadOfPeer { .. } => {
            ApiError::NotFound(e.to_string())
        }
        SchedError::NotAPiece(_) | SchedError::PastTheEnd(_) | SchedError::InvalidResult => {
            ApiError::BadRequest(e.to_string())
        }
        SchedError::TooManyClients(_) => ApiError::Overloaded(e.to_string()),
    }
}

fn required_task_id(q: &HashMap<String, String>) -> Result<TaskId, ApiError> {
    let raw = q.get("taskId").map(String::as_str).unwrap_or("");
    TaskId::parse(raw).ok_or_else(|| ApiError::NotFound(format!("task {raw:?} not found")))
}

fn required<'a>(q: &'a HashMap<String, String>, key: &str) -> Result<&'a str, ApiError> {
    q.get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("{key}: empty value")))
}

async fn piece_success(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q = query_map(&req)?;
    let task_id = required_task_id(&q)?;
    let cid = ClientId::new(required(&q, "cid")?);
    let range: PieceRange =
        required(&q, "pieceRange")?.parse().map_err(|e| ApiError::BadRequest(format!("pieceRange: {e}")))?;
    let dst_cid = ClientId::new(q.get("dstCid").cloned().unwrap_or_default());
    state.scheduler.send(PieceSuccess { task_id, cid, dst_cid, range }).await?.map_err(sched_error)?;
    Ok(result_msg(ResultCode::PieceReportOk, ""))
}

async fn service_down(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q = query_map(&req)?;
    let task_id = required_task_id(&q)?;
    let cid = ClientId::new(required(&q, "cid")?);
    state.scheduler.send(ServiceDown { task_id, cid }).await?.map_err(sched_error)?;
    Ok(result_msg(ResultCode::PeerDownOk, ""))
}

pub fn parse_error_type(s: &str) -> Option<PieceErrorKind> {
    match s {
        "FILE_NOT_EXIST" => Some(PieceErrorKind::FileNotExist),
        "FILE_MD5_NOT_MATCH" => Some(PieceErrorKind::Md5NotMatch),
        _ => None,
    }
}

async fn piece_error(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q = query_map(&req)?;
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let (Some(task_id), Some(kind)) = (TaskId::parse(&get("taskId")), parse_error_type(&get("errorType"))) else {
        return Ok(HttpResponse::Ok().finish());
    };
    let report = ReportPieceError {
        task_id,
        reporter: ClientId::new(get("srcCid")),
        dst: get("dstCid"),
        kind,
        range: get("range").parse().ok(),
    };
    // dfget ignores the answer; a report about an unknown task changes nothing.
    let _ = state.tasks.send(PieceError(report)).await?;
    Ok(HttpResponse::Ok().finish())
}
