//! The job API's answers one by one: what Harbor 2.12 and 2.13+ post is accepted, the job
//! object has exactly the manager's keys with the defaults filled in, a body that does not
//! validate is 422 `{"errors": "..."}`, job IDs that are not numbers or zero are 422 and
//! unknown ones 404 `{"message":"record not found"}`.

use std::collections::BTreeSet;

use actix_web::http::Method;
use serde_json::{json, Value};
use testkit::{config_with, ClosedPort, TestServer};

use crate::{decode, harbor_body, harbor_call};

/// A manifest URL nothing answers at: the jobs are accepted and fail later.
fn unreachable_manifest(closed: &ClosedPort) -> String {
    format!("http://127.0.0.1:{}/v2/library/nginx/manifests/1.27", closed.port())
}

async fn post(s: &TestServer, body: &str) -> (u16, String) {
    harbor_call(s, Method::POST, "/oapi/v1/jobs", Some(body), None).await
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap_or_else(|| panic!("an object: {v}")).keys().cloned().collect()
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|k| k.to_string()).collect()
}

#[actix_web::test]
async fn healthy_is_the_json_string_ok() {
    let s = testkit::start().await;
    let mut res = testkit::client().get(s.url("/healthy")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers().get("content-type").unwrap(), "application/json");
    assert_eq!(res.body().await.unwrap(), "\"OK\"\n");
    let (status, _) = testkit::get(&s, "/v1.24/healthy").await;
    assert_eq!(status, 200, "under a version prefix too");
}

/// The bodies of each Harbor version: 2.12 (`single_peer`, no cluster IDs), 2.13+ (the
/// manager's scopes, `""` for an upgraded policy, cluster IDs or `null`). Each is a new job.
#[actix_web::test]
async fn every_harbor_body_is_accepted() {
    let s = testkit::start().await;
    let closed = ClosedPort::bind();
    let url = unreachable_manifest(&closed);
    let bodies = [
        harbor_body(&url, "t", "single_peer", Value::Null),
        harbor_body(&url, "t", "all_peers", Value::Null),
        harbor_body(&url, "t", "single_seed_peer", json!([1, 2])),
        harbor_body(&url, "t", "all_seed_peers", json!([3])),
        harbor_body(&url, "t", "", Value::Null),
        // Keys in another case, nulls, and keys Harbor never sends but the manager accepts.
        json!({"TYPE": "preheat", "Args": {"Type": "image", "URL": url, "headers": {"X-Note": "caf\u{e9}\tok"}, "timeout": null,
            "platform": "linux/arm64"}, "bio": "x", "user_id": 3, "scheduler_cluster_ids": []})
        .to_string(),
    ];
    let mut last = 0;
    for body in &bodies {
        let (status, text) = post(&s, body).await;
        assert_eq!(status, 200, "{body} → {text}");
        let job = decode(&text);
        assert!(job.id > last, "IDs grow: {text}");
        last = job.id;
    }
}

/// The job object: the manager's keys, `result` `null` while PENDING, the args echoed with
/// the defaults filled in (scope `single_seed_peer`, timeout 30 min in nanoseconds) and
/// credentials not shown.
#[actix_web::test]
async fn job_object_keys_and_defaults() {
    let s = testkit::start().await;
    let closed = ClosedPort::bind();
    let url = unreachable_manifest(&closed);
    let body = json!({"type": "preheat", "args": {"type": "image", "url": url, "tag": "1.27",
        "headers": {"Authorization": "Bearer secret", "X-Trace": "abc"}, "concurrent_count": 3},
        "scheduler_cluster_ids": null});
    let (status, text) = post(&s, &body.to_string()).await;
    assert_eq!(status, 200, "{text}");
    let v = testkit::json(&text);
    let job_keys =
        ["id", "created_at", "updated_at", "is_del", "task_id", "bio", "type", "state", "args", "result", "user_id"];
    assert_eq!(keys(&v), set(&job_keys), "{v}");
    assert!(v["id"].is_u64(), "{v}");
    assert_eq!(v["state"], "PENDING");
    assert_eq!(v["type"], "preheat");
    assert_eq!(v["result"], Value::Null);
    assert_eq!(v["created_at"], v["updated_at"], "{v}");
    let task = v["task_id"].as_str().unwrap();
    assert_eq!(task, testkit::protocol::preheat_id(&url, "", "", None), "the image preheat's ID: {v}");
    let (status, preheat) = testkit::get_json(&s, &format!("/preheats/{task}")).await;
    assert_eq!(status, 200, "the job's preheat is a preheat record: {preheat}");
    assert_eq!(
        v["args"],
        json!({"type": "image", "url": url, "tag": "1.27", "filtered_query_params": "",
            "headers": {"Authorization": "***", "X-Trace": "abc"}, "scope": "single_seed_peer",
            "concurrent_count": 3, "timeout": 1_800_000_000_000_i64}),
        "{v}"
    );

    // Ended (nothing answers the manifest URL): the result's keys.
    let (done, raw) = crate::wait_job(&s, v["id"].as_i64().unwrap()).await;
    assert_eq!(done.state, "FAILURE");
    let result = &raw["result"];
    assert_eq!(keys(result), set(&["state", "created_at", "updated_at", "job_states"]), "{raw}");
    let state = &result["job_states"][0];
    assert_eq!(keys(state), set(&["task_name", "state", "error", "created_at", "results"]), "{raw}");
    assert_eq!(keys(&state["results"][0]), set(&["scheduler_cluster_id", "success_tasks", "failure_tasks"]));
    assert!(raw["updated_at"].as_str() >= raw["created_at"].as_str(), "{raw}");
}

