//! The part of the Dragonfly 2 manager's API that Harbor 2.12 and later use to preheat:
//! `GET /healthy`, `POST /oapi/v1/jobs` and `GET /oapi/v1/jobs/{id}`. Harbor 2.1–2.11 use
//! `/preheats` instead; both run on the same `PreheatManager`, so one supernode serves both.
//!
//! Harbor decodes each reply into strict Go types and fails the preheat on one wrong field,
//! so the replies keep the manager's shapes (`wire`). A new job is answered 200 (Harbor takes
//! 208 for an error) while its image preheat runs in the background; Harbor polls it every
//! 10 s for up to 30 min, so a poll is answered from memory.

mod error;
mod request;
mod wire;

use actix_web::dev::ServiceRequest;
use actix_web::http::header::AUTHORIZATION;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use supernode_actors::preheat::{CreateJob, GetJob};

use super::json::read_body;
use super::reply::json_response;
use super::{AppState, RouteSet};
pub use error::JobsError;
use wire::JobReply;

pub fn routes(r: &mut RouteSet) {
    r.add("/healthy", vec![(Method::GET, web::to(healthy))]);
    r.add("/oapi/v1/jobs", vec![(Method::POST, web::to(create))]);
    r.add("/oapi/v1/jobs/{id}", vec![(Method::GET, web::to(get))]);
}

/// Harbor's health check before every preheat: the JSON string `"OK"`, whatever credentials
/// come with it.
async fn healthy() -> HttpResponse {
    json_response(StatusCode::OK, &"OK")
}

async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, JobsError> {
    let body = read_body(&req, payload).await?;
    let args = request::parse_create(&body, &state)?;
    let job = state.preheats.send(CreateJob(args)).await?;
    Ok(json_response(StatusCode::OK, &JobReply::from(&job)))
}

async fn get(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, JobsError> {
    let id = request::parse_id(&path.into_inner())?;
    let job = state.preheats.send(GetJob(id)).await?.ok_or(JobsError::NotFound)?;
    Ok(json_response(StatusCode::OK, &JobReply::from(&job)))
}

/// Whether `path` is under the job API, which needs the API token on every method when one
/// is set (`/healthy` never does).
pub fn is_jobs_path(path: &str) -> bool {
    path == "/oapi/v1/jobs" || path.starts_with("/oapi/v1/jobs/")
}

/// The token a job API request carries: `Authorization: Bearer <token>` (the scheme in any
/// case; Harbor's OAuth mode) or else `?access_token=<token>`.
pub fn given_token(req: &ServiceRequest) -> Option<String> {
    let header = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
    });
    header.or_else(|| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
            .ok()?
            .into_iter()
            .find_map(|(k, v)| (k == "access_token").then_some(v))
    })
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::{given_token, is_jobs_path};

    #[test]
    fn tokens_from_the_header_or_the_query() {
        let token = |req: TestRequest| given_token(&req.to_srv_request());
        let header = |v: &str| TestRequest::default().insert_header(("Authorization", v.to_string()));
        assert_eq!(token(header("Bearer abc")).as_deref(), Some("abc"));
        assert_eq!(token(header("bEaReR  abc ")).as_deref(), Some("abc"));
        assert_eq!(token(header("Basic abc")), None);
        assert_eq!(token(header("abc")), None);
        assert_eq!(token(TestRequest::with_uri("/oapi/v1/jobs?x=1&access_token=a%2Bb")).as_deref(), Some("a+b"));
        assert_eq!(token(header("Basic x").uri("/oapi/v1/jobs?access_token=q")).as_deref(), Some("q"));
        assert_eq!(token(header("Bearer h").uri("/oapi/v1/jobs?access_token=q")).as_deref(), Some("h"));
        assert_eq!(token(TestRequest::default()), None);
        assert!(is_jobs_path("/oapi/v1/jobs") && is_jobs_path("/oapi/v1/jobs/7"));
        assert!(!is_jobs_path("/healthy") && !is_jobs_path("/oapi/v1/jobsx") && !is_jobs_path("/api/v1/jobs"));
    }
}
