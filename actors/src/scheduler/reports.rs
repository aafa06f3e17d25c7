//! What clients report: piece outcomes, an uploader going away, and piece errors.
//!
//! A client reported as a bad source is never that client's source again and, past
//! `elimination_limit` errors, nobody's. A report about the supernode's own copy is not
//! believed on its own: it is answered with a check of the copy on disk.

use actix::prelude::*;

use super::state::Source;
use super::{PieceScheduler, SchedError};
use crate::events::CdnHost;
use crate::ids::{ClientId, PeerId, TaskId};
use crate::piece::{PieceDigest, PieceRange};

/// The source of a reported piece, as the request names it: dfget sends the source's CID,
/// the v1 API its peer ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceRef {
    Client(ClientId),
    Peer(PeerId),
}

/// A piece outcome (`result` 500–503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceResult {
    Failed,
    Success,
    Invalid,
    SemiSuccess,
}

impl PieceScheduler {
    /// A piece outcome reported by `cid`; a range that is not a piece of the task is ignored
    /// (the v1 API refuses it before this).
    pub(super) fn apply_result(
        &mut self,
        task_id: &TaskId,
        cid: &ClientId,
        range: PieceRange,
        dst: &ClientId,
        result: PieceResult,
    ) {
        let Some(Ok(n)) = self.tasks.get(task_id).map(|t| t.piece_of(range)) else {
            tracing::debug!(%task_id, %cid, %range, "ignoring a report for a range that is not a piece of the task");
            return;
        };
        let released = self.release(task_id, cid, n);
        let elimination = self.config.elimination_limit;
        let Some(task) = self.tasks.get_mut(task_id) else { return };
        match result {
            PieceResult::Success | PieceResult::SemiSuccess => {
                let mut source = false;
                if let Some(c) = task.clients.get_mut(cid) {
                    c.mark_have(n);
                    c.failures = 0;
                    source = c.is_usable_source(elimination);
                }
                // A source from now on, whichever of dfget's two reports (this poll or
                // `/peer/piece/suc`) comes first: until then the piece's first copy counts as
                // done with nobody holding it, and the supernode would send it again.
                if source {
                    task.add_holder(n as usize, cid);
                }
                self.changed(task_id, cid);
            }
            PieceResult::Failed => {
                let from_peer = match released {
                    Some(Source::Peer(p)) => Some(p),
                    Some(Source::Cdn) => None,
                    None if task.clients.contains_key(dst) => Some(dst.clone()),
                    None => None,
                };
                if let Some(src) = from_peer {
                    if let Some(c) = task.clients.get_mut(cid) {
                        c.bad_sources.insert(src.clone());
                        c.failures += 1;
                    }
                    task.count_source_error(&src, elimination);
                }
            }
            PieceResult::Invalid => {}
        }
    }
}

/// `/peer/piece/suc` (and the v1 piece update with SUCCESS): `cid` now holds the piece.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), SchedError>")]
pub struct PieceSuccess {
    pub task_id: TaskId,
    pub cid: ClientId,
    pub dst_cid: ClientId,
    pub range: PieceRange,
}

impl Handler<PieceSuccess> for PieceScheduler {
    type Result = Result<(), SchedError>;

    fn handle(&mut self, msg: PieceSuccess, _ctx: &mut Context<Self>) -> Self::Result {
        let n = self.known(&msg.task_id, &msg.cid)?.piece_of(msg.range)?;
        if msg.dst_cid == self.super_cid(&msg.task_id) {
            self.metrics.pieces_downloaded_bytes.inc_by(msg.range.len());
        }
        self.apply_result(&msg.task_id, &msg.cid, msg.range, &msg.dst_cid, PieceResult::Success);
        let now = self.clock.now();
        if let Some(task) = self.tasks.get_mut(&msg.task_id) {
            for cid in [&msg.cid, &msg.dst_cid] {
                if let Some(c) = task.clients.get_mut(cid) {
                    c.last_seen = now;
                }
            }
            let elimination = self.config.elimination_limit;
            if task.clients.get(&msg.cid).is_some_and(|c| c.is_usable_source(elimination)) {
                task.add_holder(n as usize, &msg.cid);
            }
        }
        self.changed(&msg.task_id, &msg.cid);
        self.retry_held(&msg.task_id);
        Ok(())
    }
}

/// `/peer/service/down`: the client's uploader is gone; never hand it out again.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), SchedError>")]
pub struct ServiceDown {
    pub task_id: TaskId,
    pub cid: ClientId,
}

impl Handler<ServiceDown> for PieceScheduler {
    type Result = Result<(), SchedError>;

    fn handle(&mut self, msg: ServiceDown, _ctx: &mut Context<Self>) -> Self::Result {
        self.known(&msg.task_id, &msg.cid)?;
        let now = self.clock.now();
        if let Some(task) = self.tasks.get_mut(&msg.task_id) {
            if let Some(c) = task.clients.get_mut(&msg.cid) {
                c.mark_down(now);
            }
            task.forget_holder(&msg.cid);
        }
        self.changed(&msg.task_id, &msg.cid);
        // Its running pieces are given back elsewhere; what it held is no longer handed out.
        self.retry_held(&msg.task_id);
        Ok(())
    }
}

/// What went wrong with a piece a client fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceErrorKind {
    FileNotExist,
    Md5NotMatch,
}

/// What must be checked after a piece error about the supernode's own copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PieceErrorFollowUp {
    Nothing,
    /// Re-hash the wrapped piece at `offset` (clamped to the file) and compare its md5.
    VerifyCdnPiece {
        offset: u64,
        len: u64,
        expected: PieceDigest,
    },
    /// Check that the CDN file still exists.
    CheckCdnFile,
}

