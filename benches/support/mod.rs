//! Shared helpers of the bench targets (`harness = false`): the test origin on its own thread,
//! the real server in-process or as the release binary in a child process, latency statistics,
//! `/metrics` histogram parsing and the BENCHMARKS.md section writer.
#![allow(dead_code)]

#[path = "../../tests/common/mod.rs"]
pub mod common;

pub mod gen;

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::origin::Origin;

pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * MIB;

/// The exact command that reproduces a bench target's figures.
pub fn command(bench: &str) -> String {
    format!("cargo bench --bench {bench}")
}

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// origin

/// Starts the test origin (tests/common/origin.rs) in its own thread and actix System, so it
/// does not share an event loop with the server or the load generator. `files`: (path, seed,
/// length) of generated content.
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

// ---------------------------------------------------------------------------------------------
// the server as a child process (the release binary)

pub struct ChildServer {
    pub child: Child,
    pub control: SocketAddr,
    pub download: SocketAddr,
    pub home: tempfile::TempDir,
    pub log: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind :0").local_addr().unwrap().port()
}

impl ChildServer {
    /// Runs `target/release/supernode` on two free loopback ports with a temporary home.
    pub async fn start() -> ChildServer {
        let exe = env!("CARGO_BIN_EXE_supernode");
        let home = tempfile::tempdir().expect("temp home");
        let (port, dport) = (free_port(), free_port());
        let log = home.path().join("supernode.log");
        let logf = std::fs::File::create(&log).expect("log file");
        let child = Command::new(exe)
            .args(["--port", &port.to_string(), "--download-port", &dport.to_string()])
            .args(["--listen-host", "127.0.0.1", "--advertise-ip", "127.0.0.1"])
            .arg("--home-dir")
            .arg(home.path())
            .env_remove("SUPERNODE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(logf))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {exe}: {e}"));
        let s = ChildServer {
            child,
            control: SocketAddr::from(([127, 0, 0, 1], port)),
            download: SocketAddr::from(([127, 0, 0, 1], dport)),
            home,
            log,
        };
        let client = common::client();
        let started = Instant::now();
        loop {
            if let Ok(res) = client.get(s.url("/_ping")).send().await {
                if res.status().as_u16() == 200 {
                    break;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(20), "supernode did not start: {}", s.log_tail());
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.control, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// (VmHWM, VmRSS) in KiB from /proc/<pid>/status.
    pub fn rss_kib(&self) -> (u64, u64) {
        proc_rss(self.pid())
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// User + system CPU seconds of the child so far (/proc/<pid>/stat).
    pub fn cpu_secs(&self) -> f64 {
        proc_cpu_secs(self.pid())
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn proc_rss(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

pub fn proc_cpu_secs(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // fields after the command name (which is in parentheses): state is field 3; utime 14, stime 15
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = 100.0; // USER_HZ on Linux
    (ticks(11) + ticks(12)) / hz
}

// ---------------------------------------------------------------------------------------------
// statistics

/// Median of a few samples.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if s.is_empty() {
        return f64::NAN;
    }
    s[s.len() / 2]
}

/// Latencies in microseconds.
#[derive(Default, Clone)]
pub struct Latencies(pub Vec<u32>);

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        self.0.push(d.as_micros().min(u32::MAX as u128) as u32);
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn extend(&mut self, other: &Latencies) {
        self.0.extend_from_slice(&other.0);
    }
    /// Percentile in milliseconds (nearest rank).
    pub fn pct_ms(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let mut s = self.0.clone();
        s.sort_unstable();
        let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize - 1;
        s[rank.min(s.len() - 1)] as f64 / 1000.0
    }
    pub fn mean_ms(&self) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.iter().map(|&v| v as f64).sum::<f64>() / self.0.len() as f64 / 1000.0
    }
    pub fn max_ms(&self) -> f64 {
        self.0.iter().copied().max().unwrap_or(0) as f64 / 1000.0
    }
}

// ---------------------------------------------------------------------------------------------
// /metrics histograms

/// One Prometheus histogram (all label sets summed): cumulative bucket counts, sum, count.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl Histogram {
    /// Parses `<name>_bucket{...le="x"...} n`, `<name>_sum`, `<name>_count` from exposition text.
    pub fn parse(text: &str, name: &str) -> Histogram {
        let mut h = Histogram::default();
        let mut buckets: std::collections::BTreeMap<u64, (f64, f64)> = Default::default();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let metric = key.split('{').next().unwrap_or("");
            if metric == format!("{name}_bucket") {
                let le = key
                    .split("le=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .map(|v| if v == "+Inf" { f64::INFINITY } else { v.parse().unwrap_or(f64::NAN) })
                    .unwrap_or(f64::NAN);
                let e = buckets.entry(le.to_bits()).or_insert((le, 0.0));
                e.1 += value;
            } else if metric == format!("{name}_sum") {
                h.sum += value;
            } else if metric == format!("{name}_count") {
                h.count += value;
            }
        }
        h.buckets = buckets.into_values().collect();
        h.buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        h
    }

    /// `self - before` (counters only grow).
    pub fn minus(&self, before: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|(le, n)| {
                let b = before.buckets.iter().find(|(l, _)| l == le).map(|x| x.1).unwrap_or(0.0);
                (*le, n - b)
            })
            .collect();
        Histogram { buckets, sum: self.sum - before.sum, count: self.count - before.count }
    }

