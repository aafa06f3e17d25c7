//! SIGKILL mid-CDN and a restart of the real binary on the same home.

use super::*;

/// A: finished before the kill, served again with no origin request. B: interrupted half
/// way, never served, and resumed after its kept pieces with one `Range` request.
#[actix_web::test]
async fn sigkill_mid_cdn_keeps_complete_files_and_resumes_half_written_ones() {
    let home = tempfile::tempdir().expect("home");
    let origin = Origin::start().await;
    // A: complete before the crash (two pieces)
    origin.add_generated("/a.bin", 21, 6 * MIB);
    let url_a = origin.url("/a.bin");
    // B: the body holds half way, so the CDN run is RUNNING with a .tmp when the process dies
    let len_b = 40 * MIB;
    origin.add_generated("/b.bin", 22, len_b);
    origin.pause_after("/b.bin", len_b / 2);
    let url_b = origin.url("/b.bin");

    let exe = env!("CARGO_BIN_EXE_supernode");
    let mut first = ChildServer::start(exe, home.path());
    let id_a = register_ok(&first, &url_a, "127.0.0.1-1-1.000").await;
    let info_a = wait_success(&first, &id_a, Duration::from_secs(30)).await;
    let id_b = register_ok(&first, &url_b, "127.0.0.1-2-2.000").await;
    // wait until B has pieces in its temporary file and the origin holds the rest
    testkit::poll_until(Duration::from_secs(30), "B gets half way", || async {
        let tmp_len = std::fs::metadata(tmp_path(home.path(), &id_b)).map_or(0, |m| m.len());
        let sent = origin.stats("/b.bin").body_bytes;
        if sent >= len_b / 2 && tmp_len >= 4 * PIECE {
            Ok(())
        } else {
            Err(format!("origin sent {sent}, .tmp has {tmp_len}\n{}", first.log()))
        }
    })
    .await;
    assert_eq!(task_info(&first, &id_b).await["cdnStatus"], "RUNNING");
    assert!(!data_path(home.path(), &id_b).exists());

    let killed = first.kill();
    assert!(!killed.success(), "killed child exited cleanly: {killed}");
    assert!(tmp_path(home.path(), &id_b).exists(), "the killed process left B's .tmp behind (precondition)");
    let a_before = origin.stats("/a.bin");

    let kept_pieces = std::fs::metadata(tmp_path(home.path(), &id_b)).map_or(0, |m| m.len()) / PIECE;

    // restart on the same home
    let second = ChildServer::start(exe, home.path());

    // B: the half-written file is kept for a resume, but not served nor known as a task
    assert!(tmp_path(home.path(), &id_b).exists(), "B's .tmp is kept at start\n{}", second.log());
    assert!(!data_path(home.path(), &id_b).exists());
    let (status, _) = get_json(&second, &format!("/api/v1/tasks/{id_b}")).await;
    assert_eq!(status, 404, "B is not known after the restart");
    for range in [None, Some(format!("bytes=0-{}", PIECE - 1))] {
        let (status, body) = download(second.download(), &id_b, range.clone()).await;
        assert_eq!(status, 404, "B ({range:?}) served after the restart: {} bytes", body.len());
    }

    // A: SUCCESS at once, with no origin request, byte-identical from the download port
    let info = task_info(&second, &id_a).await;
    assert_eq!(info["cdnStatus"], "SUCCESS", "A after the restart: {info}");
    for key in ["fileLength", "httpFileLength", "pieceTotal", "realMd5"] {
        assert_eq!(info[key], info_a[key], "A's {key} after the restart");
    }
    assert_eq!(register_ok(&second, &url_a, "127.0.0.1-3-3.000").await, id_a);
    assert_eq!(task_info(&second, &id_a).await["cdnStatus"], "SUCCESS");
    let content_a = origin.content("/a.bin");
    assert_served_identical(second.download(), &id_a, &content_a).await;
    assert_eq!(origin.stats("/a.bin"), a_before, "no origin request for a complete cached file after the restart");
    let v = first_poll(&second, "127.0.0.1-3-3.000", &id_a).await;
    assert_eq!(v["code"], 601, "A is scheduled from the cache: {v}");

    // B again: the kept pieces are checked and the source sends only the rest
    let b_before = origin.stats("/b.bin");
    origin.resume("/b.bin");
    assert_eq!(register_ok(&second, &url_b, "127.0.0.1-4-4.000").await, id_b);
    let info_b = wait_success(&second, &id_b, Duration::from_secs(40)).await;
    let content_b = origin.content("/b.bin");
    let st = origin.stats("/b.bin");
    let offset = kept_pieces * PAYLOAD;
    assert!(kept_pieces >= 3, "B had pieces on disk: {kept_pieces}");
    assert_eq!(st.body_requests, b_before.body_requests + 1, "one new fetch of B: {st:?}");
    assert_eq!(st.ranges, [format!("bytes={offset}-")], "B resumed after its kept pieces: {st:?}");
    assert_eq!(st.bodies.last(), Some(&(len_b - offset)), "only the rest was sent: {st:?}");
    assert!(!tmp_path(home.path(), &id_b).exists());
    assert_md5_and_pieces(&second, &info_b, &id_b, &content_b).await;
    let v = first_poll(&second, "127.0.0.1-4-4.000", &id_b).await;
    assert_eq!(v["code"], 601, "B is scheduled from the cache: {v}");
}

