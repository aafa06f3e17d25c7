//! Messages that flow one way, CDN → tasks → scheduler, so that none of these actors needs
//! the others' internals. Imports only the vocabulary.

use std::net::Ipv4Addr;

use actix::{Message, Recipient};

use crate::failure::CdnFailure;
use crate::ids::{ClientId, PeerId, TaskId};
use crate::piece::PieceDigest;
use crate::status::CdnStatus;

/// What the source said when a run opened it (the same response is then streamed to disk,
/// so it doubles as the registration's length probe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// `None` when the source sent no usable Content-Length.
    pub length: Option<u64>,
    pub piece_size: u64,
}

/// CdnManager → TaskManager: the source answered (or could not be reached).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SourceOpened {
    pub task_id: TaskId,
    pub run_id: u64,
    pub result: Result<SourceInfo, CdnFailure>,
}

/// A complete, verified cached copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdnSuccess {
    pub http_len: u64,
    pub file_length: u64,
    pub real_md5: String,
    pub piece_total: u64,
}

/// CdnManager → TaskManager: a run ended.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct CdnFinished {
    pub task_id: TaskId,
    pub run_id: u64,
    pub result: Result<CdnSuccess, CdnFailure>,
}

/// Where one run's news goes.
#[derive(Clone)]
pub struct RunListener {
    pub opened: Recipient<SourceOpened>,
    pub finished: Recipient<CdnFinished>,
}

impl std::fmt::Debug for RunListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunListener")
    }
}

/// CdnManager → PieceScheduler: pieces `first..first + digests.len()` are on disk and may be
/// handed out.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct CdnPieces {
    pub task_id: TaskId,
    pub run_id: u64,
    pub piece_size: u64,
    pub first: u64,
    pub digests: Vec<PieceDigest>,
}

/// Which supernode serves a task's CDN pieces.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CdnHost {
    /// This one, from its own cache.
    #[default]
    Local,
    /// The task's owner in a cluster, on its download port.
    Remote { ip: Ipv4Addr, port: u16, cid: ClientId, peer: PeerId },
    /// Nobody caches the task (the source CDN pattern): dfget fetches the supernode's pieces
    /// from the source at `url`, unwrapped, one range request each.
    Source { url: String },
}

/// TaskManager → PieceScheduler: what the scheduler needs to know of a task, after any change.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct TaskStatusChanged {
    pub task_id: TaskId,
    pub run_id: u64,
    pub task_url: String,
    pub status: CdnStatus,
    pub http_len: Option<u64>,
    pub piece_size: u64,
    pub piece_total: u64,
    pub file_length: u64,
    pub real_md5: String,
    /// Why the last run failed, for the clients' error message.
    pub failure: Option<CdnFailure>,
    /// An operator paused the task: its clients are told to wait.
    pub paused: bool,
    pub cdn_host: CdnHost,
}

/// TaskManager → PieceScheduler: the task is gone, with every client of it.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct TaskDeleted(pub TaskId);
