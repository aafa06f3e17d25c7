//! Load: 1,000 simulated dfget clients hammering `/peer/task` and piece reports
//! for BENCH_SECONDS (default 60; the recorded figures come from a full 60 s run): errors,
//! throughput, p99 latency and the server's peak RSS. Baseline: the same generator against
//! `GET /_ping` for the same time, same run.
//!
//! The server is the release binary in a child process (its VmHWM from /proc/<pid>/status is the
//! peak RSS); the origin and the generator (`benchkit::gen`, BENCH_CONNS requests in
//! flight, default one per client: every dfget is its own process with one request at a time,
//! and with fewer connections a held poll would stall the clients queued behind it) run here.
//! Clients that finish (600) register again as a new dfget run (new cid, same host and port),
//! so the load never runs dry and every finished run stays on the task as a seed, as a real
//! dfget's uploader does for a while.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use benchkit::gen::{self, GenConfig, Rerun};
use benchkit::report::{measured_line, note_start_load, write_section};
use benchkit::stats::Histogram;
use benchkit::*;

const HIST: &str = "dragonfly_supernode_schedule_duration_milliseconds";

fn main() {
    note_start_load();
    actix_rt::System::new().block_on(run());
}

/// Samples the child's VmRSS once a second while `stop` is false; returns the samples (KiB).
fn sample_rss(pid: u32, stop: Rc<Cell<bool>>) -> actix_web::rt::task::JoinHandle<Vec<u64>> {
    actix_web::rt::spawn(async move {
        let mut v = Vec::new();
        while !stop.get() {
            v.push(proc_rss(pid).1);
            actix_web::rt::time::sleep(Duration::from_secs(1)).await;
        }
        v
    })
}

