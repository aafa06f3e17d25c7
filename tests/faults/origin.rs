//! The origin drops the connection mid-body, stalls, or never answers its head.

use super::*;

#[actix_web::test]
async fn origin_drops_connection_mid_body_then_a_new_registration_succeeds() {
    let s = testkit::start().await;
    let home = s.home_path();
    let origin = Origin::start().await;
    origin.add_generated("/drop.bin", 11, 10 * MIB);
    origin.fail_after("/drop.bin", 5 * MIB + 7);
    let url = origin.url("/drop.bin");

    let id = register_ok(&s, &url, "127.0.0.1-1-1.000").await;
    let info = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["cdnStatus"], "FAILED", "body cut off → FAILED: {info}");
    let reason = info["errorMsg"].as_str().unwrap_or("");
    assert!(!reason.is_empty(), "FAILED without errorMsg: {info}");
    assert!(info.get("realMd5").is_none(), "{info}");

    // the registered client is told: 604 with the reason
    assert_client_told_604(&s, "127.0.0.1-1-1.000", &id).await;

    // nothing half-written stays on disk or is served
    eventually(Duration::from_secs(5), "no data file and no .tmp after a failed run", || async {
        no_cache_files(&home, &id)
    })
    .await;
    let (status, body) = download(s.download(), &id, Some(format!("bytes=0-{}", PIECE - 1))).await;
    assert_eq!(status, 404, "a failed task is not served ({} bytes)", body.len());

    // the origin is healthy again: the next registration fetches from scratch and succeeds
    origin.stop_failing("/drop.bin");
    assert_eq!(register_ok(&s, &url, "127.0.0.1-2-2.000").await, id);
    let info = wait_success(&s, &id, Duration::from_secs(30)).await;
    assert!(info.get("errorMsg").is_none(), "stale errorMsg: {info}");
    let content = origin.content("/drop.bin");
    assert_eq!(info["realMd5"], content.md5_hex(), "{info}");
    let st = origin.stats("/drop.bin");
    assert_eq!(st.body_requests, 2, "one failed and one new fetch: {st:?}");
    assert!(st.ranges.is_empty(), "fetched from scratch: {st:?}");
    assert!(!tmp_path(&home, &id).exists());
    assert_served_identical(s.download(), &id, &content).await;
    // the new client is scheduled normally
    let v = first_poll(&s, "127.0.0.1-2-2.000", &id).await;
    assert_eq!(v["code"], 601, "{v}");
}

#[actix_web::test]
async fn origin_stalling_mid_body_fails_the_task_after_the_stall_timeout() {
    let config = config_with(|c| c.cdn.source_stall_timeout = Duration::from_secs(1));
    let s = testkit::start_with(config).await;
    let home = s.home_path();
    let origin = Origin::start().await;
    origin.add_generated("/stall.bin", 12, 10 * MIB);
    origin.pause_after("/stall.bin", 6 * MIB);
    let url = origin.url("/stall.bin");

    let started = Instant::now();
    let id = register_ok(&s, &url, "127.0.0.1-1-1.000").await;
    let info = wait_done(&s, &id, Duration::from_secs(10)).await;
    let elapsed = started.elapsed();
    assert_eq!(info["cdnStatus"], "FAILED", "stalled source → FAILED: {info}");
    assert!(elapsed < Duration::from_secs(5), "a 1 s stall timeout took {elapsed:?}");
    let reason = info["errorMsg"].as_str().unwrap_or("").to_ascii_lowercase();
    assert!(
        reason.contains("stall")
            || reason.contains("sent nothing")
            || reason.contains("timeout")
            || reason.contains("timed out"),
        "errorMsg should say the source stalled: {info}"
    );
    assert_eq!(origin.stats("/stall.bin").body_requests, 1);
    assert_client_told_604(&s, "127.0.0.1-1-1.000", &id).await;
    eventually(Duration::from_secs(5), "no data file and no .tmp after a stalled run", || async {
        no_cache_files(&home, &id)
    })
    .await;

    // the origin recovers: a new registration succeeds
    origin.resume("/stall.bin");
    register_ok(&s, &url, "127.0.0.1-2-2.000").await;
    let info = wait_success(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(info["realMd5"], origin.content("/stall.bin").md5_hex());
}

#[actix_web::test]
async fn origin_never_answering_its_head_gets_607_before_dfget_gives_up() {
    let config = config_with(|c| c.cdn.source_head_timeout = Duration::from_secs(1));
    let s = testkit::start_with(config).await;
    let origin = Origin::start().await;
    origin.add("/silent.bin", salted_bytes(1000, 1));
    origin.set_delay("/silent.bin", Duration::from_secs(12));
    let url = origin.url("/silent.bin");

    let started = Instant::now();
    let (status, v) = testkit::post_registration(&s, &dfget_body(&url, "127.0.0.1-1-1.000")).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["code"], 607, "no response head → 607: {v}");
    assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "607 names the cause: {v}");
    assert!(elapsed < Duration::from_secs(5), "dfget gives up after 5 s; the registration took {elapsed:?}");
    assert!(origin.stats("/silent.bin").requests >= 1);
    // the server is fine: another source registers and is cached
    origin.add("/ok.bin", salted_bytes(5000, 2));
    let ok = origin.url("/ok.bin");
    let id = register_ok(&s, &ok, "127.0.0.1-2-2.000").await;
    wait_success(&s, &id, Duration::from_secs(20)).await;
}