/// A piece error report. `dst` names the source as a CID or, from the v1 API, a peer ID.
///
/// About a peer: `FILE_NOT_EXIST` makes it no holder of any piece of the task,
/// `FILE_MD5_NOT_MATCH` no holder of that piece; either way it is never again a source for
/// the reporter. About the supernode: see [`PieceErrorFollowUp`].
#[derive(Message, Debug, Clone)]
#[rtype(result = "PieceErrorFollowUp")]
pub struct ReportPieceError {
    pub task_id: TaskId,
    pub reporter: ClientId,
    pub dst: String,
    pub kind: PieceErrorKind,
    pub range: Option<PieceRange>,
}

impl Handler<ReportPieceError> for PieceScheduler {
    type Result = MessageResult<ReportPieceError>;

    fn handle(&mut self, msg: ReportPieceError, _ctx: &mut Context<Self>) -> Self::Result {
        let about_us = msg.dst == self.super_cid(&msg.task_id).as_str() || msg.dst == self.super_peer.as_str();
        let Some(task) = self.tasks.get_mut(&msg.task_id) else { return MessageResult(PieceErrorFollowUp::Nothing) };
        // With the source pattern a piece of ours is the source's: there is no copy to check.
        if about_us && matches!(task.cdn_host, CdnHost::Source { .. }) {
            return MessageResult(PieceErrorFollowUp::Nothing);
        }
        if about_us {
            return MessageResult(match (msg.kind, msg.range) {
                (PieceErrorKind::FileNotExist, _) => PieceErrorFollowUp::CheckCdnFile,
                (PieceErrorKind::Md5NotMatch, Some(r)) => {
                    match task.piece_of(r).ok().and_then(|n| Some((n, task.cdn_pieces.get(n as usize).copied()??))) {
                        Some((n, expected)) => PieceErrorFollowUp::VerifyCdnPiece {
                            offset: n * task.piece_size,
                            len: task.piece_size,
                            expected,
                        },
                        None => PieceErrorFollowUp::Nothing,
                    }
                }
                (PieceErrorKind::Md5NotMatch, None) => PieceErrorFollowUp::Nothing,
            });
        }
        let named = ClientId::new(msg.dst.clone());
        let dst_cid = if task.clients.contains_key(&named) {
            Some(named)
        } else {
            task.clients.iter().find(|(_, c)| c.peer_id.as_str() == msg.dst).map(|(k, _)| k.clone())
        };
        let Some(dst_cid) = dst_cid else { return MessageResult(PieceErrorFollowUp::Nothing) };
        match (msg.kind, msg.range) {
            (PieceErrorKind::Md5NotMatch, Some(r)) => {
                if let Some(h) = task.piece_of(r).ok().and_then(|n| task.holders.get_mut(n as usize)) {
                    h.swap_remove(&dst_cid);
                }
            }
            // No piece named: it holds none of them that can be trusted.
            _ => task.forget_holder(&dst_cid),
        }
        if let Some(reporter) = task.clients.get_mut(&msg.reporter) {
            reporter.bad_sources.insert(dst_cid.clone());
        }
        task.count_source_error(&dst_cid, self.config.elimination_limit);
        MessageResult(PieceErrorFollowUp::Nothing)
    }
}

/// `PUT /api/v1/tasks/{id}` with `peerID`: that peer's clients of the task hold every piece
/// (it seeds it). Replies how many clients that was.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<usize, SchedError>")]
pub struct PeerCompletedTask {
    pub task_id: TaskId,
    pub peer_id: PeerId,
}

impl Handler<PeerCompletedTask> for PieceScheduler {
    type Result = Result<usize, SchedError>;

    fn handle(&mut self, msg: PeerCompletedTask, _ctx: &mut Context<Self>) -> Self::Result {
        let task = self.tasks.get_mut(&msg.task_id).ok_or_else(|| SchedError::UnknownTask(msg.task_id.clone()))?;
        let pieces = task.known_pieces();
        let cids: Vec<ClientId> =
            task.clients.iter().filter(|(_, c)| c.peer_id == msg.peer_id).map(|(k, _)| k.clone()).collect();
        if cids.is_empty() {
            return Err(SchedError::NoDownloadOfPeer { task: msg.task_id, peer: msg.peer_id });
        }
        for cid in &cids {
            let serves = task.clients.get(cid).is_some_and(|c| c.serves());
            for n in 0..pieces {
                if let Some(c) = task.clients.get_mut(cid) {
                    c.mark_have(n as u64);
                }
                if serves {
                    task.add_holder(n, cid);
                }
            }
        }
        for cid in &cids {
            self.changed(&msg.task_id, cid);
        }
        Ok(cids.len())
    }
}

/// Applies a piece outcome without scheduling (v1 `PUT .../pieces/{range}`).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), SchedError>")]
pub struct ApplyPieceResult {
    pub task_id: TaskId,
    pub cid: ClientId,
    pub dst: SourceRef,
    pub range: PieceRange,
    pub result: PieceResult,
}

impl Handler<ApplyPieceResult> for PieceScheduler {
    type Result = Result<(), SchedError>;

    fn handle(&mut self, msg: ApplyPieceResult, ctx: &mut Context<Self>) -> Self::Result {
        let dst_cid = self.resolve(&msg.task_id, msg.dst);
        match msg.result {
            PieceResult::Invalid => Err(SchedError::InvalidResult),
            PieceResult::Success => {
                self.handle(PieceSuccess { task_id: msg.task_id, cid: msg.cid, dst_cid, range: msg.range }, ctx)
            }
            result => {
                self.known(&msg.task_id, &msg.cid)?.piece_of(msg.range)?;
                self.apply_result(&msg.task_id, &msg.cid, msg.range, &dst_cid, result);
                self.retry_held(&msg.task_id);
                Ok(())
            }
        }
    }
}
