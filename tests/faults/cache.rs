//! The cache quota is smaller than a file; the cache directory cannot be made.

use super::*;

#[actix_web::test]
async fn file_over_the_cache_quota_fails_and_others_are_still_served() {
    let config = config_with(|c| c.cdn.cache_quota_bytes = MIB);
    let s = testkit::start_with(config).await;
    let home = s.home_path();
    let origin = Origin::start().await;
    origin.add_generated("/big.bin", 13, 3 * MIB);
    let big = origin.url("/big.bin");

    let id = register_ok(&s, &big, "127.0.0.1-1-1.000").await;
    let info = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["cdnStatus"], "FAILED", "file over the quota → FAILED: {info}");
    let reason = info["errorMsg"].as_str().unwrap_or("");
    assert!(reason.to_ascii_lowercase().contains("quota"), "errorMsg should mention the quota: {info}");
    assert_client_told_604(&s, "127.0.0.1-1-1.000", &id).await;
    eventually(Duration::from_secs(5), "no data file and no .tmp for a file over quota", || async {
        no_cache_files(&home, &id)
    })
    .await;
    let (status, _) = download(s.download(), &id, Some("bytes=0-99".into())).await;
    assert_eq!(status, 404);

    // a small file registers, is cached and served
    let content = salted_bytes(10_000, 9);
    origin.add("/small.bin", content.clone());
    let small = origin.url("/small.bin");
    let small_id = register_ok(&s, &small, "127.0.0.1-2-2.000").await;
    wait_success(&s, &small_id, Duration::from_secs(20)).await;
    assert_served_identical(s.download(), &small_id, &Content::Bytes(content.into())).await;
    let v = first_poll(&s, "127.0.0.1-2-2.000", &small_id).await;
    assert_eq!(v["code"], 601, "{v}");
}

/// The task's cache directory cannot be created (a plain file is in its place; tests run as
/// root, where permission bits would not stop the writer): the task fails with a reason
/// naming the cache, others are served, and once the directory can be made a new
/// registration succeeds.
#[actix_web::test]
async fn unwritable_cache_directory_fails_the_task_and_others_are_still_served() {
    let s = testkit::start().await;
    let home = s.home_path();
    let origin = Origin::start().await;
    origin.add_generated("/blocked.bin", 21, 2 * MIB);
    let blocked = origin.url("/blocked.bin");
    let id = url_task_id(&blocked);
    let other = (0..)
        .map(|i| format!("/other-{i}.bin"))
        .find(|p| url_task_id(&origin.url(p))[..3] != id[..3])
        .unwrap_or_default();
    origin.add_generated(&other, 22, 2 * MIB);

    let dir = cache_dir(&home, &id);
    std::fs::create_dir_all(dir.parent().unwrap_or(&home)).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();

    register_ok(&s, &blocked, "127.0.0.1-1-1.000").await;
    let info = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["cdnStatus"], "FAILED", "{info}");
    let reason = info["errorMsg"].as_str().unwrap_or("");
    assert!(reason.contains("cache not writable"), "errorMsg names the cache: {info}");
    assert_client_told_604(&s, "127.0.0.1-1-1.000", &id).await;

    let other_id = register_ok(&s, &origin.url(&other), "127.0.0.1-2-2.000").await;
    wait_success(&s, &other_id, Duration::from_secs(20)).await;
    assert_served_identical(s.download(), &other_id, &origin.content(&other)).await;

    std::fs::remove_file(&dir).unwrap();
    register_ok(&s, &blocked, "127.0.0.1-3-3.000").await;
    wait_success(&s, &id, Duration::from_secs(20)).await;
    assert_served_identical(s.download(), &id, &origin.content("/blocked.bin")).await;
}
