//! `ClusterActor`: this node's membership and its syncs with the other nodes.
//!
//! Every `renew_interval` it renews its member key and reads the live set; a change goes to
//! the task manager (task owners). Every `sync_interval` it runs one sync. When Redis does
//! not answer, the live set is this node alone and syncs stop; when Redis answers again
//! the node rejoins and publishes everything again, since Redis may have lost it.

use std::sync::Arc;

use actix::prelude::*;

use super::store::ClusterStore;
use super::sync::{sync, SyncTargets};
use super::view::{ClusterView, Member};
use super::ClusterConfig;
use crate::clock::{run_every, SharedClock};
use crate::metrics::Metrics;
use crate::scheduler::PieceScheduler;
use crate::task_manager::TaskManager;

/// The actors the cluster actor feeds.
pub struct ClusterDeps {
    pub scheduler: Addr<PieceScheduler>,
    pub tasks: Addr<TaskManager>,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
}

pub struct ClusterActor {
    config: ClusterConfig,
    view: ClusterView,
    targets: SyncTargets,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    /// The next sync publishes everything.
    full: bool,
    syncing: bool,
}

impl ClusterActor {
    pub fn new(config: ClusterConfig, me: Member, store: Arc<dyn ClusterStore>, deps: ClusterDeps) -> Self {
        let targets = SyncTargets { store, scheduler: deps.scheduler, tasks: deps.tasks, state_ttl: config.state_ttl };
        let mut view = ClusterView::alone(me);
        view.healthy = false;
        ClusterActor { config, view, targets, metrics: deps.metrics, clock: deps.clock, full: true, syncing: false }
    }

    fn renew(&mut self, ctx: &mut Context<Self>) {
        let renewal = self.targets.store.renew(&self.view.me, self.config.member_ttl);
        ctx.spawn(renewal.into_actor(self).map(|result, act, _| match result {
            Ok(members) => act.members_seen(members),
            Err(e) => act.store_failed(&e.to_string()),
        }));
    }

    fn members_seen(&mut self, mut members: Vec<Member>) {
        if !members.iter().any(|m| m.id == self.view.me.id) {
            members.push((*self.view.me).clone());
            members.sort_by(|a, b| a.id.cmp(&b.id));
        }
        if !self.view.healthy {
            tracing::info!(members = members.len(), "cluster store reachable: this node is in the cluster");
            self.full = true;
        }
        let changed = !self.view.healthy || *self.view.members != members;
        self.view = ClusterView { me: self.view.me.clone(), members: Arc::new(members), healthy: true };
        self.publish(changed);
    }

    fn store_failed(&mut self, error: &str) {
        if self.view.healthy {
            tracing::error!(%error, "cluster store unavailable: serving as a single node until it is back");
        }
        let changed = self.view.healthy || self.view.members.len() != 1;
        self.view =
            ClusterView { me: self.view.me.clone(), members: Arc::new(vec![(*self.view.me).clone()]), healthy: false };
        self.full = true;
        self.publish(changed);
    }

    fn publish(&self, changed: bool) {
        self.metrics.cluster_healthy.set(i64::from(self.view.healthy));
        self.metrics.cluster_members.set(self.view.members.len() as i64);
        if changed {
            tracing::info!(members = ?self.view.members.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), healthy = self.view.healthy, "cluster view changed");
            self.targets.tasks.do_send(self.view.clone());
        }
    }

    fn sync(&mut self, ctx: &mut Context<Self>) {
        if !self.view.healthy || self.syncing {
            return;
        }
        self.syncing = true;
        let full = std::mem::take(&mut self.full);
        let run = sync(self.targets.clone(), self.view.clone(), full);
        ctx.spawn(run.into_actor(self).map(|result, act, _| {
            act.syncing = false;
            if let Err(e) = result {
                tracing::warn!(error = %e, "cluster sync failed; the next one publishes everything");
                act.full = true;
            }
        }));
    }
}

impl Actor for ClusterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.publish(true);
        self.renew(ctx);
        let (clock, c) = (self.clock.clone(), self.config.clone());
        run_every(ctx, &clock, c.renew_interval, c.renew_interval, |act: &mut Self, ctx| act.renew(ctx));
        run_every(ctx, &clock, c.sync_interval, c.sync_interval, |act: &mut Self, ctx| act.sync(ctx));
    }
}
