//! `PieceScheduler`: who holds which piece of which task, and who fetches what next.
//!
//! It owns, per task, the pieces the CDN has written (with their md5s), every client's
//! progress (held and running pieces, failed sources), the holders of each piece, and
//! the upload load of each uploader address. `/peer/task` is one message here, answered
//! from memory without I/O. State is per client (CID), not per peer (§16 P6): several
//! dfget runs on one host are separate sources with their own uploader address.

mod maintenance;
pub mod policy;
mod seeds;

pub use maintenance::{Sweep, SweepResult};
pub use seeds::{Heartbeat, HeartbeatInfo, NetworkInfo, SeedNode};

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use indexmap::IndexSet;
use rand::Rng;
use serde::Deserialize;

use crate::events::{CdnPieces, TaskStatusChanged};
use crate::ids::{super_cid, PeerId, TaskId};
use crate::metrics::Metrics;
use crate::piece::PieceRange;
use crate::task_manager::CdnStatus;
use policy::{CandidatePiece, CandidateSource, HandOutPolicy, RarestFirst};

/// Eligible peers looked at per piece; the least loaded of them serves it.
const SOURCES_CONSIDERED: usize = 16;

/// `[scheduler]` settings (§11 names).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Most uploads handed to one uploader address at once (`peerUpLimit`).
    pub peer_up_limit: u32,
    /// Most pieces one client fetches at once (`peerDownLimit`).
    pub peer_down_limit: u32,
    /// Most pieces the supernode itself serves at once for one task.
    pub cdn_up_limit: u32,
    /// Client errors above which a client is served by the supernode only (`failureCountLimit`).
    pub failure_count_limit: u32,
    /// Errors as a source at which a client stops being a source (`eliminationLimit`).
    pub elimination_limit: u32,
    /// Most clients (downloads) tracked at once; registrations beyond are refused.
    pub max_clients: usize,
    /// Most seed peers (`asSeed` registrations) accepted per taskURL.
    pub max_seeds_per_url: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            peer_up_limit: 5,
            peer_down_limit: 4,
            cdn_up_limit: 4,
            failure_count_limit: 5,
            elimination_limit: 5,
            max_clients: 100_000,
            max_seeds_per_url: 3,
        }
    }
}

/// Where a client fetches a piece from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Cdn,
    Peer(String),
}

struct Running {
    source: Source,
    since: Instant,
}

/// Where one dfget run is, for the `dfgettasks` gauge (Go's dfget task statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DfgetState {
    Waiting,
    Running,
    Success,
    Failed,
}

impl DfgetState {
    fn as_str(self) -> &'static str {
        match self {
            DfgetState::Waiting => "WAITING",
            DfgetState::Running => "RUNNING",
            DfgetState::Success => "SUCCESS",
            DfgetState::Failed => "FAILED",
        }
    }

    /// The state a poll's reply puts the run in; `None` leaves it as it was.
    fn after(reply: &PollReply) -> Option<DfgetState> {
        match reply {
            PollReply::Finish { .. } | PollReply::Ended => Some(DfgetState::Success),
            PollReply::CdnFailed(_) | PollReply::SourceError(_) => Some(DfgetState::Failed),
            PollReply::Continue(_) | PollReply::Wait(_) | PollReply::Limited => Some(DfgetState::Running),
            PollReply::NotFound(_) | PollReply::Invalid(_) => None,
        }
    }
}

/// One dfget run downloading one task.
struct Client {
    peer_id: PeerId,
    ip: Ipv4Addr,
    port: u16,
    path: String,
    /// The address the client used to reach us: `peerIp` of CDN pieces (§3.2).
    super_node_ip: String,
    /// May serve others (false for port 0 / `pattern: cdn`, §7.10).
    serves: bool,
    have: Vec<bool>,
    have_count: u64,
    running: HashMap<u64, Running>,
    /// Sources that failed this client once; never used for it again.
    bad_sources: HashSet<String>,
    failures: u32,
    source_errors: u32,
    /// When its uploader went away (`/peer/service/down`, or it finished as a CDN-pattern client).
    down_since: Option<Instant>,
    /// Registered with `asSeed` and accepted as a seed of its taskURL (§16 P17).
    seed: bool,
    last_seen: Instant,
    call_system: String,
    state: DfgetState,
}

impl Client {
    fn is_down(&self) -> bool {
        self.down_since.is_some()
    }

    fn mark_down(&mut self) {
        self.down_since.get_or_insert_with(Instant::now);
    }

    fn holds(&self, n: u64) -> bool {
        self.have.get(n as usize).copied().unwrap_or(false)
    }

    fn mark_have(&mut self, n: u64) -> bool {
        let i = n as usize;
        if self.have.len() <= i {
            self.have.resize(i + 1, false);
        }
        if self.have[i] {
            return false;
        }
        self.have[i] = true;
        self.have_count += 1;
        true
    }
}

