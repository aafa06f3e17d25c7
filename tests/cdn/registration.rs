//! `/peer/registry` as dfget sends it (JSON, or a form from 0.2.x clients), bad input (HTTP
//! 400 with code 501), source errors (607, or 608 for authentication), a `Range` header as
//! part of the task, and the v1 task API.

use std::collections::BTreeSet;
use std::time::Duration;

use md5::{Digest, Md5};
use serde_json::{json, Value};
use testkit::origin::{hex, salted_bytes, Origin};
use testkit::protocol::{task_id, url_task_id};
use testkit::{
    data_path, dfget_body, download, eventually, get_json, post_registration, wait_success, ClosedPort, TestServer,
};

use crate::verify::verify_cached;
use crate::{assert_task_info_keys, register_ok, suffixed, with, PIECE};

/// Sends `body` as `content_type` (a form, or JSON with a charset): status and reply text.
async fn send(req: awc::ClientRequest, content_type: &str, body: String) -> (u16, String) {
    let mut res = req.insert_header(("Content-Type", content_type)).send_body(body).await.expect("request sent");
    let bytes = res.body().limit(1 << 20).await.expect("body read");
    (res.status().as_u16(), String::from_utf8_lossy(&bytes).into_owned())
}

/// A registration refused with ResultInfo `code` (HTTP 200); returns `msg`.
async fn register_refused(s: &TestServer, body: &Value, code: i64) -> String {
    let (status, v) = post_registration(s, body).await;
    assert_eq!(status, 200, "registration {body} → {v}");
    assert_eq!(v["code"], code, "registration {body} → {v}");
    let msg = v["msg"].as_str().unwrap_or("").to_string();
    assert!(!msg.is_empty(), "no msg in {v}");
    msg
}

#[actix_web::test]
async fn registration_json_and_form_reply_with_the_task() {
    let s = testkit::start().await;
    let origin = Origin::start().await;
    let content = salted_bytes(10_000, 7);
    origin.add("/reg.bin", content.clone());
    let url = origin.url("/reg.bin");

    let data = register_ok(&s, &dfget_body(&url, "127.0.0.1-1-1.000")).await;
    assert_eq!(data["taskId"], url_task_id(&url), "the taskID of the URL: {data}");
    assert_eq!(data["fileLength"], 10_000, "source length: {data}");
    assert_eq!(data["pieceSize"], PIECE, "{data}");

    // the same download, form-encoded (0.2.x clients), with repeated headers=
    let form = format!(
        "superNodeIp=127.0.0.1&rawUrl={u}&taskUrl={u}&cid=127.0.0.1-2-2.000&ip=127.0.0.1\
         &hostName=vm&port=20002&path=%2Fpeer%2Ffile%2Fx-2&version=1.0.6\
         &headers=X-Foo%3A+a&headers=X-Bar%3A+b",
        u = url.replace(':', "%3A").replace('/', "%2F")
    );
    let (status, text) =
        send(testkit::client().post(s.url("/peer/registry")), "application/x-www-form-urlencoded", form).await;
    assert_eq!(status, 200, "{text}");
    let v = testkit::json(&text);
    assert_eq!(v["code"], 200, "{v}");
    assert_eq!(v["data"]["taskId"], url_task_id(&url), "{v}");
    assert_eq!(v["data"]["fileLength"], 10_000, "{v}");

    // the form media type with parameters is a form too
    let form = format!(
        "cid=127.0.0.1-3-3.000&ip=127.0.0.1&port=20003&path=%2Fpeer%2Ffile%2Fx-3&rawUrl={}",
        url.replace(':', "%3A").replace('/', "%2F")
    );
    let (status, text) =
        send(testkit::client().post(s.url("/peer/registry")), "application/x-www-form-urlencoded; charset=utf-8", form)
            .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(testkit::json(&text)["data"]["taskId"], url_task_id(&url), "{text}");

    let info = wait_success(&s, &url_task_id(&url), Duration::from_secs(20)).await;
    verify_cached(&s, &url_task_id(&url), &url, &origin.content("/reg.bin"), &info).await;
    assert_eq!(info["realMd5"], hex(&Md5::digest(&content)), "realMd5: {info}");
    assert_eq!(origin.stats("/reg.bin").body_requests, 1);
}

