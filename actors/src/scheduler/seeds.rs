//! The seed pattern (dfdaemon's streaming mode): clients that offer their copy of a URL as
//! a seed, the heartbeat that keeps them, and the network view that lets other peers find
//! them. Stock dfget never registers as a seed, so none of this changes anything for it.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use actix::prelude::*;

use super::PieceScheduler;
use crate::ids::{ClientId, PeerId, TaskId};

impl PieceScheduler {
    /// Live seeds of the URL of `task_id`, across every task of that URL.
    pub(super) fn seed_count(&self, task_id: &TaskId) -> usize {
        let seeds = |t: &super::state::TaskState| t.clients.values().filter(|c| c.is_seed()).count();
        match self.tasks.get(task_id) {
            None => 0,
            Some(t) if t.task_url.is_empty() => seeds(t),
            Some(t) => self.tasks.values().filter(|o| o.task_url == t.task_url).map(seeds).sum(),
        }
    }
}

/// `/peer/heartbeat` from client `cid`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "HeartbeatInfo")]
pub struct Heartbeat {
    pub cid: ClientId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatInfo {
    /// The supernode does not know this client (e.g. after a restart).
    pub need_register: bool,
    /// Tasks this client is still a seed of; it may drop the others.
    pub seed_task_ids: Vec<TaskId>,
}

impl Handler<Heartbeat> for PieceScheduler {
    type Result = MessageResult<Heartbeat>;

    fn handle(&mut self, msg: Heartbeat, _ctx: &mut Context<Self>) -> Self::Result {
        let now = self.clock.now();
        let mut known = false;
        let mut seeds = Vec::new();
        for (id, task) in &mut self.tasks {
            if let Some(c) = task.clients.get_mut(&msg.cid) {
                known = true;
                c.last_seen = now;
                if c.is_seed() {
                    task.last_access = now;
                    seeds.push(id.clone());
                }
            }
        }
        seeds.sort();
        MessageResult(HeartbeatInfo { need_register: !known, seed_task_ids: seeds })
    }
}

/// A seed peer holding one task of a requested URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedNode {
    pub peer_id: PeerId,
    pub task_id: TaskId,
    pub task_url: String,
    pub cid: ClientId,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub path: String,
    /// Uploads its uploader is running now.
    pub load: u32,
    pub pieces_held: u64,
    pub piece_size: u64,
}

/// The live seeds of each of `urls` (compared with the task URL).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Vec<SeedNode>")]
pub struct NetworkInfo {
    pub urls: Vec<String>,
}

impl Handler<NetworkInfo> for PieceScheduler {
    type Result = MessageResult<NetworkInfo>;

    fn handle(&mut self, msg: NetworkInfo, _ctx: &mut Context<Self>) -> Self::Result {
        let wanted: HashSet<&str> = msg.urls.iter().map(String::as_str).collect();
        let mut nodes = Vec::new();
        for (id, task) in self.tasks.iter().filter(|(_, t)| wanted.contains(t.task_url.as_str())) {
            for (cid, c) in task.clients.iter().filter(|(_, c)| c.is_seed()) {
                nodes.push(SeedNode {
                    peer_id: c.peer_id.clone(),
                    task_id: id.clone(),
                    task_url: task.task_url.clone(),
                    cid: cid.clone(),
                    ip: c.ip,
                    port: c.port,
                    path: c.path.clone(),
                    load: self.uploads.get(&c.addr()).copied().unwrap_or(0),
                    pieces_held: c.have_count,
                    piece_size: task.piece_size,
                });
            }
        }
        nodes.sort_by(|a, b| a.task_url.cmp(&b.task_url).then_with(|| a.cid.cmp(&b.cid)));
        MessageResult(nodes)
    }
}
