//! Messages that cross actor boundaries in one direction only (CDN → tasks → scheduler).
//! Kept apart so that no actor module depends on another's internals.

use actix::Message;

use crate::cdn::SourceFailure;
use crate::ids::TaskId;

/// What the source told us when a run opened it (the registration's probe, §16 P7).
#[derive(Debug, Clone)]
pub struct SourceInfo {
    /// Source length; -1 when unknown (no Content-Length).
    pub http_len: i64,
    pub piece_size: u64,
    /// Served from the cache after a 304 or at start: no body transfer.
    pub cache_hit: bool,
}

/// CdnManager → TaskManager: the source answered (or not).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SourceOpened {
    pub task_id: TaskId,
    pub run_id: u64,
    pub result: Result<SourceInfo, SourceFailure>,
}

/// How a run failed (§16 P12): `SourceError` when the source answered an error status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Failed,
    SourceError,
}

#[derive(Debug, Clone)]
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
    pub result: Result<CdnSuccess, (FailureKind, String)>,
}

/// CdnManager → PieceScheduler: pieces `first..first+md5s.len()` are on disk and servable.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct CdnPieces {
    pub task_id: TaskId,
    pub run_id: u64,
    pub piece_size: u64,
    pub first: u64,
    /// `md5:len` of each piece.
    pub md5s: Vec<String>,
}

/// TaskManager → PieceScheduler: a task's CDN state changed (or the task is gone: `status: None`).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct TaskStatusChanged {
    pub task_id: TaskId,
    pub run_id: u64,
    pub task_url: String,
    pub status: Option<crate::task_manager::CdnStatus>,
    pub piece_size: u64,
    pub piece_total: u64,
    pub file_length: u64,
    pub real_md5: String,
    /// Why the run failed, for the clients' error message.
    pub reason: String,
    /// An operator paused the task (§ issue 4: `/peer/task` answers wait).
    pub paused: bool,
}
