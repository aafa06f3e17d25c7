//! Lookups for the API, the ops page and disk GC.

use std::collections::{HashMap, HashSet};

use actix::prelude::*;

use super::PieceScheduler;
use crate::ids::{ClientId, PeerId, TaskId};

impl PieceScheduler {
    /// The download of `peer` of a task; the first by CID when the host runs several.
    pub(super) fn client_of_peer(&self, task_id: &TaskId, peer: &PeerId) -> Option<ClientId> {
        if *peer == self.super_peer {
            return Some(self.super_cid(task_id));
        }
        let task = self.tasks.get(task_id)?;
        task.clients.iter().filter(|(_, c)| c.peer_id == *peer).map(|(k, _)| k).min().cloned()
    }
}

/// Per-task progress for the task list and the ops page.
#[derive(Message, Debug, Clone)]
#[rtype(result = "HashMap<TaskId, TaskProgress>")]
pub struct Progress;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskProgress {
    pub clients: usize,
    /// Pieces the CDN has on disk.
    pub cdn_pieces: usize,
    pub finished_clients: usize,
}

impl Handler<Progress> for PieceScheduler {
    type Result = MessageResult<Progress>;

    fn handle(&mut self, _msg: Progress, _ctx: &mut Context<Self>) -> Self::Result {
        let progress = self.tasks.iter().map(|(id, t)| {
            let local = || t.clients.values().filter(|c| c.is_local());
            let finished = local().filter(|c| t.piece_total > 0 && c.have_count >= t.piece_total).count();
            let p = TaskProgress {
                clients: local().count(),
                cdn_pieces: t.cdn_pieces.iter().flatten().count(),
                finished_clients: finished,
            };
            (id.clone(), p)
        });
        MessageResult(progress.collect())
    }
}

/// Tasks with at least one client: disk GC leaves their files alone.
#[derive(Message, Debug, Clone)]
#[rtype(result = "HashSet<TaskId>")]
pub struct BusyTasks;

impl Handler<BusyTasks> for PieceScheduler {
    type Result = MessageResult<BusyTasks>;

    fn handle(&mut self, _msg: BusyTasks, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.tasks.iter().filter(|(_, t)| !t.clients.is_empty()).map(|(id, _)| id.clone()).collect())
    }
}
