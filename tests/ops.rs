//! Issue 6: keeping a long-running supernode healthy, with short intervals.
//! GC of idle peers, clients and tasks (§9.1, §9.2, §16 P16), LRU disk eviction that never
//! removes a file being served (§9.3, §16 P16), heartbeat and restart (§10.1, §16 P5, P17),
//! the seed pattern and `/peer/network` (§16 P17), `/task/metrics` (§3.6, §16 P1) and the
//! metrics that must move (§10.3).
//!
//! Everything runs on 127.0.0.1: the server in-process (tests/common), the origin in-process
//! (tests/common/origin.rs), and dfget driven over HTTP as dfget 1.0.6 would.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::origin::Origin;
use common::TestServer;
use serde_json::{json, Value};
use supernode::config::Config;

const KIB: usize = 1024;
const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------

/// A config with every GC interval short. Disk GC is off unless a test sets a quota
/// (free space is always above a 0-byte threshold).
fn fast_gc() -> Config {
    let mut c = Config::default();
    let g = &mut c.gc;
    g.initial_delay = Duration::from_millis(100);
    g.meta_interval = Duration::from_millis(200);
    g.disk_interval = Duration::from_millis(200);
    g.peer_expire_time = Duration::from_secs(1);
    g.task_expire_time = Duration::from_secs(1);
    g.peer_gc_delay = Duration::from_millis(500);
    g.seed_expire_time = Duration::from_secs(1);
    g.young_gc_threshold = 0;
    g.full_gc_threshold = 0;
    c
}

async fn sleep(d: Duration) {
    actix_web::rt::time::sleep(d).await;
}

fn small_bytes(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 8) as u8).collect()
}

/// A dfget client: where it runs and what it says about itself at registration.
#[derive(Clone, Debug)]
struct Dfget {
    cid: String,
    ip: String,
    host: String,
    port: u16,
}

impl Dfget {
    fn new(cid: &str, ip: &str, host: &str) -> Dfget {
        Dfget { cid: cid.into(), ip: ip.into(), host: host.into(), port: 20001 }
    }

    fn path(&self) -> String {
        format!("/peer/file/ops.bin-{}", self.cid)
    }

    /// The registration body as dfget 1.0.6 sends it (§3.1).
    fn body(&self, url: &str) -> Value {
        json!({
            "superNodeIp": "127.0.0.1",
            "rawUrl": url,
            "taskUrl": url,
            "cid": self.cid,
            "ip": self.ip,
            "hostName": self.host,
            "port": self.port,
            "path": self.path(),
            "version": "1.0.6",
            "pattern": "p2p",
        })
    }

    /// The peer ID this project gives the host (§16 P6).
    fn peer_id(&self) -> String {
        format!("{}-{}", self.host, self.ip)
    }
}

async fn post_json(s: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = common::call(common::client().post(s.url(path)), Some(&body.to_string())).await;
    (status, parse(&text))
}

async fn get_json(s: &TestServer, path: &str) -> (u16, Value) {
    let (status, text) = common::call(common::client().get(s.url(path)), None).await;
    (status, parse(&text))
}

fn parse(text: &str) -> Value {
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(text).unwrap_or(Value::String(text.to_string()))
    }
}

/// `POST /peer/registry`; asserts code 200 and returns `data`.
async fn register_body(s: &TestServer, body: &Value) -> Value {
    let (status, v) = post_json(s, "/peer/registry", body).await;
    assert_eq!(status, 200, "registration {body} → {v}");
    assert_eq!(v["code"], 200, "registration {body} → {v}");
    v["data"].clone()
}

/// Registers `c` for `url`; returns the task ID.
async fn register(s: &TestServer, c: &Dfget, url: &str) -> String {
    let data = register_body(s, &c.body(url)).await;
    data["taskId"].as_str().expect("taskId").to_string()
}

