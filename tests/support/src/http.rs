//! Requests to a supernode's control API, answered as status and text or JSON.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::child::ChildServer;
use crate::server::TestServer;

/// A supernode with a control API: the in-process [`TestServer`] or a [`ChildServer`].
pub trait Control {
    /// The control API's address.
    fn control_addr(&self) -> SocketAddr;

    /// `http://<control address><path>`
    fn control_url(&self, path: &str) -> String {
        format!("http://{}{}", self.control_addr(), path)
    }
}

impl Control for TestServer {
    fn control_addr(&self) -> SocketAddr {
        self.control()
    }
}

impl Control for ChildServer {
    fn control_addr(&self) -> SocketAddr {
        self.control()
    }
}

/// A client with a 30 s timeout (a fresh one per request keeps connections from lingering
/// when a test stops a server).
pub fn client() -> awc::Client {
    awc::Client::builder().timeout(Duration::from_secs(30)).finish()
}

/// Sends a request (with `body` as JSON) and returns status and body text.
pub async fn call(req: awc::ClientRequest, body: Option<&str>) -> (u16, String) {
    let mut res = match body {
        Some(b) => req.insert_header(("Content-Type", "application/json")).send_body(b.to_string()).await,
        None => req.send().await,
    }
    .expect("request sent");
    let bytes = res.body().limit(64 * 1024 * 1024).await.expect("body read");
    (res.status().as_u16(), String::from_utf8_lossy(&bytes).into_owned())
}

/// `body` as JSON; panics naming the text when it is not.
pub fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A reply body as JSON where it can be: `Null` when empty, a string when not JSON.
fn lenient_json(body: String) -> Value {
    if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or(Value::String(body))
    }
}

/// GET a control path: status and body text.
pub async fn get(s: &impl Control, path: &str) -> (u16, String) {
    call(client().get(s.control_url(path)), None).await
}

/// GET a control path; the body as JSON (`Null` when empty, a string when not JSON).
pub async fn get_json(s: &impl Control, path: &str) -> (u16, Value) {
    let (status, body) = get(s, path).await;
    (status, lenient_json(body))
}

/// POST `body` as JSON to a control path; the reply as in [`get_json`].
pub async fn post_json(s: &impl Control, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = call(client().post(s.control_url(path)), Some(&body.to_string())).await;
    (status, lenient_json(text))
}

/// DELETE a control path: status and body text.
pub async fn delete(s: &impl Control, path: &str) -> (u16, String) {
    call(client().delete(s.control_url(path)), None).await
}
