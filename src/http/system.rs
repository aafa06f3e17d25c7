//! `/_ping`, `/version`, `/metrics` and the API document.

use actix_web::http::Method;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use prometheus::{Encoder, TextEncoder};
use serde::Serialize;

use super::reply::json_response;
use super::{AppState, RouteSet};

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

/// DragonflyVersion; keys capitalised as Go's.
#[derive(Serialize)]
pub struct DragonflyVersion {
    #[serde(rename = "Version")]
    pub version: &'static str,
    #[serde(rename = "Revision", skip_serializing_if = "str::is_empty")]
    pub revision: &'static str,
    #[serde(rename = "BuildDate")]
    pub build_date: &'static str,
    #[serde(rename = "GoVersion")]
    pub go_version: &'static str,
    #[serde(rename = "OS")]
    pub os: &'static str,
    #[serde(rename = "Arch")]
    pub arch: &'static str,
}

pub const VERSION: DragonflyVersion = DragonflyVersion {
    version: env!("CARGO_PKG_VERSION"),
    revision: env!("SUPERNODE_GIT_REVISION"),
    build_date: env!("SUPERNODE_BUILD_DATE"),
    go_version: env!("SUPERNODE_RUSTC_VERSION"),
    os: std::env::consts::OS,
    arch: go_arch(),
};

/// Go's names for the architectures (`amd64`, `arm64`), which dashboards expect.
const fn go_arch() -> &'static str {
    match std::env::consts::ARCH.as_bytes() {
        b"x86_64" => "amd64",
        b"aarch64" => "arm64",
        b"x86" => "386",
        _ => std::env::consts::ARCH,
    }
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
