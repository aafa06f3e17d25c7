//! `CdnManager`: fetches each task's source once and keeps the framed copy on disk.
//!
//! It owns the cache directory. A run is an actor-local future: it opens the source
//! (the response head doubles as the registration's probe, reported at once to the
//! `TaskManager`), streams the body to a [`writer::Writer`], and reports each piece as it
//! lands. Piece reports pass through this actor before the scheduler sees them, so the
//! download port never hands out bytes the writer has not written yet.

mod run;
pub mod source;
pub mod store;
pub mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use serde::Deserialize;

mod eviction;
pub mod policy;
pub use eviction::{CollectDisk, DiskPolicy};
pub use policy::SourcePolicy;
pub use source::SourceFailure;
use store::{CacheStore, CachedFile};

use crate::events::{CdnFinished, CdnPieces, CdnSuccess, SourceOpened};
use crate::ids::TaskId;
use crate::metrics::Metrics;

/// `[cdn]` settings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CdnConfig {
    /// TCP connect timeout towards sources.
    #[serde(with = "humantime_serde")]
    pub source_connect_timeout: Duration,
    /// Time until a source's response head must arrive (registrations wait for it; dfget gives up after 5 s).
    #[serde(with = "humantime_serde")]
    pub source_head_timeout: Duration,
    /// A source body that sends nothing for this long fails the run.
    #[serde(with = "humantime_serde")]
    pub source_stall_timeout: Duration,
    /// How long a 404 or unreachable source is answered from memory (§16 P8).
    #[serde(with = "humantime_serde")]
    pub fail_access_interval: Duration,
    /// Largest total size of the cache in bytes; 0 = no quota.
    pub cache_quota_bytes: u64,
}

impl Default for CdnConfig {
    fn default() -> Self {
        CdnConfig {
            source_connect_timeout: Duration::from_secs(3),
            source_head_timeout: Duration::from_secs(4),
            source_stall_timeout: Duration::from_secs(60),
            fail_access_interval: Duration::from_secs(180),
            cache_quota_bytes: 0,
        }
    }
}

/// What a registration asks for: the source, how to reach it, and what identifies the task.
#[derive(Debug, Clone, Default)]
pub struct TaskSpec {
    pub raw_url: String,
    pub task_url: String,
    pub headers: std::collections::BTreeMap<String, String>,
    pub md5: String,
    pub identifier: String,
    pub insecure: bool,
    /// PEM bytes.
    pub root_cas: Vec<Vec<u8>>,
}

impl TaskSpec {
    /// taskID per §2.2 (the `Range` header is part of the identity).
    pub fn task_id(&self) -> TaskId {
        TaskId::compute(&self.task_url, &self.md5, &self.identifier, self.headers.get("Range").map(String::as_str))
    }
}

enum Entry {
    Running { run_id: u64, handle: SpawnHandle, bytes_written: u64 },
    Cached { size: u64, last_used: SystemTime, readers: u32 },
}

/// Where a run's news goes: the source's answer and the end of the run to the `TaskManager`,
/// each written piece to the scheduler.
pub struct RunListeners {
    pub opened: Recipient<SourceOpened>,
    pub finished: Recipient<CdnFinished>,
    pub pieces: Recipient<CdnPieces>,
}

pub struct CdnManager {
    store: CacheStore,
    config: CdnConfig,
    entries: HashMap<TaskId, Entry>,
    opened: Recipient<SourceOpened>,
    finished: Recipient<CdnFinished>,
    pieces: Recipient<CdnPieces>,
    metrics: Arc<Metrics>,
    /// Files found at start, announced to the scheduler once the actor runs.
    startup: Vec<CachedFile>,
    policy: SourcePolicy,
}

impl CdnManager {
    pub fn new(
        store: CacheStore,
        config: CdnConfig,
        cached: Vec<CachedFile>,
        listeners: RunListeners,
        metrics: Arc<Metrics>,
        policy: SourcePolicy,
    ) -> Self {
        let entries = cached
            .iter()
            .filter_map(|f| {
                let last_used = UNIX_EPOCH + Duration::from_millis(f.meta.access_time.max(0) as u64);
                TaskId::parse(&f.meta.task_id).map(|id| (id, Entry::Cached { size: f.size, last_used, readers: 0 }))
            })
            .collect();
        let RunListeners { opened, finished, pieces } = listeners;
        let mgr = CdnManager { store, config, entries, opened, finished, pieces, metrics, startup: cached, policy };
        mgr.update_usage();
        mgr
    }

    fn update_usage(&self) {
        let (bytes, files) = self.entries.values().fold((0u64, 0i64), |(b, n), e| match e {
            Entry::Cached { size, .. } => (b + size, n + 1),
            Entry::Running { .. } => (b, n),
        });
        self.metrics.cache_bytes.set(bytes as i64);
        self.metrics.cache_files.set(files);
    }
}

