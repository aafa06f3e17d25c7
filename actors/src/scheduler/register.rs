//! A client starting (or restarting) a download of a task.

use std::net::Ipv4Addr;

use actix::prelude::*;

use super::state::{Client, ClientRole, DfgetState, TaskState};
use super::{PieceScheduler, SchedError};
use crate::ids::{ClientId, PeerId, TaskId};

/// What a registering client offers others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Nothing: it has no uploader.
    Nothing,
    /// The pieces it holds.
    Pieces,
    /// Its whole copy, as a seed of the task's URL, while the URL has fewer seeds than allowed.
    Seed,
}

/// A client starts (or restarts) downloading a task. Replies with the role it got.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<ClientRole, SchedError>")]
pub struct RegisterClient {
    pub task_id: TaskId,
    pub cid: ClientId,
    pub peer_id: PeerId,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub path: String,
    /// The supernode address the client used.
    pub super_node_ip: String,
    pub offer: Offer,
    /// dfget's `--callsystem` (a metrics label).
    pub call_system: String,
}

impl Handler<RegisterClient> for PieceScheduler {
    type Result = Result<ClientRole, SchedError>;

    fn handle(&mut self, msg: RegisterClient, _ctx: &mut Context<Self>) -> Self::Result {
        let known = self.tasks.get(&msg.task_id).is_some_and(|t| t.clients.contains_key(&msg.cid));
        if known {
            self.remove_client(&msg.task_id, &msg.cid);
        } else if self.client_count >= self.config.max_clients {
            return Err(SchedError::TooManyClients(self.config.max_clients));
        }
        let role = match msg.offer {
            Offer::Nothing => ClientRole::DownloadOnly,
            Offer::Pieces => ClientRole::Peer,
            Offer::Seed if self.seed_count(&msg.task_id) < self.config.max_seeds_per_url => ClientRole::Seed,
            Offer::Seed => ClientRole::Peer,
        };
        let now = self.clock.now();
        let task = self.tasks.entry(msg.task_id.clone()).or_insert_with(|| TaskState::new(0, now));
        task.last_access = now;
        let client = Client {
            super_node_ip: msg.super_node_ip,
            call_system: msg.call_system.clone(),
            ..Client::new(msg.peer_id, (msg.ip, msg.port), msg.path, role, now)
        };
        task.clients.insert(msg.cid.clone(), client);
        self.changed(&msg.task_id, &msg.cid);
        self.metrics.dfgettasks.with_label_values(&[&msg.call_system, DfgetState::Waiting.as_str()]).inc();
        self.client_count += 1;
        self.metrics.clients.set(self.client_count as i64);
        Ok(role)
    }
}
