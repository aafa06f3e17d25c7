//! `GcActor`: keeps a long-running supernode from growing without bound.
//!
//! It owns no state of its own. A meta run asks the scheduler which clients and tasks are
//! idle (only it knows when each was last heard from), deletes idle tasks through the
//! `TaskManager` and idle peers through the `PeerRegistry`. A disk run asks the
//! `CdnManager` to evict cached files when the disk runs low or the cache is over its
//! quota, sparing the files of tasks that still have clients. Each runs on its own cadence
//! of the shared clock.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde::Deserialize;

use crate::cdn::{CacheFiles, CdnManager, CollectDisk, DiskPolicy};
use crate::clock::{run_every, SharedClock};
use crate::metrics::Metrics;
use crate::peer_registry::{CollectIdlePeers, PeerRegistry};
use crate::scheduler::{BusyTasks, PieceScheduler, Sweep};
use crate::task_manager::{DeleteTask, TaskManager};

/// `[gc]` settings; names and defaults from Go where it had them. `peer_expire_time` is
/// ours: a peer nothing was heard from for that long goes with its downloads.
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

/// The actors GC works through.
#[derive(Clone)]
pub struct GcTargets {
    pub peers: Addr<PeerRegistry>,
    pub tasks: Addr<TaskManager>,
    pub scheduler: Addr<PieceScheduler>,
    pub cdn: Addr<CdnManager>,
}

pub struct GcActor {
    config: GcConfig,
    cache_quota: u64,
    targets: GcTargets,
    metrics: Arc<Metrics>,
    clock: SharedClock,
}

impl GcActor {
    pub fn new(
        config: GcConfig,
        cache_quota: u64,
        targets: GcTargets,
        metrics: Arc<Metrics>,
        clock: SharedClock,
    ) -> Self {
        GcActor { config, cache_quota, targets, metrics, clock }
    }

    fn meta(&self) -> impl std::future::Future<Output = GcReport> + 'static {
        let (c, t, metrics) = (self.config.clone(), self.targets.clone(), self.metrics.clone());
        async move {
            let mut report = GcReport::default();
            metrics.gc_runs.with_label_values(&["meta"]).inc();
            let sweep = Sweep {
                client_idle: c.peer_expire_time,
                down_delay: c.peer_gc_delay,
                task_idle: c.task_expire_time,
                seed_idle: c.seed_expire_time,
            };
            let Ok(swept) = t.scheduler.send(sweep).await else { return report };
            report.clients = swept.removed_clients.len();
            for id in &swept.idle_tasks {
                let delete = DeleteTask { task_id: id.clone(), files: CacheFiles::Keep };
                if t.tasks.send(delete).await.unwrap_or(false) {
                    report.tasks += 1;
                }
            }
            let idle = CollectIdlePeers { idle: c.peer_expire_time, keep: swept.active_peers };
            report.peers = t.peers.send(idle).await.map_or(0, |gone| gone.len());
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
            report
        }
    }

    fn disk(&self) -> impl std::future::Future<Output = GcReport> + 'static {
        let (c, t, metrics, quota) =
            (self.config.clone(), self.targets.clone(), self.metrics.clone(), self.cache_quota);
        async move {
            metrics.gc_runs.with_label_values(&["disk"]).inc();
            let policy = DiskPolicy {
                young_gc_threshold: c.young_gc_threshold,
                full_gc_threshold: c.full_gc_threshold,
                recent_window: c.recent_window,
                clean_ratio: c.clean_ratio,
                quota,
            };
            let Ok(protected) = t.scheduler.send(BusyTasks).await else { return GcReport::default() };
            let evicted = t.cdn.send(CollectDisk { policy, protected }).await.unwrap_or_default();
            let files = evicted.len();
            for id in evicted {
                t.tasks.do_send(DeleteTask { task_id: id, files: CacheFiles::Remove });
            }
            GcReport { files, ..GcReport::default() }
        }
    }
}

impl Actor for GcActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (clock, c) = (self.clock.clone(), self.config.clone());
        run_every(ctx, &clock, c.initial_delay, c.meta_interval, |_: &mut Self, ctx| ctx.notify(RunGc::Meta));
        run_every(ctx, &clock, c.initial_delay, c.disk_interval, |_: &mut Self, ctx| ctx.notify(RunGc::Disk));
    }
}

