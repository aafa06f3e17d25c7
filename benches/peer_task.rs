//! `/peer/task` throughput and latency with 1,000 registered clients on one task (issue 4,
//! Benchmarks), against `GET /_ping` with the same generator in the same run.
//!
//! The server is the release binary in a child process; the origin (a cached 64 MiB file) and
//! the load generator (benches/support/gen.rs: BENCH_CONNS requests in flight, default 32, over
//! keep-alive connections, one thread) run in this process. Each of the BENCH_CLIENTS (1,000)
//! clients runs dfget's piece loop to the end: 700/502, then per handed-out piece a
//! `/peer/piece/suc` and a 701/503 poll, until 600. The server's
//! `dragonfly_supernode_schedule_duration_milliseconds` histogram is read from `/metrics` before
//! and after. The baseline sends as many `/_ping` requests as the piece loop sent in total.

mod support;

use std::time::Duration;

use support::gen::{self, GenConfig};
use support::*;

const HIST: &str = "dragonfly_supernode_schedule_duration_milliseconds";

fn main() {
    note_start_load();
    actix_rt::System::new().block_on(run());
}

async fn run() {
    let clients = env_u64("BENCH_CLIENTS", 1000) as usize;
    let conns = env_u64("BENCH_CONNS", 32) as usize;
    let size_mib = env_u64("BENCH_FILE_MIB", 64);
    let origin = spawn_origin(&[("/task.bin", 42, size_mib * MIB)]);
    let server = ChildServer::start().await;
    let client = common::client();
    let url = origin.url("/task.bin");
    let data = register(&client, server.control, &url, "127.0.0.1-trigger", 19999).await;
    let task_id = data["taskId"].as_str().unwrap().to_string();
    let info = wait_cdn_success(&client, server.control, &task_id, Duration::from_secs(120)).await;
    let pieces = info["pieceTotal"].as_u64().unwrap_or(0);
    println!("task {task_id}: {} pieces", pieces);

    let cfg = GenConfig {
        control: server.control,
        conns,
        clients,
        url: url.clone(),
        task_id: task_id.clone(),
        duration: None,
        rerun: false,
        port_base: 20000,
        tag: "pt".into(),
    };
    let http = gen::client(conns);
    let reg_failures = gen::register_all(&cfg, &http).await;
    assert_eq!(reg_failures, 0, "registrations failed");
    let (_, rss_registered) = server.rss_kib();

    let metrics_url = server.url("/metrics");
    let h0 = Histogram::parse(&fetch_text(&client, &metrics_url).await, HIST);
    let cpu0 = server.cpu_secs();
    let sched = gen::run_scheduler(&cfg).await;
    let cpu_sched = server.cpu_secs() - cpu0;
    let h1 = Histogram::parse(&fetch_text(&client, &metrics_url).await, HIST);
    let hist = h1.minus(&h0);

    let cpu0 = server.cpu_secs();
    let ping = gen::run_ping(server.control, conns, Some(sched.requests()), None).await;
    let cpu_ping = server.cpu_secs() - cpu0;
    let (hwm, _) = server.rss_kib();

    let task = sched.lat("task");
    let suc = sched.lat("suc");
    let all = sched.all();
    let pl = ping.lat("ping");
    println!("piece loop: {} requests in {:.2} s = {:.0} rps; codes {}", sched.requests(), sched.elapsed.as_secs_f64(), sched.rps(), sched.codes_line());
    println!("  /peer/task p50 {:.2} ms p99 {:.2} ms; /peer/piece/suc p50 {:.2} p99 {:.2}", task.pct_ms(50.0), task.pct_ms(99.0), suc.pct_ms(50.0), suc.pct_ms(99.0));
    println!("  errors {} {:?}", sched.errors, sched.error_samples);
    println!("ping: {} requests in {:.2} s = {:.0} rps; p50 {:.2} ms p99 {:.2} ms; errors {}", ping.requests(), ping.elapsed.as_secs_f64(), ping.rps(), pl.pct_ms(50.0), pl.pct_ms(99.0), ping.errors);
    println!("schedule histogram: count {} mean {:.4} ms p50≤{} p99≤{}; {}", hist.count, hist.mean(), hist.pct_upper(50.0), hist.pct_upper(99.0), hist.table());

    let mut md = String::new();
    md.push_str(&format!("## `/peer/task` with 1,000 clients (`peer_task`)\n\n{}\n", measured_line("peer_task")));
    md.push_str(&format!(
        "Server: the release binary (`supernode`) as a child process. {clients} clients registered on \
         one task (a cached {size_mib} MiB file, {pieces} pieces), each driven through dfget's piece \
         loop to the end by a Rust generator in the bench process ({conns} requests in flight over \
         keep-alive connections, one thread): `700/502` first, then per handed-out piece \
         `/peer/piece/suc` and a `701/503` poll, re-polling on 602, until 600. Baseline: the same \
         generator sending the same number of `GET /_ping` requests, same run. Latency is client-side \
         (request sent → body read).\n\n"
    ));
    md.push_str("| workload | requests | errors | wall (s) | req/s | p50 (ms) | p99 (ms) | max (ms) | server CPU (s) |\n|---|---|---|---|---|---|---|---|---|\n");
    md.push_str(&format!(
        "| piece loop, all requests | {} | {} | {:.2} | **{:.0}** | {:.2} | {:.2} | {:.1} | {:.2} |\n",
        sched.requests(),
        sched.errors,
        sched.elapsed.as_secs_f64(),
        sched.rps(),
        all.pct_ms(50.0),
        all.pct_ms(99.0),
        all.max_ms(),
        cpu_sched
    ));
    md.push_str(&format!(
        "| — of which `/peer/task` | {} | | | {:.0} | **{:.2}** | **{:.2}** | {:.1} | |\n",
        task.len(),
        sched.kind_rps("task"),
        task.pct_ms(50.0),
        task.pct_ms(99.0),
        task.max_ms()
    ));
    md.push_str(&format!(
        "| — of which `/peer/piece/suc` | {} | | | {:.0} | {:.2} | {:.2} | {:.1} | |\n",
        suc.len(),
        sched.kind_rps("suc"),
        suc.pct_ms(50.0),
        suc.pct_ms(99.0),
        suc.max_ms()
    ));
    md.push_str(&format!(
        "| baseline `GET /_ping` | {} | {} | {:.2} | **{:.0}** | {:.2} | {:.2} | {:.1} | {:.2} |\n\n",
        ping.requests(),
        ping.errors,
        ping.elapsed.as_secs_f64(),
        ping.rps(),
        pl.pct_ms(50.0),
        pl.pct_ms(99.0),
        pl.max_ms(),
        cpu_ping
    ));
    md.push_str(&format!(
        "Ratio piece loop ÷ `/_ping`: **{:.2}** of the request rate; `/peer/task` p50 {:.2}× and p99 \
         {:.2}× the ping latency. Server CPU per request: {:.0} µs (piece loop) vs {:.0} µs (ping).\n\n",
        sched.rps() / ping.rps(),
        task.pct_ms(50.0) / pl.pct_ms(50.0),
        task.pct_ms(99.0) / pl.pct_ms(99.0),
        cpu_sched / sched.requests() as f64 * 1e6,
        cpu_ping / ping.requests() as f64 * 1e6
    ));
    md.push_str(&format!(
        "Reply codes: {}. All {} clients finished: {} runs ended with 600; {} pieces reported.\n\n",
        sched.codes_line(),
        clients,
        sched.runs_finished,
        sched.pieces
    ));
    md.push_str(&format!(
        "Server-side `{HIST}` over the piece loop (time inside the scheduler actor per poll): \
         {} polls, mean **{:.4} ms**, p50 ≤ {} ms, p99 ≤ {} ms (bucket upper bounds). Per bucket: {}.\n\n",
        hist.count,
        hist.mean(),
        hist.pct_upper(50.0),
        hist.pct_upper(99.0),
        hist.table()
    ));
    md.push_str(&format!(
        "Server RSS: {:.1} MiB after the 1,000 registrations, peak (VmHWM) {:.1} MiB.\n",
        rss_registered as f64 / 1024.0,
        hwm as f64 / 1024.0
    ));
    if sched.errors > 0 {
        md.push_str(&format!("\nError samples: `{:?}`\n", sched.error_samples));
    }
    println!("{md}");
    write_section("peer_task", &md);
}
