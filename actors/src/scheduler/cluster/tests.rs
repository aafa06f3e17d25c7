//! Two schedulers that share one in-memory store: what one publishes, the other hands out.

use std::net::Ipv4Addr;
use std::sync::Arc;

use actix::prelude::*;

use super::*;
use crate::clock::ManualClock;
use crate::cluster::memory::MemoryStore;
use crate::cluster::store::ClusterStore;
use crate::events::{CdnPieces, TaskStatusChanged};
use crate::ids::PeerId;
use crate::metrics::Metrics;
use crate::piece::{PieceDigest, PieceRange};
use crate::scheduler::{ClientStatus, Offer, PieceSuccess, Poll, PollReply, RegisterClient, SchedulerConfig};
use crate::status::CdnStatus;

const PIECE: u64 = 4 << 20;

fn task() -> TaskId {
    TaskId::compute("http://origin/f", "", "", None)
}

fn node(n: u8) -> NodeId {
    NodeId::new(Ipv4Addr::new(127, 0, 0, n), 8002)
}

fn scheduler(n: u8, clock: Arc<ManualClock>) -> Addr<PieceScheduler> {
    let ip = Ipv4Addr::new(127, 0, 0, n);
    PieceScheduler::new(
        SchedulerConfig::default(),
        PeerId::for_supernode("sn", &ip.to_string()),
        ip,
        8001,
        Arc::new(Metrics::new()),
        clock,
    )
    .in_cluster(node(n))
    .start()
}

fn status(cdn_host: CdnHost) -> TaskStatusChanged {
    TaskStatusChanged {
        task_id: task(),
        run_id: 1,
        task_url: "http://origin/f".into(),
        status: CdnStatus::Running,
        http_len: None,
        piece_size: PIECE,
        piece_total: 2,
        file_length: 0,
        real_md5: String::new(),
        failure: None,
        paused: false,
        cdn_host,
    }
}

fn client(cid: &str, ip: [u8; 4]) -> RegisterClient {
    let ip = Ipv4Addr::from(ip);
    RegisterClient {
        task_id: task(),
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

/// One sync of `s` with `store`, as the cluster actor runs it.
async fn sync(s: &Addr<PieceScheduler>, store: &MemoryStore, live: &[NodeId]) {
    let local = s.send(TakeChanges { full: false }).await.unwrap();
    store.push(local.changes, Duration::from_secs(60)).await.unwrap();
    let pulled = store.pull(local.interest).await.unwrap();
    s.send(RemoteState { tasks: pulled, live: live.to_vec() }).await.unwrap();
}

fn poll(cid: &str) -> Poll {
    Poll { task_id: task(), cid: ClientId::new(cid), status: ClientStatus::Started, report: None, max: Some(2) }
}

#[actix::test]
async fn pieces_held_by_another_nodes_client_are_handed_out_and_cdn_pieces_come_from_the_owner() {
    let clock = ManualClock::new();
    let store = MemoryStore::new(clock.clone());
    let (owner, other) = (scheduler(1, clock.clone()), scheduler(2, clock.clone()));
    let live = [node(1), node(2)];
    let digest = PieceDigest::new([9; 16], PIECE);
    owner.send(status(CdnHost::Local)).await.unwrap();
    owner
        .send(CdnPieces { task_id: task(), run_id: 1, piece_size: PIECE, first: 0, digests: vec![digest; 2] })
        .await
        .unwrap();
    let remote_cdn = CdnHost::Remote {
        ip: Ipv4Addr::new(127, 0, 0, 1),
        port: 8001,
        cid: ClientId::for_supernode("127.0.0.1", &task()),
        peer: PeerId::for_supernode("sn", "127.0.0.1"),
    };
    other.send(status(remote_cdn)).await.unwrap();

    // a client of the owner fetches piece 0 from the owner's CDN
    owner.send(client("a", [10, 0, 0, 1])).await.unwrap().unwrap();
    let super_cid = ClientId::for_supernode("127.0.0.1", &task());
    let slot0 = PieceRange { start: 0, end: PIECE - 1 };
    owner
        .send(PieceSuccess { task_id: task(), cid: ClientId::new("a"), dst_cid: super_cid.clone(), range: slot0 })
        .await
        .unwrap()
        .unwrap();

    sync(&owner, &store, &live).await;
    other.send(client("b", [10, 0, 0, 2])).await.unwrap().unwrap();
    sync(&other, &store, &live).await;

    let PollReply::Continue(pieces) = other.send(poll("b")).await.unwrap() else { panic!("pieces for b") };
    let by_piece: std::collections::HashMap<u64, &crate::scheduler::Assignment> =
        pieces.iter().map(|a| (a.piece_num, a)).collect();
    let p0 = by_piece[&0];
    assert_eq!(
        (p0.cid.as_str(), p0.peer_ip.as_str(), p0.peer_port),
        ("a", "10.0.0.1", 20000),
        "the other node's peer: {p0:?}"
    );
    let p1 = by_piece[&1];
    assert_eq!(p1.cid, super_cid, "the owner's CDN: {p1:?}");
    assert_eq!((p1.peer_ip.as_str(), p1.peer_port), ("127.0.0.1", 8001));
    assert_eq!(p1.digest, Some(digest));
}

#[actix::test]
async fn a_dead_nodes_clients_and_a_gone_client_are_dropped() {
    let clock = ManualClock::new();
    let store = MemoryStore::new(clock.clone());
    let (one, two) = (scheduler(1, clock.clone()), scheduler(2, clock.clone()));
    for s in [&one, &two] {
        s.send(status(CdnHost::Local)).await.unwrap();
        s.send(CdnPieces {
            task_id: task(),
            run_id: 1,
            piece_size: PIECE,
            first: 0,
            digests: vec![PieceDigest::new([1; 16], PIECE); 2],
        })
        .await
        .unwrap();
    }
    one.send(client("a", [10, 0, 0, 1])).await.unwrap().unwrap();
    let slot0 = PieceRange { start: 0, end: PIECE - 1 };
    let cdn = ClientId::for_supernode("127.0.0.1", &task());
    one.send(PieceSuccess { task_id: task(), cid: ClientId::new("a"), dst_cid: cdn, range: slot0 })
        .await
        .unwrap()
        .unwrap();
    sync(&one, &store, &[node(1), node(2)]).await;
    two.send(client("b", [10, 0, 0, 2])).await.unwrap().unwrap();
    sync(&two, &store, &[node(1), node(2)]).await;
    let sources = |r: PollReply| match r {
        PollReply::Continue(list) => list.iter().map(|a| a.cid.to_string()).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert!(sources(two.send(poll("b")).await.unwrap()).contains(&"a".to_string()));

    // node 1 is gone from the live set: its client is no longer a source
    sync(&two, &store, &[node(2)]).await;
    let two_b2 = client("b2", [10, 0, 0, 3]);
    two.send(two_b2).await.unwrap().unwrap();
    assert!(!sources(two.send(poll("b2")).await.unwrap()).contains(&"a".to_string()), "a dead node's client");
}
