//! Tasks in cluster mode. A registration for a task another node owns is registered with
//! that owner, and the task is kept here as a mirror of the owner's: its state follows the
//! owner's record, its CDN pieces are the owner's. When the owner leaves the live set (it
//! died, or Redis went away and this node is alone), the task gets a new owner: this node,
//! which then makes the copy itself, or another one it is registered with again.

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::register::{RegisterTask, Route, Ticket};
use super::{RegisterError, Task, TaskHome, TaskManager};
use crate::cluster::forward::{ForwardError, OwnerTask};
use crate::cluster::store::TaskRecord;
use crate::cluster::view::{ClusterView, Member};
use crate::failure::CdnFailure;
use crate::ids::TaskId;
use crate::spec::TaskSpec;
use crate::status::CdnStatus;

type TaskStep = ResponseFuture<Result<(Task, Ticket), RegisterError>>;

impl TaskManager {
    /// The task step when another node owns the task: the mirror as it is, or the owner's
    /// answer. `None` when this node makes the copy.
    pub(super) fn forward_to_owner(
        &mut self,
        id: &TaskId,
        spec: &TaskSpec,
        ctx: &mut Context<Self>,
    ) -> Option<TaskStep> {
        let forwarder = self.next.forwarder.clone()?;
        let owner = self.view.remote_owner(id)?.clone();
        if let Some(task) = self.tasks.get_mut(id) {
            match &task.home {
                // Made here already (say, while Redis was away): it stays here.
                TaskHome::Local => return None,
                TaskHome::Remote(m) if *m == owner && !task.cdn_status.is_failure() => {
                    if !task.spec.same_resource(spec) {
                        let err = RegisterError::Conflict(id.clone());
                        return Some(Box::pin(async move { Err(err) }));
                    }
                    task.spec = spec.clone();
                    task.registrations += 1;
                    let found = (task.clone(), Ticket { created: false, registration: task.registrations });
                    return Some(Box::pin(async move { Ok(found) }));
                }
                TaskHome::Remote(_) => {}
            }
        }
        let (me, spec) = (ctx.address(), spec.clone());
        Some(Box::pin(async move {
            match forwarder.register(&owner, &spec).await {
                Ok(info) => me.send(AdoptRemote { spec, owner, info }).await?,
                Err(ForwardError::Refused(r)) => Err(RegisterError::Owner(r)),
                Err(e @ ForwardError::Unreachable { .. }) => {
                    tracing::warn!(error = %e, "task owner unreachable; this node makes the copy");
                    me.send(RegisterTask(spec, Route::Here)).await?
                }
            }
        }))
    }

    fn update_from_owner(&mut self, id: &TaskId, info: &OwnerTask) {
        let Some(task) = self.tasks.get_mut(id) else { return };
        task.run_id = info.run_id;
        task.http_file_length = info.http_len;
        task.piece_size = info.piece_size;
        task.piece_total = info.piece_total;
        task.file_length = info.file_length;
        task.real_md5 = info.real_md5.clone();
        task.failure = info.failure.clone().map(|reason| CdnFailure::AtOwner { status: info.status, reason });
        Self::set_status(&self.metrics, task, info.status);
        self.notify(id);
    }
}

/// The owner accepted a registration: keep (or update) the task as its mirror.
#[derive(Message, Debug)]
#[rtype(result = "Result<(Task, Ticket), RegisterError>")]
struct AdoptRemote {
    spec: TaskSpec,
    owner: Member,
    info: OwnerTask,
}

impl Handler<AdoptRemote> for TaskManager {
    type Result = Result<(Task, Ticket), RegisterError>;

    fn handle(&mut self, msg: AdoptRemote, _ctx: &mut Context<Self>) -> Self::Result {
        let id = msg.info.task_id.clone();
        let created = !self.tasks.contains_key(&id);
        if created && self.tasks.len() >= self.settings.max_tasks {
            return Err(RegisterError::TooManyTasks(self.settings.max_tasks));
        }
        let now = DateTime::<Utc>::from(self.clock.wall());
        let task = self.tasks.entry(id.clone()).or_insert_with(|| {
            self.metrics.tasks.with_label_values(&[CdnStatus::Waiting.as_str()]).inc();
            Task::new(id.clone(), msg.spec.clone(), TaskHome::Remote(msg.owner.clone()), now)
        });
        if !task.spec.same_resource(&msg.spec) {
            return Err(RegisterError::Conflict(id));
        }
        task.home = TaskHome::Remote(msg.owner);
        task.spec = msg.spec;
        task.registrations += 1;
        let ticket = Ticket { created, registration: task.registrations };
        self.metrics.tasks_registered.inc();
        self.update_from_owner(&id, &msg.info);
        let task = self.tasks.get(&id).cloned().ok_or(RegisterError::Removed)?;
        Ok((task, ticket))
    }
}

/// The owners' records of tasks mirrored here, as read from the shared store.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct RemoteTaskRecords(pub Vec<(TaskId, TaskRecord)>);

impl Handler<RemoteTaskRecords> for TaskManager {
    type Result = ();

    fn handle(&mut self, msg: RemoteTaskRecords, _ctx: &mut Context<Self>) {
        for (id, r) in msg.0 {
            let Some(t) = self.tasks.get(&id) else { continue };
            let of_its_owner = matches!(&t.home, TaskHome::Remote(m) if m.id == r.owner);
            let same = t.run_id == r.run_id
                && t.cdn_status == r.status
                && t.http_file_length == r.http_len
                && t.piece_total == r.piece_total
                && t.file_length == r.file_length
                && t.real_md5 == r.real_md5;
            if !of_its_owner || same {
                continue;
            }
            let info = OwnerTask {
                task_id: id.clone(),
                run_id: r.run_id,
                status: r.status,
                http_len: r.http_len,
                piece_size: r.piece_size,
                piece_total: r.piece_total,
                file_length: r.file_length,
                real_md5: r.real_md5,
                failure: r.failure,
            };
            self.update_from_owner(&id, &info);
        }
    }
}

impl Handler<ClusterView> for TaskManager {
    type Result = ();

    fn handle(&mut self, view: ClusterView, ctx: &mut Context<Self>) {
        self.view = view;
        let orphans: Vec<TaskId> = self
            .tasks
            .values()
            .filter(|t| matches!(&t.home, TaskHome::Remote(m) if !self.view.is_live(&m.id)))
            .map(|t| t.id.clone())
            .collect();
        for id in orphans {
            let Some(spec) = self.tasks.get(&id).map(|t| t.spec.clone()) else { continue };
            match (self.view.remote_owner(&id).cloned(), self.next.forwarder.clone()) {
                (Some(owner), Some(forwarder)) => {
                    tracing::info!(task = %id, owner = %owner.id, "task owner gone; registering with the new owner");
                    let me = ctx.address();
                    ctx.spawn(actix::fut::wrap_future(async move {
                        match forwarder.register(&owner, &spec).await {
                            Ok(info) => me.do_send(AdoptRemote { spec, owner, info }),
                            Err(_) => me.do_send(RegisterTask(spec, Route::Here)),
                        }
                    }));
                }
                _ => {
                    tracing::info!(task = %id, "task owner gone; this node makes the copy");
                    self.start_run(&id, ctx);
                }
            }
        }
    }
}
