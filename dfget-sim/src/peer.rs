//! [`Peer`]: one dfget run's identity and state, and the calls a test makes on it.
//!
//! A dfget run is one process; here it is one value, so many runs can share a test process.
//! Their identities (sign, cid, task file name) must still differ, which is why a sign here is
//! unique per instance, not only per process and millisecond. The identity is fixed once for the
//! whole run: when the run moves to another supernode it registers there with the same cid and
//! the same uploader port and path, and the uploader keeps serving what the peer holds.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::{lossy, Control};
use crate::config::PeerConfig;
use crate::control::{FinishData, Run};
use crate::error::SimError;
use crate::nodes::{parse_nodes, NodeList};
use crate::register::{Registrant, Registrar, Registration};
use crate::stats::{unix_ms, Stats, StatsSnapshot};
use crate::uploader::{Uploader, UploaderState};
use crate::wire::{get_int, DEFAULT_MIN_RATE, PEER_PATH_PREFIX};

/// What one successful run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub cid: String,
    /// The task at the supernode the run finished with.
    pub task_id: String,
    pub output: String,
    /// md5 of the output file.
    pub md5: String,
    /// Source length from the first registration.
    pub file_length: i64,
    /// Piece size at the supernode the run finished with.
    pub piece_size: u64,
    pub finish: Option<FinishData>,
    pub duration_secs: f64,
    /// Unix time (ms) when the run started and when it finished, for timelines across processes.
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
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
    stats: Arc<Stats>,
    uploader: Mutex<Option<Uploader>>,
    registrar: Registrar,
    metrics_sent: AtomicBool,
}

/// Another name for [`Peer`], after the crate.
pub type DfgetSim = Peer;

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer").field("cid", &self.cid).field("node", &self.node()).finish()
    }
}

impl Peer {
    /// Checks the configuration and fixes this run's identity (sign, cid, task file name).
    pub fn new(config: PeerConfig) -> Result<Peer, SimError> {
        if !config.scope.allows_ip(config.ip.into()) {
            let allowed = config.scope.describe();
            return Err(SimError::Config(format!("ip {} is outside the allowed addresses ({allowed})", config.ip)));
        }
        if config.url.is_empty() {
            return Err(SimError::Config("url: empty".into()));
        }
        let nodes = NodeList::new(parse_nodes(&config.nodes, &config.scope)?, config.node_order_seed);
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
            stats: Arc::new(Stats::default()),
            uploader: Mutex::new(None),
            registrar: Registrar::new(nodes),
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

    /// The reply of the registration in use, once registered.
    pub fn registration(&self) -> Option<Registration> {
        self.registrar.current().map(|r| r.reg)
    }

    /// The supernode (`host:port`) the run is registered with, once registered.
    pub fn node(&self) -> Option<String> {
        self.registrar.current().map(|r| r.node.addr)
    }

    /// The task id at the supernode in use, once registered.
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
            rate: self.config.upload_rate,
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

    fn registrant(&self, port: u16) -> Registrant {
        Registrant { cid: self.cid.clone(), port, path: self.path() }
    }

    /// `POST /peer/registry` as dfget sends it (starts the uploader first if needed): to the
    /// first supernode of the shuffled list that accepts, or again to the one in use when the
    /// run is registered already.
    pub async fn register(&self) -> Result<Registration, SimError> {
        let who = self.registrant(self.start_uploader()?);
        self.registrar.register_again_or_next(&self.config, &who, &self.stats).await.map(|r| r.reg)
    }

    /// Runs the download (registering first unless [`Peer::register`] was called), then posts
    /// `/task/metrics`. The uploader keeps running afterwards.
    pub async fn download(&self) -> Result<Report, SimError> {
        let started = Instant::now();
        let started_at_ms = unix_ms();
        let port = self.start_uploader()?;
        let who = self.registrant(port);
        let first = match self.registrar.current() {
            Some(r) => r,
            None => self.registrar.register(&self.config, &who, &self.stats).await?,
        };
        let reg = &first.reg;
        let timeout = self.config.download_timeout.unwrap_or_else(|| {
            if reg.file_length <= 0 {
                Duration::from_secs(300)
            } else {
                Duration::from_secs(reg.file_length as u64 / DEFAULT_MIN_RATE + 10)
            }
        });
        let run = Run { config: &self.config, who: &who, registrar: &self.registrar, stats: &self.stats };
        let result = match tokio::time::timeout(timeout, run.download(&first)).await {
            Ok(r) => r,
            Err(_) => Err(SimError::Timeout(timeout)),
        };
        let bsr = match &result {
            Ok(_) => "0",
            Err(SimError::Poll { .. } | SimError::Transport(_)) => "1003",
            Err(_) => "1000",
        };
        if !self.metrics_sent.swap(true, Ordering::Relaxed) {
            run.report_metrics(reg, port, started.elapsed(), result.is_ok(), bsr).await;
        }
        let (md5, finish) = result?;
        let last = self.registration().unwrap_or_else(|| reg.clone());
        Ok(Report {
            cid: self.cid.clone(),
            task_id: last.task_id,
            output: self.config.output.display().to_string(),
            md5,
            file_length: reg.file_length,
            piece_size: last.piece_size,
            finish,
            duration_secs: started.elapsed().as_secs_f64(),
            started_at_ms,
            finished_at_ms: unix_ms(),
            stats: self.stats.snapshot(),
        })
    }

    /// `/peer/service/down?taskId=&cid=` to the supernode in use; returns the ResultInfo code
    /// (612 expected).
    pub async fn service_down(&self) -> Result<i64, SimError> {
        let current = self.registrar.current().ok_or(SimError::NotRegistered)?;
        let control = Control::new(&current.node.addr, self.config.control_timeout);
        let target = format!("/peer/service/down?taskId={}&cid={}", current.reg.task_id, self.cid);
        let (status, body) = control.get(&target).await?;
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
