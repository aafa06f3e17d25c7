//! The dfget piece loop: `GET /peer/task`, `/peer/piece/suc`, `/peer/service/down`,
//! `/peer/piece/error` (§3.2–3.5, §7, §16 P9, P10). Every reply is HTTP 200 with a
//! ResultInfo code, because dfget treats any other status as a dead supernode.

use std::collections::HashMap;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use supernode_actors::cdn::{HashPieceOnDisk, LookupServable};
use supernode_actors::piece::PieceRange;
use supernode_actors::scheduler::{
    Assignment, ClientStatus, PieceErrorFollowUp, PieceErrorKind, PieceResult, PieceSuccess, Poll, PollReply,
    ReportPieceError, SchedError, ServiceDown,
};
use supernode_actors::task_manager::InvalidateCache;
use supernode_actors::TaskId;

use super::error::ApiError;
use super::json::{json_response, query_pairs};
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

/// `700`/`STARTED` …; swagger names and Go's numbers are both accepted (§12 row 4).
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

/// A `/peer/task` continue item; all nine keys always present (§3.2).
#[derive(Serialize)]
struct PieceTask<'a> {
    range: String,
    #[serde(rename = "pieceNum")]
    piece_num: u64,
    #[serde(rename = "pieceSize")]
    piece_size: u64,
    #[serde(rename = "pieceMd5")]
    piece_md5: &'a str,
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
            piece_md5: &a.piece_md5,
            cid: &a.cid,
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

fn poll_reply(reply: &PollReply) -> HttpResponse {
    match reply {
        PollReply::Finish { file_length, md5 } => {
            result(ResultCode::PeerFinish, "peer task end", Some(FinishData { file_length: *file_length, md5 }))
        }
        PollReply::Ended => result_msg(ResultCode::PeerFinish, "peer task end"),
        PollReply::Continue(list) => {
            let items: Vec<PieceTask> = list.iter().map(PieceTask::from).collect();
            result(ResultCode::PeerContinue, "peer task go on", Some(items))
        }
        PollReply::Wait(m) => result_msg(ResultCode::PeerWait, m),
        PollReply::Limited => result_msg(ResultCode::PeerLimited, "peer down limit"),
        PollReply::CdnFailed(m) => result_msg(ResultCode::CdnFail, m),
        PollReply::SourceError(m) => result_msg(ResultCode::SourceError, m),
        PollReply::NotFound(m) => result_msg(ResultCode::TargetNotFound, m),
        PollReply::Invalid(m) => result_msg(ResultCode::ParamInvalid, m),
    }
}

/// Turns `/peer/task`'s query into a scheduler poll, or the 501/502 reply.
fn parse_poll(q: &HashMap<String, String>) -> Result<Poll, PollReply> {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let status = parse_status(get("status"))
        .ok_or_else(|| PollReply::Invalid(format!("status: {:?} is not one of 700, 701, 702", get("status"))))?;
    let task_id = TaskId::parse(get("taskId"))
        .ok_or_else(|| PollReply::NotFound(format!("taskId: {:?} not found", get("taskId"))))?;
    let cid = get("srcCid");
    if cid.is_empty() {
        return Err(PollReply::Invalid("srcCid: empty value".into()));
    }
    let report = if status == ClientStatus::Running {
        let range: PieceRange = get("range").parse().map_err(|e| PollReply::Invalid(format!("range: {e}")))?;
        let result = parse_result(get("result")).ok_or_else(|| {
            PollReply::Invalid(format!("result: {:?} is not one of 500, 501, 502, 503", get("result")))
        })?;
        Some((range, get("dstCid").to_string(), result))
    } else {
        None
    };
    Ok(Poll { task_id, cid: cid.to_string(), status, report, max: None })
}

async fn poll(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q = query_map(&req)?;
    let msg = match parse_poll(&q) {
        Ok(m) => m,
        Err(reply) => return Ok(poll_reply(&reply)),
    };
    let reply = state.scheduler.send(msg).await?;
    Ok(poll_reply(&reply))
}

