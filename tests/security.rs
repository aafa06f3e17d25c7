//! Issue 7 item 4: security. The source-URL policy (allow/deny hosts and CIDRs, metadata
//! addresses denied by default, redirects), the `callSystem` lists, the optional bearer token
//! on the mutating operator endpoints, and the request limits (body size, header size, peers,
//! tasks, clients, list lengths). Each refusal is followed by a normal request that still works.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use common::origin::Origin;
use common::TestServer;
use common::{dfget_body, url_task_id, wait_done};
use serde_json::{json, Value};
use supernode::config::Config;

// ---------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------

fn config_with(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    f(&mut c);
    c
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

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
    let mut req = common::client().request(method, s.url(path));
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

/// The API's error shape `{"code":<status>,"message":…}` (§1.6) with the given status.
fn assert_error(r: &Reply, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text);
    let v = r.json();
    assert_eq!(v["code"], status, "{what}: error body {}", r.text);
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: error body without message: {}", r.text);
}

/// `POST /peer/registry` answered 200 with ResultInfo code 200; returns the task ID.
async fn register_ok(s: &TestServer, body: &Value) -> String {
    let r = post(s, "/peer/registry", body).await;
    assert_eq!(r.status, 200, "registration {body} → {}", r.text);
    let v = r.json();
    assert_eq!(v["code"], 200, "registration {body} → {}", r.text);
    v["data"]["taskId"].as_str().expect("taskId").to_string()
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

// ---------------------------------------------------------------------------------------
// the source policy
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn denied_cidr_refuses_registration_task_api_and_preheat_without_fetching() {
    let config = config_with(|c| c.security.source_deny = strings(&["127.0.0.0/8"]));
    let s = common::start_with(config).await;
    let (origin, url) = origin_with_file("/denied.bin").await;

    let r = post(&s, "/peer/registry", &dfget_body(&url, "127.0.0.1-1-1.000")).await;
    assert_error(&r, 403, "registration of a denied source");
    let r = post(&s, "/api/v1/tasks", &json!({ "rawURL": url })).await;
    assert_error(&r, 403, "POST /api/v1/tasks of a denied source");
    for path in ["/preheats", "/api/v1/preheats"] {
        let r = post(&s, path, &json!({ "type": "file", "url": url })).await;
        assert_error(&r, 403, &format!("POST {path} of a denied source"));
    }
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(origin.stats("/denied.bin").requests, 0, "a denied source must not be contacted");
    let r = get(&s, &format!("/api/v1/tasks/{}", url_task_id(&url))).await;
    assert_eq!(r.status, 404, "no task for a denied source: {}", r.text);
    assert_eq!(get(&s, "/_ping").await.status, 200);
}

#[actix_web::test]
async fn metadata_and_link_local_addresses_are_denied_by_default_before_connecting() {
    let s = common::start().await;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.170.2/v2/credentials",
        "http://100.100.100.200/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
    ] {
        let started = Instant::now();
        let r = post(&s, "/peer/registry", &dfget_body(url, "127.0.0.1-1-1.000")).await;
        assert_error(&r, 403, &format!("registration of {url}"));
        let r = post(&s, "/api/v1/tasks", &json!({ "rawURL": url })).await;
        assert_error(&r, 403, &format!("POST /api/v1/tasks {url}"));
        let r = post(&s, "/preheats", &json!({ "type": "file", "url": url })).await;
        assert_error(&r, 403, &format!("POST /preheats {url}"));
        // a connection attempt would take the 3 s connect timeout: the check comes first
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(1), "{url}: refused only after {elapsed:?}");
        let r = get(&s, &format!("/api/v1/tasks/{}", url_task_id(url))).await;
        assert_eq!(r.status, 404, "{url}: {}", r.text);
    }
    // ordinary sources are untouched by the default list
    let (_origin, url) = origin_with_file("/fine.bin").await;
    register_and_cache(&s, &url, "127.0.0.1-2-2.000").await;
}

