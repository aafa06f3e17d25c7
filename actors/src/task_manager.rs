//! `TaskManager`: the registry of tasks (one per downloadable resource, §0.1).
//!
//! It decides when a CDN run starts (a new task, or one that failed), makes every
//! registration that arrives while the source is being opened wait for that single
//! answer (§16 P7), remembers unreachable sources for a while (§16 P8), and tells
//! the scheduler about every status change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::cdn::store::CachedFile;
pub use crate::cdn::TaskSpec;
use crate::cdn::{CdnManager, DropTask, SourceFailure, StartRun};
use crate::events::{CdnFinished, FailureKind, SourceOpened, TaskStatusChanged};
use crate::ids::TaskId;
use crate::metrics::Metrics;
use crate::piece::PieceLayout;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CdnStatus {
    Waiting,
    Running,
    Failed,
    Success,
    SourceError,
}

impl CdnStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CdnStatus::Waiting => "WAITING",
            CdnStatus::Running => "RUNNING",
            CdnStatus::Failed => "FAILED",
            CdnStatus::Success => "SUCCESS",
            CdnStatus::SourceError => "SOURCE_ERROR",
        }
    }

    fn needs_run(self) -> bool {
        matches!(self, CdnStatus::Failed | CdnStatus::SourceError)
    }
}

/// One downloadable resource.
#[derive(Clone, Debug)]
pub struct Task {
    pub id: TaskId,
    /// As given by the latest registration (its headers and TLS options are used for later runs).
    pub spec: TaskSpec,
    /// Source length; -1 unknown.
    pub http_file_length: i64,
    pub piece_size: u64,
    pub piece_total: u64,
    pub cdn_status: CdnStatus,
    /// CDN (framed) length, after success.
    pub file_length: u64,
    pub real_md5: String,
    /// Why the last run failed.
    pub failure: String,
    pub paused: bool,
    pub created: chrono::DateTime<chrono::Utc>,
    run_id: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegisterError {
    /// 607.
    #[error("{0}")]
    SourceUnreachable(String),
    /// 608.
    #[error("{0}")]
    SourceAuth(String),
    /// 606.
    #[error("task conflict: {0}")]
    Conflict(String),
    #[error("too many tasks: the limit is {0}")]
    TooMany(usize),
    /// The source policy refuses the URL's host or address.
    #[error("{0}")]
    Denied(String),
}

/// `[tasks]`-level limits the manager enforces.
#[derive(Clone, Debug)]
pub struct TaskLimits {
    pub max_tasks: usize,
    pub fail_access_interval: Duration,
    /// Upper bound on how long a registration waits for the source to answer.
    pub open_wait: Duration,
}

type Waiter = oneshot::Sender<Result<Task, RegisterError>>;

pub struct TaskManager {
    tasks: HashMap<TaskId, Task>,
    /// Registrations waiting for the source to answer.
    waiters: HashMap<TaskId, Vec<Waiter>>,
    unreachable: HashMap<TaskId, (Instant, SourceFailure)>,
    cdn: Addr<CdnManager>,
    scheduler: Recipient<TaskStatusChanged>,
    metrics: Arc<Metrics>,
    limits: TaskLimits,
    next_run: u64,
}

impl TaskManager {
    pub fn new(
        cached: &[CachedFile],
        cdn: Addr<CdnManager>,
        scheduler: Recipient<TaskStatusChanged>,
        metrics: Arc<Metrics>,
        limits: TaskLimits,
    ) -> Self {
        let mut tasks = HashMap::new();
        for f in cached {
            let Some(id) = TaskId::parse(&f.meta.task_id) else { continue };
            let layout = f.meta.layout();
            let raw_url = if f.meta.raw_url.is_empty() { f.meta.url.clone() } else { f.meta.raw_url.clone() };
            tasks.insert(
                id.clone(),
                Task {
                    id,
                    spec: TaskSpec {
                        raw_url,
                        task_url: f.meta.url.clone(),
                        headers: f.meta.headers.clone(),
                        md5: f.meta.md5.clone(),
                        identifier: f.meta.biz_id.clone(),
                        insecure: f.meta.insecure,
                        root_cas: f.meta.root_cas.iter().map(|s| s.as_bytes().to_vec()).collect(),
                    },
                    http_file_length: f.meta.http_file_len,
                    piece_size: layout.piece_size,
                    piece_total: layout.piece_count(),
                    cdn_status: CdnStatus::Success,
                    file_length: layout.file_length(),
                    real_md5: f.meta.real_md5.clone(),
                    failure: String::new(),
                    paused: false,
                    created: chrono::Utc::now(),
                    run_id: 0,
                },
            );
        }
        metrics.tasks.with_label_values(&[CdnStatus::Success.as_str()]).set(tasks.len() as i64);
        TaskManager {
            tasks,
            waiters: HashMap::new(),
            unreachable: HashMap::new(),
            cdn,
            scheduler,
            metrics,
            limits,
            next_run: 1,
        }
    }

