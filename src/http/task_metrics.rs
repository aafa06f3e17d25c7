//! `POST /task/metrics`: dfget's end-of-run report. The reply is `{"code":1}`, the one
//! answer dfget takes as "received": anything else makes it send the report again.

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use supernode_actors::reports::DfgetReport;

use super::error::ApiError;
use super::json::{bind_json, read_body};
use super::reply::json_response;
use super::{AppState, RouteSet};

pub fn routes(r: &mut RouteSet) {
    r.add("/task/metrics", vec![(Method::POST, web::to(report))]);
}

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

#[derive(Serialize)]
struct Reply {
    code: i32,
    msg: &'static str,
}

async fn report(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload).await?;
    let r: TaskMetricsRequest = bind_json(&body)?;
    if r.port != 0 {
        super::peers::check_port("port", r.port)?;
    }
    if !r.duration.is_finite() || r.duration < 0.0 {
        return Err(ApiError::BadRequest("duration: must be a non-negative number".into()));
    }
    let report = DfgetReport {
        task_id: r.task_id,
        cid: r.cid,
        call_system: r.call_system,
        ip: r.ip,
        success: r.success,
        duration: r.duration,
        file_length: r.file_length.max(0) as u64,
        backsource_reason: r.backsource_reason,
    };
    state.reports.send(report).await?;
    Ok(json_response(StatusCode::OK, &Reply { code: 1, msg: "success" }))
}
