//! CPU-seconds per GiB on the data path, per stage, from a profile of the server process.
//!
//! The release binary runs as a child process with the source bandwidth cap lifted; one
//! `dfget-sim` client (in the bench process, so its own md5 checks and writes are not the
//! server's) downloads a BENCH_CPU_MIB (1024) MiB file:
//!
//! 1. **cold**: the CDN fetches the source, frames, hashes and writes it, and serves every
//!    piece once to the client (ingest plus one serve);
//! 2. **warm**: a second client downloads the same file from the cache (serving only).
//!
//! The server's CPU time comes from `/proc/<pid>/stat` before and after each phase; `perf
//! record` at 999 Hz over the same phase splits it by thread (the stage) and by kind of work.
//! Baselines in the same run: `curl` downloading the file from the origin (wall time), and
//! the MD5 implementations on one buffer. BENCH_REPS (3) repetitions of both phases, each on
//! a fresh file.

mod md5_compare;
mod perf;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use benchkit::report::{measured_line, note_start_load, write_section};
use benchkit::stats::median;
use benchkit::*;
use dfget_sim::PeerConfig;
use testkit::origin::Origin;
use testkit::swarm::Swarm;
use testkit::{supernode_command, ChildServer, Control};

const EXE: &str = env!("CARGO_BIN_EXE_supernode");

fn main() {
    note_start_load();
    actix_rt::System::new().block_on(run());
}

struct Server {
    child: ChildServer,
    _home: tempfile::TempDir,
}

impl Control for Server {
    fn control_addr(&self) -> std::net::SocketAddr {
        self.child.control()
    }
}

/// The release binary with `[cdn] max_bandwidth = 0`: the figures are the data path's.
fn start_server() -> Server {
    let home = tempfile::tempdir().expect("temp home");
    let config = home.path().join("supernode.toml");
    std::fs::write(&config, "[cdn]\nmax_bandwidth = 0\n").expect("config");
    let mut cmd = supernode_command(EXE);
    cmd.args(["--port", "0", "--download-port", "0", "--config"]).arg(&config);
    cmd.arg("--home-dir").arg(home.path().join("home"));
    let mut child = ChildServer::spawn(cmd);
    child.wait_listening();
    Server { child, _home: home }
}

/// One phase of one repetition: the server's CPU seconds, wall time and profile.
struct Phase {
    cpu_s: f64,
    wall_s: f64,
    profile: Result<perf::Profile, String>,
}

/// One client downloads `path` through `server` while perf samples the server.
async fn phase(server: &Server, origin: &Origin, path: &str, cid_seed: u64, scratch: &Path) -> Phase {
    let pid = server.child.pid();
    let url = origin.url(path);
    let out = scratch.join(format!("out-{cid_seed}"));
    let swarm = Swarm::start(1, |_| {
        let mut c = PeerConfig::new(server.control_addr().to_string(), url.as_str(), &out);
        c.download_timeout = Some(Duration::from_secs(600));
        c
    });
    let recording = perf::Recording::start(pid, &scratch.join(format!("perf-{cid_seed}.data")));
    let cpu0 = testkit::testbed::process_cpu_secs(pid);
    let t = Instant::now();
    let report = swarm.download().await.remove(0).expect("the download finishes");
    let wall_s = t.elapsed().as_secs_f64();
    testkit::wait_success(server, &testkit::protocol::url_task_id(&url), Duration::from_secs(60)).await;
    let cpu_s = testkit::testbed::process_cpu_secs(pid) - cpu0;
    let profile = recording.and_then(perf::Recording::stop);
    assert_eq!(report.md5, origin.content(path).md5_hex(), "the client's output");
    swarm.stop_uploaders().await;
    let _ = std::fs::remove_file(&out);
    Phase { cpu_s, wall_s, profile }
}

fn curl_secs(url: &str, out: &Path) -> Option<f64> {
    let t = Instant::now();
    let status = std::process::Command::new("curl").args(["-s", "-o"]).arg(out).arg(url).status().ok()?;
    let secs = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(out);
    status.success().then_some(secs)
}

