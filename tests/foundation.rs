//! Foundation: system routes (§3.8), router fallbacks (§1.2, §1.3) and the peers API
//! (§4.1 as amended by §16 P6, P11, P14), against a real in-process server.

mod common;

use std::collections::BTreeSet;

use serde_json::Value;

// ---------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------

async fn get(s: &common::TestServer, path: &str) -> (u16, String) {
    common::call(common::client().get(s.url(path)), None).await
}

async fn post_peer(s: &common::TestServer, body: &str) -> (u16, String) {
    common::call(common::client().post(s.url("/api/v1/peers")), Some(body)).await
}

/// Registers a peer and returns its ID (asserting 201).
async fn create_peer(s: &common::TestServer, host: &str, ip: &str, port: u16) -> String {
    let body = format!(r#"{{"IP":"{ip}","hostName":"{host}","port":{port},"version":"1.0.6"}}"#);
    let (status, reply) = post_peer(s, &body).await;
    assert_eq!(status, 201, "POST {body} → {reply}");
    let v = common::json(&reply);
    let id = v["ID"].as_str().unwrap_or_else(|| panic!("no ID in {reply}")).to_string();
    assert_eq!(id, format!("{host}-{ip}"), "{reply}");
    id
}

async fn list(s: &common::TestServer, query: &str) -> Vec<Value> {
    let (status, body) = get(s, &format!("/api/v1/peers?{query}")).await;
    assert_eq!(status, 200, "GET /api/v1/peers?{query} → {body}");
    match common::json(&body) {
        Value::Array(a) => a,
        other => panic!("not an array: {other}"),
    }
}

fn ids(peers: &[Value]) -> Vec<String> {
    peers.iter().map(|p| p["ID"].as_str().expect("ID").to_string()).collect()
}

/// The super peer (the supernode itself): the one whose ID ends in `-supernode`.
async fn super_peer(s: &common::TestServer) -> Value {
    let all = list(s, "pageSize=0").await;
    let supers: Vec<&Value> = all.iter().filter(|p| p["ID"].as_str().unwrap_or("").ends_with("-supernode")).collect();
    assert_eq!(supers.len(), 1, "exactly one super peer expected in {all:?}");
    supers[0].clone()
}

/// 400 with `{"code":400,"message":...}`; the message names `field` when given.
fn assert_bad_request(status: u16, body: &str, field: Option<&str>, what: &str) {
    assert_eq!(status, 400, "{what}: expected 400, got {status} {body}");
    let v = common::json(body);
    assert_eq!(v["code"], 400, "{what}: {body}");
    let message = v["message"].as_str().unwrap_or_else(|| panic!("{what}: no message in {body}"));
    assert!(!message.is_empty(), "{what}: empty message");
    if let Some(field) = field {
        assert!(message.contains(field), "{what}: message {message:?} does not name {field:?}");
    }
}

/// RFC 3339 with exactly 3 fractional digits and an explicit zone (`Z` or `±HH:MM`).
fn assert_rfc3339_millis(s: &str) {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let ok = b.len() >= 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && match &s[23..] {
            "Z" => true,
            zone => {
                let z = zone.as_bytes();
                z.len() == 6
                    && (z[0] == b'+' || z[0] == b'-')
                    && z[1..3].iter().all(u8::is_ascii_digit)
                    && z[3] == b':'
                    && z[4..6].iter().all(u8::is_ascii_digit)
            }
        };
    assert!(ok, "created {s:?} is not RFC 3339 with 3 fractional digits");
}

// ---------------------------------------------------------------------------------------
// system routes and router fallbacks
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn ping_answers_ok() {
    let s = common::start().await;
    let res = common::client().get(s.url("/_ping")).send().await.expect("sent");
    let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(ct.as_deref(), Some("text/plain; charset=utf-8"));
    let (status, body) = get(&s, "/_ping").await;
    assert_eq!((status, body.as_str()), (200, "OK"));
}

#[actix_web::test]
async fn version_has_go_keys() {
    let s = common::start().await;
    let mut res = common::client().get(s.url("/version")).send().await.expect("sent");
    assert_eq!(res.status().as_u16(), 200);
    let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(ct.as_deref(), Some("application/json"));
    let body = res.body().await.expect("body");
    let v: Value = serde_json::from_slice(&body).expect("JSON");
    let obj = v.as_object().expect("object");
    let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
    let mut required: BTreeSet<&str> = ["Version", "BuildDate", "GoVersion", "OS", "Arch"].into();
    assert!(required.is_subset(&keys), "missing keys in {v}");
    required.insert("Revision");
    assert!(keys.is_subset(&required), "unexpected keys in {v}");
    for (k, val) in obj {
        let text = val.as_str().unwrap_or_else(|| panic!("{k} is not a string in {v}"));
        assert!(!text.is_empty(), "{k} is empty in {v}");
    }
    // Version is the release number without a leading `v`.
    assert!(!obj["Version"].as_str().unwrap().starts_with('v'), "{v}");
    // BuildDate: YYYYMMDD-HH:MM:SS (§3.8, §10.2).
    let date = obj["BuildDate"].as_str().unwrap().as_bytes();
    let shape_ok = date.len() == 17
        && date[..8].iter().all(u8::is_ascii_digit)
        && date[8] == b'-'
        && date[9..11].iter().all(u8::is_ascii_digit)
        && date[11] == b':'
        && date[12..14].iter().all(u8::is_ascii_digit)
        && date[14] == b':'
        && date[15..17].iter().all(u8::is_ascii_digit);
    assert!(shape_ok, "BuildDate {:?} is not YYYYMMDD-HH:MM:SS", obj["BuildDate"]);
}

#[actix_web::test]
async fn metrics_count_requests_by_route_template() {
    let s = common::start().await;
    assert_eq!(get(&s, "/_ping").await.0, 200);
    assert_eq!(get(&s, "/v1.24/_ping").await.0, 200);
    let id = create_peer(&s, "metrics-host", "10.9.0.1", 20000).await;
    assert_eq!(get(&s, &format!("/api/v1/peers/{id}")).await.0, 200);
    assert_eq!(get(&s, "/no/such/path").await.0, 404);

    let (status, text) = get(&s, "/metrics").await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("dragonfly_supernode_http_requests_total{")).collect();
    assert!(!lines.is_empty(), "no dragonfly_supernode_http_requests_total samples:\n{text}");
    let has = |handler: &str, code: &str| {
        lines.iter().any(|l| l.contains(&format!("handler=\"{handler}\"")) && l.contains(&format!("code=\"{code}\"")))
    };
    assert!(has("/_ping", "200"), "no /_ping sample:\n{}", lines.join("\n"));
    assert!(has("/api/v1/peers", "201"), "no POST /api/v1/peers sample:\n{}", lines.join("\n"));
    assert!(has("/api/v1/peers/{id}", "200"), "handler must be the route template:\n{}", lines.join("\n"));
    // Two pings (one versioned) count under the unversioned handler name.
    let ping_line = lines.iter().find(|l| l.contains("handler=\"/_ping\"") && l.contains("code=\"200\"")).unwrap();
    let count: f64 = ping_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 2.0, "{ping_line}");
    assert!(!lines.iter().any(|l| l.contains("/v1.24")), "versioned handler label:\n{}", lines.join("\n"));
    assert!(!lines.iter().any(|l| l.contains(&id)), "raw peer ID used as a label:\n{}", lines.join("\n"));
    assert!(text.contains("dragonfly_supernode_build_info{"), "no build_info:\n{text}");
    if cfg!(target_os = "linux") {
        assert!(text.lines().any(|l| l.starts_with("process_")), "no process_ metrics:\n{text}");
    }
}

