//! A supernode failing a client midway, with a second supernode in the client's list: the client
//! moves on to the other one as dfget does (same cid, same uploader), keeps the pieces it holds
//! and finishes there. The two supernodes know nothing of each other, so the second fetches the
//! source itself and hands out every piece again; the client reports the ones it holds instead
//! of fetching them twice.

use std::rc::Rc;
use std::time::Duration;

use dfget_sim::Report;
use testkit::swarm::start_peer;
use testkit::{eventually, TestServer};

use crate::{ok, peer, Source, FILE, MIB, SMALL};

/// Pieces of the SMALL file.
const PIECES: u64 = 7;
/// Where the origin holds back the first supernode's fetch: 2 whole pieces in, so that the
/// client holds some pieces, but not all, when that supernode fails it.
const HELD_BACK_AT: u64 = 8 * MIB as u64 + 1000;

/// How a test takes the client's supernode away.
enum Failure {
    /// `DELETE /api/v1/tasks/{id}`: its next poll is answered 502.
    DeleteTask,
    /// The server stops: the next poll cannot connect.
    Stop,
}

/// Starts a client of two supernodes, fails the one it registered with once it holds a piece,
/// and returns its report, the two control addresses in the order the client used them and
/// the servers still running.
async fn fail_over(failure: Failure) -> (Report, [String; 2], Vec<TestServer>) {
    let src = Source::start(SMALL).await;
    src.origin.pause_after(FILE, HELD_BACK_AT);
    let mut servers = vec![testkit::start().await, testkit::start().await];
    let nodes: Vec<String> = servers.iter().map(|s| s.control().to_string()).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = peer(&servers[0], &src.url(), dir.path(), "failover.bin");
    cfg.nodes = nodes.clone();
    cfg.node_order_seed = Some(7);
    let p = Rc::new(start_peer(cfg));
    let p2 = p.clone();
    let run = actix_rt::spawn(async move { p2.download().await });
    eventually(Duration::from_secs(30), "the client holds a piece", || async { p.stats().suc_reports_ok >= 1 }).await;

    let first = p.node().expect("registered");
    let gone = nodes.iter().position(|n| *n == first).expect("one of the two");
    let order = [nodes[gone].clone(), nodes[1 - gone].clone()];
    match failure {
        Failure::DeleteTask => {
            let task_id = p.task_id().expect("registered");
            let (status, body) = testkit::delete(&servers[gone], &format!("/api/v1/tasks/{task_id}")).await;
            assert!((200..300).contains(&status), "DELETE: {status} {body}");
        }
        Failure::Stop => {
            let _home = servers.remove(gone).stop().await;
        }
    }
    // the other supernode fetches the source on its own
    src.origin.resume(FILE);
    let r = actix_rt::time::timeout(Duration::from_secs(60), run).await.expect("the client finishes").expect("task");
    let r = ok(&r, "migrated client").clone();
    assert_eq!(r.md5, src.md5, "output md5");
    assert_eq!(r.stats.registrations, order.to_vec(), "registered with one node, then with the other");
    assert_eq!(r.stats.migrations, 1);
    assert_eq!(r.cid, p.cid(), "one cid for the whole run");
    assert_eq!(p.node().as_deref(), Some(order[1].as_str()));

    // every piece written once: those held when the first node went away are reported to the
    // second, not fetched again
    assert!(r.stats.pieces_already_held >= 1, "{:?}", r.stats);
    let mut nums: Vec<u64> = r.stats.fetched.iter().map(|f| f.piece_num).collect();
    nums.sort_unstable();
    assert_eq!(nums, (0..PIECES).collect::<Vec<_>>(), "{:?}", r.stats.fetched);
    assert!(r.stats.fetched.iter().any(|f| f.node == order[0]), "pieces from the first node");
    assert!(r.stats.fetched.iter().any(|f| f.node == order[1]), "pieces from the second node");
    (r, order, servers)
}

#[actix_web::test]
async fn a_deleted_task_moves_the_client_to_the_other_supernode() {
    let (r, order, servers) = fail_over(Failure::DeleteTask).await;
    assert!(r.stats.poll_codes.contains_key(&502), "the deleted task's poll: {:?}", r.stats.poll_codes);
    // each CDN piece came from the download port of the supernode that handed it out
    for f in &r.stats.fetched {
        let s = servers.iter().find(|s| s.control().to_string() == f.node).expect("a node of the list");
        assert!(f.from_supernode, "{f:?}");
        assert_eq!(f.addr, s.download().to_string(), "{f:?}");
    }
    eprintln!(
        "p2p figures: failover after DELETE: {} pieces from {}, {} from {}, {} reported as held",
        r.stats.fetched.iter().filter(|f| f.node == order[0]).count(),
        order[0],
        r.stats.fetched.iter().filter(|f| f.node == order[1]).count(),
        order[1],
        r.stats.pieces_already_held
    );
}

#[actix_web::test]
async fn a_stopped_supernode_moves_the_client_to_the_other() {
    let (r, order, servers) = fail_over(Failure::Stop).await;
    assert_eq!(servers.len(), 1);
    let survivor = servers[0].download().to_string();
    for f in r.stats.fetched.iter().filter(|f| f.node == order[1]) {
        assert_eq!(f.addr, survivor, "{f:?}");
    }
}
