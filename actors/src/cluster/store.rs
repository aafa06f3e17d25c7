//! What the nodes share, and the interface of the store that holds it (Redis in production,
//! memory in tests).
//!
//! Each record has one writer: a client is written by the node it registered with, a task's
//! state and CDN pieces by the task's owner. Everything carries a TTL refreshed by its
//! writer, so the state of a node that went away expires by itself and never blocks a
//! later download.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::view::{Member, NodeId};
use crate::ids::{ClientId, PeerId, TaskId};
use crate::piece::PieceDigest;
use crate::status::CdnStatus;

/// Whether a client serves others right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Uploads {
    /// No uploader, or the `cdn` pattern.
    None,
    Serving,
    /// Its uploader went away.
    Down,
}

/// A client as the node it registered with publishes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedClient {
    pub cid: ClientId,
    pub node: NodeId,
    pub peer_id: PeerId,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub path: String,
    pub uploads: Uploads,
    /// ms epoch of the last time its node heard from it.
    pub seen_ms: i64,
    /// Pieces it holds (a change of this count says its bitmap changed).
    pub held: u64,
    /// Piece `n` held ↔ bit `7 - n % 8` of byte `n / 8` (Redis `SETBIT` order). Stored apart
    /// from the record; empty when the reader already has the current one.
    #[serde(skip)]
    pub have: Vec<u8>,
}

impl PublishedClient {
    pub fn holds(&self, n: u64) -> bool {
        self.have.get((n / 8) as usize).is_some_and(|b| b & (0x80 >> (n % 8)) != 0)
    }
}

/// The bitmap of `held` pieces, in Redis `SETBIT` order.
pub fn bitmap(held: impl Iterator<Item = u64>) -> Vec<u8> {
    let mut out = Vec::new();
    for n in held {
        let i = (n / 8) as usize;
        if out.len() <= i {
            out.resize(i + 1, 0);
        }
        out[i] |= 0x80 >> (n % 8);
    }
    out
}

/// A task as its owner publishes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub owner: NodeId,
    pub run_id: u64,
    pub status: CdnStatus,
    pub http_len: Option<u64>,
    pub piece_size: u64,
    pub piece_total: u64,
    pub file_length: u64,
    pub real_md5: String,
    /// Why the last run failed.
    pub failure: Option<String>,
    /// CDN pieces written so far (a change says the piece list changed).
    pub cdn_pieces: u64,
}

/// What a node writes in one sync.
#[derive(Clone, Debug, Default)]
pub struct Changes {
    /// Clients that registered or changed, with their bitmaps.
    pub clients: Vec<(TaskId, PublishedClient)>,
    /// Clients that went away.
    pub gone: Vec<(TaskId, ClientId)>,
    /// States of tasks this node owns.
    pub tasks: Vec<(TaskId, TaskRecord)>,
    /// New CDN pieces of tasks this node owns; an empty list clears the task's pieces (a
    /// new run starts from none).
    pub pieces: Vec<(TaskId, Vec<(u64, PieceDigest)>)>,
    /// Tasks this node owned and dropped.
    pub dropped: Vec<TaskId>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
            && self.gone.is_empty()
            && self.tasks.is_empty()
            && self.pieces.is_empty()
            && self.dropped.is_empty()
    }
}

/// What a reader already has of one task, so unchanged bitmaps and piece lists are not sent again.
#[derive(Clone, Debug, Default)]
pub struct Known {
    /// `held` of each client whose bitmap the reader has.
    pub held: HashMap<ClientId, u64>,
    /// CDN pieces the reader has, and of which run.
    pub cdn: Option<(u64, u64)>,
    /// Whether the reader needs the task's record (it does not own the task).
    pub wants_record: bool,
}

/// One task as read back.
#[derive(Clone, Debug)]
pub struct PulledTask {
    pub task: TaskId,
    /// Every client any node published for the task.
    pub clients: Vec<PublishedClient>,
    pub record: Option<TaskRecord>,
    /// The CDN pieces, when they changed since [`Known::cdn`].
    pub pieces: Option<Vec<(u64, PieceDigest)>>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(String),
    #[error("redis holds a record this version cannot read: {0}")]
    Decode(String),
}

/// The shared store.
pub trait ClusterStore: Send + Sync + 'static {
    /// Renews this node's membership for `ttl` and returns the live members, sorted by ID.
    fn renew(&self, me: &Member, ttl: Duration) -> BoxFuture<'static, Result<Vec<Member>, StoreError>>;

    /// Writes one sync's changes; what is written lives for `ttl` unless written again.
    fn push(&self, changes: Changes, ttl: Duration) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Reads what other nodes published about `tasks`.
    fn pull(&self, tasks: Vec<(TaskId, Known)>) -> BoxFuture<'static, Result<Vec<PulledTask>, StoreError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps_are_in_setbit_order() {
        let b = bitmap([0u64, 7, 9].into_iter());
        assert_eq!(b, [0b1000_0001, 0b0100_0000]);
        let c = PublishedClient {
            cid: ClientId::new("c"),
            node: NodeId::from_raw("n"),
            peer_id: PeerId::for_host("h", "127.0.0.1"),
            ip: Ipv4Addr::LOCALHOST,
            port: 1,
            path: String::new(),
            uploads: Uploads::Serving,
            seen_ms: 0,
            held: 3,
            have: b,
        };
        assert!(c.holds(0) && c.holds(7) && c.holds(9) && !c.holds(1) && !c.holds(100));
    }
}
