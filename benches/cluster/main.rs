//! Cluster mode, three supernode processes (the release binary) on one real Redis, against
//! the same binary without Redis, all in one run:
//!
//! 1. **Swarm.** BENCH_CLUSTER_CLIENTS (12) dfget-sim clients, each given the three nodes in
//!    its own shuffled order as stock dfget spreads itself, download one BENCH_CLUSTER_MIB (64)
//!    MiB file from a cold cache. Baseline: three independent supernodes (no Redis), the
//!    clients spread over them with the same seeds. Figures: wall time (start of the downloads
//!    to the last one done), origin body bytes, piece bytes from supernodes and from peers.
//!    Every output's md5 must match the origin's. BENCH_SWARM_ROUNDS (3) rounds, the two
//!    modes alternating, each on fresh nodes.
//! 2. **`/peer/task`.** BENCH_CLIENTS (1,000) clients driven by `benchkit::gen` through dfget's
//!    piece loop (BENCH_CONNS, 32, in flight), as in the `peer_task` bench, all registered with
//!    one node of the cluster, so that this node carries a single server's load and its share
//!    of the cluster's sync work besides: once a node that does not own the task, once its
//!    owner. Baseline: the binary without Redis. BENCH_ROUNDS (5) rounds, the three servers
//!    taking turns, each round on a fresh cached task that is deleted afterwards.
//! 3. **Redis's cost.** Redis's `INFO cpu stats commandstats` before and after each cluster
//!    piece loop, and over a BENCH_IDLE_MS (1,000) window after it in which the clients stay
//!    registered and nothing changes. Each window's counts are divided by the syncs Redis served
//!    in it: a sync reads the clients of each task its node knows with one `HGETALL`, and no
//!    other read sends that command while the task's CDN pieces stay the same.
//!
//! The nodes run with the cluster fixture's intervals (`testkit::cluster`).

mod poll;
mod redis_cost;
mod swarm;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use benchkit::report::{measured_line, note_start_load, write_section};
use benchkit::*;
use testkit::cluster::ClusterNodes;
use testkit::redis::RedisServer;
use testkit::Control;

use poll::{poll_round, poll_table, Load, PollParams, PollRound, PollSummary, LOADS};
use redis_cost::{on_paper, redis_port, redis_table};
use swarm::{swarm_run, swarm_table, SwarmRun};

const EXE: &str = env!("CARGO_BIN_EXE_supernode");
pub(crate) const HIST: &str = "dragonfly_supernode_schedule_duration_milliseconds";
pub(crate) const NODES: usize = 3;
/// A 1 Gbit/s link, in bytes per second.
pub(crate) const GBIT_LINK: f64 = 125e6;

fn main() {
    note_start_load();
    actix_rt::System::new().block_on(run());
}

/// A server's control API by address.
#[derive(Clone, Copy)]
pub(crate) struct Node(SocketAddr);

impl Control for Node {
    fn control_addr(&self) -> SocketAddr {
        self.0
    }
}

/// User + system CPU seconds of the server so far, from its own `/metrics`.
pub(crate) async fn cpu_secs(node: Node) -> f64 {
    testkit::metrics(&node).await.get("process_cpu_seconds_total", &[]).unwrap_or(0.0)
}

pub(crate) fn list(v: &[f64], decimals: usize) -> String {
    v.iter().map(|x| format!("{x:.decimals$}")).collect::<Vec<_>>().join(" / ")
}

