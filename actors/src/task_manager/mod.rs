//! `TaskManager`: the registry of tasks (one per downloadable resource), and the workflows
//! that span several actors.
//!
//! It decides when a CDN run starts (a new task, or one whose last run failed), makes every
//! registration that arrives while the source is being opened wait for that single answer,
//! remembers unreachable sources for a while, and tells the scheduler about every change.
//!
//! | file | what |
//! |---|---|
//! | `register.rs` | a registration: peer, then task, then client, undone when a step fails |
//! | `runs.rs` | what the CDN reports about a run |
//! | `piece_error.rs` | a piece error, and the check of our own copy it may call for |
//! | `network.rs` | the seed network view: seeds joined with their peers and tasks |
//! | `ops.rs` | lookups and operator actions: get, list, pause, delete, wait for a task |
//! | `cluster.rs` | cluster mode: tasks owned by another node, and owners going away |

mod cluster;
mod network;
mod ops;
mod piece_error;
mod register;
mod runs;

pub use cluster::RemoteTaskRecords;
pub use network::{SeedNetwork, SeedPeer};
pub use ops::{AwaitTask, DeleteTask, GetTask, ListTasks, UpdateTask};
pub use piece_error::PieceError;
pub use register::{ClientRequest, Downloader, Pattern, Register, RegisterError, Registration, Route};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use crate::cdn::scan::CachedFile;
use crate::cdn::{CacheFiles, CdnManager, CdnPattern, DropTask, StartRun};
use crate::clock::SharedClock;
use crate::cluster::forward::Forwarder;
use crate::cluster::view::{ClusterView, Member};
use crate::events::{CdnHost, RunListener, TaskDeleted, TaskStatusChanged};
use crate::failure::{CdnFailure, SourceFailure};
use crate::ids::TaskId;
use crate::metrics::Metrics;
use crate::peer_registry::PeerRegistry;
use crate::scheduler::PieceScheduler;
use crate::spec::TaskSpec;
use crate::status::CdnStatus;

/// Where a task's CDN copy is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskHome {
    /// Here: this node fetches the source.
    Local,
    /// At its owner in the cluster, which fetches the source and serves the CDN pieces.
    Remote(Member),
}

/// One downloadable resource.
#[derive(Clone, Debug)]
pub struct Task {
    pub id: TaskId,
    pub home: TaskHome,
    /// As given by the latest registration (its headers and TLS options are used for later runs).
    pub spec: TaskSpec,
    /// Source length; `None` while unknown.
    pub http_file_length: Option<u64>,
    pub piece_size: u64,
    pub piece_total: u64,
    pub cdn_status: CdnStatus,
    /// CDN (framed) length, after success.
    pub file_length: u64,
    pub real_md5: String,
    /// Why the last run failed.
    pub failure: Option<CdnFailure>,
    pub paused: bool,
    pub created: DateTime<Utc>,
    run_id: u64,
    /// Registrations so far: tells whether a failed registration was the task's only one.
    registrations: u64,
}

impl Task {
    /// A task just registered: nothing known of its source yet.
    fn new(id: TaskId, spec: TaskSpec, home: TaskHome, created: DateTime<Utc>) -> Task {
        Task {
            id,
            home,
            spec,
            http_file_length: None,
            piece_size: 0,
            piece_total: 0,
            cdn_status: CdnStatus::Waiting,
            file_length: 0,
            real_md5: String::new(),
            failure: None,
            paused: false,
            created,
            run_id: 0,
            registrations: 0,
        }
    }

    /// Which CDN run of the task the state is of.
    pub fn run_id(&self) -> u64 {
        self.run_id
    }
}

/// The limits the manager enforces, and where clients get the supernode's pieces from.
#[derive(Clone, Debug)]
pub struct TaskSettings {
    pub max_tasks: usize,
    /// How long a 404 or unreachable source is answered from memory.
    pub fail_access_interval: Duration,
    /// Upper bound on how long a registration waits for the source to answer.
    pub open_wait: Duration,
    pub cdn_pattern: CdnPattern,
}

/// Where the manager's workflows send their steps.
#[derive(Clone)]
pub struct Neighbours {
    pub cdn: Addr<CdnManager>,
    pub scheduler: Addr<PieceScheduler>,
    pub peers: Addr<PeerRegistry>,
    /// In cluster mode: registers tasks with their owners.
    pub forwarder: Option<Forwarder>,
}

type Waiter = oneshot::Sender<Result<Task, RegisterError>>;

