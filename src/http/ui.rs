//! The ops page: static HTML and a little JS, embedded in the binary, calling the public API.

use actix_web::{web, HttpResponse};

const PAGE: &str = include_str!("ui.html");

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/ui").route(web::get().to(page)))
        .service(web::resource("/").route(web::get().to(|| async { HttpResponse::Found().insert_header(("Location", "/ui")).finish() })));
}

async fn page() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(PAGE)
}
