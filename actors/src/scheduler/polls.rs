//! `/peer/task`: a client's poll, which may carry the outcome of its last piece, and what
//! it gets back. dfget polls in a loop; every answer is one of the codes it knows.

use std::time::{Duration, Instant};

use actix::prelude::*;

use super::assign::{decide, Decision, Limits};
use super::reports::{PieceResult, SourceRef};
use super::state::{DfgetState, Running, Source};
use super::{PieceScheduler, SchedError};
use crate::events::CdnHost;
use crate::failure::CdnFailure;
use crate::ids::{ClientId, PeerId, TaskId};
use crate::piece::{PieceDigest, PieceRange};

/// dfget's task status in a poll (`status` 700/701/702).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientStatus {
    Started,
    Running,
    Finished,
}

/// One piece handed to a client.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub range: PieceRange,
    pub piece_num: u64,
    pub piece_size: u64,
    pub digest: Option<PieceDigest>,
    pub cid: ClientId,
    pub peer_id: PeerId,
    pub peer_ip: String,
    pub peer_port: u16,
    pub path: String,
}

/// Why a client is told to wait (602).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    Paused,
    NoPieceYet,
    AllSourcesBusy,
}

/// What a poll gets.
#[derive(Debug, Clone)]
pub enum PollReply {
    /// 600 with the file's length and md5.
    Finish { file_length: u64, md5: String },
    /// 600 without data: the client said it finished.
    Ended,
    /// 601.
    Continue(Vec<Assignment>),
    /// 602.
    Wait(WaitReason),
    /// 603: the client runs its maximum number of pieces.
    Limited,
    /// 604: the CDN failed to fetch the source.
    CdnFailed(Option<CdnFailure>),
    /// 610: the source answered an error status.
    SourceError(Option<CdnFailure>),
    /// 502.
    NotFound(SchedError),
    /// 501.
    Invalid(&'static str),
}

impl PollReply {
    /// The state a poll's reply puts the dfget run in; `None` leaves it as it was.
    /// Whether the reply may be held instead of sent: only "nothing for you yet".
    pub(super) fn holdable(&self) -> bool {
        matches!(self, PollReply::Wait(WaitReason::NoPieceYet | WaitReason::AllSourcesBusy))
    }

    pub(super) fn dfget_state(&self) -> Option<DfgetState> {
        match self {
            PollReply::Finish { .. } | PollReply::Ended => Some(DfgetState::Success),
            PollReply::CdnFailed(_) | PollReply::SourceError(_) => Some(DfgetState::Failed),
            PollReply::Continue(_) | PollReply::Wait(_) | PollReply::Limited => Some(DfgetState::Running),
            PollReply::NotFound(_) | PollReply::Invalid(_) => None,
        }
    }
}

/// A scheduling poll, optionally carrying the outcome of one piece.
#[derive(Message, Debug, Clone)]
#[rtype(result = "PollReply")]
pub struct Poll {
    pub task_id: TaskId,
    pub cid: ClientId,
    pub status: ClientStatus,
    /// (range, source, result) for status Running.
    pub report: Option<(PieceRange, SourceRef, PieceResult)>,
    /// Most pieces to have running after this poll; `None` = `peer_down_limit`.
    pub max: Option<usize>,
}

impl Handler<Poll> for PieceScheduler {
    type Result = ResponseFuture<PollReply>;

    fn handle(&mut self, msg: Poll, ctx: &mut Context<Self>) -> Self::Result {
        let now = |reply: PollReply| -> ResponseFuture<PollReply> { Box::pin(std::future::ready(reply)) };
        let started = Instant::now();
        if let Err(e) = self.known(&msg.task_id, &msg.cid) {
            return now(PollReply::NotFound(e));
        }
        let mut reported = false;
        match msg.status {
            ClientStatus::Finished => {
                self.set_state(&msg.task_id, &msg.cid, DfgetState::Success);
                return now(PollReply::Ended);
            }
            ClientStatus::Running => match msg.report {
                Some((_, _, PieceResult::Invalid)) | None => {
                    return now(PollReply::Invalid(
                        "status RUNNING needs a range and a result of FAILED, SUCCESS or SEMISUC",
                    ));
                }
                Some((range, dst, result)) => {
                    let dst = self.resolve(&msg.task_id, dst);
                    self.apply_result(&msg.task_id, &msg.cid, range, &dst, result);
                    reported = true;
                }
            },
            ClientStatus::Started => {}
        }
        let max = msg.max.unwrap_or(self.config.peer_down_limit as usize).max(1);
        let reply = self.schedule(&msg.task_id, &msg.cid, max);
        self.observe_schedule(&msg.task_id, &msg.cid, started);
        if reported {
            self.retry_held(&msg.task_id);
        }
        if reply.holdable() && self.config.poll_hold > Duration::ZERO && self.runs_nothing(&msg.task_id, &msg.cid) {
            let held = self.hold(&msg.task_id, &msg.cid, max, ctx);
            return Box::pin(async move { held.await.unwrap_or(PollReply::Wait(WaitReason::NoPieceYet)) });
        }
        if let Some(state) = reply.dfget_state() {
            self.set_state(&msg.task_id, &msg.cid, state);
        }
        now(reply)
    }
}

impl PieceScheduler {
    /// The CID a source reference names; an empty one when it names nobody.
    pub(super) fn resolve(&self, task_id: &TaskId, source: SourceRef) -> ClientId {
        match source {
            SourceRef::Client(cid) => cid,
            SourceRef::Peer(peer) => self.client_of_peer(task_id, &peer).unwrap_or_else(|| ClientId::new("")),
        }
    }