/// A 127.0.0.1 origin whose every path answers `302 Location: <target>`; counts requests.
async fn redirecting_origin(target: String) -> (SocketAddr, Arc<AtomicU64>, actix_web::dev::ServerHandle) {
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let server = HttpServer::new(move || {
        let (counter, target) = (counter.clone(), target.clone());
        App::new().default_service(web::to(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let target = target.clone();
            async move { HttpResponse::Found().insert_header(("Location", target)).finish() }
        }))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(("127.0.0.1", 0))
    .expect("redirecting origin binds");
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (addr, hits, handle)
}

/// Registers a source that redirects somewhere it must not go; returns (elapsed, failure
/// reason). Panics if the download succeeds.
async fn register_refused_redirect(s: &TestServer, url: &str) -> (Duration, String) {
    let started = Instant::now();
    let r = post(s, "/peer/registry", &dfget_body(url, "127.0.0.1-1-1.000")).await;
    let v = r.json();
    let (elapsed, reason) = match (r.status, v["code"].as_i64()) {
        (200, Some(607)) | (200, Some(608)) => (started.elapsed(), v["msg"].as_str().unwrap_or("").to_string()),
        (403, _) => (started.elapsed(), v["message"].as_str().unwrap_or("").to_string()),
        (200, Some(200)) => {
            let id = v["data"]["taskId"].as_str().unwrap().to_string();
            let info = wait_done(s, &id, Duration::from_secs(15)).await;
            assert_ne!(info["cdnStatus"], "SUCCESS", "a redirect to a refused source was downloaded: {info}");
            (started.elapsed(), info["errorMsg"].as_str().unwrap_or("").to_string())
        }
        other => panic!("unexpected answer {other:?} to a redirecting source: {}", r.text),
    };
    eprintln!("{url}: refused after {elapsed:?}: {reason}");
    (elapsed, reason)
}

#[actix_web::test]
async fn redirect_to_the_metadata_address_fails_within_seconds() {
    let s = common::start().await;
    let (addr, hits, _handle) = redirecting_origin("http://169.254.169.254/x".into()).await;
    let url = format!("http://{addr}/redirect.bin");
    let (elapsed, reason) = register_refused_redirect(&s, &url).await;
    // (refused by the guarded connector, or at worst by the 3 s connect timeout)
    assert!(elapsed < Duration::from_secs(5), "a redirect to a denied address took {elapsed:?} ({reason})");
    assert!(!reason.is_empty(), "no reason given");
    assert!(hits.load(Ordering::SeqCst) >= 1, "the origin was asked");
    // the server still works
    let (_origin, ok) = origin_with_file("/after-redirect.bin").await;
    register_and_cache(&s, &ok, "127.0.0.1-2-2.000").await;
}

#[actix_web::test]
async fn redirect_to_a_denied_host_name_is_not_followed() {
    let config = config_with(|c| c.security.source_deny.push("localhost".into()));
    let s = common::start_with(config).await;
    let (target, _) = origin_with_file("/target.bin").await;
    let to = format!("http://localhost:{}/target.bin", target.addr().port());
    let (addr, hits, _handle) = redirecting_origin(to).await;
    let url = format!("http://{addr}/redirect.bin");
    let (_, reason) = register_refused_redirect(&s, &url).await;
    assert!(hits.load(Ordering::SeqCst) >= 1, "the origin was asked");
    assert_eq!(target.stats("/target.bin").requests, 0, "the denied name was contacted after a redirect ({reason})");
}

#[actix_web::test]
async fn allow_list_of_names_refuses_address_literals() {
    let config = config_with(|c| c.security.source_allow = strings(&["localhost"]));
    let s = common::start_with(config).await;
    let (origin, url) = origin_with_file("/literal.bin").await;
    let r = post(&s, "/peer/registry", &dfget_body(&url, "127.0.0.1-1-1.000")).await;
    assert_error(&r, 403, "an address literal with a names-only allow list");
    assert_eq!(origin.stats("/literal.bin").requests, 0);
    // the named host is admitted
    let by_name = format!("http://localhost:{}/literal.bin", origin.addr().port());
    register_and_cache(&s, &by_name, "127.0.0.1-2-2.000").await;
}

#[actix_web::test]
async fn redirect_outside_a_names_only_allow_list_is_not_followed() {
    let config = config_with(|c| c.security.source_allow = strings(&["localhost"]));
    let s = common::start_with(config).await;
    let (target, to) = origin_with_file("/target.bin").await;
    let (addr, hits, _handle) = redirecting_origin(to).await;
    let url = format!("http://localhost:{}/redirect.bin", addr.port());
    let (_, reason) = register_refused_redirect(&s, &url).await;
    assert!(hits.load(Ordering::SeqCst) >= 1, "the allowed origin was asked");
    assert_eq!(
        target.stats("/target.bin").requests,
        0,
        "a source outside the allow list was contacted after a redirect ({reason})"
    );
}

#[actix_web::test]
async fn allow_list_admits_only_what_it_names() {
    // an allow list without 127.0.0.1
    let config = config_with(|c| c.security.source_allow = strings(&["10.0.0.0/8"]));
    let s = common::start_with(config).await;
    let (origin, url) = origin_with_file("/allow.bin").await;
    let r = post(&s, "/peer/registry", &dfget_body(&url, "127.0.0.1-1-1.000")).await;
    assert_error(&r, 403, "a source outside the allow list");
    let r = post(&s, "/api/v1/tasks", &json!({ "rawURL": url })).await;
    assert_error(&r, 403, "POST /api/v1/tasks outside the allow list");
    assert_eq!(origin.stats("/allow.bin").requests, 0);
    drop(s);

    // an allow list naming 127.0.0.1
    let config = config_with(|c| c.security.source_allow = strings(&["127.0.0.1"]));
    let s = common::start_with(config).await;
    register_and_cache(&s, &url, "127.0.0.1-2-2.000").await;
    assert_eq!(origin.stats("/allow.bin").body_requests, 1);
    // the default deny list still applies beside an allow list
    let r = post(&s, "/peer/registry", &dfget_body("http://169.254.169.254/x", "127.0.0.1-3-3.000")).await;
    assert_error(&r, 403, "metadata address with an allow list");
}

#[actix_web::test]
async fn denied_host_name_is_refused() {
    let config = config_with(|c| c.security.source_deny = strings(&["localhost"]));
    let s = common::start_with(config).await;
    let (origin, url) = origin_with_file("/named.bin").await;
    let by_name = format!("http://localhost:{}/named.bin", origin.addr().port());
    let r = post(&s, "/peer/registry", &dfget_body(&by_name, "127.0.0.1-1-1.000")).await;
    assert_error(&r, 403, "a denied host name");
    let r = post(&s, "/api/v1/tasks", &json!({ "rawURL": by_name })).await;
    assert_error(&r, 403, "POST /api/v1/tasks of a denied host name");
    let r = post(&s, "/peer/registry", &dfget_body("http://LOCALHOST./x", "127.0.0.1-1-1.000")).await;
    assert_error(&r, 403, "a denied host name in another case, with a trailing dot");
    assert_eq!(origin.stats("/named.bin").requests, 0);
    // the same origin by address is not named by the list
    register_and_cache(&s, &url, "127.0.0.1-2-2.000").await;
}

// ---------------------------------------------------------------------------------------
// callSystem lists
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn call_system_deny_list() {
    let config = config_with(|c| c.security.call_system_deny = strings(&["bad"]));
    let s = common::start_with(config).await;
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
    let s = common::start_with(config).await;
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

fn peer_body(host: &str, ip: &str) -> Value {
    json!({ "IP": ip, "hostName": host, "port": 20001, "version": "1.0.6" })
}

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
    let s = common::start_with(config).await;
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
    let s = common::start().await;
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

// ---------------------------------------------------------------------------------------
// limits
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn request_bodies_over_max_body_bytes_get_413() {
    let config = config_with(|c| c.server.max_body_bytes = 1024);
    let s = common::start_with(config).await;
    let (_origin, url) = origin_with_file("/body.bin").await;
    let pad = "x".repeat(2000);

    let big_registration = with(dfget_body(&url, "127.0.0.1-1-1.000"), "pad", json!(pad));
    assert_error(&post(&s, "/peer/registry", &big_registration).await, 413, "/peer/registry");
    let big_peer = with(peer_body("host-a", "10.0.0.1"), "pad", json!(pad));
    assert_error(&post(&s, "/api/v1/peers", &big_peer).await, 413, "/api/v1/peers");
    let big_preheat = json!({ "type": "file", "url": url, "pad": pad });
    assert_error(&post(&s, "/preheats", &big_preheat).await, 413, "/preheats");
    let big_task = json!({ "rawURL": url, "pad": pad });
    assert_error(&post(&s, "/api/v1/tasks", &big_task).await, 413, "/api/v1/tasks");

    // the same without Content-Length (chunked): counted while read
    let chunks = futures_util::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(web::Bytes::from(vec![b' '; 600]))));
    let mut res = common::client()
        .post(s.url("/peer/registry"))
        .insert_header(("Content-Type", "application/json"))
        .send_stream(chunks)
        .await
        .expect("chunked request sent");
    assert_eq!(res.status().as_u16(), 413, "chunked body over the limit");
    let _ = res.body().await;

    // bodies under the limit still work, right after
    register_and_cache(&s, &url, "127.0.0.1-2-2.000").await;
    assert_eq!(post(&s, "/api/v1/peers", &peer_body("host-a", "10.0.0.1")).await.status, 201);
}