struct TaskState {
    run_id: u64,
    task_url: String,
    status: CdnStatus,
    paused: bool,
    reason: String,
    piece_size: u64,
    piece_total: u64,
    file_length: u64,
    real_md5: String,
    /// `md5:len` of each piece the CDN has on disk.
    cdn_md5: Vec<Option<String>>,
    holders: Vec<IndexSet<String>>,
    clients: HashMap<String, Client>,
    cdn_load: u32,
    last_access: Instant,
}

impl TaskState {
    fn new(run_id: u64) -> Self {
        TaskState {
            run_id,
            task_url: String::new(),
            status: CdnStatus::Waiting,
            paused: false,
            reason: String::new(),
            piece_size: 0,
            piece_total: 0,
            file_length: 0,
            real_md5: String::new(),
            cdn_md5: Vec::new(),
            holders: Vec::new(),
            clients: HashMap::new(),
            cdn_load: 0,
            last_access: Instant::now(),
        }
    }

    /// The piece number of `range`, if it is one of this task's pieces exactly as handed out
    /// (a whole slot, the last one too): ranges come from the network, and a piece number
    /// sizes per-client bitmaps.
    fn piece_of(&self, range: PieceRange) -> Result<u64, SchedError> {
        if self.piece_size == 0 || !range.start.is_multiple_of(self.piece_size) || range.len() != self.piece_size {
            return Err(SchedError::Invalid(format!("pieceRange {range} is not a piece of this task")));
        }
        let n = range.start / self.piece_size;
        let known = self.cdn_md5.len().max(self.piece_total as usize) as u64;
        if n >= known {
            return Err(SchedError::Invalid(format!("pieceRange {range} is past the end of the task")));
        }
        Ok(n)
    }
}

pub struct PieceScheduler {
    config: SchedulerConfig,
    tasks: HashMap<TaskId, TaskState>,
    /// Uploads running per uploader address (IP, port).
    uploads: HashMap<(Ipv4Addr, u16), u32>,
    policy: Box<dyn HandOutPolicy>,
    super_peer: PeerId,
    advertise_ip: Ipv4Addr,
    download_port: u16,
    metrics: Arc<Metrics>,
    client_count: usize,
    /// Download reports already counted, oldest first (bounded).
    reported: HashSet<(String, String)>,
    reported_order: std::collections::VecDeque<(String, String)>,
}

impl PieceScheduler {
    pub fn new(
        config: SchedulerConfig,
        super_peer: PeerId,
        advertise_ip: Ipv4Addr,
        download_port: u16,
        metrics: Arc<Metrics>,
    ) -> Self {
        PieceScheduler {
            config,
            tasks: HashMap::new(),
            uploads: HashMap::new(),
            policy: Box::new(RarestFirst),
            super_peer,
            advertise_ip,
            download_port,
            metrics,
            client_count: 0,
            reported: HashSet::new(),
            reported_order: std::collections::VecDeque::new(),
        }
    }

    fn is_super(&self, task_id: &TaskId, cid: &str) -> bool {
        cid == super_cid(&self.advertise_ip.to_string(), task_id)
    }

    /// Drops a running piece of `cid` and gives back the load it held.
    fn release(&mut self, task_id: &TaskId, cid: &str, n: u64) -> Option<Source> {
        let task = self.tasks.get_mut(task_id)?;
        let running = task.clients.get_mut(cid)?.running.remove(&n)?;
        match &running.source {
            Source::Cdn => task.cdn_load = task.cdn_load.saturating_sub(1),
            Source::Peer(src) => {
                if let Some(s) = task.clients.get(src) {
                    if let Some(load) = self.uploads.get_mut(&(s.ip, s.port)) {
                        *load = load.saturating_sub(1);
                    }
                }
            }
        }
        Some(running.source)
    }

    fn release_all(&mut self, task_id: &TaskId, cid: &str) {
        let pieces: Vec<u64> = self
            .tasks
            .get(task_id)
            .and_then(|t| t.clients.get(cid))
            .map(|c| c.running.keys().copied().collect())
            .unwrap_or_default();
        for n in pieces {
            self.release(task_id, cid, n);
        }
    }

    fn set_state(&mut self, task_id: &TaskId, cid: &str, state: DfgetState) {
        let Some(c) = self.tasks.get_mut(task_id).and_then(|t| t.clients.get_mut(cid)) else { return };
        if c.state != state {
            self.metrics.dfgettasks.with_label_values(&[&c.call_system, c.state.as_str()]).dec();
            self.metrics.dfgettasks.with_label_values(&[&c.call_system, state.as_str()]).inc();
            c.state = state;
        }
    }

