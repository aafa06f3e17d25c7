//! A file larger than the disk allows, through the supernode to several dfget-sim peers at
//! once: the origin generates it, and the peers' outputs are sinks of one group (hashed as
//! they arrive and given back to the disk once every peer holds a piece), so only the CDN's
//! copy takes the file's size on disk. While they download, the supernode's memory, the CDN's
//! progress and the disk the outputs take are sampled. The 2 GiB test and the `large_file`
//! benchmark run it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dfget_sim::{PeerConfig, Report, SimError, SinkGroup};
use serde_json::Value;

use crate::child::ChildServer;
use crate::dfget::{cache_dir, task_info};
use crate::process::proc_rss;
use crate::swarm::Swarm;

/// What was seen at one moment of the download.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub secs: f64,
    /// The supernode's resident memory.
    pub rss_kib: u64,
    /// Bytes of the CDN's copy on disk so far.
    pub cached: u64,
    /// Disk the peers' outputs take (their allocated blocks).
    pub outputs_on_disk: u64,
    /// Pieces the peers hold, all together.
    pub pieces_held: u64,
}

/// What one download of the file by the peers gave.
pub struct LargeRun {
    pub results: Vec<Result<Report, SimError>>,
    pub samples: Vec<Sample>,
    pub wall: Duration,
    /// When the CDN's copy was first seen complete, from the start.
    pub cdn_secs: Option<f64>,
    /// TaskInfo at the end.
    pub task: Value,
    /// Payload bytes the sinks gave back to the disk.
    pub punched: u64,
}

/// `peers` dfget-sim peers of `server` (whose home is `home`) download `url` together, with
/// sink outputs in `dir`, sampled every `every`.
pub async fn download(
    server: &ChildServer,
    home: &Path,
    url: &str,
    peers: usize,
    dir: &Path,
    every: Duration,
) -> LargeRun {
    let group = SinkGroup::new(peers);
    let outputs: Vec<PathBuf> = (0..peers).map(|i| dir.join(format!("peer{i}.out"))).collect();
    let swarm = Swarm::start(peers, |i| {
        let mut c = PeerConfig::new(server.control().to_string(), url, outputs[i].clone());
        c.sink = Some(group.clone());
        c
    });
    let started = Instant::now();
    let finished = std::cell::Cell::new(false);
    let mut samples = Vec::new();
    let mut cdn_secs = None;
    let downloads = async {
        let results = swarm.download().await;
        finished.set(true);
        results
    };
    let sampling = async {
        while !finished.get() {
            let task_id = swarm.peers().iter().find_map(|p| p.task_id());
            let cached = task_id.as_deref().map_or(0, |id| cache_bytes(home, id));
            if cdn_secs.is_none() {
                if let Some(id) = &task_id {
                    if task_info(server, id).await["cdnStatus"] == "SUCCESS" {
                        cdn_secs = Some(started.elapsed().as_secs_f64());
                    }
                }
            }
            samples.push(Sample {
                secs: started.elapsed().as_secs_f64(),
                rss_kib: proc_rss(server.pid()).1,
                cached,
                outputs_on_disk: outputs.iter().map(|o| allocated(o)).sum(),
                pieces_held: swarm.peers().iter().map(|p| p.stats().fetched.len() as u64).sum(),
            });
            actix_web::rt::time::sleep(every).await;
        }
    };
    let (results, ()) = futures_util::join!(downloads, sampling);
    let wall = started.elapsed();
    let task_id = swarm.peers().iter().find_map(|p| p.task_id()).expect("the peers registered");
    let task = task_info(server, &task_id).await;
    swarm.stop_uploaders().await;
    LargeRun { results, samples, wall, cdn_secs, task, punched: group.punched_bytes() }
}

/// Bytes of the task's cache file (finished or still being written).
fn cache_bytes(home: &Path, id: &str) -> u64 {
    let dir = cache_dir(home, id);
    [dir.join(id), dir.join(format!("{id}.tmp"))]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// Bytes of disk a file takes.
fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}
