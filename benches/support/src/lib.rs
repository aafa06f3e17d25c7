//! What the supernode's benchmarks (`harness = false` targets in `benches/`) share: the test
//! origin on a thread of its own, the real server as the release binary in a child process
//! (whose memory and CPU can be read), registrations and downloads, the closed-loop load
//! generator ([`gen`]), statistics ([`stats`]) and the BENCHMARKS.md writer ([`report`]).
//!
//! Servers, the origin and the control API helpers come from the test fixtures (`testkit`),
//! so a bench sets things up exactly as the tests do.

pub mod gen;
pub mod report;
pub mod stats;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use testkit::origin::Origin;
pub use testkit::proc_rss;
use testkit::{ChildServer, Control};

pub const MIB: u64 = 1024 * 1024;

/// The value of the environment variable `name` as a number, else `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Starts the test origin in its own thread and actix System, so it does not share an event
/// loop with the server or the load generator. `files`: (path, seed, length) of generated
/// content.
pub fn spawn_origin(files: &[(&str, u64, u64)]) -> Origin {
    let files: Vec<(String, u64, u64)> = files.iter().map(|(p, s, l)| (p.to_string(), *s, *l)).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("origin".into())
        .spawn(move || {
            actix_rt::System::new().block_on(async move {
                let origin = Origin::start().await;
                for (p, s, l) in &files {
                    origin.add_generated(p, *s, *l);
                }
                tx.send(origin).expect("origin handed over");
                futures_util::future::pending::<()>().await;
            })
        })
        .expect("origin thread");
    rx.recv().expect("origin started")
}

/// The server binary as a child process with a temporary home: its peak memory and CPU time
/// are the figures some benches report.
pub struct BinaryServer {
    server: ChildServer,
    home: tempfile::TempDir,
}

impl BinaryServer {
    /// Runs the binary at `exe` (a bench passes `env!("CARGO_BIN_EXE_supernode")`, the release
    /// build under `cargo bench`) on ephemeral loopback ports.
    pub fn start(exe: &str) -> BinaryServer {
        let home = tempfile::tempdir().expect("temp home");
        BinaryServer { server: ChildServer::start(exe, home.path()), home }
    }

    /// [`BinaryServer::start`] with `config` (TOML) as its configuration file.
    pub fn start_with_config(exe: &str, config: &str) -> BinaryServer {
        let home = tempfile::tempdir().expect("temp home");
        BinaryServer { server: ChildServer::start_with_config(exe, home.path(), config), home }
    }

    pub fn child(&self) -> &ChildServer {
        &self.server
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The control API's address.
    pub fn control(&self) -> SocketAddr {
        self.server.control()
    }

    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// (VmHWM, VmRSS) in KiB.
    pub fn rss_kib(&self) -> (u64, u64) {
        proc_rss(self.pid())
    }

    /// User + system CPU seconds of the process so far.
    pub fn cpu_secs(&self) -> f64 {
        testkit::testbed::process_cpu_secs(self.pid())
    }
}

impl Control for BinaryServer {
    fn control_addr(&self) -> SocketAddr {
        self.control()
    }
}

/// `POST /peer/registry` with dfget's body for `url`, client `cid` with its uploader on `port`;
/// the reply's `data`.
pub async fn register(s: &impl Control, url: &str, cid: &str, port: u16) -> serde_json::Value {
    let mut body = testkit::dfget_body(url, cid);
    body["port"] = port.into();
    testkit::register(s, &body).await
}

/// Caches `url` on the server (one registration, then the CDN run to its end): the task's id
/// and piece count, for the load generator to drive clients on.
pub async fn cache_task(s: &impl Control, url: &str) -> (String, u64) {
    let data = register(s, url, "127.0.0.1-trigger", 19999).await;
    let task_id = data["taskId"].as_str().expect("a task id").to_string();
    let info = testkit::wait_success(s, &task_id, Duration::from_secs(120)).await;
    (task_id, info["pieceTotal"].as_u64().unwrap_or(0))
}

/// `DELETE /api/v1/tasks/{id}?full=true` (the cached file goes too).
pub async fn delete_task(s: &impl Control, id: &str) {
    let (status, body) = testkit::delete(s, &format!("/api/v1/tasks/{id}?full=true")).await;
    assert!(status == 204 || status == 404, "DELETE task {id}: {status} {body}");
}

/// Downloads `url` to `path` with awc, streaming each chunk to the file; returns the byte count.
pub async fn awc_to_file(client: &awc::Client, url: &str, path: &Path) -> u64 {
    use futures_util::StreamExt;
    use std::io::Write;
    let mut res = client.get(url).send().await.expect("GET");
    assert_eq!(res.status().as_u16(), 200, "GET {url}");
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create"));
    let mut n = 0u64;
    while let Some(chunk) = res.next().await {
        let chunk = chunk.expect("body chunk");
        n += chunk.len() as u64;
        file.write_all(&chunk).expect("write");
    }
    file.flush().expect("flush");
    n
}

/// Like [`awc_to_file`], and also does the CDN's hashing inline on the same thread: the md5 of
/// the whole body and an md5 per `piece_payload` bytes (what a streaming CDN writer must do).
pub async fn awc_to_file_md5(client: &awc::Client, url: &str, path: &Path, piece_payload: u64) -> (u64, String) {
    use futures_util::StreamExt;
    use md5::{Digest, Md5};
    use std::io::Write;
    let mut res = client.get(url).send().await.expect("GET");
    assert_eq!(res.status().as_u16(), 200, "GET {url}");
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create"));
    let (mut whole, mut piece) = (Md5::new(), Md5::new());
    let (mut n, mut in_piece, mut pieces) = (0u64, 0u64, 0u64);
    while let Some(chunk) = res.next().await {
        let chunk = chunk.expect("body chunk");
        n += chunk.len() as u64;
        file.write_all(&chunk).expect("write");
        whole.update(&chunk);
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let take = ((piece_payload - in_piece) as usize).min(rest.len());
            piece.update(&rest[..take]);
            in_piece += take as u64;
            rest = &rest[take..];
            if in_piece == piece_payload {
                let _ = piece.finalize_reset();
                in_piece = 0;
                pieces += 1;
            }
        }
    }
    file.flush().expect("flush");
    let _ = (pieces, piece.finalize());
    (n, testkit::origin::hex(&whole.finalize()))
}

/// Downloads `url` with awc and hashes the body as it streams (nothing is stored): the byte
/// count and the md5.
pub async fn awc_md5(client: &awc::Client, url: &str) -> (u64, String) {
    use futures_util::StreamExt;
    use md5::{Digest, Md5};
    let mut res = client.get(url).send().await.expect("GET");
    assert_eq!(res.status().as_u16(), 200, "GET {url}");
    let (mut md5, mut n) = (Md5::new(), 0u64);
    while let Some(chunk) = res.next().await {
        let chunk = chunk.expect("body chunk");
        n += chunk.len() as u64;
        md5.update(&chunk);
    }
    (n, testkit::origin::hex(&md5.finalize()))
}

/// Free bytes on the filesystem of `dir` (from `df`; 0 when it cannot be read).
pub fn free_bytes(dir: &Path) -> u64 {
    let out = std::process::Command::new("df").args(["--output=avail", "-B1"]).arg(dir).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    text.lines().nth(1).and_then(|l| l.trim().parse().ok()).unwrap_or(0)
}

/// An awc client for bulk transfers (long timeout).
pub fn bulk_client() -> awc::Client {
    awc::Client::builder().timeout(Duration::from_secs(600)).connector(awc::Connector::new().limit(64)).finish()
}
