//! A registration, as one workflow: the peer (the host), then the task, then the client
//! (one dfget run). dfget's `/peer/registry`, `POST /api/v1/tasks` and preheats all come
//! here. When a step fails, the earlier ones are undone: a peer this registration created
//! is retracted, and a task that only this registration asked for is dropped with its run.

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{Task, TaskHome, TaskManager};
use crate::cdn::{CacheFiles, CdnPattern};
use crate::cluster::forward::OwnerRefusal;
use crate::failure::{CdnFailure, SourceFailure};
use crate::ids::{ClientId, PeerId, TaskId};
use crate::peer_registry::{GetPeer, PeerError, PeerInfo, RegisterPeer, Registered, RetractPeer};
use crate::scheduler::{ClientRole, Offer, RegisterClient, SchedError};
use crate::spec::TaskSpec;
use crate::status::CdnStatus;

/// dfget's `pattern`: `cdn` clients fetch everything from the supernode and serve nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pattern {
    #[default]
    P2p,
    Cdn,
}

/// The client (one dfget run) of a registration.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    pub cid: ClientId,
    pub path: String,
    /// The supernode address the client used: the `peerIp` of its CDN pieces.
    pub super_node_ip: String,
    pub pattern: Pattern,
    pub as_seed: bool,
    pub call_system: String,
}

impl ClientRequest {
    /// What the client offers others: nothing without an uploader (port 0) or with the `cdn`
    /// pattern; its pieces otherwise, and its whole copy when it asks to be a seed.
    fn offer(&self, port: u16) -> Offer {
        match (port, self.pattern, self.as_seed) {
            (0, _, _) | (_, Pattern::Cdn, _) => Offer::Nothing,
            (_, Pattern::P2p, true) => Offer::Seed,
            (_, Pattern::P2p, false) => Offer::Pieces,
        }
    }
}

/// Who downloads the task, if anyone.
#[derive(Debug, Clone)]
pub enum Downloader {
    /// Nobody yet: a preheat, or a task created through the API without a client.
    Nobody,
    /// dfget's registration: the host registers (or refreshes) as a peer.
    Host { peer: RegisterPeer, client: ClientRequest },
    /// A peer registered earlier (the v1 task API names it by ID).
    Peer { peer_id: PeerId, client: ClientRequest },
}

/// Whether a registration may go to the task's owner in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A client's or operator's registration: the owner makes the CDN copy.
    ToOwner,
    /// Forwarded by another node: this node is the owner, whatever it thinks.
    Here,
}

#[derive(Message, Debug)]
#[rtype(result = "Result<Registration, RegisterError>")]
pub struct Register {
    pub spec: TaskSpec,
    pub downloader: Downloader,
    pub route: Route,
}

#[derive(Debug, Clone)]
pub struct Registration {
    pub task: Task,
    /// The client's role, when there is a client.
    pub role: Option<ClientRole>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RegisterError {
    /// The source could not be used; the kind of failure decides what the client is told.
    #[error(transparent)]
    Source(CdnFailure),
    /// The source failed moments ago: answered from memory, without asking it again.
    #[error("{0} (remembered)")]
    Remembered(SourceFailure),
    #[error("source did not answer within {}s", .0.as_secs())]
    OpenTimeout(Duration),
    #[error("task was removed while its source was being opened")]
    Removed,
    #[error("task conflict: task {0} exists for another URL or md5")]
    Conflict(TaskId),
    #[error("too many tasks: the limit is {0}")]
    TooManyTasks(usize),
    #[error("peerID: peer {0} is not registered")]
    UnknownPeer(PeerId),
    #[error(transparent)]
    Peer(PeerError),
    #[error(transparent)]
    Client(SchedError),
    /// The task's owner in the cluster refused it.
    #[error(transparent)]
    Owner(OwnerRefusal),
    #[error("service is shutting down")]
    Stopped,
}

impl RegisterError {
    /// The source's own answer behind the failure, if it got that far.
    pub fn source_failure(&self) -> Option<&SourceFailure> {
        match self {
            RegisterError::Source(f) => f.source(),
            RegisterError::Remembered(f) => Some(f),
            _ => None,
        }
    }
}

impl From<MailboxError> for RegisterError {
    fn from(_: MailboxError) -> Self {
        RegisterError::Stopped
    }
}

impl Handler<Register> for TaskManager {
    type Result = ResponseFuture<Result<Registration, RegisterError>>;

    #[tracing::instrument(name = "TaskManager::register", skip_all, fields(url = %msg.spec.raw_url))]
    fn handle(&mut self, msg: Register, ctx: &mut Context<Self>) -> Self::Result {
        let (me, next) = (ctx.address(), self.next.clone());
        Box::pin(async move {
            let peer = match &msg.downloader {
                Downloader::Nobody => None,
                Downloader::Host { peer, client } => {
                    let reg = next.peers.send(peer.clone()).await?.map_err(RegisterError::Peer)?;
                    Some((reg.info, reg.registered, client))
                }
                Downloader::Peer { peer_id, client } => {
                    let info = next
                        .peers
                        .send(GetPeer(peer_id.clone()))
                        .await?
                        .map_err(|_| RegisterError::UnknownPeer(peer_id.clone()))?;
                    Some((info, Registered::Refreshed, client))
                }
            };
            let retract = |peer: &Option<(PeerInfo, Registered, &ClientRequest)>| {
                if let Some((info, Registered::New { stamp }, _)) = peer {
                    next.peers.do_send(RetractPeer { id: info.id.clone(), stamp: *stamp });
                }
            };
            let (task, ticket) = match me.send(RegisterTask(msg.spec, msg.route)).await? {
                Ok(found) => found,
                Err(e) => {
                    retract(&peer);
                    return Err(e);
                }
            };
            let Some((info, _, client)) = &peer else { return Ok(Registration { task, role: None }) };
            let request = RegisterClient {
                task_id: task.id.clone(),
                cid: client.cid.clone(),
                peer_id: info.id.clone(),
                ip: info.ip,
                port: info.port,
                path: client.path.clone(),
                super_node_ip: client.super_node_ip.clone(),
                offer: client.offer(info.port),
                call_system: client.call_system.clone(),
            };
            match next.scheduler.send(request).await? {
                Ok(role) => Ok(Registration { task, role: Some(role) }),
                Err(e) => {
                    me.do_send(UndoTask { task_id: task.id.clone(), ticket });
                    retract(&peer);
                    Err(RegisterError::Client(e))
                }
            }
        })
    }
}

/// Which registration of a task this was, to undo it later.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket {
    pub created: bool,
    pub registration: u64,
}

