//! One sync with the shared store: publish what changed here, read what the other nodes
//! published about the tasks this node knows, and hand that to the scheduler (clients,
//! CDN pieces) and the task manager (owners' task records).

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;

use super::store::{ClusterStore, StoreError};
use super::view::ClusterView;
use crate::scheduler::{PieceScheduler, RemoteState, TakeChanges};
use crate::task_manager::{RemoteTaskRecords, TaskManager};

/// What a sync talks to.
#[derive(Clone)]
pub(super) struct SyncTargets {
    pub store: Arc<dyn ClusterStore>,
    pub scheduler: Addr<PieceScheduler>,
    pub tasks: Addr<TaskManager>,
    pub state_ttl: Duration,
}

/// Runs one sync; `full` publishes everything (the store may have lost it).
pub(super) async fn sync(t: SyncTargets, view: ClusterView, full: bool) -> Result<(), StoreError> {
    let Ok(local) = t.scheduler.send(TakeChanges { full }).await else { return Ok(()) };
    t.store.push(local.changes, t.state_ttl).await?;
    let pulled = t.store.pull(local.interest).await?;
    let records: Vec<_> = pulled.iter().filter_map(|p| Some((p.task.clone(), p.record.clone()?))).collect();
    if !records.is_empty() {
        t.tasks.do_send(RemoteTaskRecords(records));
    }
    let live = view.members.iter().map(|m| m.id.clone()).collect();
    t.scheduler.do_send(RemoteState { tasks: pulled, live });
    Ok(())
}
