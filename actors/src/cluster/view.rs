//! Who is in the cluster, and who owns a task.

use std::net::Ipv4Addr;
use std::sync::Arc;

use actix::Message;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{ClientId, PeerId, TaskId};

/// A member's identity: its control address, stable across restarts of the same node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(String);

impl NodeId {
    pub fn new(advertise_ip: Ipv4Addr, port: u16) -> NodeId {
        NodeId(format!("{advertise_ip}:{port}"))
    }

    pub fn from_raw(s: &str) -> NodeId {
        NodeId(s.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a node tells the others about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    pub advertise_ip: Ipv4Addr,
    /// Control API port (registrations are forwarded there).
    pub port: u16,
    /// Download port: where its CDN pieces are served.
    pub download_port: u16,
    /// Its super peer ID, named in the pieces it serves.
    pub super_peer: PeerId,
    /// ms epoch of the process start: a restarted node is told apart from its last run.
    pub started_ms: i64,
}

impl Member {
    /// The client ID the node serves a task's CDN pieces as.
    pub fn super_cid(&self, task: &TaskId) -> ClientId {
        ClientId::for_supernode(&self.advertise_ip.to_string(), task)
    }

    /// `http://<ip>:<port>` of its control API.
    pub fn control_url(&self) -> String {
        format!("http://{}:{}", self.advertise_ip, self.port)
    }
}

/// The live set as this node sees it.
#[derive(Clone, Debug, Message)]
#[rtype(result = "()")]
pub struct ClusterView {
    pub me: Arc<Member>,
    /// Live members, this node included, sorted by ID. This node alone when Redis is
    /// unavailable or cluster mode is off.
    pub members: Arc<Vec<Member>>,
    /// Redis answered the last renewal.
    pub healthy: bool,
}

impl ClusterView {
    /// A node on its own.
    pub fn alone(me: Member) -> ClusterView {
        ClusterView { members: Arc::new(vec![me.clone()]), me: Arc::new(me), healthy: true }
    }

    /// The owner of `task`: `None` when it is this node.
    pub fn remote_owner(&self, task: &TaskId) -> Option<&Member> {
        owner_of(&self.members, task).filter(|m| m.id != self.me.id)
    }

    pub fn is_live(&self, node: &NodeId) -> bool {
        self.members.iter().any(|m| m.id == *node)
    }

    pub fn member(&self, node: &NodeId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == *node)
    }
}

/// Rendezvous (highest-random-weight) hashing: the member whose hash with the task ID is
/// highest. Every node computes the same answer from the same live set, and a member going
/// away moves only the tasks it owned.
pub fn owner_of<'a>(members: &'a [Member], task: &TaskId) -> Option<&'a Member> {
    members.iter().max_by_key(|m| (weight(&m.id, task), m.id.clone()))
}

fn weight(node: &NodeId, task: &TaskId) -> u64 {
    let mut h = Sha256::new();
    h.update(node.as_str().as_bytes());
    h.update([0]);
    h.update(task.as_str().as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
pub(crate) fn member(n: u8) -> Member {
    let ip = Ipv4Addr::new(127, 0, 0, n);
    Member {
        id: NodeId::new(ip, 8002),
        advertise_ip: ip,
        port: 8002,
        download_port: 8001,
        super_peer: PeerId::for_supernode("sn", &ip.to_string()),
        started_ms: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_spreads_tasks_and_moves_only_the_lost_members() {
        let all: Vec<Member> = (1..=3).map(member).collect();
        let tasks: Vec<TaskId> = (0..300).map(|i| TaskId::compute(&format!("http://h/{i}"), "", "", None)).collect();
        let owners: Vec<NodeId> = tasks.iter().map(|t| owner_of(&all, t).unwrap().id.clone()).collect();
        for m in &all {
            let n = owners.iter().filter(|o| **o == m.id).count();
            assert!((60..=140).contains(&n), "{} owns {n} of 300", m.id);
        }
        let survivors: Vec<Member> = all[..2].to_vec();
        for (t, before) in tasks.iter().zip(&owners) {
            let after = &owner_of(&survivors, t).unwrap().id;
            if *before != all[2].id {
                assert_eq!(after, before, "a task of a surviving member stays with it");
            }
        }
        let shuffled: Vec<Member> = vec![all[2].clone(), all[0].clone(), all[1].clone()];
        assert!(tasks.iter().all(|t| owner_of(&shuffled, t) == owner_of(&all, t)), "order does not matter");
    }

    #[test]
    fn a_node_alone_owns_everything() {
        let view = ClusterView::alone(member(1));
        assert!(view.remote_owner(&TaskId::compute("http://h/x", "", "", None)).is_none());
    }
}