    fn set_status(metrics: &Metrics, task: &mut Task, status: CdnStatus) {
        if task.cdn_status != status {
            metrics.tasks.with_label_values(&[task.cdn_status.as_str()]).dec();
            metrics.tasks.with_label_values(&[status.as_str()]).inc();
            task.cdn_status = status;
        }
    }

    fn notify(&self, task: &Task) {
        self.scheduler.do_send(TaskStatusChanged {
            task_id: task.id.clone(),
            run_id: task.run_id,
            task_url: task.spec.task_url.clone(),
            status: Some(task.cdn_status),
            piece_size: task.piece_size,
            piece_total: task.piece_total,
            file_length: task.file_length,
            real_md5: task.real_md5.clone(),
            reason: task.failure.clone(),
            paused: task.paused,
        });
    }

    fn start_run(&mut self, id: &TaskId) {
        let run_id = self.next_run;
        self.next_run += 1;
        let Some(task) = self.tasks.get_mut(id) else { return };
        task.run_id = run_id;
        task.failure.clear();
        Self::set_status(&self.metrics, task, CdnStatus::Waiting);
        self.cdn.do_send(StartRun { task_id: id.clone(), run_id, spec: task.spec.clone() });
        let task = task.clone();
        self.notify(&task);
    }

    fn wait_for_source(&mut self, id: TaskId) -> ResponseFuture<Result<Task, RegisterError>> {
        let (tx, rx) = oneshot::channel();
        self.waiters.entry(id).or_default().push(tx);
        let wait = self.limits.open_wait;
        Box::pin(async move {
            match tokio::time::timeout(wait, rx).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => {
                    Err(RegisterError::SourceUnreachable("task was removed while its source was being opened".into()))
                }
                Err(_) => {
                    Err(RegisterError::SourceUnreachable(format!("source did not answer within {}s", wait.as_secs())))
                }
            }
        })
    }

    fn answer_waiters(&mut self, id: &TaskId, result: Result<Task, RegisterError>) {
        for w in self.waiters.remove(id).unwrap_or_default() {
            let _ = w.send(result.clone());
        }
    }
}

impl Actor for TaskManager {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        for task in self.tasks.values() {
            self.notify(task);
        }
    }
}

/// A registration (dfget's `/peer/registry`, `POST /api/v1/tasks`, a preheat).
#[derive(Message, Debug)]
#[rtype(result = "Result<Task, RegisterError>")]
pub struct RegisterTask(pub TaskSpec);

impl Handler<RegisterTask> for TaskManager {
    type Result = ResponseFuture<Result<Task, RegisterError>>;