    fn remove_client(&mut self, task_id: &TaskId, cid: &str) {
        self.release_all(task_id, cid);
        if let Some(task) = self.tasks.get_mut(task_id) {
            if let Some(c) = task.clients.remove(cid) {
                self.client_count -= 1;
                self.metrics.dfgettasks.with_label_values(&[&c.call_system, c.state.as_str()]).dec();
            }
            for h in &mut task.holders {
                h.swap_remove(cid);
            }
        }
        self.metrics.clients.set(self.client_count as i64);
    }

    fn remove_task(&mut self, task_id: &TaskId) {
        let cids: Vec<String> =
            self.tasks.get(task_id).map(|t| t.clients.keys().cloned().collect()).unwrap_or_default();
        for cid in cids {
            self.remove_client(task_id, &cid);
        }
        self.tasks.remove(task_id);
    }

    /// A piece outcome reported by `cid` (§7.6); a range that is not a piece of the task is
    /// ignored (the v1 API refuses it before this).
    fn apply_result(&mut self, task_id: &TaskId, cid: &str, range: PieceRange, dst: &str, result: PieceResult) {
        let Some(Ok(n)) = self.tasks.get(task_id).map(|t| t.piece_of(range)) else {
            tracing::debug!(%task_id, cid, %range, "ignoring a report for a range that is not a piece of the task");
            return;
        };
        let released = self.release(task_id, cid, n);
        let Some(task) = self.tasks.get_mut(task_id) else { return };
        match result {
            PieceResult::Success | PieceResult::SemiSuccess => {
                if let Some(c) = task.clients.get_mut(cid) {
                    c.mark_have(n);
                    c.failures = 0;
                }
            }
            PieceResult::Failed => {
                let from_peer = match released {
                    Some(Source::Peer(p)) => Some(p),
                    Some(Source::Cdn) => None,
                    None if !dst.is_empty() && task.clients.contains_key(dst) => Some(dst.to_string()),
                    None => None,
                };
                if let Some(src) = from_peer {
                    if let Some(c) = task.clients.get_mut(cid) {
                        c.bad_sources.insert(src.clone());
                        c.failures += 1;
                    }
                    if let Some(s) = task.clients.get_mut(&src) {
                        s.source_errors += 1;
                    }
                }
            }
            PieceResult::Invalid => {}
        }
    }

