//! Peer and task GC: a peer nothing was heard from for `peer_expire_time` goes (with its
//! clients), one whose clients poll or heart-beat stays; an idle task is forgotten but its
//! file kept and revalidated; a client that said service-down goes after `peer_gc_delay`.
//! Time is the server's manual clock; each GC run is asked for and its report read.

use std::time::Duration;

use serde_json::json;
use testkit::origin::{salted_bytes, Origin};
use testkit::{data_path, get_json, post_json, wait_success, RunGc};

use crate::{
    gauge, gc_config, heartbeat, need_register, poll_code, register, start, task_status, task_summary, Dfget, KIB,
};

const MINUTE: Duration = Duration::from_secs(60);

#[actix_web::test]
async fn idle_peer_is_collected_active_one_kept() {
    let config = gc_config();
    let peer_expire = config.gc.peer_expire_time;
    let (s, clock) = start(config).await;
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

    // only the active client keeps talking, a minute apart, for longer than peer_expire_time
    let mut talked = Duration::ZERO;
    while talked <= peer_expire {
        clock.advance(MINUTE);
        talked += MINUTE;
        assert_ne!(poll_code(&s, &id, &active.cid).await, 502, "the active client was collected");
        assert!(!need_register(&heartbeat(&s, &beating.cid).await));
    }
    let report = s.run_gc(RunGc::Meta).await;
    assert_eq!((report.clients, report.peers), (1, 2), "the idle client, its peer and the API's peer: {report:?}");

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

    let gc_peers = gauge(&s, "dragonfly_supernode_gc_peers_total", &[]).await;
    assert_eq!(gc_peers, 2.0, "gc_peers_total = {gc_peers}");
}

#[actix_web::test]
async fn idle_task_is_collected_and_revalidated_from_the_cache() {
    let config = gc_config();
    let task_expire = config.gc.task_expire_time;
    let (s, clock) = start(config).await;
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

    // nobody asks for it: kept until task_expire_time, then collected from memory
    clock.advance(task_expire - Duration::from_secs(1));
    assert_eq!(s.run_gc(RunGc::Meta).await.tasks, 0, "collected before task_expire_time");
    clock.advance(Duration::from_secs(1));
    assert_eq!(s.run_gc(RunGc::Meta).await.tasks, 1);
    assert_eq!(task_status(&s, &id).await.0, 404);
    assert!(data.exists(), "task GC must keep the cached file");
    let gc_tasks = gauge(&s, "dragonfly_supernode_gc_tasks_total", &[]).await;
    assert_eq!(gc_tasks, 1.0, "gc_tasks_total = {gc_tasks}");
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
    let config = gc_config();
    let delay = config.gc.peer_gc_delay;
    let (s, clock) = start(config).await;
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

    // not before peer_gc_delay …
    clock.advance(delay - Duration::from_secs(1));
    assert_ne!(poll_code(&s, &id, &stays.cid).await, 502);
    assert_eq!(s.run_gc(RunGc::Meta).await.clients, 0);
    assert_eq!(task_summary(&s, &id).await.expect("listed")["clients"], 2, "collected before peer_gc_delay");
    // … but at it
    clock.advance(Duration::from_secs(1));
    assert_eq!(s.run_gc(RunGc::Meta).await.clients, 1);
    assert_eq!(task_summary(&s, &id).await.expect("listed")["clients"], 1);
    assert_eq!(poll_code(&s, &id, &down.cid).await, 502);
    assert_ne!(poll_code(&s, &id, &stays.cid).await, 502);
}
