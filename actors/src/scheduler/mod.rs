//! `PieceScheduler`: who holds which piece of which task, and who fetches what next.
//!
//! It owns, per task, the pieces the CDN has written (with their digests), every client's
//! progress (held and running pieces, failed sources), the holders of each piece, and the
//! upload load of each uploader address. `/peer/task` is one message here, answered from
//! memory without I/O.
//!
//! | file | what |
//! |---|---|
//! | `state.rs` | tasks and clients as the scheduler keeps them |
//! | `assign.rs` | the decision of one poll, a pure function of that state |
//! | `policy.rs` | the pluggable piece order (`[scheduler] hand_out`) |
//! | `polls.rs` | `/peer/task` |
//! | `hold.rs` | polls kept until there is something to hand out |
//! | `reports.rs` | piece outcomes, service down, piece errors |
//! | `register.rs` | a client starting a download |
//! | `feed.rs` | what the CDN and the task manager tell the scheduler |
//! | `queries.rs` | lookups for the API, the ops page and disk GC |
//! | `seeds.rs` | the seed pattern: heartbeats and the network view |
//! | `maintenance.rs` | idle clients and tasks, expired pieces |
//! | `cluster.rs` | in cluster mode: what this node publishes, and the other nodes' clients |

mod assign;
mod cluster;
mod config;
mod feed;
mod hold;
mod maintenance;
pub mod policy;
mod polls;
mod queries;
mod register;
mod reports;
mod seeds;
mod state;

pub use cluster::{LocalState, RemoteState, TakeChanges};
pub use config::{HandOut, SchedulerConfig};
pub use maintenance::{Sweep, SweepResult};
pub use polls::{Assignment, ClientStatus, Poll, PollReply, WaitReason};
pub use queries::{BusyTasks, Progress, TaskProgress};
pub use register::{Offer, RegisterClient};
pub use reports::{
    ApplyPieceResult, PeerCompletedTask, PieceErrorFollowUp, PieceErrorKind, PieceResult, PieceSuccess,
    ReportPieceError, ServiceDown, SourceRef,
};
pub use seeds::{Heartbeat, HeartbeatInfo, NetworkInfo, SeedNode};
pub use state::ClientRole;

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::clock::{run_every, SharedClock};
use crate::cluster::view::NodeId;
use crate::ids::{ClientId, PeerId, TaskId};
use crate::metrics::Metrics;
use crate::piece::PieceRange;
use cluster::ClusterBook;
use policy::HandOutPolicy;
use state::{DfgetState, Source, TaskState, UploaderAddr};

/// How often pieces handed out long ago are checked for.
const EXPIRY_PERIOD: Duration = Duration::from_secs(5);

pub struct PieceScheduler {
    config: SchedulerConfig,
    tasks: HashMap<TaskId, TaskState>,
    /// Uploads running per uploader address.
    uploads: HashMap<UploaderAddr, u32>,
    policy: Box<dyn HandOutPolicy>,
    super_peer: PeerId,
    advertise_ip: Ipv4Addr,
    download_port: u16,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    client_count: usize,
    /// In cluster mode: what changed since the last sync.
    book: Option<ClusterBook>,
    held: hold::HeldPolls,
}

impl PieceScheduler {
    pub fn new(
        config: SchedulerConfig,
        super_peer: PeerId,
        advertise_ip: Ipv4Addr,
        download_port: u16,
        metrics: Arc<Metrics>,
        clock: SharedClock,
    ) -> Self {
        PieceScheduler {
            policy: config.hand_out.policy(),
            config,
            tasks: HashMap::new(),
            uploads: HashMap::new(),
            super_peer,
            advertise_ip,
            download_port,
            metrics,
            clock,
            client_count: 0,
            book: None,
            held: hold::HeldPolls::default(),
        }
    }

    /// Cluster mode: this node publishes its clients and tasks as `node`.
    pub fn in_cluster(mut self, node: NodeId) -> Self {
        self.book = Some(ClusterBook::new(node));
        self
    }

    /// A local client changed: it is published at the next sync.
    fn changed(&mut self, task_id: &TaskId, cid: &ClientId) {
        if let Some(book) = &mut self.book {
            book.dirty.insert((task_id.clone(), cid.clone()));
        }
    }

