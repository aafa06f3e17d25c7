//! Preheat API for Harbor (2.1–2.11) and ops, on `/preheats…` and `/api/v1/preheats…`.
//!
//! A new preheat answers 200 `{"ID": ...}`; the same preheat while it runs answers 200 with
//! the same ID and no second run; after it succeeded, 208 with `ID` too (Harbor reads `ID`
//! from a 208) and Go's message last; after it failed, it runs again.

use std::collections::BTreeMap;

use actix_web::http::Method;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use supernode_actors::preheat::{
    CreateOutcome, CreatePreheat, DeletePreheat, GetPreheat, ListPreheats, Preheat, PreheatRequest, PreheatType,
    RegistryAuth,
};
use supernode_actors::PreheatId;

use super::error::ApiError;
use super::json::{bind_json, read_body};
use super::reply::json_response;
use super::{AppState, RouteSet};

pub fn routes(r: &mut RouteSet) {
    for prefix in ["", "/api/v1"] {
        r.add(&format!("{prefix}/preheats"), vec![(Method::POST, web::to(create)), (Method::GET, web::to(list))]);
        r.add(
            &format!("{prefix}/preheats/{{id}}"),
            vec![(Method::GET, web::to(get)), (Method::DELETE, web::to(delete))],
        );
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PreheatCreateRequest {
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<String>,
    filter: String,
    identifier: String,
    headers: BTreeMap<String, String>,
}

/// PreheatInfo: `startTime`/`finishTime` always present, UTC with milliseconds (the epoch
/// while not finished).
#[derive(Serialize)]
pub struct PreheatInfo {
    #[serde(rename = "ID")]
    id: String,
    status: &'static str,
    #[serde(rename = "startTime")]
    start_time: String,
    #[serde(rename = "finishTime")]
    finish_time: String,
    #[serde(rename = "errorMsg", skip_serializing_if = "String::is_empty")]
    error_msg: String,
}

impl From<Preheat> for PreheatInfo {
    fn from(p: Preheat) -> Self {
        let fmt = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        PreheatInfo {
            id: p.id.to_string(),
            status: p.status.as_str(),
            start_time: fmt(p.start_time),
            finish_time: fmt(p.finish_time.unwrap_or(chrono::DateTime::UNIX_EPOCH)),
            error_msg: p.error_msg,
        }
    }
}

#[derive(Serialize)]
struct CreatedBody {
    #[serde(rename = "ID")]
    id: String,
}

/// 208 body: `ID` for Harbor's create path, and Go's message last.
#[derive(Serialize)]
struct AlreadyBody {
    #[serde(rename = "ID")]
    id: String,
    code: u16,
    message: String,
}

async fn create(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("empty request".into()));
    }
    let r: PreheatCreateRequest = bind_json(&body)?;
    let kind = match r.kind.as_deref() {
        Some("image") => PreheatType::Image,
        Some("file") => PreheatType::File,
        Some(other) => return Err(ApiError::BadRequest(format!("type: {other:?} should be one of [image file]"))),
        None => return Err(ApiError::BadRequest("type: required".into())),
    };
    let url = r.url.ok_or_else(|| ApiError::BadRequest("url: required".into()))?;
    if url.chars().count() < 3 {
        return Err(ApiError::BadRequest("url: should be at least 3 characters long".into()));
    }
    super::registry::check_source_url("url", &url)?;
    state.check_list_len("headers", r.headers.len())?;
    super::registry::check_headers(&r.headers)?;
    state.check_source(&url)?;
    let request = PreheatRequest {
        kind,
        url,
        filter: r.filter,
        identifier: r.identifier,
        headers: r.headers,
        registry_auth: RegistryAuth::Challenge,
    };
    match state.preheats.send(CreatePreheat(request)).await? {
        CreateOutcome::Created(id) | CreateOutcome::InProgress(id) => {
            Ok(json_response(StatusCode::OK, &CreatedBody { id: id.to_string() }))
        }
        CreateOutcome::AlreadyDone(id) => {
            let message = format!("preheat task already exists, id:{id}");
            Ok(json_response(StatusCode::ALREADY_REPORTED, &AlreadyBody { id: id.to_string(), code: 208, message }))
        }
    }
}

async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let all: Vec<PreheatInfo> = state.preheats.send(ListPreheats).await?.into_iter().map(PreheatInfo::from).collect();
    Ok(json_response(StatusCode::OK, &all))
}

async fn get(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let id = PreheatId::from_raw(&path.into_inner());
    let p = state
        .preheats
        .send(GetPreheat(id.clone()))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{id} doesn't exists")))?;
    Ok(json_response(StatusCode::OK, &PreheatInfo::from(p)))
}

async fn delete(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let id = PreheatId::from_raw(&path.into_inner());
    if state.preheats.send(DeletePreheat(id.clone())).await? {
        Ok(HttpResponse::Ok().finish())
    } else {
        Err(ApiError::NotFound(format!("{id} doesn't exists")))
    }
}