/// `POST /api/v1/tasks` without a client: the task and its CDN run, nobody downloading.
async fn create_task(s: &TestServer, url: &str) -> String {
    let (status, v) = post_json(s, "/api/v1/tasks", &json!({ "rawURL": url })).await;
    assert_eq!(status, 201, "POST /api/v1/tasks {url} → {v}");
    v["ID"].as_str().expect("ID").to_string()
}

async fn task_status(s: &TestServer, id: &str) -> (u16, Value) {
    get_json(s, &format!("/api/v1/tasks/{id}")).await
}

async fn wait_success(s: &TestServer, id: &str, timeout: Duration) -> Value {
    let start = Instant::now();
    loop {
        let (status, v) = task_status(s, id).await;
        assert_eq!(status, 200, "task {id} vanished while waiting for its CDN run: {v}");
        match v["cdnStatus"].as_str() {
            Some("SUCCESS") => return v,
            Some("FAILED") | Some("SOURCE_ERROR") => panic!("task {id} failed: {v}"),
            _ if start.elapsed() > timeout => panic!("task {id} not done after {timeout:?}: {v}"),
            _ => sleep(Duration::from_millis(20)).await,
        }
    }
}

/// One `/peer/task` poll: the reply.
async fn poll(s: &TestServer, id: &str, cid: &str, extra: &str) -> Value {
    let path = if extra.is_empty() {
        format!("/peer/task?srcCid={cid}&dstCid=&range=&result=502&status=700&taskId={id}")
    } else {
        format!("/peer/task?srcCid={cid}&{extra}&taskId={id}")
    };
    let (status, v) = get_json(s, &path).await;
    assert_eq!(status, 200, "{path} → {v}");
    v
}

/// The `/peer/task` code for a client.
async fn poll_code(s: &TestServer, id: &str, cid: &str) -> i64 {
    poll(s, id, cid, "").await["code"].as_i64().expect("code")
}

/// Downloads the whole task as dfget does (§3.0): polls, fetches each piece from the
/// source it is told, reports it; returns the number of pieces fetched. Then sends the
/// `/task/metrics` report once.
async fn download(s: &TestServer, c: &Dfget, id: &str) -> usize {
    let start = Instant::now();
    let mut extra = String::new();
    let mut fetched = 0;
    loop {
        assert!(start.elapsed() < Duration::from_secs(30), "download of {id} by {} did not finish", c.cid);
        let v = poll(s, id, &c.cid, &extra).await;
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
                    let mut res = common::client()
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
            Some(602) | Some(603) => sleep(Duration::from_millis(20)).await,
            _ => panic!("unexpected /peer/task reply for {}: {v}", c.cid),
        }
    }
    fetched
}

fn cache_data_path(home: &Path, id: &str) -> PathBuf {
    home.join("repo").join("download").join(&id[..3]).join(id)
}

/// Prometheus text → (name, labels) → value.
type Samples = Vec<(String, BTreeMap<String, String>, f64)>;

fn parse_metrics(text: &str) -> Samples {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or(rest);
                let mut labels = BTreeMap::new();
                let mut rest = body;
                while let Some((k, after)) = rest.split_once("=\"") {
                    let end = after.find('"').unwrap_or(after.len());
                    labels.insert(k.trim_start_matches(',').trim().to_string(), after[..end].to_string());
                    rest = after.get(end + 1..).unwrap_or("");
                }
                (name.to_string(), labels)
            }
        };
        out.push((name, labels, value));
    }
    out
}

/// Sum of the samples of `name` whose labels include all of `want`; `None` if there is none.
fn metric(samples: &Samples, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for (n, labels, v) in samples {
        if n == name && want.iter().all(|(k, val)| labels.get(*k).map(String::as_str) == Some(*val)) {
            *found.get_or_insert(0.0) += *v;
        }
    }
    found
}

async fn metrics(s: &TestServer) -> Samples {
    let (status, body) = common::call(common::client().get(s.url("/metrics")), None).await;
    assert_eq!(status, 200);
    parse_metrics(&body)
}