#[actix_web::test]
async fn registration_bad_bodies_are_400_with_code_501() {
    let s = testkit::start().await;
    let origin = Origin::start().await;
    origin.add("/ok.bin", vec![1, 2, 3]);
    let url = origin.url("/ok.bin");
    let good = dfget_body(&url, "127.0.0.1-1-1.000");
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("truncated JSON", "{\"cid\":".into(), "application/json", ""),
        ("empty body", String::new(), "application/json", ""),
        ("not an object", "[1,2]".into(), "application/json", ""),
        ("empty cid", with(good.clone(), "cid", json!("")).to_string(), "application/json", "cid"),
        ("port as string", with(good.clone(), "port", json!("20001")).to_string(), "application/json", "port"),
        ("port out of range", with(good.clone(), "port", json!(80)).to_string(), "application/json", "port"),
        ("bad ip", with(good.clone(), "ip", json!("not-an-ip")).to_string(), "application/json", "ip"),
        (
            "missing ip",
            {
                let mut b = good.clone();
                b.as_object_mut().unwrap().remove("ip");
                b.to_string()
            },
            "application/json",
            "ip",
        ),
        ("empty path", with(good.clone(), "path", json!("")).to_string(), "application/json", "path"),
        (
            "ftp rawUrl",
            with(good.clone(), "rawUrl", json!("ftp://127.0.0.1/x")).to_string(),
            "application/json",
            "rawurl",
        ),
        ("relative rawUrl", with(good.clone(), "rawUrl", json!("/x")).to_string(), "application/json", "rawurl"),
        (
            "form with a non-integer port",
            "cid=a&ip=127.0.0.1&port=abc&path=%2Fp&rawUrl=http%3A%2F%2F127.0.0.1%2Fx".into(),
            "application/x-www-form-urlencoded",
            "port",
        ),
    ];
    for (what, body, ct, field) in cases {
        let (status, text) = send(testkit::client().post(s.url("/peer/registry")), ct, body).await;
        assert_eq!(status, 400, "{what}: {text}");
        let v = testkit::json(&text);
        assert_eq!(v["code"], 501, "{what}: {text}");
        let msg = v["msg"].as_str().unwrap_or("");
        assert!(!msg.is_empty(), "{what}: {text}");
        assert_eq!(v["message"], msg, "a 400 carries its text in both `msg` and `message`: {text}");
        if !field.is_empty() {
            assert!(msg.to_ascii_lowercase().contains(field), "{what}: msg should name {field:?}: {text}");
        }
    }
    assert_eq!(origin.stats("/ok.bin").requests, 0, "a refused registration must not reach the source");
}

#[actix_web::test]
async fn registration_source_errors_607_608() {
    let s = testkit::start().await;
    let origin = Origin::start().await;

    // 404 → 607, naming the cause, and remembered: for 3 min a registration gets 607 at once
    let missing = origin.url("/missing.bin");
    let msg = register_refused(&s, &dfget_body(&missing, "c-1"), 607).await;
    assert!(msg.contains("404"), "607 message should name the cause: {msg}");
    assert_eq!(origin.stats("/missing.bin").requests, 1);
    register_refused(&s, &dfget_body(&missing, "c-2"), 607).await;
    assert_eq!(origin.stats("/missing.bin").requests, 1, "a 404 is remembered: no new origin request");

    // 5xx → 607
    origin.add("/broken.bin", vec![0; 10]);
    origin.set_status("/broken.bin", Some(500));
    let msg = register_refused(&s, &dfget_body(&origin.url("/broken.bin"), "c-3"), 607).await;
    assert!(msg.contains("500"), "607 message should name the cause: {msg}");
    // only 404s and unreachable sources are remembered: a 5xx is asked again
    register_refused(&s, &dfget_body(&origin.url("/broken.bin"), "c-3b"), 607).await;
    assert_eq!(origin.stats("/broken.bin").requests, 2);

    // 401 → 608; 403 → 608
    origin.add("/secret.bin", salted_bytes(5000, 3));
    origin.require_auth("/secret.bin", "Bearer x");
    let secret = origin.url("/secret.bin");
    register_refused(&s, &dfget_body(&secret, "c-4"), 608).await;
    origin.add("/forbidden.bin", vec![0; 10]);
    origin.set_status("/forbidden.bin", Some(403));
    register_refused(&s, &dfget_body(&origin.url("/forbidden.bin"), "c-5"), 608).await;

    // with the header → success, and the origin saw it (and 401 is not remembered)
    let body = with(dfget_body(&secret, "c-6"), "headers", json!(["Authorization: Bearer x"]));
    let data = register_ok(&s, &body).await;
    assert_eq!(data["fileLength"], 5000);
    let id = data["taskId"].as_str().unwrap().to_string();
    let info = wait_success(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["realMd5"], hex(&Md5::digest(salted_bytes(5000, 3))), "{info}");
    let st = origin.stats("/secret.bin");
    assert_eq!(st.authorization.last().map(String::as_str), Some("Bearer x"));
    assert_eq!(st.body_requests, 1, "{st:?}");

    // unreachable (closed port) → 607, remembered
    let closed = ClosedPort::bind();
    let dead = format!("http://127.0.0.1:{}/x.bin", closed.port());
    register_refused(&s, &dfget_body(&dead, "c-7"), 607).await;
    register_refused(&s, &dfget_body(&dead, "c-8"), 607).await;
}

