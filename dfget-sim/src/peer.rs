//! [`Peer`]: one dfget run's identity and state, and the calls a test makes on it.
//!
//! A dfget run is one process; here it is one value, so many runs can share a test process.
//! Their identities (sign, cid, task file name) must still differ, which is why a sign here is
//! unique per instance, not only per process and millisecond.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::client::{lossy, Control};
use crate::config::{is_loopback_host, split_node, PeerConfig};
use crate::control::{FinishData, Run};
use crate::error::SimError;
use crate::register::{register, Registrant, Registration};
use crate::stats::{Stats, StatsSnapshot};
use crate::uploader::{Uploader, UploaderState};
use crate::wire::{get_int, DEFAULT_MIN_RATE, PEER_PATH_PREFIX};

/// What one successful run did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub cid: String,
    pub task_id: String,
    pub output: String,
    /// md5 of the output file.
    pub md5: String,
    /// Source length from the registration.
    pub file_length: i64,
    pub piece_size: u64,
    pub finish: Option<FinishData>,
    pub duration_secs: f64,
    /// Counters at the end of the download (`uploads_served` keeps growing afterwards: see
    /// [`Peer::stats`]).
    #[serde(flatten)]
    pub stats: StatsSnapshot,
}

static LAST_SIGN_MS: AtomicU64 = AtomicU64::new(0);

/// dfget's sign, `<pid>-<unix seconds with 3 decimals>`, moved on by a millisecond where needed so
/// that no two instances in this process get the same one.
fn new_sign() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let mut prev = LAST_SIGN_MS.load(Ordering::Relaxed);
    let ms = loop {
        let ms = now.max(prev + 1);
        match LAST_SIGN_MS.compare_exchange(prev, ms, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break ms,
            Err(p) => prev = p,
        }
    };
    format!("{}-{}.{:03}", std::process::id(), ms / 1000, ms % 1000)
}

/// One simulated dfget run (its uploader included).
pub struct Peer {
    config: PeerConfig,
    sign: String,
    cid: String,
    task_file_name: String,
    super_node_host: String,
    node: String,
    stats: Arc<Stats>,
    uploader: Mutex<Option<Uploader>>,
    registration: Mutex<Option<Registration>>,
    metrics_sent: AtomicBool,
}

/// Another name for [`Peer`], after the crate.
pub type DfgetSim = Peer;

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer").field("cid", &self.cid).field("node", &self.node).finish()
    }
}

