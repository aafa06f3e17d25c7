//! `PreheatManager`: warms the CDN cache ahead of demand, driven by Harbor or ops (§8, §16 P2–P4, P15).
//!
//! A file preheat registers the task exactly as dfget would (same taskID, §2.6) and
//! follows it to SUCCESS or FAILED. An image preheat reads the manifest and creates one
//! child file preheat per layer blob, whose sha256 digest is checked on the cached bytes.
//! Records are persisted under the home dir and kept for `retention` after they finish.

pub mod image;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cdn::source::{http_client, SourceTimeouts};
use crate::cdn::{CdnManager, SourcePolicy, SourceSha256};
use crate::ids::{filter_task_url, preheat_id};
use crate::task_manager::{CdnStatus, DeleteTask, GetTask, RegisterTask, TaskManager, TaskSpec};

/// `[preheat]` settings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PreheatConfig {
    /// How long finished preheats stay visible.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// A preheat not finished after this long fails with `timeout`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Platform chosen from a manifest list / OCI index.
    pub platform: String,
    /// Timeout of each registry request (manifests, tokens).
    #[serde(with = "humantime_serde")]
    pub registry_timeout: Duration,
    /// How often a running preheat checks its task.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How often finished records older than `retention` are collected.
    #[serde(with = "humantime_serde")]
    pub collect_interval: Duration,
}

impl Default for PreheatConfig {
    fn default() -> Self {
        PreheatConfig {
            retention: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(30 * 60),
            platform: "linux/amd64".into(),
            registry_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            collect_interval: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PreheatType {
    Image,
    File,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PreheatStatus {
    Waiting,
    Running,
    Success,
    Failed,
}

impl PreheatStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PreheatStatus::Waiting => "WAITING",
            PreheatStatus::Running => "RUNNING",
            PreheatStatus::Success => "SUCCESS",
            PreheatStatus::Failed => "FAILED",
        }
    }

    fn finished(self) -> bool {
        matches!(self, PreheatStatus::Success | PreheatStatus::Failed)
    }
}

/// One preheat, as persisted and as shown.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Preheat {
    pub id: String,
    pub kind: PreheatType,
    pub url: String,
    pub filter: String,
    pub identifier: String,
    pub headers: BTreeMap<String, String>,
    pub parent: Option<String>,
    pub children: Vec<String>,
    pub status: PreheatStatus,
    pub start_time: DateTime<Utc>,
    pub finish_time: Option<DateTime<Utc>>,
    pub error_msg: String,
    /// Layer digest to verify (children of image preheats).
    pub digest: Option<String>,
}

/// What to preheat.
#[derive(Debug, Clone)]
pub struct PreheatRequest {
    pub kind: PreheatType,
    pub url: String,
    pub filter: String,
    pub identifier: String,
    pub headers: BTreeMap<String, String>,
}

impl PreheatRequest {
    pub fn id(&self) -> String {
        preheat_id(&self.url, &self.filter, &self.identifier, self.headers.get("Range").map(String::as_str)).to_string()
    }
}

pub struct PreheatManager {
    records: HashMap<String, Preheat>,
    jobs: HashMap<String, SpawnHandle>,
    tasks: Addr<TaskManager>,
    cdn: Addr<CdnManager>,
    config: PreheatConfig,
    policy: SourcePolicy,
    state_file: PathBuf,
}

#[derive(Serialize, Deserialize, Default)]
struct StateFile {
    preheats: Vec<Preheat>,
}

impl PreheatManager {
    /// Loads `<home>/preheats.json` if present; an unreadable file is logged and set aside.
    pub fn new(
        home: &std::path::Path,
        tasks: Addr<TaskManager>,
        cdn: Addr<CdnManager>,
        config: PreheatConfig,
        policy: SourcePolicy,
    ) -> Self {
        let state_file = home.join("preheats.json");
        let records = match std::fs::read(&state_file) {
            Ok(bytes) => match serde_json::from_slice::<StateFile>(&bytes) {
                Ok(s) => s.preheats.into_iter().map(|p| (p.id.clone(), p)).collect(),
                Err(e) => {
                    tracing::error!(file = %state_file.display(), error = %e, "preheat state unreadable; starting empty");
                    let _ = std::fs::rename(&state_file, state_file.with_extension("json.bad"));
                    HashMap::new()
                }
            },
            Err(_) => HashMap::new(),
        };
        PreheatManager { records, jobs: HashMap::new(), tasks, cdn, config, policy, state_file }
    }

    fn persist(&self) {
        let mut preheats: Vec<Preheat> = self.records.values().cloned().collect();
        preheats.sort_by(|a, b| a.start_time.cmp(&b.start_time).then_with(|| a.id.cmp(&b.id)));
        let result = serde_json::to_vec(&StateFile { preheats })
            .map_err(std::io::Error::other)
            .and_then(|body| crate::cdn::store::write_atomic(&self.state_file, &body));
        if let Err(e) = result {
            tracing::error!(file = %self.state_file.display(), error = %e, "cannot persist preheat state");
        }
    }

