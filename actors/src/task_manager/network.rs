//! The seed network view (`/peer/network`): the scheduler's live seeds of some URLs, joined
//! with their peers and their tasks, in one message.

use std::collections::BTreeMap;

use actix::prelude::*;

use super::{Task, TaskManager};
use crate::ids::PeerId;
use crate::peer_registry::{GetPeers, PeerInfo};
use crate::scheduler::{NetworkInfo, SeedNode};

/// The seed peers of `urls`.
#[derive(Message, Debug)]
#[rtype(result = "Vec<SeedPeer>")]
pub struct SeedNetwork {
    pub urls: Vec<String>,
}

/// One peer with the tasks it seeds.
#[derive(Debug, Clone)]
pub struct SeedPeer {
    pub peer: PeerInfo,
    /// The busiest of its uploads right now.
    pub load: u32,
    pub tasks: Vec<(Task, SeedNode)>,
}

impl Handler<SeedNetwork> for TaskManager {
    type Result = ResponseActFuture<Self, Vec<SeedPeer>>;

    fn handle(&mut self, msg: SeedNetwork, _ctx: &mut Context<Self>) -> Self::Result {
        let (scheduler, peers) = (self.next.scheduler.clone(), self.next.peers.clone());
        let lookup = async move {
            let seeds = scheduler.send(NetworkInfo { urls: msg.urls }).await.unwrap_or_default();
            let mut by_peer: BTreeMap<PeerId, Vec<SeedNode>> = BTreeMap::new();
            for s in seeds {
                by_peer.entry(s.peer_id.clone()).or_default().push(s);
            }
            let infos = peers.send(GetPeers(by_peer.keys().cloned().collect())).await.unwrap_or_default();
            (by_peer, infos)
        };
        Box::pin(lookup.into_actor(self).map(|(by_peer, mut infos), act, _ctx| {
            by_peer
                .into_iter()
                .filter_map(|(id, seeds)| {
                    let peer = infos.remove(&id)?;
                    let load = seeds.iter().map(|s| s.load).max().unwrap_or(0);
                    let tasks =
                        seeds.into_iter().filter_map(|s| Some((act.tasks.get(&s.task_id)?.clone(), s))).collect();
                    Some(SeedPeer { peer, load, tasks })
                })
                .collect()
        }))
    }
}
