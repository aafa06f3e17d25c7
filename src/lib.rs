//! The supernode binary's library half: configuration, the HTTP layer and the wiring
//! of actors to listeners. `main.rs` only parses flags and calls [`start`]; tests call
//! [`start`] directly to run a real server on ephemeral ports.

pub mod build_info;
pub mod config;
pub mod download;
pub mod http;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Arbiter};
use actix_web::dev::ServerHandle;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use supernode_actors::cdn::store::CacheStore;
use supernode_actors::cdn::{scan, CdnManager};
use supernode_actors::clock::{SharedClock, SystemClock};
use supernode_actors::cluster::forward::Forwarder;
use supernode_actors::cluster::{ClusterActor, ClusterDeps, ClusterView, Member, NodeId, RedisStore};
use supernode_actors::gc::{GcActor, GcReport, GcTargets, RunGc};
use supernode_actors::metrics::Metrics;
use supernode_actors::peer_registry::{PeerKind, RegisterPeer};
use supernode_actors::preheat::{PreheatManager, SeedHost};
use supernode_actors::reports::DfgetReports;
use supernode_actors::scheduler::PieceScheduler;
use supernode_actors::task_manager::{Neighbours, TaskManager, TaskSettings};
use supernode_actors::throttle::Throttle;
use supernode_actors::PeerRegistry;
use tokio::task::JoinHandle;

use crate::config::Settings;
use crate::http::AppState;

/// A started server: its bound addresses and the handles to stop it.
pub struct RunningServer {
    pub control_addr: SocketAddr,
    pub download_addr: SocketAddr,
    /// The control API over HTTPS, when `[server] tls_port` is set.
    pub tls_addr: Option<SocketAddr>,
    control: ServerHandle,
    task: JoinHandle<std::io::Result<()>>,
    download: download::DownloadServer,
    gc: Addr<GcActor>,
}

impl RunningServer {
    /// Waits until the listeners stop (SIGINT/SIGTERM or [`RunningServer::stop`]): the control
    /// API handles the signals, and the download port stops with it.
    pub async fn wait(self) -> std::io::Result<()> {
        let result = self.task.await.map_err(std::io::Error::other).and_then(|r| r);
        self.download.stop(true).await;
        result
    }

    /// Stops the listeners; `graceful` lets in-flight requests finish.
    pub async fn stop(&self, graceful: bool) {
        self.control.stop(graceful).await;
        self.download.stop(graceful).await;
    }

