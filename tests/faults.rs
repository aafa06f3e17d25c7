//! Faults: the origin drops the connection mid-body, stalls, or never answers its head; the
//! supernode is killed with SIGKILL mid-CDN and restarted on the same home; the cache quota is
//! smaller than a file; the cache directory cannot be made. Each time the task fails with a
//! reason, its clients are told (`/peer/task` answers 604 for a FAILED task, with the reason
//! in `msg`), nothing half-written is served, and the server keeps serving.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::origin::{salted_bytes, Content, Origin};
use testkit::protocol::url_task_id;
use testkit::{
    cache_dir, config_with, data_path, dfget_body, eventually, first_poll, get_json, task_info, wait_done,
    wait_success, ChildServer, Control,
};

const MIB: u64 = 1024 * 1024;
/// The piece size of every source up to 200 MiB.
const PIECE: u64 = 4 * MIB;
/// Payload bytes per piece: a piece is framed by a 4-byte header and a 1-byte trailer.
const PAYLOAD: u64 = PIECE - 5;

// ---------------------------------------------------------------------------------------
// helpers; the control API ones work with the in-process server and the child process alike
// ---------------------------------------------------------------------------------------

/// A successful registration of `url` for client `cid`; returns the task ID.
async fn register_ok(s: &impl Control, url: &str, cid: &str) -> String {
    let data = testkit::register(s, &dfget_body(url, cid)).await;
    let id = data["taskId"].as_str().expect("taskId").to_string();
    assert_eq!(id, url_task_id(url), "{data}");
    id
}

/// A FAILED task's client is told so: 604 with the reason in `msg`.
async fn assert_client_told_604(s: &impl Control, cid: &str, id: &str) {
    let v = first_poll(s, cid, id).await;
    assert_eq!(v["code"], 604, "/peer/task of a FAILED task answers 604: {v}");
    assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "604 without a reason: {v}");
}

fn tmp_path(home: &Path, id: &str) -> PathBuf {
    cache_dir(home, id).join(format!("{id}.tmp"))
}

/// The download port's answer for `id`: status and body.
async fn download(dl: SocketAddr, id: &str, range: Option<String>) -> (u16, Vec<u8>) {
    let (status, _, body) = testkit::download(dl, id, range).await;
    (status, body)
}

/// Piece `p` of `source` as the CDN frames it: a big-endian header `payload length |
/// pieceSize << 4`, the payload, 0x7F.
fn framed_piece(source: &Content, p: u64) -> Vec<u8> {
    let payload_len = (source.len() - p * PAYLOAD).min(PAYLOAD);
    let mut piece = Vec::with_capacity(payload_len as usize + 5);
    piece.extend_from_slice(&(payload_len as u32 | ((PIECE as u32) << 4)).to_be_bytes());
    piece.extend_from_slice(&source.slice(p * PAYLOAD, payload_len as usize));
    piece.push(0x7F);
    piece
}

/// Every piece of a SUCCESS task, read from the download port at `dl`, is byte-identical to
/// the source.
async fn assert_served_identical(dl: SocketAddr, id: &str, source: &Content) {
    let count = source.len().div_ceil(PAYLOAD).max(1);
    for p in 0..count {
        let range = format!("bytes={}-{}", p * PIECE, p * PIECE + PIECE - 1);
        let (status, body) = download(dl, id, Some(range.clone())).await;
        assert_eq!(status, 206, "piece {p} ({range}) of {id}");
        assert!(
            body == framed_piece(source, p),
            "piece {p} of {id} from the download port differs from the source ({} bytes)",
            body.len()
        );
    }
}

/// Files the CDN run left for `id`: neither the data file nor its temporary file.
fn no_cache_files(home: &Path, id: &str) -> bool {
    !data_path(home, id).exists() && !tmp_path(home, id).exists()
}

// ---------------------------------------------------------------------------------------
// the origin drops the connection mid-body
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// the origin stalls
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// cache quota smaller than the file
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// cache directory not writable
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// SIGKILL mid-CDN and restart (the real binary)
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn sigkill_mid_cdn_keeps_complete_files_and_discards_half_written_ones() {
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

    // restart on the same home
    let second = ChildServer::start(exe, home.path());

    // B: the half-written file is gone and not served, and the task is not known as complete
    assert!(!tmp_path(home.path(), &id_b).exists(), "B's .tmp is deleted at start");
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

    // B again: fetched from scratch (the origin still holds half way, then resumes)
    let b_before = origin.stats("/b.bin");
    assert_eq!(register_ok(&second, &url_b, "127.0.0.1-4-4.000").await, id_b);
    let (status, body) =
        download(second.download(), &id_b, Some(format!("bytes={}-{}", 9 * PIECE, 10 * PIECE - 1))).await;
    assert!(!(200..300).contains(&status), "an unwritten piece of B was served: {status}, {} bytes", body.len());
    origin.resume("/b.bin");
    let info_b = wait_success(&second, &id_b, Duration::from_secs(40)).await;
    let content_b = origin.content("/b.bin");
    let st = origin.stats("/b.bin");
    assert_eq!(st.body_requests, b_before.body_requests + 1, "one new fetch of B: {st:?}");
    assert!(st.ranges.is_empty(), "B fetched from scratch, not resumed: {st:?}");
    assert!(!tmp_path(home.path(), &id_b).exists());
    let src = content_b.clone();
    let md5_b = tokio::task::spawn_blocking(move || src.md5_hex()).await.unwrap();
    assert_eq!(info_b["realMd5"], md5_b, "{info_b}");
    assert_served_identical(second.download(), &id_b, &content_b).await;
    drop(second);
}