async fn gauge(s: &TestServer, name: &str, want: &[(&str, &str)]) -> f64 {
    metric(&metrics(s).await, name, want).unwrap_or(0.0)
}

async fn gc_runs(s: &TestServer, kind: &str) -> f64 {
    gauge(s, "dragonfly_supernode_gc_runs_total", &[("kind", kind)]).await
}

/// Waits until `n` more GC runs of `kind` have completed (so one full run started after now).
async fn wait_gc_runs(s: &TestServer, kind: &str, n: u32) {
    let before = gc_runs(s, kind).await;
    let start = Instant::now();
    while gc_runs(s, kind).await < before + f64::from(n) {
        assert!(start.elapsed() < Duration::from_secs(10), "no {kind} GC run within 10 s (before: {before})");
        sleep(Duration::from_millis(25)).await;
    }
}

/// Polls an async condition for up to `timeout`.
macro_rules! eventually {
    ($timeout:expr, $what:expr, $cond:expr) => {{
        let start = Instant::now();
        loop {
            if $cond {
                break;
            }
            assert!(start.elapsed() < $timeout, "timed out: {}", $what);
            sleep(Duration::from_millis(25)).await;
        }
    }};
}

/// `GET /api/v1/tasks` entry of `id`.
async fn task_summary(s: &TestServer, id: &str) -> Option<Value> {
    let (status, v) = get_json(s, "/api/v1/tasks").await;
    assert_eq!(status, 200, "GET /api/v1/tasks → {v}");
    v.as_array().expect("task list").iter().find(|t| t["ID"] == id).cloned()
}

async fn heartbeat(s: &TestServer, cid: &str) -> Value {
    let (status, v) = post_json(s, "/peer/heartbeat", &json!({"IP": "127.0.0.1", "port": 20001, "cID": cid})).await;
    assert_eq!(status, 200, "heartbeat {cid} → {v}");
    assert_eq!(v["code"], 200, "heartbeat {cid} → {v}");
    assert!(v["data"].is_object(), "heartbeat data: {v}");
    v
}

/// `needRegister` as one bool, checked to be the same at top level and in `data` (§16 P5).
fn need_register(v: &Value) -> bool {
    let top = v.get("needRegister").cloned().unwrap_or(Value::Bool(false));
    let data = v["data"].get("needRegister").cloned().unwrap_or(Value::Bool(false));
    assert_eq!(top, data, "needRegister differs between the shapes: {v}");
    top.as_bool().unwrap_or_else(|| panic!("needRegister not a bool: {v}"))
}

fn version(v: &Value) -> String {
    let top = v["version"].as_str().unwrap_or("");
    assert!(!top.is_empty(), "no version: {v}");
    assert_eq!(v["data"]["version"], top, "version differs between the shapes: {v}");
    top.to_string()
}

/// `seedTaskIDs` (null = empty), checked to be the same in both shapes.
fn seed_task_ids(v: &Value) -> Vec<String> {
    assert_eq!(v.get("seedTaskIDs"), v["data"].get("seedTaskIDs"), "seedTaskIDs differ between the shapes: {v}");
    match &v["seedTaskIDs"] {
        Value::Null => Vec::new(),
        Value::Array(a) => a.iter().map(|x| x.as_str().expect("string id").to_string()).collect(),
        other => panic!("seedTaskIDs is {other}"),
    }
}

async fn network(s: &TestServer, urls: &[&str]) -> Value {
    let (status, v) = post_json(s, "/peer/network", &json!({ "urls": urls })).await;
    assert_eq!(status, 200, "network → {v}");
    assert_eq!(v["code"], 200, "network → {v}");
    assert_eq!(v.get("nodes"), v["data"].get("nodes"), "nodes differ between the shapes: {v}");
    v
}

