//! `CdnManager`: fetches each task's source once and keeps the framed copy on disk.
//!
//! It owns the cache directory. A run is an actor-local future: it opens the source (the
//! response head doubles as the registration's probe and goes at once to the run's
//! listener), streams the body to a [`writer::Writer`], and reports each piece as it lands.
//! Piece reports pass through this actor before the scheduler sees them, so the download
//! port never hands out bytes the writer has not written yet.
//!
//! File contents are read and written on the blocking pool or the writer's threads, never
//! on this actor's thread. Renames and deletions, which change what a task's names point
//! at, happen here, in the same handler that changes the task's entry, so that a lookup
//! never sees an entry and a file that disagree.

mod blocks;
mod config;
mod eviction;
pub mod policy;
pub mod readback;
mod run;
pub mod scan;
mod serve;
pub mod source;
mod source_pattern;
pub mod store;
mod verify;
pub mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;

pub use config::{CdnConfig, CdnPattern};
pub use eviction::{plan_eviction, CollectDisk, DiskPolicy, EvictionCandidate};
pub use policy::SourcePolicy;
use scan::{CachedFile, Scan};
pub use serve::{LookupServable, ReadGuard, Servable, ServableFile};
use store::CacheStore;
pub use verify::{CopyCheck, CopyError, SourceSha256, VerifyCopy};

use crate::clock::SharedClock;
use crate::events::{CdnFinished, CdnPieces, CdnSuccess, RunListener};
use crate::failure::{CdnFailure, WriteError};
use crate::ids::TaskId;
use crate::metrics::Metrics;
use crate::spec::TaskSpec;
use crate::throttle::Throttle;

enum Entry {
    /// A run is fetching the source into the temporary file.
    Running {
        run_id: u64,
        handle: SpawnHandle,
        /// Bytes of whole pieces written so far: all that may be served.
        written: u64,
        /// Opened once the temporary file exists; readers share it, so the final rename
        /// cannot pull the file from under them.
        reader: Option<Arc<File>>,
        listener: RunListener,
    },
    Cached {
        size: u64,
        last_used: SystemTime,
        readers: u32,
    },
    /// What an interrupted run left: never served, resumed by the task's next run, evicted
    /// like a cached file when space is needed.
    Partial {
        size: u64,
        last_used: SystemTime,
    },
}

pub struct CdnManager {
    store: CacheStore,
    config: CdnConfig,
    entries: HashMap<TaskId, Entry>,
    pieces: Recipient<CdnPieces>,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    /// Files found at start, announced to the scheduler once the actor runs.
    startup: Vec<CachedFile>,
    policy: SourcePolicy,
    /// `max_bandwidth - system_reserved_bandwidth`, shared by every run.
    source_throttle: Option<Throttle>,
}

impl CdnManager {
    pub fn new(
        store: CacheStore,
        config: CdnConfig,
        found: Scan,
        pieces: Recipient<CdnPieces>,
        metrics: Arc<Metrics>,
        clock: SharedClock,
        policy: SourcePolicy,
    ) -> Self {
        let at = |ms: i64| UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
        let mut entries: HashMap<TaskId, Entry> = found
            .files
            .iter()
            .filter_map(|f| {
                Some((f.task_id()?, Entry::Cached { size: f.size, last_used: at(f.meta.access_time), readers: 0 }))
            })
            .collect();
        for p in &found.partials {
            entries.insert(p.task_id.clone(), Entry::Partial { size: p.size, last_used: at(p.access_time) });
        }
        // A reserve that leaves nothing is refused when the settings are read.
        let source_throttle = Throttle::new(config.source_rate().unwrap_or(None));
        let mgr = CdnManager {
            store,
            config,
            entries,
            pieces,
            metrics,
            clock,
            startup: found.files,
            policy,
            source_throttle,
        };
        mgr.update_usage();
        mgr
    }

    fn update_usage(&self) {
        let (bytes, files) = self.entries.values().fold((0u64, 0i64), |(b, n), e| match e {
            Entry::Cached { size, .. } => (b + size, n + 1),
            Entry::Running { .. } | Entry::Partial { .. } => (b, n),
        });
        self.metrics.cache_bytes.set(bytes as i64);
        self.metrics.cache_files.set(files);
    }

    fn running(&mut self, task_id: &TaskId, run: u64) -> Option<&mut Entry> {
        self.entries.get_mut(task_id).filter(|e| matches!(e, Entry::Running { run_id, .. } if *run_id == run))
    }

    /// A run's end: on success the temporary file takes its final name and the entry
    /// becomes a cached file, in one step.
    fn run_ended(&mut self, task_id: TaskId, run_id: u64, result: Result<run::RunOutput, CdnFailure>) {
        let Some(Entry::Running { listener, .. }) = self.running(&task_id, run_id) else { return };
        let listener = listener.clone();
        let result = result.and_then(|out| {
            if out.fetched {
                std::fs::rename(self.store.temp_path(&task_id), self.store.data_path(&task_id))
                    .map_err(|e| CdnFailure::Write(WriteError::from(e)))?;
            }
            Ok(out)
        });
        let result = match result {
            Ok(out) => {
                if !out.announced {
                    self.pieces.do_send(CdnPieces {
                        task_id: task_id.clone(),
                        run_id,
                        piece_size: out.piece_size,
                        first: 0,
                        digests: out.pieces.clone(),
                    });
                }
                let last_used = self.clock.wall();
                self.entries.insert(task_id.clone(), Entry::Cached { size: out.file_length, last_used, readers: 0 });
                Ok(CdnSuccess {
                    http_len: out.http_len,
                    file_length: out.file_length,
                    real_md5: out.real_md5,
                    piece_total: out.pieces.len() as u64,
                })
            }
            Err(e) => {
                self.metrics.cdn_trigger_failed.inc();
                self.entries.remove(&task_id);
                self.store.remove_temp(&task_id);
                Err(e)
            }
        };
        self.update_usage();
        listener.finished.do_send(CdnFinished { task_id, run_id, result });
    }
}