    /// Runs one garbage collection now and waits for it (also what the periodic runs do).
    pub async fn run_gc(&self, kind: RunGc) -> GcReport {
        self.gc.send(kind).await.unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cache directory under {home}: {source}")]
    Cache { home: String, source: std::io::Error },
    #[error("registering the super peer: {0}")]
    SuperPeer(String),
    #[error("cluster.redis_url: {0}")]
    Cluster(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Starts the actors and both listeners on the system clock. Must run inside an actix system.
pub async fn start(settings: Settings) -> Result<RunningServer, StartError> {
    start_with_clock(settings, SystemClock::shared()).await
}

/// [`start`] with the clock every actor reads (tests pass a manual one).
pub async fn start_with_clock(settings: Settings, clock: SharedClock) -> Result<RunningServer, StartError> {
    let cfg = &settings.config;
    let server_cfg = &cfg.server;
    let metrics = Arc::new(Metrics::new());
    let v = &build_info::VERSION;
    metrics.build_info.with_label_values(&[v.version, v.revision, v.os, v.arch, v.go_version]).set(1.0);

    let store = CacheStore::open(&settings.home_dir)
        .map_err(|source| StartError::Cache { home: settings.home_dir.display().to_string(), source })?;
    let found = scan::scan(&store);
    let policy = settings.source_policy.clone();
    tracing::info!(
        files = found.files.len(),
        partial = found.partials.len(),
        removed = found.removed.len(),
        dir = %store.root().display(),
        "cache loaded"
    );

    let peers = PeerRegistry::new(metrics.clone(), server_cfg.max_peers, clock.clone()).start();
    let super_peer = peers
        .send(RegisterPeer {
            host_name: hostname(),
            ip: settings.advertise_ip,
            port: server_cfg.download_port,
            version: v.version.to_string(),
            kind: PeerKind::Supernode,
        })
        .await
        .map_err(|e| StartError::SuperPeer(e.to_string()))?
        .map_err(|e| StartError::SuperPeer(e.to_string()))?
        .info;

    // Bind first: the real port numbers (they may be 0 in tests) are what clients and the
    // other nodes of a cluster are told.
    let download_bind = SocketAddr::new(server_cfg.listen_host, server_cfg.download_port);
    let control_bind = SocketAddr::new(server_cfg.listen_host, server_cfg.port);
    let bind = |addr: SocketAddr| {
        let listener = std::net::TcpListener::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
        let bound = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
        Ok::<_, StartError>((listener, bound))
    };
    let (download_listener, download_addr) = bind(download_bind)?;
    let (control_listener, control_addr) = bind(control_bind)?;
    let tls = match (server_cfg.tls_port, &server_cfg.tls_cert_file, &server_cfg.tls_key_file) {
        (Some(port), Some(cert), Some(key)) => {
            let config = tls::server_config(cert, key)?;
            let (listener, addr) = bind(SocketAddr::new(server_cfg.listen_host, port))?;
            Some((listener, addr, config))
        }
        _ => None,
    };
    let me = Member {
        id: NodeId::new(settings.advertise_ip, control_addr.port()),
        advertise_ip: settings.advertise_ip,
        port: control_addr.port(),
        download_port: download_addr.port(),
        super_peer: super_peer.id.clone(),
        started_ms: chrono::Utc::now().timestamp_millis(),
    };
    let cluster = &cfg.cluster;

    let scheduler = PieceScheduler::new(
        cfg.scheduler.clone(),
        super_peer.id,
        settings.advertise_ip,
        download_addr.port(),
        metrics.clone(),
        clock.clone(),
    );
    let scheduler = if cluster.enabled() { scheduler.in_cluster(me.id.clone()) } else { scheduler }.start();
    // The CDN reads and writes files: its own thread, so disk work never stalls the scheduler.
    let cached = found.files.clone();
    let cdn = {
        let (cdn_cfg, metrics, policy, clock) = (cfg.cdn.clone(), metrics.clone(), policy.clone(), clock.clone());
        let pieces = scheduler.clone().recipient();
        CdnManager::start_in_arbiter(&named_arbiter(c"cdn").handle(), move |_| {
            CdnManager::new(store, cdn_cfg, found, pieces, metrics, clock, policy)
        })
    };
    let task_settings = TaskSettings {
        max_tasks: cfg.tasks.max_tasks,
        fail_access_interval: cfg.cdn.fail_access_interval,
        open_wait: cfg.cdn.source_head_timeout + cfg.cdn.source_connect_timeout,
        cdn_pattern: cfg.cdn.pattern,
    };
    let forwarder = cluster.enabled().then(|| Forwarder::new(Some(cfg.security.api_token.clone())));
    let next = Neighbours { cdn: cdn.clone(), scheduler: scheduler.clone(), peers: peers.clone(), forwarder };
    let view = ClusterView::alone(me.clone());
    let tasks = TaskManager::new(&cached, next, view, metrics.clone(), clock.clone(), task_settings).start();
    if cluster.enabled() {
        let store =
            RedisStore::new(&cluster.redis_url, &cluster.key_prefix).map_err(|e| StartError::Cluster(e.to_string()))?;
        let deps = ClusterDeps {
            scheduler: scheduler.clone(),
            tasks: tasks.clone(),
            metrics: metrics.clone(),
            clock: clock.clone(),
        };
        ClusterActor::new(cluster.clone(), me.clone(), Arc::new(store), deps).start();
        tracing::info!(node = %me.id, "cluster mode");
    }

    let targets =
        GcTargets { peers: peers.clone(), tasks: tasks.clone(), scheduler: scheduler.clone(), cdn: cdn.clone() };
    let gc = GcActor::new(cfg.gc.clone(), cfg.cdn.cache_quota_bytes, targets, metrics.clone(), clock.clone()).start();
    // Preheat records are written to disk on every change: their own thread too.
    let preheats = {
        let (home, tasks, cdn, cfg, policy, clock) =
            (settings.home_dir.clone(), tasks.clone(), cdn.clone(), cfg.preheat.clone(), policy.clone(), clock.clone());
        let seed = SeedHost { hostname: hostname(), ip: settings.advertise_ip };
        PreheatManager::start_in_arbiter(&named_arbiter(c"preheat").handle(), move |_| {
            PreheatManager::new(&home, tasks, cdn, cfg, policy, clock).with_seed_host(seed)
        })
    };
    let reports = DfgetReports::new(metrics.clone()).start();
    let state = web::Data::new(AppState {
        peers,
        tasks,
        scheduler,
        preheats,
        reports,
        metrics,
        max_body_bytes: server_cfg.max_body_bytes,
        instance: format!("{}-{}", v.version, uuid::Uuid::new_v4()),
        policy,
        security: cfg.security.clone(),
        cdn_pattern: cfg.cdn.pattern,
        profiling: if server_cfg.profiler { http::profiler::Profiling::On } else { http::profiler::Profiling::Off },
    });
    let control = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(http::routes)
            .default_service(web::to(http::not_found))
            .wrap(from_fn(http::require_token))
            .wrap(from_fn(http::observe))
            .wrap(from_fn(http::strip_version_prefix))
    })
    .client_request_timeout(Duration::from_secs(600))
    .keep_alive(Duration::from_secs(600))
    .shutdown_timeout(server_cfg.shutdown_timeout_secs)
    .listen(control_listener)
    .map_err(|source| StartError::Bind { addr: control_bind, source })?;
    let (control, tls_addr) = match tls {
        Some((listener, addr, config)) => {
            let control =
                control.listen_rustls_0_23(listener, config).map_err(|source| StartError::Bind { addr, source })?;
            (control, Some(addr))
        }
        None => (control, None),
    };

    let throttle = Throttle::new(Some(server_cfg.upload_rate_limit).filter(|r| !r.is_unlimited()));
    let download_state = download::DownloadState { cdn, throttle };
    let shutdown_timeout = Duration::from_secs(server_cfg.shutdown_timeout_secs);
    let download = download::DownloadServer::start(download_listener, download_state, shutdown_timeout)
        .map_err(|source| StartError::Bind { addr: download_bind, source })?;

    let control = control.run();
    let handle = control.handle();
    let task = actix_web::rt::spawn(control);
    if let Some(addr) = tls_addr {
        tracing::info!(%addr, "control API over HTTPS");
    }
    tracing::info!(%control_addr, %download_addr, home = %settings.home_dir.display(), advertise_ip = %settings.advertise_ip, "supernode listening");
    Ok(RunningServer { control_addr, download_addr, tls_addr, control: handle, task, download, gc })
}

/// An arbiter whose thread is called `name` (at most 15 bytes) in `top -H`, `perf` and
/// `/proc`, where actix would call every one `actix-rt|system`.
fn named_arbiter(name: &'static std::ffi::CStr) -> Arbiter {
    let arbiter = Arbiter::new();
    arbiter.spawn_fn(move || {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string, which `name` is for as long as it lives.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    });
    arbiter
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "supernode".to_string())
}