// ---------------------------------------------------------------------------------------
// peer and task GC (§9.1, §9.2, §16 P16)
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn idle_peer_is_collected_active_one_kept() {
    let s = common::start_with(fast_gc()).await;
    let origin = Origin::start().await;
    origin.add("/shared.bin", small_bytes(64 * KIB, 1));
    let url = origin.url("/shared.bin");

    let idle = Dfget::new("idle-1", "127.0.0.2", "idle-host");
    let active = Dfget::new("active-1", "127.0.0.3", "active-host");
    // heard from only through heartbeats (§16 P16 counts them)
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

    let m = metrics(&s).await;
    let gc_peers = metric(&m, "dragonfly_supernode_gc_peers_total", &[]).unwrap_or(0.0);
    assert!(gc_peers >= 2.0, "gc_peers_total = {gc_peers}");
}

#[actix_web::test]
async fn idle_task_is_collected_and_revalidated_from_the_cache() {
    let mut config = fast_gc();
    config.gc.task_expire_time = Duration::from_secs(2);
    config.gc.peer_expire_time = Duration::from_secs(2);
    let s = common::start_with(config).await;
    let origin = Origin::start().await;
    origin.add("/task-gc.bin", small_bytes(300 * KIB, 2));
    let url = origin.url("/task-gc.bin");

    let c = Dfget::new("tgc-1", "127.0.0.2", "tgc-host");
    let id = register(&s, &c, &url).await;
    let info = wait_success(&s, &id, Duration::from_secs(20)).await;
    let md5 = info["realMd5"].clone();
    let first = origin.stats("/task-gc.bin");
    assert_eq!((first.requests, first.body_requests), (1, 1), "{first:?}");
    let data = cache_data_path(&s.home_path(), &id);
    assert!(data.exists(), "{} cached", data.display());

    // nobody asks for it: collected from memory after task_expire_time (2 s)
    eventually!(Duration::from_secs(10), "idle task collected", task_status(&s, &id).await.0 == 404);
    assert!(data.exists(), "task GC must keep the cached file");
    let gc_tasks = gauge(&s, "dragonfly_supernode_gc_tasks_total", &[]).await;
    assert!(gc_tasks >= 1.0, "gc_tasks_total = {gc_tasks}");
    assert_eq!(poll_code(&s, &id, &c.cid).await, 502, "the client of a collected task is gone");

    // a new registration: one conditional GET, 304, no body
    let again = Dfget::new("tgc-2", "127.0.0.2", "tgc-host");
    assert_eq!(register(&s, &again, &url).await, id);
    let info = wait_success(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["realMd5"], md5);
    let st = origin.stats("/task-gc.bin");
    assert_eq!(st.requests, 2, "one more origin request: {st:?}");
    assert_eq!(st.conditional, 1, "it is conditional: {st:?}");
    assert_eq!(st.not_modified, 1, "answered 304: {st:?}");
    assert_eq!(st.body_requests, 1, "no new body: {st:?}");
    assert_eq!(st.body_bytes, first.body_bytes, "no body bytes: {st:?}");
    assert!(data.exists());
}

#[actix_web::test]
async fn service_down_client_is_collected_after_peer_gc_delay() {
    let mut config = fast_gc();
    config.gc.peer_gc_delay = Duration::from_millis(1500);
    config.gc.peer_expire_time = Duration::from_secs(60);
    config.gc.task_expire_time = Duration::from_secs(60);
    let s = common::start_with(config).await;
    let origin = Origin::start().await;
    origin.add("/down.bin", small_bytes(64 * KIB, 3));
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
    eventually!(
        Duration::from_secs(5),
        "service-down client collected",
        task_summary(&s, &id).await.expect("listed")["clients"] == 1
    );
    assert!(marked.elapsed() >= Duration::from_millis(1500));
    assert_eq!(poll_code(&s, &id, &down.cid).await, 502);
    assert_ne!(poll_code(&s, &id, &stays.cid).await, 502);
}

