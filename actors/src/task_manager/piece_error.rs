//! A piece error report. About a peer it only changes the scheduler's view of that peer.
//! About the supernode it is not believed on its own: the piece is read back from disk
//! and compared (md5 only, clamped to the end of the file), and only a missing file or a
//! real mismatch makes the CDN fetch the source again.

use actix::prelude::*;

use super::TaskManager;
use crate::cdn::{CacheFiles, CopyCheck, DropTask, VerifyCopy};
use crate::ids::TaskId;
use crate::scheduler::{PieceErrorFollowUp, ReportPieceError, SchedError};
use crate::status::CdnStatus;

/// Replies once the scheduler has taken the report (an unknown task is an error); a check
/// of our copy goes on after.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), SchedError>")]
pub struct PieceError(pub ReportPieceError);

impl Handler<PieceError> for TaskManager {
    type Result = ResponseFuture<Result<(), SchedError>>;

    fn handle(&mut self, msg: PieceError, ctx: &mut Context<Self>) -> Self::Result {
        let (scheduler, me) = (self.next.scheduler.clone(), ctx.address());
        let task_id = msg.0.task_id.clone();
        if !self.tasks.contains_key(&task_id) {
            return Box::pin(async move { Err(SchedError::UnknownTask(task_id)) });
        }
        Box::pin(async move {
            let check = match scheduler.send(msg.0).await {
                Ok(PieceErrorFollowUp::VerifyCdnPiece { offset, len, expected }) => {
                    CopyCheck::Piece { offset, len, expected }
                }
                Ok(PieceErrorFollowUp::CheckCdnFile) => CopyCheck::Exists,
                Ok(PieceErrorFollowUp::Nothing) | Err(_) => return Ok(()),
            };
            me.do_send(CheckCopy { task_id, check });
            Ok(())
        })
    }
}

#[derive(Message, Debug)]
#[rtype(result = "()")]
struct CheckCopy {
    task_id: TaskId,
    check: CopyCheck,
}

impl Handler<CheckCopy> for TaskManager {
    type Result = ();

    fn handle(&mut self, msg: CheckCopy, ctx: &mut Context<Self>) {
        let verify = self.next.cdn.send(VerifyCopy { task_id: msg.task_id.clone(), check: msg.check });
        let task_id = msg.task_id;
        ctx.spawn(verify.into_actor(self).map(move |verdict, act, ctx| match verdict {
            Ok(Ok(())) => {
                tracing::info!(task = %task_id, "piece error about the supernode's copy: copy verified, report ignored")
            }
            Ok(Err(why)) => act.invalidate(&task_id, &why.to_string(), ctx),
            Err(_) => {}
        }));
    }
}

impl TaskManager {
    /// The cached copy failed a check: drop it and fetch the source again.
    fn invalidate(&mut self, id: &TaskId, why: &str, ctx: &mut Context<Self>) {
        if self.tasks.get(id).is_some_and(|t| t.cdn_status == CdnStatus::Success) {
            tracing::warn!(task = %id, reason = why, "cached copy failed verification; fetching the source again");
            self.next.cdn.do_send(DropTask { task_id: id.clone(), files: CacheFiles::Remove });
            self.start_run(id, ctx);
        }
    }
}
