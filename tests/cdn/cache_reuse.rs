//! Reusing what was fetched: one source fetch per task under concurrent registrations, a
//! restart serving the cache with no origin request, revalidation with a conditional GET after
//! the task was deleted (304 → reuse, changed → fetch again, no validators → fetch again), and
//! the CDN metrics that count it.

use std::time::Duration;

use md5::{Digest, Md5};
use testkit::origin::{hex, salted_bytes, Origin};
use testkit::protocol::url_task_id;
use testkit::{data_path, dfget_body, download, get_json, task_info, wait_success, Config, TestServer};

use crate::verify::verify_cached;
use crate::{register_ok, register_url, MIB, PAYLOAD, PIECE};

#[actix_web::test]
async fn eight_concurrent_cold_registrations_fetch_once() {
    let s = testkit::start().await;
    let origin = Origin::start().await;
    let len = 64 * MIB;
    origin.add_generated("/cold64m.bin", 64, len);
    // the head comes late, so every registration arrives while the source is being opened;
    // then the body holds after 8 MiB, so more registrations arrive while the CDN runs
    origin.set_delay("/cold64m.bin", Duration::from_millis(300));
    origin.pause_after("/cold64m.bin", 8 * MIB);
    let url = origin.url("/cold64m.bin");
    let id = url_task_id(&url);
    let register_many = |round: u32| {
        let s = &s;
        let url = &url;
        futures_util::future::join_all((0..8).map(move |i| async move {
            register_ok(s, &dfget_body(url, &format!("127.0.0.1-{round}{i}-1.000"))).await
        }))
    };
    for d in register_many(1).await {
        assert_eq!(d["taskId"], id.as_str(), "{d}");
        assert_eq!(d["fileLength"], len, "{d}");
        assert_eq!(d["pieceSize"], PIECE, "{d}");
    }
    let st = origin.stats("/cold64m.bin");
    assert_eq!(st.body_requests, 1, "cold registrations: one body GET: {st:?}");
    assert!(st.requests <= 2, "at most one probe and one body GET: {st:?}");

    // while the CDN runs, later registrations join it
    assert_eq!(task_info(&s, &id).await["cdnStatus"], "RUNNING");
    for d in register_many(2).await {
        assert_eq!(d["taskId"], id.as_str(), "{d}");
        assert_eq!(d["fileLength"], len, "{d}");
    }
    origin.resume("/cold64m.bin");
    let info = wait_success(&s, &id, Duration::from_secs(60)).await;
    assert_eq!(info["fileLength"], 67_108_949, "{info}");
    assert_eq!(info["pieceTotal"], 17, "{info}");
    let st = origin.stats("/cold64m.bin");
    assert_eq!(st.body_requests, 1, "exactly one body fetch: {st:?}");
    assert_eq!(st.body_bytes, len, "{st:?}");
    assert!(st.requests <= 2, "at most one probe and one body GET: {st:?}");
}

#[actix_web::test]
async fn restart_serves_the_cache_without_the_source() {
    let home = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let content = salted_bytes(PAYLOAD as usize + 1000, 5);
    origin.add("/restart.bin", content.clone());
    let url = origin.url("/restart.bin");

    let s1 = TestServer::start_in(home, Config::default()).await;
    let id = register_url(&s1, &url, "c-1").await;
    let info1 = wait_success(&s1, &id, Duration::from_secs(20)).await;
    let home = s1.stop().await;
    let before = origin.stats("/restart.bin");
    assert_eq!(before.requests, 1, "{before:?}");

    let s2 = TestServer::start_in(home, Config::default()).await;
    // TaskInfo is there after the restart, before any registration
    let (status, info) = get_json(&s2, &format!("/api/v1/tasks/{id}")).await;
    assert_eq!(status, 200, "TaskInfo after restart: {info}");
    assert_eq!(info["cdnStatus"], "SUCCESS", "{info}");
    for key in ["fileLength", "httpFileLength", "pieceSize", "pieceTotal", "realMd5", "taskURL"] {
        assert_eq!(info[key], info1[key], "{key} after restart: {info}");
    }
    // registering again: SUCCESS at once, no origin request
    let data = register_ok(&s2, &dfget_body(&url, "c-2")).await;
    assert_eq!(data["taskId"], id.as_str());
    assert_eq!(data["fileLength"], content.len());
    let info = task_info(&s2, &id).await;
    assert_eq!(info["cdnStatus"], "SUCCESS", "immediately SUCCESS: {info}");
    assert_eq!(origin.stats("/restart.bin"), before, "no origin request after restart");
    // and the download port of the new server serves the file
    let (status, _, body) = download(s2.download(), &id, Some(format!("bytes={}-{}", PIECE, 2 * PIECE - 1))).await;
    assert_eq!(status, 206);
    assert_eq!(body.len(), 1000 + 5);
    assert_eq!(&body[4..1004], &content[PAYLOAD as usize..]);
    let home = s2.stop().await;
    assert!(data_path(home.path(), &id).exists());
}