    /// Creates or reruns a record and starts its job; replies how it went.
    fn create(
        &mut self,
        req: PreheatRequest,
        parent: Option<String>,
        digest: Option<String>,
        ctx: &mut Context<Self>,
    ) -> CreateOutcome {
        let id = req.id();
        if let Some(existing) = self.records.get(&id) {
            match existing.status {
                PreheatStatus::Waiting | PreheatStatus::Running => return CreateOutcome::InProgress(id),
                PreheatStatus::Success => return CreateOutcome::AlreadyDone(id),
                PreheatStatus::Failed => {}
            }
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
            start_time: Utc::now(),
            finish_time: None,
            error_msg: String::new(),
            digest,
        };
        self.records.insert(id.clone(), record);
        self.start_job(&id, ctx);
        self.persist();
        CreateOutcome::Created(id)
    }

    fn start_job(&mut self, id: &str, ctx: &mut Context<Self>) {
        let Some(record) = self.records.get(id).cloned() else { return };
        tracing::info!(preheat = %id, kind = ?record.kind, url = %record.url, "preheat started");
        let env = JobEnv {
            tasks: self.tasks.clone(),
            cdn: self.cdn.clone(),
            me: ctx.address(),
            config: self.config.clone(),
            policy: self.policy.clone(),
        };
        let timeout = self.config.timeout;
        let job_id = id.to_string();
        let fut = async move {
            let run = async {
                match record.kind {
                    PreheatType::File => run_file(&record, &env).await,
                    PreheatType::Image => run_image(&record, &env).await,
                }
            };
            tokio::time::timeout(timeout, run).await.unwrap_or_else(|_| Err("timeout".into()))
        }
        .into_actor(self)
        .map(move |result, act, _ctx| act.finish(&job_id, result));
        let handle = ctx.spawn(fut);
        self.jobs.insert(id.to_string(), handle);
    }

    fn finish(&mut self, id: &str, result: Result<(), String>) {
        self.jobs.remove(id);
        let Some(r) = self.records.get_mut(id) else { return };
        r.finish_time = Some(Utc::now());
        match result {
            Ok(()) => {
                r.status = PreheatStatus::Success;
                tracing::info!(preheat = %id, url = %r.url, "preheat succeeded");
            }
            Err(e) => {
                r.status = PreheatStatus::Failed;
                tracing::warn!(preheat = %id, url = %r.url, error = %e, "preheat failed");
                r.error_msg = e;
            }
        }
        self.persist();
    }

    fn collect_expired(&mut self) {
        let Ok(retention) = chrono::Duration::from_std(self.config.retention) else { return };
        let now = Utc::now();
        let before = self.records.len();
        self.records.retain(|_, r| !(r.status.finished() && r.finish_time.is_some_and(|t| now - t > retention)));
        if self.records.len() != before {
            tracing::info!(collected = before - self.records.len(), "expired preheat records collected");
            self.persist();
        }
    }
}

impl Actor for PreheatManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Work that was under way when the server stopped is started again.
        let unfinished: Vec<String> =
            self.records.values().filter(|r| !r.status.finished()).map(|r| r.id.clone()).collect();
        for id in unfinished {
            self.start_job(&id, ctx);
        }
        ctx.run_interval(self.config.collect_interval, |act, _| act.collect_expired());
    }
}

struct JobEnv {
    tasks: Addr<TaskManager>,
    cdn: Addr<CdnManager>,
    me: Addr<PreheatManager>,
    config: PreheatConfig,
    policy: SourcePolicy,
}

/// Registers the task like dfget would and waits for the CDN; checks a layer digest if given.
async fn run_file(record: &Preheat, env: &JobEnv) -> Result<(), String> {
    env.me.do_send(SetStatus { id: record.id.clone(), status: PreheatStatus::Running, children: None });
    let keys: Vec<&str> = if record.filter.is_empty() { Vec::new() } else { record.filter.split('&').collect() };
    let spec = TaskSpec {
        raw_url: record.url.clone(),
        task_url: filter_task_url(&record.url, &keys),
        headers: record.headers.clone(),
        identifier: record.identifier.clone(),
        ..TaskSpec::default()
    };
    let task = env.tasks.send(RegisterTask(spec)).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    loop {
        let current = env.tasks.send(GetTask(task.id.clone())).await.map_err(|e| e.to_string())?;
        match current {
            None => return Err("task was deleted while preheating".into()),
            Some(t) if t.cdn_status == CdnStatus::Success => break,
            Some(t) if matches!(t.cdn_status, CdnStatus::Failed | CdnStatus::SourceError) => return Err(t.failure),
            Some(_) => tokio::time::sleep(env.config.poll_interval).await,
        }
    }
    if let Some(expected) = record.digest.as_deref().and_then(|d| d.strip_prefix("sha256:")) {
        let actual = env.cdn.send(SourceSha256(task.id.clone())).await.map_err(|e| e.to_string())??;
        if actual != expected {
            env.tasks.do_send(DeleteTask { task_id: task.id, delete_files: true });
            return Err(format!("layer digest mismatch: expected sha256:{expected}, got sha256:{actual}"));
        }
    }
    Ok(())
}

