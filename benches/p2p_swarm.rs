//! 16 simulated dfget peers (dfget-sim, each with its own uploader on a distinct 127.0.0.1 port)
//! downloading one file through the supernode, against 16 direct concurrent downloads of the
//! same URL from the origin (awc, streamed to files), in the same run.
//!
//! Figures: wall time, bytes the origin sent, pieces fetched from peers vs from the supernode.
//! The swarm starts cold (the CDN fetches the source during the run, as the first swarm on a new
//! file does). Sizes: BENCH_SWARM_MIB (default "64,256"), peers: BENCH_PEERS (16).

use std::time::{Duration, Instant};

use benchkit::report::{measured_line, note_start_load, write_section};
use benchkit::stats::median;
use benchkit::*;
use dfget_sim::PeerConfig;
use futures_util::future::join_all;
use supernode_actors::rate::ByteRate;
use testkit::swarm::Swarm;

fn main() {
    note_start_load();
    actix_rt::System::new().block_on(run());
}

struct Row {
    size_mib: u64,
    swarm_s: f64,
    swarm_origin: u64,
    direct_s: f64,
    direct_origin: u64,
    from_cdn: u64,
    from_peers: u64,
    failures: u64,
    uploaders: usize,
    pieces_per_peer: u64,
    polls: u64,
    waits: u64,
    peer_secs: Vec<f64>,
    cdn_ingest_s: f64,
}

