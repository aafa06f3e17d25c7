//! Limits on what one request may ask for: body size (413), head size (431 or 400), peers,
//! tasks and clients (503), and list lengths (400); plus headers and CA certificates no
//! source client could send (400).

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::web;
use serde_json::json;
use testkit::origin::Origin;
use testkit::{config_with, dfget_body, wait_done};

use crate::{assert_error, get, origin_with_file, peer_body, post, register_and_cache, register_ok, with};

#[actix_web::test]
async fn request_bodies_over_max_body_bytes_get_413() {
    let config = config_with(|c| c.server.max_body_bytes = 1024);
    let s = testkit::start_with(config).await;
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
    let mut res = testkit::client()
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
    let s = testkit::start().await;
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
    let s = testkit::start_with(config).await;
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
    let s = testkit::start_with(config).await;
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
    let s = testkit::start_with(config).await;
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
    let s = testkit::start_with(config).await;
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
    let s = testkit::start_with(config).await;
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
    let s = testkit::start().await;

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

    let r = testkit::call(testkit::client().head(s.url("/_ping")), None).await;
    assert_eq!(r.0, 200, "HEAD /_ping for load balancers");
}