async fn run() {
    let mib = env_u64("BENCH_CPU_MIB", 1024);
    let reps = env_u64("BENCH_REPS", 3).max(1) as usize;
    let started = Instant::now();
    let md5 = md5_compare::measure(256, 5);
    println!("md5: md-5 {:.0} MiB/s, OpenSSL {:.0} MiB/s", md5.md5_crate, md5.openssl);

    let paths: Vec<String> = (0..reps).map(|r| format!("/cpu-{r}.bin")).collect();
    let files: Vec<(&str, u64, u64)> =
        paths.iter().enumerate().map(|(i, p)| (p.as_str(), 500 + i as u64, mib * MIB)).collect();
    let origin = spawn_origin(&files);
    let scratch = tempfile::tempdir().expect("scratch");
    let server = start_server();
    let (mut cold, mut warm, mut curl) = (Vec::new(), Vec::new(), Vec::new());
    for (r, path) in paths.iter().enumerate() {
        let url = origin.url(path);
        let out = scratch.path().join("curl.out");
        curl.extend(tokio::task::spawn_blocking(move || curl_secs(&url, &out)).await.ok().flatten());
        let c = phase(&server, &origin, path, 2 * r as u64, scratch.path()).await;
        let w = phase(&server, &origin, path, 2 * r as u64 + 1, scratch.path()).await;
        println!(
            "rep {r}: cold {:.2} CPU-s in {:.2} s, warm {:.2} CPU-s in {:.2} s",
            c.cpu_s, c.wall_s, w.cpu_s, w.wall_s
        );
        cold.push(c);
        warm.push(w);
    }
    let gib = mib as f64 / 1024.0;
    let md = section(&Figures { mib, gib, reps, cold, warm, curl, md5, bench_s: started.elapsed().as_secs_f64() });
    println!("{md}");
    write_section("cpu_per_byte", &md);
}

struct Figures {
    mib: u64,
    gib: f64,
    reps: usize,
    cold: Vec<Phase>,
    warm: Vec<Phase>,
    curl: Vec<f64>,
    md5: md5_compare::Md5Rates,
    bench_s: f64,
}

fn per_gib(phases: &[Phase], gib: f64) -> f64 {
    median(&phases.iter().map(|p| p.cpu_s / gib).collect::<Vec<_>>())
}

fn list(phases: &[Phase], gib: f64) -> String {
    phases.iter().map(|p| format!("{:.2}", p.cpu_s / gib)).collect::<Vec<_>>().join(" / ")
}

/// Median CPU-s per GiB of each key of a profile's breakdown.
fn breakdown<'a>(
    phases: &'a [Phase],
    gib: f64,
    of: fn(&'a perf::Profile) -> Vec<(String, f64)>,
) -> BTreeMap<String, f64> {
    let mut each: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for p in phases {
        if let Ok(profile) = &p.profile {
            for (key, share) in of(profile) {
                each.entry(key).or_default().push(share * p.cpu_s / gib);
            }
        }
    }
    each.into_iter().map(|(k, v)| (k, median(&v))).collect()
}

