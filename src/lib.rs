//! The supernode binary's library half: configuration, the HTTP layer and the wiring
//! of actors to listeners. `main.rs` only parses flags and calls [`start`]; tests call
//! [`start`] directly to run a real server on ephemeral ports.

pub mod config;
pub mod http;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use actix_web::dev::ServerHandle;
use tokio::task::JoinHandle;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use supernode_actors::metrics::Metrics;
use supernode_actors::peer_registry::RegisterPeer;
use supernode_actors::PeerRegistry;

use crate::config::Settings;
use crate::http::AppState;

/// A started server: its bound addresses and the handle to stop it.
pub struct RunningServer {
    pub control_addr: SocketAddr,
    control: ServerHandle,
    control_task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Waits until the listeners stop (SIGINT/SIGTERM or [`RunningServer::stop`]).
    pub async fn wait(self) -> std::io::Result<()> {
        self.control_task.await.map_err(std::io::Error::other)?
    }

    /// Stops the listeners; `graceful` lets in-flight requests finish.
    pub async fn stop(&self, graceful: bool) {
        self.control.stop(graceful).await;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("registering the super peer: {0}")]
    SuperPeer(String),
}

/// Starts the actors and the listeners. Must run inside an actix system.
pub async fn start(settings: Settings) -> Result<RunningServer, StartError> {
    let server_cfg = &settings.config.server;
    let metrics = Arc::new(Metrics::new());
    let v = &http::system_version();
    metrics.build_info.with_label_values(&[v.version, v.revision, v.os, v.arch, v.go_version]).set(1.0);

    let peers = PeerRegistry::new(metrics.clone(), server_cfg.max_peers).start();
    let host_name = hostname();
    peers
        .send(RegisterPeer {
            host_name,
            ip: settings.advertise_ip,
            port: server_cfg.download_port,
            version: v.version.to_string(),
            is_super: true,
        })
        .await
        .map_err(|e| StartError::SuperPeer(e.to_string()))?
        .map_err(|e| StartError::SuperPeer(e.to_string()))?;

    let state = web::Data::new(AppState { peers, metrics, max_body_bytes: server_cfg.max_body_bytes });
    let control_bind = SocketAddr::new(server_cfg.listen_host, server_cfg.port);
    let control = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(http::routes)
            .default_service(web::to(http::not_found))
            .wrap(from_fn(http::observe))
            .wrap(from_fn(http::strip_version_prefix))
    })
    .client_request_timeout(Duration::from_secs(600))
    .keep_alive(Duration::from_secs(600))
    .shutdown_timeout(server_cfg.shutdown_timeout_secs)
    .bind(control_bind)
    .map_err(|source| StartError::Bind { addr: control_bind, source })?;
    let control_addr = control.addrs()[0];
    let control = control.run();
    let control_handle = control.handle();
    let control_task = actix_web::rt::spawn(control);
    tracing::info!(%control_addr, home = %settings.home_dir.display(), advertise_ip = %settings.advertise_ip, "supernode listening");
    Ok(RunningServer { control_addr, control: control_handle, control_task })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "supernode".to_string())
}
