//! `POST /api/v1/cluster/tasks`: the one supernode-to-supernode call of cluster mode. A node
//! that gets a registration for a task this node owns registers the task here; this node
//! makes the CDN copy (it alone fetches the source) and answers the task's state, which the
//! other node mirrors. A refusal says which kind it is, so the other node tells its client
//! what this node would have.

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use supernode_actors::cdn::source::check_root_cas;
use supernode_actors::cluster::forward::{OwnerRefusal, OwnerTask, OwnerTaskRequest, RefusalKind, OWNER_TASKS_PATH};
use supernode_actors::failure::SourceFailure;
use supernode_actors::task_manager::{Downloader, Register, RegisterError, Route};

use super::error::ApiError;
use super::json::{bind_json, read_body};
use super::registry::{check_headers, check_source_url};
use super::reply::json_response;
use super::{AppState, RouteSet};

pub fn routes(r: &mut RouteSet) {
    r.add(OWNER_TASKS_PATH, vec![(Method::POST, web::to(register))]);
}

/// What kind of refusal a registration error is, and the HTTP status it is sent with.
fn refusal(e: &RegisterError) -> (StatusCode, RefusalKind) {
    match (e, e.source_failure()) {
        (RegisterError::Owner(r), _) => (StatusCode::UNPROCESSABLE_ENTITY, r.refusal),
        (_, Some(SourceFailure::Denied(_))) => (StatusCode::FORBIDDEN, RefusalKind::Denied),
        (_, Some(SourceFailure::Auth(code))) => (StatusCode::UNPROCESSABLE_ENTITY, RefusalKind::Auth(*code)),
        (RegisterError::Conflict(_), _) => (StatusCode::CONFLICT, RefusalKind::Conflict),
        (
            RegisterError::TooManyTasks(_) | RegisterError::Peer(_) | RegisterError::Client(_) | RegisterError::Stopped,
            _,
        ) => (StatusCode::SERVICE_UNAVAILABLE, RefusalKind::Limit),
        (
            RegisterError::Source(_)
            | RegisterError::Remembered(_)
            | RegisterError::OpenTimeout(_)
            | RegisterError::Removed
            | RegisterError::UnknownPeer(_),
            _,
        ) => (StatusCode::UNPROCESSABLE_ENTITY, RefusalKind::Source),
    }
}

async fn register(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload).await?;
    let r: OwnerTaskRequest = bind_json(&body)?;
    check_source_url("rawURL", &r.raw_url)?;
    if r.task_url.is_empty() {
        return Err(ApiError::BadRequest("taskURL: empty value".into()));
    }
    state.check_list_len("headers", r.headers.len())?;
    state.check_list_len("rootCAs", r.root_cas.len())?;
    check_headers(&r.headers)?;
    let spec = r.to_spec().map_err(ApiError::BadRequest)?;
    check_root_cas(spec.tls.extra_roots()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    state.check_source(&spec.raw_url)?;
    let registered = state.tasks.send(Register { spec, downloader: Downloader::Nobody, route: Route::Here }).await?;
    match registered {
        Ok(reg) => {
            let t = reg.task;
            let answer = OwnerTask {
                task_id: t.id.clone(),
                run_id: t.run_id(),
                status: t.cdn_status,
                http_len: t.http_file_length,
                piece_size: t.piece_size,
                piece_total: t.piece_total,
                file_length: t.file_length,
                real_md5: t.real_md5.clone(),
                failure: t.failure.as_ref().map(ToString::to_string),
            };
            Ok(json_response(StatusCode::OK, &answer))
        }
        Err(e) => {
            let (status, kind) = refusal(&e);
            Ok(json_response(status, &OwnerRefusal { refusal: kind, message: e.to_string() }))
        }
    }
}