// ---------------------------------------------------------------------------------------
// disk GC (§9.3, §16 P16)
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn lru_eviction_removes_the_least_recently_used_file() {
    let len = 200 * KIB;
    let wrapped = (len + 5) as u64; // one piece (§5.4)
    let mut config = fast_gc();
    config.gc.recent_window = Duration::ZERO;
    config.gc.task_expire_time = Duration::from_secs(60);
    config.gc.peer_expire_time = Duration::from_secs(60);
    config.cdn.cache_quota_bytes = 2 * wrapped + wrapped / 2;
    let s = common::start_with(config).await;
    let origin = Origin::start().await;
    for (name, salt) in [("a", 10u8), ("b", 11), ("c", 12)] {
        origin.add(&format!("/{name}.bin"), small_bytes(len, salt));
    }

    let a = create_task(&s, &origin.url("/a.bin")).await;
    wait_success(&s, &a, Duration::from_secs(20)).await;
    sleep(Duration::from_millis(50)).await;
    let b = create_task(&s, &origin.url("/b.bin")).await;
    wait_success(&s, &b, Duration::from_secs(20)).await;
    sleep(Duration::from_millis(50)).await;

    // A is used again: B is now the least recently used
    let mut res = common::client()
        .get(format!("http://{}/download/{}/{a}", s.download(), &a[..3]))
        .insert_header(("Range", "bytes=0-1023"))
        .send()
        .await
        .expect("piece of A");
    assert_eq!(res.status().as_u16(), 206);
    assert_eq!(res.body().await.expect("body").len(), 1024);
    sleep(Duration::from_millis(50)).await;
    wait_gc_runs(&s, "disk", 2).await;
    let home = s.home_path();
    for id in [&a, &b] {
        assert!(cache_data_path(&home, id).exists(), "under the quota nothing goes");
    }

    let c = create_task(&s, &origin.url("/c.bin")).await;
    wait_success(&s, &c, Duration::from_secs(20)).await;
    eventually!(Duration::from_secs(10), "B evicted", !cache_data_path(&home, &b).exists());
    wait_gc_runs(&s, "disk", 2).await;
    assert!(cache_data_path(&home, &a).exists(), "A was used recently");
    assert!(cache_data_path(&home, &c).exists(), "C is the newest");
    assert!(!cache_data_path(&home, &b).exists());
    eventually!(Duration::from_secs(5), "evicted task B forgotten", task_status(&s, &b).await.0 == 404);
    assert_eq!(task_status(&s, &a).await.0, 200);
    assert_eq!(task_status(&s, &c).await.0, 200);

    let m = metrics(&s).await;
    assert_eq!(metric(&m, "dragonfly_supernode_gc_disks_total", &[]), Some(1.0));
    assert_eq!(metric(&m, "dragonfly_supernode_cache_files", &[]), Some(2.0));
    assert_eq!(metric(&m, "dragonfly_supernode_cache_bytes", &[]), Some((2 * wrapped) as f64));
    let last = metric(&m, "dragonfly_supernode_last_gc_disks_timestamp_seconds", &[]).unwrap_or(0.0);
    assert!(last > 1.0e9, "last_gc_disks_timestamp_seconds = {last}");
}