async fn run() {
    let secs = env_u64("BENCH_SECONDS", 60);
    let clients = env_u64("BENCH_CLIENTS", 1000) as usize;
    let conns = env_u64("BENCH_CONNS", clients as u64) as usize;
    let size_mib = env_u64("BENCH_FILE_MIB", 64);
    let origin = spawn_origin(&[("/load.bin", 60, size_mib * MIB)]);
    let server = BinaryServer::start(env!("CARGO_BIN_EXE_supernode"));
    let (_, rss_idle) = server.rss_kib();
    let url = origin.url("/load.bin");
    let (task_id, pieces) = cache_task(&server, &url).await;

    let cfg = GenConfig {
        duration: Some(Duration::from_secs(secs)),
        rerun: Rerun::SameHost,
        ..GenConfig::piece_loop(server.control(), conns, clients, &url, &task_id, "load")
    };
    let reg_failures = gen::register_all(&cfg, &gen::client(conns)).await;
    let (_, rss_registered) = server.rss_kib();
    println!("{clients} clients registered ({reg_failures} failures); running {secs} s with {conns} in flight");

    let h0 = Histogram::of(&testkit::metrics(&server).await, HIST);
    let stop = Rc::new(Cell::new(false));
    let sampler = sample_rss(server.pid(), stop.clone());
    let cpu0 = server.cpu_secs();
    let load = gen::run_scheduler(&cfg).await;
    let cpu_load = server.cpu_secs() - cpu0;
    stop.set(true);
    let rss_samples = sampler.await.unwrap_or_default();
    let h1 = Histogram::of(&testkit::metrics(&server).await, HIST);
    let hist = h1.minus(&h0);
    let (hwm_load, rss_after) = server.rss_kib();
    let metrics_after = testkit::metrics(&server).await;
    let origin_stats = origin.stats("/load.bin");

    let cpu0 = server.cpu_secs();
    let ping = gen::run_ping(server.control(), conns, None, Some(Duration::from_secs(secs))).await;
    let cpu_ping = server.cpu_secs() - cpu0;
    let (hwm_end, _) = server.rss_kib();

    let all = load.all();
    let task = load.lat("task");
    let suc = load.lat("suc");
    let reg = load.lat("registry");
    let pl = ping.lat("ping");
    let errors = load.errors + reg_failures;
    println!(
        "load: {} requests in {:.1} s = {:.0} rps; errors {errors}; codes {}",
        load.requests(),
        load.elapsed.as_secs_f64(),
        load.rps(),
        load.codes_line()
    );
    println!(
        "  all p50 {:.2} p99 {:.2} max {:.1} ms; task p99 {:.2}; suc p99 {:.2}; registry p99 {:.2}",
        all.pct_ms(50.0),
        all.pct_ms(99.0),
        all.max_ms(),
        task.pct_ms(99.0),
        suc.pct_ms(99.0),
        reg.pct_ms(99.0)
    );
    println!("  error samples {:?}", load.error_samples);
    println!(
        "ping: {} requests = {:.0} rps, p50 {:.2} p99 {:.2}, errors {}",
        ping.requests(),
        ping.rps(),
        pl.pct_ms(50.0),
        pl.pct_ms(99.0),
        ping.errors
    );
    println!("RSS KiB: idle {rss_idle}, registered {rss_registered}, after load {rss_after}, VmHWM after load {hwm_load}, end {hwm_end}");
    let task_clients =
        metrics_after.get("dragonfly_supernode_clients", &[]).map_or_else(|| "?".to_string(), |n| n.to_string());
    println!("clients known to the scheduler after the load: {task_clients}; origin: {origin_stats:?}");

    let quick = secs < 60;
    let mut md = String::new();
    md.push_str(&format!("## Load: 1,000 clients for {secs} s (`load_60s`)\n\n{}\n", measured_line("load_60s")));
    if quick {
        md.push_str(&format!("**Quick run (BENCH_SECONDS={secs}), not the recorded 60 s figures.**\n\n"));
    }
    md.push_str(&format!(
        "Server: the release binary as a child process (peak RSS = its `VmHWM`). {clients} simulated \
         dfget clients on one task (cached {size_mib} MiB, {pieces} pieces), {conns} requests in \
         flight over keep-alive connections (one per client, as each dfget is its own process; generator: one thread in the bench process), for {secs} s: \
         `700/502`, then per piece `/peer/piece/suc` + `701/503`, re-poll on 602; a client that gets \
         600 registers again as a new dfget run (new cid), and its finished run stays on the task as \
         a seed — so the task's client count grows during the run. Every reply is checked (HTTP 200 \
         and the ResultInfo codes dfget expects). Baseline: the same generator on `GET /_ping` for \
         {secs} s right after.\n\n"
    ));
    md.push_str("| workload | requests | errors | req/s | p50 (ms) | p99 (ms) | max (ms) | server CPU (s) |\n|---|---|---|---|---|---|---|---|\n");
    md.push_str(&format!(
        "| piece loop + re-registrations, all | {} | **{errors}** | **{:.0}** | {:.2} | **{:.2}** | {:.1} | {:.1} |\n",
        load.requests(),
        load.rps(),
        all.pct_ms(50.0),
        all.pct_ms(99.0),
        all.max_ms(),
        cpu_load
    ));
    for (name, l) in [("`/peer/task`", &task), ("`/peer/piece/suc`", &suc), ("`/peer/registry`", &reg)] {
        md.push_str(&format!(
            "| — {name} | {} | | {:.0} | {:.2} | {:.2} | {:.1} | |\n",
            l.len(),
            l.len() as f64 / load.elapsed.as_secs_f64(),
            l.pct_ms(50.0),
            l.pct_ms(99.0),
            l.max_ms()
        ));
    }
    md.push_str(&format!(
        "| baseline `GET /_ping` | {} | {} | **{:.0}** | {:.2} | {:.2} | {:.1} | {:.1} |\n\n",
        ping.requests(),
        ping.errors,
        ping.rps(),
        pl.pct_ms(50.0),
        pl.pct_ms(99.0),
        pl.max_ms(),
        cpu_ping
    ));
    md.push_str(&format!(
        "Ratio load ÷ `/_ping`: **{:.2}** of the request rate, p99 {:.2}×. Reply codes: {}. dfget runs \
         completed: {} ({} pieces reported).\n\n",
        load.rps() / ping.rps(),
        all.pct_ms(99.0) / pl.pct_ms(99.0),
        load.codes_line(),
        load.runs_finished,
        load.pieces
    ));
    md.push_str(&format!(
        "Clients known to the scheduler at the end of the load (`dragonfly_supernode_clients`): {task_clients}. \
         The origin saw {} request(s) ({} with a body, {} conditional) for the task's URL during the whole bench.\n\n",
        origin_stats.requests, origin_stats.body_requests, origin_stats.conditional
    ));
    let windows: Vec<String> = load
        .task_windows
        .iter()
        .enumerate()
        .filter(|(i, _)| (*i as u64) * 10 < secs)
        .map(|(i, l)| format!("{}–{} s: {} polls, p99 {:.2} ms", i * 10, i * 10 + 10, l.len(), l.pct_ms(99.0)))
        .collect();
    md.push_str(&format!("`/peer/task` over time: {}.\n\n", windows.join("; ")));
    md.push_str(&format!(
        "Server-side `{HIST}` during the load: {} polls, mean {:.4} ms, p50 {}, p99 {}. \
         Per bucket: {}.\n\n",
        hist.count,
        hist.mean(),
        hist.pct_text(50.0),
        hist.pct_text(99.0),
        hist.table()
    ));
    let max_sample = rss_samples.iter().copied().max().unwrap_or(0);
    md.push_str(&format!(
        "Server memory: RSS {:.1} MiB idle, {:.1} MiB with the 1,000 clients registered, {:.1} MiB after \
         the load; **peak RSS (VmHWM) {:.1} MiB** (1 s samples: max {:.1} MiB).\n",
        rss_idle as f64 / 1024.0,
        rss_registered as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        hwm_load as f64 / 1024.0,
        max_sample as f64 / 1024.0
    ));
    if !load.error_samples.is_empty() {
        md.push_str(&format!("\nError samples: `{:?}`\n", load.error_samples));
    }
    println!("{md}");
    write_section("load_60s", &md);
}
