//! `POST /peer/registry`: dfget's registration of one download.
//!
//! The body is JSON (dfget 1.x) or a form (0.2.x clients); keys are matched ignoring case.
//! A body that does not bind or fails a check gets HTTP 400 with both ResultInfo's
//! param-error code and the API's `message`. A source that cannot be used gets 607 (608
//! when it wants credentials), which makes dfget stop trying other supernodes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::http::Uri;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use supernode_actors::cdn::source::check_root_cas;
use supernode_actors::cluster::forward::RefusalKind;
use supernode_actors::failure::SourceFailure;
use supernode_actors::peer_registry::{PeerKind, RegisterPeer};
use supernode_actors::scheduler::ClientRole;
use supernode_actors::spec::{task_url, SourceTls, TaskSpec};
use supernode_actors::task_manager::{ClientRequest, Downloader, Pattern, Register, RegisterError, Route};
use supernode_actors::ClientId;

use super::error::ApiError;
use super::json::{bind_json, bind_value, read_body, struct_fields};
use super::result::{registry_bad_request, result, result_msg, ResultCode};
use super::{AppState, RouteSet};

pub fn routes(r: &mut RouteSet) {
    r.add("/peer/registry", vec![(Method::POST, web::to(register))]);
}

/// TaskRegisterRequest: declared names; dfget sends `cid`, `ip`, `rawUrl`, … (matched ignoring case).
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct TaskRegisterRequest {
    #[serde(rename = "cID")]
    cid: String,
    #[serde(rename = "IP")]
    ip: String,
    #[serde(rename = "hostName")]
    host_name: String,
    port: i64,
    path: String,
    #[serde(rename = "rawURL")]
    raw_url: String,
    #[serde(rename = "taskURL")]
    task_url: String,
    #[serde(rename = "superNodeIp")]
    super_node_ip: String,
    md5: String,
    identifier: String,
    #[serde(rename = "callSystem")]
    call_system: Option<String>,
    version: String,
    headers: Vec<String>,
    dfdaemon: bool,
    insecure: bool,
    #[serde(rename = "rootCAs")]
    root_cas: Vec<String>,
    #[serde(rename = "taskId")]
    task_id: String,
    #[serde(rename = "fileLength")]
    file_length: i64,
    #[serde(rename = "asSeed")]
    as_seed: bool,
    pattern: String,
}

#[derive(Serialize)]
struct RegisterData {
    #[serde(rename = "taskId")]
    task_id: String,
    #[serde(rename = "fileLength")]
    file_length: i64,
    #[serde(rename = "pieceSize")]
    piece_size: u64,
    #[serde(rename = "cdnSource")]
    cdn_source: &'static str,
    #[serde(rename = "asSeed")]
    as_seed: bool,
    #[serde(rename = "seedTaskID")]
    seed_task_id: String,
}

fn is_form(req: &HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// Form bodies of 0.2.x clients: keys matched to field names ignoring case, repeated `headers`.
fn form_to_value(body: &[u8]) -> Result<Value, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|e| ApiError::BadRequest(format!("malformed form body: {e}")))?;
    let fields = struct_fields::<TaskRegisterRequest>();
    let mut map = Map::new();
    for (key, value) in pairs {
        let Some(field) = fields.iter().find(|f| f.eq_ignore_ascii_case(&key)) else { continue };
        let v = match *field {
            "port" | "fileLength" => Value::from(
                value
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| ApiError::BadRequest(format!("{field}: {value:?} is not an integer")))?,
            ),
            "dfdaemon" | "insecure" | "asSeed" => Value::from(
                value
                    .parse::<bool>()
                    .map_err(|_| ApiError::BadRequest(format!("{field}: {value:?} is not true or false")))?,
            ),
            "headers" | "rootCAs" => {
                let entry = map.entry(field.to_string()).or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = entry {
                    list.push(Value::from(value));
                }
                continue;
            }
            _ => Value::from(value),
        };
        map.insert(field.to_string(), v);
    }
    Ok(Value::Object(map))
}

/// `"Name: value"` list → map: split at the first `:`, trim, drop empty, join repeats with `,`.
pub fn header_list_to_map(list: &[String]) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for entry in list {
        let Some((k, v)) = entry.split_once(':') else { continue };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || v.is_empty() {
            continue;
        }
        map.entry(k.to_string())
            .and_modify(|old| {
                old.push(',');
                old.push_str(v);
            })
            .or_insert_with(|| v.to_string());
    }
    map
}