    fn super_cid(&self, task_id: &TaskId) -> ClientId {
        ClientId::for_supernode(&self.advertise_ip.to_string(), task_id)
    }

    /// Drops a running piece of `cid` and gives back the load it held.
    fn release(&mut self, task_id: &TaskId, cid: &ClientId, n: u64) -> Option<Source> {
        let task = self.tasks.get_mut(task_id)?;
        let running = task.clients.get_mut(cid)?.running.remove(&n)?;
        match &running.source {
            Source::Cdn => task.count_cdn_copy(n, false),
            Source::Peer(src) => {
                task.count_piece_upload(n, src, false);
                // An address with nothing running is forgotten: hosts come and go for good.
                if let Some(addr) = running.upload {
                    if let Entry::Occupied(mut load) = self.uploads.entry(addr) {
                        *load.get_mut() = load.get().saturating_sub(1);
                        if *load.get() == 0 {
                            load.remove();
                        }
                    }
                    self.metrics.upload_addresses.set(self.uploads.len() as i64);
                }
            }
        }
        Some(running.source)
    }

    fn release_all(&mut self, task_id: &TaskId, cid: &ClientId) {
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

    fn set_state(&mut self, task_id: &TaskId, cid: &ClientId, state: DfgetState) {
        let Some(c) = self.tasks.get_mut(task_id).and_then(|t| t.clients.get_mut(cid)) else { return };
        if c.state != state {
            self.metrics.dfgettasks.with_label_values(&[&c.call_system, c.state.as_str()]).dec();
            self.metrics.dfgettasks.with_label_values(&[&c.call_system, state.as_str()]).inc();
            c.state = state;
        }
    }

    fn remove_client(&mut self, task_id: &TaskId, cid: &ClientId) {
        self.release_all(task_id, cid);
        if let Some(task) = self.tasks.get_mut(task_id) {
            if let Some(c) = task.clients.remove(cid) {
                if c.is_local() {
                    self.client_count -= 1;
                    self.metrics.dfgettasks.with_label_values(&[&c.call_system, c.state.as_str()]).dec();
                    if let Some(book) = &mut self.book {
                        book.gone(task_id, cid);
                    }
                }
            }
            task.forget_holder(cid);
        }
        self.metrics.clients.set(self.client_count as i64);
    }

    fn remove_task(&mut self, task_id: &TaskId) {
        self.release_held(task_id);
        let cids: Vec<ClientId> =
            self.tasks.get(task_id).map(|t| t.clients.keys().cloned().collect()).unwrap_or_default();
        for cid in cids {
            self.remove_client(task_id, &cid);
        }
        if let (Some(task), Some(book)) = (self.tasks.remove(task_id), &mut self.book) {
            book.task_removed(task_id, &task);
        }
    }

    /// The client of `task_id`, or why there is none.
    fn known(&self, task_id: &TaskId, cid: &ClientId) -> Result<&TaskState, SchedError> {
        let task = self.tasks.get(task_id).ok_or_else(|| SchedError::UnknownTask(task_id.clone()))?;
        if !task.clients.contains_key(cid) {
            return Err(SchedError::UnknownClient { task: task_id.clone(), client: cid.clone() });
        }
        Ok(task)
    }
}

impl Actor for PieceScheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let clock = self.clock.clone();
        run_every(ctx, &clock, EXPIRY_PERIOD, EXPIRY_PERIOD, |act: &mut Self, _| act.expire_running());
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchedError {
    #[error("task {0} not found")]
    UnknownTask(TaskId),
    #[error("client {client} is not registered for task {task}")]
    UnknownClient { task: TaskId, client: ClientId },
    #[error("peer {peer} has no download of task {task}")]
    NoDownloadOfPeer { task: TaskId, peer: PeerId },
    #[error("pieceRange {0} is not a piece of this task")]
    NotAPiece(PieceRange),
    #[error("pieceRange {0} is past the end of the task")]
    PastTheEnd(PieceRange),
    #[error("pieceStatus INVALID cannot be applied")]
    InvalidResult,
    #[error("too many clients: the limit is {0}")]
    TooManyClients(usize),
}