    fn schedule(&mut self, task_id: &TaskId, cid: &str, max: usize) -> PollReply {
        let up_limit = self.config.peer_up_limit;
        let cdn_limit = self.config.cdn_up_limit;
        let failure_limit = self.config.failure_count_limit;
        let elimination = self.config.elimination_limit;
        let Some(task) = self.tasks.get_mut(task_id) else {
            return PollReply::NotFound(format!("task {task_id} not found (deleted or collected)"));
        };
        let now = Instant::now();
        task.last_access = now;
        let Some(client) = task.clients.get_mut(cid) else {
            return PollReply::NotFound(format!("client {cid} is not registered for task {task_id}"));
        };
        client.last_seen = now;
        match task.status {
            CdnStatus::Failed => return PollReply::CdnFailed(format!("task {task_id}: CDN failed: {}", task.reason)),
            CdnStatus::SourceError => {
                return PollReply::SourceError(format!("task {task_id}: source error: {}", task.reason))
            }
            _ => {}
        }
        if task.paused {
            return PollReply::Wait(format!("task {task_id} is paused"));
        }
        if task.status == CdnStatus::Success && task.piece_total > 0 && client.have_count >= task.piece_total {
            if !client.serves {
                client.mark_down();
            }
            return PollReply::Finish { file_length: task.file_length, md5: task.real_md5.clone() };
        }
        if client.running.len() >= max {
            return PollReply::Limited;
        }
        let mut candidates: Vec<CandidatePiece> = task
            .cdn_md5
            .iter()
            .enumerate()
            .filter(|(n, md5)| md5.is_some() && !client.holds(*n as u64) && !client.running.contains_key(&(*n as u64)))
            .map(|(n, _)| CandidatePiece { num: n as u64, holders: task.holders.get(n).map_or(0, IndexSet::len) })
            .collect();
        if candidates.is_empty() {
            return PollReply::Wait(format!("task {task_id}: no piece available yet, peer should wait"));
        }
        let running: Vec<u64> = client.running.keys().copied().collect();
        self.policy.order(&mut candidates, &running);

        let client = &task.clients[cid];
        let cdn_only = client.failures > failure_limit;
        let mut slots = max - client.running.len();
        let mut picks: Vec<(u64, Source)> = Vec::new();
        let mut cdn_load = task.cdn_load;
        let mut extra_load: HashMap<(Ipv4Addr, u16), u32> = HashMap::new();
        for cand in candidates {
            if slots == 0 {
                break;
            }
            let mut source = None;
            if !cdn_only {
                // A popular piece may have thousands of holders: look at a bounded number of
                // usable ones, starting at a random place so the work spreads over all of them.
                let holders = task.holders.get(cand.num as usize);
                let count = holders.map_or(0, IndexSet::len);
                let start = if count > 0 { rand::thread_rng().gen_range(0..count) } else { 0 };
                let eligible: Vec<(&String, &Client, u32)> = (0..count)
                    .filter_map(|i| holders.and_then(|h| h.get_index((start + i) % count)))
                    .filter(|h| h.as_str() != cid && !client.bad_sources.contains(*h))
                    .filter_map(|h| task.clients.get(h).map(|c| (h, c)))
                    .filter(|(_, c)| c.serves && !c.is_down() && c.source_errors < elimination)
                    .map(|(h, c)| {
                        let key = (c.ip, c.port);
                        let load =
                            self.uploads.get(&key).copied().unwrap_or(0) + extra_load.get(&key).copied().unwrap_or(0);
                        (h, c, load)
                    })
                    .filter(|(_, _, load)| *load < up_limit)
                    .take(SOURCES_CONSIDERED)
                    .collect();
                let loads: Vec<CandidateSource> = eligible
                    .iter()
                    .enumerate()
                    .map(|(i, (_, _, load))| CandidateSource { index: i, load: *load })
                    .collect();
                if let Some(i) = self.policy.pick_peer(&loads) {
                    let (h, c, _) = eligible[i];
                    *extra_load.entry((c.ip, c.port)).or_default() += 1;
                    source = Some(Source::Peer(h.clone()));
                }
            }
            if source.is_none() && cdn_load < cdn_limit {
                cdn_load += 1;
                source = Some(Source::Cdn);
            }
            if let Some(s) = source {
                picks.push((cand.num, s));
                slots -= 1;
            }
        }
        if picks.is_empty() {
            return PollReply::Wait(format!("task {task_id}: every source is busy, peer should wait"));
        }
        task.cdn_load = cdn_load;
        for (addr, n) in extra_load {
            *self.uploads.entry(addr).or_default() += n;
        }
        let super_cid = super_cid(&self.advertise_ip.to_string(), task_id);
        let mut out = Vec::with_capacity(picks.len());
        let client_super_ip = {
            let c = &task.clients[cid];
            if c.super_node_ip.is_empty() {
                self.advertise_ip.to_string()
            } else {
                c.super_node_ip.clone()
            }
        };
        for (n, source) in picks {
            let range = PieceRange { start: n * task.piece_size, end: n * task.piece_size + task.piece_size - 1 };
            let piece_md5 = task.cdn_md5[n as usize].clone().unwrap_or_default();
            let a = match &source {
                Source::Cdn => {
                    self.metrics.pieces_served.with_label_values(&["supernode"]).inc();
                    Assignment {
                        range,
                        piece_num: n,
                        piece_size: task.piece_size,
                        piece_md5,
                        cid: super_cid.clone(),
                        peer_id: self.super_peer.clone(),
                        peer_ip: client_super_ip.clone(),
                        peer_port: self.download_port,
                        path: task_id.download_path(),
                    }
                }
                Source::Peer(src) => {
                    self.metrics.pieces_served.with_label_values(&["peer"]).inc();
                    let s = &task.clients[src];
                    Assignment {
                        range,
                        piece_num: n,
                        piece_size: task.piece_size,
                        piece_md5,
                        cid: src.clone(),
                        peer_id: s.peer_id.clone(),
                        peer_ip: s.ip.to_string(),
                        peer_port: s.port,
                        path: s.path.clone(),
                    }
                }
            };
            out.push(a);
            if let Some(c) = task.clients.get_mut(cid) {
                c.running.insert(n, Running { source, since: now });
            }
        }
        PollReply::Continue(out)
    }

    /// Gives back pieces handed out so long ago that the client cannot still be fetching them.
    fn expire_running(&mut self) {
        let now = Instant::now();
        let mut stale = Vec::new();
        for (tid, t) in &self.tasks {
            // dfget's own piece timeout is pieceSize / 64 KiB/s + 10 s (§1.8).
            let limit = Duration::from_secs(t.piece_size / (64 * 1024) + 30);
            for (cid, c) in &t.clients {
                for (n, r) in &c.running {
                    if now.duration_since(r.since) > limit {
                        stale.push((tid.clone(), cid.clone(), *n));
                    }
                }
            }
        }
        for (tid, cid, n) in stale {
            tracing::debug!(task = %tid, %cid, piece = n, "running piece expired");
            self.release(&tid, &cid, n);
        }
    }
}

impl Actor for PieceScheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_secs(5), |act, _| act.expire_running());
    }
}