/// The task step: finds or creates the task, starts a run when it needs one (or registers
/// it with its owner), and answers once the source has answered.
#[derive(Message, Debug)]
#[rtype(result = "Result<(Task, Ticket), RegisterError>")]
pub(super) struct RegisterTask(pub TaskSpec, pub Route);

impl Handler<RegisterTask> for TaskManager {
    type Result = ResponseFuture<Result<(Task, Ticket), RegisterError>>;

    fn handle(&mut self, msg: RegisterTask, ctx: &mut Context<Self>) -> Self::Result {
        let RegisterTask(spec, route) = msg;
        let id = spec.task_id();
        // With the source pattern nobody fetches the source, so there is nothing to own.
        if route == Route::ToOwner && self.settings.cdn_pattern == CdnPattern::Local {
            if let Some(forward) = self.forward_to_owner(&id, &spec, ctx) {
                return forward;
            }
        }
        let now = self.clock.now();
        if let Some((at, failure)) = self.unreachable.get(&id) {
            if now.duration_since(*at) < self.settings.fail_access_interval {
                let err = RegisterError::Remembered(failure.clone());
                return Box::pin(async move { Err(err) });
            }
            self.unreachable.remove(&id);
        }
        let created = !self.tasks.contains_key(&id);
        if created && self.tasks.len() >= self.settings.max_tasks {
            let err = RegisterError::TooManyTasks(self.settings.max_tasks);
            return Box::pin(async move { Err(err) });
        }
        let wall = chrono::DateTime::<chrono::Utc>::from(self.clock.wall());
        let metrics = self.metrics.clone();
        let task = self.tasks.entry(id.clone()).or_insert_with(|| {
            metrics.tasks.with_label_values(&[CdnStatus::Waiting.as_str()]).inc();
            Task::new(id.clone(), spec.clone(), TaskHome::Local, wall)
        });
        if !task.spec.same_resource(&spec) {
            let err = RegisterError::Conflict(id);
            return Box::pin(async move { Err(err) });
        }
        // The latest registration's headers and TLS options are used for later runs.
        task.spec = spec;
        task.registrations += 1;
        let ticket = Ticket { created, registration: task.registrations };
        self.metrics.tasks_registered.inc();
        // A copy an owner was making is made here from now on.
        let needs_run = created || task.cdn_status.is_failure() || task.home != TaskHome::Local;
        let known = task.clone();
        if needs_run {
            self.start_run(&id, ctx);
        } else if !self.waiters.contains_key(&id) {
            return Box::pin(async move { Ok((known, ticket)) });
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.entry(id).or_default().push(tx);
        let wait = self.settings.open_wait;
        Box::pin(async move {
            // A deadline on I/O (the source's answer), not bookkeeping: tokio's timer.
            match tokio::time::timeout(wait, rx).await {
                Ok(Ok(result)) => result.map(|task| (task, ticket)),
                Ok(Err(_)) => Err(RegisterError::Removed),
                Err(_) => Err(RegisterError::OpenTimeout(wait)),
            }
        })
    }
}

/// Undoes the task step of a registration whose client step failed: a task this
/// registration created, and that nobody registered since, goes with its run.
#[derive(Message, Debug)]
#[rtype(result = "()")]
struct UndoTask {
    task_id: TaskId,
    ticket: Ticket,
}

impl Handler<UndoTask> for TaskManager {
    type Result = ();

    fn handle(&mut self, msg: UndoTask, _ctx: &mut Context<Self>) {
        let alone = self.tasks.get(&msg.task_id).is_some_and(|t| t.registrations == msg.ticket.registration);
        if msg.ticket.created && alone && !self.waiters.contains_key(&msg.task_id) {
            tracing::info!(task = %msg.task_id, "registration failed after creating the task; task dropped");
            self.remove(&msg.task_id, CacheFiles::Remove);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(pattern: Pattern, as_seed: bool) -> ClientRequest {
        ClientRequest {
            cid: ClientId::new("c"),
            path: "/p".into(),
            super_node_ip: String::new(),
            pattern,
            as_seed,
            call_system: String::new(),
        }
    }

    #[test]
    fn one_rule_decides_who_serves() {
        assert_eq!(client(Pattern::P2p, false).offer(20000), Offer::Pieces);
        assert_eq!(client(Pattern::P2p, true).offer(20000), Offer::Seed);
        assert_eq!(client(Pattern::P2p, true).offer(0), Offer::Nothing);
        assert_eq!(client(Pattern::Cdn, false).offer(20000), Offer::Nothing);
    }
}