fn stages(p: &perf::Profile) -> Vec<(String, f64)> {
    p.by_stage.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

fn symbols(p: &perf::Profile) -> Vec<(String, f64)> {
    p.by_symbol.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

fn kinds(p: &perf::Profile) -> Vec<(String, f64)> {
    p.by_kind.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn section(f: &Figures) -> String {
    let (cold, warm) = (per_gib(&f.cold, f.gib), per_gib(&f.warm, f.gib));
    let wall = |phases: &[Phase]| median(&phases.iter().map(|p| p.wall_s).collect::<Vec<_>>());
    let mut md = format!("## CPU per byte on the data path (`cpu_per_byte`)\n\n{}\n", measured_line("cpu_per_byte"));
    md.push_str(&format!(
        "The release binary (`[cdn] max_bandwidth = 0`) as a child process; one `dfget-sim` client in the bench \
         process downloads a {} MiB file, cold (the CDN fetches, frames, hashes, writes and serves each piece once), \
         then a second client warm (served from the cache). CPU is the server process's user + system time \
         (`/proc/<pid>/stat`) over each phase, split by `perf record -F 999` samples of the same phase. \
         {} repetitions, each on a fresh file; medians. This run took {:.0} s.\n\n",
        f.mib, f.reps, f.bench_s
    ));
    md.push_str(&format!(
        "| phase | CPU-s per GiB: median (reps) | goal | wall (s) | curl from the origin (s) |\n|---|---|---|---|---|\n\
         | cold: ingest + one serve | **{cold:.2}** ({}) | ≤ 4.5 — {} | {:.2} | {} |\n\
         | warm: serve from the cache | **{warm:.2}** ({}) | ≤ 0.3 — {} | {:.2} | |\n\n",
        list(&f.cold, f.gib),
        if cold <= 4.5 { "met" } else { "not met" },
        wall(&f.cold),
        if f.curl.is_empty() { "curl not found".to_string() } else { format!("{:.2}", median(&f.curl)) },
        list(&f.warm, f.gib),
        if warm <= 0.3 { "met" } else { "not met" },
        wall(&f.warm),
    ));
    if f.curl.len() == f.reps {
        md.push_str(&format!("Cold wall time ÷ curl: **{:.2}×**.\n\n", wall(&f.cold) / median(&f.curl)));
    }
    let why: Vec<&String> = f.cold.iter().chain(&f.warm).filter_map(|p| p.profile.as_ref().err()).collect();
    if let Some(reason) = why.first() {
        md.push_str(&format!("No per-stage split: {reason}.\n\n"));
    } else {
        let samples: Vec<String> =
            f.cold.iter().chain(&f.warm).filter_map(|p| Some(p.profile.as_ref().ok()?.samples.to_string())).collect();
        md.push_str(&format!("perf samples per phase (cold reps, then warm): {}.\n\n", samples.join(" / ")));
        table(&mut md, "Per stage (thread)", &breakdown(&f.cold, f.gib, stages), &breakdown(&f.warm, f.gib, stages));
        table(&mut md, "Per kind of work", &breakdown(&f.cold, f.gib, kinds), &breakdown(&f.warm, f.gib, kinds));
        let (cold, warm) = (breakdown(&f.cold, f.gib, symbols), breakdown(&f.warm, f.gib, symbols));
        let mut top: Vec<(String, f64)> = cold.into_iter().collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        top.truncate(15);
        let top: BTreeMap<String, f64> = top.into_iter().collect();
        let warm = warm.into_iter().filter(|(k, _)| top.contains_key(k)).collect();
        table(&mut md, "Hottest symbols, cold (stage: symbol)", &top, &warm);
        md.push_str(
            "Stages: `cdn` reads the source (HTTP client, socket reads), `cdn-writer` frames each piece, hashes it \
             and writes it, `cdn-md5` hashes the whole source, `download-port` serves pieces (sendfile), \
             `actix-rt|system` is the control API and the actors (registration, `/peer/task`, reports).\n\n",
        );
    }
    md.push_str(&f.md5.section());
    md
}

fn table(md: &mut String, title: &str, cold: &BTreeMap<String, f64>, warm: &BTreeMap<String, f64>) {
    md.push_str(&format!("### {title}: CPU-s per GiB\n\n| | cold | warm |\n|---|---|---|\n"));
    let keys: std::collections::BTreeSet<&String> = cold.keys().chain(warm.keys()).collect();
    let mut keys: Vec<&String> = keys.into_iter().collect();
    keys.sort_by(|a, b| cold.get(*b).unwrap_or(&0.0).total_cmp(cold.get(*a).unwrap_or(&0.0)));
    for k in keys {
        let cell = |m: &BTreeMap<String, f64>| m.get(k).map_or("–".to_string(), |v| format!("{v:.2}"));
        md.push_str(&format!("| `{k}` | {} | {} |\n", cell(cold), cell(warm)));
    }
    md.push('\n');
}