impl Handler<TaskStatusChanged> for PieceScheduler {
    type Result = ();

    fn handle(&mut self, msg: TaskStatusChanged, _ctx: &mut Context<Self>) {
        let Some(status) = msg.status else {
            self.remove_task(&msg.task_id);
            return;
        };
        let task = self.tasks.entry(msg.task_id).or_insert_with(|| TaskState::new(msg.run_id));
        if msg.run_id > task.run_id {
            // A new CDN run: the previous run's pieces are gone with its file.
            task.run_id = msg.run_id;
            task.cdn_md5.clear();
            task.cdn_load = 0;
        }
        task.status = status;
        task.task_url = msg.task_url;
        task.paused = msg.paused;
        task.reason = msg.reason;
        if msg.piece_size > 0 {
            task.piece_size = msg.piece_size;
        }
        task.piece_total = msg.piece_total;
        task.file_length = msg.file_length;
        task.real_md5 = msg.real_md5;
    }
}

impl Handler<CdnPieces> for PieceScheduler {
    type Result = ();

    fn handle(&mut self, msg: CdnPieces, _ctx: &mut Context<Self>) {
        let task = self.tasks.entry(msg.task_id).or_insert_with(|| TaskState::new(msg.run_id));
        if msg.run_id < task.run_id {
            return;
        }
        if msg.run_id > task.run_id {
            task.run_id = msg.run_id;
            task.cdn_md5.clear();
        }
        task.piece_size = msg.piece_size;
        let end = (msg.first as usize) + msg.md5s.len();
        if task.cdn_md5.len() < end {
            task.cdn_md5.resize(end, None);
        }
        if task.holders.len() < end {
            task.holders.resize_with(end, IndexSet::new);
        }
        for (i, md5) in msg.md5s.into_iter().enumerate() {
            task.cdn_md5[msg.first as usize + i] = Some(md5);
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchedError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("too many clients: the limit is {0}")]
    TooMany(usize),
}

/// A client starts (or restarts) downloading a task (§3.1 steps 4–5).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<bool, SchedError>")]
pub struct RegisterClient {
    pub task_id: TaskId,
    pub cid: String,
    pub peer_id: PeerId,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub path: String,
    pub super_node_ip: String,
    /// Whether it may serve other clients (false for port 0 or `pattern: cdn`).
    pub serves: bool,
    /// Offers its copy as a seed of the task's URL (§16 P17).
    pub as_seed: bool,
    /// dfget's `--callsystem` (metrics label).
    pub call_system: String,
}

impl Handler<RegisterClient> for PieceScheduler {
    /// Whether the client was accepted as a seed.
    type Result = Result<bool, SchedError>;

    fn handle(&mut self, msg: RegisterClient, _ctx: &mut Context<Self>) -> Self::Result {
        let known = self.tasks.get(&msg.task_id).is_some_and(|t| t.clients.contains_key(&msg.cid));
        if known {
            self.remove_client(&msg.task_id, &msg.cid);
        } else if self.client_count >= self.config.max_clients {
            return Err(SchedError::TooMany(self.config.max_clients));
        }
        let seed = msg.as_seed && msg.serves && self.seed_count(&msg.task_id) < self.config.max_seeds_per_url;
        let task = self.tasks.entry(msg.task_id).or_insert_with(|| TaskState::new(0));
        task.last_access = Instant::now();
        task.clients.insert(
            msg.cid,
            Client {
                peer_id: msg.peer_id,
                ip: msg.ip,
                port: msg.port,
                path: msg.path,
                super_node_ip: msg.super_node_ip,
                serves: msg.serves,
                have: Vec::new(),
                have_count: 0,
                running: HashMap::new(),
                bad_sources: HashSet::new(),
                failures: 0,
                source_errors: 0,
                down_since: None,
                seed,
                last_seen: Instant::now(),
                call_system: msg.call_system.clone(),
                state: DfgetState::Waiting,
            },
        );
        self.metrics.dfgettasks.with_label_values(&[&msg.call_system, DfgetState::Waiting.as_str()]).inc();
        self.client_count += 1;
        self.metrics.clients.set(self.client_count as i64);
        Ok(seed)
    }
}

/// dfget's task status in a poll (`status` 700/701/702).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientStatus {
    Started,
    Running,
    Finished,
}

/// A piece outcome (`result` 500–503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceResult {
    Failed,
    Success,
    Invalid,
    SemiSuccess,
}

/// One piece handed to a client.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub range: PieceRange,
    pub piece_num: u64,
    pub piece_size: u64,
    pub piece_md5: String,
    pub cid: String,
    pub peer_id: PeerId,
    pub peer_ip: String,
    pub peer_port: u16,
    pub path: String,
}

