//! The ResultInfo envelope of the dfget control plane, `{code, data?, msg?}`: always HTTP
//! 200 unless noted, since dfget treats any other status as an unreachable supernode.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;

use super::reply::json_response;

/// ResultInfo codes used by this server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultCode {
    Success = 200,
    ParamInvalid = 501,
    TargetNotFound = 502,
    PeerFinish = 600,
    PeerContinue = 601,
    PeerWait = 602,
    PeerLimited = 603,
    CdnFail = 604,
    TaskConflict = 606,
    UrlNotReachable = 607,
    NeedAuth = 608,
    SourceError = 610,
    PieceReportOk = 611,
    PeerDownOk = 612,
}

#[derive(Serialize)]
struct ResultInfo<'a, T: Serialize> {
    code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<T>,
    #[serde(skip_serializing_if = "str::is_empty")]
    msg: &'a str,
}

/// HTTP 200 with `{code, data?, msg?}`.
pub fn result<T: Serialize>(code: ResultCode, msg: &str, data: Option<T>) -> HttpResponse {
    json_response(StatusCode::OK, &ResultInfo { code: code as i32, data, msg })
}

/// HTTP 200 with `{code, msg}` and no data.
pub fn result_msg(code: ResultCode, msg: &str) -> HttpResponse {
    result::<()>(code, msg, None)
}

/// A bad registration: HTTP 400 carrying both ResultInfo's param code and the API's `message`.
pub fn registry_bad_request(message: &str) -> HttpResponse {
    #[derive(Serialize)]
    struct Body<'a> {
        code: i32,
        msg: &'a str,
        message: &'a str,
    }
    json_response(StatusCode::BAD_REQUEST, &Body { code: ResultCode::ParamInvalid as i32, msg: message, message })
}