impl CdnManager {
    /// The end of a source pattern's check: nothing was cached.
    fn check_ended(&mut self, task_id: TaskId, run_id: u64, result: Result<CdnSuccess, CdnFailure>) {
        let Some(Entry::Running { listener, .. }) = self.running(&task_id, run_id) else { return };
        let listener = listener.clone();
        self.entries.remove(&task_id);
        if result.is_err() {
            self.metrics.cdn_trigger_failed.inc();
        }
        listener.finished.do_send(CdnFinished { task_id, run_id, result });
    }
}

impl Actor for CdnManager {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        for f in std::mem::take(&mut self.startup) {
            let Some(task_id) = f.task_id() else { continue };
            self.pieces.do_send(CdnPieces {
                task_id,
                run_id: 0,
                piece_size: f.meta.layout().piece_size,
                first: 0,
                digests: f.pieces,
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
    pub listener: RunListener,
}

impl Handler<StartRun> for CdnManager {
    type Result = ();

    #[tracing::instrument(name = "CdnManager::start_run", skip_all, fields(task = %msg.task_id, run = msg.run_id))]
    fn handle(&mut self, msg: StartRun, ctx: &mut Context<Self>) {
        if let Some(Entry::Running { handle, .. }) = self.entries.remove(&msg.task_id) {
            ctx.cancel_future(handle);
        }
        self.metrics.cdn_trigger.inc();
        let job = run::RunJob {
            task_id: msg.task_id.clone(),
            run_id: msg.run_id,
            spec: msg.spec,
            store: self.store.clone(),
            config: self.config.clone(),
            policy: self.policy.clone(),
            opened: msg.listener.opened.clone(),
            manager: ctx.address(),
            metrics: self.metrics.clone(),
            access_time: self.clock.wall(),
            throttle: self.source_throttle.clone(),
        };
        let (task_id, run_id) = (msg.task_id.clone(), msg.run_id);
        let handle = match self.config.pattern {
            CdnPattern::Local => {
                let run = run::execute(job).into_actor(self);
                ctx.spawn(run.map(move |result, act, _| act.run_ended(task_id, run_id, result)))
            }
            CdnPattern::Source => {
                let check = source_pattern::check(job).into_actor(self);
                ctx.spawn(check.map(move |result, act, _| act.check_ended(task_id, run_id, result)))
            }
        };
        let entry = Entry::Running { run_id, handle, written: 0, reader: None, listener: msg.listener };
        self.entries.insert(msg.task_id, entry);
    }
}

/// Run → manager: the temporary file exists; here is a handle to read it.
#[derive(Message)]
#[rtype(result = "()")]
struct TempFileOpened {
    task_id: TaskId,
    run_id: u64,
    reader: Arc<File>,
}

impl Handler<TempFileOpened> for CdnManager {
    type Result = ();
    fn handle(&mut self, msg: TempFileOpened, _ctx: &mut Context<Self>) {
        if let Some(Entry::Running { reader, .. }) = self.running(&msg.task_id, msg.run_id) {
            *reader = Some(msg.reader);
        }
    }
}

/// Writer → manager: a piece is on disk. Forwarded to the scheduler after the byte count
/// is updated, so a piece is servable before anyone is told to fetch it.
#[derive(Message, Debug)]
#[rtype(result = "()")]
struct PieceOnDisk {
    task_id: TaskId,
    run_id: u64,
    piece_size: u64,
    piece_num: u64,
    digest: crate::piece::PieceDigest,
    written: u64,
}

impl Handler<PieceOnDisk> for CdnManager {
    type Result = ();
    fn handle(&mut self, msg: PieceOnDisk, _ctx: &mut Context<Self>) {
        if let Some(Entry::Running { written, .. }) = self.running(&msg.task_id, msg.run_id) {
            *written = msg.written;
            self.pieces.do_send(CdnPieces {
                task_id: msg.task_id,
                run_id: msg.run_id,
                piece_size: msg.piece_size,
                first: msg.piece_num,
                digests: vec![msg.digest],
            });
        }
    }
}

/// What happens to a dropped task's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheFiles {
    /// The cached copy stays on disk (a task collected from memory is revalidated later).
    Keep,
    /// Everything of the task goes.
    Remove,
}

/// Stops a task's run and, with [`CacheFiles::Remove`], deletes its cached files.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct DropTask {
    pub task_id: TaskId,
    pub files: CacheFiles,
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
            Some(Entry::Cached { .. } | Entry::Partial { .. }) if msg.files == CacheFiles::Remove => {
                self.entries.remove(&msg.task_id);
            }
            _ => {}
        }
        if msg.files == CacheFiles::Remove {
            self.store.remove_all(&msg.task_id);
        }
        self.update_usage();
    }
}