/// What a poll gets (§3.2, §16 P9).
#[derive(Debug, Clone, PartialEq)]
pub enum PollReply {
    /// 600 with data.
    Finish { file_length: u64, md5: String },
    /// 600 without data (status 702).
    Ended,
    /// 601.
    Continue(Vec<Assignment>),
    /// 602.
    Wait(String),
    /// 603: the client runs its maximum number of pieces.
    Limited,
    /// 604.
    CdnFailed(String),
    /// 610.
    SourceError(String),
    /// 502.
    NotFound(String),
    /// 501.
    Invalid(String),
}

/// A scheduling poll, optionally carrying the outcome of one piece.
#[derive(Message, Debug, Clone)]
#[rtype(result = "PollReply")]
pub struct Poll {
    pub task_id: TaskId,
    pub cid: String,
    pub status: ClientStatus,
    /// (range, source CID, result) for status Running.
    pub report: Option<(PieceRange, String, PieceResult)>,
    /// Most pieces to have running after this poll; `None` = `peer_down_limit`.
    pub max: Option<usize>,
}

impl Handler<Poll> for PieceScheduler {
    type Result = MessageResult<Poll>;

    fn handle(&mut self, msg: Poll, _ctx: &mut Context<Self>) -> Self::Result {
        let started = Instant::now();
        let known = self.tasks.get(&msg.task_id).is_some_and(|t| t.clients.contains_key(&msg.cid));
        if !known {
            return MessageResult(PollReply::NotFound(format!(
                "client {} is not registered for task {}",
                msg.cid, msg.task_id
            )));
        }
        match msg.status {
            ClientStatus::Finished => {
                self.set_state(&msg.task_id, &msg.cid, DfgetState::Success);
                return MessageResult(PollReply::Ended);
            }
            ClientStatus::Running => match msg.report {
                Some((_, _, PieceResult::Invalid)) | None => {
                    return MessageResult(PollReply::Invalid(
                        "status RUNNING needs a range and a result of FAILED, SUCCESS or SEMISUC".into(),
                    ));
                }
                Some((range, dst, result)) => self.apply_result(&msg.task_id, &msg.cid, range, &dst, result),
            },
            ClientStatus::Started => {}
        }
        let max = msg.max.unwrap_or(self.config.peer_down_limit as usize).max(1);
        let reply = self.schedule(&msg.task_id, &msg.cid, max);
        let ip = self
            .tasks
            .get(&msg.task_id)
            .and_then(|t| t.clients.get(&msg.cid))
            .map(|c| c.ip.to_string())
            .unwrap_or_default();
        self.metrics.schedule_duration_ms.with_label_values(&[&ip]).observe(started.elapsed().as_secs_f64() * 1000.0);
        if let Some(state) = DfgetState::after(&reply) {
            self.set_state(&msg.task_id, &msg.cid, state);
        }
        MessageResult(reply)
    }
}

/// `/peer/piece/suc` (and the v1 piece update with SUCCESS): `cid` now holds the piece.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), SchedError>")]
pub struct PieceSuccess {
    pub task_id: TaskId,
    pub cid: String,
    pub dst_cid: String,
    pub range: PieceRange,
}

impl Handler<PieceSuccess> for PieceScheduler {
    type Result = Result<(), SchedError>;

    fn handle(&mut self, msg: PieceSuccess, _ctx: &mut Context<Self>) -> Self::Result {
        let task = self
            .tasks
            .get(&msg.task_id)
            .ok_or_else(|| SchedError::NotFound(format!("task {} not found", msg.task_id)))?;
        if !task.clients.contains_key(&msg.cid) {
            return Err(SchedError::NotFound(format!("client {} is not registered for task {}", msg.cid, msg.task_id)));
        }
        let n = task.piece_of(msg.range)?;
        if self.is_super(&msg.task_id, &msg.dst_cid) {
            self.metrics.pieces_downloaded_bytes.inc_by(msg.range.len());
        }
        self.apply_result(&msg.task_id, &msg.cid, msg.range, &msg.dst_cid, PieceResult::Success);
        if let Some(task) = self.tasks.get_mut(&msg.task_id) {
            let now = Instant::now();
            for cid in [&msg.cid, &msg.dst_cid] {
                if let Some(c) = task.clients.get_mut(cid) {
                    c.last_seen = now;
                }
            }
            let serves = task.clients.get(&msg.cid).is_some_and(|c| c.serves);
            if serves {
                if task.holders.len() <= n as usize {
                    task.holders.resize_with(n as usize + 1, IndexSet::new);
                }
                task.holders[n as usize].insert(msg.cid);
            }
        }
        Ok(())
    }
}

/// `/peer/service/down`: the client's uploader is gone; never hand it out again.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), SchedError>")]
pub struct ServiceDown {
    pub task_id: TaskId,
    pub cid: String,
}