impl Actor for CdnManager {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        for f in std::mem::take(&mut self.startup) {
            let Some(task_id) = TaskId::parse(&f.meta.task_id) else { continue };
            self.pieces.do_send(CdnPieces {
                task_id,
                run_id: 0,
                piece_size: f.meta.layout().piece_size,
                first: 0,
                md5s: f.piece_md5s,
            });
        }
    }
}

/// Starts (or restarts) the run of a task. A run already going for the task is replaced.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct StartRun {
    pub task_id: TaskId,
    pub run_id: u64,
    pub spec: TaskSpec,
}

impl Handler<StartRun> for CdnManager {
    type Result = ();

    #[tracing::instrument(name = "CdnManager::start_run", skip_all, fields(task = %msg.task_id, run = msg.run_id))]
    fn handle(&mut self, msg: StartRun, ctx: &mut Context<Self>) {
        if let Some(Entry::Running { handle, .. }) = self.entries.remove(&msg.task_id) {
            ctx.cancel_future(handle);
        }
        self.metrics.cdn_trigger.inc();
        let previous = self.store.read_meta(&msg.task_id).filter(|m| {
            m.is_complete()
                && m.url == msg.spec.task_url
                && if msg.spec.md5.is_empty() { m.biz_id == msg.spec.identifier } else { m.md5 == msg.spec.md5 }
                && self.store.data_path(&msg.task_id).exists()
        });
        // A file larger than the whole quota can never be cached; smaller ones make room by eviction.
        let quota = (self.config.cache_quota_bytes > 0).then_some(self.config.cache_quota_bytes);
        let job = run::RunJob {
            task_id: msg.task_id.clone(),
            run_id: msg.run_id,
            spec: msg.spec,
            previous,
            store: self.store.clone(),
            config: self.config.clone(),
            max_file_bytes: quota,
            policy: self.policy.clone(),
            opened: self.opened.clone(),
            manager: ctx.address(),
            metrics: self.metrics.clone(),
        };
        let task_id = msg.task_id.clone();
        let run_id = msg.run_id;
        let fut =
            run::execute(job).into_actor(self).map(move |result, act, _ctx| act.run_ended(task_id, run_id, result));
        let handle = ctx.spawn(fut);
        self.entries.insert(msg.task_id, Entry::Running { run_id, handle, bytes_written: 0 });
    }
}

impl CdnManager {
    fn run_ended(
        &mut self,
        task_id: TaskId,
        run_id: u64,
        result: Result<run::RunOutput, (crate::events::FailureKind, String)>,
    ) {
        if !matches!(self.entries.get(&task_id), Some(Entry::Running { run_id: r, .. }) if *r == run_id) {
            return;
        }
        let result = match result {
            Ok(out) => {
                if !out.announced {
                    self.pieces.do_send(CdnPieces {
                        task_id: task_id.clone(),
                        run_id,
                        piece_size: out.piece_size,
                        first: 0,
                        md5s: out.piece_md5s.clone(),
                    });
                }
                self.entries.insert(
                    task_id.clone(),
                    Entry::Cached { size: out.file_length, last_used: SystemTime::now(), readers: 0 },
                );
                Ok(CdnSuccess {
                    http_len: out.http_len,
                    file_length: out.file_length,
                    real_md5: out.real_md5,
                    piece_total: out.piece_md5s.len() as u64,
                })
            }
            Err(e) => {
                self.metrics.cdn_trigger_failed.inc();
                self.entries.remove(&task_id);
                Err(e)
            }
        };
        self.update_usage();
        self.finished.do_send(CdnFinished { task_id, run_id, result });
    }
}

/// Writer → manager: a piece is on disk. Forwarded to the scheduler after the byte count is updated.
#[derive(Message, Debug)]
#[rtype(result = "()")]
struct PieceOnDisk {
    task_id: TaskId,
    run_id: u64,
    piece_size: u64,
    piece_num: u64,
    md5: String,
    bytes_written: u64,
}

impl Handler<PieceOnDisk> for CdnManager {
    type Result = ();
    fn handle(&mut self, msg: PieceOnDisk, _ctx: &mut Context<Self>) {
        if let Some(Entry::Running { run_id, bytes_written, .. }) = self.entries.get_mut(&msg.task_id) {
            if *run_id == msg.run_id {
                *bytes_written = msg.bytes_written;
                self.pieces.do_send(CdnPieces {
                    task_id: msg.task_id,
                    run_id: msg.run_id,
                    piece_size: msg.piece_size,
                    first: msg.piece_num,
                    md5s: vec![msg.md5],
                });
            }
        }
    }
}

