//! Who may do what: the `callSystem` allow and deny lists of registrations, and the optional
//! API token that guards the mutating operator endpoints (never dfget's own calls).

use std::time::Duration;

use serde_json::json;
use testkit::{config_with, dfget_body, wait_done};

use crate::{assert_error, get, origin_with_file, peer_body, post, register_ok, request, strings, with, Reply};

#[actix_web::test]
async fn call_system_deny_list() {
    let config = config_with(|c| c.security.call_system_deny = strings(&["bad"]));
    let s = testkit::start_with(config).await;
    let (origin, url) = origin_with_file("/cs.bin").await;

    let bad = with(dfget_body(&url, "127.0.0.1-1-1.000"), "callSystem", json!("bad"));
    let r = post(&s, "/peer/registry", &bad).await;
    assert_error(&r, 403, "callSystem bad");
    let r = post(&s, "/api/v1/tasks", &json!({ "rawURL": url, "callSystem": "bad" })).await;
    assert_error(&r, 403, "POST /api/v1/tasks callSystem bad");
    assert_eq!(origin.stats("/cs.bin").requests, 0);

    let good = with(dfget_body(&url, "127.0.0.1-2-2.000"), "callSystem", json!("good"));
    register_ok(&s, &good).await;
    // and without a callSystem
    register_ok(&s, &dfget_body(&url, "127.0.0.1-3-3.000")).await;
}

#[actix_web::test]
async fn call_system_allow_list() {
    let config = config_with(|c| c.security.call_system_allow = strings(&["harbor"]));
    let s = testkit::start_with(config).await;
    let (_origin, url) = origin_with_file("/cs.bin").await;

    let r = post(&s, "/peer/registry", &dfget_body(&url, "127.0.0.1-1-1.000")).await;
    assert_error(&r, 403, "no callSystem with an allow list");
    let other = with(dfget_body(&url, "127.0.0.1-2-2.000"), "callSystem", json!("other"));
    assert_error(&post(&s, "/peer/registry", &other).await, 403, "callSystem other");
    let harbor = with(dfget_body(&url, "127.0.0.1-3-3.000"), "callSystem", json!("harbor"));
    register_ok(&s, &harbor).await;
}

// ---------------------------------------------------------------------------------------
// the bearer token
// ---------------------------------------------------------------------------------------

const TOKEN: &str = "s3cret";

fn assert_401(r: &Reply, what: &str) {
    assert_error(r, 401, what);
    assert!(
        r.header("www-authenticate").starts_with("Bearer"),
        "{what}: WWW-Authenticate {:?}",
        r.header("www-authenticate")
    );
}