/// Scheduler errors on the report endpoints: 404 for unknown, 400 for malformed.
pub fn sched_error(e: SchedError) -> ApiError {
    match e {
        SchedError::NotFound(m) => ApiError::NotFound(m),
        SchedError::Invalid(m) => ApiError::BadRequest(m),
        SchedError::TooMany(_) => ApiError::Overloaded(e.to_string()),
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
    let cid = required(&q, "cid")?.to_string();
    let range: PieceRange =
        required(&q, "pieceRange")?.parse().map_err(|e| ApiError::BadRequest(format!("pieceRange: {e}")))?;
    let dst_cid = q.get("dstCid").cloned().unwrap_or_default();
    state.scheduler.send(PieceSuccess { task_id, cid, dst_cid, range }).await?.map_err(sched_error)?;
    Ok(result_msg(ResultCode::PieceReportOk, ""))
}

async fn service_down(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q = query_map(&req)?;
    let task_id = required_task_id(&q)?;
    let cid = required(&q, "cid")?.to_string();
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

/// Hands a piece error to the scheduler, then checks the CDN copy in the background when
/// the report is about the supernode (§16 P10): only a real mismatch or a missing file
/// invalidates it.
pub async fn handle_piece_error(state: &web::Data<AppState>, report: ReportPieceError) -> Result<(), ApiError> {
    let task_id = report.task_id.clone();
    let follow_up = state.scheduler.send(report).await?;
    if follow_up == PieceErrorFollowUp::Nothing {
        return Ok(());
    }
    let cdn = state.cdn.clone();
    let tasks = state.tasks.clone();
    actix_web::rt::spawn(async move {
        let corrupt = match follow_up {
            PieceErrorFollowUp::Nothing => false,
            PieceErrorFollowUp::CheckCdnFile => match cdn.send(LookupServable(task_id.clone())).await {
                Ok(Some(s)) => !s.path.exists(),
                _ => false,
            },
            PieceErrorFollowUp::VerifyCdnPiece { offset, len, expected_md5 } => {
                match cdn.send(HashPieceOnDisk { task_id: task_id.clone(), offset, len }).await {
                    Ok(Some(actual)) => actual != expected_md5,
                    Ok(None) => true,
                    Err(_) => false,
                }
            }
        };
        if corrupt {
            tasks.do_send(InvalidateCache(task_id));
        } else {
            tracing::info!(task = %task_id, "piece error about the supernode's copy: copy verified, report ignored");
        }
    });
    Ok(())
}

async fn piece_error(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q = query_map(&req)?;
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let (Some(task_id), Some(kind)) = (TaskId::parse(&get("taskId")), parse_error_type(&get("errorType"))) else {
        return Ok(HttpResponse::Ok().finish());
    };
    let report = ReportPieceError {
        task_id,
        reporter: get("srcCid"),
        dst: get("dstCid"),
        kind,
        range: get("range").parse().ok(),
    };
    handle_piece_error(&state, report).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `/task/metrics`: dfget's end-of-run report (§3.6, §16 P1).
pub mod task_metrics {
    use super::*;
    use crate::http::RouteSet;
    use serde::Deserialize;
    use supernode_actors::scheduler::FirstReport;

    use crate::http::json::{bind_json, read_body};

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct TaskMetricsRequest {
        #[serde(rename = "IP")]
        ip: String,
        #[serde(rename = "backsourceReason")]
        backsource_reason: String,
        #[serde(rename = "cID")]
        cid: String,
        #[serde(rename = "callSystem")]
        call_system: String,
        duration: f64,
        #[serde(rename = "fileLength")]
        file_length: i64,
        port: i64,
        success: bool,
        #[serde(rename = "taskId")]
        task_id: String,
    }

    pub fn routes(r: &mut RouteSet) {
        r.add("/task/metrics", vec![(Method::POST, web::to(report))]);
    }

    async fn report(
        req: HttpRequest,
        payload: web::Payload,
        state: web::Data<AppState>,
    ) -> Result<HttpResponse, ApiError> {
        let body = read_body(&req, payload).await?;
        let r: TaskMetricsRequest = bind_json(&body)?;
        if r.port != 0 {
            crate::http::peers::check_port("port", r.port)?;
        }
        if !r.duration.is_finite() || r.duration < 0.0 {
            return Err(ApiError::BadRequest("duration: must be a non-negative number".into()));
        }
        let first = state.scheduler.send(FirstReport { task_id: r.task_id.clone(), cid: r.cid.clone() }).await?;
        if first {
            let m = &state.metrics;
            let labels = [r.call_system.as_str(), r.ip.as_str()];
            m.dfget_download.with_label_values(&labels).inc();
            if r.success {
                m.dfget_duration.with_label_values(&labels).observe(r.duration);
                m.dfget_size_bytes.with_label_values(&labels).inc_by(r.file_length.max(0) as u64);
            } else {
                m.dfget_failed
                    .with_label_values(&[r.call_system.as_str(), r.ip.as_str(), r.backsource_reason.as_str()])
                    .inc();
                m.dfgettasks_failed.with_label_values(&[r.call_system.as_str()]).inc();
            }
        }
        #[derive(Serialize)]
        struct Reply {
            code: i32,
            msg: &'static str,
        }
        Ok(json_response(actix_web::http::StatusCode::OK, &Reply { code: 1, msg: "success" }))
    }
}