/// Where the download port reads a task's bytes and how many it may serve.
/// While it is held, disk GC leaves the file alone.
#[derive(Debug)]
pub struct Servable {
    pub path: PathBuf,
    /// Where the bytes are once a running task's file has been renamed, which can happen
    /// just before this actor learns that the run ended.
    pub renamed: Option<PathBuf>,
    pub len: u64,
    pub guard: ReadGuard,
}

/// Marks a cached file as being read until dropped.
#[derive(Debug)]
pub struct ReadGuard {
    task_id: TaskId,
    cdn: Option<Addr<CdnManager>>,
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        if let Some(cdn) = self.cdn.take() {
            cdn.do_send(ReadFinished(self.task_id.clone()));
        }
    }
}

#[derive(Message, Debug)]
#[rtype(result = "()")]
struct ReadFinished(TaskId);

impl Handler<ReadFinished> for CdnManager {
    type Result = ();
    fn handle(&mut self, msg: ReadFinished, _ctx: &mut Context<Self>) {
        if let Some(Entry::Cached { readers, .. }) = self.entries.get_mut(&msg.0) {
            *readers = readers.saturating_sub(1);
        }
    }
}

#[derive(Message, Debug)]
#[rtype(result = "Option<Servable>")]
pub struct LookupServable(pub TaskId);

impl Handler<LookupServable> for CdnManager {
    type Result = Option<Servable>;
    fn handle(&mut self, msg: LookupServable, ctx: &mut Context<Self>) -> Option<Servable> {
        match self.entries.get_mut(&msg.0)? {
            Entry::Running { bytes_written, .. } => Some(Servable {
                path: self.store.temp_path(&msg.0),
                renamed: Some(self.store.data_path(&msg.0)),
                len: *bytes_written,
                guard: ReadGuard { task_id: msg.0, cdn: None },
            }),
            Entry::Cached { size, last_used, readers } => {
                *readers += 1;
                *last_used = SystemTime::now();
                Some(Servable {
                    path: self.store.data_path(&msg.0),
                    renamed: None,
                    len: *size,
                    guard: ReadGuard { task_id: msg.0, cdn: Some(ctx.address()) },
                })
            }
        }
    }
}

/// Stops a task's run and, with `delete_files`, removes its cached files.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct DropTask {
    pub task_id: TaskId,
    pub delete_files: bool,
}

impl Handler<DropTask> for CdnManager {
    type Result = ();
    fn handle(&mut self, msg: DropTask, ctx: &mut Context<Self>) {
        match self.entries.get(&msg.task_id) {
            Some(Entry::Running { handle, .. }) => {
                ctx.cancel_future(*handle);
                self.entries.remove(&msg.task_id);
                self.store.remove_temp(&msg.task_id);
            }
            Some(Entry::Cached { .. }) if msg.delete_files => {
                self.entries.remove(&msg.task_id);
            }
            _ => {}
        }
        if msg.delete_files {
            self.store.remove_all(&msg.task_id);
        }
        self.update_usage();
    }
}

/// Re-hashes one piece of the cached copy (§16 P10): `Some(md5 hex)`, or `None` when the file is gone.
#[derive(Message, Debug)]
#[rtype(result = "Option<String>")]
pub struct HashPieceOnDisk {
    pub task_id: TaskId,
    pub offset: u64,
    pub len: u64,
}

impl Handler<HashPieceOnDisk> for CdnManager {
    type Result = Option<String>;
    fn handle(&mut self, msg: HashPieceOnDisk, _ctx: &mut Context<Self>) -> Option<String> {
        let path = match self.entries.get(&msg.task_id)? {
            Entry::Running { .. } => self.store.temp_path(&msg.task_id),
            Entry::Cached { .. } => self.store.data_path(&msg.task_id),
        };
        store::piece_md5_on_disk(&path, msg.offset, msg.len).ok()
    }
}

/// sha256 (hex) of a cached task's source bytes, read back from the framed file.
#[derive(Message, Debug)]
#[rtype(result = "Result<String, String>")]
pub struct SourceSha256(pub TaskId);

impl Handler<SourceSha256> for CdnManager {
    type Result = ResponseFuture<Result<String, String>>;

    fn handle(&mut self, msg: SourceSha256, _ctx: &mut Context<Self>) -> Self::Result {
        let ready = matches!(self.entries.get(&msg.0), Some(Entry::Cached { .. }));
        let path = self.store.data_path(&msg.0);
        let meta = self.store.read_meta(&msg.0);
        Box::pin(async move {
            let meta =
                meta.filter(|m| ready && m.is_complete()).ok_or_else(|| "no complete cached copy".to_string())?;
            tokio::task::spawn_blocking(move || store::source_sha256(&path, &meta.layout()).map_err(|e| e.to_string()))
                .await
                .map_err(|e| e.to_string())?
        })
    }
}