async fn run() {
    let size_mib = env_u64("BENCH_CLUSTER_MIB", 64);
    let swarm_clients = env_u64("BENCH_CLUSTER_CLIENTS", 12) as usize;
    let swarm_rounds = env_u64("BENCH_SWARM_ROUNDS", 3).max(1) as usize;
    let rounds = env_u64("BENCH_ROUNDS", 5).max(1) as usize;
    let p = PollParams {
        clients: env_u64("BENCH_CLIENTS", 1000) as usize,
        conns: env_u64("BENCH_CONNS", 32) as usize,
        idle: Duration::from_millis(env_u64("BENCH_IDLE_MS", 1000)),
    };
    let started = Instant::now();
    let len = size_mib * MIB;
    let swarm_paths: Vec<[String; 2]> =
        (0..swarm_rounds).map(|r| [format!("/swarm-cluster-{r}.bin"), format!("/swarm-independent-{r}.bin")]).collect();
    let poll_paths: Vec<[String; 3]> = (0..rounds).map(|r| [0, 1, 2].map(|l| format!("/poll-{l}-{r}.bin"))).collect();
    let mut files: Vec<(&str, u64, u64)> = swarm_paths.iter().flatten().map(|p| (p.as_str(), 7, len)).collect();
    files.extend(poll_paths.iter().flatten().enumerate().map(|(i, p)| (p.as_str(), 100 + i as u64, len)));
    let origin = spawn_origin(&files);
    let redis = RedisServer::start();
    let port = redis_port(&redis);

    // 1. The swarm: cluster and independent nodes alternating, fresh nodes every time.
    let mut swarms: [Vec<SwarmRun>; 2] = Default::default();
    for (r, paths) in swarm_paths.iter().enumerate() {
        let seed = 1 + (r * swarm_clients) as u64;
        for (mode, path) in paths.iter().enumerate() {
            let run = if mode == 0 {
                let nodes = ClusterNodes::start(EXE, NODES, &redis.url(), &format!("bench-swarm-{r}"), "").await;
                swarm_run(&nodes.node_list(), &origin, path, swarm_clients, seed).await
            } else {
                let servers: Vec<BinaryServer> = (0..NODES).map(|_| BinaryServer::start(EXE)).collect();
                let list: Vec<String> = servers.iter().map(|s| s.control().to_string()).collect();
                swarm_run(&list, &origin, path, swarm_clients, seed).await
            };
            println!(
                "swarm {r} {path}: {:.2} s, origin {} B, supernodes {} B, peers {} B",
                run.wall_s,
                run.origin_bytes,
                run.supernode_bytes(),
                run.from_peers
            );
            swarms[mode].push(run);
        }
    }

    // 2. and 3. `/peer/task` on the single binary and on one node of a cluster, taking turns.
    let single = BinaryServer::start(EXE);
    let cluster = ClusterNodes::start(EXE, NODES, &redis.url(), "bench-poll", "").await;
    let single_nodes = [Node(single.control())];
    let cluster_nodes: Vec<Node> = (0..NODES).map(|i| Node(cluster.control(i))).collect();
    let mut polls: [Vec<PollRound>; 3] = Default::default();
    for (r, paths) in poll_paths.iter().enumerate() {
        for k in 0..LOADS.len() {
            let l = (r + k) % LOADS.len();
            let path = &paths[l];
            let tag = format!("r{r}l{l}");
            let round = match LOADS[l] {
                Load::Single => poll_round(&single_nodes, 0, None, &origin, path, &p, &tag).await,
                load => {
                    let owner = cluster.owner(&testkit::protocol::url_task_id(&origin.url(path)));
                    let at = if load == Load::Owner { owner } else { (owner + 1) % NODES };
                    poll_round(&cluster_nodes, at, Some(port), &origin, path, &p, &tag).await
                }
            };
            polls[l].push(round);
        }
    }
    drop(cluster);
    drop(single);

    let md = section(&Figures {
        size_mib,
        swarm_clients,
        swarms,
        p,
        rounds,
        polls: polls.each_ref().map(|r| PollSummary::of(r)),
        bench_s: started.elapsed().as_secs_f64(),
    });
    println!("{md}");
    write_section("cluster", &md);
}

pub(crate) struct Figures {
    pub(crate) size_mib: u64,
    pub(crate) swarm_clients: usize,
    /// Cluster, then independent nodes.
    pub(crate) swarms: [Vec<SwarmRun>; 2],
    pub(crate) p: PollParams,
    pub(crate) rounds: usize,
    pub(crate) polls: [PollSummary; 3],
    /// The whole bench, set-up included.
    pub(crate) bench_s: f64,
}

impl Figures {
    /// The idle windows of one load, in seconds.
    pub(crate) fn idle_secs(&self) -> f64 {
        self.p.idle.as_secs_f64() * self.rounds as f64
    }

    /// Syncs per second of one node: with the clients on the owner, it alone syncs the task.
    pub(crate) fn sync_rate(&self) -> f64 {
        self.polls[2].idle.pulls() as f64 / self.idle_secs()
    }
}

fn section(f: &Figures) -> String {
    let mut md = String::new();
    md.push_str(&format!("## Cluster: {NODES} supernodes on one Redis (`cluster`)\n\n{}\n", measured_line("cluster")));
    md.push_str(&format!(
        "{NODES} release binaries (`supernode`) as child processes in cluster mode on one `redis-server` \
         (loopback, no persistence), with the cluster fixture's short intervals (`testkit::cluster`; measured \
         below: {:.1} syncs per second per node); every baseline is the same binary without Redis, in the \
         same run. Scale with BENCH_CLUSTER_MIB ({}), BENCH_CLUSTER_CLIENTS ({}), BENCH_SWARM_ROUNDS ({}), \
         BENCH_CLIENTS ({}), BENCH_CONNS ({}), BENCH_ROUNDS ({}), BENCH_IDLE_MS ({}); this run took {:.0} s.\n\n",
        f.sync_rate(),
        f.size_mib,
        f.swarm_clients,
        f.swarms[0].len(),
        f.p.clients,
        f.p.conns,
        f.rounds,
        f.p.idle.as_millis(),
        f.bench_s
    ));
    swarm_table(f, &mut md);
    poll_table(f, &mut md);
    redis_table(f, &mut md);
    on_paper(f, &mut md);
    md
}
