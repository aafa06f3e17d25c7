//! Redis's own counters read around each window, and what they say one Redis serves.

use std::collections::BTreeMap;
use std::process::Command;

use supernode_actors::cluster::ClusterConfig;
use testkit::redis::RedisServer;

use crate::poll::LOADS;
use crate::{Figures, GBIT_LINK, NODES};

/// Redis's own counters (`INFO cpu stats commandstats`), without the `INFO` calls that read them.
#[derive(Clone, Default)]
pub(crate) struct RedisCounters {
    pub(crate) cpu_s: f64,
    pub(crate) net_in: u64,
    pub(crate) net_out: u64,
    /// command → (calls, µs executing)
    pub(crate) commands: BTreeMap<String, (u64, u64)>,
}

impl RedisCounters {
    pub(crate) fn read(port: u16) -> RedisCounters {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "INFO", "cpu", "stats", "commandstats"])
            .output()
            .expect("redis-cli runs (Debian's redis-tools)");
        assert!(out.status.success(), "redis-cli INFO: {}", String::from_utf8_lossy(&out.stderr));
        let mut c = RedisCounters::default();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some((key, value)) = line.trim_end().split_once(':') else { continue };
            match key {
                "used_cpu_sys" | "used_cpu_user" => c.cpu_s += value.parse::<f64>().unwrap_or(0.0),
                "total_net_input_bytes" => c.net_in = value.parse().unwrap_or(0),
                "total_net_output_bytes" => c.net_out = value.parse().unwrap_or(0),
                _ => {
                    let Some(cmd) = key.strip_prefix("cmdstat_").filter(|cmd| *cmd != "info") else { continue };
                    let field = |name: &str| {
                        value.split(',').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
                    };
                    c.commands.insert(cmd.to_string(), (field("calls").unwrap_or(0), field("usec").unwrap_or(0)));
                }
            }
        }
        c
    }

    /// What was counted between `before` and `self`.
    pub(crate) fn minus(&self, before: &RedisCounters) -> RedisCounters {
        let commands = self
            .commands
            .iter()
            .map(|(cmd, (calls, usec))| {
                let (c0, u0) = before.commands.get(cmd).copied().unwrap_or_default();
                (cmd.clone(), (calls - c0, usec - u0))
            })
            .filter(|(_, (calls, _))| *calls > 0)
            .collect();
        RedisCounters {
            cpu_s: self.cpu_s - before.cpu_s,
            net_in: self.net_in - before.net_in,
            net_out: self.net_out - before.net_out,
            commands,
        }
    }

    pub(crate) fn add(&mut self, other: &RedisCounters) {
        self.cpu_s += other.cpu_s;
        self.net_in += other.net_in;
        self.net_out += other.net_out;
        for (cmd, (calls, usec)) in &other.commands {
            let e = self.commands.entry(cmd.clone()).or_default();
            e.0 += calls;
            e.1 += usec;
        }
    }

    pub(crate) fn calls(&self, cmd: &str) -> u64 {
        self.commands.get(cmd).map_or(0, |c| c.0)
    }

    /// Syncs served: one `HGETALL` of a task's clients per task a node knows.
    pub(crate) fn pulls(&self) -> u64 {
        self.calls("hgetall")
    }

    fn exec_us(&self) -> u64 {
        self.commands.values().map(|c| c.1).sum()
    }

    /// `HSET 3.0 (2.1 µs) · GET …`: calls per pull and µs per call, most calls first.
    fn per_pull_line(&self) -> String {
        let pulls = self.pulls().max(1) as f64;
        let mut cmds: Vec<_> = self.commands.iter().collect();
        cmds.sort_by_key(|(_, (calls, _))| std::cmp::Reverse(*calls));
        let text: Vec<String> = cmds
            .iter()
            .map(|(cmd, (calls, usec))| {
                format!(
                    "`{}` {:.1} ({:.2} µs)",
                    cmd.to_uppercase(),
                    *calls as f64 / pulls,
                    *usec as f64 / *calls as f64
                )
            })
            .collect();
        text.join(" · ")
    }
}

