//! P2P where the network is the limit: N peer hosts get one file through the supernode while
//! the origin's link is slow, on the testbed (`testkit::testbed`: hosts in network namespaces,
//! links shaped with `tc tbf`). Against, in the same run: the same hosts downloading straight
//! from the origin with curl, and the physical bound (the file over the origin link, plus one
//! piece over a host link).
//!
//! Each swarm starts cold: a fresh supernode (empty cache) and a new file, so the CDN fetches
//! the source during the run. Needs root and iproute2; elsewhere it says why and writes nothing.
//!
//! Parameters (defaults in brackets):
//! * `BENCH_NET_CASES` [`64@50M,256@200M`]: file MiB @ origin rate, each run for every N of
//! * `BENCH_NET_HOSTS` [`1,4,16`];
//! * `BENCH_NET_BIG` [`1024@1G`] on `BENCH_NET_BIG_HOSTS` [`16`] hosts (empty: none);
//! * `BENCH_NET_INGEST` [`1024@1G`]: CDN ingest against curl, source MiB @ origin rate, each
//!   `BENCH_NET_INGEST_REPS` [`3`] times (empty: none);
//! * `BENCH_NET_PEER_RATE`, `BENCH_NET_SUPERNODE_RATE` [`1G`]: both directions of those links;
//! * `BENCH_NET_SUPERNODE_CONFIG`: a config file for the supernode (`--config`);
//! * `BENCH_NET_SCRATCH` [temp dir]: where caches and downloads go;
//! * `BENCH_NET_DUMP` : a directory that gets every swarm's peer reports as JSON (piece
//!   timelines: who fetched which piece from whom, when).

mod ingest;

use std::fmt::Write as _;
use std::path::PathBuf;

use benchkit::report::{measured_line, note_start_load, write_section};
use benchkit::stats::median;
use benchkit::MIB;
use testkit::testbed::{
    run_host_role_if_asked, CpuUse, DirectRun, HostRole, Link, Rate, SwarmRun, Testbed, TestbedSpec, CPU_BOUND_SHARE,
};

/// One file size at one origin rate, for several host counts.
#[derive(Clone, Debug)]
struct Case {
    file_mib: u64,
    origin_up: Rate,
    hosts: Vec<usize>,
}

struct Row {
    case: Case,
    hosts: usize,
    swarm: SwarmRun,
    direct: DirectRun,
}

