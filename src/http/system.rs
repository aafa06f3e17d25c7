//! `/_ping`, `/version`, `/metrics` and the API document.

use actix_web::http::Method;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use prometheus::{Encoder, TextEncoder};

use super::reply::json_response;
use super::{AppState, RouteSet};
use crate::build_info::VERSION;

pub fn routes(r: &mut RouteSet) {
    r.add("/_ping", vec![(Method::GET, web::to(ping)), (Method::HEAD, web::to(ping))]);
    r.add("/version", vec![(Method::GET, web::to(version))]);
    r.add("/metrics", vec![(Method::GET, web::to(metrics))]);
    r.add("/api/v1/openapi.json", vec![(Method::GET, web::to(openapi))]);
}

/// The API as this server implements it (kept in `openapi.json`, checked against the routes by tests).
const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(OPENAPI)
}

async fn ping() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("OK")
}

async fn version() -> HttpResponse {
    json_response(StatusCode::OK, &VERSION)
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let families = state.metrics.registry.gather();
    let mut buf = Vec::new();
    match TextEncoder::new().encode(&families, &mut buf) {
        Ok(()) => HttpResponse::Ok().content_type(prometheus::TEXT_FORMAT).body(buf),
        Err(e) => HttpResponse::InternalServerError().body(format!("encoding metrics: {e}")),
    }
}
