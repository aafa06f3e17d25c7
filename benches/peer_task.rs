//! `/peer/task` throughput and latency with 1,000 registered clients on one task, against
//! `GET /_ping` with the same generator in the same run.
//!
//! The server is the release binary in a child process; the origin (a cached 64 MiB file) and
//! the load generator (`benchkit::gen`: BENCH_CONNS requests in flight, default 32, over
//! keep-alive connections, one thread) run in this process. Each of the BENCH_CLIENTS (1,000)
//! clients runs dfget's piece loop to the end: 700/502, then per handed-out piece a
//! `/peer/piece/suc` and a 701/503 poll, until 600. The server's
//! `dragonfly_supernode_schedule_duration_milliseconds` histogram is read from `/metrics` before
//! and after. The baseline sends as many `/_ping` requests as the piece loop sent in total.

use std::time::Duration;

use benchkit::gen::{self, GenConfig, Rerun};
use benchkit::report::{measured_line, note_start_load, write_section};
use benchkit::stats::{median, Histogram, Latencies};
use benchkit::*;

const HIST: &str = "dragonfly_supernode_schedule_duration_milliseconds";

fn main() {
    note_start_load();
    actix_rt::System::new().block_on(run());
}

struct Round {
    sched: gen::GenResult,
    ping: gen::GenResult,
    hist: Histogram,
    cpu_sched: f64,
    cpu_ping: f64,
}

