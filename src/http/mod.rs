//! The control API: handlers only parse and validate the wire request, send a typed
//! message to an actor and render the reply.

pub mod error;
pub mod json;
mod middleware;
mod peers;
mod preheat;
mod registry;
mod result;
mod schedule;
mod seeds;
mod ui;
mod system;
mod tasks;

use std::sync::Arc;

use actix::Addr;
use actix_web::web;
use supernode_actors::cdn::CdnManager;
use supernode_actors::metrics::Metrics;
use supernode_actors::preheat::PreheatManager;
use supernode_actors::scheduler::PieceScheduler;
use supernode_actors::task_manager::TaskManager;
use supernode_actors::PeerRegistry;

/// What every handler may reach: actor addresses and a few settings.
pub struct AppState {
    pub peers: Addr<PeerRegistry>,
    pub tasks: Addr<TaskManager>,
    pub cdn: Addr<CdnManager>,
    pub scheduler: Addr<PieceScheduler>,
    pub preheats: Addr<PreheatManager>,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    /// Identity of this process, new at every start (heartbeat `version`).
    pub instance: String,
}

pub use middleware::{observe, strip_version_prefix};

/// Registers every control-API route (unversioned; the prefix is stripped before routing).
pub fn routes(cfg: &mut web::ServiceConfig) {
    system::routes(cfg);
    peers::routes(cfg);
    registry::routes(cfg);
    schedule::routes(cfg);
    schedule::task_metrics::routes(cfg);
    tasks::routes(cfg);
    preheat::routes(cfg);
    seeds::routes(cfg);
    ui::routes(cfg);
}

/// Go's answer for an unknown path (§1.3).
pub async fn not_found() -> actix_web::HttpResponse {
    actix_web::HttpResponse::NotFound().content_type("text/plain; charset=utf-8").body("404 page not found\n")
}

/// Build identity, for `/version` and the build-info gauge.
pub fn system_version() -> &'static system::DragonflyVersion {
    &system::VERSION
}