    /// The time one scheduling decision took, by client IP (Go's `schedule_duration`).
    pub(super) fn observe_schedule(&self, task_id: &TaskId, cid: &ClientId, started: Instant) {
        let ip = self.tasks.get(task_id).and_then(|t| t.clients.get(cid)).map(|c| c.ip.to_string());
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        self.metrics.schedule_duration_ms.with_label_values(&[&ip.unwrap_or_default()]).observe(elapsed_ms);
    }

    fn runs_nothing(&self, task_id: &TaskId, cid: &ClientId) -> bool {
        self.tasks.get(task_id).and_then(|t| t.clients.get(cid)).is_some_and(|c| c.running.is_empty())
    }

    pub(super) fn schedule(&mut self, task_id: &TaskId, cid: &ClientId, max: usize) -> PollReply {
        let now = self.clock.now();
        let limits = Limits {
            up: self.config.peer_up_limit,
            cdn: self.config.cdn_up_limit,
            failures: self.config.failure_count_limit,
            elimination: self.config.elimination_limit,
        };
        let Some(task) = self.tasks.get_mut(task_id) else {
            return PollReply::NotFound(SchedError::UnknownTask(task_id.clone()));
        };
        task.last_access = now;
        let Some(client) = task.clients.get_mut(cid) else {
            return PollReply::NotFound(SchedError::UnknownClient { task: task_id.clone(), client: cid.clone() });
        };
        client.last_seen = now;
        let decision = decide(task, cid, max, &self.uploads, &limits, self.policy.as_ref(), &mut rand::thread_rng());
        let picks = match decision {
            Decision::CdnFailed => return PollReply::CdnFailed(task.failure.clone()),
            Decision::SourceError => return PollReply::SourceError(task.failure.clone()),
            Decision::Paused => return PollReply::Wait(WaitReason::Paused),
            Decision::NoPieceYet => return PollReply::Wait(WaitReason::NoPieceYet),
            Decision::AllBusy => return PollReply::Wait(WaitReason::AllSourcesBusy),
            Decision::Limited => return PollReply::Limited,
            Decision::Finished => {
                let client = task.clients.get_mut(cid);
                if let Some(c) = client.filter(|c| !c.serves()) {
                    c.mark_down(now);
                }
                return PollReply::Finish { file_length: task.file_length, md5: task.real_md5.clone() };
            }
            Decision::Pieces(picks) => picks,
        };
        let super_cid = self.super_cid(task_id);
        let Some(task) = self.tasks.get_mut(task_id) else { return PollReply::Wait(WaitReason::NoPieceYet) };
        let super_ip = match task.clients.get(cid) {
            Some(c) if !c.super_node_ip.is_empty() => c.super_node_ip.clone(),
            _ => self.advertise_ip.to_string(),
        };
        let mut out = Vec::with_capacity(picks.len());
        for (n, source) in picks {
            let slot = PieceRange { start: n * task.piece_size, end: n * task.piece_size + task.piece_size - 1 };
            let digest = task.cdn_pieces.get(n as usize).copied().flatten();
            let mut upload = None;
            let a = match &source {
                Source::Cdn => {
                    task.count_cdn_copy(n, true);
                    self.metrics.pieces_served.with_label_values(&["supernode"]).inc();
                    let here = || (super_cid.clone(), self.super_peer.clone(), super_ip.clone(), self.download_port);
                    let ((cid, peer_id, peer_ip, peer_port), path) = match &task.cdn_host {
                        CdnHost::Local => (here(), task_id.download_path()),
                        CdnHost::Remote { ip, port, cid, peer } => {
                            ((cid.clone(), peer.clone(), ip.to_string(), *port), task_id.download_path())
                        }
                        CdnHost::Source { url } => (here(), url.clone()),
                    };
                    Assignment {
                        range: slot,
                        piece_num: n,
                        piece_size: task.piece_size,
                        digest,
                        cid,
                        peer_id,
                        peer_ip,
                        peer_port,
                        path,
                    }
                }
                Source::Peer(src) => {
                    self.metrics.pieces_served.with_label_values(&["peer"]).inc();
                    let Some(s) = task.clients.get(src) else { continue };
                    upload = Some(s.addr());
                    *self.uploads.entry(s.addr()).or_default() += 1;
                    self.metrics.upload_addresses.set(self.uploads.len() as i64);
                    let a = Assignment {
                        range: slot,
                        piece_num: n,
                        piece_size: task.piece_size,
                        digest,
                        cid: src.clone(),
                        peer_id: s.peer_id.clone(),
                        peer_ip: s.ip.to_string(),
                        peer_port: s.port,
                        path: s.path.clone(),
                    };
                    task.count_piece_upload(n, src, true);
                    a
                }
            };
            out.push(a);
            if let Some(c) = task.clients.get_mut(cid) {
                c.running.insert(n, Running { source, since: now, upload });
            }
        }
        PollReply::Continue(out)
    }
}
