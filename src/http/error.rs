//! The HTTP layer's one error type and its mapping to the API's error shape
//! (`{"code": <HTTP status>, "message": ...}`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed body, wrong types, failed validation: names the field.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// Missing or wrong API token.
    #[error("{0}")]
    Unauthorized(String),
    /// Refused by policy (source policy, callSystem lists).
    #[error("{0}")]
    Forbidden(String),
    #[error("request body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    /// The source the request names cannot be used (unreachable, error status, needs
    /// credentials): a 4xx, since only a different request (URL, headers) can change that.
    #[error("{0}")]
    SourceFailed(String),
    /// The task's state does not allow the request (its CDN run failed, a conflicting task).
    #[error("{0}")]
    Conflict(String),
    /// A configured limit (peers, tasks, clients) is reached.
    #[error("{0}")]
    Overloaded(String),
    /// An actor is gone (only during shutdown).
    #[error("service is shutting down")]
    Unavailable,
    #[error("{0}")]
    Internal(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: u16,
    message: &'a str,
}

impl From<actix::MailboxError> for ApiError {
    fn from(_: actix::MailboxError) -> Self {
        ApiError::Unavailable
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::SourceFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Overloaded(_) | ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let message = self.to_string();
        let mut res = super::reply::json_response(status, &ErrorBody { code: status.as_u16(), message: &message });
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                actix_web::http::header::WWW_AUTHENTICATE,
                actix_web::http::header::HeaderValue::from_static("Bearer"),
            );
        }
        res
    }
}
