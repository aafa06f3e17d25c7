//! Issue 7 item 3: faults. The origin drops the connection mid-body, stalls, or never answers
//! its head; the supernode is killed with SIGKILL mid-CDN and restarted on the same home; the
//! cache quota is smaller than a file. Each time the task fails with a reason, its clients are
//! told (604, §16 P12), nothing half-written is served (§16 P13), and the server keeps serving.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::origin::{Content, Origin};
use common::TestServer;
use common::{
    cache_dir, data_path, dfget_body, eventually, get_json, task_info, url_task_id, wait_done, wait_success, Control,
};
use serde_json::Value;
use supernode::config::Config;

const MIB: u64 = 1024 * 1024;
/// Piece size for every source up to 200 MiB (§5.1).
const PIECE: u64 = 4 * MIB;
/// Payload bytes per piece.
const PAYLOAD: u64 = PIECE - 5;

// ---------------------------------------------------------------------------------------
// helpers (after tests/cdn.rs), addressed by base URL so they also work with a child process
// ---------------------------------------------------------------------------------------

/// A supernode to talk to: its control base URL and its download port's address.
#[derive(Clone)]
struct Node {
    ctl: String,
    dl: SocketAddr,
    home: PathBuf,
}

impl Control for Node {
    fn control_url(&self, path: &str) -> String {
        self.url(path)
    }
}

impl Node {
    fn of(s: &TestServer) -> Node {
        Node { ctl: format!("http://{}", s.control()), dl: s.download(), home: s.home_path() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.ctl, path)
    }
}

/// `POST /peer/registry`: HTTP status and the parsed ResultInfo.
async fn register_raw(n: &Node, body: &Value) -> (u16, Value) {
    let mut res = common::client()
        .post(n.url("/peer/registry"))
        .insert_header(("Content-Type", "application/json;charset=utf-8"))
        .send_body(body.to_string())
        .await
        .expect("registration sent");
    let bytes = res.body().limit(1 << 20).await.expect("body read");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (res.status().as_u16(), common::json(&text))
}

/// A successful registration of `url` for client `cid`; returns the task ID.
async fn register_ok(n: &Node, url: &str, cid: &str) -> String {
    let (status, v) = register_raw(n, &dfget_body(url, cid)).await;
    assert_eq!(status, 200, "registration of {url} → {v}");
    assert_eq!(v["code"], 200, "registration of {url} → {v}");
    let id = v["data"]["taskId"].as_str().expect("taskId").to_string();
    assert_eq!(id, url_task_id(url), "{v}");
    id
}

/// dfget's first `/peer/task` poll (status 700) for client `cid` (§3.2): the ResultInfo.
async fn first_poll(n: &Node, cid: &str, id: &str) -> Value {
    let path = format!("/peer/task?srcCid={cid}&dstCid=&range=&result=502&status=700&taskId={id}");
    let (status, v) = get_json(n, &path).await;
    assert_eq!(status, 200, "{path} → {v}");
    v
}

/// A FAILED task's client is told so: 604 with the reason in `msg` (§16 P12).
async fn assert_client_told_604(n: &Node, cid: &str, id: &str) {
    let v = first_poll(n, cid, id).await;
    assert_eq!(v["code"], 604, "/peer/task of a FAILED task (§16 P12): {v}");
    assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "604 without a reason: {v}");
}

fn tmp_path(home: &Path, id: &str) -> PathBuf {
    cache_dir(home, id).join(format!("{id}.tmp"))
}

/// GET on the download port with an optional Range: status and body.
async fn download(n: &Node, id: &str, range: Option<String>) -> (u16, Vec<u8>) {
    let url = format!("http://{}/download/{}/{}", n.dl, &id[..3], id);
    let mut req = common::client().get(url);
    if let Some(r) = range {
        req = req.insert_header(("Range", r));
    }
    let mut res = req.send().await.expect("download request sent");
    let body = res.body().limit(64 << 20).await.expect("download body");
    (res.status().as_u16(), body.to_vec())
}