/// Sends `head` (a request head, CRLF-terminated) on a fresh connection; the status code, or
/// `None` when the connection was closed without an answer.
async fn raw_status(addr: SocketAddr, head: Vec<u8>) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(&head).await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 10 s (hang)");
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok())
}

#[actix_web::test]
async fn huge_request_heads_are_refused_without_5xx_or_hang() {
    let s = common::start().await;
    let addr = s.control();
    let head =
        |extra: &str| format!("GET /_ping HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n").into_bytes();

    // one 64 KiB header: actix's head buffer is 128 KiB, so this may be accepted — it must not
    // be a server error nor hang
    let status = raw_status(addr, head(&format!("X-Big: {}\r\n", "a".repeat(64 * 1024)))).await;
    let status = status.expect("an answer to a 64 KiB header");
    eprintln!("one 64 KiB header → {status}");
    assert!(status == 200 || status == 400 || status == 431, "64 KiB header → {status}");

    // a head over the limit → 431 (or 400)
    let status = raw_status(addr, head(&format!("X-Big: {}\r\n", "a".repeat(140 * 1024)))).await;
    eprintln!("one 140 KiB header → {status:?}");
    if let Some(status) = status {
        assert!(status == 431 || status == 400, "140 KiB header → {status}");
    }
    // too many header fields → 431 (or 400)
    let many: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    let status = raw_status(addr, head(&many)).await.expect("an answer to 120 headers");
    assert!(status == 431 || status == 400, "120 headers → {status}");

    // and the server answers normally right after
    assert_eq!(get(&s, "/_ping").await.status, 200);
    let (_origin, url) = origin_with_file("/head.bin").await;
    register_and_cache(&s, &url, "127.0.0.1-1-1.000").await;
}

