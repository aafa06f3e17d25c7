//! `/api/v1/peers`: registering, listing, reading and deleting peers. Peer IDs are stable
//! (`<hostName>-<IP>`), so creating a known host again answers 201 with the same ID.

use std::net::Ipv4Addr;

use actix_web::http::Method;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use supernode_actors::peer_registry::{
    DeletePeer, GetPeer, ListPeers, PeerError, PeerInfo, PeerKind, PeerSortKey, RegisterPeer, SortDirection,
};
use supernode_actors::PeerId;

use super::error::ApiError;
use super::json::{bind_json, query_pairs, read_body};
use super::reply::json_response;
use super::{AppState, RouteSet};

pub fn routes(r: &mut RouteSet) {
    r.add("/api/v1/peers", vec![(Method::POST, web::to(create)), (Method::GET, web::to(list))]);
    r.add("/api/v1/peers/{id}", vec![(Method::GET, web::to(get)), (Method::DELETE, web::to(delete))]);
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PeerCreateRequest {
    #[serde(rename = "IP")]
    ip: Option<String>,
    #[serde(rename = "hostName")]
    host_name: Option<String>,
    port: Option<i64>,
    version: Option<String>,
}

#[derive(Serialize)]
struct PeerCreateResponse {
    #[serde(rename = "ID")]
    id: String,
}

/// PeerInfo on the wire; every key omitted when empty.
#[derive(Serialize)]
pub struct PeerInfoDto {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "IP")]
    ip: String,
    created: String,
    #[serde(rename = "hostName", skip_serializing_if = "String::is_empty")]
    host_name: String,
    #[serde(skip_serializing_if = "is_zero")]
    port: u16,
    #[serde(skip_serializing_if = "String::is_empty")]
    version: String,
}

fn is_zero(v: &u16) -> bool {
    *v == 0
}

impl From<PeerInfo> for PeerInfoDto {
    fn from(p: PeerInfo) -> Self {
        PeerInfoDto {
            id: p.id.to_string(),
            ip: p.ip.to_string(),
            created: p.created.to_rfc3339_opts(SecondsFormat::Millis, true),
            host_name: p.host_name,
            port: p.port,
            version: p.version,
        }
    }
}

/// A dotted-quad IPv4 address; the field name goes into the error.
pub fn parse_ipv4(field: &str, value: &str) -> Result<Ipv4Addr, ApiError> {
    value.parse::<Ipv4Addr>().map_err(|_| ApiError::BadRequest(format!("{field}: {value:?} is not an IPv4 address")))
}

/// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
pub fn is_rfc1123_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// An uploader port: 15000–65000.
pub fn check_port(field: &str, port: i64) -> Result<u16, ApiError> {
    if (15000..=65000).contains(&port) {
        Ok(port as u16)
    } else {
        Err(ApiError::BadRequest(format!("{field}: {port} is out of range 15000-65000")))
    }
}

fn peer_error(e: PeerError) -> ApiError {
    match e {
        PeerError::NotFound(_) => ApiError::NotFound(e.to_string()),
        PeerError::SuperPeer(_) => ApiError::Forbidden(e.to_string()),
        PeerError::TooMany(_) => ApiError::Overloaded(e.to_string()),
    }
}

async fn create(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload).await?;
    let r: PeerCreateRequest = bind_json(&body)?;
    let ip = parse_ipv4("IP", r.ip.as_deref().unwrap_or(""))?;
    let host_name = r.host_name.unwrap_or_default();
    if !is_rfc1123_hostname(&host_name) {
        return Err(ApiError::BadRequest(format!("hostName: {host_name:?} is not a valid RFC 1123 host name")));
    }
    let port = check_port("port", r.port.ok_or_else(|| ApiError::BadRequest("port: required".into()))?)?;
    let version = r.version.unwrap_or_default();
    let registration = state
        .peers
        .send(RegisterPeer { host_name, ip, port, version, kind: PeerKind::Client })
        .await?
        .map_err(peer_error)?;
    Ok(json_response(StatusCode::CREATED, &PeerCreateResponse { id: registration.info.id.to_string() }))
}

fn parse_count(name: &str, value: &str) -> Result<usize, ApiError> {
    value.parse::<usize>().map_err(|_| ApiError::BadRequest(format!("{name}: {value:?} is not a non-negative integer")))
}

async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut msg = ListPeers::default();
    let mut page_size = None;
    for (key, value) in query_pairs(&req)? {
        match key.as_str() {
            "pageNum" => msg.page_num = parse_count("pageNum", &value)?,
            "pageSize" => page_size = Some(parse_count("pageSize", &value)?),
            "sortKey" => {
                msg.sort.push(value.parse::<PeerSortKey>().map_err(|e| ApiError::BadRequest(format!("sortKey: {e}")))?)
            }
            "sortDirect" => {
                msg.direction =
                    value.parse::<SortDirection>().map_err(|e| ApiError::BadRequest(format!("sortDirect: {e}")))?
            }
            _ => {}
        }
    }
    msg.page_size = page_size.ok_or_else(|| ApiError::BadRequest("pageSize: required".into()))?;
    state.check_list_len("sortKey", msg.sort.len())?;
    let peers = state.peers.send(msg).await?;
    let dtos: Vec<PeerInfoDto> = peers.into_iter().map(PeerInfoDto::from).collect();
    Ok(json_response(StatusCode::OK, &dtos))
}

async fn get(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let info = state.peers.send(GetPeer(PeerId::from_raw(&path))).await?.map_err(peer_error)?;
    Ok(json_response(StatusCode::OK, &PeerInfoDto::from(info)))
}

async fn delete(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.peers.send(DeletePeer(PeerId::from_raw(&path))).await?.map_err(peer_error)?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::is_rfc1123_hostname;

    #[test]
    fn hostnames() {
        for ok in ["host-a", "ab", "a.b-c.example", "1host", "a"] {
            assert!(is_rfc1123_hostname(ok), "{ok}");
        }
        for bad in ["", "h_x", "Höst", "a-", "-a", "a..b", "a.", &"x".repeat(64)] {
            assert!(!is_rfc1123_hostname(bad), "{bad}");
        }
    }
}