/// The port of `redis://127.0.0.1:<port>/0`.
pub(crate) fn redis_port(redis: &RedisServer) -> u16 {
    let url = redis.url();
    let port = url.rsplit_once(':').and_then(|(_, rest)| rest.split('/').next()?.parse().ok());
    port.unwrap_or_else(|| panic!("no port in {url}"))
}

/// Redis CPU µs, commandstats µs, commands and bytes per pull of a window.
struct PerPull {
    pulls: u64,
    secs: f64,
    cpu_us: f64,
    exec_us: f64,
    commands: f64,
    bytes_in: f64,
    bytes_out: f64,
}

impl PerPull {
    fn of(c: &RedisCounters, secs: f64) -> PerPull {
        let n = c.pulls().max(1) as f64;
        PerPull {
            pulls: c.pulls(),
            secs,
            cpu_us: c.cpu_s * 1e6 / n,
            exec_us: c.exec_us() as f64 / n,
            commands: c.commands.values().map(|v| v.0).sum::<u64>() as f64 / n,
            bytes_in: c.net_in as f64 / n,
            bytes_out: c.net_out as f64 / n,
        }
    }
}

pub(crate) fn redis_table(f: &Figures, md: &mut String) {
    let clients = f.p.clients + 1;
    md.push_str(&format!(
        "### Redis per sync\n\n\
         Redis's `INFO cpu stats commandstats` read before and after each cluster piece loop and after an \
         idle window of {} ms that follows it (the clients stay registered and send nothing; the window's first \
         sync still publishes the piece loop's last changes). A pull is one \
         node's sync of the task: one `HGETALL` of the task's {clients} clients ({} + the registration that \
         made the task cached), counted by Redis. CPU is Redis's user + system time (commands, parsing, \
         socket I/O), commandstats µs the time inside the commands alone; both include the {NODES} nodes' \
         membership renewals (`SADD`, `SMEMBERS`, `MGET` and a `SET` each).\n\n",
        f.p.idle.as_millis(),
        f.p.clients
    ));
    md.push_str(
        "| window | pulls | pulls/s | Redis CPU per pull | commandstats per pull | commands per pull | bytes in / out per pull | per pull: calls of each command (µs per call) |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for (load, s) in LOADS.iter().zip(&f.polls).skip(1) {
        for (what, c, secs) in [("piece loop", &s.redis, s.loop_s), ("idle", &s.idle, f.idle_secs())] {
            let pp = PerPull::of(c, secs);
            md.push_str(&format!(
                "| {}, {what} | {} | {:.1} | **{:.0} µs** | {:.0} µs | {:.0} | {:.0} KiB / {:.0} KiB | {} |\n",
                load.label().trim_start_matches("cluster: "),
                pp.pulls,
                pp.pulls as f64 / pp.secs,
                pp.cpu_us,
                pp.exec_us,
                pp.commands,
                pp.bytes_in / 1024.0,
                pp.bytes_out / 1024.0,
                c.per_pull_line()
            ));
        }
    }
    md.push('\n');
}