#[actix_web::test]
async fn max_peers_refuses_new_hosts_but_known_hosts_re_register() {
    // the supernode itself is one of the three
    let config = config_with(|c| c.server.max_peers = 3);
    let s = common::start_with(config).await;
    let (_origin, url) = origin_with_file("/peers.bin").await;

    assert_eq!(post(&s, "/api/v1/peers", &peer_body("host-1", "10.0.0.1")).await.status, 201);
    assert_eq!(post(&s, "/api/v1/peers", &peer_body("host-2", "10.0.0.2")).await.status, 201);
    let r = post(&s, "/api/v1/peers", &peer_body("host-3", "10.0.0.3")).await;
    assert!(
        (400..500).contains(&r.status) || r.status == 503,
        "a third host beyond max_peers: {} {}",
        r.status,
        r.text
    );
    // a dfget on a new host is refused too, and nothing is fetched for it
    let mut body = dfget_body(&url, "10.0.0.4-1-1.000");
    body["ip"] = json!("10.0.0.4");
    body["hostName"] = json!("host-4");
    let r = post(&s, "/peer/registry", &body).await;
    assert!(
        r.status == 503 || (400..500).contains(&r.status),
        "dfget registration from a host beyond max_peers: {} {}",
        r.status,
        r.text
    );
    let r = get(&s, "/api/v1/peers?pageSize=100").await;
    assert_eq!(r.json().as_array().map(Vec::len), Some(3), "{}", r.text);

    // known hosts still re-register, also through dfget's registration
    assert_eq!(post(&s, "/api/v1/peers", &peer_body("host-1", "10.0.0.1")).await.status, 201);
    let mut body = dfget_body(&url, "10.0.0.2-1-1.000");
    body["ip"] = json!("10.0.0.2");
    body["hostName"] = json!("host-2");
    let id = register_ok(&s, &body).await;
    let info = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["cdnStatus"], "SUCCESS", "{info}");
}

