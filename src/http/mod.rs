//! The control API: handlers only parse and validate the wire request, send a typed
//! message to an actor and render the reply.

mod cluster;
pub mod error;
mod jobs;
pub mod json;
mod middleware;
mod peers;
mod pieces;
mod preheat;
pub mod profiler;
pub mod registry;
mod reply;
mod result;
mod schedule;
mod seeds;
mod system;
mod task_metrics;
mod tasks;
mod ui;

use std::sync::Arc;

use actix::Addr;
use actix_web::http::Method;
use actix_web::web;
use supernode_actors::cdn::{CdnPattern, SourcePolicy};

use crate::config::SecurityConfig;
use supernode_actors::metrics::Metrics;
use supernode_actors::preheat::PreheatManager;
use supernode_actors::reports::DfgetReports;
use supernode_actors::scheduler::PieceScheduler;
use supernode_actors::task_manager::TaskManager;
use supernode_actors::PeerRegistry;

/// What every handler may reach: actor addresses and a few settings.
pub struct AppState {
    pub peers: Addr<PeerRegistry>,
    pub tasks: Addr<TaskManager>,
    pub scheduler: Addr<PieceScheduler>,
    pub preheats: Addr<PreheatManager>,
    pub reports: Addr<DfgetReports>,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    /// Identity of this process, new at every start (heartbeat `version`).
    pub instance: String,
    pub policy: SourcePolicy,
    pub security: SecurityConfig,
    pub cdn_pattern: CdnPattern,
    /// Whether `/debug/pprof/profile` answers.
    pub profiling: profiler::Profiling,
}

impl AppState {
    /// A registration reply's `cdnSource`: where the supernode's pieces come from.
    pub fn cdn_source(&self) -> &'static str {
        match self.cdn_pattern {
            CdnPattern::Local => "supernode",
            CdnPattern::Source => "source",
        }
    }

    /// 400 when a request list is longer than `[security] max_list_len`.
    pub fn check_list_len(&self, field: &str, len: usize) -> Result<(), error::ApiError> {
        let max = self.security.max_list_len;
        if len > max {
            return Err(error::ApiError::BadRequest(format!("{field}: {len} entries, at most {max} allowed")));
        }
        Ok(())
    }

    /// 403 unless the source policy admits `url`'s host.
    pub fn check_source(&self, url: &str) -> Result<(), error::ApiError> {
        self.policy.check_url(url).map_err(|e| error::ApiError::Forbidden(e.to_string()))
    }

    /// 403 unless `call_system` may register.
    pub fn check_call_system(&self, call_system: &str) -> Result<(), error::ApiError> {
        if self.security.call_system_allowed(call_system) {
            Ok(())
        } else {
            Err(error::ApiError::Forbidden(format!("callSystem {call_system:?} is not allowed to register")))
        }
    }
}

pub use middleware::{observe, require_token, strip_version_prefix};

/// Registers routes and remembers each (method, path), so the route table can be
/// compared with the published OpenAPI document.
pub struct RouteSet<'a> {
    cfg: &'a mut web::ServiceConfig,
    table: Vec<(Method, String)>,
}

impl RouteSet<'_> {
    pub fn add(&mut self, path: &str, routes: Vec<(Method, actix_web::Route)>) {
        let mut resource = web::resource(path.to_string());
        for (method, route) in routes {
            self.table.push((method.clone(), path.to_string()));
            resource = resource.route(route.method(method));
        }
        self.cfg.service(resource);
    }
}

fn register(r: &mut RouteSet) {
    system::routes(r);
    peers::routes(r);
    registry::routes(r);
    schedule::routes(r);
    task_metrics::routes(r);
    tasks::routes(r);
    pieces::routes(r);
    preheat::routes(r);
    seeds::routes(r);
    ui::routes(r);
    cluster::routes(r);
    jobs::routes(r);
    profiler::routes(r);
}

/// Registers every control-API route (unversioned; the prefix is stripped before routing).
pub fn routes(cfg: &mut web::ServiceConfig) {
    register(&mut RouteSet { cfg, table: Vec::new() });
}

/// Every (method, path template) the control API answers.
pub fn route_table() -> Vec<(Method, String)> {
    let mut table = Vec::new();
    let _ = actix_web::App::new().configure(|cfg| {
        let mut r = RouteSet { cfg, table: Vec::new() };
        register(&mut r);
        table = r.table;
    });
    table
}

/// Go's answer for an unknown path.
pub async fn not_found() -> actix_web::HttpResponse {
    actix_web::HttpResponse::NotFound().content_type("text/plain; charset=utf-8").body("404 page not found\n")
}
