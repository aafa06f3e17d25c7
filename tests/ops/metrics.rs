//! Metrics: `/task/metrics` reports counted once per report (its reply's `code` 1 stops dfget
//! from sending it again), and the gauges and counters that move with a download and with the
//! collections that follow it.

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::origin::{salted_bytes, Origin};
use testkit::{first_poll, get_json, post_json, RunGc, TestServer};

use crate::{gc_config, register, start, Dfget, MIB};

/// Downloads the whole task as one dfget run does: polls, fetches each piece from the
/// source it is told, reports it; returns the number of pieces fetched. Then sends the
/// `/task/metrics` report once.
async fn download(s: &TestServer, c: &Dfget, id: &str) -> usize {
    let start = Instant::now();
    let mut extra = String::new();
    let mut fetched = 0;
    loop {
        assert!(start.elapsed() < Duration::from_secs(30), "download of {id} by {} did not finish", c.cid);
        let v = if extra.is_empty() {
            first_poll(s, &c.cid, id).await
        } else {
            let path = format!("/peer/task?srcCid={}&{extra}&taskId={id}", c.cid);
            let (status, v) = get_json(s, &path).await;
            assert_eq!(status, 200, "{path} → {v}");
            v
        };
        extra.clear();
        match v["code"].as_i64() {
            Some(600) => break,
            Some(601) => {
                let items = v["data"].as_array().cloned().unwrap_or_default();
                for item in items {
                    let range = item["range"].as_str().expect("range").to_string();
                    let src = item["cid"].as_str().expect("cid").to_string();
                    let url = format!(
                        "http://{}:{}{}",
                        item["peerIp"].as_str().unwrap(),
                        item["peerPort"],
                        item["path"].as_str().unwrap()
                    );
                    let mut res = testkit::client()
                        .get(url.as_str())
                        .insert_header(("Range", format!("bytes={range}")))
                        .send()
                        .await
                        .expect("piece request");
                    assert_eq!(res.status().as_u16(), 206, "piece {url} {range}");
                    res.body().limit(64 << 20).await.expect("piece body");
                    fetched += 1;
                    let suc = format!("/peer/piece/suc?taskId={id}&cid={}&dstCid={src}&pieceRange={range}", c.cid);
                    let (st, r) = get_json(s, &suc).await;
                    assert_eq!((st, r["code"].as_i64()), (200, Some(611)), "{suc} → {r}");
                    extra = format!("dstCid={src}&range={range}&result=503&status=701");
                }
            }
            // dfget's own back-off before polling again
            Some(602) | Some(603) => actix_web::rt::time::sleep(Duration::from_millis(20)).await,
            _ => panic!("unexpected /peer/task reply for {}: {v}", c.cid),
        }
    }
    fetched
}

#[actix_web::test]
async fn task_metrics_counted_once_per_report() {
    let s = testkit::start().await;
    let id = "a".repeat(64);
    let report = json!({
        "IP": "127.0.0.2", "backsourceReason": "0", "cID": "met-1", "callSystem": "ops-test",
        "duration": 1.5, "fileLength": 1000, "port": 20001, "success": true, "taskId": id,
    });
    for _ in 0..2 {
        let (status, v) = post_json(&s, "/task/metrics", &report).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["code"], 1, "dfget resends unless code is 1: {v}");
    }
    let peer = [("callsystem", "ops-test"), ("peer", "127.0.0.2")];
    let m = testkit::metrics(&s).await;
    assert_eq!(m.get("dragonfly_dfget_download_total", &peer), Some(1.0));
    assert_eq!(m.get("dragonfly_dfget_download_size_bytes_total", &peer), Some(1000.0));
    assert_eq!(m.get("dragonfly_dfget_download_duration_seconds_count", &peer), Some(1.0));

    let mut failed = report.clone();
    failed["cID"] = json!("met-2");
    failed["success"] = json!(false);
    failed["backsourceReason"] = json!("3");
    for _ in 0..2 {
        let (status, v) = post_json(&s, "/task/metrics", &failed).await;
        assert_eq!((status, v["code"].as_i64()), (200, Some(1)), "{v}");
    }
    let m = testkit::metrics(&s).await;
    assert_eq!(m.get("dragonfly_dfget_download_total", &peer), Some(2.0));
    let with_reason = [("callsystem", "ops-test"), ("peer", "127.0.0.2"), ("reason", "3")];
    assert_eq!(m.get("dragonfly_dfget_download_failed_total", &with_reason), Some(1.0));
    assert_eq!(m.get("dragonfly_dfget_download_size_bytes_total", &peer), Some(1000.0), "failures add no bytes");
}