/// Concurrent cold registrations of a missing source: one origin request, all get 607.
#[actix_web::test]
async fn concurrent_registrations_of_a_missing_source_ask_once() {
    let s = testkit::start().await;
    let origin = Origin::start().await;
    origin.add("/gone.bin", vec![0; 10]);
    origin.set_status("/gone.bin", Some(404));
    origin.set_delay("/gone.bin", Duration::from_millis(300));
    let url = origin.url("/gone.bin");
    let regs = (0..8).map(|i| {
        let body = dfget_body(&url, &format!("127.0.0.1-{i}-1.000"));
        let s = &s;
        async move { post_registration(s, &body).await }
    });
    for (status, v) in futures_util::future::join_all(regs).await {
        assert_eq!((status, v["code"].as_i64()), (200, Some(607)), "{v}");
    }
    assert_eq!(origin.stats("/gone.bin").requests, 1);
}

#[actix_web::test]
async fn registration_with_range_header_is_that_range() {
    let s = testkit::start().await;
    let origin = Origin::start().await;
    let content = salted_bytes(1000, 9);
    origin.add("/ranged.bin", content.clone());
    let url = origin.url("/ranged.bin");
    let body = with(dfget_body(&url, "c-1"), "headers", json!(["Range: bytes=0-99"]));
    let data = register_ok(&s, &body).await;
    let id = task_id(&url, "", "", Some("bytes=0-99"));
    assert_eq!(data["taskId"], id.as_str(), "the Range header is part of the taskID");
    assert_eq!(data["fileLength"], 100, "{data}");
    let info = wait_success(&s, id.as_str(), Duration::from_secs(20)).await;
    assert_eq!(info["realMd5"], hex(&Md5::digest(&content[..100])), "{info}");
    assert_eq!(origin.stats("/ranged.bin").ranges, vec!["bytes=0-99".to_string()]);
}

// ---------------------------------------------------------------------------------------
// the v1 task API: POST (with a query `filter`), GET and DELETE /api/v1/tasks
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn v1_task_api_create_get_delete() {
    let s = testkit::start().await;
    let origin = Origin::start().await;
    let content = salted_bytes(2000, 31);
    origin.add("/api.bin", content.clone());
    let raw_a = origin.url("/api.bin?token=a&x=1");
    let raw_b = origin.url("/api.bin?token=b&x=1");
    let filtered = origin.url("/api.bin?x=1");

    let (status, text) = testkit::call(
        testkit::client().post(s.url("/api/v1/tasks")),
        Some(&json!({"rawURL": raw_a, "filter": ["token"]}).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let v = testkit::json(&text);
    let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["ID", "fileLength", "pieceSize", "cdnSource"]), "{v}");
    assert_eq!(v["ID"], url_task_id(&filtered), "filtered taskURL: {v}");
    assert_eq!(v["fileLength"], 2000);
    assert_eq!(v["pieceSize"], PIECE);
    assert_eq!(v["cdnSource"], "supernode");
    let id = v["ID"].as_str().unwrap().to_string();

    let (status, text) = testkit::call(
        testkit::client().post(s.url("/api/v1/tasks")),
        Some(&json!({"rawURL": raw_b, "filter": ["token"]}).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    assert_eq!(testkit::json(&text)["ID"], id.as_str(), "only the filtered key differs");

    let info = wait_success(&s, &id, Duration::from_secs(20)).await;
    assert_task_info_keys(&info);
    assert_eq!(info["taskURL"], filtered.as_str(), "{info}");
    assert_eq!(info["realMd5"], hex(&Md5::digest(&content)));
    assert_eq!(origin.stats("/api.bin").body_requests, 1);

    // unknown ids → 404 (also a malformed one)
    let unknown = url_task_id("http://127.0.0.1:1/unknown");
    let (status, _) = get_json(&s, &format!("/api/v1/tasks/{unknown}")).await;
    assert_eq!(status, 404);
    let (status, _) = get_json(&s, "/api/v1/tasks/not-a-task-id").await;
    assert_eq!(status, 404);

    // full delete → 204 and the files are gone
    let home = s.home_path();
    assert!(data_path(&home, &id).exists());
    let (status, body) = testkit::delete(&s, &format!("/api/v1/tasks/{id}?full=true")).await;
    assert_eq!(status, 204, "{body}");
    eventually(Duration::from_secs(5), "cache files removed by full=true", || async {
        ["", ".meta", ".md5", ".tmp"].iter().all(|suf| !suffixed(&home, &id, suf).exists())
    })
    .await;
    let (status, _) = get_json(&s, &format!("/api/v1/tasks/{id}")).await;
    assert_eq!(status, 404);
    let (status, _) = testkit::delete(&s, &format!("/api/v1/tasks/{id}?full=true")).await;
    assert_eq!(status, 404, "deleting an unknown task");
    let (status, _) = testkit::delete(&s, &format!("/api/v1/tasks/{unknown}")).await;
    assert_eq!(status, 404);
    let (status, _, _) = download(s.download(), &id, None).await;
    assert_eq!(status, 404, "a fully deleted file is not served");
}
