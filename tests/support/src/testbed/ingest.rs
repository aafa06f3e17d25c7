//! CDN ingest over a shaped link: the supernode fetching one source from the origin host into
//! its cache, against curl on the supernode's own host writing the same URL to the same disk.
//! On loopback the two share the cores with the origin; here the origin is on its own host
//! behind its own link, as in a deployment.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::direct::run_curls;
use super::figures::{process_cpu_secs, CpuSample, CpuUse};
use super::net::HostRole;
use super::supernode_host::{ControlClient, SupernodeHost};
use super::Testbed;

/// How often the CDN's progress is read: the CDN's time is known to within this.
const TASK_POLL: Duration = Duration::from_millis(20);

/// One source fetched once by curl and once by the CDN.
#[derive(Clone, Debug)]
pub struct IngestRun {
    pub file_len: u64,
    /// curl's own total time.
    pub curl: Duration,
    pub curl_cpu: CpuUse,
    /// From before the registration to the first task poll that reads SUCCESS.
    pub cdn: Duration,
    pub cdn_cpu: CpuUse,
    /// Origin body bytes the CDN's fetch took.
    pub cdn_origin_bytes: u64,
}

impl Testbed {
    /// The origin's `path`, fetched by curl on the supernode host and then by the CDN of
    /// `supernode` (a dfget registration, then the task polled until its CDN run succeeded).
    pub fn run_ingest(&self, supernode: &SupernodeHost, path: &str, cid: &str) -> IngestRun {
        let url = self.origin_url(path);
        let file_len = self.origin().content(path).len();
        let deadline = self.deadline(file_len);
        let host = self.host(HostRole::Supernode).clone();
        let dir = tempfile::tempdir_in(self.scratch.path()).expect("a run directory");

        let before = CpuSample::now();
        let (_, outcomes) = run_curls(std::slice::from_ref(&host), &url, file_len, dir.path(), deadline);
        let curl_cpu = CpuSample::now().use_since(&before, 0.0);
        let curl = outcomes.into_iter().next().expect("one curl").unwrap_or_else(|e| panic!("{e}"));
        drop(dir);

        let body = registration(&url, cid, &host.ip.to_string());
        let origin_before = self.origin().stats(path).body_bytes;
        let sn_cpu_before = process_cpu_secs(supernode.pid());
        let before = CpuSample::now();
        let cdn = supernode.on_host(move |control| time_to_success(control, &body, deadline));
        let cdn_cpu = CpuSample::now().use_since(&before, process_cpu_secs(supernode.pid()) - sn_cpu_before);
        let cdn_origin_bytes = self.origin().stats(path).body_bytes - origin_before;
        IngestRun { file_len, curl, curl_cpu, cdn, cdn_cpu, cdn_origin_bytes }
    }
}

/// dfget's registration of `url` for client `cid` on host `ip` (a client that never polls:
/// the registration only starts the CDN's fetch).
fn registration(url: &str, cid: &str, ip: &str) -> String {
    serde_json::json!({
        "superNodeIp": ip,
        "rawUrl": url,
        "taskUrl": url,
        "cid": cid,
        "ip": ip,
        "hostName": "ingest",
        "port": 20001,
        "path": format!("/peer/file/{cid}"),
        "version": "1.0.6",
        "pattern": "p2p",
    })
    .to_string()
}

/// Registers `body` and polls its task until the CDN's run succeeded; the time from before
/// the registration to that poll.
fn time_to_success(control: &ControlClient, body: &str, deadline: Duration) -> Duration {
    let started = Instant::now();
    let (status, reply) = control.post_json("/peer/registry", body);
    let reply: Value = serde_json::from_str(&reply).unwrap_or(Value::Null);
    assert!(status == 200 && reply["code"] == 200, "registration: {status} {reply}");
    let id = reply["data"]["taskId"].as_str().unwrap_or_else(|| panic!("no taskId in {reply}")).to_string();
    loop {
        let (status, info) = control.get(&format!("/api/v1/tasks/{id}"));
        let info: Value = serde_json::from_str(&info).unwrap_or(Value::Null);
        match info["cdnStatus"].as_str() {
            Some("SUCCESS") => return started.elapsed(),
            Some("FAILED" | "SOURCE_ERROR") => panic!("the CDN's fetch failed: {info}"),
            _ => assert!(status == 200, "task {id}: {status} {info}"),
        }
        assert!(started.elapsed() < deadline, "the CDN's fetch did not finish within {deadline:?}: {info}");
        std::thread::sleep(TASK_POLL);
    }
}
