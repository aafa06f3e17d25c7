//! A registration is one workflow (peer, then task, then client): when a later step fails,
//! the earlier ones are undone, so a refused registration leaves no peer and no task that
//! only it asked for.

use std::time::Duration;

use serde_json::json;
use testkit::origin::{salted_bytes, Origin};
use testkit::protocol::url_task_id;
use testkit::{data_path, dfget_body, eventually, get_json, post_registration, wait_success};

use crate::{register_ok, with};

/// The registration body of `cid` from host `host` at `ip`.
fn from_host(url: &str, cid: &str, host: &str, ip: &str) -> serde_json::Value {
    with(with(dfget_body(url, cid), "hostName", json!(host)), "ip", json!(ip))
}

#[actix_web::test]
async fn a_client_refused_at_the_limit_leaves_no_peer_and_no_task() {
    let s = testkit::start_with(testkit::config_with(|c| c.scheduler.max_clients = 1)).await;
    let origin = Origin::start().await;
    origin.add("/first.bin", salted_bytes(40_000, 1));
    origin.add("/second.bin", salted_bytes(40_000, 2));
    let (first, second) = (origin.url("/first.bin"), origin.url("/second.bin"));

    let data = register_ok(&s, &from_host(&first, "c-1", "host-a", "127.0.0.2")).await;
    let first_id = data["taskId"].as_str().expect("taskId").to_string();
    let (status, v) = post_registration(&s, &from_host(&second, "c-2", "host-b", "127.0.0.3")).await;
    assert_eq!(status, 503, "the client limit is reached: {v}");

    let second_id = url_task_id(&second);
    let (status, v) = get_json(&s, "/api/v1/peers/host-b-127.0.0.3").await;
    assert_eq!(status, 404, "the refused registration's new peer is retracted: {v}");
    eventually(Duration::from_secs(10), "the task only the refused registration wanted is dropped", || async {
        get_json(&s, &format!("/api/v1/tasks/{second_id}")).await.0 == 404
    })
    .await;
    eventually(Duration::from_secs(10), "with its files", || async { !data_path(&s.home_path(), &second_id).exists() })
        .await;

    let (status, _) = get_json(&s, "/api/v1/peers/host-a-127.0.0.2").await;
    assert_eq!(status, 200, "the earlier registration keeps its peer");
    wait_success(&s, &first_id, Duration::from_secs(20)).await;
}

#[actix_web::test]
async fn a_source_failure_retracts_only_a_peer_it_created() {
    let s = testkit::start().await;
    let origin = Origin::start().await;
    origin.add("/good.bin", salted_bytes(10_000, 3));
    let missing = origin.url("/missing.bin");

    let (status, v) = post_registration(&s, &from_host(&missing, "n-1", "new-host", "127.0.0.4")).await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(607)), "{v}");
    let (status, v) = get_json(&s, "/api/v1/peers/new-host-127.0.0.4").await;
    assert_eq!(status, 404, "a peer made by the failed registration is retracted: {v}");

    register_ok(&s, &from_host(&origin.url("/good.bin"), "k-1", "known-host", "127.0.0.5")).await;
    let again = from_host(&origin.url("/missing-too.bin"), "k-2", "known-host", "127.0.0.5");
    let (status, v) = post_registration(&s, &again).await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(607)), "{v}");
    let (status, v) = get_json(&s, "/api/v1/peers/known-host-127.0.0.5").await;
    assert_eq!(status, 200, "a peer that registered before stays: {v}");
}