    #[tracing::instrument(name = "TaskManager::register", skip_all)]
    fn handle(&mut self, msg: RegisterTask, _ctx: &mut Context<Self>) -> Self::Result {
        let spec = msg.0;
        let id = spec.task_id();
        if let Some((at, failure)) = self.unreachable.get(&id) {
            if at.elapsed() < self.limits.fail_access_interval {
                let err = RegisterError::SourceUnreachable(format!("{failure} (remembered)"));
                return Box::pin(async move { Err(err) });
            }
            self.unreachable.remove(&id);
        }
        let is_new = !self.tasks.contains_key(&id);
        if is_new && self.tasks.len() >= self.limits.max_tasks {
            let err = RegisterError::TooMany(self.limits.max_tasks);
            return Box::pin(async move { Err(err) });
        }
        let task = self.tasks.entry(id.clone()).or_insert_with(|| {
            self.metrics.tasks.with_label_values(&[CdnStatus::Waiting.as_str()]).inc();
            Task {
                id: id.clone(),
                spec: spec.clone(),
                http_file_length: -1,
                piece_size: 0,
                piece_total: 0,
                cdn_status: CdnStatus::Waiting,
                file_length: 0,
                real_md5: String::new(),
                failure: String::new(),
                paused: false,
                created: chrono::Utc::now(),
                run_id: 0,
            }
        });
        let known = &task.spec;
        if known.task_url != spec.task_url
            || known.md5 != spec.md5
            || (known.md5.is_empty() && known.identifier != spec.identifier)
        {
            let err = RegisterError::Conflict(format!("task {id} exists for another URL or md5"));
            return Box::pin(async move { Err(err) });
        }
        // The latest registration's headers and TLS options are used for later runs (§6.5).
        task.spec = spec;
        self.metrics.tasks_registered.inc();
        if is_new || task.cdn_status.needs_run() {
            self.start_run(&id);
            return self.wait_for_source(id);
        }
        if self.waiters.contains_key(&id) {
            return self.wait_for_source(id);
        }
        let task = task.clone();
        Box::pin(async move { Ok(task) })
    }
}

impl Handler<SourceOpened> for TaskManager {
    type Result = ();

    fn handle(&mut self, msg: SourceOpened, _ctx: &mut Context<Self>) {
        let Some(task) = self.tasks.get_mut(&msg.task_id) else { return };
        if task.run_id != msg.run_id {
            return;
        }
        let result = match msg.result {
            Ok(info) => {
                task.http_file_length = info.http_len;
                task.piece_size = info.piece_size;
                task.piece_total = if info.http_len >= 0 {
                    PieceLayout::new(info.http_len as u64, info.piece_size).piece_count()
                } else {
                    0
                };
                Self::set_status(&self.metrics, task, CdnStatus::Running);
                Ok(task.clone())
            }
            Err(failure) => {
                let (status, err) = match &failure {
                    SourceFailure::Denied(m) => (CdnStatus::Failed, RegisterError::Denied(m.clone())),
                    SourceFailure::Auth(_) => (CdnStatus::SourceError, RegisterError::SourceAuth(failure.to_string())),
                    SourceFailure::Status(_) => {
                        (CdnStatus::SourceError, RegisterError::SourceUnreachable(failure.to_string()))
                    }
                    _ => (CdnStatus::Failed, RegisterError::SourceUnreachable(failure.to_string())),
                };
                task.failure = failure.to_string();
                Self::set_status(&self.metrics, task, status);
                if failure.remembered() {
                    self.unreachable.insert(msg.task_id.clone(), (Instant::now(), failure));
                }
                Err(err)
            }
        };
        let snapshot = self.tasks.get(&msg.task_id).cloned();
        if let Some(t) = snapshot {
            self.notify(&t);
        }
        self.answer_waiters(&msg.task_id, result);
    }
}

impl Handler<CdnFinished> for TaskManager {
    type Result = ();

    fn handle(&mut self, msg: CdnFinished, _ctx: &mut Context<Self>) {
        let Some(task) = self.tasks.get_mut(&msg.task_id) else { return };
        if task.run_id != msg.run_id {
            return;
        }
        match msg.result {
            Ok(done) => {
                task.http_file_length = done.http_len as i64;
                task.file_length = done.file_length;
                task.real_md5 = done.real_md5;
                task.piece_total = done.piece_total;
                task.failure.clear();
                Self::set_status(&self.metrics, task, CdnStatus::Success);
            }
            Err((kind, reason)) => {
                task.failure = reason;
                let status = match kind {
                    FailureKind::Failed => CdnStatus::Failed,
                    FailureKind::SourceError => CdnStatus::SourceError,
                };
                Self::set_status(&self.metrics, task, status);
            }
        }
        let task = task.clone();
        self.notify(&task);
        if self.waiters.contains_key(&msg.task_id) {
            let result = match task.cdn_status {
                CdnStatus::Success => Ok(task.clone()),
                _ => Err(RegisterError::SourceUnreachable(task.failure.clone())),
            };
            self.answer_waiters(&msg.task_id, result);
        }
    }
}

