//! Soak: the `load_60s` workload for BENCH_SECONDS (default 600), where the original's
//! supernodes died of memory that grew with dead peers.
//!
//! 1,000 simulated dfget clients, each with its own connection (BENCH_CONNS, default one per
//! client), re-download continuously, and every finished run's host
//! vanishes without `/peer/service/down` (`Rerun::NewHost`): the next run is a new host, a
//! piece later handed out from the vanished one fails (`701/500`), and only GC removes it.
//! So finished runs pile up until GC's `peer_expire_time` (here BENCH_EXPIRE_SECS, default
//! 120, so that GC is seen at work several times within the run; the default is 600 s).
//! Figures: per-minute p99 and errors; the supernode's RSS, its client count, the size of its
//! `/metrics` page (series labelled by peer address must go with the peers) and what GC
//! collected, sampled every 10 s; and the bound: bytes per live client (registration),
//! bytes per finished run (RSS growth before the first collection, per run kept), and the
//! plateau GC holds RSS at. Baseline, same run: `GET /_ping` for 60 s after the soak.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use benchkit::gen::{self, GenConfig, GenResult, Rerun};
use benchkit::report::{measured_line, note_start_load, write_section};
use benchkit::*;
use testkit::testbed::ControlClient;

const SAMPLE: Duration = Duration::from_secs(10);

fn main() {
    note_start_load();
    actix_rt::System::new().block_on(run());
}

/// The server at one moment of the soak.
#[derive(Clone, Copy, Default)]
struct Sample {
    secs: u64,
    rss_kib: u64,
    clients: u64,
    gc_peers: u64,
    /// Uploader addresses the scheduler counts uploads on.
    upload_addresses: u64,
    /// Size of the `/metrics` page: series labelled by peer address must go with the peers.
    metrics_bytes: u64,
}

/// One sample, read with a blocking client: the `/metrics` page grows with the hosts known
/// and is read whole, off the generator's thread.
fn sample(control: &ControlClient, pid: u32, started: Instant) -> Sample {
    let (status, page) = control.get("/metrics");
    assert_eq!(status, 200, "GET /metrics");
    let m = testkit::Metrics::parse(&page);
    let get = |name: &str| m.get(name, &[]).unwrap_or(0.0) as u64;
    Sample {
        secs: started.elapsed().as_secs(),
        rss_kib: testkit::proc_rss(pid).1,
        clients: get("dragonfly_supernode_clients"),
        gc_peers: get("dragonfly_supernode_gc_peers_total"),
        upload_addresses: get("dragonfly_supernode_upload_addresses"),
        metrics_bytes: page.len() as u64,
    }
}

/// Samples the server every [`SAMPLE`] on a thread of its own until `stop` is set.
fn spawn_sampler(server: &BinaryServer, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Sample>> {
    let (control, pid) = (ControlClient::new(server.control()), server.pid());
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut out = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            out.push(sample(&control, pid, started));
            let next = Instant::now() + SAMPLE;
            while !stop.load(Ordering::Relaxed) && Instant::now() < next {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        out
    })
}

async fn run() {
    let secs = env_u64("BENCH_SECONDS", 600);
    let expire = env_u64("BENCH_EXPIRE_SECS", 120);
    let clients = env_u64("BENCH_CLIENTS", 1000) as usize;
    // One request at a time per client, as every dfget is its own process: with fewer
    // connections than clients, a held poll would stall other clients behind it, which no
    // real swarm does.
    let conns = env_u64("BENCH_CONNS", clients as u64) as usize;
    let origin = spawn_origin(&[("/soak.bin", 61, 64 * MIB)]);
    let meta = (expire / 6).max(5);
    let config = format!("[gc]\nmeta_interval = \"{meta}s\"\npeer_expire_time = \"{expire}s\"\n");
    let server = BinaryServer::start_with_config(env!("CARGO_BIN_EXE_supernode"), &config);
    let (_, rss_idle) = server.rss_kib();
    let url = origin.url("/soak.bin");
    let (task_id, pieces) = cache_task(&server, &url).await;
    let cfg = GenConfig {
        duration: Some(Duration::from_secs(secs)),
        rerun: Rerun::NewHost,
        ..GenConfig::piece_loop(server.control(), conns, clients, &url, &task_id, "soak")
    };
    let reg_failures = gen::register_all(&cfg, &gen::client(conns)).await;
    let (_, rss_registered) = server.rss_kib();
    println!("{clients} clients registered ({reg_failures} failures); soaking {secs} s, GC expiry {expire} s");

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = spawn_sampler(&server, stop.clone());
    let load = gen::run_scheduler(&cfg).await;
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("the sampler thread");
    let (hwm, _) = server.rss_kib();
    let ping = gen::run_ping(server.control(), conns, None, Some(Duration::from_secs(60.min(secs)))).await;

    let md = section(
        &load,
        &ping,
        &samples,
        Setup { secs, expire, meta, clients, conns, pieces, rss_idle, rss_registered, hwm, reg_failures },
    );
    println!("{md}");
    write_section("soak", &md);
}