/// C changed at the source while the supernode was down: its `If-Range` no longer matches, the
/// source sends the whole new file, and that is what is cached. D's source sends no
/// validators: nothing proves the rest would belong to the same file, so its temporary file
/// is deleted at start and it is fetched from scratch.
#[actix_web::test]
async fn after_a_sigkill_a_changed_source_or_one_without_validators_is_fetched_again() {
    let home = tempfile::tempdir().expect("home");
    let origin = Origin::start().await;
    let len = 24 * MIB;
    origin.add("/c.bin", salted_bytes(len as usize, 31));
    origin.add_generated("/d.bin", 32, len);
    origin.set_validators("/d.bin", false);
    for path in ["/c.bin", "/d.bin"] {
        origin.pause_after(path, len / 2);
    }
    let (url_c, url_d) = (origin.url("/c.bin"), origin.url("/d.bin"));

    let exe = env!("CARGO_BIN_EXE_supernode");
    let mut first = ChildServer::start(exe, home.path());
    let id_c = register_ok(&first, &url_c, "127.0.0.1-1-1.000").await;
    let id_d = register_ok(&first, &url_d, "127.0.0.1-2-2.000").await;
    testkit::poll_until(Duration::from_secs(30), "C and D get half way", || async {
        let on_disk = |id: &str| std::fs::metadata(tmp_path(home.path(), id)).map_or(0, |m| m.len());
        let (c, d) = (on_disk(&id_c), on_disk(&id_d));
        if c >= 2 * PIECE && d >= 2 * PIECE {
            Ok(())
        } else {
            Err(format!(".tmp of C has {c}, of D {d}\n{}", first.log()))
        }
    })
    .await;
    first.kill();

    let second = ChildServer::start(exe, home.path());
    assert!(tmp_path(home.path(), &id_c).exists(), "C's .tmp is kept at start");
    assert!(!tmp_path(home.path(), &id_d).exists(), "D's .tmp is deleted at start");

    origin.replace("/c.bin", salted_bytes(len as usize - 1000, 33));
    let (c_before, d_before) = (origin.stats("/c.bin"), origin.stats("/d.bin"));
    register_ok(&second, &url_c, "127.0.0.1-3-3.000").await;
    register_ok(&second, &url_d, "127.0.0.1-4-4.000").await;
    // both full bodies hold half way again: nothing of theirs is served past what is written
    let (status, body) =
        download(second.download(), &id_c, Some(format!("bytes={}-{}", 5 * PIECE, 6 * PIECE - 1))).await;
    assert!(!(200..300).contains(&status), "an unwritten piece of C was served: {status}, {} bytes", body.len());
    for path in ["/c.bin", "/d.bin"] {
        origin.resume(path);
    }
    for (path, id, before) in [("/c.bin", &id_c, c_before), ("/d.bin", &id_d, d_before)] {
        let info = wait_success(&second, id, Duration::from_secs(40)).await;
        let content = origin.content(path);
        let st = origin.stats(path);
        assert_eq!(st.body_requests, before.body_requests + 1, "{path}: one new fetch: {st:?}");
        assert_eq!(st.bodies.last(), Some(&content.len()), "{path}: the whole file again: {st:?}");
        assert_md5_and_pieces(&second, &info, id, &content).await;
    }
    assert_eq!(origin.stats("/c.bin").ranges.len(), 1, "C asked for the rest once, and got all");
    assert!(origin.stats("/d.bin").ranges.is_empty(), "D was never asked for a range");
}

/// A SUCCESS task's `realMd5` is the source's, and every piece is served byte-identical.
async fn assert_md5_and_pieces(s: &ChildServer, info: &serde_json::Value, id: &str, content: &Content) {
    let src = content.clone();
    let md5 = tokio::task::spawn_blocking(move || src.md5_hex()).await.unwrap();
    assert_eq!(info["realMd5"], md5, "{info}");
    assert_served_identical(s.download(), id, content).await;
}