#[actix_web::test]
async fn a_file_being_served_is_never_evicted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let len = 32 * MIB;
    let mut config = fast_gc();
    config.gc.recent_window = Duration::ZERO;
    config.gc.peer_gc_delay = Duration::from_millis(300);
    config.gc.peer_expire_time = Duration::from_secs(60);
    config.gc.task_expire_time = Duration::from_secs(60);
    // the big file fits the quota alone; with a second, small file the cache is over it
    config.cdn.cache_quota_bytes = len + MIB;
    let s = common::start_with(config).await;
    let origin = Origin::start().await;
    origin.add_generated("/big.bin", 77, len);
    origin.add("/small.bin", small_bytes(2 * MIB as usize, 7));
    let url = origin.url("/big.bin");

    // registered clients keep both files while the slow read is set up
    let c = Dfget::new("slow-1", "127.0.0.2", "slow-host");
    let id = register(&s, &c, &url).await;
    let info = wait_success(&s, &id, Duration::from_secs(120)).await;
    let file_length = info["fileLength"].as_u64().expect("fileLength");
    let data = cache_data_path(&s.home_path(), &id);
    assert!(data.exists());
    let keeper = Dfget::new("keep-1", "127.0.0.3", "keep-host");
    let small = register(&s, &keeper, &origin.url("/small.bin")).await;
    wait_success(&s, &small, Duration::from_secs(20)).await;
    let cached = gauge(&s, "dragonfly_supernode_cache_bytes", &[]).await;
    assert!(cached > (len + MIB) as f64, "the setup must put the cache over its quota: {cached}");

    // a reader that takes a few bytes and then stalls
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut stream = sock.connect(s.download()).await.expect("connect");
    let req =
        format!("GET /download/{}/{id} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", &id[..3], s.download());
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let header_end = loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("response head in time")
            .expect("read");
        assert!(n > 0, "connection closed early");
        head.extend_from_slice(&buf[..n]);
        if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head_text = String::from_utf8_lossy(&head[..header_end]).to_string();
    assert!(head_text.starts_with("HTTP/1.1 200"), "{head_text}");
    let mut body_read = (head.len() - header_end) as u64;

    // the client goes away: only the read protects the file now
    let path = format!("/peer/service/down?taskId={id}&cid={}", c.cid);
    let (_, v) = get_json(&s, &path).await;
    assert_eq!(v["code"], 612, "{v}");
    eventually!(
        Duration::from_secs(5),
        "client collected",
        task_summary(&s, &id).await.map(|t| t["clients"].clone()) == Some(json!(0))
    );
    wait_gc_runs(&s, "disk", 3).await;
    assert!(data.exists(), "a file being read was evicted (read {body_read} of {file_length} bytes)");
    assert!(body_read < file_length, "the read was not slow enough");
    assert_eq!(gauge(&s, "dragonfly_supernode_gc_disks_total", &[]).await, 0.0);

    // finish the read: every byte arrives
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut rest))
        .await
        .expect("rest of the body in time")
        .expect("read rest");
    body_read += rest.len() as u64;
    assert_eq!(body_read, file_length, "whole file served");
    drop(stream);

    // no longer read, over the quota → evicted
    eventually!(Duration::from_secs(10), "file evicted once nobody reads it", !data.exists());
    // (the counter moves right after the files are unlinked)
    eventually!(
        Duration::from_secs(5),
        "eviction counted",
        gauge(&s, "dragonfly_supernode_gc_disks_total", &[]).await == 1.0
    );
    eventually!(Duration::from_secs(5), "evicted task forgotten", task_status(&s, &id).await.0 == 404);
    wait_gc_runs(&s, "disk", 2).await;
    assert!(cache_data_path(&s.home_path(), &small).exists(), "a file whose client is still registered stays");
    assert_eq!(gauge(&s, "dragonfly_supernode_gc_disks_total", &[]).await, 1.0);
}

// ---------------------------------------------------------------------------------------
// heartbeat, seeds, network (§10.1, §16 P5, P17)
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn heartbeat_needs_register_for_unknown_and_after_restart() {
    let s = common::start_with(fast_gc()).await;
    let origin = Origin::start().await;
    origin.add("/hb.bin", small_bytes(16 * KIB, 4));

    let v = heartbeat(&s, "unknown").await;
    assert!(need_register(&v), "unknown cID: {v}");
    assert_eq!(v["data"]["needRegister"], true, "{v}");
    assert_eq!(v["needRegister"], true, "{v}");
    let v1 = version(&v);

    let c = Dfget::new("hb-1", "127.0.0.2", "hb-host");
    register(&s, &c, &origin.url("/hb.bin")).await;
    let v = heartbeat(&s, &c.cid).await;
    assert!(!need_register(&v), "registered cID: {v}");
    assert_eq!(version(&v), v1, "same process, same version");

    // restart on the same home
    let TestServer { server, home } = s;
    server.stop(true).await;
    drop(server);
    let server = supernode::start(common::settings(home.path(), fast_gc())).await.expect("restart");
    let s = TestServer { server, home };
    let v = heartbeat(&s, &c.cid).await;
    assert!(need_register(&v), "after a restart: {v}");
    let v2 = version(&v);
    assert_ne!(v1, v2, "version must change on restart");
}