#[actix_web::test]
async fn max_tasks_refuses_new_urls_while_known_ones_work() {
    let config = config_with(|c| c.tasks.max_tasks = 1);
    let s = common::start_with(config).await;
    let (origin, first) = origin_with_file("/first.bin").await;
    origin.add("/second.bin", vec![7; 3000]);
    let second = origin.url("/second.bin");

    let id = register_ok(&s, &dfget_body(&first, "127.0.0.1-1-1.000")).await;
    let r = post(&s, "/peer/registry", &dfget_body(&second, "127.0.0.1-2-2.000")).await;
    assert_error(&r, 503, "a second task beyond max_tasks");
    let r = post(&s, "/api/v1/tasks", &json!({ "rawURL": second })).await;
    assert_error(&r, 503, "POST /api/v1/tasks beyond max_tasks");
    assert_eq!(origin.stats("/second.bin").requests, 0, "nothing fetched");

    // the first task still works, for a new client too
    assert_eq!(register_ok(&s, &dfget_body(&first, "127.0.0.1-3-3.000")).await, id);
    let info = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["cdnStatus"], "SUCCESS", "{info}");
}

/// The refusal says why: the task limit, not a generic "unavailable" or "shutting down".
#[actix_web::test]
async fn max_tasks_refusal_names_the_limit() {
    let config = config_with(|c| c.tasks.max_tasks = 1);
    let s = common::start_with(config).await;
    let (origin, first) = origin_with_file("/first.bin").await;
    origin.add("/second.bin", vec![7; 3000]);
    let second = origin.url("/second.bin");
    register_ok(&s, &dfget_body(&first, "127.0.0.1-1-1.000")).await;
    let r = post(&s, "/peer/registry", &dfget_body(&second, "127.0.0.1-2-2.000")).await;
    let r2 = post(&s, "/api/v1/tasks", &json!({ "rawURL": second })).await;
    for (what, r) in [("/peer/registry", r), ("POST /api/v1/tasks", r2)] {
        assert_error(&r, 503, what);
        let m = r.json()["message"].as_str().unwrap_or("").to_ascii_lowercase();
        assert!(
            (m.contains("task") && (m.contains("limit") || m.contains("too many"))) && !m.contains("shutting down"),
            "{what}: the message should name the task limit: {}",
            r.text
        );
    }
}

#[actix_web::test]
async fn max_clients_refuses_another_client() {
    let config = config_with(|c| c.scheduler.max_clients = 1);
    let s = common::start_with(config).await;
    let (_origin, url) = origin_with_file("/clients.bin").await;

    let id = register_ok(&s, &dfget_body(&url, "127.0.0.1-1-1.000")).await;
    let r = post(&s, "/peer/registry", &dfget_body(&url, "127.0.0.1-2-2.000")).await;
    assert!(
        r.status == 503 || (r.status == 200 && r.json()["code"] != 200),
        "a second client beyond max_clients: {} {}",
        r.status,
        r.text
    );
    // the first client re-registers and is scheduled
    assert_eq!(register_ok(&s, &dfget_body(&url, "127.0.0.1-1-1.000")).await, id);
    let info = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["cdnStatus"], "SUCCESS", "{info}");
    let r =
        get(&s, &format!("/peer/task?srcCid=127.0.0.1-1-1.000&dstCid=&range=&result=502&status=700&taskId={id}")).await;
    assert_eq!(r.json()["code"], 601, "{}", r.text);
}

