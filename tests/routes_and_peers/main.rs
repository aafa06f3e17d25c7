//! The system routes and router fallbacks, and the peers API, against an in-process server.
//!
//! * `system_routes`: `/_ping`, `/version`, `/metrics`, the version prefix, 404 and 405;
//! * `create_peer`: `POST /api/v1/peers` and its validation;
//! * `list_peers`: `GET /api/v1/peers` (validation, paging, sorting) and the PeerInfo shape;
//! * `get_delete_peer`: `GET` and `DELETE /api/v1/peers/{id}`, the super peer.

mod create_peer;
mod get_delete_peer;
mod list_peers;
mod system_routes;

use serde_json::Value;
use testkit::TestServer;

async fn post_peer(s: &TestServer, body: &str) -> (u16, String) {
    testkit::call(testkit::client().post(s.url("/api/v1/peers")), Some(body)).await
}

/// Registers a peer and returns its ID (asserting 201).
async fn create_peer(s: &TestServer, host: &str, ip: &str, port: u16) -> String {
    let body = format!(r#"{{"IP":"{ip}","hostName":"{host}","port":{port},"version":"1.0.6"}}"#);
    let (status, reply) = post_peer(s, &body).await;
    assert_eq!(status, 201, "POST {body} → {reply}");
    let v = testkit::json(&reply);
    let id = v["ID"].as_str().unwrap_or_else(|| panic!("no ID in {reply}")).to_string();
    assert_eq!(id, format!("{host}-{ip}"), "{reply}");
    id
}

async fn list(s: &TestServer, query: &str) -> Vec<Value> {
    let (status, body) = testkit::get(s, &format!("/api/v1/peers?{query}")).await;
    assert_eq!(status, 200, "GET /api/v1/peers?{query} → {body}");
    match testkit::json(&body) {
        Value::Array(a) => a,
        other => panic!("not an array: {other}"),
    }
}

fn ids(peers: &[Value]) -> Vec<String> {
    peers.iter().map(|p| p["ID"].as_str().expect("ID").to_string()).collect()
}

/// The super peer (the supernode itself): the one whose ID ends in `-supernode`.
async fn super_peer(s: &TestServer) -> Value {
    let all = list(s, "pageSize=0").await;
    let supers: Vec<&Value> = all.iter().filter(|p| p["ID"].as_str().unwrap_or("").ends_with("-supernode")).collect();
    assert_eq!(supers.len(), 1, "exactly one super peer expected in {all:?}");
    supers[0].clone()
}

/// 400 with `{"code":400,"message":...}`; the message names `field` when given.
fn assert_bad_request(status: u16, body: &str, field: Option<&str>, what: &str) {
    assert_eq!(status, 400, "{what}: expected 400, got {status} {body}");
    let v = testkit::json(body);
    assert_eq!(v["code"], 400, "{what}: {body}");
    let message = v["message"].as_str().unwrap_or_else(|| panic!("{what}: no message in {body}"));
    assert!(!message.is_empty(), "{what}: empty message");
    if let Some(field) = field {
        assert!(message.contains(field), "{what}: message {message:?} does not name {field:?}");
    }
}