#[derive(Message, Debug)]
#[rtype(result = "Option<Task>")]
pub struct GetTask(pub TaskId);

impl Handler<GetTask> for TaskManager {
    type Result = Option<Task>;
    fn handle(&mut self, msg: GetTask, _ctx: &mut Context<Self>) -> Option<Task> {
        self.tasks.get(&msg.0).cloned()
    }
}

/// All tasks, for the ops page and the network API.
#[derive(Message, Debug)]
#[rtype(result = "Vec<Task>")]
pub struct ListTasks;

impl Handler<ListTasks> for TaskManager {
    type Result = MessageResult<ListTasks>;
    fn handle(&mut self, _msg: ListTasks, _ctx: &mut Context<Self>) -> Self::Result {
        let mut all: Vec<Task> = self.tasks.values().cloned().collect();
        all.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        MessageResult(all)
    }
}

/// Removes a task (§9.4); `delete_files` also removes its cache. Replies whether it existed.
#[derive(Message, Debug)]
#[rtype(result = "bool")]
pub struct DeleteTask {
    pub task_id: TaskId,
    pub delete_files: bool,
}

impl Handler<DeleteTask> for TaskManager {
    type Result = bool;

    #[tracing::instrument(name = "TaskManager::delete", skip_all, fields(task = %msg.task_id, full = msg.delete_files))]
    fn handle(&mut self, msg: DeleteTask, _ctx: &mut Context<Self>) -> bool {
        let existed = match self.tasks.remove(&msg.task_id) {
            Some(task) => {
                self.metrics.tasks.with_label_values(&[task.cdn_status.as_str()]).dec();
                true
            }
            None => false,
        };
        self.unreachable.remove(&msg.task_id);
        self.waiters.remove(&msg.task_id);
        self.cdn.do_send(DropTask { task_id: msg.task_id.clone(), delete_files: msg.delete_files });
        self.scheduler.do_send(TaskStatusChanged {
            task_id: msg.task_id,
            run_id: 0,
            task_url: String::new(),
            status: None,
            piece_size: 0,
            piece_total: 0,
            file_length: 0,
            real_md5: String::new(),
            reason: "task was deleted".into(),
            paused: false,
        });
        existed
    }
}

/// Pauses or resumes a task (operators). Replies with the task, `None` if unknown.
#[derive(Message, Debug)]
#[rtype(result = "Option<Task>")]
pub struct SetPaused {
    pub task_id: TaskId,
    pub paused: bool,
}

impl Handler<SetPaused> for TaskManager {
    type Result = Option<Task>;
    fn handle(&mut self, msg: SetPaused, _ctx: &mut Context<Self>) -> Option<Task> {
        let task = self.tasks.get_mut(&msg.task_id)?;
        task.paused = msg.paused;
        let task = task.clone();
        self.notify(&task);
        Some(task)
    }
}

/// A task's source file failed verification on disk (§16 P10): run the CDN again.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct InvalidateCache(pub TaskId);

impl Handler<InvalidateCache> for TaskManager {
    type Result = ();
    fn handle(&mut self, msg: InvalidateCache, _ctx: &mut Context<Self>) {
        if self.tasks.get(&msg.0).is_some_and(|t| t.cdn_status == CdnStatus::Success) {
            tracing::warn!(task = %msg.0, "cached copy failed verification; fetching the source again");
            self.cdn.do_send(DropTask { task_id: msg.0.clone(), delete_files: true });
            self.start_run(&msg.0);
        }
    }
}