/// Reads the manifest, creates one child per layer and waits for all of them.
async fn run_image(record: &Preheat, env: &JobEnv) -> Result<(), String> {
    let timeouts = SourceTimeouts { connect: Duration::from_secs(3), head: env.config.registry_timeout };
    env.policy.check_url(&record.url)?;
    let client = http_client(false, &[], &timeouts, &env.policy).map_err(|e| e.to_string())?;
    let (layers, headers) =
        image::layer_urls(&client, &record.url, record.headers.clone(), &env.config.platform).await?;
    let mut children = Vec::with_capacity(layers.len());
    for (url, digest) in layers {
        let req = PreheatRequest {
            kind: PreheatType::File,
            url,
            filter: String::new(),
            identifier: String::new(),
            headers: headers.clone(),
        };
        let child = env
            .me
            .send(CreateChild { parent: record.id.clone(), request: req, digest })
            .await
            .map_err(|e| e.to_string())?;
        children.push(child);
    }
    env.me.do_send(SetStatus {
        id: record.id.clone(),
        status: PreheatStatus::Running,
        children: Some(children.clone()),
    });
    loop {
        let states = env.me.send(ChildStates(children.clone())).await.map_err(|e| e.to_string())?;
        if let Some(failed) = states.iter().find(|c| c.status == Some(PreheatStatus::Failed)) {
            return Err(format!("{} {}", failed.url, failed.error_msg));
        }
        if let Some(gone) = states.iter().find(|c| c.status.is_none()) {
            return Err(format!("{} was deleted", gone.url));
        }
        if states.iter().all(|c| c.status == Some(PreheatStatus::Success)) {
            return Ok(());
        }
        tokio::time::sleep(env.config.poll_interval).await;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// 200: a new run started.
    Created(String),
    /// 200: the same preheat is waiting or running.
    InProgress(String),
    /// 208: it already succeeded.
    AlreadyDone(String),
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

/// A layer of an image preheat; an existing child (done or running) is reused (§16 P4).
#[derive(Message, Debug)]
#[rtype(result = "String")]
struct CreateChild {
    parent: String,
    request: PreheatRequest,
    digest: String,
}

impl Handler<CreateChild> for PreheatManager {
    type Result = String;

    fn handle(&mut self, msg: CreateChild, ctx: &mut Context<Self>) -> String {
        match self.create(msg.request, Some(msg.parent), Some(msg.digest), ctx) {
            CreateOutcome::Created(id) | CreateOutcome::InProgress(id) | CreateOutcome::AlreadyDone(id) => id,
        }
    }
}

#[derive(Message, Debug)]
#[rtype(result = "()")]
struct SetStatus {
    id: String,
    status: PreheatStatus,
    children: Option<Vec<String>>,
}

impl Handler<SetStatus> for PreheatManager {
    type Result = ();

    fn handle(&mut self, msg: SetStatus, _ctx: &mut Context<Self>) {
        if let Some(r) = self.records.get_mut(&msg.id) {
            if !r.status.finished() {
                r.status = msg.status;
            }
            if let Some(children) = msg.children {
                r.children = children;
            }
            self.persist();
        }
    }
}

struct ChildState {
    url: String,
    status: Option<PreheatStatus>,
    error_msg: String,
}

#[derive(Message)]
#[rtype(result = "Vec<ChildState>")]
struct ChildStates(Vec<String>);

impl Handler<ChildStates> for PreheatManager {
    type Result = MessageResult<ChildStates>;

    fn handle(&mut self, msg: ChildStates, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(
            msg.0
                .iter()
                .map(|id| match self.records.get(id) {
                    Some(r) => {
                        ChildState { url: r.url.clone(), status: Some(r.status), error_msg: r.error_msg.clone() }
                    }
                    None => ChildState { url: id.clone(), status: None, error_msg: String::new() },
                })
                .collect(),
        )
    }
}

#[derive(Message, Debug)]
#[rtype(result = "Option<Preheat>")]
pub struct GetPreheat(pub String);

impl Handler<GetPreheat> for PreheatManager {
    type Result = Option<Preheat>;

    fn handle(&mut self, msg: GetPreheat, _ctx: &mut Context<Self>) -> Option<Preheat> {
        self.records.get(&msg.0).cloned()
    }
}

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

/// Removes a record and its children's records; running work is stopped.
#[derive(Message, Debug)]
#[rtype(result = "bool")]
pub struct DeletePreheat(pub String);

impl Handler<DeletePreheat> for PreheatManager {
    type Result = bool;

    fn handle(&mut self, msg: DeletePreheat, ctx: &mut Context<Self>) -> bool {
        let Some(record) = self.records.remove(&msg.0) else { return false };
        for id in std::iter::once(&record.id).chain(record.children.iter()) {
            if let Some(h) = self.jobs.remove(id) {
                ctx.cancel_future(h);
            }
            if id != &record.id {
                self.records.remove(id);
            }
        }
        self.persist();
        true
    }
}
