//! Security: what a source may be, who may register, who may change things, and how much a
//! request may ask for. Each refusal is followed by a normal request that still works.
//!
//! * `source_policy`: the source allow/deny lists (host names, `.suffix` names, addresses,
//!   CIDRs), the metadata and link-local addresses denied by default, and redirects;
//! * `access`: the `callSystem` allow/deny lists and the optional bearer token on the
//!   mutating operator endpoints;
//! * `limits`: body and header sizes, peers, tasks, clients and list lengths.

mod access;
mod limits;
mod source_policy;

use std::time::Duration;

use serde_json::{json, Value};
use testkit::origin::Origin;
use testkit::{dfget_body, wait_done, TestServer};

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

/// An answer with its headers, for the refusals that carry some (`WWW-Authenticate`).
struct Reply {
    status: u16,
    headers: awc::http::header::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
    }
}

/// One request with an optional JSON body and extra headers.
async fn request(s: &TestServer, method: &str, path: &str, body: Option<String>, headers: &[(&str, &str)]) -> Reply {
    let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = testkit::client().request(method, s.url(path));
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let res = match body {
        Some(b) => req.insert_header(("Content-Type", "application/json")).send_body(b).await,
        None => req.send().await,
    };
    let mut res = res.unwrap_or_else(|e| panic!("{path}: request failed: {e}"));
    let bytes = res.body().limit(16 << 20).await.expect("body read");
    Reply {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn post(s: &TestServer, path: &str, body: &Value) -> Reply {
    request(s, "POST", path, Some(body.to_string()), &[]).await
}

async fn get(s: &TestServer, path: &str) -> Reply {
    request(s, "GET", path, None, &[]).await
}

/// The API's error shape `{"code":<status>,"message":…}`: the HTTP status also in `code`, and
/// a message.
fn assert_error(r: &Reply, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text);
    let v = r.json();
    assert_eq!(v["code"], status, "{what}: error body {}", r.text);
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: error body without message: {}", r.text);
}

/// `POST /peer/registry` answered 200 with ResultInfo code 200; returns the task ID.
async fn register_ok(s: &TestServer, body: &Value) -> String {
    let data = testkit::register(s, body).await;
    data["taskId"].as_str().expect("taskId").to_string()
}

async fn origin_with_file(path: &str) -> (Origin, String) {
    let origin = Origin::start().await;
    origin.add(path, (0..5000u32).map(|i| (i * 7) as u8).collect());
    let url = origin.url(path);
    (origin, url)
}

/// A registration that is accepted and whose CDN run succeeds: the server still works.
async fn register_and_cache(s: &TestServer, url: &str, cid: &str) {
    let id = register_ok(s, &dfget_body(url, cid)).await;
    let info = wait_done(s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["cdnStatus"], "SUCCESS", "{info}");
}

/// A PeerCreateRequest body for `host` at `ip`.
fn peer_body(host: &str, ip: &str) -> Value {
    json!({ "IP": ip, "hostName": host, "port": 20001, "version": "1.0.6" })
}
