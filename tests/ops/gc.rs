//! Peer and task GC: a peer nothing was heard from for `peer_expire_time` goes (with its
//! clients), one whose clients poll or heart-beat stays; an idle task is forgotten but its
//! file kept and revalidated; a client that said service-down goes after `peer_gc_delay`.

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::origin::{salted_bytes, Origin};
use testkit::{data_path, eventually, get_json, post_json, wait_success};

use crate::{
    fast_gc, gauge, heartbeat, need_register, poll_code, register, sleep, task_status, task_summary, wait_gc_runs,
    Dfget, KIB,
};

#[actix_web::test]
async fn idle_peer_is_collected_active_one_kept() {
    let s = testkit::start_with(fast_gc()).await;
    let origin = Origin::start().await;
    origin.add("/shared.bin", salted_bytes(64 * KIB, 1));
    let url = origin.url("/shared.bin");

    let idle = Dfget::new("idle-1", "127.0.0.2", "idle-host");
    let active = Dfget::new("active-1", "127.0.0.3", "active-host");
    // heard from only through heartbeats: a heartbeat counts as hearing from its peer
    let beating = Dfget::new("beating-1", "127.0.0.5", "beating-host");
    let id = register(&s, &idle, &url).await;
    assert_eq!(register(&s, &active, &url).await, id);
    assert_eq!(register(&s, &beating, &url).await, id);
    wait_success(&s, &id, Duration::from_secs(20)).await;

    // a peer created through the API and never used
    let (status, v) = post_json(
        &s,
        "/api/v1/peers",
        &json!({"IP": "127.0.0.4", "hostName": "api-host", "port": 20002, "version": "1.0.6"}),
    )
    .await;
    assert_eq!(status, 201, "POST /api/v1/peers → {v}");
    let api_peer = v["ID"].as_str().expect("ID").to_string();

    for p in [idle.peer_id(), active.peer_id(), beating.peer_id(), api_peer.clone()] {
        let (status, v) = get_json(&s, &format!("/api/v1/peers/{p}")).await;
        assert_eq!(status, 200, "peer {p} right after registration: {v}");
    }
    assert_ne!(poll_code(&s, &id, &idle.cid).await, 502);

    // only the active client keeps talking, for well over peer_expire_time (1 s)
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        let code = poll_code(&s, &id, &active.cid).await;
        assert_ne!(code, 502, "the active client was collected");
        assert!(!need_register(&heartbeat(&s, &beating.cid).await));
        sleep(Duration::from_millis(150)).await;
    }
    wait_gc_runs(&s, "meta", 2).await;

    let (status, v) = get_json(&s, &format!("/api/v1/peers/{}", idle.peer_id())).await;
    assert_eq!(status, 404, "idle peer still there: {v}");
    assert_eq!(poll_code(&s, &id, &idle.cid).await, 502, "idle client still known");
    let (status, v) = get_json(&s, &format!("/api/v1/peers/{api_peer}")).await;
    assert_eq!(status, 404, "unused API-created peer still there: {v}");

    let (status, v) = get_json(&s, &format!("/api/v1/peers/{}", active.peer_id())).await;
    assert_eq!(status, 200, "active peer collected: {v}");
    assert_eq!(v["IP"], "127.0.0.3");
    assert_ne!(poll_code(&s, &id, &active.cid).await, 502);
    let (status, v) = get_json(&s, &format!("/api/v1/peers/{}", beating.peer_id())).await;
    assert_eq!(status, 200, "heart-beating peer collected: {v}");
    assert_ne!(poll_code(&s, &id, &beating.cid).await, 502);
    let (status, _) = task_status(&s, &id).await;
    assert_eq!(status, 200, "a task with an active client stays");

    let m = testkit::metrics(&s).await;
    let gc_peers = m.get("dragonfly_supernode_gc_peers_total", &[]).unwrap_or(0.0);
    assert!(gc_peers >= 2.0, "gc_peers_total = {gc_peers}");
}

#[actix_web::test]
async fn idle_task_is_collected_and_revalidated_from_the_cache() {
    let mut config = fast_gc();
    config.gc.task_expire_time = Duration::from_secs(2);
    config.gc.peer_expire_time = Duration::from_secs(2);
    let s = testkit::start_with(config).await;
    let origin = Origin::start().await;
    origin.add("/task-gc.bin", salted_bytes(300 * KIB, 2));
    let url = origin.url("/task-gc.bin");

    let c = Dfget::new("tgc-1", "127.0.0.2", "tgc-host");
    let id = register(&s, &c, &url).await;
    let info = wait_success(&s, &id, Duration::from_secs(20)).await;
    let md5 = info["realMd5"].clone();
    let first = origin.stats("/task-gc.bin");
    assert_eq!((first.requests, first.body_requests), (1, 1), "{first:?}");
    let data = data_path(&s.home_path(), &id);
    assert!(data.exists(), "{} cached", data.display());

    // nobody asks for it: collected from memory after task_expire_time (2 s)
    eventually(Duration::from_secs(10), "idle task collected", || async { task_status(&s, &id).await.0 == 404 }).await;
    assert!(data.exists(), "task GC must keep the cached file");
    let gc_tasks = gauge(&s, "dragonfly_supernode_gc_tasks_total", &[]).await;
    assert!(gc_tasks >= 1.0, "gc_tasks_total = {gc_tasks}");
    assert_eq!(poll_code(&s, &id, &c.cid).await, 502, "the client of a collected task is gone");

    // a new registration: one conditional GET, 304, no body
    let again = Dfget::new("tgc-2", "127.0.0.2", "tgc-host");
    assert_eq!(register(&s, &again, &url).await, id);
    let info = wait_success(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["realMd5"], md5);
    origin.stats("/task-gc.bin").assert_revalidated_by_one_304(&first);
    assert!(data.exists());
}

#[actix_web::test]
async fn service_down_client_is_collected_after_peer_gc_delay() {
    let mut config = fast_gc();
    config.gc.peer_gc_delay = Duration::from_millis(1500);
    config.gc.peer_expire_time = Duration::from_secs(60);
    config.gc.task_expire_time = Duration::from_secs(60);
    let s = testkit::start_with(config).await;
    let origin = Origin::start().await;
    origin.add("/down.bin", salted_bytes(64 * KIB, 3));
    let url = origin.url("/down.bin");

    let down = Dfget::new("down-1", "127.0.0.2", "down-host");
    let stays = Dfget::new("stays-1", "127.0.0.3", "stays-host");
    let id = register(&s, &down, &url).await;
    register(&s, &stays, &url).await;
    wait_success(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(task_summary(&s, &id).await.expect("listed")["clients"], 2);

    let path = format!("/peer/service/down?taskId={id}&cid={}", down.cid);
    let (status, v) = get_json(&s, &path).await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(612)), "{path} → {v}");
    let marked = Instant::now();

    // not before peer_gc_delay (1.5 s) …
    wait_gc_runs(&s, "meta", 2).await;
    if marked.elapsed() < Duration::from_millis(1200) {
        assert_eq!(task_summary(&s, &id).await.expect("listed")["clients"], 2, "collected before peer_gc_delay");
    }
    // … but soon after it
    eventually(Duration::from_secs(5), "service-down client collected", || async {
        task_summary(&s, &id).await.expect("listed")["clients"] == 1
    })
    .await;
    assert!(marked.elapsed() >= Duration::from_millis(1500));
    assert_eq!(poll_code(&s, &id, &down.cid).await, 502);
    assert_ne!(poll_code(&s, &id, &stays.cid).await, 502);
}