#[actix_web::test]
async fn seeds_are_granted_listed_and_dropped() {
    let mut config = fast_gc();
    config.scheduler.max_seeds_per_url = 1;
    config.gc.seed_expire_time = Duration::from_secs(2);
    config.gc.peer_expire_time = Duration::from_secs(60);
    config.gc.task_expire_time = Duration::from_secs(60);
    let s = common::start_with(config).await;
    let origin = Origin::start().await;
    origin.add("/seed.bin", small_bytes(100 * KIB, 5));
    let url = origin.url("/seed.bin");

    let seed = Dfget::new("seed-1", "127.0.0.2", "seed-a");
    let mut body = seed.body(&url);
    body["asSeed"] = json!(true);
    let data = register_body(&s, &body).await;
    let id = data["taskId"].as_str().unwrap().to_string();
    assert_eq!(data["asSeed"], true, "{data}");
    assert_eq!(data["seedTaskID"], id.as_str(), "{data}");

    let second = Dfget::new("seed-2", "127.0.0.3", "seed-b");
    let mut body = second.body(&url);
    body["asSeed"] = json!(true);
    let data = register_body(&s, &body).await;
    assert_eq!(data["taskId"], id.as_str());
    assert_eq!(data["asSeed"], false, "max_seeds_per_url = 1: {data}");
    assert_eq!(data["seedTaskID"], "", "{data}");
    wait_success(&s, &id, Duration::from_secs(20)).await;

    let v = heartbeat(&s, &seed.cid).await;
    assert!(!need_register(&v));
    assert_eq!(seed_task_ids(&v), vec![id.clone()], "{v}");
    let v = heartbeat(&s, &second.cid).await;
    assert!(!need_register(&v));
    assert!(seed_task_ids(&v).is_empty(), "not a seed: {v}");

    let last_beat = Instant::now();
    heartbeat(&s, &seed.cid).await;
    let v = network(&s, &[&url]).await;
    let nodes = v["nodes"].as_array().unwrap_or_else(|| panic!("nodes: {v}"));
    assert_eq!(nodes.len(), 1, "{v}");
    let node = &nodes[0];
    assert_eq!(node["basic"]["ID"], seed.peer_id(), "{node}");
    assert_eq!(node["basic"]["IP"], "127.0.0.2", "{node}");
    assert!(node["load"].is_u64(), "load: {node}");
    assert_eq!(node["tasks"][0]["task"]["ID"], id.as_str(), "{node}");
    assert_eq!(node["tasks"][0]["pieces"][0]["path"], seed.path(), "{node}");
    assert_eq!(v["data"]["nodes"][0]["basic"]["ID"], seed.peer_id());
    let other = network(&s, &["http://127.0.0.1:1/not-seeded.bin"]).await;
    assert!(other["nodes"].is_null(), "{other}");

    // the seed stops heart-beating → dropped after seed_expire_time (2 s)
    eventually!(Duration::from_secs(10), "silent seed dropped", network(&s, &[&url]).await["nodes"].is_null());
    assert!(last_beat.elapsed() >= Duration::from_secs(2), "seed dropped before seed_expire_time");
    let v = network(&s, &[&url]).await;
    assert!(v["nodes"].is_null() && v["data"]["nodes"].is_null(), "{v}");
    assert!(seed_task_ids(&heartbeat(&s, &seed.cid).await).is_empty());
}

