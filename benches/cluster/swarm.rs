//! The swarm: clients spread over the nodes by their own node lists, cluster against
//! independent nodes.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use benchkit::stats::median;
use benchkit::MIB;
use dfget_sim::PeerConfig;
use testkit::origin::Origin;
use testkit::swarm::Swarm;

use crate::{list, Figures, NODES};

/// One swarm download and what it moved.
pub(crate) struct SwarmRun {
    pub(crate) wall_s: f64,
    pub(crate) origin_bytes: u64,
    pub(crate) origin_fetches: u64,
    /// Framed piece bytes fetched from each supernode's download port.
    pub(crate) from_nodes: BTreeMap<String, u64>,
    pub(crate) from_peers: u64,
    /// Of `from_peers`: between clients registered with different nodes.
    pub(crate) across_nodes: u64,
    /// Clients by the node they registered with first.
    pub(crate) registered: BTreeMap<String, usize>,
}

impl SwarmRun {
    pub(crate) fn supernode_bytes(&self) -> u64 {
        self.from_nodes.values().sum()
    }
}

/// The bytes of a piece range `a-b`.
fn range_len(range: &str) -> u64 {
    let bounds = range.split_once('-').and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    bounds.map_or(0, |(a, b)| b + 1 - a)
}

/// `clients` clients download `path` through `nodes` (each given all of them, shuffled by
/// seed `seed + i`); every output must have the origin's md5.
pub(crate) async fn swarm_run(nodes: &[String], origin: &Origin, path: &str, clients: usize, seed: u64) -> SwarmRun {
    let url = origin.url(path);
    let dir = tempfile::tempdir().expect("scratch dir");
    let swarm = Swarm::start(clients, |i| {
        let mut c = PeerConfig::with_nodes(nodes.to_vec(), url.as_str(), dir.path().join(format!("out-{i}")));
        c.node_order_seed = Some(seed + i as u64);
        c.download_timeout = Some(Duration::from_secs(600));
        c
    });
    let t = Instant::now();
    let results = swarm.download().await;
    let wall_s = t.elapsed().as_secs_f64();
    let md5 = origin.content(path).md5_hex();
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(report) => assert_eq!(report.md5, md5, "client {i}'s output"),
            Err(e) => panic!("client {i} failed: {e}"),
        }
    }
    swarm.stop_uploaders().await;
    let stats: Vec<_> = swarm.peers().iter().map(|p| p.stats()).collect();
    let first: HashMap<&str, &str> = swarm
        .peers()
        .iter()
        .zip(&stats)
        .filter_map(|(p, s)| Some((p.cid(), s.registrations.first()?.as_str())))
        .collect();
    let mut run = SwarmRun {
        wall_s,
        origin_bytes: origin.stats(path).body_bytes,
        origin_fetches: origin.stats(path).body_requests,
        from_nodes: BTreeMap::new(),
        from_peers: 0,
        across_nodes: 0,
        registered: BTreeMap::new(),
    };
    for node in first.values() {
        *run.registered.entry(node.to_string()).or_default() += 1;
    }
    for (p, s) in swarm.peers().iter().zip(&stats) {
        for f in &s.fetched {
            let bytes = range_len(&f.range);
            if f.from_supernode {
                *run.from_nodes.entry(f.addr.clone()).or_default() += bytes;
            } else {
                run.from_peers += bytes;
                if first.get(f.cid.as_str()).is_some_and(|theirs| Some(theirs) != first.get(p.cid())) {
                    run.across_nodes += bytes;
                }
            }
        }
    }
    run
}

// ---------------------------------------------------------------- 2. /peer/task

pub(crate) fn swarm_table(f: &Figures, md: &mut String) {
    let n = f.swarm_clients;
    md.push_str(&format!(
        "### Swarm: {NODES} supernodes × {n} clients, {} MiB, cold cache\n\n\
         {n} `dfget-sim` clients (in the bench process, each with its uploader) download one file; each \
         is given all {NODES} nodes in its own shuffled order (the same seeds in both modes) and registers \
         with the first that answers, as dfget does. Cluster: the {NODES} nodes on Redis. Baseline: \
         {NODES} independent supernodes. Fresh nodes every round, every output's md5 checked. Bytes are \
         framed piece bytes as fetched (from the clients' own records); wall time is the median round.\n\n",
        f.size_mib
    ));
    md.push_str(
        "| mode | wall (s): median (rounds) | origin body bytes (fetches) | from supernodes | from peers | \
         of which between clients of different nodes | clients registered per node | supernodes that served pieces |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let row = |name: &str, runs: &[SwarmRun]| {
        let walls: Vec<f64> = runs.iter().map(|r| r.wall_s).collect();
        let sum = |g: fn(&SwarmRun) -> u64| runs.iter().map(g).sum::<u64>() / runs.len() as u64;
        let origin = runs.iter().map(|r| format!("{} ({})", r.origin_bytes, r.origin_fetches)).collect::<Vec<_>>();
        let spread = runs
            .iter()
            .map(|r| r.registered.values().map(ToString::to_string).collect::<Vec<_>>().join("+"))
            .collect::<Vec<_>>();
        let served = runs.iter().map(|r| r.from_nodes.len().to_string()).collect::<Vec<_>>();
        format!(
            "| {name} | **{:.2}** ({}) | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {} | {} |\n",
            median(&walls),
            list(&walls, 2),
            origin.join(" / "),
            sum(SwarmRun::supernode_bytes) as f64 / MIB as f64,
            sum(|r| r.from_peers) as f64 / MIB as f64,
            sum(|r| r.across_nodes) as f64 / MIB as f64,
            spread.join(" / "),
            served.join(" / ")
        )
    };
    md.push_str(&row("cluster (one Redis)", &f.swarms[0]));
    md.push_str(&row(&format!("{NODES} independent supernodes"), &f.swarms[1]));
    let origin = |runs: &[SwarmRun]| runs.iter().map(|r| r.origin_bytes).sum::<u64>() as f64;
    let wall = |runs: &[SwarmRun]| median(&runs.iter().map(|r| r.wall_s).collect::<Vec<_>>());
    md.push_str(&format!(
        "| **cluster ÷ independent** | **{:.2}** | **{:.2}** | | | | | |\n\n",
        wall(&f.swarms[0]) / wall(&f.swarms[1]),
        origin(&f.swarms[0]) / origin(&f.swarms[1])
    ));
    md.push_str(&format!(
        "The bytes columns are means over the rounds (the file is {} bytes); lists are the rounds in order.\n\n",
        f.size_mib * MIB
    ));
}
