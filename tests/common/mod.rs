//! Test support: a real supernode on ephemeral loopback ports with a temporary home.
#![allow(dead_code)]
pub mod origin;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use supernode::config::{Config, Settings};
use supernode::RunningServer;

pub struct TestServer {
    pub server: RunningServer,
    pub home: tempfile::TempDir,
}

impl TestServer {
    pub fn control(&self) -> SocketAddr {
        self.server.control_addr
    }

    pub fn download(&self) -> SocketAddr {
        self.server.download_addr
    }

    /// `http://127.0.0.1:<control port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.server.control_addr, path)
    }

    pub fn home_path(&self) -> PathBuf {
        self.home.path().to_path_buf()
    }
}

/// Settings for a loopback server with ephemeral ports and the given home dir.
pub fn settings(home: &std::path::Path, mut config: Config) -> Settings {
    config.server.port = 0;
    config.server.download_port = 0;
    config.server.listen_host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    config.server.advertise_ip = Some(Ipv4Addr::LOCALHOST);
    config.server.home_dir = Some(home.to_path_buf());
    Settings::from_config(config, home.to_path_buf(), Ipv4Addr::LOCALHOST).expect("test settings are valid")
}

pub async fn start_with(config: Config) -> TestServer {
    let home = tempfile::tempdir().expect("temp home");
    let server = supernode::start(settings(home.path(), config)).await.expect("server starts");
    TestServer { server, home }
}

pub async fn start() -> TestServer {
    start_with(Config::default()).await
}

pub fn client() -> awc::Client {
    awc::Client::builder().timeout(std::time::Duration::from_secs(30)).finish()
}

/// Sends a request and returns status and body.
pub async fn call(req: awc::ClientRequest, body: Option<&str>) -> (u16, String) {
    let mut res = match body {
        Some(b) => req.insert_header(("Content-Type", "application/json")).send_body(b.to_string()).await,
        None => req.send().await,
    }
    .expect("request sent");
    let bytes = res.body().limit(64 * 1024 * 1024).await.expect("body read");
    (res.status().as_u16(), String::from_utf8_lossy(&bytes).into_owned())
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Anything with a control API address: the in-process server, or a test's handle on a child process.
pub trait Control {
    fn control_url(&self, path: &str) -> String;
}

impl Control for TestServer {
    fn control_url(&self, path: &str) -> String {
        self.url(path)
    }
}

/// The registration body exactly as dfget 1.0.6 sends it (§3.1), for `url`.
pub fn dfget_body(url: &str, cid: &str) -> serde_json::Value {
    serde_json::json!({
        "superNodeIp": "127.0.0.1",
        "rawUrl": url,
        "taskUrl": url,
        "cid": cid,
        "ip": "127.0.0.1",
        "hostName": "vm",
        "port": 20001,
        "path": format!("/peer/file/x-{cid}"),
        "version": "1.0.6",
        "pattern": "p2p",
    })
}

/// The taskID a registration of `url` without md5, identifier or Range gets.
pub fn url_task_id(url: &str) -> String {
    supernode_actors::TaskId::compute(url, "", "", None).as_str().to_string()
}

/// GET a control path; the body as JSON (`Null` when empty, a string when not JSON).
pub async fn get_json(s: &impl Control, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = call(client().get(s.control_url(path)), None).await;
    let v = if body.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body))
    };
    (status, v)
}

/// TaskInfo of `id`, which must exist.
pub async fn task_info(s: &impl Control, id: &str) -> serde_json::Value {
    let (status, v) = get_json(s, &format!("/api/v1/tasks/{id}")).await;
    assert_eq!(status, 200, "GET /api/v1/tasks/{id} → {v}");
    v
}

/// Polls TaskInfo until `cdnStatus` is SUCCESS, FAILED or SOURCE_ERROR.
pub async fn wait_done(s: &impl Control, id: &str, timeout: std::time::Duration) -> serde_json::Value {
    let start = std::time::Instant::now();
    loop {
        let v = task_info(s, id).await;
        match v["cdnStatus"].as_str() {
            Some("SUCCESS") | Some("FAILED") | Some("SOURCE_ERROR") => return v,
            _ if start.elapsed() > timeout => panic!("task {id} not done after {timeout:?}: {v}"),
            _ => actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

/// Polls TaskInfo until the CDN run ends, which must be SUCCESS.
pub async fn wait_success(s: &impl Control, id: &str, timeout: std::time::Duration) -> serde_json::Value {
    let v = wait_done(s, id, timeout).await;
    assert_eq!(v["cdnStatus"], "SUCCESS", "task {id}: {v}");
    v
}

/// Polls `cond` for up to 5 s.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "timed out: {what}");
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `<home>/repo/download/<id[0:3]>`.
pub fn cache_dir(home: &std::path::Path, id: &str) -> PathBuf {
    home.join("repo").join("download").join(&id[..3])
}

/// The CDN data file of task `id` under `home`.
pub fn data_path(home: &std::path::Path, id: &str) -> PathBuf {
    cache_dir(home, id).join(id)
}
