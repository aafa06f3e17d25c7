//! `POST /api/v1/peers`: the stable `<hostName>-<IP>` ID, case-insensitive keys, the IP, host
//! name and port rules, malformed bodies and the 1 MiB body limit.

use testkit::get;

use crate::{assert_bad_request, create_peer, ids, list, post_peer};

#[actix_web::test]
async fn create_peer_returns_stable_id() {
    let s = testkit::start().await;
    let mut res = testkit::client()
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
    let p = testkit::json(&body);
    assert_eq!(p["port"], 20001);
    let created = p["created"].as_str().unwrap().to_string();

    // Same host again: same ID, still 201, port and version updated, created kept.
    let (status, body) = post_peer(&s, r#"{"IP":"10.0.0.5","hostName":"hosta","port":20002,"version":"1.0.7"}"#).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(testkit::json(&body)["ID"], "hosta-10.0.0.5");
    let (_, body) = get(&s, "/api/v1/peers/hosta-10.0.0.5").await;
    let p = testkit::json(&body);
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
    let s = testkit::start().await;
    let (status, body) =
        post_peer(&s, r#"{"ip":"10.0.0.7","HOSTNAME":"case-host","Port":20000,"VERSION":"1.0.6","other":1}"#).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(testkit::json(&body)["ID"], "case-host-10.0.0.7");
    let (status, body) = get(&s, "/api/v1/peers/case-host-10.0.0.7").await;
    assert_eq!(status, 200, "{body}");
    let p = testkit::json(&body);
    assert_eq!(p["IP"], "10.0.0.7");
    assert_eq!(p["hostName"], "case-host");
    assert_eq!(p["port"], 20000);
    assert_eq!(p["version"], "1.0.6");
    // An exact-case key wins over a case-folded one.
    let (status, body) = post_peer(&s, r#"{"Ip":"10.0.0.99","IP":"10.0.0.8","hostName":"exact","port":20000}"#).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(testkit::json(&body)["ID"], "exact-10.0.0.8");
    // Only the first JSON value of a body is read, as Go decodes it: trailing bytes are ignored.
    let (status, body) = post_peer(&s, r#"{"IP":"10.0.0.9","hostName":"trail","port":20000} garbage"#).await;
    assert_eq!(status, 201, "{body}");
}

#[actix_web::test]
async fn create_peer_validates_ip() {
    let s = testkit::start().await;
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
    let s = testkit::start().await;
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
        assert_eq!(testkit::json(&reply)["ID"], format!("{host}-10.0.0.1").as_str());
    }
}

#[actix_web::test]
async fn create_peer_validates_port() {
    let s = testkit::start().await;
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
        assert_eq!(testkit::json(&body)["port"], port);
    }
}

#[actix_web::test]
async fn create_peer_rejects_malformed_bodies() {
    let s = testkit::start().await;
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
    let (status, reply) = testkit::call(testkit::client().post(s.url("/api/v1/peers")), None).await;
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
    let s = testkit::start().await;
    // Exactly 1 MiB is accepted (trailing whitespace after the JSON value).
    let (status, reply) = post_peer(&s, &padded_body(1024 * 1024)).await;
    assert_eq!(status, 201, "{reply}");
    // One byte more is refused with 413 (the JSON error shape).
    let (status, reply) = post_peer(&s, &padded_body(1024 * 1024 + 1)).await;
    assert_eq!(status, 413, "{reply}");
    assert_eq!(testkit::json(&reply)["code"], 413, "{reply}");
    // Well over the limit.
    let (status, _) = post_peer(&s, &padded_body(2 * 1024 * 1024)).await;
    assert_eq!(status, 413);
}

#[actix_web::test]
async fn create_peer_body_limit_chunked() {
    let s = testkit::start().await;
    // No Content-Length: the limit applies while reading.
    let chunk = web_bytes(&" ".repeat(64 * 1024));
    let mut chunks: Vec<Result<actix_web::web::Bytes, std::io::Error>> =
        vec![Ok(web_bytes(r#"{"IP":"10.0.0.1","hostName":"big","port":20000}"#))];
    for _ in 0..20 {
        chunks.push(Ok(chunk.clone()));
    }
    let stream = futures_util::stream::iter(chunks);
    let res = testkit::client()
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
