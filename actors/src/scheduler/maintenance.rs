//! The scheduler's part of garbage collection (§9.1, §9.2, §16 P16): it alone knows
//! when each client was last heard from, so it decides which clients and tasks are idle.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::PieceScheduler;
use crate::ids::{PeerId, TaskId};
use crate::task_manager::CdnStatus;

/// Removes idle clients and reports idle tasks and the peers still active.
#[derive(Message, Debug, Clone)]
#[rtype(result = "SweepResult")]
pub struct Sweep {
    /// A client not heard from for this long is removed (`peerExpireTime`).
    pub client_idle: Duration,
    /// A client whose uploader went down this long ago is removed (`peerGCDelay`).
    pub down_delay: Duration,
    /// A finished task without any client request for this long is reported idle (`taskExpireTime`).
    pub task_idle: Duration,
    /// A seed that stopped heart-beating for this long is removed.
    pub seed_idle: Duration,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SweepResult {
    pub removed_clients: Vec<(TaskId, String)>,
    pub idle_tasks: Vec<TaskId>,
    /// Peers with at least one remaining client.
    pub active_peers: HashSet<PeerId>,
    /// Tasks with at least one remaining client (their cached files must stay).
    pub busy_tasks: HashSet<TaskId>,
}

impl Handler<Sweep> for PieceScheduler {
    type Result = MessageResult<Sweep>;

    fn handle(&mut self, msg: Sweep, _ctx: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let mut out = SweepResult::default();
        for (id, task) in &self.tasks {
            for (cid, c) in &task.clients {
                let idle = now.duration_since(c.last_seen);
                let gone = idle >= msg.client_idle
                    || (c.seed && idle >= msg.seed_idle)
                    || c.down_since.is_some_and(|t| now.duration_since(t) >= msg.down_delay);
                if gone {
                    out.removed_clients.push((id.clone(), cid.clone()));
                }
            }
        }
        for (id, cid) in &out.removed_clients {
            self.remove_client(id, cid);
        }
        for (id, task) in &self.tasks {
            let finished = matches!(task.status, CdnStatus::Success | CdnStatus::Failed | CdnStatus::SourceError);
            let recent = task.clients.values().any(|c| now.duration_since(c.last_seen) < msg.task_idle);
            if finished && !recent && now.duration_since(task.last_access) >= msg.task_idle {
                out.idle_tasks.push(id.clone());
            }
            if !task.clients.is_empty() {
                out.busy_tasks.insert(id.clone());
            }
            out.active_peers.extend(task.clients.values().map(|c| c.peer_id.clone()));
        }
        MessageResult(out)
    }
}