#[actix_web::test]
async fn deleted_task_is_revalidated_304_then_refetched_when_changed() {
    let s = testkit::start().await;
    let origin = Origin::start().await;
    let v1 = salted_bytes(MIB as usize, 11);
    origin.add("/reval.bin", v1.clone());
    let url = origin.url("/reval.bin");
    let id = register_url(&s, &url, "c-1").await;
    let info = wait_success(&s, &id, Duration::from_secs(20)).await;
    let md5_v1 = info["realMd5"].as_str().unwrap().to_string();
    assert_eq!(md5_v1, hex(&Md5::digest(&v1)));
    let st1 = origin.stats("/reval.bin");
    assert_eq!((st1.requests, st1.body_requests), (1, 1));

    // forget the task, keep the file (full=false) → one conditional GET answered 304
    let (status, body) = testkit::delete(&s, &format!("/api/v1/tasks/{id}?full=false")).await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = get_json(&s, &format!("/api/v1/tasks/{id}")).await;
    assert_eq!(status, 404, "deleted task is unknown");
    assert!(data_path(&s.home_path(), &id).exists(), "full=false keeps the file");
    let data = register_ok(&s, &dfget_body(&url, "c-2")).await;
    assert_eq!(data["fileLength"], v1.len(), "source length of the revalidated copy");
    let info = wait_success(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["realMd5"], md5_v1.as_str());
    origin.stats("/reval.bin").assert_revalidated_by_one_304(&st1);
    verify_cached(&s, &id, &url, &origin.content("/reval.bin"), &info).await;

    // the source changes → delete + register downloads again
    let v2 = salted_bytes(MIB as usize + 17, 12);
    origin.replace("/reval.bin", v2.clone());
    let (status, _) = testkit::delete(&s, &format!("/api/v1/tasks/{id}")).await;
    assert_eq!(status, 204);
    let data = register_ok(&s, &dfget_body(&url, "c-3")).await;
    assert_eq!(data["fileLength"], v2.len());
    let info = wait_success(&s, &id, Duration::from_secs(20)).await;
    assert_ne!(info["realMd5"], md5_v1.as_str(), "realMd5 changes with the content");
    assert_eq!(info["realMd5"], hex(&Md5::digest(&v2)));
    let st3 = origin.stats("/reval.bin");
    assert_eq!(st3.requests, 3, "{st3:?}");
    assert_eq!(st3.body_requests, 2, "{st3:?}");
    assert_eq!(st3.body_bytes, v1.len() as u64 + v2.len() as u64, "{st3:?}");
    verify_cached(&s, &id, &url, &origin.content("/reval.bin"), &info).await;
}

/// A cached copy without validators cannot be revalidated: it is downloaded again.
#[actix_web::test]
async fn cached_copy_without_validators_is_downloaded_again() {
    let s = testkit::start().await;
    let origin = Origin::start().await;
    let content = salted_bytes(100_000, 41);
    origin.add("/noval.bin", content.clone());
    origin.set_validators("/noval.bin", false);
    let url = origin.url("/noval.bin");
    let id = register_url(&s, &url, "c-1").await;
    wait_success(&s, &id, Duration::from_secs(20)).await;
    let (status, _) = testkit::delete(&s, &format!("/api/v1/tasks/{id}")).await;
    assert_eq!(status, 204);
    register_url(&s, &url, "c-2").await;
    let info = wait_success(&s, &id, Duration::from_secs(20)).await;
    let st = origin.stats("/noval.bin");
    assert_eq!(st.requests, 2, "{st:?}");
    assert_eq!(st.conditional, 0, "nothing to send a conditional GET with: {st:?}");
    assert_eq!(st.body_requests, 2, "downloaded again: {st:?}");
    verify_cached(&s, &id, &url, &origin.content("/noval.bin"), &info).await;
}

// ---------------------------------------------------------------------------------------
// the CDN metrics: bytes fetched from sources, cache hits, run durations
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn cdn_metrics_count_bytes_hits_and_durations() {
    let s = testkit::start().await;
    let origin = Origin::start().await;
    let len = 2 * MIB + 3;
    origin.add_generated("/m.bin", 5, len);
    let url = origin.url("/m.bin");
    let id = register_url(&s, &url, "c-1").await;
    wait_success(&s, &id, Duration::from_secs(20)).await;

    let m = testkit::metrics(&s).await;
    assert_eq!(
        m.get("dragonfly_supernode_cdn_download_size_bytes_total", &[]),
        Some(len as f64),
        "bytes fetched from the source"
    );
    assert_eq!(m.get("dragonfly_supernode_cdn_duration_seconds_count", &[]), Some(1.0), "one CDN duration observed");
    assert!(m.get("dragonfly_supernode_cdn_cache_hit_total", &[]).unwrap_or(0.0) == 0.0, "no hit yet");

    // a 304 reuse is a cache hit and fetches nothing
    let (status, _) = testkit::delete(&s, &format!("/api/v1/tasks/{id}")).await;
    assert_eq!(status, 204);
    register_url(&s, &url, "c-2").await;
    wait_success(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(origin.stats("/m.bin").not_modified, 1);
    let m = testkit::metrics(&s).await;
    assert_eq!(m.get("dragonfly_supernode_cdn_cache_hit_total", &[]), Some(1.0));
    assert_eq!(m.get("dragonfly_supernode_cdn_download_size_bytes_total", &[]), Some(len as f64), "no bytes for a 304");
    assert_eq!(m.get("dragonfly_supernode_cdn_duration_seconds_count", &[]), Some(2.0));
    assert!(m.get("dragonfly_supernode_cdn_duration_seconds_bucket", &[]).is_some());
}