/// Piece `p` of `source` as the CDN frames it (§5.4): header, payload, 0x7F.
fn framed_piece(source: &Content, p: u64) -> Vec<u8> {
    let payload_len = (source.len() - p * PAYLOAD).min(PAYLOAD);
    let mut piece = Vec::with_capacity(payload_len as usize + 5);
    piece.extend_from_slice(&(payload_len as u32 | ((PIECE as u32) << 4)).to_be_bytes());
    piece.extend_from_slice(&source.slice(p * PAYLOAD, payload_len as usize));
    piece.push(0x7F);
    piece
}

/// Every piece of a SUCCESS task, read from the download port, is byte-identical to the source.
async fn assert_served_identical(n: &Node, id: &str, source: &Content) {
    let count = source.len().div_ceil(PAYLOAD).max(1);
    for p in 0..count {
        let range = format!("bytes={}-{}", p * PIECE, p * PIECE + PIECE - 1);
        let (status, body) = download(n, id, Some(range.clone())).await;
        assert_eq!(status, 206, "piece {p} ({range}) of {id}");
        assert!(
            body == framed_piece(source, p),
            "piece {p} of {id} from the download port differs from the source ({} bytes)",
            body.len()
        );
    }
}

fn small_bytes(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 8) as u8).collect()
}

fn config_with(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    f(&mut c);
    c
}

// ---------------------------------------------------------------------------------------
// the origin drops the connection mid-body
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn origin_drops_connection_mid_body_then_a_new_registration_succeeds() {
    let s = common::start().await;
    let n = Node::of(&s);
    let origin = Origin::start().await;
    origin.add_generated("/drop.bin", 11, 10 * MIB);
    origin.fail_after("/drop.bin", 5 * MIB + 7);
    let url = origin.url("/drop.bin");

    let id = register_ok(&n, &url, "127.0.0.1-1-1.000").await;
    let info = wait_done(&n, &id, Duration::from_secs(20)).await;
    assert_eq!(info["cdnStatus"], "FAILED", "body cut off → FAILED (§16 P12): {info}");
    let reason = info["errorMsg"].as_str().unwrap_or("");
    assert!(!reason.is_empty(), "FAILED without errorMsg: {info}");
    assert!(info.get("realMd5").is_none(), "{info}");

    // the registered client is told: 604 with the reason
    assert_client_told_604(&n, "127.0.0.1-1-1.000", &id).await;

    // nothing half-written stays on disk or is served
    eventually("no data file and no .tmp after a failed run", || {
        !data_path(&n.home, &id).exists() && !tmp_path(&n.home, &id).exists()
    })
    .await;
    let (status, body) = download(&n, &id, Some(format!("bytes=0-{}", PIECE - 1))).await;
    assert_eq!(status, 404, "a failed task is not served ({} bytes)", body.len());

    // the origin is healthy again: the next registration fetches from scratch and succeeds
    origin.stop_failing("/drop.bin");
    assert_eq!(register_ok(&n, &url, "127.0.0.1-2-2.000").await, id);
    let info = wait_success(&n, &id, Duration::from_secs(30)).await;
    assert!(info.get("errorMsg").is_none(), "stale errorMsg: {info}");
    let content = origin.content("/drop.bin");
    assert_eq!(info["realMd5"], content.md5_hex(), "{info}");
    let st = origin.stats("/drop.bin");
    assert_eq!(st.body_requests, 2, "one failed and one new fetch: {st:?}");
    assert!(st.ranges.is_empty(), "fetched from scratch: {st:?}");
    assert!(!tmp_path(&n.home, &id).exists());
    assert_served_identical(&n, &id, &content).await;
    // the new client is scheduled normally
    let v = first_poll(&n, "127.0.0.1-2-2.000", &id).await;
    assert_eq!(v["code"], 601, "{v}");
}