#[actix_web::test]
async fn lists_longer_than_max_list_len_get_400() {
    let config = config_with(|c| c.security.max_list_len = 2);
    let s = common::start_with(config).await;
    let (origin, url) = origin_with_file("/lists.bin").await;

    // registration headers and rootCAs
    let three = json!(["X-A: 1", "X-B: 2", "X-C: 3"]);
    let r = post(&s, "/peer/registry", &with(dfget_body(&url, "127.0.0.1-1-1.000"), "headers", three)).await;
    assert_eq!(r.status, 400, "3 headers: {}", r.text);
    let r = post(
        &s,
        "/peer/registry",
        &with(dfget_body(&url, "127.0.0.1-1-1.000"), "rootCAs", json!(["YQ==", "Yg==", "Yw=="])),
    )
    .await;
    assert_eq!(r.status, 400, "3 rootCAs: {}", r.text);
    assert_eq!(origin.stats("/lists.bin").requests, 0);
    let two = json!(["X-A: 1", "X-B: 2"]);
    register_ok(&s, &with(dfget_body(&url, "127.0.0.1-2-2.000"), "headers", two)).await;

    // /peer/network urls
    let r = post(&s, "/peer/network", &json!({ "urls": ["http://a/1", "http://a/2", "http://a/3"] })).await;
    assert_error(&r, 400, "/peer/network with 3 urls");
    let r = post(&s, "/peer/network", &json!({ "urls": ["http://a/1", "http://a/2"] })).await;
    assert_eq!(r.status, 200, "/peer/network with 2 urls: {}", r.text);

    // GET /api/v1/peers sortKey
    let r = get(&s, "/api/v1/peers?pageSize=10&sortKey=ID&sortKey=IP&sortKey=port").await;
    assert_error(&r, 400, "3 sortKey");
    let r = get(&s, "/api/v1/peers?pageSize=10&sortKey=ID&sortKey=IP").await;
    assert_eq!(r.status, 200, "2 sortKey: {}", r.text);

    // POST /api/v1/tasks filter and headers
    let r = post(&s, "/api/v1/tasks", &json!({ "rawURL": url, "filter": ["a", "b", "c"] })).await;
    assert_error(&r, 400, "3 filter keys");
    let r =
        post(&s, "/api/v1/tasks", &json!({ "rawURL": url, "headers": { "X-A": "1", "X-B": "2", "X-C": "3" } })).await;
    assert_error(&r, 400, "3 task headers");
    let r = post(&s, "/api/v1/tasks", &json!({ "rawURL": url, "filter": ["a", "b"] })).await;
    assert_eq!(r.status, 201, "2 filter keys: {}", r.text);

    // preheat headers
    let r = post(
        &s,
        "/preheats",
        &json!({ "type": "file", "url": url, "headers": { "X-A": "1", "X-B": "2", "X-C": "3" } }),
    )
    .await;
    assert_error(&r, 400, "3 preheat headers");
}

/// Origin headers and CA certificates a source client could never send are bad input (400),
/// not a source failure, and they never reach (or replace) a shared task's stored headers.
#[actix_web::test]
async fn unsendable_headers_and_bad_root_cas_are_400() {
    let origin = Origin::start().await;
    origin.add_generated("/h.bin", 5, 1000);
    let url = origin.url("/h.bin");
    let s = common::start().await;

    let ok = post(&s, "/peer/registry", &dfget_body(&url, "127.0.0.1-9-1.000")).await;
    assert_eq!(ok.json()["code"], 200, "{}", ok.text);
    let task_id = ok.json()["data"]["taskId"].as_str().unwrap_or_default().to_string();

    for headers in [json!(["Bad Name: x"]), json!(["X-Ok: a\u{1}b"])] {
        let mut body = dfget_body(&url, "127.0.0.1-9-2.000");
        body["headers"] = headers.clone();
        let r = post(&s, "/peer/registry", &body).await;
        assert_eq!(r.status, 400, "{headers}: {}", r.text);
        assert_eq!(r.json()["code"], 501, "{}", r.text);
        assert!(r.text.contains("headers"), "{}", r.text);
    }
    let info = get(&s, &format!("/api/v1/tasks/{task_id}")).await.json();
    assert!(info.get("headers").is_none(), "stored headers untouched: {info}");

    let mut body = dfget_body(&url, "127.0.0.1-9-3.000");
    body["rootCAs"] = json!(["AAAA"]);
    let r = post(&s, "/peer/registry", &body).await;
    assert_eq!((r.status, r.json()["code"].clone()), (400, json!(501)), "{}", r.text);
    assert!(r.text.contains("rootCAs"), "{}", r.text);

    let r = post(&s, "/api/v1/tasks", &json!({"rawURL": url, "headers": {"bad name": "v"}})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = post(&s, "/preheats", &json!({"type": "file", "url": url, "headers": {"bad name": "v"}})).await;
    assert_eq!(r.status, 400, "{}", r.text);

    let r = common::call(common::client().head(s.url("/_ping")), None).await;
    assert_eq!(r.0, 200, "HEAD /_ping for load balancers");
}
