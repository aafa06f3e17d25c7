//! Failures in the middle of the downloads: the owner of the task killed with SIGKILL (its
//! clients move to another node, the task gets a new owner), and Redis killed (every node
//! goes on alone, says so, and rejoins when Redis is back). No download is lost.

use std::time::Duration;

use testkit::eventually;
use testkit::protocol::url_task_id;

use crate::{assert_all_finished, clients, cluster, MIB};

/// Holds the origin's body part way, until `resume`.
const HELD_AFTER: u64 = 10 * MIB;

/// Waits until the clients hold at least `pieces` pieces between them.
async fn wait_pieces(swarm: &testkit::swarm::Swarm, pieces: usize) {
    eventually(Duration::from_secs(60), "the downloads are under way", || async {
        swarm.peers().iter().map(|p| p.stats().fetched.len()).sum::<usize>() >= pieces
    })
    .await;
}

#[actix_web::test]
async fn killing_the_owner_mid_download_loses_no_download() {
    let (_redis, mut nodes, origin) = cluster("kill-owner").await;
    let url = origin.url("/f.bin");
    origin.pause_after("/f.bin", HELD_AFTER);
    let owner = nodes.owner(&url_task_id(&url));
    let dir = tempfile::tempdir().unwrap();
    let swarm = clients(&nodes, &url, dir.path());
    let downloads = swarm.download();
    let kill = async {
        wait_pieces(&swarm, 4).await;
        nodes.kill(owner);
        origin.resume("/f.bin");
    };
    let (results, ()) = futures_util::future::join(downloads, kill).await;
    assert_all_finished(&results, &origin);
    // No client could finish before the kill (the origin held the body), so each one that
    // was registered with the killed node moved to another.
    let killed = nodes.control(owner).to_string();
    for p in swarm.peers() {
        let s = p.stats();
        if s.registrations.first() == Some(&killed) {
            assert!(s.migrations > 0 && s.registrations.len() > 1, "{} stayed with the killed node: {s:?}", p.cid());
        }
    }
    let fetches = origin.stats("/f.bin").body_requests;
    assert!((1..=2).contains(&fetches), "the new owner fetched the source once more at most: {fetches}");
}

#[actix_web::test]
async fn killing_redis_mid_download_loses_no_download() {
    let (mut redis, nodes, origin) = cluster("kill-redis").await;
    let url = origin.url("/f.bin");
    origin.pause_after("/f.bin", HELD_AFTER);
    let dir = tempfile::tempdir().unwrap();
    let swarm = clients(&nodes, &url, dir.path());
    let downloads = swarm.download();
    let outage = async {
        wait_pieces(&swarm, 3).await;
        redis.kill();
        for i in 0..3 {
            eventually(Duration::from_secs(60), "each node says it is alone", || async {
                let m = testkit::metrics(&nodes.node(i)).await;
                m.get("dragonfly_supernode_cluster_healthy", &[]) == Some(0.0)
                    && m.get("dragonfly_supernode_cluster_members", &[]) == Some(1.0)
            })
            .await;
        }
        origin.resume("/f.bin");
    };
    let (results, ()) = futures_util::future::join(downloads, outage).await;
    assert_all_finished(&results, &origin);
    for i in 0..3 {
        assert!(nodes.log(i).contains("cluster store unavailable"), "node {i} logged the outage");
    }

    redis.restart();
    nodes.wait_members(3).await;
    for i in 0..3 {
        let m = testkit::metrics(&nodes.node(i)).await;
        assert_eq!(m.get("dragonfly_supernode_cluster_healthy", &[]), Some(1.0), "node {i} rejoined");
    }
}
