//! `/peer/task` on one node of the cluster against the single binary, with what each round
//! cost the loaded node, the other nodes and Redis.

use std::time::Duration;

use benchkit::gen::{self, GenConfig, GenResult};
use benchkit::stats::{median, Histogram, Latencies};
use benchkit::*;
use testkit::origin::Origin;

use crate::redis_cost::RedisCounters;
use crate::{cpu_secs, list, Figures, Node, HIST, NODES};

/// Which server carries the `/peer/task` load.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Load {
    Single,
    NonOwner,
    Owner,
}

pub(crate) const LOADS: [Load; 3] = [Load::Single, Load::NonOwner, Load::Owner];

impl Load {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Load::Single => "single supernode, no Redis",
            Load::NonOwner => "cluster: a node that does not own the task",
            Load::Owner => "cluster: the task's owner",
        }
    }
}

pub(crate) struct PollParams {
    pub(crate) clients: usize,
    pub(crate) conns: usize,
    pub(crate) idle: Duration,
}

/// One piece loop on one server, and what it cost there, on the other nodes and in Redis.
pub(crate) struct PollRound {
    gen: GenResult,
    hist: Histogram,
    cpu_load: f64,
    cpu_others: f64,
    /// During the piece loop.
    redis: RedisCounters,
    /// During the idle window after it.
    idle: RedisCounters,
}

/// Registers `p.clients` clients of a fresh cached task (`path`) with `nodes[load]`, runs the
/// piece loop, then (with Redis) the idle window; deletes the task from every node.
pub(crate) async fn poll_round(
    nodes: &[Node],
    load: usize,
    redis: Option<u16>,
    origin: &Origin,
    path: &str,
    p: &PollParams,
    tag: &str,
) -> PollRound {
    let server = nodes[load];
    let url = origin.url(path);
    let data = register(&server, &url, &format!("127.0.0.1-trigger-{tag}"), 19999).await;
    let task_id = data["taskId"].as_str().expect("taskId").to_string();
    testkit::wait_success(&server, &task_id, Duration::from_secs(120)).await;
    let cfg = GenConfig::piece_loop(server.0, p.conns, p.clients, &url, &task_id, tag);
    assert_eq!(gen::register_all(&cfg, &gen::client(p.conns)).await, 0, "registrations failed");

    let h0 = Histogram::of(&testkit::metrics(&server).await, HIST);
    let mut cpu0 = Vec::new();
    for n in nodes {
        cpu0.push(cpu_secs(*n).await);
    }
    let r0 = redis.map(RedisCounters::read);
    let gen = gen::run_scheduler(&cfg).await;
    let r1 = redis.map(RedisCounters::read);
    let (mut cpu_load, mut cpu_others) = (0.0, 0.0);
    for (i, n) in nodes.iter().enumerate() {
        let used = cpu_secs(*n).await - cpu0[i];
        if i == load {
            cpu_load += used;
        } else {
            cpu_others += used;
        }
    }
    let hist = Histogram::of(&testkit::metrics(&server).await, HIST).minus(&h0);
    let (redis_loop, idle) = match (redis, &r0, &r1) {
        (Some(port), Some(r0), Some(r1)) => {
            actix_rt::time::sleep(p.idle).await;
            (r1.minus(r0), RedisCounters::read(port).minus(r1))
        }
        _ => Default::default(),
    };
    for n in nodes {
        delete_task(n, &task_id).await;
    }
    let (task, suc) = (gen.lat("task"), gen.lat("suc"));
    println!(
        "  {tag} on {}: {} req, {:.0} rps, /peer/task p50 {:.2} p99 {:.2} ms, suc p99 {:.2} ms, errors {}, codes {}; Redis {} pulls, {:.3} CPU-s; idle {} pulls, {:.3} CPU-s",
        server.0,
        gen.requests(),
        gen.rps(),
        task.pct_ms(50.0),
        task.pct_ms(99.0),
        suc.pct_ms(99.0),
        gen.errors,
        gen.codes_line(),
        redis_loop.pulls(),
        redis_loop.cpu_s,
        idle.pulls(),
        idle.cpu_s
    );
    if gen.errors > 0 {
        println!("  error samples: {:?}", gen.error_samples);
    }
    PollRound { gen, hist, cpu_load, cpu_others, redis: redis_loop, idle }
}

/// A load's rounds pooled.
#[derive(Default)]
pub(crate) struct PollSummary {
    pub(crate) task: Latencies,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) rps: Vec<f64>,
    pub(crate) p99s: Vec<f64>,
    pub(crate) loop_s: f64,
    pub(crate) hist: Histogram,
    pub(crate) cpu_load: f64,
    pub(crate) cpu_others: f64,
    pub(crate) redis: RedisCounters,
    pub(crate) idle: RedisCounters,
}