/// Origin headers must be sendable: HTTP token names and values without control characters.
pub fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for (name, value) in headers {
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ApiError::BadRequest(format!("headers: {name:?} is not a valid header name")));
        }
        if HeaderValue::from_str(value).is_err() {
            return Err(ApiError::BadRequest(format!("headers: the value of {name} is not a valid header value")));
        }
    }
    Ok(())
}

/// An absolute http(s) URL with a host.
pub fn check_source_url(field: &str, url: &str) -> Result<(), ApiError> {
    let uri: Uri = url.parse().map_err(|e| ApiError::BadRequest(format!("{field}: {url:?} is not a URL: {e}")))?;
    let scheme_ok = uri.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) {
        return Err(ApiError::BadRequest(format!("{field}: {url:?} must be an http or https URL with a host")));
    }
    Ok(())
}

/// Base64 PEM certificates → bytes.
pub fn decode_root_cas(list: &[String]) -> Result<Vec<Vec<u8>>, ApiError> {
    list.iter()
        .map(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|e| ApiError::BadRequest(format!("rootCAs: not base64: {e}")))
        })
        .collect()
}

fn decode(body: &[u8], form: bool) -> Result<TaskRegisterRequest, ApiError> {
    if form {
        form_to_value(body).and_then(bind_value)
    } else {
        bind_json(body)
    }
}

/// Decodes and validates a registration body exactly as `POST /peer/registry` does (fuzz entry point).
pub fn check_registration(body: &[u8], form: bool) -> Result<(), ApiError> {
    decode(body, form).and_then(|r| validate(&r)).map(|_| ())
}

struct Validated {
    ip: Ipv4Addr,
    port: u16,
    spec: TaskSpec,
}

fn validate(r: &TaskRegisterRequest) -> Result<Validated, ApiError> {
    if r.cid.is_empty() {
        return Err(ApiError::BadRequest("cID: empty value".into()));
    }
    let ip = super::peers::parse_ipv4("IP", &r.ip)?;
    let port = match r.port {
        0 => 0,
        p => super::peers::check_port("port", p)?,
    };
    if r.path.is_empty() {
        return Err(ApiError::BadRequest("path: empty value".into()));
    }
    check_source_url("rawURL", &r.raw_url)?;
    if r.call_system.as_deref() == Some("") {
        return Err(ApiError::BadRequest("callSystem: empty value".into()));
    }
    let task_url = task_url(&r.raw_url, &r.task_url, &[]);
    let headers = header_list_to_map(&r.headers);
    check_headers(&headers)?;
    let root_cas = decode_root_cas(&r.root_cas)?;
    check_root_cas(&root_cas).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let spec = TaskSpec {
        raw_url: r.raw_url.clone(),
        task_url,
        headers,
        md5: r.md5.clone(),
        identifier: r.identifier.clone(),
        tls: SourceTls::from_request(r.insecure, root_cas),
    };
    Ok(Validated { ip, port, spec })
}

/// Maps a registration failure to the reply dfget understands: 607 for a source that
/// cannot be used, 608 for one that wants credentials, 606 for a conflicting task, 403 for
/// a source the policy refuses, 503 for a limit, 501 for a bad request.
pub fn register_error_reply(e: &RegisterError) -> HttpResponse {
    match (e, e.source_failure()) {
        (_, Some(SourceFailure::Denied(m))) => ApiError::Forbidden(m.to_string()).error_response(),
        (_, Some(SourceFailure::Auth(_))) => result_msg(ResultCode::NeedAuth, &e.to_string()),
        (RegisterError::Source(_) | RegisterError::Remembered(_), _)
        | (RegisterError::OpenTimeout(_) | RegisterError::Removed, _) => {
            result_msg(ResultCode::UrlNotReachable, &e.to_string())
        }
        (RegisterError::Conflict(_), _) => result_msg(ResultCode::TaskConflict, &e.to_string()),
        (RegisterError::UnknownPeer(_), _) => registry_bad_request(&e.to_string()),
        (RegisterError::TooManyTasks(_) | RegisterError::Peer(_) | RegisterError::Client(_), _) => {
            ApiError::Overloaded(e.to_string()).error_response()
        }
        (RegisterError::Stopped, _) => ApiError::Unavailable.error_response(),
        (RegisterError::Owner(r), _) => match r.refusal {
            RefusalKind::Source => result_msg(ResultCode::UrlNotReachable, &r.message),
            RefusalKind::Auth(_) => result_msg(ResultCode::NeedAuth, &r.message),
            RefusalKind::Denied => ApiError::Forbidden(r.message.clone()).error_response(),
            RefusalKind::Conflict => result_msg(ResultCode::TaskConflict, &r.message),
            RefusalKind::Limit => ApiError::Overloaded(r.message.clone()).error_response(),
        },
    }
}