// ---------------------------------------------------------------------------------------
// the origin stalls
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn origin_stalling_mid_body_fails_the_task_after_the_stall_timeout() {
    let config = config_with(|c| c.cdn.source_stall_timeout = Duration::from_secs(1));
    let s = common::start_with(config).await;
    let n = Node::of(&s);
    let origin = Origin::start().await;
    origin.add_generated("/stall.bin", 12, 10 * MIB);
    origin.pause_after("/stall.bin", 6 * MIB);
    let url = origin.url("/stall.bin");

    let started = Instant::now();
    let id = register_ok(&n, &url, "127.0.0.1-1-1.000").await;
    let info = wait_done(&n, &id, Duration::from_secs(10)).await;
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
    assert_client_told_604(&n, "127.0.0.1-1-1.000", &id).await;
    eventually("no data file and no .tmp after a stalled run", || {
        !data_path(&n.home, &id).exists() && !tmp_path(&n.home, &id).exists()
    })
    .await;

    // the origin recovers: a new registration succeeds
    origin.resume("/stall.bin");
    register_ok(&n, &url, "127.0.0.1-2-2.000").await;
    let info = wait_success(&n, &id, Duration::from_secs(30)).await;
    assert_eq!(info["realMd5"], origin.content("/stall.bin").md5_hex());
}

#[actix_web::test]
async fn origin_never_answering_its_head_gets_607_before_dfget_gives_up() {
    let config = config_with(|c| c.cdn.source_head_timeout = Duration::from_secs(1));
    let s = common::start_with(config).await;
    let n = Node::of(&s);
    let origin = Origin::start().await;
    origin.add("/silent.bin", small_bytes(1000, 1));
    origin.set_delay("/silent.bin", Duration::from_secs(12));
    let url = origin.url("/silent.bin");

    let started = Instant::now();
    let (status, v) = register_raw(&n, &dfget_body(&url, "127.0.0.1-1-1.000")).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["code"], 607, "no response head → 607 (§16 P8): {v}");
    assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "607 names the cause: {v}");
    assert!(elapsed < Duration::from_secs(5), "dfget gives up after 5 s; the registration took {elapsed:?}");
    assert!(origin.stats("/silent.bin").requests >= 1);
    // the server is fine: another source registers and is cached
    origin.add("/ok.bin", small_bytes(5000, 2));
    let ok = origin.url("/ok.bin");
    let id = register_ok(&n, &ok, "127.0.0.1-2-2.000").await;
    wait_success(&n, &id, Duration::from_secs(20)).await;
}

// ---------------------------------------------------------------------------------------
// cache quota smaller than the file
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn file_over_the_cache_quota_fails_and_others_are_still_served() {
    let config = config_with(|c| c.cdn.cache_quota_bytes = MIB);
    let s = common::start_with(config).await;
    let n = Node::of(&s);
    let origin = Origin::start().await;
    origin.add_generated("/big.bin", 13, 3 * MIB);
    let big = origin.url("/big.bin");

    let id = register_ok(&n, &big, "127.0.0.1-1-1.000").await;
    let info = wait_done(&n, &id, Duration::from_secs(20)).await;
    assert_eq!(info["cdnStatus"], "FAILED", "file over the quota → FAILED: {info}");
    let reason = info["errorMsg"].as_str().unwrap_or("");
    assert!(reason.to_ascii_lowercase().contains("quota"), "errorMsg should mention the quota: {info}");
    assert_client_told_604(&n, "127.0.0.1-1-1.000", &id).await;
    eventually("no data file and no .tmp for a file over quota", || {
        !data_path(&n.home, &id).exists() && !tmp_path(&n.home, &id).exists()
    })
    .await;
    let (status, _) = download(&n, &id, Some("bytes=0-99".into())).await;
    assert_eq!(status, 404);

    // a small file registers, is cached and served
    let content = small_bytes(10_000, 9);
    origin.add("/small.bin", content.clone());
    let small = origin.url("/small.bin");
    let small_id = register_ok(&n, &small, "127.0.0.1-2-2.000").await;
    wait_success(&n, &small_id, Duration::from_secs(20)).await;
    assert_served_identical(&n, &small_id, &Content::Bytes(content.into())).await;
    let v = first_poll(&n, "127.0.0.1-2-2.000", &small_id).await;
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
    let s = common::start().await;
    let n = Node::of(&s);
    let origin = Origin::start().await;
    origin.add_generated("/blocked.bin", 21, 2 * MIB);
    let blocked = origin.url("/blocked.bin");
    let id = url_task_id(&blocked);
    let other = (0..)
        .map(|i| format!("/other-{i}.bin"))
        .find(|p| url_task_id(&origin.url(p))[..3] != id[..3])
        .unwrap_or_default();
    origin.add_generated(&other, 22, 2 * MIB);

    let dir = cache_dir(&n.home, &id);
    std::fs::create_dir_all(dir.parent().unwrap_or(&n.home)).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();

    register_ok(&n, &blocked, "127.0.0.1-1-1.000").await;
    let info = wait_done(&n, &id, Duration::from_secs(20)).await;
    assert_eq!(info["cdnStatus"], "FAILED", "{info}");
    let reason = info["errorMsg"].as_str().unwrap_or("");
    assert!(reason.contains("cache not writable"), "errorMsg names the cache: {info}");
    assert_client_told_604(&n, "127.0.0.1-1-1.000", &id).await;

    let other_id = register_ok(&n, &origin.url(&other), "127.0.0.1-2-2.000").await;
    wait_success(&n, &other_id, Duration::from_secs(20)).await;
    assert_served_identical(&n, &other_id, &origin.content(&other)).await;

    std::fs::remove_file(&dir).unwrap();
    register_ok(&n, &blocked, "127.0.0.1-3-3.000").await;
    wait_success(&n, &id, Duration::from_secs(20)).await;
    assert_served_identical(&n, &id, &origin.content("/blocked.bin")).await;
}

