//! The job API's errors, in the Dragonfly 2 manager's shapes: a body that does not validate is
//! 422 `{"errors": "..."}`, everything else `{"message": "..."}`. Harbor fails the preheat on
//! any of them and logs the body, so the text says what was wrong.

use actix_web::http::header::{HeaderValue, WWW_AUTHENTICATE};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::http::error::ApiError;
use crate::http::reply::json_response;

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// The body or the job ID does not validate: names the field.
    #[error("{0}")]
    Invalid(String),
    #[error("record not found")]
    NotFound,
    /// Missing or wrong API token.
    #[error("Unauthorized")]
    Unauthorized,
    /// The source policy denies the manifest URL's host.
    #[error("{0}")]
    Forbidden(String),
    #[error("request body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    /// An actor is gone (only during shutdown) or a configured limit is reached.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<ApiError> for JobsError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::BadRequest(m) | ApiError::SourceFailed(m) | ApiError::Conflict(m) => JobsError::Invalid(m),
            ApiError::NotFound(_) => JobsError::NotFound,
            ApiError::Unauthorized(_) => JobsError::Unauthorized,
            ApiError::Forbidden(m) => JobsError::Forbidden(m),
            ApiError::TooLarge(limit) => JobsError::TooLarge(limit),
            ApiError::Overloaded(m) => JobsError::Unavailable(m),
            ApiError::Unavailable => JobsError::Unavailable(ApiError::Unavailable.to_string()),
            ApiError::Internal(m) => JobsError::Internal(m),
        }
    }
}

impl From<actix::MailboxError> for JobsError {
    fn from(e: actix::MailboxError) -> Self {
        ApiError::from(e).into()
    }
}

#[derive(Serialize)]
struct Errors<'a> {
    errors: &'a str,
}

#[derive(Serialize)]
struct Message<'a> {
    message: &'a str,
}

impl ResponseError for JobsError {
    fn status_code(&self) -> StatusCode {
        match self {
            JobsError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            JobsError::NotFound => StatusCode::NOT_FOUND,
            JobsError::Unauthorized => StatusCode::UNAUTHORIZED,
            JobsError::Forbidden(_) => StatusCode::FORBIDDEN,
            JobsError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            JobsError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            JobsError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let text = self.to_string();
        let mut res = match self {
            JobsError::Invalid(_) => json_response(status, &Errors { errors: &text }),
            _ => json_response(status, &Message { message: &text }),
        };
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}