fn env_text(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn env_rate(name: &str, default: &str) -> Rate {
    Rate::parse(&env_text(name, default)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn host_counts(name: &str, default: &str) -> Vec<usize> {
    let text = env_text(name, default);
    text.split(',').map(|n| n.trim().parse().unwrap_or_else(|_| panic!("{name}: {n:?} is not a host count"))).collect()
}

/// `64@50M,256@200M` → cases on `hosts`.
fn parse_cases(name: &str, default: &str, hosts: &[usize]) -> Vec<Case> {
    let text = env_text(name, default);
    text.split(',')
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            let (mib, rate) = c.split_once('@').unwrap_or_else(|| panic!("{name}: {c:?} is not MiB@rate"));
            let file_mib = mib.trim().parse().unwrap_or_else(|_| panic!("{name}: {mib:?} is not a size in MiB"));
            let origin_up = Rate::parse(rate).unwrap_or_else(|e| panic!("{name}: {e}"));
            Case { file_mib, origin_up, hosts: hosts.to_vec() }
        })
        .collect()
}

/// Free bytes on the file system of `dir`, from `df`.
fn free_bytes(dir: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df").arg("-Pk").arg(dir).output().expect("df");
    let text = String::from_utf8_lossy(&out.stdout);
    let kib = text.lines().nth(1).and_then(|l| l.split_whitespace().nth(3)).and_then(|v| v.parse::<u64>().ok());
    kib.unwrap_or(0) * 1024
}

/// Why `what` cannot run, when `dir` has less than `needed` bytes free (also printed).
fn short_of_space(dir: &std::path::Path, needed: u64, what: &str) -> Option<String> {
    if free_bytes(dir) >= needed {
        return None;
    }
    let why = format!("{what}: less than {} MiB free in {dir:?}", needed / MIB);
    println!("SKIPPED {why}");
    Some(why)
}

fn main() {
    run_host_role_if_asked();
    note_start_load();
    let hosts = host_counts("BENCH_NET_HOSTS", "1,4,16");
    let mut cases = parse_cases("BENCH_NET_CASES", "64@50M,256@200M", &hosts);
    cases.extend(parse_cases("BENCH_NET_BIG", "1024@1G", &host_counts("BENCH_NET_BIG_HOSTS", "16")));
    let ingest_reps = env_text("BENCH_NET_INGEST_REPS", "3").parse().expect("BENCH_NET_INGEST_REPS: a count");
    let ingest_cases = ingest::parse_ingest_cases("BENCH_NET_INGEST", "1024@1G", ingest_reps);
    let most_hosts = cases.iter().flat_map(|c| c.hosts.iter().copied()).max().unwrap_or(1);
    let first_rate = cases.first().map(|c| c.origin_up).or(ingest_cases.first().map(|c| c.origin_up));
    let mut spec =
        TestbedSpec::new(most_hosts, first_rate.expect("BENCH_NET_CASES, BENCH_NET_BIG or BENCH_NET_INGEST"));
    spec.peer = Link::symmetric(env_rate("BENCH_NET_PEER_RATE", "1G"));
    spec.supernode = Link::symmetric(env_rate("BENCH_NET_SUPERNODE_RATE", "1G"));
    if let Ok(dir) = std::env::var("BENCH_NET_SCRATCH") {
        spec.scratch = PathBuf::from(dir);
    }
    let config = std::env::var("BENCH_NET_SUPERNODE_CONFIG").ok();
    let supernode_args: Vec<&str> = config.iter().flat_map(|c| ["--config", c.as_str()]).collect();
    let dump = std::env::var("BENCH_NET_DUMP").ok().map(PathBuf::from);

    let mut testbed = match Testbed::build(&spec) {
        Ok(t) => t,
        Err(why) => {
            println!("p2p_network: SKIPPED, the testbed cannot be built here: {why}");
            return;
        }
    };
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for case in &cases {
        testbed.set_link(HostRole::Origin, Link { up: case.origin_up, down: spec.origin.down });
        for &n in &case.hosts {
            let len = case.file_mib * MIB;
            // the swarm's outputs, the cache, then the direct downloads' outputs, and a margin
            let needed = (n as u64 + 1) * len + 2048 * MIB;
            if let Some(why) = short_of_space(&spec.scratch, needed, &format!("{} MiB × {n}", case.file_mib)) {
                skipped.push(why);
                continue;
            }
            let path = format!("/net-{}m-{n}.bin", case.file_mib);
            testbed.origin().add_generated(&path, 7000 + case.file_mib * 100 + n as u64, len);
            let md5 = testbed.origin().content(&path).md5_hex();
            let supernode = testbed.start_supernode(env!("CARGO_BIN_EXE_supernode"), &supernode_args);
            let swarm = testbed.run_swarm(&supernode, &path, n);
            drop(supernode);
            for p in &swarm.peers {
                assert_eq!(p.report.md5, md5, "peer host {}: output md5", p.host);
            }
            if let Some(dir) = &dump {
                std::fs::create_dir_all(dir).expect("the dump directory");
                let reports: Vec<_> = swarm.peers.iter().map(|p| &p.report).collect();
                let file = dir.join(format!("{}m-{n}.json", case.file_mib));
                std::fs::write(&file, serde_json::to_string_pretty(&reports).unwrap()).expect("write the dump");
            }
            print_swarm_detail(case, n, &swarm);
            let direct = testbed.run_direct(&path, n);
            println!(
                "  direct: {:.2} s, slowest host {:.2} s, origin {} B, CPU {}",
                direct.wall.as_secs_f64(),
                direct.slowest().1.as_secs_f64(),
                direct.origin_bytes,
                cpu(&direct.cpu)
            );
            rows.push(Row { case: case.clone(), hosts: n, swarm, direct });
        }
    }
    let mut ingests = Vec::new();
    for case in &ingest_cases {
        let needed = 2 * case.file_mib * MIB + 2048 * MIB;
        if let Some(why) = short_of_space(&spec.scratch, needed, &format!("ingest of {} MiB", case.file_mib)) {
            skipped.push(why);
            continue;
        }
        let start = |t: &Testbed| t.start_supernode(env!("CARGO_BIN_EXE_supernode"), &supernode_args);
        ingests.push((case.clone(), ingest::run_case(&mut testbed, &spec, case, start)));
    }
    let mut md = section(&rows, &skipped, &spec, config.as_deref());
    ingest::write_ingest(&mut md, &ingests, spec.supernode);
    println!("{md}");
    write_section("p2p_network", &md);
}

/// What a swarm run did, on stdout: per host, and per piece when its first copy landed.
fn print_swarm_detail(case: &Case, n: usize, run: &SwarmRun) {
    println!(
        "{} MiB at {} × {n} hosts: swarm {:.2} s (bound {:.2} s), origin {} B, supernode sent {} B of pieces \
         ({} B on its link), peers {} B, {} of {} polls 602, CPU {}, supernode CPU {:.2} s",
        case.file_mib,
        case.origin_up,
        run.wall.as_secs_f64(),
        run.bound().as_secs_f64(),
        run.origin_bytes,
        run.supernode_upload_bytes(),
        run.supernode_link_bytes,
        run.peer_upload_bytes(),
        run.waits(),
        run.polls(),
        cpu(&run.cpu),
        run.supernode_cpu_secs
    );
    let start = run.peers.iter().map(|p| p.report.started_at_ms).min().unwrap_or(0);
    for p in &run.peers {
        let s = &p.report.stats;
        println!(
            "  host {}: last byte {:.2} s, md5 checked {:.2} s (own {:.2} s), {} pieces from the supernode, {} from peers, polls {:?}, served {}",
            p.host,
            p.last_byte_after.as_secs_f64(),
            p.finished_after.as_secs_f64(),
            p.report.duration_secs,
            s.pieces_from_supernode,
            s.pieces_from_peers,
            s.poll_codes,
            s.uploads_served
        );
    }
    let mut first: std::collections::BTreeMap<u64, (u64, bool)> = Default::default();
    for f in run.peers.iter().flat_map(|p| &p.report.stats.fetched) {
        let at = f.written_at_ms.saturating_sub(start);
        let e = first.entry(f.piece_num).or_insert((at, f.from_supernode));
        if at < e.0 {
            *e = (at, f.from_supernode);
        }
    }
    let line: Vec<String> = first.iter().map(|(k, (at, _))| format!("{k}@{:.1}", *at as f64 / 1000.0)).collect();
    println!("  first copy of each piece written at (s): {}", line.join(" "));
}

fn times(x: f64) -> String {
    format!("{x:.2}×")
}

/// The run's own share, marked when CPU-bound, and the machine's in brackets.
fn cpu(used: &CpuUse) -> String {
    let mark = if used.cpu_bound() { " **CPU-bound**" } else { "" };
    format!("{:.0} %{mark} ({:.0} %)", 100.0 * used.own_share(), 100.0 * used.machine_busy)
}

fn section(rows: &[Row], skipped: &[String], spec: &TestbedSpec, config: Option<&str>) -> String {
    let mut md = format!(
        "## P2P on a shaped network: hosts behind a slow origin link (`p2p_network`)\n\n{}\n",
        measured_line("p2p_network")
    );
    let supernode = match config {
        Some(c) => format!("the config file `{c}`"),
        None => "its defaults (`[cdn] max_bandwidth` 200MB less `system_reserved_bandwidth` 20MB: CDN source reads \
                 capped at 180 MiB/s, about 1.5 Gbit/s, above every origin link here; `peer_up_limit` 5, \
                 `cdn_up_limit` 4, `peer_down_limit` 4)"
            .to_string(),
    };
    let _ = write!(
        md,
        "The testbed (`tests/support/src/testbed/`): one network namespace per host on a private /24 behind a bridge, \
         every link held to its rate in both directions by `tc tbf` (which passes about 95 % of the rate as TCP \
         goodput). An **origin** host (the test origin, generated bytes from memory) whose uplink is the case's \
         origin rate; a **supernode** host ({} each way) running the release binary with {supernode}; N **peer** \
         hosts ({} each way), each running one `dfget-sim` process (dfget 1.0.6's wire behaviour), which keeps \
         serving pieces after its own download until every host is done. Every swarm starts cold: a fresh supernode \
         and a new file, so the CDN fetches the source during the run; every output's md5 is checked.\n\n\
         **Direct**: the same N hosts each run `curl` straight from the origin at once, in the same run. **Bound**: \
         the file over the origin link plus one piece over a host link (every byte must leave the origin once). \
         Times run from the start of the first host's process to the last host's last byte, as curl's \
         do; **md5s checked** runs on until every host's dfget has ended, after checking its whole file's md5 as \
         dfget does (on the testbed every host does that at the same moment on the same two cores, which 16 \
         hosts of 64 MiB take about 0.9 s for; a real host uses its own CPU). Bytes are ×  the file \
         size: origin body bytes; piece bytes the peers fetched from the supernode; bytes the peers' uploaders \
         served. **602**: share of `/peer/task` polls answered 602 (wait: dfget sleeps a random, doubling \
         back-off). **CPU**: the run's own share of the 2 cores (its processes: the harness with the origin, the \
         peers or curls, the supernode; plus interrupt and softirq time, where the links' packet work is done), \
         marked CPU-bound above {:.0} %; in brackets the machine's busy share from `/proc/stat`, which also counts \
         whatever else ran on this shared machine (see the load average above).\n\n",
        spec.supernode.up,
        spec.peer.up,
        100.0 * CPU_BOUND_SHARE
    );
    md.push_str(
        "| file, origin link | hosts | swarm (s) | swarm, md5s checked (s) | direct (s) | bound (s) | swarm ÷ direct | swarm ÷ bound | slowest host: swarm / direct (s) | origin bytes | supernode upload | peer upload | pieces from peers | 602 | CPU: swarm / direct |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let (s, d) = (&r.swarm, &r.direct);
        let file = s.file_len as f64;
        let pieces = s.pieces_from_peers() + s.pieces_from_supernode();
        let _ = writeln!(
            md,
            "| {} MiB, {} | {} | **{:.2}** | {:.2} | {:.2} | {:.2} | **{}** | **{}** | {:.2} / {:.2} | {} | {} | {} | {:.0} % | {:.0} % | {} / {} |",
            r.case.file_mib,
            r.case.origin_up,
            r.hosts,
            s.wall.as_secs_f64(),
            s.verified.as_secs_f64(),
            d.wall.as_secs_f64(),
            s.bound().as_secs_f64(),
            times(s.wall.as_secs_f64() / d.wall.as_secs_f64()),
            times(s.wall.as_secs_f64() / s.bound().as_secs_f64()),
            s.slowest().last_byte_after.as_secs_f64(),
            d.slowest().1.as_secs_f64(),
            times(s.origin_bytes as f64 / file),
            times(s.supernode_upload_bytes() as f64 / file),
            times(s.peer_upload_bytes() as f64 / file),
            100.0 * s.pieces_from_peers() as f64 / pieces.max(1) as f64,
            100.0 * s.wait_share(),
            cpu(&s.cpu),
            cpu(&d.cpu)
        );
    }
    md.push('\n');
    for r in rows {
        let s = &r.swarm;
        let own: Vec<f64> = s.peers.iter().map(|p| p.report.duration_secs).collect();
        let _ = writeln!(
            md,
            "- {} MiB × {}: per-host download time min {:.2} / median {:.2} / max {:.2} s; {} polls, {} answered 602; \
             supernode link {:.2}× the file (pieces, replies and headers); CPU of the run {:.1} s (peers {:.1}, supernode \
             {:.1}, harness and origin {:.1}, interrupts {:.1}); direct origin bytes {}.",
            r.case.file_mib,
            r.hosts,
            own.iter().cloned().fold(f64::INFINITY, f64::min),
            median(&own),
            own.iter().cloned().fold(0.0, f64::max),
            s.polls(),
            s.waits(),
            s.supernode_link_bytes as f64 / s.file_len as f64,
            s.cpu.own_secs + s.cpu.irq_secs,
            s.peers_cpu_secs(),
            s.supernode_cpu_secs,
            (s.cpu.own_secs - s.peers_cpu_secs() - s.supernode_cpu_secs).max(0.0),
            s.cpu.irq_secs,
            times(r.direct.origin_bytes as f64 / r.direct.file_len as f64)
        );
    }
    for why in skipped {
        let _ = writeln!(md, "- Not run: {why}.");
    }
    md
}
