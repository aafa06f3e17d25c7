//! `PreheatManager`: warms the CDN cache ahead of demand, driven by Harbor or operators.
//!
//! A file preheat registers the task exactly as dfget would (same task ID as the preheat
//! ID) and follows it to SUCCESS or FAILED. An image preheat reads the manifest and creates
//! one child file preheat per layer blob, whose sha256 digest is checked on the cached
//! bytes; a layer already cached or already being preheated counts toward the image. The
//! image finishes when its last layer does: nothing polls. Records are persisted under the
//! home dir and kept for `retention` after they finish (Harbor polls them for up to 30 min);
//! a layer's record is kept as long as an image record that names it; records that could not be
//! written (a full disk) are written again at the next collection.
//!
//! Harbor 2.12+ speaks the Dragonfly 2 manager's job API instead: a numbered job wraps one
//! image preheat (`job_record`, `job_messages`), is persisted with the records and kept as
//! long as they are.

mod config;
pub mod image;
mod job_messages;
mod job_record;
mod jobs;
mod record;

pub use config::PreheatConfig;
pub use job_messages::{CreateJob, GetJob, DEFAULT_SCOPE};
pub use job_record::{JobArgs, JobId, JobOutcome, JobState, LayerOutcome, PreheatJob, SeedHost};
pub use jobs::PreheatError;
pub use record::{Preheat, PreheatRequest, PreheatStatus, PreheatType, RegistryAuth};

use std::collections::{HashMap, HashSet};
use std::path::Path;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use crate::cdn::{CdnManager, SourcePolicy};
use crate::clock::{run_every, SharedClock};
use crate::ids::PreheatId;
use crate::task_manager::TaskManager;
use job_record::JobBook;
use jobs::{JobEnv, Layers};
use record::RecordFile;

/// A preheat's running work and its deadline.
struct Job {
    work: Option<SpawnHandle>,
    deadline: SpawnHandle,
}

pub struct PreheatManager {
    records: HashMap<PreheatId, Preheat>,
    jobs: HashMap<PreheatId, Job>,
    env: JobEnv,
    config: PreheatConfig,
    clock: SharedClock,
    file: RecordFile,
    /// The Dragonfly 2 jobs, kept in the records' file.
    book: JobBook,
    /// Named in the jobs' layer outcomes as the holder of the layers.
    seed: SeedHost,
    /// The last write of the records failed (a full disk): written again at the next chance.
    unsaved: bool,
}

impl PreheatManager {
    /// Loads `<home>/preheats.json` if present.
    pub fn new(
        home: &Path,
        tasks: Addr<TaskManager>,
        cdn: Addr<CdnManager>,
        config: PreheatConfig,
        policy: SourcePolicy,
        clock: SharedClock,
    ) -> Self {
        let file = RecordFile::new(home);
        let env =
            JobEnv { tasks, cdn, policy, registry_timeout: config.registry_timeout, platform: config.platform.clone() };
        let state = file.load(DateTime::<Utc>::from(clock.wall()));
        let (records, book) = (state.preheats, state.jobs);
        PreheatManager {
            records,
            jobs: HashMap::new(),
            env,
            config,
            clock,
            file,
            book,
            seed: SeedHost::default(),
            unsaved: false,
        }
    }

    /// Names `seed` as the holder of preheated layers in the jobs' outcomes.
    pub fn with_seed_host(mut self, seed: SeedHost) -> Self {
        self.seed = seed;
        self
    }

    fn now(&self) -> DateTime<Utc> {
        DateTime::<Utc>::from(self.clock.wall())
    }

    fn persist(&mut self) {
        let saved = self.file.save(&self.records, &self.book);
        if saved && self.unsaved {
            tracing::info!("preheat state persisted again");
        }
        self.unsaved = !saved;
    }

    /// Creates or reruns a record and starts its work.
    fn create(
        &mut self,
        req: PreheatRequest,
        parent: Option<PreheatId>,
        digest: Option<String>,
        ctx: &mut Context<Self>,
    ) -> CreateOutcome {
        let id = req.id();
        match self.records.get(&id).map(|r| r.status) {
            Some(PreheatStatus::Waiting | PreheatStatus::Running) => return CreateOutcome::InProgress(id),
            Some(PreheatStatus::Success) => return CreateOutcome::AlreadyDone(id),
            Some(PreheatStatus::Failed) | None => {}
        }
        let record = Preheat {
            id: id.clone(),
            kind: req.kind,
            url: req.url,
            filter: req.filter,
            identifier: req.identifier,
            headers: req.headers,
            parent,
            children: Vec::new(),
            status: PreheatStatus::Waiting,
            start_time: self.now(),
            finish_time: None,
            error_msg: String::new(),
            digest,
            registry_auth: req.registry_auth,
        };
        self.records.insert(id.clone(), record);
        self.start(&id, ctx);
        self.persist();
        CreateOutcome::Created(id)
    }