pub(crate) fn on_paper(f: &Figures, md: &mut String) {
    let clients = (f.p.clients + 1) as f64;
    let (mut busy, mut idle) = (RedisCounters::default(), RedisCounters::default());
    let (mut busy_s, mut idle_s) = (0.0, 0.0);
    for s in &f.polls[1..] {
        busy.add(&s.redis);
        idle.add(&s.idle);
        busy_s += s.loop_s;
        idle_s += f.idle_secs();
    }
    let (busy, idle) = (PerPull::of(&busy, busy_s), PerPull::of(&idle, idle_s));
    // Client-syncs per second one Redis core (one CPU-second per second) or one link serves.
    let core = |pp: &PerPull| 1e6 * clients / pp.cpu_us;
    let link = |pp: &PerPull| GBIT_LINK * clients / pp.bytes_in.max(pp.bytes_out);
    let bound = |pp: &PerPull| if core(pp) <= link(pp) { "the Redis core" } else { "the link" };
    let binds = if bound(&busy) == bound(&idle) {
        format!("{} binds first in both cases", bound(&busy))
    } else {
        format!("{} binds first while clients change, {} while they are idle", bound(&busy), bound(&idle))
    };
    let default_rate = 1.0 / ClusterConfig::default().sync_interval.as_secs_f64();
    let bench_rate = f.sync_rate();
    let per_task = |k: f64, rate: f64| k / (NODES as f64 * rate);
    md.push_str(&format!(
        "### On paper: what one Redis serves\n\n\
         `/peer/task` never waits for Redis, so polls cost Redis nothing directly: its load is the syncs. \
         Every sync a node sends one pipeline with the clients that changed (`HSET` + `PEXPIRE` + `SET` of \
         the bitmap each), then reads in two more pipelined round trips, for every task it knows, all of the \
         task's clients from every node (`HGETALL`) and the bitmaps that changed (`GET` each): every command but the task record's \
         `GET` is per client, so a pull's cost grows with the clients of the tasks the node knows. \
         Measured with {clients:.0} clients on the task: **{:.0} µs of Redis CPU per pull while every client \
         changes** (the piece loop: {:.2} µs and {:.0} B per client, in the larger direction) and **{:.0} µs \
         when none does** (idle: {:.2} µs and {:.0} B per client). One Redis core therefore serves about \
         **{:.0} client-syncs per second** (Σ over the supernodes of the clients of the tasks each knows, \
         × syncs per second) while all clients change and {:.0} while they are idle; a 1 Gbit/s link to \
         Redis would carry {:.0} and {:.0}: {binds}. With {NODES} supernodes that all know a task, that is {:.0} (busy) to {:.0} (idle) clients \
         per Redis at the default `sync_interval` ({:.0} syncs/s), {:.0} to {:.0} at this bench's {:.1} \
         syncs/s.\n\n",
        busy.cpu_us,
        busy.cpu_us / clients,
        busy.bytes_in.max(busy.bytes_out) / clients,
        idle.cpu_us,
        idle.cpu_us / clients,
        idle.bytes_in.max(idle.bytes_out) / clients,
        core(&busy),
        core(&idle),
        link(&busy),
        link(&idle),
        per_task(core(&busy).min(link(&busy)), default_rate),
        per_task(core(&idle).min(link(&idle)), default_rate),
        default_rate,
        per_task(core(&busy).min(link(&busy)), bench_rate),
        per_task(core(&idle).min(link(&idle)), bench_rate),
        bench_rate,
    ));
    // With the clients on the owner, no other node publishes clients of the task: every
    // bitmap the owner reads is one of its own.
    let own = &f.polls[2].idle;
    let own_gets = own.calls("get") as f64 / own.pulls().max(1) as f64;
    let own_get_share = own.commands.get("get").map_or(0, |c| c.1) as f64 / own.exec_us().max(1) as f64;
    md.push_str(&format!(
        "Past that point (from the code, not measured here): Redis runs commands on one thread, so the \
         pipelines queue; a node starts no sync while its last one runs, so syncs get rarer by themselves \
         and what a node knows of the others' clients gets older, while `/peer/task` keeps being answered \
         from memory. A round trip over 2 s fails the sync and makes the next one publish every client \
         again (more load), and a membership renewal over 2 s makes the node serve alone (it then fetches \
         from the origin itself) until Redis answers again. What raises the ceiling: a longer \
         `sync_interval` (linear); less read per sync — the idle figure is almost all re-reading of \
         unchanged clients, so reading only the clients changed since the last sync would make idle tasks \
         nearly free, and a node need not read back its own clients' bitmaps, which it drops (the owner \
         with all the clients sent {own_gets:.0} `GET`s per idle pull, with all {clients:.0} clients its \
         own, {:.0}% of the pull's command time); fewer clients per task hash (publishing only clients \
         that serve pieces, or a bounded sample of them); and sharding: every key carries the one hash tag \
         `{{key_prefix}}`, so a Redis Cluster puts a whole supernode cluster in one slot of one shard, and \
         only a per-task hash tag (pipelines split by slot) would spread tasks over shards.\n",
        own_get_share * 100.0
    ));
}
