//! Lookups and operator actions on tasks.

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{Task, TaskManager};
use crate::cdn::CacheFiles;
use crate::ids::{PeerId, TaskId};
use crate::scheduler::{PeerCompletedTask, Progress, SchedError, TaskProgress};

#[derive(Message, Debug)]
#[rtype(result = "Option<Task>")]
pub struct GetTask(pub TaskId);

impl Handler<GetTask> for TaskManager {
    type Result = Option<Task>;
    fn handle(&mut self, msg: GetTask, _ctx: &mut Context<Self>) -> Option<Task> {
        self.tasks.get(&msg.0).cloned()
    }
}

/// All tasks, oldest first, with their clients' progress.
#[derive(Message, Debug)]
#[rtype(result = "Vec<(Task, TaskProgress)>")]
pub struct ListTasks;

impl Handler<ListTasks> for TaskManager {
    type Result = ResponseActFuture<Self, Vec<(Task, TaskProgress)>>;

    fn handle(&mut self, _msg: ListTasks, _ctx: &mut Context<Self>) -> Self::Result {
        let progress = self.next.scheduler.send(Progress);
        Box::pin(progress.into_actor(self).map(|progress, act, _| {
            let mut progress = progress.unwrap_or_default();
            let mut all: Vec<(Task, TaskProgress)> =
                act.tasks.values().map(|t| (t.clone(), progress.remove(&t.id).unwrap_or_default())).collect();
            all.sort_by(|(a, _), (b, _)| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
            all
        }))
    }
}

/// Removes a task: its clients' next poll answers "not found", so dfget moves on at once.
/// Replies whether it existed.
#[derive(Message, Debug)]
#[rtype(result = "bool")]
pub struct DeleteTask {
    pub task_id: TaskId,
    pub files: CacheFiles,
}

impl Handler<DeleteTask> for TaskManager {
    type Result = bool;

    #[tracing::instrument(name = "TaskManager::delete", skip_all, fields(task = %msg.task_id, files = ?msg.files))]
    fn handle(&mut self, msg: DeleteTask, _ctx: &mut Context<Self>) -> bool {
        self.remove(&msg.task_id, msg.files)
    }
}

/// An operator's change to a task: `completed_by` says that peer holds the whole task (it
/// seeds it from now on); `paused` pauses or resumes it (while paused its clients are told
/// to wait). Replies with the task.
#[derive(Message, Debug)]
#[rtype(result = "Result<Task, SchedError>")]
pub struct UpdateTask {
    pub task_id: TaskId,
    pub completed_by: Option<PeerId>,
    pub paused: Option<bool>,
}

impl Handler<UpdateTask> for TaskManager {
    type Result = ResponseActFuture<Self, Result<Task, SchedError>>;

    fn handle(&mut self, msg: UpdateTask, _ctx: &mut Context<Self>) -> Self::Result {
        let unknown = SchedError::UnknownTask(msg.task_id.clone());
        if !self.tasks.contains_key(&msg.task_id) {
            return Box::pin(actix::fut::ready(Err(unknown)));
        }
        let scheduler = self.next.scheduler.clone();
        let task_id = msg.task_id.clone();
        let completed = async move {
            match msg.completed_by {
                Some(peer_id) => {
                    scheduler.send(PeerCompletedTask { task_id, peer_id }).await.map_err(|_| unknown)?.map(|_| ())
                }
                None => Ok(()),
            }
        };
        Box::pin(completed.into_actor(self).map(move |done, act, _| {
            done?;
            let task = act.tasks.get_mut(&msg.task_id).ok_or_else(|| SchedError::UnknownTask(msg.task_id.clone()))?;
            if let Some(paused) = msg.paused {
                task.paused = paused;
                tracing::info!(task = %msg.task_id, paused, "task pause state changed");
            }
            let task = task.clone();
            if msg.paused.is_some() {
                act.notify(&msg.task_id);
            }
            Ok(task)
        }))
    }
}

/// Waits until the task's current run has ended; `None` when the task goes away first.
#[derive(Message, Debug)]
#[rtype(result = "Option<Task>")]
pub struct AwaitTask(pub TaskId);

impl Handler<AwaitTask> for TaskManager {
    type Result = ResponseFuture<Option<Task>>;

    fn handle(&mut self, msg: AwaitTask, _ctx: &mut Context<Self>) -> Self::Result {
        match self.tasks.get(&msg.0) {
            None => Box::pin(async { None }),
            Some(t) if t.cdn_status.is_final() => {
                let t = t.clone();
                Box::pin(async move { Some(t) })
            }
            Some(_) => {
                let (tx, rx) = oneshot::channel();
                self.watchers.entry(msg.0).or_default().push(tx);
                Box::pin(async move { rx.await.ok().flatten() })
            }
        }
    }
}