impl Peer {
    /// Checks the configuration and fixes this run's identity (sign, cid, task file name).
    pub fn new(config: PeerConfig) -> Result<Peer, SimError> {
        if !config.ip.is_loopback() {
            return Err(SimError::Config(format!("ip {} is not a loopback address", config.ip)));
        }
        if config.url.is_empty() {
            return Err(SimError::Config("url: empty".into()));
        }
        let (host, node) = split_node(config.node.trim());
        if !is_loopback_host(&host) {
            return Err(SimError::Config(format!("node {host} is not a loopback address")));
        }
        let base = config
            .output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| SimError::Config(format!("output {:?} has no file name", config.output)))?;
        let sign = new_sign();
        Ok(Peer {
            cid: format!("{}-{sign}", config.ip),
            task_file_name: format!("{base}-{sign}"),
            sign,
            super_node_host: host,
            node,
            stats: Arc::new(Stats::default()),
            uploader: Mutex::new(None),
            registration: Mutex::new(None),
            metrics_sent: AtomicBool::new(false),
            config,
        })
    }

    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// `<pid>-<secs.millis>`.
    pub fn sign(&self) -> &str {
        &self.sign
    }

    /// `<ip>-<sign>`.
    pub fn cid(&self) -> &str {
        &self.cid
    }

    /// `<output basename>-<sign>`.
    pub fn task_file_name(&self) -> &str {
        &self.task_file_name
    }

    /// The registered uploader path `/peer/file/<taskFileName>`.
    pub fn path(&self) -> String {
        format!("{PEER_PATH_PREFIX}{}", self.task_file_name)
    }

    /// The registration reply, once registered.
    pub fn registration(&self) -> Option<Registration> {
        self.registration.lock().ok().and_then(|r| r.clone())
    }

    /// The task id, once registered.
    pub fn task_id(&self) -> Option<String> {
        self.registration().map(|r| r.task_id)
    }

    /// Live counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Pieces served by the uploader so far.
    pub fn uploads_served(&self) -> u64 {
        self.stats.uploads_served.load(Ordering::Relaxed)
    }

    /// Milliseconds since the epoch of the last piece served (0 = none yet).
    pub fn last_upload_ms(&self) -> u64 {
        self.stats.last_upload_ms.load(Ordering::Relaxed)
    }

    /// The uploader's port, if it runs.
    pub fn uploader_port(&self) -> Option<u16> {
        self.uploader.lock().ok().and_then(|u| u.as_ref().map(|u| u.port()))
    }

    /// Starts the uploader (idempotent) and returns its port. Call inside an actix system.
    pub fn start_uploader(&self) -> Result<u16, SimError> {
        let mut guard = self.uploader.lock().map_err(|_| SimError::Io("uploader lock poisoned".into()))?;
        if let Some(u) = guard.as_ref() {
            return Ok(u.port());
        }
        let state = UploaderState {
            task_file_name: self.task_file_name.clone(),
            data_file: self.config.output.clone(),
            corrupt: self.config.corrupt_uploads,
            stats: self.stats.clone(),
        };
        let uploader = Uploader::start(self.config.ip, self.config.port, state)?;
        let port = uploader.port();
        *guard = Some(uploader);
        Ok(port)
    }

    /// Stops the uploader at once (open connections are dropped): a dfget uploader dying.
    /// The supernode is not told (see [`Peer::service_down`]).
    pub async fn stop_uploader(&self) {
        let up = self.uploader.lock().ok().and_then(|mut u| u.take());
        if let Some(u) = up {
            u.stop().await;
        }
    }

    fn control(&self) -> Control {
        Control::new(&self.node, self.config.control_timeout)
    }

    fn run<'a>(&'a self, control: &'a Control) -> Run<'a> {
        Run { control, config: &self.config, cid: &self.cid, stats: &self.stats }
    }

    /// `POST /peer/registry` as dfget sends it (starts the uploader first if needed).
    pub async fn register(&self) -> Result<Registration, SimError> {
        let port = self.start_uploader()?;
        self.register_with(&self.control(), port).await
    }

    async fn register_with(&self, ctl: &Control, port: u16) -> Result<Registration, SimError> {
        let who = Registrant { super_node_host: &self.super_node_host, cid: &self.cid, port, path: self.path() };
        let reg = register(ctl, &self.config, who).await?;
        if let Ok(mut r) = self.registration.lock() {
            *r = Some(reg.clone());
        }
        Ok(reg)
    }

    /// Runs the download (registering first unless [`Peer::register`] was called), then posts
    /// `/task/metrics`. The uploader keeps running afterwards.
    pub async fn download(&self) -> Result<Report, SimError> {
        let started = Instant::now();
        let port = self.start_uploader()?;
        let ctl = self.control();
        let reg = match self.registration() {
            Some(r) => r,
            None => self.register_with(&ctl, port).await?,
        };
        let timeout = self.config.download_timeout.unwrap_or_else(|| {
            if reg.file_length <= 0 {
                Duration::from_secs(300)
            } else {
                Duration::from_secs(reg.file_length as u64 / DEFAULT_MIN_RATE + 10)
            }
        });
        let run = self.run(&ctl);
        let result = match tokio::time::timeout(timeout, run.download(&reg)).await {
            Ok(r) => r,
            Err(_) => Err(SimError::Timeout(timeout)),
        };
        let bsr = match &result {
            Ok(_) => "0",
            Err(SimError::Poll { .. } | SimError::Transport(_)) => "1003",
            Err(_) => "1000",
        };
        if !self.metrics_sent.swap(true, Ordering::Relaxed) {
            run.report_metrics(&reg, port, started.elapsed(), result.is_ok(), bsr).await;
        }
        let (md5, finish) = result?;
        Ok(Report {
            cid: self.cid.clone(),
            task_id: reg.task_id.clone(),
            output: self.config.output.display().to_string(),
            md5,
            file_length: reg.file_length,
            piece_size: reg.piece_size,
            finish,
            duration_secs: started.elapsed().as_secs_f64(),
            stats: self.stats.snapshot(),
        })
    }

    /// `/peer/service/down?taskId=&cid=`; returns the ResultInfo code (612 expected).
    pub async fn service_down(&self) -> Result<i64, SimError> {
        let task_id = self.task_id().ok_or(SimError::NotRegistered)?;
        let (status, body) =
            self.control().get(&format!("/peer/service/down?taskId={task_id}&cid={}", self.cid)).await?;
        if status != 200 {
            return Err(SimError::Transport(format!("/peer/service/down: HTTP {status}: {}", lossy(&body))));
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| SimError::Transport(format!("/peer/service/down: not JSON ({e}): {}", lossy(&body))))?;
        get_int(&v, "code").ok_or_else(|| SimError::Protocol("/peer/service/down: code is not an integer".into()))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(mut u) = self.uploader.lock() {
            if let Some(u) = u.take() {
                u.stop_in_background();
            }
        }
    }
}

/// The socket address a started uploader listens on.
pub fn uploader_addr(peer: &Peer) -> Option<SocketAddr> {
    peer.uploader_port().map(|p| SocketAddr::from((peer.config.ip, p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_are_unique() {
        let a = new_sign();
        let b = new_sign();
        assert_ne!(a, b);
        let (pid, secs) = a.split_once('-').unwrap();
        assert_eq!(pid, std::process::id().to_string());
        let (s, ms) = secs.split_once('.').unwrap();
        assert!(s.parse::<u64>().is_ok());
        assert_eq!(ms.len(), 3);
    }
}