#[tracing::instrument(name = "peer_registry", skip_all)]
async fn register(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload).await?;
    let r = match decode(&body, is_form(&req)) {
        Ok(r) => r,
        Err(ApiError::BadRequest(m)) => return Ok(registry_bad_request(&m)),
        Err(e) => return Err(e),
    };
    let checked = state
        .check_list_len("headers", r.headers.len())
        .and_then(|_| state.check_list_len("rootCAs", r.root_cas.len()))
        .and_then(|_| validate(&r));
    let v = match checked {
        Ok(v) => v,
        Err(ApiError::BadRequest(m)) => return Ok(registry_bad_request(&m)),
        Err(e) => return Err(e),
    };
    let call_system = r.call_system.clone().unwrap_or_default();
    state.check_call_system(&call_system)?;
    state.check_source(&r.raw_url)?;
    tracing::info!(cid = %r.cid, url = %r.raw_url, "registration");
    let peer = RegisterPeer {
        host_name: r.host_name.clone(),
        ip: v.ip,
        port: v.port,
        version: r.version.clone(),
        kind: PeerKind::Client,
    };
    let client = ClientRequest {
        cid: ClientId::new(r.cid.clone()),
        path: r.path.clone(),
        super_node_ip: r.super_node_ip.clone(),
        pattern: if r.pattern.eq_ignore_ascii_case("cdn") { Pattern::Cdn } else { Pattern::P2p },
        as_seed: r.as_seed,
        call_system: call_system.clone(),
    };
    let registered = state
        .tasks
        .send(Register { spec: v.spec, downloader: Downloader::Host { peer, client }, route: Route::ToOwner })
        .await?;
    let registration = match registered {
        Ok(reg) => reg,
        Err(e) => {
            tracing::info!(cid = %r.cid, error = %e, "registration refused");
            return Ok(register_error_reply(&e));
        }
    };
    state.metrics.dfgettasks_registered.with_label_values(&[&call_system]).inc();
    let task = registration.task;
    let as_seed = registration.role == Some(ClientRole::Seed);
    let data = RegisterData {
        task_id: task.id.to_string(),
        file_length: task.http_file_length.map_or(-1, |l| l as i64),
        piece_size: task.piece_size,
        cdn_source: state.cdn_source(),
        as_seed,
        seed_task_id: if as_seed { task.id.to_string() } else { String::new() },
    };
    Ok(result(ResultCode::Success, "success", Some(data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_to_map() {
        let m = header_list_to_map(&[
            "X-Foo: a".into(),
            "X-Foo: b".into(),
            "Bad".into(),
            "Empty:".into(),
            "Authorization: Basic a:b".into(),
        ]);
        assert_eq!(m.get("X-Foo").map(String::as_str), Some("a,b"));
        assert_eq!(m.get("Authorization").map(String::as_str), Some("Basic a:b"));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn form_keys_fold() {
        let v = form_to_value(b"cid=a&IP=1.2.3.4&rawUrl=http%3A%2F%2Fh%2Fx&headers=A%3A+1&headers=B%3A+2&port=20000&insecure=true&superNode=x").unwrap();
        let r: TaskRegisterRequest = bind_value(v).unwrap();
        assert_eq!(r.cid, "a");
        assert_eq!(r.raw_url, "http://h/x");
        assert_eq!(r.headers.len(), 2);
        assert_eq!(r.port, 20000);
        assert!(r.insecure);
        assert!(form_to_value(b"port=abc").is_err());
    }

    #[test]
    fn urls() {
        assert!(check_source_url("rawURL", "http://h/x").is_ok());
        assert!(check_source_url("rawURL", "HTTPS://h:8080/x?y").is_ok());
        assert!(check_source_url("rawURL", "ftp://h/x").is_err());
        assert!(check_source_url("rawURL", "/x").is_err());
        assert!(check_source_url("rawURL", "").is_err());
    }
}
