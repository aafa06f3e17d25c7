//! The scheduler in cluster mode: it keeps track of what changed among its own clients and
//! the tasks whose CDN is here, hands that to the cluster sync, and merges the clients other
//! nodes published, which it then hands out as sources like its own. `/peer/task` itself
//! never waits for Redis.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, UNIX_EPOCH};

use actix::prelude::*;

use super::state::{Client, ClientRole, Home, TaskState, Uploader};
use super::PieceScheduler;
use crate::cluster::store::{bitmap, Changes, Known, PublishedClient, PulledTask, TaskRecord, Uploads};
use crate::cluster::view::NodeId;
use crate::events::CdnHost;
use crate::ids::{ClientId, TaskId};
use crate::piece::PieceDigest;

/// A client that only polls is published again this often, so other nodes (the owner's
/// task GC among them) see that it is alive.
const SEEN_REFRESH: Duration = Duration::from_secs(5);

/// A task whose CDN is here and that has no clients is read back only this long after its
/// last request: other nodes' clients of it need nothing from this node but its download port.
const INTEREST_WINDOW: Duration = Duration::from_secs(60);

/// What changed since the last sync.
pub(super) struct ClusterBook {
    node: NodeId,
    pub dirty: HashSet<(TaskId, ClientId)>,
    gone: Vec<(TaskId, ClientId)>,
    dropped: Vec<TaskId>,
    /// When each local client was last published, to refresh the ones that only poll.
    published_seen: HashMap<(TaskId, ClientId), Instant>,
    /// Per task whose CDN is here: the run and how many of its pieces were published.
    published_pieces: HashMap<TaskId, (u64, usize)>,
    /// The last record published per task whose CDN is here.
    published_records: HashMap<TaskId, TaskRecord>,
}

impl ClusterBook {
    pub fn new(node: NodeId) -> ClusterBook {
        ClusterBook {
            node,
            dirty: HashSet::new(),
            gone: Vec::new(),
            dropped: Vec::new(),
            published_seen: HashMap::new(),
            published_pieces: HashMap::new(),
            published_records: HashMap::new(),
        }
    }

    pub fn gone(&mut self, task: &TaskId, cid: &ClientId) {
        self.dirty.remove(&(task.clone(), cid.clone()));
        self.published_seen.remove(&(task.clone(), cid.clone()));
        self.gone.push((task.clone(), cid.clone()));
    }

    pub fn task_removed(&mut self, task: &TaskId, state: &TaskState) {
        self.published_pieces.remove(task);
        if self.published_records.remove(task).is_some() && state.cdn_host == CdnHost::Local {
            self.dropped.push(task.clone());
        }
    }
}

