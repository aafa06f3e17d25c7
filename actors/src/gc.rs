//! `GcActor`: keeps a long-running supernode from growing without bound (§9, §16 P16).
//!
//! It owns no state of its own: each run asks the scheduler which clients and tasks are
//! idle (only it knows when each was last heard from), deletes idle tasks through the
//! `TaskManager`, idle peers through the `PeerRegistry`, and asks the `CdnManager` to
//! evict cached files when the disk runs low or the cache is over its quota.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde::Deserialize;

use crate::cdn::{CdnManager, CollectDisk, DiskPolicy};
use crate::metrics::Metrics;
use crate::peer_registry::{CollectIdlePeers, PeerRegistry};
use crate::scheduler::{PieceScheduler, Sweep};
use crate::task_manager::{DeleteTask, TaskManager};

/// `[gc]` settings; names and defaults from Go where it had them (§11, §16 P16).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GcConfig {
    /// Delay before the first run (`gcInitialDelay`).
    #[serde(with = "humantime_serde")]
    pub initial_delay: Duration,
    /// Period of task and peer GC (`gcMetaInterval`).
    #[serde(with = "humantime_serde")]
    pub meta_interval: Duration,
    /// A finished task with no client request for this long is collected (`taskExpireTime`).
    #[serde(with = "humantime_serde")]
    pub task_expire_time: Duration,
    /// A client whose uploader went down is collected this long after (`peerGCDelay`).
    #[serde(with = "humantime_serde")]
    pub peer_gc_delay: Duration,
    /// A peer (and its clients) not heard from for this long is collected (`peerExpireTime`).
    #[serde(with = "humantime_serde")]
    pub peer_expire_time: Duration,
    /// A seed that stopped heart-beating for this long is dropped.
    #[serde(with = "humantime_serde")]
    pub seed_expire_time: Duration,
    /// Period of disk GC (`gcDiskInterval`).
    #[serde(with = "humantime_serde")]
    pub disk_interval: Duration,
    /// Free bytes above which no disk GC happens (`youngGCThreshold`).
    pub young_gc_threshold: u64,
    /// Free bytes at or below which any idle file may be evicted (`fullGCThreshold`).
    pub full_gc_threshold: u64,
    /// Files used within this window are evicted only when the disk is full or the quota exceeded.
    #[serde(with = "humantime_serde")]
    pub recent_window: Duration,
    /// Tenths of the old files evicted per run while free space is merely low (`CleanRatio`).
    pub clean_ratio: u32,
}

impl Default for GcConfig {
    fn default() -> Self {
        const GIB: u64 = 1024 * 1024 * 1024;
        GcConfig {
            initial_delay: Duration::from_secs(6),
            meta_interval: Duration::from_secs(120),
            task_expire_time: Duration::from_secs(180),
            peer_gc_delay: Duration::from_secs(180),
            peer_expire_time: Duration::from_secs(600),
            seed_expire_time: Duration::from_secs(120),
            disk_interval: Duration::from_secs(15),
            young_gc_threshold: 100 * GIB,
            full_gc_threshold: 5 * GIB,
            recent_window: Duration::from_secs(2 * 3600),
            clean_ratio: 1,
        }
    }
}

pub struct GcActor {
    config: GcConfig,
    cache_quota: u64,
    peers: Addr<PeerRegistry>,
    tasks: Addr<TaskManager>,
    scheduler: Addr<PieceScheduler>,
    cdn: Addr<CdnManager>,
    metrics: Arc<Metrics>,
}

impl GcActor {
    pub fn new(
        config: GcConfig,
        cache_quota: u64,
        peers: Addr<PeerRegistry>,
        tasks: Addr<TaskManager>,
        scheduler: Addr<PieceScheduler>,
        cdn: Addr<CdnManager>,
        metrics: Arc<Metrics>,
    ) -> Self {
        GcActor { config, cache_quota, peers, tasks, scheduler, cdn, metrics }
    }
}

impl Actor for GcActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(self.config.initial_delay, |act, ctx| {
            ctx.notify(RunGc::Meta);
            ctx.notify(RunGc::Disk);
            ctx.run_interval(act.config.meta_interval, |_, ctx| ctx.notify(RunGc::Meta));
            ctx.run_interval(act.config.disk_interval, |_, ctx| ctx.notify(RunGc::Disk));
        });
    }
}

/// One GC run now; also sent by tests and operators.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "GcReport")]
pub enum RunGc {
    /// Peers, clients and tasks.
    Meta,
    /// Cached files.
    Disk,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub clients: usize,
    pub tasks: usize,
    pub peers: usize,
    pub files: usize,
}

impl Handler<RunGc> for GcActor {
    type Result = ResponseFuture<GcReport>;

    fn handle(&mut self, msg: RunGc, _ctx: &mut Context<Self>) -> Self::Result {
        let c = self.config.clone();
        let (peers, tasks, scheduler, cdn, metrics) =
            (self.peers.clone(), self.tasks.clone(), self.scheduler.clone(), self.cdn.clone(), self.metrics.clone());
        let quota = self.cache_quota;
        Box::pin(async move {
            let mut report = GcReport::default();
            let sweep = Sweep {
                client_idle: c.peer_expire_time,
                down_delay: c.peer_gc_delay,
                task_idle: c.task_expire_time,
                seed_idle: c.seed_expire_time,
            };
            let Ok(swept) = scheduler.send(sweep).await else { return report };
            match msg {
                RunGc::Meta => {
                    metrics.gc_runs.with_label_values(&["meta"]).inc();
                    report.clients = swept.removed_clients.len();
                    for id in &swept.idle_tasks {
                        if tasks.send(DeleteTask { task_id: id.clone(), delete_files: false }).await.unwrap_or(false) {
                            report.tasks += 1;
                        }
                    }
                    let gone = peers
                        .send(CollectIdlePeers { idle: c.peer_expire_time, keep: swept.active_peers })
                        .await
                        .unwrap_or_default();
                    report.peers = gone.len();
                    metrics.gc_tasks.inc_by(report.tasks as u64);
                    metrics.gc_peers.inc_by(report.peers as u64);
                    if report != GcReport::default() {
                        tracing::info!(
                            clients = report.clients,
                            tasks = report.tasks,
                            peers = report.peers,
                            "meta GC collected"
                        );
                    }
                }
                RunGc::Disk => {
                    metrics.gc_runs.with_label_values(&["disk"]).inc();
                    let policy = DiskPolicy {
                        young_gc_threshold: c.young_gc_threshold,
                        full_gc_threshold: c.full_gc_threshold,
                        recent_window: c.recent_window,
                        clean_ratio: c.clean_ratio,
                        quota,
                    };
                    let evicted =
                        cdn.send(CollectDisk { policy, protected: swept.busy_tasks }).await.unwrap_or_default();
                    report.files = evicted.len();
                    for id in evicted {
                        tasks.do_send(DeleteTask { task_id: id, delete_files: true });
                    }
                }
            }
            report
        })
    }
}
