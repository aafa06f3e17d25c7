//! Held polls: a client with nothing running whose poll finds nothing for it yet is not told
//! to wait (602) at once; its poll is kept for up to `poll_hold` and answered as soon as a
//! piece can be had (the CDN wrote one, a peer finished one, an upload slot came free).
//!
//! dfget sleeps after every 602, doubling the sleep up to 0.8–1.6 s, so a client told to wait
//! just before a piece lands picks it up late; across a swarm, every piece's copies spread in
//! rounds of those sleeps. A held poll is still one `/peer/task` request, answered with the
//! codes dfget knows, well within its 5 s timeout.

use std::time::Instant;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::polls::{PollReply, WaitReason};
use super::PieceScheduler;
use crate::ids::{ClientId, TaskId};

/// Held polls tried per change to a task, oldest first. A change (a piece written, a piece
/// reported, a slot freed) serves a few polls; trying every held poll on every change made the
/// work grow with held polls times changes, which saturated the actor at 1,000 clients. A
/// poll tried in vain goes behind those not tried, and every poll is answered by `poll_hold`.
const TRIED_PER_CHANGE: usize = 32;

/// A poll waiting for something to hand out.
pub(super) struct HeldPoll {
    cid: ClientId,
    max: usize,
    /// Tells this poll apart from a later one of the same client.
    seq: u64,
    reply: oneshot::Sender<PollReply>,
}

/// Polls held per task, oldest first.
#[derive(Default)]
pub(super) struct HeldPolls {
    by_task: std::collections::HashMap<TaskId, Vec<HeldPoll>>,
    next_seq: u64,
}

impl PieceScheduler {
    /// Keeps `cid`'s poll until something can be handed to it or `poll_hold` passes; the
    /// receiver gets the reply.
    pub(super) fn hold(
        &mut self,
        task_id: &TaskId,
        cid: &ClientId,
        max: usize,
        ctx: &mut Context<Self>,
    ) -> oneshot::Receiver<PollReply> {
        let (tx, rx) = oneshot::channel();
        let seq = self.held.next_seq;
        self.held.next_seq += 1;
        let list = self.held.by_task.entry(task_id.clone()).or_default();
        // dfget polls one at a time: an older poll of the same client was given up on.
        if let Some(i) = list.iter().position(|h| &h.cid == cid) {
            let old = list.remove(i);
            self.metrics.held_polls.dec();
            let _ = old.reply.send(PollReply::Wait(WaitReason::NoPieceYet));
        }
        list.push(HeldPoll { cid: cid.clone(), max, seq, reply: tx });
        self.metrics.held_polls.inc();
        let (task_id, cid) = (task_id.clone(), cid.clone());
        let wait = actix::fut::wrap_future::<_, Self>(self.clock.sleep(self.config.poll_hold));
        ctx.spawn(actix::fut::ActorFutureExt::map(wait, move |(), act, _| act.expire_held(&task_id, &cid, seq)));
        rx
    }

    /// Something changed for `task_id`: up to [`TRIED_PER_CHANGE`] held polls, oldest first,
    /// get pieces (or a final answer) if they now can; the rest keep waiting.
    pub(super) fn retry_held(&mut self, task_id: &TaskId) {
        let Some(list) = self.held.by_task.remove(task_id) else { return };
        let mut untried = Vec::with_capacity(list.len());
        let mut tried = Vec::new();
        let mut attempts = 0;
        for held in list {
            if held.reply.is_closed() {
                self.metrics.held_polls.dec();
                continue;
            }
            if attempts == TRIED_PER_CHANGE {
                untried.push(held);
                continue;
            }
            attempts += 1;
            let started = Instant::now();
            let reply = self.schedule(task_id, &held.cid, held.max);
            if reply.holdable() {
                tried.push(held);
                continue;
            }
            self.observe_schedule(task_id, &held.cid, started);
            self.send_held(task_id, held, reply);
        }
        untried.append(&mut tried);
        if !untried.is_empty() {
            self.held.by_task.insert(task_id.clone(), untried);
        }
    }

    /// `poll_hold` passed for poll `seq`: it gets whatever the scheduler has for it now.
    fn expire_held(&mut self, task_id: &TaskId, cid: &ClientId, seq: u64) {
        let Some(list) = self.held.by_task.get_mut(task_id) else { return };
        let Some(i) = list.iter().position(|h| h.seq == seq) else { return };
        let held = list.remove(i);
        if list.is_empty() {
            self.held.by_task.remove(task_id);
        }
        let reply = self.schedule(task_id, cid, held.max);
        self.send_held(task_id, held, reply);
    }

    /// Answers every poll held for `task_id` with what the scheduler has for it now (the task
    /// ended, failed or went away).
    pub(super) fn release_held(&mut self, task_id: &TaskId) {
        for held in self.held.by_task.remove(task_id).unwrap_or_default() {
            let reply = self.schedule(task_id, &held.cid, held.max);
            self.send_held(task_id, held, reply);
        }
    }

    fn send_held(&mut self, task_id: &TaskId, held: HeldPoll, reply: PollReply) {
        self.metrics.held_polls.dec();
        if let Some(state) = reply.dfget_state() {
            self.set_state(task_id, &held.cid, state);
        }
        // The request went away (client timeout, connection closed): give its pieces back.
        if let Err(PollReply::Continue(pieces)) = held.reply.send(reply) {
            for a in pieces {
                self.release(task_id, &held.cid, a.piece_num);
            }
        }
    }
}
