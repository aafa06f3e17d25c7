//! Request plumbing shared by every route: the `/v<version>` prefix, one tracing span
//! per request, and the Prometheus HTTP metrics labelled by route template.

use std::time::Instant;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Uri;
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument;

use super::AppState;

/// `/v1.24/peer/registry` → `/peer/registry`: Go answers every route under a version
/// prefix (digits and dots after a `v`).
fn unversioned(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v")?;
    let end = rest.find('/')?;
    let version = &rest[..end];
    let ok = !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && version.as_bytes()[0].is_ascii_digit();
    ok.then(|| &rest[end..])
}

/// Rewrites a version-prefixed path before routing, as `NormalizePath` does.
pub async fn strip_version_prefix(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let uri = req.uri().clone();
    if let Some(path) = unversioned(uri.path()) {
        let pq = match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        if let Ok(new_uri) = pq.parse::<Uri>() {
            req.head_mut().uri = new_uri.clone();
            req.match_info_mut().get_mut().update(&new_uri);
        }
    }
    next.call(req).await
}

/// One span per request; counts and times it under its route template.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let request_size = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    let span = tracing::info_span!("http", method = %req.method(), path = %req.path(), status = tracing::field::Empty);
    let res = next.call(req).instrument(span.clone()).await?;
    let handler = res.request().match_pattern().unwrap_or_else(|| "unmatched".to_string());
    let status = res.status();
    span.record("status", status.as_u16());
    let elapsed = started.elapsed();
    if let Some(state) = state {
        let m = &state.metrics;
        m.http_requests.with_label_values(&[status.as_str(), &handler]).inc();
        m.http_duration.with_label_values(&[&handler]).observe(elapsed.as_secs_f64());
        m.http_request_size.with_label_values(&[&handler]).observe(request_size);
        if let BodySize::Sized(n) = res.response().body().size() {
            m.http_response_size.with_label_values(&[&handler]).observe(n as f64);
        }
    }
    span.in_scope(|| tracing::debug!(elapsed_us = elapsed.as_micros() as u64, "request done"));
    Ok(res)
}

/// Whether a request needs the token when one is set: it changes state through the operator
/// API, or it asks for a profile (which shows the process's inner workings and costs CPU).
fn is_guarded(method: &actix_web::http::Method, path: &str) -> bool {
    use actix_web::http::Method;
    let mutating = matches!(*method, Method::POST | Method::PUT | Method::DELETE);
    let operator_api = (path.starts_with("/api/v1/") && !path.starts_with("/api/v1/peer/"))
        || path == "/preheats"
        || path.starts_with("/preheats/");
    (mutating && operator_api) || path.starts_with("/debug/pprof/")
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Optional bearer-token protection (off when no token is set) of the mutating operator
/// endpoints, and of every request to the job API, which also takes `?access_token=`.
pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    let token = req.app_data::<web::Data<AppState>>().map(|s| s.security.api_token.clone()).unwrap_or_default();
    if !token.is_empty() && super::jobs::is_jobs_path(req.path()) {
        let given = super::jobs::given_token(&req).unwrap_or_default();
        if !same_secret(given.as_bytes(), token.as_bytes()) {
            let res = actix_web::ResponseError::error_response(&super::jobs::JobsError::Unauthorized);
            return Ok(req.into_response(res).map_into_right_body());
        }
    } else if !token.is_empty() && is_guarded(req.method(), req.path()) {
        let given = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same_secret(given.trim().as_bytes(), token.as_bytes()) {
            let err = super::error::ApiError::Unauthorized("a valid bearer token is required".into());
            let res = actix_web::ResponseError::error_response(&err);
            return Ok(req.into_response(res).map_into_right_body());
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::unversioned;

    #[test]
    fn guarded_paths() {
        use actix_web::http::Method;
        assert!(super::is_guarded(&Method::POST, "/api/v1/peers"));
        assert!(super::is_guarded(&Method::DELETE, "/preheats/x"));
        assert!(super::is_guarded(&Method::POST, "/preheats"));
        assert!(!super::is_guarded(&Method::GET, "/api/v1/peers"));
        assert!(!super::is_guarded(&Method::POST, "/peer/registry"));
        assert!(!super::is_guarded(&Method::POST, "/api/v1/peer/heartbeat"));
        assert!(super::is_guarded(&Method::GET, "/debug/pprof/profile"));
        assert!(
            super::same_secret(b"abc", b"abc")
                && !super::same_secret(b"abc", b"abd")
                && !super::same_secret(b"ab", b"abc")
        );
    }

    #[test]
    fn version_prefix() {
        assert_eq!(unversioned("/v1.24/_ping"), Some("/_ping"));
        assert_eq!(unversioned("/v1.0/api/v1/peers"), Some("/api/v1/peers"));
        assert_eq!(unversioned("/v1/x"), Some("/x"));
        assert_eq!(unversioned("/version"), None);
        assert_eq!(unversioned("/vx/_ping"), None);
        assert_eq!(unversioned("/v/_ping"), None);
    }
}