    pub fn mean(&self) -> f64 {
        if self.count > 0.0 {
            self.sum / self.count
        } else {
            f64::NAN
        }
    }

    /// The upper bound of the bucket holding the `p`th percentile (Prometheus-style, no interpolation).
    pub fn pct_upper(&self, p: f64) -> f64 {
        let target = self.count * p / 100.0;
        for (le, n) in &self.buckets {
            if *n >= target {
                return *le;
            }
        }
        f64::INFINITY
    }

    /// `≤ 0.32 ms`, or `> 0.64 ms` when the percentile lies beyond the last finite bucket.
    pub fn pct_text(&self, p: f64) -> String {
        let v = self.pct_upper(p);
        if v.is_finite() {
            format!("≤ {v} ms")
        } else {
            let last = self.buckets.iter().rev().find(|(le, _)| le.is_finite()).map(|b| b.0).unwrap_or(0.0);
            format!("> {last} ms (beyond the last bucket)")
        }
    }

    /// `≤0.01: n · ≤0.02: n …` with per-bucket (not cumulative) counts.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut prev = 0.0;
        for (le, n) in &self.buckets {
            let label = if le.is_infinite() { "+Inf".to_string() } else { format!("≤{le}") };
            let _ = write!(out, "{label}: {} · ", (n - prev).round() as u64);
            prev = *n;
        }
        out.trim_end_matches(" · ").to_string()
    }
}

pub async fn fetch_text(client: &awc::Client, url: &str) -> String {
    let mut res = client.get(url).send().await.expect("GET");
    let body = res.body().limit(64 * MIB as usize).await.expect("body");
    String::from_utf8_lossy(&body).into_owned()
}

// ---------------------------------------------------------------------------------------------
// BENCHMARKS.md

pub fn benchmarks_md() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md")
}

const INTRO: &str = "# Benchmarks\n\n\
Figures measured on the development machine: **2 CPU cores**, everything on **127.0.0.1** \
(loopback), release build (`cargo bench`, `[profile.release]` with `debug = 1`). The server, the \
origin and the load generators share those two cores, so every figure is relative: each bench \
measures a baseline *in the same run* and quotes the ratio. Performance is measured, never \
asserted.\n\n\
Reproduce one section (each bench rewrites only its own section, between its markers):\n\n\
```sh\n\
cargo bench --bench cdn_ingest\n\
cargo bench --bench download_port\n\
cargo bench --bench peer_task\n\
cargo bench --bench p2p_swarm\n\
cargo bench --bench load_60s   # BENCH_SECONDS=10 for a quick run\n\
```\n\n\
Run them one at a time on an otherwise idle machine. The origin is the test origin \
(`tests/common/origin.rs`): deterministic generated bytes served from memory, on its own thread \
and actix System. The figures inside the marked sections are written by the benches; the \
**Findings** section at the end is written by hand from profiles (`perf record`) of these runs and \
is not rewritten by any bench.\n";

const ORDER: [&str; 5] = ["cdn_ingest", "download_port", "peer_task", "p2p_swarm", "load_60s"];

