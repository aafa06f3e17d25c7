//! What the CDN reports about a run: the source's answer (which the waiting registrations
//! get), and the run's end.

use actix::prelude::*;

use super::{RegisterError, TaskManager};
use crate::cdn::CdnPattern;
use crate::events::{CdnFinished, SourceOpened};
use crate::piece::{unwrapped_piece_count, PieceLayout};
use crate::status::CdnStatus;

impl Handler<SourceOpened> for TaskManager {
    type Result = ();

    fn handle(&mut self, msg: SourceOpened, _ctx: &mut Context<Self>) {
        let now = self.clock.now();
        let Some(task) = self.tasks.get_mut(&msg.task_id).filter(|t| t.run_id == msg.run_id) else { return };
        let result = match msg.result {
            Ok(info) => {
                task.http_file_length = info.length;
                task.piece_size = info.piece_size;
                task.piece_total = match (info.length, self.settings.cdn_pattern) {
                    (None, _) => 0,
                    (Some(len), CdnPattern::Local) => PieceLayout::new(len, info.piece_size).piece_count(),
                    (Some(len), CdnPattern::Source) => unwrapped_piece_count(len),
                };
                Self::set_status(&self.metrics, task, CdnStatus::Running);
                Ok(task.clone())
            }
            Err(failure) => {
                Self::set_status(&self.metrics, task, failure.status());
                task.failure = Some(failure.clone());
                if let Some(source) = failure.source().filter(|s| s.remembered()) {
                    self.unreachable.insert(msg.task_id.clone(), (now, source.clone()));
                }
                Err(RegisterError::Source(failure))
            }
        };
        self.notify(&msg.task_id);
        self.answer_waiters(&msg.task_id, result);
    }
}

impl Handler<CdnFinished> for TaskManager {
    type Result = ();

    fn handle(&mut self, msg: CdnFinished, _ctx: &mut Context<Self>) {
        let Some(task) = self.tasks.get_mut(&msg.task_id).filter(|t| t.run_id == msg.run_id) else { return };
        match msg.result {
            Ok(done) => {
                task.http_file_length = Some(done.http_len);
                task.file_length = done.file_length;
                task.real_md5 = done.real_md5;
                task.piece_total = done.piece_total;
                task.failure = None;
                Self::set_status(&self.metrics, task, CdnStatus::Success);
            }
            Err(failure) => {
                Self::set_status(&self.metrics, task, failure.status());
                task.failure = Some(failure);
            }
        }
        let task = task.clone();
        self.notify(&msg.task_id);
        if self.waiters.contains_key(&msg.task_id) {
            let result = match &task.failure {
                None => Ok(task),
                Some(f) => Err(RegisterError::Source(f.clone())),
            };
            self.answer_waiters(&msg.task_id, result);
        }
    }
}
