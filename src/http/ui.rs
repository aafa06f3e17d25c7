//! The ops page: static HTML and a little JS, embedded in the binary, calling the public API.

use super::RouteSet;
use actix_web::http::Method;
use actix_web::{web, HttpResponse};

const PAGE: &str = include_str!("ui.html");

pub fn routes(r: &mut RouteSet) {
    r.add("/ui", vec![(Method::GET, web::to(page))]);
    r.add(
        "/",
        vec![(Method::GET, web::to(|| async { HttpResponse::Found().insert_header(("Location", "/ui")).finish() }))],
    );
}

async fn page() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(PAGE)
}
