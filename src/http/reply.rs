//! Rendering JSON replies as Go's `encoding/json` did: one trailing newline, no HTML escaping.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;

/// `application/json` with one trailing newline; `<`, `>` and `&` are not escaped.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> HttpResponse {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            HttpResponse::build(status).content_type("application/json").body(body)
        }
        Err(e) => HttpResponse::InternalServerError().content_type("text/plain").body(format!("encoding reply: {e}")),
    }
}