pub struct TaskManager {
    tasks: HashMap<TaskId, Task>,
    /// Registrations waiting for the source to answer.
    waiters: HashMap<TaskId, Vec<Waiter>>,
    /// Callers waiting for a task's run to end (`None`: the task went away).
    watchers: HashMap<TaskId, Vec<oneshot::Sender<Option<Task>>>>,
    unreachable: HashMap<TaskId, (Instant, SourceFailure)>,
    next: Neighbours,
    /// The cluster as last seen (this node alone outside cluster mode).
    view: ClusterView,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    settings: TaskSettings,
    next_run: u64,
}

impl TaskManager {
    pub fn new(
        cached: &[CachedFile],
        next: Neighbours,
        view: ClusterView,
        metrics: Arc<Metrics>,
        clock: SharedClock,
        settings: TaskSettings,
    ) -> Self {
        let created = DateTime::<Utc>::from(clock.wall());
        let tasks: HashMap<TaskId, Task> = cached
            .iter()
            .filter_map(|f| {
                let id = f.task_id()?;
                let layout = f.meta.layout();
                let task = Task {
                    id: id.clone(),
                    home: TaskHome::Local,
                    spec: f.meta.spec(),
                    http_file_length: Some(layout.http_len),
                    piece_size: layout.piece_size,
                    piece_total: layout.piece_count(),
                    cdn_status: CdnStatus::Success,
                    file_length: layout.file_length(),
                    real_md5: f.meta.real_md5.clone(),
                    failure: None,
                    paused: false,
                    created,
                    run_id: 0,
                    registrations: 0,
                };
                Some((id, task))
            })
            .collect();
        metrics.tasks.with_label_values(&[CdnStatus::Success.as_str()]).set(tasks.len() as i64);
        TaskManager {
            tasks,
            waiters: HashMap::new(),
            watchers: HashMap::new(),
            unreachable: HashMap::new(),
            next,
            view,
            metrics,
            clock,
            settings,
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

    /// Tells the scheduler, and anyone waiting for the run to end, about a change.
    fn notify(&mut self, id: &TaskId) {
        let Some(task) = self.tasks.get(id) else { return };
        let cdn_host = match (&task.home, self.settings.cdn_pattern) {
            (_, CdnPattern::Source) => CdnHost::Source { url: task.spec.raw_url.clone() },
            (TaskHome::Local, CdnPattern::Local) => CdnHost::Local,
            (TaskHome::Remote(owner), CdnPattern::Local) => CdnHost::Remote {
                ip: owner.advertise_ip,
                port: owner.download_port,
                cid: owner.super_cid(id),
                peer: owner.super_peer.clone(),
            },
        };
        self.next.scheduler.do_send(TaskStatusChanged {
            task_id: task.id.clone(),
            run_id: task.run_id,
            task_url: task.spec.task_url.clone(),
            status: task.cdn_status,
            http_len: task.http_file_length,
            piece_size: task.piece_size,
            piece_total: task.piece_total,
            file_length: task.file_length,
            real_md5: task.real_md5.clone(),
            failure: task.failure.clone(),
            paused: task.paused,
            cdn_host,
        });
        if task.cdn_status.is_final() {
            let task = task.clone();
            for w in self.watchers.remove(id).unwrap_or_default() {
                let _ = w.send(Some(task.clone()));
            }
        }
    }

    /// Starts a CDN run here (a task owned elsewhere becomes this node's own).
    fn start_run(&mut self, id: &TaskId, ctx: &mut Context<Self>) {
        let Some(task) = self.tasks.get_mut(id) else { return };
        // Run IDs only grow, also across a task that an owner ran before this node.
        self.next_run = self.next_run.max(task.run_id + 1);
        let run_id = self.next_run;
        self.next_run += 1;
        task.home = TaskHome::Local;
        task.run_id = run_id;
        task.failure = None;
        Self::set_status(&self.metrics, task, CdnStatus::Waiting);
        let listener = RunListener { opened: ctx.address().recipient(), finished: ctx.address().recipient() };
        self.next.cdn.do_send(StartRun { task_id: id.clone(), run_id, spec: task.spec.clone(), listener });
        self.notify(id);
    }

    /// Removes a task from memory (and, with [`CacheFiles::Remove`], its files).
    fn remove(&mut self, id: &TaskId, files: CacheFiles) -> bool {
        let existed = match self.tasks.remove(id) {
            Some(task) => {
                self.metrics.tasks.with_label_values(&[task.cdn_status.as_str()]).dec();
                true
            }
            None => false,
        };
        self.unreachable.remove(id);
        self.waiters.remove(id);
        for w in self.watchers.remove(id).unwrap_or_default() {
            let _ = w.send(None);
        }
        self.next.cdn.do_send(DropTask { task_id: id.clone(), files });
        self.next.scheduler.do_send(TaskDeleted(id.clone()));
        existed
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
        let ids: Vec<TaskId> = self.tasks.keys().cloned().collect();
        for id in ids {
            self.notify(&id);
        }
    }
}