#[actix_web::test]
async fn metrics_move_with_downloads_and_collections() {
    let config = gc_config();
    let idle = config.gc.peer_expire_time.max(config.gc.task_expire_time);
    let (s, clock) = start(config).await;
    let origin = Origin::start().await;
    let len = 5 * MIB as usize; // two pieces
    origin.add("/m.bin", salted_bytes(len, 6));
    let url = origin.url("/m.bin");

    let before = testkit::metrics(&s).await;
    let meta0 = before.get("dragonfly_supernode_gc_runs_total", &[("kind", "meta")]).unwrap_or(0.0);
    let disk0 = before.get("dragonfly_supernode_gc_runs_total", &[("kind", "disk")]).unwrap_or(0.0);

    let c = Dfget::new("mx-1", "127.0.0.2", "metrics-host");
    let id = register(&s, &c, &url).await;
    let pieces = download(&s, &c, &id).await;
    assert_eq!(pieces, 2);
    let (status, v) = post_json(
        &s,
        "/task/metrics",
        &json!({"IP": c.ip, "backsourceReason": "0", "cID": c.cid, "duration": 0.5,
                "fileLength": len, "port": c.port, "success": true, "taskId": id}),
    )
    .await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(1)), "{v}");

    let m = testkit::metrics(&s).await;
    let get = |name: &str, labels: &[(&str, &str)]| m.get(name, labels).unwrap_or(0.0);
    assert!(get("dragonfly_supernode_cache_bytes", &[]) >= len as f64);
    assert!(get("dragonfly_supernode_cache_files", &[]) >= 1.0);
    assert_eq!(get("dragonfly_supernode_clients", &[]), 1.0);
    assert_eq!(get("dragonfly_supernode_tasks", &[("cdnstatus", "SUCCESS")]), 1.0);
    assert!(get("dragonfly_supernode_pieces_scheduled_total", &[]) >= 2.0);
    assert!(get("dragonfly_supernode_pieces_scheduled_total", &[("source", "supernode")]) >= 2.0);
    assert!(get("dragonfly_supernode_pieces_downloaded_size_bytes_total", &[]) >= len as f64);
    assert_eq!(get("dragonfly_supernode_tasks_registered_total", &[]), 1.0);
    assert_eq!(get("dragonfly_supernode_peers", &[("peer", "127.0.0.2")]), 1.0);
    assert_eq!(get("dragonfly_dfget_download_total", &[("peer", "127.0.0.2")]), 1.0);
    assert_eq!(get("dragonfly_supernode_dfgettasks", &[("status", "SUCCESS")]), 1.0, "the finished run");
    assert_eq!(get("dragonfly_supernode_dfgettasks", &[("status", "RUNNING")]), 0.0);

    // GC runs are counted, per kind
    s.run_gc(RunGc::Disk).await;
    s.run_gc(RunGc::Meta).await;
    let m = testkit::metrics(&s).await;
    assert_eq!(m.get("dragonfly_supernode_gc_runs_total", &[("kind", "meta")]), Some(meta0 + 1.0));
    assert_eq!(m.get("dragonfly_supernode_gc_runs_total", &[("kind", "disk")]), Some(disk0 + 1.0));

    // the client and the task go idle: collected, counted, gauges back down
    clock.advance(idle);
    let report = s.run_gc(RunGc::Meta).await;
    assert_eq!((report.clients, report.tasks, report.peers), (1, 1, 1), "{report:?}");
    let m = testkit::metrics(&s).await;
    assert_eq!(m.get("dragonfly_supernode_gc_tasks_total", &[]), Some(1.0));
    assert_eq!(m.get("dragonfly_supernode_gc_peers_total", &[]), Some(1.0));
    let get = |name: &str, labels: &[(&str, &str)]| m.get(name, labels).unwrap_or(0.0);
    assert_eq!(get("dragonfly_supernode_clients", &[]), 0.0);
    assert_eq!(get("dragonfly_supernode_tasks", &[("cdnstatus", "SUCCESS")]), 0.0);
    assert_eq!(get("dragonfly_supernode_peers", &[("peer", "127.0.0.2")]), 0.0);
    assert!(get("dragonfly_supernode_cache_files", &[]) >= 1.0, "task GC keeps the file");
    assert_eq!(get("dragonfly_supernode_gc_runs_total", &[("kind", "meta")]), meta0 + 2.0);
}