impl Handler<ServiceDown> for PieceScheduler {
    type Result = Result<(), SchedError>;

    fn handle(&mut self, msg: ServiceDown, _ctx: &mut Context<Self>) -> Self::Result {
        let task = self
            .tasks
            .get_mut(&msg.task_id)
            .ok_or_else(|| SchedError::NotFound(format!("task {} not found", msg.task_id)))?;
        let client = task.clients.get_mut(&msg.cid).ok_or_else(|| {
            SchedError::NotFound(format!("client {} is not registered for task {}", msg.cid, msg.task_id))
        })?;
        client.mark_down();
        for h in &mut task.holders {
            h.swap_remove(&msg.cid);
        }
        Ok(())
    }
}

/// What went wrong with a piece a client fetched (§3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceErrorKind {
    FileNotExist,
    Md5NotMatch,
}

/// What the caller must check after a piece error about the supernode's own copy.
#[derive(Debug, Clone, PartialEq)]
pub enum PieceErrorFollowUp {
    Nothing,
    /// Re-hash piece `range` (clamped) of the CDN file and compare with `expected_md5`.
    VerifyCdnPiece {
        offset: u64,
        len: u64,
        expected_md5: String,
    },
    /// Check that the CDN file still exists.
    CheckCdnFile,
}

/// A piece error report (§16 P10). `dst` may be a CID or, from the v1 API, a peer ID.
#[derive(Message, Debug, Clone)]
#[rtype(result = "PieceErrorFollowUp")]
pub struct ReportPieceError {
    pub task_id: TaskId,
    pub reporter: String,
    pub dst: String,
    pub kind: PieceErrorKind,
    pub range: Option<PieceRange>,
}

impl Handler<ReportPieceError> for PieceScheduler {
    type Result = MessageResult<ReportPieceError>;

    fn handle(&mut self, msg: ReportPieceError, _ctx: &mut Context<Self>) -> Self::Result {
        let is_super = self.is_super(&msg.task_id, &msg.dst) || msg.dst == self.super_peer.as_str();
        let Some(task) = self.tasks.get_mut(&msg.task_id) else { return MessageResult(PieceErrorFollowUp::Nothing) };
        if is_super {
            return MessageResult(match (msg.kind, msg.range) {
                (PieceErrorKind::FileNotExist, _) => PieceErrorFollowUp::CheckCdnFile,
                (PieceErrorKind::Md5NotMatch, Some(r)) => {
                    let piece = task.piece_of(r).ok().and_then(|n| Some((n, task.cdn_md5.get(n as usize)?.clone()?)));
                    match piece {
                        Some((n, md5)) => PieceErrorFollowUp::VerifyCdnPiece {
                            offset: n * task.piece_size,
                            len: task.piece_size,
                            expected_md5: md5.split(':').next().unwrap_or("").to_string(),
                        },
                        None => PieceErrorFollowUp::Nothing,
                    }
                }
                (PieceErrorKind::Md5NotMatch, None) => PieceErrorFollowUp::Nothing,
            });
        }
        let dst_cid = if task.clients.contains_key(&msg.dst) {
            Some(msg.dst.clone())
        } else {
            task.clients.iter().find(|(_, c)| c.peer_id.as_str() == msg.dst).map(|(k, _)| k.clone())
        };
        let Some(dst_cid) = dst_cid else { return MessageResult(PieceErrorFollowUp::Nothing) };
        match (msg.kind, msg.range) {
            (PieceErrorKind::Md5NotMatch, Some(r)) => {
                if let Some(h) = task.piece_of(r).ok().and_then(|n| task.holders.get_mut(n as usize)) {
                    h.swap_remove(&dst_cid);
                }
            }
            _ => {
                for h in &mut task.holders {
                    h.swap_remove(&dst_cid);
                }
            }
        }
        if let Some(reporter) = task.clients.get_mut(&msg.reporter) {
            reporter.bad_sources.insert(dst_cid.clone());
        }
        if let Some(src) = task.clients.get_mut(&dst_cid) {
            src.source_errors += 1;
        }
        MessageResult(PieceErrorFollowUp::Nothing)
    }
}

/// `PUT /api/v1/tasks/{id}` with `peerID`: that peer's clients of the task hold every piece (it seeds it).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<usize, SchedError>")]
pub struct PeerCompletedTask {
    pub task_id: TaskId,
    pub peer_id: PeerId,
}

impl Handler<PeerCompletedTask> for PieceScheduler {
    type Result = Result<usize, SchedError>;