#[actix_web::test]
async fn bodies_that_do_not_validate_are_422() {
    let s = testkit::start_with(config_with(|c| c.security.max_list_len = 4)).await;
    let closed = ClosedPort::bind();
    let url = unreachable_manifest(&closed);
    let args = |extra: Value| {
        let mut a = json!({"type": "image", "url": url});
        a.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"type": "preheat", "args": a}).to_string()
    };
    let many: serde_json::Map<String, Value> = (0..5).map(|i| (format!("X-H{i}"), json!("v"))).collect();
    let cases = [
        ("", "empty"),
        ("   ", "empty"),
        ("{", "malformed"),
        ("[1]", "object"),
        (r#""preheat""#, "object"),
        (r#"{"args": {"type": "image"}}"#, "type"),
        (&*json!({"type": "file", "args": {"type": "image", "url": url}}).to_string(), "type"),
        (r#"{"type": "preheat"}"#, "args.type"),
        (r#"{"type": "preheat", "args": null}"#, "args.type"),
        (r#"{"type": "preheat", "args": []}"#, "object"),
        (&*json!({"type": "preheat", "args": {"type": "file", "url": url}}).to_string(), "args.type"),
        (r#"{"type": "preheat", "args": {"type": "image"}}"#, "args.url"),
        (&*args(json!({"url": "http://127.0.0.1/v2/library/nginx/blobs/sha256:ab"})), "args.url"),
        (&*args(json!({"url": "not a url"})), "args.url"),
        (&*args(json!({"url": 7})), "args.url"),
        (&*args(json!({"headers": "Authorization: Bearer x"})), "args.headers"),
        (&*args(json!({"headers": {"Authorization": 1}})), "args.headers"),
        (&*args(json!({"headers": {"Bad Name": "x"}})), "args.headers"),
        (&*args(json!({"headers": {"X": "line\nbreak"}})), "args.headers"),
        (&*args(json!({"headers": many})), "args.headers"),
        (&*args(json!({"timeout": -1})), "args.timeout"),
        (&*args(json!({"timeout": "30m"})), "args.timeout"),
        (&*args(json!({"timeout": 1.5})), "args.timeout"),
        (&*args(json!({"concurrent_count": -1})), "args.concurrent_count"),
        (&*args(json!({"scope": 1})), "args.scope"),
        (&*json!({"type": "preheat", "args": {"type": "image", "url": url}, "scheduler_cluster_ids": [-1]}).to_string(), "scheduler_cluster_ids"),
        (&*json!({"type": "preheat", "args": {"type": "image", "url": url}, "scheduler_cluster_ids": ["1"]}).to_string(), "scheduler_cluster_ids"),
        (&*json!({"type": "preheat", "args": {"type": "image", "url": url}, "scheduler_cluster_ids": [1, 2, 3, 4, 5]}).to_string(), "scheduler_cluster_ids"),
    ];
    for (body, names) in cases {
        let (status, text) = post(&s, body).await;
        assert_eq!(status, 422, "{body} → {text}");
        let v = testkit::json(&text);
        assert_eq!(keys(&v), set(&["errors"]), "{body} → {text}");
        let errors = v["errors"].as_str().unwrap_or_else(|| panic!("errors is a string: {text}"));
        assert!(errors.contains(names), "{body} → {errors:?} should name {names}");
    }
    let (status, text) = harbor_call(&s, Method::GET, "/api/v1/preheats", None, None).await;
    assert_eq!((status, text.as_str()), (200, "[]\n"), "no preheat was started");
}

/// The source policy applies to the manifest URL: 403 `{"message": ...}`; and a body over the
/// size limit is 413.
#[actix_web::test]
async fn denied_registry_and_large_bodies() {
    let s = testkit::start().await;
    let body = harbor_body("http://169.254.169.254/v2/library/nginx/manifests/1", "t", "", Value::Null);
    let (status, text) = post(&s, &body).await;
    assert_eq!(status, 403, "{text}");
    assert_eq!(keys(&testkit::json(&text)), set(&["message"]));
    let big = harbor_body(&format!("http://h/v2/a/manifests/{}", "x".repeat(2 << 20)), "t", "", Value::Null);
    let (status, text) = post(&s, &big).await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(keys(&testkit::json(&text)), set(&["message"]));
}

#[actix_web::test]
async fn job_ids_unknown_404_and_invalid_422() {
    let s = testkit::start().await;
    for id in ["1", "9223372036854775807", "0042"] {
        let (status, text) = harbor_call(&s, Method::GET, &format!("/oapi/v1/jobs/{id}"), None, None).await;
        assert_eq!(status, 404, "{id}: {text}");
        assert_eq!(testkit::json(&text), json!({"message": "record not found"}), "{id}");
    }
    for id in ["0", "00", "abc", "-1", "+1", "1.0", "1e3", "9223372036854775808", "%201"] {
        let (status, text) = harbor_call(&s, Method::GET, &format!("/oapi/v1/jobs/{id}"), None, None).await;
        assert_eq!(status, 422, "{id}: {text}");
        let v = testkit::json(&text);
        assert_eq!(keys(&v), set(&["errors"]), "{id}: {text}");
        assert!(v["errors"].as_str().unwrap().starts_with("id:"), "{id}: {text}");
    }
}