// ---------------------------------------------------------------------------------------
// SIGKILL mid-CDN and restart (the real binary)
// ---------------------------------------------------------------------------------------

fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral port");
    l.local_addr().unwrap().port()
}

/// The supernode binary as a child process; killed (SIGKILL) when dropped.
struct ChildNode {
    child: Child,
    node: Node,
    log: PathBuf,
}

impl ChildNode {
    async fn spawn(home: &Path, log: PathBuf) -> ChildNode {
        let (port, download_port) = (free_port(), free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_supernode"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SUPERNODE_") {
                cmd.env_remove(key);
            }
        }
        cmd.arg("--port")
            .arg(port.to_string())
            .arg("--download-port")
            .arg(download_port.to_string())
            .arg("--home-dir")
            .arg(home)
            .args(["--advertise-ip", "127.0.0.1", "--listen-host", "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let child = cmd.spawn().expect("spawn supernode");
        let mut c = ChildNode {
            child,
            node: Node {
                ctl: format!("http://127.0.0.1:{port}"),
                dl: SocketAddr::from((Ipv4Addr::LOCALHOST, download_port)),
                home: home.to_path_buf(),
            },
            log,
        };
        c.wait_ready().await;
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_ready(&mut self) {
        let start = Instant::now();
        let client = awc::Client::builder().timeout(Duration::from_secs(1)).finish();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("supernode exited with {status}:\n{}", self.log());
            }
            if let Ok(res) = client.get(self.node.url("/_ping")).send().await {
                if res.status().as_u16() == 200 {
                    return;
                }
            }
            assert!(start.elapsed() < Duration::from_secs(15), "supernode did not answer /_ping:\n{}", self.log());
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, then reap.
    fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        let status = self.child.wait().expect("wait");
        assert!(!status.success(), "killed child exited cleanly: {status}");
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_web::test]
async fn sigkill_mid_cdn_keeps_complete_files_and_discards_half_written_ones() {
    let home = tempfile::tempdir().expect("home");
    let logs = tempfile::tempdir().expect("logs");
    let origin = Origin::start().await;
    // A: complete before the crash (two pieces)
    origin.add_generated("/a.bin", 21, 6 * MIB);
    let url_a = origin.url("/a.bin");
    // B: the body holds half way, so the CDN run is RUNNING with a .tmp when the process dies
    let len_b = 40 * MIB;
    origin.add_generated("/b.bin", 22, len_b);
    origin.pause_after("/b.bin", len_b / 2);
    let url_b = origin.url("/b.bin");

    let mut first = ChildNode::spawn(home.path(), logs.path().join("first.log")).await;
    let n1 = first.node.clone();
    let id_a = register_ok(&n1, &url_a, "127.0.0.1-1-1.000").await;
    let info_a = wait_success(&n1, &id_a, Duration::from_secs(30)).await;
    let id_b = register_ok(&n1, &url_b, "127.0.0.1-2-2.000").await;
    // wait until B has pieces in its temporary file and the origin holds the rest
    let start = Instant::now();
    loop {
        let tmp_len = std::fs::metadata(tmp_path(home.path(), &id_b)).map_or(0, |m| m.len());
        let sent = origin.stats("/b.bin").body_bytes;
        if sent >= len_b / 2 && tmp_len >= 4 * PIECE {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "B never got half way: origin sent {sent}, .tmp has {tmp_len}\n{}",
            first.log()
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(task_info(&n1, &id_b).await["cdnStatus"], "RUNNING");
    assert!(!data_path(home.path(), &id_b).exists());

    first.kill9();
    assert!(tmp_path(home.path(), &id_b).exists(), "the killed process left B's .tmp behind (precondition)");
    let a_before = origin.stats("/a.bin");

    // restart on the same home
    let second = ChildNode::spawn(home.path(), logs.path().join("second.log")).await;
    let n2 = second.node.clone();

    // B: the half-written file is gone and not served, and the task is not known as complete
    assert!(!tmp_path(home.path(), &id_b).exists(), "B's .tmp is deleted at start (§16 P13)");
    assert!(!data_path(home.path(), &id_b).exists());
    let (status, _) = get_json(&n2, &format!("/api/v1/tasks/{id_b}")).await;
    assert_eq!(status, 404, "B is not known after the restart");
    for range in [None, Some(format!("bytes=0-{}", PIECE - 1))] {
        let (status, body) = download(&n2, &id_b, range.clone()).await;
        assert_eq!(status, 404, "B ({range:?}) served after the restart: {} bytes", body.len());
    }

    // A: SUCCESS at once, with no origin request, byte-identical from the download port
    let info = task_info(&n2, &id_a).await;
    assert_eq!(info["cdnStatus"], "SUCCESS", "A after the restart: {info}");
    for key in ["fileLength", "httpFileLength", "pieceTotal", "realMd5"] {
        assert_eq!(info[key], info_a[key], "A's {key} after the restart");
    }
    assert_eq!(register_ok(&n2, &url_a, "127.0.0.1-3-3.000").await, id_a);
    assert_eq!(task_info(&n2, &id_a).await["cdnStatus"], "SUCCESS");
    let content_a = origin.content("/a.bin");
    assert_served_identical(&n2, &id_a, &content_a).await;
    assert_eq!(origin.stats("/a.bin"), a_before, "no origin request for a complete cached file after the restart");
    let v = first_poll(&n2, "127.0.0.1-3-3.000", &id_a).await;
    assert_eq!(v["code"], 601, "A is scheduled from the cache: {v}");

    // B again: fetched from scratch (the origin still holds half way, then resumes)
    let b_before = origin.stats("/b.bin");
    assert_eq!(register_ok(&n2, &url_b, "127.0.0.1-4-4.000").await, id_b);
    let (status, body) = download(&n2, &id_b, Some(format!("bytes={}-{}", 9 * PIECE, 10 * PIECE - 1))).await;
    assert!(!(200..300).contains(&status), "an unwritten piece of B was served: {status}, {} bytes", body.len());
    origin.resume("/b.bin");
    let info_b = wait_success(&n2, &id_b, Duration::from_secs(40)).await;
    let content_b = origin.content("/b.bin");
    let st = origin.stats("/b.bin");
    assert_eq!(st.body_requests, b_before.body_requests + 1, "one new fetch of B: {st:?}");
    assert!(st.ranges.is_empty(), "B fetched from scratch, not resumed: {st:?}");
    assert!(!tmp_path(home.path(), &id_b).exists());
    let src = content_b.clone();
    let md5_b = tokio::task::spawn_blocking(move || src.md5_hex()).await.unwrap();
    assert_eq!(info_b["realMd5"], md5_b, "{info_b}");
    assert_served_identical(&n2, &id_b, &content_b).await;
    drop(second);
}