async fn run() {
    let sizes: Vec<u64> = std::env::var("BENCH_SWARM_MIB")
        .unwrap_or_else(|_| "64,256".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let n = env_u64("BENCH_PEERS", 16) as usize;
    let files: Vec<(String, u64, u64)> = sizes.iter().map(|m| (format!("/swarm-{m}.bin"), 500 + m, m * MIB)).collect();
    let file_refs: Vec<(&str, u64, u64)> = files.iter().map(|(p, s, l)| (p.as_str(), *s, *l)).collect();
    let origin = spawn_origin(&file_refs);
    // The source cap (`max_bandwidth`, 180 MiB/s by default) is lifted: the figures are the data path's.
    let server = testkit::start_with(testkit::config_with(|c| c.cdn.max_bandwidth = ByteRate(0))).await;
    let control = server.control();
    let bulk = bulk_client();
    let mut rows = Vec::new();

    for (path, _, len) in &files {
        let size_mib = len / MIB;
        let url = origin.url(path);
        let md5 = origin.content(path).md5_hex();
        let dir = tempfile::tempdir().expect("scratch dir");

        // --- the swarm through the supernode
        let before = origin.stats(path).body_bytes;
        let swarm = Swarm::start(n, |i| {
            let mut c = PeerConfig::new(control.to_string(), url.as_str(), dir.path().join(format!("peer{i}.out")));
            c.download_timeout = Some(Duration::from_secs(600));
            c
        });
        let peers = swarm.peers();
        let t = Instant::now();
        let results = swarm.download().await;
        let swarm_s = t.elapsed().as_secs_f64();
        let swarm_origin = origin.stats(path).body_bytes - before;
        let reports: Vec<_> =
            results.into_iter().enumerate().map(|(i, r)| r.unwrap_or_else(|e| panic!("peer {i}: {e}"))).collect();
        for (i, r) in reports.iter().enumerate() {
            assert_eq!(r.md5, md5, "peer {i}: output md5");
            println!(
                "  peer {i}: {:.2} s, {} from supernode, {} from peers, polls {} codes {:?}, stalls {}, uploads served {}",
                r.duration_secs,
                r.stats.pieces_from_supernode,
                r.stats.pieces_from_peers,
                r.stats.polls,
                r.stats.poll_codes,
                r.stats.stalls,
                peers[i].uploads_served()
            );
        }
        let task_id = reports[0].task_id.clone();
        let info = testkit::task_info(&server, &task_id).await;
        let pieces_per_peer = info["pieceTotal"].as_u64().unwrap_or(0);
        let from_cdn: u64 = reports.iter().map(|r| r.stats.pieces_from_supernode).sum();
        let from_peers: u64 = reports.iter().map(|r| r.stats.pieces_from_peers).sum();
        let failures: u64 = reports.iter().map(|r| r.stats.piece_failures).sum();
        let polls: u64 = reports.iter().map(|r| r.stats.polls).sum();
        let waits: u64 = reports.iter().map(|r| r.stats.poll_codes.get(&602).copied().unwrap_or(0)).sum();
        let peer_secs: Vec<f64> = reports.iter().map(|r| r.duration_secs).collect();
        let uploaders = peers.iter().filter(|p| p.uploads_served() > 0).count();
        swarm.stop_uploaders().await;
        drop(swarm);
        for i in 0..n {
            std::fs::remove_file(dir.path().join(format!("peer{i}.out"))).ok();
        }
        // CDN ingest alone (same source, a fresh task), to separate the source fetch from the swarm.
        delete_task(&server, &task_id).await;
        let t = Instant::now();
        let data = register(&server, &url, "127.0.0.1-ingest-only", 20001).await;
        let id = data["taskId"].as_str().unwrap().to_string();
        testkit::wait_success(&server, &id, Duration::from_secs(600)).await;
        let cdn_ingest_s = t.elapsed().as_secs_f64();
        delete_task(&server, &id).await;

        // --- 16 direct downloads from the origin
        let before = origin.stats(path).body_bytes;
        let t = Instant::now();
        let outs: Vec<_> = (0..n).map(|i| dir.path().join(format!("direct{i}.out"))).collect();
        let sizes = join_all(outs.iter().map(|o| awc_to_file(&bulk, &url, o))).await;
        let direct_s = t.elapsed().as_secs_f64();
        let direct_origin = origin.stats(path).body_bytes - before;
        assert!(sizes.iter().all(|s| s == len), "direct sizes {sizes:?}");
        for o in &outs {
            std::fs::remove_file(o).ok();
        }

        println!(
            "{size_mib} MiB × {n}: swarm {swarm_s:.2} s (origin {swarm_origin} B, {from_cdn} pieces from the supernode, {from_peers} from peers, {failures} failures); direct {direct_s:.2} s (origin {direct_origin} B); CDN ingest alone {cdn_ingest_s:.2} s"
        );
        rows.push(Row {
            size_mib,
            swarm_s,
            swarm_origin,
            direct_s,
            direct_origin,
            from_cdn,
            from_peers,
            failures,
            uploaders,
            pieces_per_peer,
            polls,
            waits,
            peer_secs,
            cdn_ingest_s,
        });
    }

    let mut md = String::new();
    md.push_str(&format!(
        "## P2P swarm: {n} peers vs {n} direct downloads (`p2p_swarm`)\n\n{}\n",
        measured_line("p2p_swarm")
    ));
    md.push_str(&format!(
        "{n} `dfget-sim` peers (dfget 1.0.6's wire behaviour; each with its own uploader on a \
         distinct 127.0.0.1 port, all in the bench process) download one file through the \
         in-process supernode, starting cold (the CDN fetches the source during the run), and every \
         output's md5 is checked; against {n} concurrent awc downloads of the same URL straight from \
         the origin, streamed to files, in the same run. \"CDN ingest alone\" is one registration \
         of the same source on a fresh task until SUCCESS, measured in between. The source cap \
         (`[cdn] max_bandwidth`) is lifted for this bench.\n\n"
    ));
    md.push_str("| file | swarm wall (s) | direct wall (s) | swarm ÷ direct (time) | origin bytes: swarm | origin bytes: direct | pieces from supernode / from peers | uploaders that served | piece failures | CDN ingest alone (s) |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for r in &rows {
        let total = r.from_cdn + r.from_peers;
        md.push_str(&format!(
            "| {} MiB ({} pieces) | **{:.2}** | **{:.2}** | **{:.2}** | {} ({:.2}×) | {} ({:.0}×) | {} / {} ({:.0}% from peers) | {} of {n} | {} | {:.2} |\n",
            r.size_mib,
            r.pieces_per_peer,
            r.swarm_s,
            r.direct_s,
            r.swarm_s / r.direct_s,
            r.swarm_origin,
            r.swarm_origin as f64 / (r.size_mib * MIB) as f64,
            r.direct_origin,
            r.direct_origin as f64 / (r.size_mib * MIB) as f64,
            r.from_cdn,
            r.from_peers,
            100.0 * r.from_peers as f64 / total.max(1) as f64,
            r.uploaders,
            r.failures,
            r.cdn_ingest_s
        ));
    }
    for r in &rows {
        md.push_str(&format!(
            "\n{} MiB: per-peer download time min {:.2} / median {:.2} / max {:.2} s; the peers sent {} \
             `/peer/task` polls, {} of them answered 602 (wait: dfget then sleeps a random, doubling \
             back-off before polling again).\n",
            r.size_mib,
            r.peer_secs.iter().cloned().fold(f64::INFINITY, f64::min),
            median(&r.peer_secs),
            r.peer_secs.iter().cloned().fold(0.0, f64::max),
            r.polls,
            r.waits
        ));
    }
    println!("{md}");
    write_section("p2p_swarm", &md);
    server.stop().await;
}