fn ms_epoch(t: std::time::SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Sync → scheduler: the changes to publish (all of them with `full`, after Redis lost
/// them or this node rejoined), and what to read back.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "LocalState")]
pub struct TakeChanges {
    pub full: bool,
}

#[derive(Debug, Default)]
pub struct LocalState {
    pub changes: Changes,
    /// The tasks to read other nodes' clients of, with what is already known of each.
    pub interest: Vec<(TaskId, Known)>,
}

impl Handler<TakeChanges> for PieceScheduler {
    type Result = MessageResult<TakeChanges>;

    fn handle(&mut self, msg: TakeChanges, _ctx: &mut Context<Self>) -> Self::Result {
        let (now, wall) = (self.clock.now(), self.clock.wall());
        let Some(book) = self.book.as_mut() else { return MessageResult(LocalState::default()) };
        let mut out = LocalState::default();
        for (id, task) in &self.tasks {
            for (cid, c) in task.clients.iter().filter(|(_, c)| c.is_local()) {
                let key = (id.clone(), cid.clone());
                let stale = book.published_seen.get(&key).is_none_or(|at| c.last_seen >= *at + SEEN_REFRESH);
                if msg.full || stale || book.dirty.contains(&key) {
                    let seen_ms = ms_epoch(wall) - now.duration_since(c.last_seen).as_millis() as i64;
                    out.changes.clients.push((id.clone(), publish(cid, c, &book.node, seen_ms)));
                    book.published_seen.insert(key, c.last_seen);
                }
            }
            if task.cdn_host == CdnHost::Local {
                publish_cdn(book, id, task, msg.full, &mut out.changes);
            }
            let idle = task.clients.is_empty() && now.duration_since(task.last_access) > INTEREST_WINDOW;
            if !idle || matches!(task.cdn_host, CdnHost::Remote { .. }) {
                out.interest.push((id.clone(), known(task)));
            }
        }
        book.dirty.clear();
        out.changes.gone = std::mem::take(&mut book.gone);
        out.changes.dropped = std::mem::take(&mut book.dropped);
        MessageResult(out)
    }
}

fn publish(cid: &ClientId, c: &Client, node: &NodeId, seen_ms: i64) -> PublishedClient {
    let uploads = match (c.role, c.uploader) {
        (ClientRole::DownloadOnly, _) => Uploads::None,
        (_, Uploader::Down { .. }) => Uploads::Down,
        _ => Uploads::Serving,
    };
    let held = c.have.iter().enumerate().filter(|(_, h)| **h).map(|(n, _)| n as u64);
    PublishedClient {
        cid: cid.clone(),
        node: node.clone(),
        peer_id: c.peer_id.clone(),
        ip: c.ip,
        port: c.port,
        path: c.path.clone(),
        uploads,
        seen_ms,
        held: c.have_count,
        have: bitmap(held),
    }
}

/// The record and the new CDN pieces of a task whose CDN is here.
fn publish_cdn(book: &mut ClusterBook, id: &TaskId, task: &TaskState, full: bool, changes: &mut Changes) {
    let previous = book.published_pieces.get(id).filter(|(run, _)| *run == task.run_id && !full);
    let from = previous.map_or(0, |(_, sent)| *sent);
    if previous.is_none() {
        // A new run (or a first or full publication) starts from no pieces.
        changes.pieces.push((id.clone(), Vec::new()));
    }
    let have = task.cdn_pieces.iter().take_while(|p| p.is_some()).count();
    if have > from {
        let new: Vec<(u64, PieceDigest)> = (from..have).filter_map(|n| Some((n as u64, task.cdn_pieces[n]?))).collect();
        changes.pieces.push((id.clone(), new));
    }
    book.published_pieces.insert(id.clone(), (task.run_id, have.max(from)));
    let record = TaskRecord {
        owner: book.node.clone(),
        run_id: task.run_id,
        status: task.status,
        http_len: task.http_len,
        piece_size: task.piece_size,
        piece_total: task.piece_total,
        file_length: task.file_length,
        real_md5: task.real_md5.clone(),
        failure: task.failure.as_ref().map(ToString::to_string),
        cdn_pieces: have as u64,
    };
    if full || book.published_records.get(id) != Some(&record) {
        book.published_records.insert(id.clone(), record.clone());
        changes.tasks.push((id.clone(), record));
    }
}

/// What this node already has of a task's shared state.
fn known(task: &TaskState) -> Known {
    let held = task.clients.iter().filter(|(_, c)| !c.is_local()).map(|(cid, c)| (cid.clone(), c.have_count)).collect();
    let remote = matches!(task.cdn_host, CdnHost::Remote { .. });
    let cdn = remote.then(|| (task.run_id, task.cdn_pieces.iter().take_while(|p| p.is_some()).count() as u64));
    Known { held, cdn, wants_record: remote }
}

/// Sync → scheduler: what the other nodes published, and which nodes are live.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct RemoteState {
    pub tasks: Vec<PulledTask>,
    pub live: Vec<NodeId>,
}

impl Handler<RemoteState> for PieceScheduler {
    type Result = ();

    fn handle(&mut self, msg: RemoteState, _ctx: &mut Context<Self>) {
        let Some(me) = self.book.as_ref().map(|b| b.node.clone()) else { return };
        let (now, wall_ms) = (self.clock.now(), ms_epoch(self.clock.wall()));
        let live: HashSet<NodeId> = msg.live.into_iter().collect();
        for pulled in msg.tasks {
            let Some(task) = self.tasks.get_mut(&pulled.task) else { continue };
            if let (Some(pieces), Some(run)) = (pulled.pieces, pulled.record.as_ref().map(|r| r.run_id)) {
                if matches!(task.cdn_host, CdnHost::Remote { .. }) && run >= task.run_id {
                    task.run_id = run;
                    task.cdn_pieces.clear();
                    for (n, d) in pieces {
                        let n = n as usize;
                        if task.cdn_pieces.len() <= n {
                            task.cdn_pieces.resize(n + 1, None);
                        }
                        task.cdn_pieces[n] = Some(d);
                    }
                    if task.holders.len() < task.cdn_pieces.len() {
                        task.holders.resize_with(task.cdn_pieces.len(), Default::default);
                    }
                }
            }
            let published: HashMap<ClientId, PublishedClient> = pulled
                .clients
                .into_iter()
                .filter(|c| c.node != me && live.contains(&c.node))
                .map(|c| (c.cid.clone(), c))
                .collect();
            let stale: Vec<ClientId> = task
                .clients
                .iter()
                .filter(|(cid, c)| !c.is_local() && !published.contains_key(*cid))
                .map(|(cid, _)| cid.clone())
                .collect();
            for (cid, p) in published {
                let seen = now - Duration::from_millis((wall_ms - p.seen_ms).max(0) as u64);
                merge(task, cid, p, seen, now);
            }
            let task_id = pulled.task.clone();
            for cid in stale {
                self.remove_client(&task_id, &cid);
            }
            // Other nodes' clients may hold pieces a held poll here is waiting for.
            self.retry_held(&task_id);
        }
    }
}

/// Adds or updates another node's client in `task`, with the holders of its pieces.
fn merge(task: &mut TaskState, cid: ClientId, p: PublishedClient, seen: Instant, now: Instant) {
    if task.clients.get(&cid).is_some_and(Client::is_local) {
        return;
    }
    let role = if p.uploads == Uploads::None { ClientRole::DownloadOnly } else { ClientRole::Peer };
    let fresh_bitmap = !p.have.is_empty() || p.held == 0;
    let client = task
        .clients
        .entry(cid.clone())
        .or_insert_with(|| Client::new(p.peer_id.clone(), (p.ip, p.port), p.path.clone(), role, now));
    client.home = Home::Remote(p.node.clone());
    client.peer_id = p.peer_id.clone();
    (client.ip, client.port, client.path) = (p.ip, p.port, p.path.clone());
    client.role = role;
    client.last_seen = seen;
    if p.uploads == Uploads::Down {
        client.mark_down(now);
    }
    if !fresh_bitmap {
        if !client.serves() || client.is_down() {
            task.forget_holder(&cid);
        }
        return;
    }
    client.have.clear();
    client.have_count = 0;
    let pieces = (p.have.len() * 8) as u64;
    for n in (0..pieces).filter(|n| p.holds(*n)) {
        client.mark_have(n);
    }
    let serves = client.serves() && !client.is_down();
    let held: Vec<u64> = (0..pieces).filter(|n| p.holds(*n)).collect();
    task.forget_holder(&cid);
    if serves {
        for n in held {
            task.add_holder(n as usize, &cid);
        }
    }
}

#[cfg(test)]
mod tests;
