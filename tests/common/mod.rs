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
    Settings { config, home_dir: home.to_path_buf(), advertise_ip: Ipv4Addr::LOCALHOST }
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