#[actix_web::test]
async fn version_prefix_reaches_the_same_routes() {
    let s = common::start().await;
    let (status, body) = get(&s, "/v1.24/_ping").await;
    assert_eq!((status, body.as_str()), (200, "OK"));
    let (status, body) = get(&s, "/v1.0/api/v1/peers?pageSize=0").await;
    assert_eq!(status, 200, "{body}");
    let peers = common::json(&body);
    assert!(peers.as_array().is_some_and(|a| !a.is_empty()), "{body}");
    // POST through a prefix too.
    let (status, body) = common::call(
        common::client().post(s.url("/v1.24/api/v1/peers")),
        Some(r#"{"IP":"10.8.0.1","hostName":"pfx","port":20000}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(common::json(&body)["ID"], "pfx-10.8.0.1");
    let (status, _) = get(&s, "/v1.24/api/v1/peers/pfx-10.8.0.1").await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn unknown_path_is_go_404() {
    let s = common::start().await;
    for path in ["/nope", "/api/v1/nope", "/api/v1/peers/a/b", "/vx/_ping", "/v1.24/nope"] {
        let res = common::client().get(s.url(path)).send().await.expect("sent");
        let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(ct.as_deref(), Some("text/plain; charset=utf-8"), "{path}");
        let (status, body) = get(&s, path).await;
        assert_eq!((status, body.as_str()), (404, "404 page not found\n"), "{path}");
    }
}

#[actix_web::test]
async fn wrong_method_is_405() {
    let s = common::start().await;
    let c = common::client();
    let (status, body) = common::call(c.put(s.url("/api/v1/peers")), Some("{}")).await;
    assert_eq!(status, 405, "{body}");
    let (status, _) = common::call(c.post(s.url("/_ping")), Some("{}")).await;
    assert_eq!(status, 405);
    let (status, _) = common::call(c.put(s.url("/api/v1/peers/x-1.2.3.4")), Some("{}")).await;
    assert_eq!(status, 405);
}

// ---------------------------------------------------------------------------------------
// POST /api/v1/peers
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn create_peer_returns_stable_id() {
    let s = common::start().await;
    let mut res = common::client()
        .post(s.url("/api/v1/peers"))
        .insert_header(("Content-Type", "application/json"))
        .send_body(r#"{"IP":"10.0.0.5","hostName":"hosta","port":20001,"version":"1.0.6"}"#)
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 201);
    let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(ct.as_deref(), Some("application/json"));
    let body = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    assert_eq!(body, "{\"ID\":\"hosta-10.0.0.5\"}\n");

    let (status, body) = get(&s, "/api/v1/peers/hosta-10.0.0.5").await;
    assert_eq!(status, 200, "{body}");
    let p = common::json(&body);
    assert_eq!(p["port"], 20001);
    let created = p["created"].as_str().unwrap().to_string();

    // Same host again: same ID, still 201, port and version updated, created kept.
    let (status, body) = post_peer(&s, r#"{"IP":"10.0.0.5","hostName":"hosta","port":20002,"version":"1.0.7"}"#).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(common::json(&body)["ID"], "hosta-10.0.0.5");
    let (_, body) = get(&s, "/api/v1/peers/hosta-10.0.0.5").await;
    let p = common::json(&body);
    assert_eq!(p["port"], 20002, "{body}");
    assert_eq!(p["version"], "1.0.7", "{body}");
    assert_eq!(p["created"], created.as_str(), "{body}");

    // Only one entry for it (plus the super peer).
    let all = list(&s, "pageSize=0").await;
    assert_eq!(ids(&all).iter().filter(|id| *id == "hosta-10.0.0.5").count(), 1);
    assert_eq!(all.len(), 2, "{all:?}");

    // Same host name, other IP: another peer.
    create_peer(&s, "hosta", "10.0.0.6", 20001).await;
    assert_eq!(list(&s, "pageSize=0").await.len(), 3);
}

#[actix_web::test]
async fn create_peer_keys_are_case_insensitive() {
    let s = common::start().await;
    let (status, body) =
        post_peer(&s, r#"{"ip":"10.0.0.7","HOSTNAME":"case-host","Port":20000,"VERSION":"1.0.6","other":1}"#).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(common::json(&body)["ID"], "case-host-10.0.0.7");
    let (status, body) = get(&s, "/api/v1/peers/case-host-10.0.0.7").await;
    assert_eq!(status, 200, "{body}");
    let p = common::json(&body);
    assert_eq!(p["IP"], "10.0.0.7");
    assert_eq!(p["hostName"], "case-host");
    assert_eq!(p["port"], 20000);
    assert_eq!(p["version"], "1.0.6");
    // An exact-case key wins over a case-folded one.
    let (status, body) = post_peer(&s, r#"{"Ip":"10.0.0.99","IP":"10.0.0.8","hostName":"exact","port":20000}"#).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(common::json(&body)["ID"], "exact-10.0.0.8");
    // Trailing bytes after the first JSON value are ignored (§1.4 rule 4).
    let (status, body) = post_peer(&s, r#"{"IP":"10.0.0.9","hostName":"trail","port":20000} garbage"#).await;
    assert_eq!(status, 201, "{body}");
}

#[actix_web::test]
async fn create_peer_validates_ip() {
    let s = common::start().await;
    for ip in ["1.2.3", "::1", "abc", "", "256.1.1.1", "1.2.3.4.5"] {
        let body = format!(r#"{{"IP":"{ip}","hostName":"h","port":20000}}"#);
        let (status, reply) = post_peer(&s, &body).await;
        assert_bad_request(status, &reply, Some("IP"), &body);
    }
    let body = r#"{"hostName":"h","port":20000}"#;
    let (status, reply) = post_peer(&s, body).await;
    assert_bad_request(status, &reply, Some("IP"), "missing IP");
    let body = r#"{"IP":null,"hostName":"h","port":20000}"#;
    let (status, reply) = post_peer(&s, body).await;
    assert_bad_request(status, &reply, Some("IP"), "null IP");
    // Nothing was registered.
    assert_eq!(list(&s, "pageSize=0").await.len(), 1);
}

#[actix_web::test]
async fn create_peer_validates_hostname() {
    let s = common::start().await;
    for host in ["h_x", "a-", "-a", "Höst", "", "a..b", "a b"] {
        let body = format!(r#"{{"IP":"10.0.0.1","hostName":"{host}","port":20000}}"#);
        let (status, reply) = post_peer(&s, &body).await;
        assert_bad_request(status, &reply, Some("hostName"), &body);
    }
    let body = format!(r#"{{"IP":"10.0.0.1","hostName":"{}","port":20000}}"#, "x".repeat(64));
    let (status, reply) = post_peer(&s, &body).await;
    assert_bad_request(status, &reply, Some("hostName"), "64-character label");
    for host in ["host-a", "ab", "a.b-c.example", "1host", "a"] {
        let body = format!(r#"{{"IP":"10.0.0.1","hostName":"{host}","port":20000}}"#);
        let (status, reply) = post_peer(&s, &body).await;
        assert_eq!(status, 201, "{body} → {reply}");
        assert_eq!(common::json(&reply)["ID"], format!("{host}-10.0.0.1").as_str());
    }
}

#[actix_web::test]
async fn create_peer_validates_port() {
    let s = common::start().await;
    for port in ["14999", "65001", "0", "-1", "70000"] {
        let body = format!(r#"{{"IP":"10.0.0.1","hostName":"h","port":{port}}}"#);
        let (status, reply) = post_peer(&s, &body).await;
        assert_bad_request(status, &reply, Some("port"), &body);
    }
    let (status, reply) = post_peer(&s, r#"{"IP":"10.0.0.1","hostName":"h"}"#).await;
    assert_bad_request(status, &reply, Some("port"), "missing port");
    for (host, port) in [("low", 15000), ("high", 65000)] {
        let id = create_peer(&s, host, "10.0.0.1", port).await;
        let (status, body) = get(&s, &format!("/api/v1/peers/{id}")).await;
        assert_eq!(status, 200);
        assert_eq!(common::json(&body)["port"], port);
    }
}

#[actix_web::test]
async fn create_peer_rejects_malformed_bodies() {
    let s = common::start().await;
    let cases: &[(&str, Option<&str>)] = &[
        ("{", None),
        (r#"{"IP":"10.0.0.1","hostName":"h","port":"20000"}"#, Some("port")),
        (r#"{"IP":"10.0.0.1","hostName":"h","port":1.5}"#, Some("port")),
        (r#"{"IP":5,"hostName":"h","port":20000}"#, Some("IP")),
        (r#"{"IP":"10.0.0.1","hostName":7,"port":20000}"#, Some("hostName")),
        (r#"{"IP":"10.0.0.1","hostName":"h","port":true}"#, Some("port")),
        ("[1]", None),
        ("\"text\"", None),
        ("42", None),
        ("", None),
        ("   \n", None),
        ("not json", None),
    ];
    for (body, field) in cases {
        let (status, reply) = post_peer(&s, body).await;
        assert_bad_request(status, &reply, *field, &format!("body {body:?}"));
    }
    // No body at all (no Content-Type either).
    let (status, reply) = common::call(common::client().post(s.url("/api/v1/peers")), None).await;
    assert_bad_request(status, &reply, None, "no body");
    assert_eq!(list(&s, "pageSize=0").await.len(), 1);
}

fn padded_body(total: usize) -> String {
    let mut body = String::from(r#"{"IP":"10.0.0.1","hostName":"big","port":20000}"#);
    assert!(body.len() <= total);
    body.push_str(&" ".repeat(total - body.len()));
    body
}

#[actix_web::test]
async fn create_peer_body_limit() {
    let s = common::start().await;
    // Exactly 1 MiB is accepted (trailing whitespace after the JSON value).
    let (status, reply) = post_peer(&s, &padded_body(1024 * 1024)).await;
    assert_eq!(status, 201, "{reply}");
    // One byte more is refused with 413 (the JSON error shape).
    let (status, reply) = post_peer(&s, &padded_body(1024 * 1024 + 1)).await;
    assert_eq!(status, 413, "{reply}");
    assert_eq!(common::json(&reply)["code"], 413, "{reply}");
    // Well over the limit.
    let (status, _) = post_peer(&s, &padded_body(2 * 1024 * 1024)).await;
    assert_eq!(status, 413);
}

#[actix_web::test]
async fn create_peer_body_limit_chunked() {
    let s = common::start().await;
    // No Content-Length: the limit applies while reading.
    let chunk = web_bytes(&" ".repeat(64 * 1024));
    let mut chunks: Vec<Result<actix_web::web::Bytes, std::io::Error>> =
        vec![Ok(web_bytes(r#"{"IP":"10.0.0.1","hostName":"big","port":20000}"#))];
    for _ in 0..20 {
        chunks.push(Ok(chunk.clone()));
    }
    let stream = futures_util::stream::iter(chunks);
    let res = common::client()
        .post(s.url("/api/v1/peers"))
        .insert_header(("Content-Type", "application/json"))
        .send_stream(stream)
        .await;
    match res {
        Ok(mut res) => {
            assert_eq!(res.status().as_u16(), 413);
            let _ = res.body().await;
        }
        // The server may close the connection after answering 413 mid-upload; the request must
        // not have registered the peer in any case.
        Err(e) => eprintln!("chunked upload ended with {e}"),
    }
    let (status, _) = get(&s, "/api/v1/peers/big-10.0.0.1").await;
    assert_eq!(status, 404);
}

fn web_bytes(s: &str) -> actix_web::web::Bytes {
    actix_web::web::Bytes::copy_from_slice(s.as_bytes())
}

// ---------------------------------------------------------------------------------------
// GET /api/v1/peers
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn list_peers_validates_query() {
    let s = common::start().await;
    let cases: &[(&str, &str)] = &[
        ("", "pageSize"),
        ("pageNum=0", "pageSize"),
        ("pageSize=-1", "pageSize"),
        ("pageSize=abc", "pageSize"),
        ("pageSize=1.5", "pageSize"),
        ("pageSize=", "pageSize"),
        ("pageSize=2&pageNum=abc", "pageNum"),
        ("pageSize=2&pageNum=-1", "pageNum"),
        ("pageSize=2&sortDirect=up", "sortDirect"),
        ("pageSize=2&sortKey=bogus", "sortKey"),
        ("pageSize=2&sortKey=port&sortKey=bogus", "sortKey"),
    ];
    for (query, field) in cases {
        let (status, body) = get(&s, &format!("/api/v1/peers?{query}")).await;
        assert_bad_request(status, &body, Some(field), &format!("query {query:?}"));
    }
    let (status, body) = get(&s, "/api/v1/peers").await;
    assert_bad_request(status, &body, Some("pageSize"), "no query string");
    // Valid forms.
    for query in [
        "pageSize=0",
        "pageSize=10&pageNum=0",
        "pageSize=0&sortDirect=desc",
        "pageSize=0&sortDirect=Asc",
        "pageSize=0&sortKey=ID",
    ] {
        list(&s, query).await;
    }
}

#[actix_web::test]
async fn list_peers_pagination() {
    let s = common::start().await;
    let super_id = super_peer(&s).await["ID"].as_str().unwrap().to_string();
    let mut created = vec![super_id.clone()];
    for i in 1..=5 {
        created.push(create_peer(&s, &format!("page{i}"), &format!("10.1.0.{i}"), 20000 + i as u16).await);
    }
    // Default order: created ascending (the super peer registered first).
    let all = list(&s, "pageSize=0").await;
    assert_eq!(ids(&all), created);
    assert_eq!(ids(&list(&s, "pageSize=0&pageNum=3").await), created, "pageSize=0 is all, whatever pageNum");
    assert_eq!(ids(&list(&s, "pageSize=2").await), created[0..2], "pageNum defaults to 0");
    assert_eq!(ids(&list(&s, "pageSize=2&pageNum=0").await), created[0..2]);
    assert_eq!(ids(&list(&s, "pageSize=2&pageNum=1").await), created[2..4]);
    assert_eq!(ids(&list(&s, "pageSize=2&pageNum=2").await), created[4..6]);
    assert!(list(&s, "pageSize=2&pageNum=3").await.is_empty());
    assert!(list(&s, "pageSize=2&pageNum=9").await.is_empty());
    assert_eq!(ids(&list(&s, "pageSize=4&pageNum=1").await), created[4..6], "a partial last page");
    assert_eq!(ids(&list(&s, "pageSize=100").await), created);
    // DESC pages over the reversed order.
    let reversed: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(ids(&list(&s, "pageSize=2&pageNum=0&sortDirect=DESC").await), reversed[0..2]);
    assert_eq!(ids(&list(&s, "pageSize=2&pageNum=2&sortDirect=DESC").await), reversed[4..6]);
    // An empty page is `[]`, not null.
    let (_, body) = get(&s, "/api/v1/peers?pageSize=2&pageNum=9").await;
    assert_eq!(body.trim_end(), "[]");
}

#[actix_web::test]
async fn list_peers_multi_key_sort() {
    let s = common::start().await;
    for (host, ip, port) in [
        ("b-host", "10.2.0.1", 20000),
        ("a-host", "10.2.0.2", 20000),
        ("c-host", "10.2.0.3", 15000),
        ("a-host", "10.2.0.4", 30000),
        ("d-host", "10.2.0.5", 20000),
    ] {
        create_peer(&s, host, ip, port).await;
    }
    let sp = super_peer(&s).await;
    let super_id = sp["ID"].as_str().unwrap().to_string();
    let clients = |v: Vec<Value>| ids(&v).into_iter().filter(|id| *id != super_id).collect::<Vec<_>>();

    // port, then hostName (later keys break ties).
    let by_port_host = ["c-host-10.2.0.3", "a-host-10.2.0.2", "b-host-10.2.0.1", "d-host-10.2.0.5", "a-host-10.2.0.4"];
    let asc = list(&s, "pageSize=0&sortKey=port&sortKey=hostName&sortDirect=ASC").await;
    assert_eq!(clients(asc.clone()), by_port_host);
    let desc = list(&s, "pageSize=0&sortKey=port&sortKey=hostName&sortDirect=DESC").await;
    let rev: Vec<&str> = by_port_host.iter().rev().copied().collect();
    assert_eq!(clients(desc.clone()), rev);
    assert_eq!(clients(list(&s, "pageSize=0&sortKey=port&sortKey=hostName&sortDirect=desc").await), rev);
    assert_eq!(clients(list(&s, "pageSize=0&sortKey=port&sortKey=hostName").await), by_port_host, "ASC is the default");

    // The full order, super peer included, is exactly (port, hostName) with its own values.
    let mut expected: Vec<(u64, String, String)> = asc
        .iter()
        .map(|p| {
            (
                p["port"].as_u64().unwrap_or(0),
                p["hostName"].as_str().unwrap_or("").to_string(),
                p["ID"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    expected.sort();
    let expected_ids: Vec<String> = expected.into_iter().map(|t| t.2).collect();
    assert_eq!(ids(&asc), expected_ids);
    let expected_rev: Vec<String> = expected_ids.iter().rev().cloned().collect();
    assert_eq!(ids(&desc), expected_rev);

    // Key order matters: hostName first, then port.
    let by_host_port = ["a-host-10.2.0.2", "a-host-10.2.0.4", "b-host-10.2.0.1", "c-host-10.2.0.3", "d-host-10.2.0.5"];
    assert_eq!(clients(list(&s, "pageSize=0&sortKey=hostName&sortKey=port").await), by_host_port);
    // Sort keys are PeerInfo's wire names; IP compares as an address.
    let by_ip = ["b-host-10.2.0.1", "a-host-10.2.0.2", "c-host-10.2.0.3", "a-host-10.2.0.4", "d-host-10.2.0.5"];
    assert_eq!(clients(list(&s, "pageSize=0&sortKey=IP").await), by_ip);
    // Sorting happens before paging.
    let page = list(&s, "pageSize=2&pageNum=1&sortKey=port&sortKey=hostName&sortDirect=DESC").await;
    assert_eq!(ids(&page), expected_rev[2..4]);
}

#[actix_web::test]
async fn peer_info_shape() {
    let s = common::start().await;
    let id = create_peer(&s, "shape", "10.3.0.1", 20000).await;
    let (status, body) = get(&s, &format!("/api/v1/peers/{id}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with("}\n"), "one trailing newline: {body:?}");
    let p = common::json(&body);
    let keys: BTreeSet<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["ID", "IP", "created", "hostName", "port", "version"].into());
    assert_eq!(p["ID"], id.as_str());
    assert_eq!(p["IP"], "10.3.0.1");
    assert_eq!(p["hostName"], "shape");
    assert_eq!(p["port"], 20000);
    assert_eq!(p["version"], "1.0.6");
    assert_rfc3339_millis(p["created"].as_str().unwrap());
    // The list carries the same objects.
    let all = list(&s, "pageSize=0").await;
    let listed = all.iter().find(|q| q["ID"] == id.as_str()).expect("listed");
    assert_eq!(listed, &p);
    for q in &all {
        assert_rfc3339_millis(q["created"].as_str().expect("created"));
    }
    // The super peer: advertise IP, no version (omitted when empty).
    let sp = super_peer(&s).await;
    assert_eq!(sp["IP"], "127.0.0.1");
    assert!(sp.get("version").is_none() || sp["version"].as_str().is_some_and(|v| !v.is_empty()), "{sp}");
}

// ---------------------------------------------------------------------------------------
// GET / DELETE /api/v1/peers/{id}
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn get_unknown_peer_is_404_json() {
    let s = common::start().await;
    let (status, body) = get(&s, "/api/v1/peers/nope-10.0.0.1").await;
    assert_eq!(status, 404, "{body}");
    let v = common::json(&body);
    assert_eq!(v["code"], 404, "{body}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

#[actix_web::test]
async fn delete_peer() {
    let s = common::start().await;
    let c = common::client();
    let id = create_peer(&s, "gone", "10.4.0.1", 20000).await;
    let keep = create_peer(&s, "kept", "10.4.0.2", 20000).await;
    let (status, body) = common::call(c.delete(s.url(&format!("/api/v1/peers/{id}"))), None).await;
    assert_eq!((status, body.as_str()), (204, ""));
    let (status, body) = get(&s, &format!("/api/v1/peers/{id}")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(common::json(&body)["code"], 404);
    assert!(!ids(&list(&s, "pageSize=0").await).contains(&id));
    assert_eq!(get(&s, &format!("/api/v1/peers/{keep}")).await.0, 200);
    // Again: unknown now.
    let (status, body) = common::call(c.delete(s.url(&format!("/api/v1/peers/{id}"))), None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(common::json(&body)["code"], 404, "{body}");
    let (status, body) = common::call(c.delete(s.url("/api/v1/peers/never-10.9.9.9")), None).await;
    assert_eq!(status, 404, "{body}");
    // The host can register again after a delete.
    assert_eq!(create_peer(&s, "gone", "10.4.0.1", 20001).await, id);
}

#[actix_web::test]
async fn super_peer_cannot_be_deleted() {
    let s = common::start().await;
    let sp = super_peer(&s).await;
    let id = sp["ID"].as_str().unwrap().to_string();
    assert!(id.ends_with("-127.0.0.1-supernode"), "{id}");
    let (status, body) = common::call(common::client().delete(s.url(&format!("/api/v1/peers/{id}"))), None).await;
    assert!((400..500).contains(&status), "deleting the super peer: {status} {body}");
    assert_ne!(status, 404, "{body}");
    let v = common::json(&body);
    assert_eq!(v["code"], status, "{body}");
    let (status, _) = get(&s, &format!("/api/v1/peers/{id}")).await;
    assert_eq!(status, 200, "the super peer is still there");
    // A registration cannot produce the super peer's ID (P6): a dfget on the same host is a
    // separate peer.
    let host = sp["hostName"].as_str().unwrap_or("").to_string();
    if !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        let own = create_peer(&s, &host, "127.0.0.1", 20000).await;
        assert_ne!(own, id);
        assert_eq!(list(&s, "pageSize=0").await.len(), 2);
    }
}