    fn start(&mut self, id: &PreheatId, ctx: &mut Context<Self>) {
        let Some(record) = self.records.get_mut(id) else { return };
        tracing::info!(preheat = %id, kind = ?record.kind, url = %record.url, "preheat started");
        let env = self.env.clone();
        let job_id = id.clone();
        let work = match record.kind {
            PreheatType::File => {
                record.status = PreheatStatus::Running;
                let fut = jobs::run_file(record.clone(), env);
                ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| act.finish(&job_id, result, ctx)))
            }
            PreheatType::Image => {
                let fut = jobs::read_image(record.clone(), env);
                ctx.spawn(fut.into_actor(self).map(move |layers, act, ctx| match layers {
                    Ok(layers) => act.add_layers(&job_id, layers, ctx),
                    Err(e) => act.finish(&job_id, Err(e), ctx),
                }))
            }
        };
        let timed_out = id.clone();
        let deadline = actix::fut::wrap_future::<_, Self>(self.clock.sleep(self.config.timeout))
            .map(move |(), act, ctx| act.finish(&timed_out, Err(PreheatError::Timeout), ctx));
        let deadline = ctx.spawn(deadline);
        if let Some(old) = self.jobs.insert(id.clone(), Job { work: Some(work), deadline }) {
            Self::cancel(old, ctx);
        }
    }

    fn cancel(job: Job, ctx: &mut Context<Self>) {
        if let Some(work) = job.work {
            ctx.cancel_future(work);
        }
        ctx.cancel_future(job.deadline);
    }

    /// An image's manifest was read: one child per layer (reusing those that exist).
    fn add_layers(&mut self, id: &PreheatId, layers: Layers, ctx: &mut Context<Self>) {
        if let Some(job) = self.jobs.get_mut(id) {
            job.work = None;
        }
        let mut children = Vec::with_capacity(layers.blobs.len());
        let registry_auth = self.records.get(id).map(|r| r.registry_auth).unwrap_or_default();
        for (url, digest) in layers.blobs {
            let req = PreheatRequest {
                kind: PreheatType::File,
                url,
                filter: String::new(),
                identifier: String::new(),
                headers: layers.headers.clone(),
                registry_auth,
            };
            children.push(self.create(req, Some(id.clone()), Some(digest), ctx).into_id());
        }
        if let Some(r) = self.records.get_mut(id).filter(|r| !r.status.finished()) {
            r.status = PreheatStatus::Running;
            r.children = children;
        }
        self.persist();
        self.settle_image(id, ctx);
    }

    /// Finishes an image once its layers are all done, or one failed or went away.
    fn settle_image(&mut self, id: &PreheatId, ctx: &mut Context<Self>) {
        let Some(image) = self.records.get(id).filter(|r| r.status == PreheatStatus::Running) else { return };
        let mut outcome = Some(Ok(()));
        for child in &image.children {
            match self.records.get(child) {
                None => {
                    outcome = Some(Err(PreheatError::LayerDeleted(child.to_string())));
                    break;
                }
                Some(c) if c.status == PreheatStatus::Failed => {
                    let reason = c.error_msg.clone();
                    outcome = Some(Err(PreheatError::LayerFailed { url: c.url.clone(), reason }));
                    break;
                }
                Some(c) if c.status != PreheatStatus::Success => outcome = None,
                Some(_) => {}
            }
        }
        if let Some(result) = outcome {
            self.finish(&id.clone(), result, ctx);
        }
    }

    fn finish(&mut self, id: &PreheatId, result: Result<(), PreheatError>, ctx: &mut Context<Self>) {
        if let Some(job) = self.jobs.remove(id) {
            Self::cancel(job, ctx);
        }
        let now = self.now();
        let Some(r) = self.records.get_mut(id).filter(|r| !r.status.finished()) else { return };
        r.finish_time = Some(now);
        match result {
            Ok(()) => {
                r.status = PreheatStatus::Success;
                tracing::info!(preheat = %id, url = %r.url, "preheat succeeded");
            }
            Err(e) => {
                r.status = PreheatStatus::Failed;
                tracing::warn!(preheat = %id, url = %r.url, error = %e, "preheat failed");
                r.error_msg = e.to_string();
            }
        }
        self.settle_jobs_of(id);
        self.persist();
        self.settle_images_of(id, ctx);
    }

    /// Every running image that has `child` among its layers (several may share a layer).
    fn settle_images_of(&mut self, child: &PreheatId, ctx: &mut Context<Self>) {
        let images: Vec<PreheatId> = self
            .records
            .values()
            .filter(|r| r.status == PreheatStatus::Running && r.children.contains(child))
            .map(|r| r.id.clone())
            .collect();
        for image in images {
            self.settle_image(&image, ctx);
        }
    }

    /// Removes records finished longer than `retention` ago, except layers of an image record
    /// that stays (a layer finishes before its image), and jobs that ended that long ago.
    fn collect_expired(&mut self) {
        let Ok(retention) = chrono::Duration::from_std(self.config.retention) else { return };
        let now = self.now();
        let expired = |r: &Preheat| r.status.finished() && r.finish_time.is_some_and(|t| now - t > retention);
        let named: HashSet<PreheatId> =
            self.records.values().filter(|r| !expired(r)).flat_map(|r| r.children.iter().cloned()).collect();
        let before = self.records.len();
        self.records.retain(|id, r| !expired(r) || named.contains(id));
        let records = before - self.records.len();
        let jobs = self.book.collect(now, retention);
        if records > 0 || jobs > 0 {
            tracing::info!(records, jobs, "expired preheat records and jobs collected");
        }
        if records > 0 || jobs > 0 || self.unsaved {
            self.persist();
        }
    }
}