/// Replaces (or adds) the section between `<!-- name:start -->` and `<!-- name:end -->`.
pub fn write_section(name: &str, body: &str) {
    let path = benchmarks_md();
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    if text.trim().is_empty() {
        text = INTRO.to_string();
    }
    let start = format!("<!-- {name}:start -->");
    let end = format!("<!-- {name}:end -->");
    let section = format!("{start}\n{}\n{end}", body.trim_end());
    if let (Some(a), Some(b)) = (text.find(&start), text.find(&end)) {
        text.replace_range(a..b + end.len(), &section);
    } else {
        // Insert before the first section that comes later in ORDER, else append.
        let me = ORDER.iter().position(|n| *n == name).unwrap_or(ORDER.len());
        let later =
            ORDER[me.min(ORDER.len())..].iter().skip(1).filter_map(|n| text.find(&format!("<!-- {n}:start -->"))).min();
        match later.or_else(|| text.find("## Findings")) {
            Some(at) => text.insert_str(at, &format!("{section}\n\n")),
            None => {
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push('\n');
                text.push_str(&section);
                text.push('\n');
            }
        }
    }
    std::fs::write(&path, text).expect("write BENCHMARKS.md");
    println!("updated {} (section {name})", path.display());
}

/// `2025-01-01 12:00 UTC`, for the "measured" line.
pub fn now_utc() -> String {
    let out = Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output();
    out.ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}

pub fn cpu_model() -> String {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = text
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{n} × {model}")
}

/// The "measured" line of a section.
pub fn measured_line(bench: &str) -> String {
    format!(
        "Measured {} on {} (1-minute load average when the bench started: {}), with:\n\n```sh\n{}\n```\n",
        now_utc(),
        cpu_model(),
        START_LOAD.get().cloned().unwrap_or_else(loadavg),
        command(bench)
    )
}

static START_LOAD: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The 1-minute load average now (other processes on the machine skew the figures).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

/// Call first thing in main: remembers the load average before the bench adds its own.
pub fn note_start_load() {
    let l = loadavg();
    println!("load average at start: {l}");
    let _ = START_LOAD.set(l);
}

pub fn mib_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / MIB as f64 / secs
}

// ---------------------------------------------------------------------------------------------
// control API helpers

/// `POST /peer/registry` with dfget's JSON body for `url`; returns the reply's `data`.
pub async fn register(client: &awc::Client, control: SocketAddr, url: &str, cid: &str, port: u16) -> serde_json::Value {
    let body = serde_json::json!({
        "superNodeIp": "127.0.0.1",
        "rawUrl": url,
        "taskUrl": url,
        "cid": cid,
        "ip": "127.0.0.1",
        "hostName": "bench",
        "port": port,
        "path": format!("/peer/file/bench-{cid}"),
        "version": "1.0.6",
        "pattern": "p2p",
    });
    let mut res = client
        .post(format!("http://{control}/peer/registry"))
        .insert_header(("Content-Type", "application/json;charset=utf-8"))
        .send_body(body.to_string())
        .await
        .expect("registry request");
    let bytes = res.body().await.expect("registry body");
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("registry JSON");
    assert_eq!(v["code"], 200, "registration of {url}: {v}");
    v["data"].clone()
}

/// Polls `GET /api/v1/tasks/{id}` every 20 ms until the CDN is done; panics unless SUCCESS.
pub async fn wait_cdn_success(
    client: &awc::Client,
    control: SocketAddr,
    id: &str,
    timeout: Duration,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let text = fetch_text(client, &format!("http://{control}/api/v1/tasks/{id}")).await;
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        match v["cdnStatus"].as_str() {
            Some("SUCCESS") => return v,
            Some("FAILED") | Some("SOURCE_ERROR") => panic!("CDN of {id} failed: {v}"),
            _ => {}
        }
        assert!(started.elapsed() < timeout, "CDN of {id} not done after {timeout:?}: {v}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `DELETE /api/v1/tasks/{id}?full=true` (the cached file goes too).
pub async fn delete_task(client: &awc::Client, control: SocketAddr, id: &str) {
    let res = client.delete(format!("http://{control}/api/v1/tasks/{id}?full=true")).send().await;
    if let Ok(r) = res {
        assert!(r.status().as_u16() == 204 || r.status().as_u16() == 404, "DELETE task {id}: {}", r.status());
    }
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
    (n, common::origin::hex(&whole.finalize()))
}

/// An awc client for bulk transfers (long timeout).
pub fn bulk_client() -> awc::Client {
    awc::Client::builder().timeout(Duration::from_secs(600)).connector(awc::Connector::new().limit(64)).finish()
}