// ---------------------------------------------------------------------------------------
// metrics (§3.6, §10.3, §16 P1)
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn task_metrics_counted_once_per_report() {
    let s = common::start().await;
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
    let m = metrics(&s).await;
    assert_eq!(metric(&m, "dragonfly_dfget_download_total", &peer), Some(1.0));
    assert_eq!(metric(&m, "dragonfly_dfget_download_size_bytes_total", &peer), Some(1000.0));
    assert_eq!(metric(&m, "dragonfly_dfget_download_duration_seconds_count", &peer), Some(1.0));

    let mut failed = report.clone();
    failed["cID"] = json!("met-2");
    failed["success"] = json!(false);
    failed["backsourceReason"] = json!("3");
    for _ in 0..2 {
        let (status, v) = post_json(&s, "/task/metrics", &failed).await;
        assert_eq!((status, v["code"].as_i64()), (200, Some(1)), "{v}");
    }
    let m = metrics(&s).await;
    assert_eq!(metric(&m, "dragonfly_dfget_download_total", &peer), Some(2.0));
    let with_reason = [("callsystem", "ops-test"), ("peer", "127.0.0.2"), ("reason", "3")];
    assert_eq!(metric(&m, "dragonfly_dfget_download_failed_total", &with_reason), Some(1.0));
    assert_eq!(metric(&m, "dragonfly_dfget_download_size_bytes_total", &peer), Some(1000.0), "failures add no bytes");
}

#[actix_web::test]
async fn metrics_move_with_downloads_and_collections() {
    let mut config = fast_gc();
    config.gc.task_expire_time = Duration::from_secs(2);
    config.gc.peer_expire_time = Duration::from_secs(2);
    let s = common::start_with(config).await;
    let origin = Origin::start().await;
    let len = 5 * MIB as usize; // two pieces
    origin.add("/m.bin", small_bytes(len, 6));
    let url = origin.url("/m.bin");

    let before = metrics(&s).await;
    let meta0 = metric(&before, "dragonfly_supernode_gc_runs_total", &[("kind", "meta")]).unwrap_or(0.0);
    let disk0 = metric(&before, "dragonfly_supernode_gc_runs_total", &[("kind", "disk")]).unwrap_or(0.0);

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

    let m = metrics(&s).await;
    let get = |name: &str, labels: &[(&str, &str)]| metric(&m, name, labels).unwrap_or(0.0);
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
    eventually!(Duration::from_secs(5), "meta GC runs counted", gc_runs(&s, "meta").await >= meta0 + 2.0);
    eventually!(Duration::from_secs(5), "disk GC runs counted", gc_runs(&s, "disk").await >= disk0 + 2.0);

    // the client and the task go idle: collected, counted, gauges back down
    eventually!(Duration::from_secs(10), "task and peer collected", {
        let m = metrics(&s).await;
        metric(&m, "dragonfly_supernode_gc_tasks_total", &[]).unwrap_or(0.0) >= 1.0
            && metric(&m, "dragonfly_supernode_gc_peers_total", &[]).unwrap_or(0.0) >= 1.0
    });
    let m = metrics(&s).await;
    let get = |name: &str, labels: &[(&str, &str)]| metric(&m, name, labels).unwrap_or(0.0);
    assert_eq!(get("dragonfly_supernode_clients", &[]), 0.0);
    assert_eq!(get("dragonfly_supernode_tasks", &[("cdnstatus", "SUCCESS")]), 0.0);
    assert_eq!(get("dragonfly_supernode_peers", &[("peer", "127.0.0.2")]), 0.0);
    assert!(get("dragonfly_supernode_cache_files", &[]) >= 1.0, "task GC keeps the file");
    assert!(get("dragonfly_supernode_gc_runs_total", &[("kind", "meta")]) >= meta0 + 2.0);
}
