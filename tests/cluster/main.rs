//! Cluster mode end to end: three supernode processes on one real Redis (Debian's
//! `redis-server`, started by the test on loopback), nine dfget-compatible clients, each
//! given all three nodes in its own random order, as stock dfget spreads itself.
//!
//! * `one_network`: one origin fetch for the whole cluster, pieces crossing nodes, and a
//!   preheat sent to a node that does not own the task;
//! * `failures`: a node killed with SIGKILL, and Redis killed, in the middle of the downloads.

mod failures;
mod one_network;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use dfget_sim::{Peer, PeerConfig, Report, SimError};
use testkit::cluster::ClusterNodes;
use testkit::origin::Origin;
use testkit::redis::RedisServer;
use testkit::swarm::Swarm;

const MIB: u64 = 1024 * 1024;
/// Seven pieces of 4 MiB: enough for the clients to fetch pieces from each other.
const FILE: u64 = 26 * MIB;
const CLIENTS: usize = 9;

/// The CDN serves one piece at a time per task and node, so clients also fetch from peers.
const SCHEDULER: &str = "[scheduler]\ncdn_up_limit = 1\n";

/// Three nodes on a fresh Redis, and an origin with `FILE` at `/f.bin`.
async fn cluster(prefix: &str) -> (RedisServer, ClusterNodes, Origin) {
    let redis = RedisServer::start();
    let nodes = ClusterNodes::start(env!("CARGO_BIN_EXE_supernode"), 3, &redis.url(), prefix, SCHEDULER).await;
    let origin = Origin::start().await;
    origin.add_generated("/f.bin", 17, FILE);
    (redis, nodes, origin)
}

/// Nine clients of `url`, each with all the nodes in its own order.
fn clients(nodes: &ClusterNodes, url: &str, dir: &Path) -> Swarm {
    Swarm::start(CLIENTS, |i| {
        let mut c = PeerConfig::with_nodes(nodes.node_list(), url, dir.join(format!("out-{i}")));
        c.node_order_seed = Some(i as u64 + 1);
        c.download_timeout = Some(Duration::from_secs(120));
        c
    })
}

/// Every download finished with the origin's md5.
fn assert_all_finished(results: &[Result<Report, SimError>], origin: &Origin) {
    let md5 = origin.content("/f.bin").md5_hex();
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(report) => assert_eq!(report.md5, md5, "client {i}'s output"),
            Err(e) => panic!("client {i} failed: {e}"),
        }
    }
}

/// The node each client registered with first, by CID.
fn first_nodes(peers: &[Peer]) -> HashMap<String, String> {
    peers.iter().filter_map(|p| Some((p.cid().to_string(), p.stats().registrations.first()?.clone()))).collect()
}
