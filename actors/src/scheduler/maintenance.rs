//! The scheduler's part of garbage collection: it alone knows when each client was last
//! heard from, so it decides which clients and tasks are idle; and it takes back pieces
//! handed out so long ago that the client cannot still be fetching them.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::state::{ClientRole, Uploader};
use super::PieceScheduler;
use crate::ids::{ClientId, PeerId, TaskId};

/// Removes idle clients and reports idle tasks and the peers still active.
#[derive(Message, Debug, Clone)]
#[rtype(result = "SweepResult")]
pub struct Sweep {
    /// A client not heard from for this long is removed (`peerExpireTime`).
    pub client_idle: Duration,
    /// A client whose uploader went down this long ago is removed (`peerGCDelay`).
    pub down_delay: Duration,
    /// A finished task without any client request for this long is reported idle (`taskExpireTime`).
    pub task_idle: Duration,
    /// A seed that stopped heart-beating for this long is removed.
    pub seed_idle: Duration,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SweepResult {
    pub removed_clients: Vec<(TaskId, ClientId)>,
    pub idle_tasks: Vec<TaskId>,
    /// Peers with at least one remaining client.
    pub active_peers: HashSet<PeerId>,
}

/// Whether a client last heard from at `last_seen` is gone at `now`.
fn gone(now: Instant, last_seen: Instant, role: ClientRole, uploader: Uploader, msg: &Sweep) -> bool {
    let idle = now.duration_since(last_seen);
    idle >= msg.client_idle
        || (role == ClientRole::Seed && idle >= msg.seed_idle)
        || matches!(uploader, Uploader::Down { since } if now.duration_since(since) >= msg.down_delay)
}

impl Handler<Sweep> for PieceScheduler {
    type Result = MessageResult<Sweep>;

