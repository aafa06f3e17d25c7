//! Keeping a long-running supernode healthy: dfget clients are driven over HTTP as dfget
//! 1.0.6 would, on a server whose clock the test moves, with the default GC settings.
//!
//! * `gc`: idle peers, clients and tasks are collected, active ones kept;
//! * `disk_gc`: LRU eviction over the cache quota, never of a file being served;
//! * `seeds`: heartbeat (`needRegister`, a version that changes on restart), the seed
//!   pattern and `/peer/network`;
//! * `metrics`: `/task/metrics` counted once per report, and the metrics that move with
//!   downloads and collections.

mod disk_gc;
mod gc;
mod metrics;
mod seeds;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::{first_poll, get_json, post_json, Config, ManualClock, TestServer};

const KIB: usize = 1024;
const MIB: u64 = 1024 * 1024;

/// The defaults, but GC runs only when a test asks for one (the first periodic run is a year
/// away on the test's clock), and disk GC acts only on the cache quota (free space is always
/// above a 0-byte threshold).
fn gc_config() -> Config {
    let mut c = Config::default();
    c.gc.initial_delay = Duration::from_secs(365 * 24 * 3600);
    c.gc.young_gc_threshold = 0;
    c.gc.full_gc_threshold = 0;
    // Polls here only keep clients alive; on a clock only the test moves, a poll held for a
    // piece would wait for the test itself.
    c.scheduler.poll_hold = Duration::ZERO;
    c
}

/// A server on a manual clock, with `config`.
async fn start(config: Config) -> (TestServer, Arc<ManualClock>) {
    testkit::start_on_manual_clock(config).await
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

    /// The registration body as dfget 1.0.6 sends it, from this client.
    fn body(&self, url: &str) -> Value {
        let mut body = testkit::dfget_body(url, &self.cid);
        body["ip"] = json!(self.ip);
        body["hostName"] = json!(self.host);
        body["port"] = json!(self.port);
        body["path"] = json!(self.path());
        body
    }

    /// The peer ID of the client's host: `<hostName>-<IP>`, the same for every registration.
    fn peer_id(&self) -> String {
        format!("{}-{}", self.host, self.ip)
    }
}

/// Registers `c` for `url`; returns the task ID.
async fn register(s: &TestServer, c: &Dfget, url: &str) -> String {
    let data = testkit::register(s, &c.body(url)).await;
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

/// The `/peer/task` code for a client's first poll.
async fn poll_code(s: &TestServer, id: &str, cid: &str) -> i64 {
    first_poll(s, cid, id).await["code"].as_i64().expect("code")
}

async fn gauge(s: &TestServer, name: &str, want: &[(&str, &str)]) -> f64 {
    testkit::metrics(s).await.get(name, want).unwrap_or(0.0)
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

/// `needRegister` as one bool, checked to be the same at top level and in `data` (the reply
/// is both of dfdaemon's shapes at once).
fn need_register(v: &Value) -> bool {
    let top = v.get("needRegister").cloned().unwrap_or(Value::Bool(false));
    let data = v["data"].get("needRegister").cloned().unwrap_or(Value::Bool(false));
    assert_eq!(top, data, "needRegister differs between the shapes: {v}");
    top.as_bool().unwrap_or_else(|| panic!("needRegister not a bool: {v}"))
}