    fn handle(&mut self, msg: PeerCompletedTask, _ctx: &mut Context<Self>) -> Self::Result {
        let task = self
            .tasks
            .get_mut(&msg.task_id)
            .ok_or_else(|| SchedError::NotFound(format!("task {} not found", msg.task_id)))?;
        let pieces = task.cdn_md5.len().max(task.piece_total as usize);
        if task.holders.len() < pieces {
            task.holders.resize_with(pieces, IndexSet::new);
        }
        let mut count = 0;
        for (cid, c) in task.clients.iter_mut().filter(|(_, c)| c.peer_id == msg.peer_id) {
            for n in 0..pieces {
                c.mark_have(n as u64);
                if c.serves {
                    task.holders[n].insert(cid.clone());
                }
            }
            count += 1;
        }
        if count == 0 {
            return Err(SchedError::NotFound(format!("peer {} has no download of task {}", msg.peer_id, msg.task_id)));
        }
        Ok(count)
    }
}

/// Finds the CID of `peer_id`'s download of a task (v1 API addresses clients by peer).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Option<String>")]
pub struct ResolvePeer {
    pub task_id: TaskId,
    pub peer_id: PeerId,
}

impl Handler<ResolvePeer> for PieceScheduler {
    type Result = Option<String>;

    fn handle(&mut self, msg: ResolvePeer, _ctx: &mut Context<Self>) -> Option<String> {
        if msg.peer_id == self.super_peer {
            return Some(super_cid(&self.advertise_ip.to_string(), &msg.task_id));
        }
        let task = self.tasks.get(&msg.task_id)?;
        let mut matches: Vec<&String> =
            task.clients.iter().filter(|(_, c)| c.peer_id == msg.peer_id).map(|(k, _)| k).collect();
        matches.sort();
        matches.first().map(|s| (*s).clone())
    }
}

/// Per-task progress for the ops page: (clients, pieces held by the CDN, mean client progress 0..1).
#[derive(Message, Debug, Clone)]
#[rtype(result = "HashMap<TaskId, TaskProgress>")]
pub struct Progress;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskProgress {
    pub clients: usize,
    pub cdn_pieces: usize,
    pub finished_clients: usize,
}

impl Handler<Progress> for PieceScheduler {
    type Result = MessageResult<Progress>;

    fn handle(&mut self, _msg: Progress, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.tasks
                .iter()
                .map(|(id, t)| {
                    let finished =
                        t.clients.values().filter(|c| t.piece_total > 0 && c.have_count >= t.piece_total).count();
                    (
                        id.clone(),
                        TaskProgress {
                            clients: t.clients.len(),
                            cdn_pieces: t.cdn_md5.iter().flatten().count(),
                            finished_clients: finished,
                        },
                    )
                })
                .collect(),
        )
    }
}

/// Applies a piece outcome without scheduling (v1 `PUT .../pieces/{range}`).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), SchedError>")]
pub struct ApplyPieceResult {
    pub task_id: TaskId,
    pub cid: String,
    pub dst_cid: String,
    pub range: PieceRange,
    pub result: PieceResult,
}

impl Handler<ApplyPieceResult> for PieceScheduler {
    type Result = Result<(), SchedError>;

    fn handle(&mut self, msg: ApplyPieceResult, ctx: &mut Context<Self>) -> Self::Result {
        match msg.result {
            PieceResult::Invalid => Err(SchedError::Invalid("pieceStatus INVALID cannot be applied".into())),
            PieceResult::Success => self.handle(
                PieceSuccess { task_id: msg.task_id, cid: msg.cid, dst_cid: msg.dst_cid, range: msg.range },
                ctx,
            ),
            result => {
                let task =
                    self.tasks.get(&msg.task_id).filter(|t| t.clients.contains_key(&msg.cid)).ok_or_else(|| {
                        SchedError::NotFound(format!("client {} is not registered for task {}", msg.cid, msg.task_id))
                    })?;
                task.piece_of(msg.range)?;
                self.apply_result(&msg.task_id, &msg.cid, msg.range, &msg.dst_cid, result);
                Ok(())
            }
        }
    }
}

/// `/task/metrics`: whether this (task, client) report is the first one (dfget may resend, §16 P1).
#[derive(Message, Debug, Clone)]
#[rtype(result = "bool")]
pub struct FirstReport {
    pub task_id: String,
    pub cid: String,
}

impl Handler<FirstReport> for PieceScheduler {
    type Result = bool;

    fn handle(&mut self, msg: FirstReport, _ctx: &mut Context<Self>) -> bool {
        const REMEMBERED: usize = 100_000;
        let key = (msg.task_id, msg.cid);
        if self.reported.contains(&key) {
            return false;
        }
        if self.reported_order.len() >= REMEMBERED {
            if let Some(old) = self.reported_order.pop_front() {
                self.reported.remove(&old);
            }
        }
        self.reported.insert(key.clone());
        self.reported_order.push_back(key);
        true
    }
}
