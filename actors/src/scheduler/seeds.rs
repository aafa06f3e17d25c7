//! The seed pattern (dfdaemon's streaming mode, §10.1, §16 P17): clients that offer their
//! copy of a URL as a seed, the heartbeat that keeps them, and the network view that lets
//! other peers find them.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Instant;

use actix::prelude::*;

use super::PieceScheduler;
use crate::ids::{PeerId, TaskId};

impl PieceScheduler {
    /// Live seeds of the URL of `task_id`, across every task of that URL.
    pub(super) fn seed_count(&self, task_id: &TaskId) -> usize {
        let Some(url) = self.tasks.get(task_id).map(|t| t.task_url.clone()).filter(|u| !u.is_empty()) else {
            return self
                .tasks
                .get(task_id)
                .map_or(0, |t| t.clients.values().filter(|c| c.seed && !c.is_down()).count());
        };
        self.tasks
            .values()
            .filter(|t| t.task_url == url)
            .map(|t| t.clients.values().filter(|c| c.seed && !c.is_down()).count())
            .sum()
    }
}

/// `/peer/heartbeat` from client `cid`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "HeartbeatInfo")]
pub struct Heartbeat {
    pub cid: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatInfo {
    /// The supernode does not know this client (e.g. after a restart).
    pub need_register: bool,
    /// Tasks this client is still a seed of; it may drop the others.
    pub seed_task_ids: Vec<String>,
}

impl Handler<Heartbeat> for PieceScheduler {
    type Result = MessageResult<Heartbeat>;

    fn handle(&mut self, msg: Heartbeat, _ctx: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let mut known = false;
        let mut seeds = Vec::new();
        for (id, task) in &mut self.tasks {
            if let Some(c) = task.clients.get_mut(&msg.cid) {
                known = true;
                c.last_seen = now;
                if c.seed && !c.is_down() {
                    task.last_access = now;
                    seeds.push(id.to_string());
                }
            }
        }
        seeds.sort();
        MessageResult(HeartbeatInfo { need_register: !known, seed_task_ids: seeds })
    }
}

/// A seed peer holding one task of a requested URL.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedNode {
    pub peer_id: PeerId,
    pub task_id: TaskId,
    pub task_url: String,
    pub cid: String,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub path: String,
    /// Uploads its uploader is running now.
    pub load: u32,
    pub pieces_held: u64,
    pub piece_size: u64,
}

/// `/peer/network`: the live seeds of each of `urls` (compared with taskURL).
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
        for (id, task) in &self.tasks {
            if !wanted.contains(task.task_url.as_str()) {
                continue;
            }
            for (cid, c) in task.clients.iter().filter(|(_, c)| c.seed && !c.is_down()) {
                nodes.push(SeedNode {
                    peer_id: c.peer_id.clone(),
                    task_id: id.clone(),
                    task_url: task.task_url.clone(),
                    cid: cid.clone(),
                    ip: c.ip,
                    port: c.port,
                    path: c.path.clone(),
                    load: self.uploads.get(&(c.ip, c.port)).copied().unwrap_or(0),
                    pieces_held: c.have_count,
                    piece_size: task.piece_size,
                });
            }
        }
        nodes.sort_by(|a, b| a.task_url.cmp(&b.task_url).then_with(|| a.cid.cmp(&b.cid)));
        MessageResult(nodes)
    }
}
