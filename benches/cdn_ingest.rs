//! CDN ingest of a 1 GiB source from a local origin, against plain clients downloading the same
//! URL to disk in the same run.
//!
//! Per repetition, each on its own fresh URL (new seed, so the CDN really fetches):
//! * `curl -s -o <tmp> URL` (if curl exists);
//! * an awc client streaming the body to a file;
//! * the CDN: `POST /peer/registry` (dfget's body) → poll `GET /api/v1/tasks/{id}` every 20 ms
//!   until `cdnStatus` is SUCCESS; wall time from before the registration to the SUCCESS poll.
//!
//! Sizes: BENCH_INGEST_MIB (default 1024), BENCH_REPS (default 3). The server runs in-process
//! (actors on this thread, HTTP workers and the CDN arbiter on their own threads); the origin on
//! its own thread and System.

use std::time::{Duration, Instant};

use benchkit::report::{measured_line, note_start_load, write_section};
use benchkit::stats::{median, mib_s};
use benchkit::*;
use supernode_actors::rate::ByteRate;

fn curl_available() -> bool {
    std::process::Command::new("curl").arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}

fn main() {
    note_start_load();
    actix_rt::System::new().block_on(run());
}

async fn run() {
    let size_mib = env_u64("BENCH_INGEST_MIB", 1024);
    let reps = env_u64("BENCH_REPS", 3) as usize;
    let size = size_mib * MIB;
    let has_curl = curl_available();

    let mut files = Vec::new();
    let paths: Vec<String> = (0..reps).map(|i| format!("/ingest-{i}.bin")).collect();
    for (i, p) in paths.iter().enumerate() {
        files.push((p.as_str(), 1000 + i as u64, size));
    }
    let origin = spawn_origin(&files);
    // The source cap (`max_bandwidth`, 180 MiB/s by default) is lifted: the figures are the data path's.
    let server = testkit::start_with(testkit::config_with(|c| c.cdn.max_bandwidth = ByteRate(0))).await;
    let bulk = bulk_client();
    let scratch = tempfile::tempdir().expect("scratch dir");

    let (mut curl_s, mut awc_s, mut cdn_s, mut md5_s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let piece_size = testkit::protocol::piece_size(size);
    let mut origin_fetches = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let url = origin.url(path);
        // plain client 1: curl
        if has_curl {
            let out = scratch.path().join("curl.out");
            let t = Instant::now();
            let (u, o) = (url.clone(), out.clone());
            let status = tokio::task::spawn_blocking(move || {
                std::process::Command::new("curl").args(["-s", "-o"]).arg(&o).arg(&u).status()
            })
            .await
            .unwrap()
            .expect("curl runs");
            let secs = t.elapsed().as_secs_f64();
            assert!(status.success(), "curl failed");
            assert_eq!(std::fs::metadata(&out).unwrap().len(), size);
            std::fs::remove_file(&out).ok();
            curl_s.push(secs);
        }
        // plain client 2: awc streaming to a file
        let out = scratch.path().join("awc.out");
        let t = Instant::now();
        let n = awc_to_file(&bulk, &url, &out).await;
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(n, size);
        std::fs::remove_file(&out).ok();
        awc_s.push(secs);
        // plain client 3: awc to a file, plus the CDN's md5 work inline on the same thread
        let t = Instant::now();
        let (n, _) = awc_to_file_md5(&bulk, &url, &out, piece_size - 5).await;
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(n, size);
        std::fs::remove_file(&out).ok();
        md5_s.push(secs);

        // the CDN
        let before = origin.stats(path).body_bytes;
        let t = Instant::now();
        let data = register(&server, &url, &format!("127.0.0.1-ingest-{i}"), 20001).await;
        let id = data["taskId"].as_str().expect("taskId").to_string();
        let info = testkit::wait_success(&server, &id, Duration::from_secs(600)).await;
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(info["httpFileLength"].as_u64(), Some(size), "{info}");
        assert_eq!(info["pieceSize"].as_u64(), Some(piece_size), "{info}");
        origin_fetches.push(origin.stats(path).body_bytes - before);
        cdn_s.push(secs);
        delete_task(&server, &id).await;

        println!(
            "rep {}: curl {} · awc {:.2} s · awc+md5 {:.2} s · CDN {:.2} s",
            i + 1,
            curl_s.last().map(|s| format!("{s:.2} s")).unwrap_or_else(|| "n/a".into()),
            awc_s[i],
            md5_s[i],
            cdn_s[i]
        );
    }

    let tput = |s: f64| mib_s(size, s);
    let (m_curl, m_awc, m_cdn, m_md5) = (median(&curl_s), median(&awc_s), median(&cdn_s), median(&md5_s));
    let fmt_all = |v: &[f64]| v.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>().join(" / ");
    let mut md = String::new();
    md.push_str(&format!("## CDN ingest (`cdn_ingest`)\n\n{}\n", measured_line("cdn_ingest")));
    md.push_str(&format!(
        "A {size_mib} MiB source (generated bytes from memory, origin on its own thread) fetched by \
         the CDN — `POST /peer/registry` until `GET /api/v1/tasks/{{id}}` (polled every 20 ms) says \
         `SUCCESS`: source fetch, framing into {} MiB pieces, per-piece and whole-file md5, write to \
         the cache, rename — against plain clients writing the same URL to a file on the same disk, \
         in the same run. {reps} repetitions, each on a fresh URL; median. The source cap \
         (`[cdn] max_bandwidth`) is lifted for this bench.\n\n",
        piece_size / MIB
    ));
    md.push_str("| client | times (s) | median (s) | MiB/s | CDN ÷ client (throughput) |\n|---|---|---|---|---|\n");
    if has_curl {
        md.push_str(&format!(
            "| `curl -s -o file URL` | {} | {m_curl:.2} | {:.0} | **{:.2}** |\n",
            fmt_all(&curl_s),
            tput(m_curl),
            m_curl / m_cdn
        ));
    }
    md.push_str(&format!(
        "| awc, streamed to a file | {} | {m_awc:.2} | {:.0} | **{:.2}** |\n",
        fmt_all(&awc_s),
        tput(m_awc),
        m_awc / m_cdn
    ));
    md.push_str(&format!(
        "| awc to a file + the CDN's md5 work inline (whole-body md5 and one md5 per {} MiB piece, same thread) | {} | {m_md5:.2} | {:.0} | **{:.2}** |\n",
        piece_size / MIB,
        fmt_all(&md5_s),
        tput(m_md5),
        m_md5 / m_cdn
    ));
    md.push_str(&format!("| **CDN ingest** | {} | {m_cdn:.2} | {:.0} | — |\n\n", fmt_all(&cdn_s), tput(m_cdn)));
    md.push_str(&format!(
        "Origin body bytes per CDN run: {} (exactly one source fetch each). Target: CDN ≥ 0.8 × the \
         plain transfer.\n",
        origin_fetches.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(", ")
    ));
    println!("{md}");
    write_section("cdn_ingest", &md);
    server.stop().await;
}