impl Actor for PreheatManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Work that was under way when the server stopped is started again.
        let unfinished: Vec<PreheatId> =
            self.records.values().filter(|r| !r.status.finished()).map(|r| r.id.clone()).collect();
        for id in unfinished {
            self.start(&id, ctx);
        }
        self.resume_jobs(ctx);
        let (clock, every) = (self.clock.clone(), self.config.collect_interval);
        run_every(ctx, &clock, every, every, |act: &mut Self, _| act.collect_expired());
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// 200: a new run started.
    Created(PreheatId),
    /// 200: the same preheat is waiting or running.
    InProgress(PreheatId),
    /// 208: it already succeeded.
    AlreadyDone(PreheatId),
}

impl CreateOutcome {
    pub fn into_id(self) -> PreheatId {
        match self {
            CreateOutcome::Created(id) | CreateOutcome::InProgress(id) | CreateOutcome::AlreadyDone(id) => id,
        }
    }
}

#[derive(Message, Debug)]
#[rtype(result = "CreateOutcome")]
pub struct CreatePreheat(pub PreheatRequest);

impl Handler<CreatePreheat> for PreheatManager {
    type Result = MessageResult<CreatePreheat>;

    fn handle(&mut self, msg: CreatePreheat, ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.create(msg.0, None, None, ctx))
    }
}

#[derive(Message, Debug)]
#[rtype(result = "Option<Preheat>")]
pub struct GetPreheat(pub PreheatId);

impl Handler<GetPreheat> for PreheatManager {
    type Result = Option<Preheat>;

    fn handle(&mut self, msg: GetPreheat, _ctx: &mut Context<Self>) -> Option<Preheat> {
        self.records.get(&msg.0).cloned()
    }
}

/// Every record, oldest first.
#[derive(Message, Debug)]
#[rtype(result = "Vec<Preheat>")]
pub struct ListPreheats;

impl Handler<ListPreheats> for PreheatManager {
    type Result = MessageResult<ListPreheats>;

    fn handle(&mut self, _msg: ListPreheats, _ctx: &mut Context<Self>) -> Self::Result {
        let mut all: Vec<Preheat> = self.records.values().cloned().collect();
        all.sort_by(|a, b| a.start_time.cmp(&b.start_time).then_with(|| a.id.cmp(&b.id)));
        MessageResult(all)
    }
}

/// Removes a record and its children's records; running work is stopped. Images waiting
/// for a removed layer fail.
#[derive(Message, Debug)]
#[rtype(result = "bool")]
pub struct DeletePreheat(pub PreheatId);

impl Handler<DeletePreheat> for PreheatManager {
    type Result = bool;

    fn handle(&mut self, msg: DeletePreheat, ctx: &mut Context<Self>) -> bool {
        let Some(record) = self.records.remove(&msg.0) else { return false };
        for id in std::iter::once(&record.id).chain(record.children.iter()) {
            if let Some(job) = self.jobs.remove(id) {
                Self::cancel(job, ctx);
            }
            self.records.remove(id);
        }
        self.settle_jobs_of(&record.id);
        self.persist();
        for id in std::iter::once(&record.id).chain(record.children.iter()) {
            self.settle_images_of(id, ctx);
        }
        true
    }
}