struct Setup {
    secs: u64,
    expire: u64,
    meta: u64,
    clients: usize,
    conns: usize,
    pieces: u64,
    rss_idle: u64,
    rss_registered: u64,
    hwm: u64,
    reg_failures: u64,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn section(load: &GenResult, ping: &GenResult, samples: &[Sample], s: Setup) -> String {
    let errors = load.errors + s.reg_failures;
    let mut md = format!("## Soak: 1,000 clients for {} s (`soak`)\n\n{}\n", s.secs, measured_line("soak"));
    if s.secs < 600 {
        md.push_str(&format!("**Quick run (BENCH_SECONDS={}), not the recorded 10-minute figures.**\n\n", s.secs));
    }
    md.push_str(&format!(
        "Server: the release binary with `[gc] peer_expire_time = \"{}s\"`, `meta_interval = \"{}s\"` (defaults \
         600 s and 120 s: shorter so that GC runs several times within the soak). The `load_60s` workload \
         ({} clients, {} requests in flight: one per client, as each dfget is its own process; one cached 64 MiB task of {} pieces) except that every finished run's host \
         vanishes without `/peer/service/down`: the client's next run registers as a new host, and a piece \
         later handed out from a vanished host's run is reported failed (`701/500`, as dfget reports a \
         refused connection), so only GC removes those runs. Every reply is checked.\n\n",
        s.expire, s.meta, s.clients, s.conns, s.pieces
    ));
    md.push_str(&format!(
        "Totals: {} requests in {:.0} s = **{:.0} req/s**, **{errors} errors**, {} runs finished, {} pieces \
         handed out from vanished hosts and reported failed. Codes: {}. Baseline `GET /_ping` for {:.0} s \
         after the soak: {:.0} req/s, p99 {:.2} ms (soak ÷ ping: **{:.2}** of the rate).\n\n",
        load.requests(),
        load.elapsed.as_secs_f64(),
        load.rps(),
        load.runs_finished,
        load.vanished_sources,
        load.codes_line(),
        ping.elapsed.as_secs_f64(),
        ping.rps(),
        ping.lat("ping").pct_ms(99.0),
        load.rps() / ping.rps(),
    ));
    md.push_str("| minute | requests | errors | p50 (ms) | p99 (ms) | max (ms) | RSS at its end (MiB) | clients known | peers collected by GC so far | uploader addresses counted |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for (i, w) in load.minutes.iter().enumerate().filter(|(i, _)| (*i as u64) * 60 < s.secs) {
        let at = samples.iter().rfind(|x| x.secs <= (i as u64 + 1) * 60).copied().unwrap_or_default();
        md.push_str(&format!(
            "| {} | {} | {} | {:.2} | **{:.2}** | {:.1} | {:.1} | {} | {} | {} |\n",
            i + 1,
            w.lat.len(),
            w.errors,
            w.lat.pct_ms(50.0),
            w.lat.pct_ms(99.0),
            w.lat.max_ms(),
            mib(at.rss_kib),
            at.clients,
            at.gc_peers,
            at.upload_addresses
        ));
    }
    md.push_str(&bound(samples, &s));
    if !load.error_samples.is_empty() {
        md.push_str(&format!("\nError samples: `{:?}`\n", load.error_samples));
    }
    md
}

/// The memory bound: what a live client costs, what a finished run costs until GC, and the
/// plateau GC holds.
fn bound(samples: &[Sample], s: &Setup) -> String {
    let per_live = (s.rss_registered.saturating_sub(s.rss_idle) * 1024) as f64 / s.clients as f64;
    // Before the first collection every finished run is still held: RSS growth per run kept.
    let before_gc: Vec<&Sample> = samples.iter().filter(|x| x.gc_peers == 0).collect();
    let (first, last) = (before_gc.first(), before_gc.last());
    let per_run = match (first, last) {
        (Some(a), Some(b)) if b.clients > a.clients => {
            (b.rss_kib.saturating_sub(a.rss_kib) * 1024) as f64 / (b.clients - a.clients) as f64
        }
        _ => f64::NAN,
    };
    let peak_clients = samples.iter().map(|x| x.clients).max().unwrap_or(0);
    let second_half: Vec<&Sample> = samples.iter().filter(|x| x.secs * 2 >= s.secs).collect();
    let (lo, hi) = second_half.iter().fold((u64::MAX, 0), |(lo, hi), x| (lo.min(x.rss_kib), hi.max(x.rss_kib)));
    let collected = samples.last().map_or(0, |x| x.gc_peers);
    let over_time: Vec<String> = samples
        .iter()
        .step_by(3)
        .map(|x| {
            format!("{} s {:.0} MiB / {} clients / {} KiB", x.secs, mib(x.rss_kib), x.clients, x.metrics_bytes / 1024)
        })
        .collect();
    format!(
        "\nRSS, clients known and the size of `/metrics` every 30 s: {}.\n\n\
         Bound: RSS {:.1} MiB idle, {:.1} MiB with the {} clients registered (**{:.0} bytes per live client**). \
         Until the first collection every finished run stays on the task: RSS grew **{:.0} bytes per run kept**. \
         GC removes a vanished host's runs {} s after it was last heard from, so at most about \
         `runs per second × {}` runs are held (peak {} clients known); over the run GC collected {} peers and \
         their runs, and in the second half RSS stayed between {:.1} and {:.1} MiB (**{:.2}×** from low to \
         high): the plateau is the live clients plus the runs of the last {} s, and memory freed by GC is \
         reused for new runs rather than added to. Peak RSS (VmHWM) {:.1} MiB.\n",
        over_time.join(", "),
        mib(s.rss_idle),
        mib(s.rss_registered),
        s.clients,
        per_live,
        per_run,
        s.expire,
        s.expire,
        peak_clients,
        collected,
        mib(lo),
        mib(hi),
        hi as f64 / lo.max(1) as f64,
        s.expire,
        mib(s.hwm),
    )
}