    fn handle(&mut self, msg: Sweep, _ctx: &mut Context<Self>) -> Self::Result {
        let now = self.clock.now();
        let mut out = SweepResult::default();
        for (id, task) in &self.tasks {
            // Another node's clients are that node's to collect.
            for (cid, c) in task.clients.iter().filter(|(_, c)| c.is_local()) {
                if gone(now, c.last_seen, c.role, c.uploader, &msg) {
                    out.removed_clients.push((id.clone(), cid.clone()));
                }
            }
        }
        for (id, cid) in &out.removed_clients {
            self.remove_client(id, cid);
        }
        for (id, task) in &self.tasks {
            let recent = task.clients.values().any(|c| now.duration_since(c.last_seen) < msg.task_idle);
            if task.status.is_final() && !recent && now.duration_since(task.last_access) >= msg.task_idle {
                out.idle_tasks.push(id.clone());
            }
            out.active_peers.extend(task.clients.values().filter(|c| c.is_local()).map(|c| c.peer_id.clone()));
        }
        MessageResult(out)
    }
}

impl PieceScheduler {
    /// dfget gives up on a piece after `pieceSize / 64 KiB/s + 10 s`; a piece running longer
    /// than that plus a margin is given back, so its source's load is not held forever.
    pub(super) fn expire_running(&mut self) {
        let now = self.clock.now();
        let mut stale = Vec::new();
        for (tid, t) in &self.tasks {
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::events::{CdnHost, CdnPieces, TaskStatusChanged};
    use crate::metrics::Metrics;
    use crate::piece::{PieceDigest, PieceRange};
    use crate::scheduler::{
        ClientStatus, Offer, PieceResult, PieceSuccess, Poll, PollReply, RegisterClient, SchedulerConfig, SourceRef,
    };
    use crate::status::CdnStatus;

    const SWEEP: Sweep = Sweep {
        client_idle: Duration::from_secs(600),
        down_delay: Duration::from_secs(180),
        task_idle: Duration::from_secs(180),
        seed_idle: Duration::from_secs(120),
    };

    #[test]
    fn idle_clients_seeds_and_down_uploaders_go_at_their_own_delays() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let up = Uploader::Up;
        assert!(!gone(at(599), t0, ClientRole::Peer, up, &SWEEP));
        assert!(gone(at(600), t0, ClientRole::Peer, up, &SWEEP));
        assert!(!gone(at(119), t0, ClientRole::Seed, up, &SWEEP));
        assert!(gone(at(120), t0, ClientRole::Seed, up, &SWEEP));
        let down = Uploader::Down { since: at(100) };
        assert!(!gone(at(279), at(279), ClientRole::Peer, down, &SWEEP), "heard from, down 179 s");
        assert!(gone(at(280), at(280), ClientRole::Peer, down, &SWEEP), "down 180 s");
    }

    const PIECE: u64 = 4 << 20;

    fn register(task_id: &TaskId, cid: &str, host: u8) -> RegisterClient {
        let ip = Ipv4Addr::new(10, 0, 0, host);
        RegisterClient {
            task_id: task_id.clone(),
            cid: ClientId::new(cid),
            peer_id: PeerId::for_host("h", &ip.to_string()),
            ip,
            port: 20000,
            path: format!("/peer/{cid}"),
            super_node_ip: String::new(),
            offer: Offer::Pieces,
            call_system: String::new(),
        }
    }

    /// Hosts that vanish for good leave nothing behind in the uploads bookkeeping: a piece
    /// handed out from a peer that GC then removes is released against that peer's address
    /// when its downloader reports it, and an address with nothing running is forgotten.
    #[actix::test]
    async fn an_upload_from_a_collected_peer_is_given_back_and_its_address_forgotten() {
        let clock = ManualClock::new();
        let metrics = Arc::new(Metrics::new());
        let super_peer = PeerId::for_supernode("sn", "127.0.0.1");
        let s = PieceScheduler::new(
            SchedulerConfig::default(),
            super_peer,
            Ipv4Addr::LOCALHOST,
            8001,
            metrics.clone(),
            clock.clone(),
        )
        .start();
        let task_id = TaskId::compute("http://origin/f", "", "", None);
        let status = TaskStatusChanged {
            task_id: task_id.clone(),
            run_id: 1,
            task_url: "http://origin/f".into(),
            status: CdnStatus::Success,
            http_len: Some(PIECE - 1000),
            piece_size: PIECE,
            piece_total: 1,
            file_length: PIECE,
            real_md5: String::new(),
            failure: None,
            paused: false,
            cdn_host: CdnHost::Local,
        };
        s.send(status).await.unwrap();
        let digests = vec![PieceDigest::new([9; 16], PIECE)];
        s.send(CdnPieces { task_id: task_id.clone(), run_id: 1, piece_size: PIECE, first: 0, digests }).await.unwrap();
        let slot = PieceRange { start: 0, end: PIECE - 1 };
        let (a, b) = (ClientId::new("a"), ClientId::new("b"));
        s.send(register(&task_id, "a", 1)).await.unwrap().unwrap();
        let cdn = ClientId::for_supernode("127.0.0.1", &task_id);
        let success = PieceSuccess { task_id: task_id.clone(), cid: a.clone(), dst_cid: cdn, range: slot };
        s.send(success).await.unwrap().unwrap();
        s.send(register(&task_id, "b", 2)).await.unwrap().unwrap();
        let poll = |status, report| Poll { task_id: task_id.clone(), cid: b.clone(), status, report, max: Some(1) };
        let PollReply::Continue(given) = s.send(poll(ClientStatus::Started, None)).await.unwrap() else {
            panic!("b gets the piece")
        };
        assert_eq!(given.iter().map(|g| &g.cid).collect::<Vec<_>>(), [&a], "from a, not the CDN");
        assert_eq!(metrics.upload_addresses.get(), 1);

        // a's host vanishes: b is still heard from, a is not, and GC removes a
        clock.advance(Duration::from_secs(60));
        s.send(poll(ClientStatus::Started, None)).await.unwrap();
        let sweep = Sweep { client_idle: Duration::from_secs(60), ..SWEEP };
        let swept = s.send(sweep).await.unwrap();
        assert_eq!(swept.removed_clients, [(task_id.clone(), a.clone())]);

        // b's fetch from a fails: the upload it held on a's address is given back
        let failed = Some((slot, SourceRef::Client(a.clone()), PieceResult::Failed));
        s.send(poll(ClientStatus::Running, failed)).await.unwrap();
        assert_eq!(metrics.upload_addresses.get(), 0, "a's address is not kept");
    }
}
