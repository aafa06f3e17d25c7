//! What the CDN and the task manager tell the scheduler: pieces on disk, status changes,
//! deleted tasks. A new CDN run's pieces replace the old run's, whose file is gone.

use actix::prelude::*;

use super::state::TaskState;
use super::PieceScheduler;
use crate::events::{CdnPieces, TaskDeleted, TaskStatusChanged};

impl Handler<TaskStatusChanged> for PieceScheduler {
    type Result = ();

    fn handle(&mut self, msg: TaskStatusChanged, _ctx: &mut Context<Self>) {
        let now = self.clock.now();
        let task_id = msg.task_id.clone();
        let task = self.tasks.entry(msg.task_id).or_insert_with(|| TaskState::new(msg.run_id, now));
        if msg.run_id > task.run_id {
            task.run_id = msg.run_id;
            task.cdn_pieces.clear();
            task.reset_cdn_load();
        }
        task.status = msg.status;
        task.task_url = msg.task_url;
        task.paused = msg.paused;
        task.failure = msg.failure;
        task.http_len = msg.http_len;
        if msg.piece_size > 0 {
            task.piece_size = msg.piece_size;
        }
        task.piece_total = msg.piece_total;
        task.file_length = msg.file_length;
        task.real_md5 = msg.real_md5;
        if task.cdn_host != msg.cdn_host {
            // The CDN moved (an owner went away, or Redis did): its old pieces are not served.
            task.cdn_host = msg.cdn_host;
            task.cdn_pieces.clear();
            task.reset_cdn_load();
        }
        self.retry_held(&task_id);
    }
}

impl Handler<TaskDeleted> for PieceScheduler {
    type Result = ();

    fn handle(&mut self, msg: TaskDeleted, _ctx: &mut Context<Self>) {
        self.remove_task(&msg.0);
    }
}

impl Handler<CdnPieces> for PieceScheduler {
    type Result = ();

    fn handle(&mut self, msg: CdnPieces, _ctx: &mut Context<Self>) {
        let now = self.clock.now();
        let task_id = msg.task_id.clone();
        let task = self.tasks.entry(msg.task_id).or_insert_with(|| TaskState::new(msg.run_id, now));
        if msg.run_id < task.run_id || task.cdn_host != crate::events::CdnHost::Local {
            return;
        }
        if msg.run_id > task.run_id {
            task.run_id = msg.run_id;
            task.cdn_pieces.clear();
        }
        task.piece_size = msg.piece_size;
        let first = msg.first as usize;
        let end = first + msg.digests.len();
        if task.cdn_pieces.len() < end {
            task.cdn_pieces.resize(end, None);
        }
        if task.holders.len() < end {
            task.holders.resize_with(end, Default::default);
        }
        for (i, d) in msg.digests.into_iter().enumerate() {
            task.cdn_pieces[first + i] = Some(d);
        }
        self.retry_held(&task_id);
    }
}