impl PollSummary {
    pub(crate) fn of(rounds: &[PollRound]) -> PollSummary {
        let mut s = PollSummary::default();
        for r in rounds {
            let task = r.gen.lat("task");
            s.p99s.push(task.pct_ms(99.0));
            s.task.extend(&task);
            s.requests += r.gen.requests();
            s.errors += r.gen.errors;
            s.rps.push(r.gen.rps());
            s.loop_s += r.gen.elapsed.as_secs_f64();
            s.hist.add(&r.hist);
            s.cpu_load += r.cpu_load;
            s.cpu_others += r.cpu_others;
            s.redis.add(&r.redis);
            s.idle.add(&r.idle);
        }
        s
    }

    fn us_per_request(&self, cpu_s: f64) -> f64 {
        cpu_s * 1e6 / self.requests as f64
    }
}

pub(crate) fn poll_table(f: &Figures, md: &mut String) {
    let (clients, conns) = (f.p.clients, f.p.conns);
    md.push_str(&format!(
        "### `/peer/task` with {clients} clients on one node\n\n\
         In each of {} rounds, on a fresh cached {} MiB task per server, {clients} clients register with one \
         server and the generator of the `peer_task` bench ({conns} requests in flight over keep-alive \
         connections, one thread) drives each through dfget's piece loop to the end (`700/502`, then per \
         piece `/peer/piece/suc` and a `701/503` poll, re-polling on 602, until 600). In the cluster, all \
         {clients} are on one node: it then carries what the single server carries, and besides that \
         publishes its clients and reads the task's state every sync, while the task's owner (or, when the \
         clients are on the owner, no other node) syncs the same task; spread over {NODES} nodes, each \
         would carry a third of the polls and the comparison would measure the spread, not the cluster's \
         cost. The three servers take turns within each round. Latency is client-side, pooled over the \
         rounds; req/s is the median round. CPU per request: the loaded node, the other {} nodes, Redis, \
         during the piece loops.\n\n",
        f.rounds,
        f.size_mib,
        NODES - 1
    ));
    md.push_str(
        "| server carrying the load | requests | errors | req/s: median (rounds) | `/peer/task` p50 (ms) | p99 (ms) | \
         max (ms) | p99 ÷ single | server `schedule_duration` p50 / p99 | CPU per request: node / others / Redis |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let single_p99 = f.polls[0].task.pct_ms(99.0);
    for (load, s) in LOADS.iter().zip(&f.polls) {
        let ratio = if *load == Load::Single {
            "—".to_string()
        } else {
            format!("**{:.2}**", s.task.pct_ms(99.0) / single_p99)
        };
        let others = if *load == Load::Single {
            "—".to_string()
        } else {
            format!("{:.0} µs / {:.0} µs", s.us_per_request(s.cpu_others), s.us_per_request(s.redis.cpu_s))
        };
        md.push_str(&format!(
            "| {} | {} | {} | **{:.0}** ({}) | {:.2} | **{:.2}** | {:.1} | {ratio} | {} / {} | {:.0} µs / {others} |\n",
            load.label(),
            s.requests,
            s.errors,
            median(&s.rps),
            list(&s.rps, 0),
            s.task.pct_ms(50.0),
            s.task.pct_ms(99.0),
            s.task.max_ms(),
            s.hist.pct_text(50.0),
            s.hist.pct_text(99.0),
            s.us_per_request(s.cpu_load)
        ));
    }
    let per_round =
        |s: &PollSummary| s.p99s.iter().zip(&f.polls[0].p99s).map(|(c, single)| c / single).collect::<Vec<f64>>();
    let pooled: Vec<f64> = f.polls[1..].iter().map(|s| s.task.pct_ms(99.0) / single_p99).collect();
    let rounds: Vec<Vec<f64>> = f.polls[1..].iter().map(per_round).collect();
    let medians: Vec<f64> = rounds.iter().map(|r| median(r)).collect();
    let within = |v: &[f64]| v.iter().all(|r| *r <= 2.0);
    let verdict = match (within(&pooled), within(&medians)) {
        (true, true) => "met",
        (false, false) => "not met",
        (true, false) => "met on the pooled latencies, not in the median round",
        (false, true) => "met in the median round, not on the pooled latencies",
    };
    md.push_str(&format!(
        "\nTarget: cluster p99 at most 2× single — **{verdict}**. Pooled p99 ÷ single: non-owner **{:.2}×**, \
         owner **{:.2}×**. Per round, against the single server's p99 of the same round: non-owner {} (median \
         **{:.2}×**), owner {} (median **{:.2}×**). Request rate ÷ single (median rounds): non-owner {:.2}, \
         owner {:.2}.\n\n",
        pooled[0],
        pooled[1],
        list(&rounds[0], 2),
        medians[0],
        list(&rounds[1], 2),
        medians[1],
        median(&f.polls[1].rps) / median(&f.polls[0].rps),
        median(&f.polls[2].rps) / median(&f.polls[0].rps)
    ));
}