#[actix_web::test]
async fn api_token_guards_mutating_operator_endpoints_only() {
    let config = config_with(|c| c.security.api_token = TOKEN.into());
    let s = testkit::start_with(config).await;
    let (_origin, url) = origin_with_file("/tok.bin").await;
    let good = format!("Bearer {TOKEN}");
    let peer = peer_body("host-a", "10.0.0.1").to_string();

    let r = request(&s, "POST", "/api/v1/peers", Some(peer.clone()), &[]).await;
    assert_401(&r, "POST /api/v1/peers without a token");
    for auth in ["Bearer wrong", "Bearer ", "Basic czNjcmV0", TOKEN, "bearer s3cre"] {
        let r = request(&s, "POST", "/api/v1/peers", Some(peer.clone()), &[("Authorization", auth)]).await;
        assert_401(&r, &format!("POST /api/v1/peers with Authorization {auth:?}"));
    }
    let r = request(&s, "POST", "/api/v1/peers", Some(peer.clone()), &[("Authorization", &good)]).await;
    assert_eq!(r.status, 201, "with the token: {}", r.text);
    let peer_id = r.json()["ID"].as_str().expect("ID").to_string();

    // reads need no token
    let r = get(&s, "/api/v1/peers?pageSize=10").await;
    assert_eq!(r.status, 200, "GET /api/v1/peers: {}", r.text);
    assert_eq!(get(&s, &format!("/api/v1/peers/{peer_id}")).await.status, 200);
    assert_eq!(get(&s, "/preheats").await.status, 200);

    // preheats, on every prefix
    let preheat = json!({ "type": "file", "url": url }).to_string();
    for path in ["/preheats", "/api/v1/preheats", "/v1.24/preheats", "/v1.24/api/v1/preheats"] {
        let r = request(&s, "POST", path, Some(preheat.clone()), &[]).await;
        assert_401(&r, &format!("POST {path} without a token"));
    }
    let r = request(&s, "DELETE", "/preheats/some-id", None, &[]).await;
    assert_401(&r, "DELETE /preheats/{id} without a token");

    // dfget's control plane needs no token
    let id = register_ok(&s, &dfget_body(&url, "127.0.0.1-1-1.000")).await;
    let info = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["cdnStatus"], "SUCCESS", "{info}");
    let r =
        get(&s, &format!("/peer/task?srcCid=127.0.0.1-1-1.000&dstCid=&range=&result=502&status=700&taskId={id}")).await;
    assert_eq!(r.status, 200, "/peer/task: {}", r.text);
    assert_eq!(r.json()["code"], 601, "/peer/task: {}", r.text);
    for path in ["/peer/heartbeat", "/api/v1/peer/heartbeat", "/v1.24/peer/heartbeat"] {
        let r = post(&s, path, &json!({ "cid": "127.0.0.1-1-1.000" })).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(r.json()["code"], 200, "{path}: {}", r.text);
    }

    // task mutations
    let r = request(&s, "DELETE", &format!("/api/v1/tasks/{id}"), None, &[]).await;
    assert_401(&r, "DELETE /api/v1/tasks/{id} without a token");
    let r = request(&s, "POST", "/api/v1/tasks", Some(json!({ "rawURL": url }).to_string()), &[]).await;
    assert_401(&r, "POST /api/v1/tasks without a token");
    let r = request(&s, "DELETE", &format!("/api/v1/peers/{peer_id}"), None, &[]).await;
    assert_401(&r, "DELETE /api/v1/peers/{id} without a token");
    assert_eq!(get(&s, &format!("/api/v1/tasks/{id}")).await.status, 200, "not deleted");

    // with the token they work
    let r = request(&s, "POST", "/preheats", Some(preheat.clone()), &[("Authorization", &good)]).await;
    assert!(r.status == 200 || r.status == 208, "POST /preheats with the token: {} {}", r.status, r.text);
    let r = request(&s, "DELETE", &format!("/api/v1/tasks/{id}"), None, &[("Authorization", &good)]).await;
    assert_eq!(r.status, 204, "DELETE with the token: {}", r.text);
    let r = request(&s, "DELETE", &format!("/api/v1/peers/{peer_id}"), None, &[("Authorization", &good)]).await;
    assert!((200..300).contains(&r.status), "DELETE peer with the token: {} {}", r.status, r.text);
}

#[actix_web::test]
async fn without_a_configured_token_no_authorization_is_needed() {
    let s = testkit::start().await;
    let (_origin, url) = origin_with_file("/open.bin").await;
    let r = post(&s, "/api/v1/peers", &peer_body("host-b", "10.0.0.2")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // an Authorization header is ignored when no token is configured
    let r = request(
        &s,
        "POST",
        "/api/v1/peers",
        Some(peer_body("host-c", "10.0.0.3").to_string()),
        &[("Authorization", "Bearer anything")],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = post(&s, "/preheats", &json!({ "type": "file", "url": url })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = post(&s, "/api/v1/tasks", &json!({ "rawURL": url })).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json()["ID"].as_str().expect("ID").to_string();
    wait_done(&s, &id, Duration::from_secs(20)).await;
    let r = request(&s, "DELETE", &format!("/api/v1/tasks/{id}"), None, &[]).await;
    assert_eq!(r.status, 204, "{}", r.text);
}