/// One GC run now; the periodic runs send it too.
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
        match msg {
            RunGc::Meta => Box::pin(self.meta()),
            RunGc::Disk => Box::pin(self.disk()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdn::store::CacheStore;
    use crate::clock::ManualClock;
    use crate::ids::{ClientId, PeerId, TaskId};
    use crate::scheduler::{Offer, Progress, RegisterClient, SchedulerConfig};
    use crate::task_manager::{Neighbours, TaskSettings};
    use std::net::Ipv4Addr;

    struct Gc {
        gc: Addr<GcActor>,
        scheduler: Addr<PieceScheduler>,
        clock: Arc<ManualClock>,
        metrics: Arc<Metrics>,
        _home: tempfile::TempDir,
    }

    impl Gc {
        fn runs(&self, kind: &str) -> u64 {
            self.metrics.gc_runs.with_label_values(&[kind]).get()
        }

        /// Waits (in real time, briefly) until `meta` and `disk` runs have started.
        async fn wait_runs(&self, meta: u64, disk: u64) {
            for _ in 0..2000 {
                if self.runs("meta") >= meta && self.runs("disk") >= disk {
                    break;
                }
                actix::clock::sleep(Duration::from_millis(1)).await;
            }
            assert_eq!((self.runs("meta"), self.runs("disk")), (meta, disk));
        }
    }

    /// Every actor GC talks to, on a manual clock that never reaches the periodic runs.
    fn start(config: GcConfig) -> Gc {
        let home = tempfile::tempdir().unwrap();
        let clock = ManualClock::new();
        let shared: SharedClock = clock.clone();
        let metrics = Arc::new(Metrics::new());
        let peers = PeerRegistry::new(metrics.clone(), 100, shared.clone()).start();
        let super_peer = PeerId::for_supernode("sn", "127.0.0.1");
        let scheduler = PieceScheduler::new(
            SchedulerConfig::default(),
            super_peer,
            Ipv4Addr::LOCALHOST,
            8001,
            metrics.clone(),
            shared.clone(),
        )
        .start();
        let store = CacheStore::open(home.path()).unwrap();
        let cdn = CdnManager::new(
            store,
            Default::default(),
            Default::default(),
            scheduler.clone().recipient(),
            metrics.clone(),
            shared.clone(),
            Default::default(),
        )
        .start();
        let limits = TaskSettings {
            max_tasks: 10,
            fail_access_interval: Duration::from_secs(180),
            open_wait: Duration::from_secs(5),
            cdn_pattern: crate::cdn::CdnPattern::Local,
        };
        let next = Neighbours { cdn: cdn.clone(), scheduler: scheduler.clone(), peers: peers.clone(), forwarder: None };
        let view = crate::cluster::ClusterView::alone(crate::cluster::view::member(1));
        let tasks = TaskManager::new(&[], next, view, metrics.clone(), shared.clone(), limits).start();
        let targets = GcTargets { peers, tasks, scheduler: scheduler.clone(), cdn };
        let gc = GcActor::new(config, 0, targets, metrics.clone(), shared).start();
        Gc { gc, scheduler, clock, metrics, _home: home }
    }

    async fn clients(s: &Addr<PieceScheduler>) -> usize {
        s.send(Progress).await.unwrap().values().map(|p| p.clients).sum()
    }

    #[actix::test]
    async fn idle_clients_go_on_meta_runs_only_and_are_counted() {
        let config = GcConfig { initial_delay: Duration::from_secs(3600), ..GcConfig::default() };
        let g = start(config.clone());
        let register = RegisterClient {
            task_id: TaskId::compute("http://h/f", "", "", None),
            cid: ClientId::new("c1"),
            peer_id: PeerId::for_host("h", "10.0.0.2"),
            ip: Ipv4Addr::new(10, 0, 0, 2),
            port: 20000,
            path: "/p".into(),
            super_node_ip: String::new(),
            offer: Offer::Pieces,
            call_system: String::new(),
        };
        g.scheduler.send(register).await.unwrap().unwrap();
        g.clock.advance(config.peer_expire_time - Duration::from_secs(1));
        assert_eq!(g.gc.send(RunGc::Meta).await.unwrap().clients, 0, "not idle long enough yet");
        g.clock.advance(Duration::from_secs(1));
        assert_eq!(g.gc.send(RunGc::Disk).await.unwrap(), GcReport::default());
        assert_eq!(clients(&g.scheduler).await, 1, "a disk run leaves clients alone");
        assert_eq!(g.gc.send(RunGc::Meta).await.unwrap().clients, 1, "the meta run collects and counts it");
        assert_eq!(clients(&g.scheduler).await, 0);
    }

    #[actix::test]
    async fn periodic_runs_follow_the_clock() {
        let config = GcConfig {
            initial_delay: Duration::from_secs(6),
            meta_interval: Duration::from_secs(120),
            disk_interval: Duration::from_secs(15),
            ..GcConfig::default()
        };
        let g = start(config);
        // The actor arms its two timers when it starts.
        while g.clock.pending_sleeps() < 2 {
            actix::clock::sleep(Duration::from_millis(1)).await;
        }
        g.clock.advance(Duration::from_secs(5));
        g.clock.advance(Duration::from_secs(1));
        g.wait_runs(1, 1).await;
        g.clock.advance(Duration::from_secs(15));
        g.wait_runs(1, 2).await;
        g.clock.advance(Duration::from_secs(105));
        g.wait_runs(2, 3).await; // one run per advance: time jumps, runs do not pile up
    }
}