async fn run() {
    let clients = env_u64("BENCH_CLIENTS", 1000) as usize;
    let conns = env_u64("BENCH_CONNS", 32) as usize;
    let size_mib = env_u64("BENCH_FILE_MIB", 64);
    let rounds = env_u64("BENCH_ROUNDS", 5) as usize;
    let paths: Vec<String> = (0..rounds).map(|r| format!("/task-{r}.bin")).collect();
    let files: Vec<(&str, u64, u64)> =
        paths.iter().enumerate().map(|(r, p)| (p.as_str(), 42 + r as u64, size_mib * MIB)).collect();
    let origin = spawn_origin(&files);
    let server = BinaryServer::start(env!("CARGO_BIN_EXE_supernode"));
    let mut out = Vec::new();
    let mut pieces = 0;
    let mut rss_registered = 0;
    for (r, path) in paths.iter().enumerate() {
        let url = origin.url(path);
        let data = register(&server, &url, &format!("127.0.0.1-trigger-{r}"), 19999).await;
        let task_id = data["taskId"].as_str().unwrap().to_string();
        let info = testkit::wait_success(&server, &task_id, Duration::from_secs(120)).await;
        pieces = info["pieceTotal"].as_u64().unwrap_or(0);
        let cfg = GenConfig {
            control: server.control(),
            conns,
            clients,
            url: url.clone(),
            task_id: task_id.clone(),
            duration: None,
            rerun: Rerun::Off,
            port_base: 20000,
            tag: format!("pt{r}"),
        };
        let http = gen::client(conns);
        let reg_failures = gen::register_all(&cfg, &http).await;
        assert_eq!(reg_failures, 0, "registrations failed");
        if r == 0 {
            rss_registered = server.rss_kib().1;
        }
        let h0 = Histogram::of(&testkit::metrics(&server).await, HIST);
        let cpu0 = server.cpu_secs();
        let sched = gen::run_scheduler(&cfg).await;
        let cpu_sched = server.cpu_secs() - cpu0;
        let h1 = Histogram::of(&testkit::metrics(&server).await, HIST);
        let cpu0 = server.cpu_secs();
        let ping = gen::run_ping(server.control(), conns, Some(sched.requests()), None).await;
        let cpu_ping = server.cpu_secs() - cpu0;
        let (task, pl) = (sched.lat("task"), ping.lat("ping"));
        println!(
            "round {}: piece loop {} req, {:.0} rps, /peer/task p50 {:.2} p99 {:.2} ms, errors {}; ping {:.0} rps p50 {:.2} p99 {:.2}; codes {}",
            r + 1,
            sched.requests(),
            sched.rps(),
            task.pct_ms(50.0),
            task.pct_ms(99.0),
            sched.errors,
            ping.rps(),
            pl.pct_ms(50.0),
            pl.pct_ms(99.0),
            sched.codes_line()
        );
        if sched.errors > 0 {
            println!("  error samples: {:?}", sched.error_samples);
        }
        out.push(Round { sched, ping, hist: h1.minus(&h0), cpu_sched, cpu_ping });
    }
    let (hwm, _) = server.rss_kib();

    // pooled over the rounds
    let mut lat = std::collections::BTreeMap::<&str, Latencies>::new();
    for r in &out {
        for (k, l) in r.sched.lat.iter().chain(r.ping.lat.iter()) {
            lat.entry(k).or_default().extend(l);
        }
    }
    let (task, suc, pl) = (lat["task"].clone(), lat["suc"].clone(), lat["ping"].clone());
    let mut all = task.clone();
    all.extend(&suc);
    let rps: Vec<f64> = out.iter().map(|r| r.sched.rps()).collect();
    let task_rps: Vec<f64> = out.iter().map(|r| r.sched.kind_rps("task")).collect();
    let suc_rps: Vec<f64> = out.iter().map(|r| r.sched.kind_rps("suc")).collect();
    let ping_rps: Vec<f64> = out.iter().map(|r| r.ping.rps()).collect();
    let ratios: Vec<f64> = out.iter().map(|r| r.sched.rps() / r.ping.rps()).collect();
    let requests: u64 = out.iter().map(|r| r.sched.requests()).sum();
    let ping_requests: u64 = out.iter().map(|r| r.ping.requests()).sum();
    let errors: u64 = out.iter().map(|r| r.sched.errors).sum();
    let ping_errors: u64 = out.iter().map(|r| r.ping.errors).sum();
    let cpu_sched: f64 = out.iter().map(|r| r.cpu_sched).sum();
    let cpu_ping: f64 = out.iter().map(|r| r.cpu_ping).sum();
    let wall: f64 = out.iter().map(|r| r.sched.elapsed.as_secs_f64()).sum();
    let ping_wall: f64 = out.iter().map(|r| r.ping.elapsed.as_secs_f64()).sum();
    let mut hist = Histogram::default();
    for r in &out {
        if hist.buckets.is_empty() {
            hist = r.hist.clone();
        } else {
            for (b, (_, n)) in hist.buckets.iter_mut().zip(r.hist.buckets.iter()) {
                b.1 += n;
            }
            hist.sum += r.hist.sum;
            hist.count += r.hist.count;
        }
    }
    let mut codes = std::collections::BTreeMap::<String, u64>::new();
    for r in &out {
        for (k, v) in &r.sched.codes {
            *codes.entry(k.clone()).or_default() += v;
        }
    }
    let codes_line = codes.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ");
    let finished: u64 = out.iter().map(|r| r.sched.runs_finished).sum();
    let reported: u64 = out.iter().map(|r| r.sched.pieces).sum();
    let fmt_all = |v: &[f64]| v.iter().map(|s| format!("{s:.0}")).collect::<Vec<_>>().join(" / ");

    let mut md = String::new();
    md.push_str(&format!("## `/peer/task` with {clients} clients (`peer_task`)\n\n{}\n", measured_line("peer_task")));
    md.push_str(&format!(
        "Server: the release binary (`supernode`) as a child process. {rounds} rounds; in each, {clients} \
         clients register on a fresh task (a cached {size_mib} MiB file, {pieces} pieces) and a Rust \
         generator in the bench process ({conns} requests in flight over keep-alive connections, one \
         thread) drives every client through dfget's piece loop to the end: `700/502` first, then per \
         handed-out piece `/peer/piece/suc` and a `701/503` poll (no bytes move), re-polling on 602, \
         until 600. Baseline, right after each round: the same generator sending as many \
         `GET /_ping` requests. Latency is client-side (request sent → body read), pooled over the \
         rounds; req/s is the median round (all rounds listed).\n\n"
    ));
    md.push_str("| workload | requests | errors | req/s: median (rounds) | p50 (ms) | p99 (ms) | max (ms) | server CPU per request |\n|---|---|---|---|---|---|---|---|\n");
    md.push_str(&format!(
        "| piece loop, all requests | {requests} | {errors} | **{:.0}** ({}) | {:.2} | {:.2} | {:.1} | {:.0} µs |\n",
        median(&rps),
        fmt_all(&rps),
        all.pct_ms(50.0),
        all.pct_ms(99.0),
        all.max_ms(),
        cpu_sched / requests as f64 * 1e6
    ));
    md.push_str(&format!(
        "| — `/peer/task` | {} | | **{:.0}** ({}) | **{:.2}** | **{:.2}** | {:.1} | |\n",
        task.len(),
        median(&task_rps),
        fmt_all(&task_rps),
        task.pct_ms(50.0),
        task.pct_ms(99.0),
        task.max_ms()
    ));
    md.push_str(&format!(
        "| — `/peer/piece/suc` | {} | | {:.0} ({}) | {:.2} | {:.2} | {:.1} | |\n",
        suc.len(),
        median(&suc_rps),
        fmt_all(&suc_rps),
        suc.pct_ms(50.0),
        suc.pct_ms(99.0),
        suc.max_ms()
    ));
    md.push_str(&format!(
        "| baseline `GET /_ping` | {ping_requests} | {ping_errors} | **{:.0}** ({}) | {:.2} | {:.2} | {:.1} | {:.0} µs |\n\n",
        median(&ping_rps),
        fmt_all(&ping_rps),
        pl.pct_ms(50.0),
        pl.pct_ms(99.0),
        pl.max_ms(),
        cpu_ping / ping_requests as f64 * 1e6
    ));
    md.push_str(&format!(
        "Ratio piece loop ÷ `/_ping` request rate: **{:.2}** (median of the per-round ratios {}); \
         `/peer/task` latency p50 {:.2}× and p99 {:.2}× the ping's. Wall time: {:.2} s of piece loop, \
         {:.2} s of ping.\n\n",
        median(&ratios),
        ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" / "),
        task.pct_ms(50.0) / pl.pct_ms(50.0),
        task.pct_ms(99.0) / pl.pct_ms(99.0),
        wall,
        ping_wall
    ));
    md.push_str(&format!(
        "Reply codes: {codes_line}. Every client finished ({finished} runs ended with 600 of {}); \
         {reported} pieces reported.\n\n",
        clients * rounds
    ));
    md.push_str(&format!(
        "Server side, `{HIST}` during the piece loops (time inside the scheduler actor per poll): \
         {} polls, mean **{:.4} ms**, p50 {}, p99 {} (bucket upper bounds). Per bucket: {}.\n\n",
        hist.count,
        hist.mean(),
        hist.pct_text(50.0),
        hist.pct_text(99.0),
        hist.table()
    ));
    md.push_str(&format!(
        "Server RSS: {:.1} MiB with the first {clients} clients registered; peak (VmHWM) {:.1} MiB at the end.\n",
        rss_registered as f64 / 1024.0,
        hwm as f64 / 1024.0
    ));
    let samples: Vec<&String> = out.iter().flat_map(|r| &r.sched.error_samples).take(10).collect();
    if !samples.is_empty() {
        md.push_str(&format!("\nError samples: `{samples:?}`\n"));
    }
    println!("{md}");
    write_section("peer_task", &md);
}
