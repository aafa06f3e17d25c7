//! The bandwidth caps, measured: CDN ingest under `max_bandwidth - system_reserved_bandwidth`
//! (one run, then two at once sharing the cap) and the download port under
//! `upload_rate_limit` (one client, then two), against the same transfers uncapped in the
//! same run.
//!
//! Sizes: BENCH_BW_MIB (default 512) per file, BENCH_BW_CAP_MIB (default 64) for both caps.
//! The server runs in-process; the origin on its own thread and System, at full speed.

use std::time::{Duration, Instant};

use benchkit::report::{measured_line, note_start_load, write_section};
use benchkit::stats::mib_s;
use benchkit::*;
use futures_util::future::join_all;
use supernode_actors::rate::ByteRate;
use testkit::{config_with, TestServer};

fn main() {
    note_start_load();
    actix_rt::System::new().block_on(run());
}

/// One CDN run per URL, all registered at once; the wall time until every one is SUCCESS.
async fn ingest(server: &TestServer, urls: &[String], tag: &str) -> f64 {
    let started = Instant::now();
    let runs = urls.iter().enumerate().map(|(i, url)| async move {
        let data = register(server, url, &format!("127.0.0.1-{tag}-{i}"), 20001).await;
        let id = data["taskId"].as_str().expect("taskId").to_string();
        testkit::wait_success(server, &id, Duration::from_secs(900)).await;
        id
    });
    let ids = join_all(runs).await;
    let secs = started.elapsed().as_secs_f64();
    for id in &ids {
        delete_task(server, id).await;
    }
    secs
}

/// `clients` downloads of the whole cached file `id` from the download port at once; the
/// wall time until the last one ends.
async fn serve(server: &TestServer, id: &str, clients: usize, file_len: u64) -> f64 {
    let client = bulk_client();
    let url = format!("http://{}/download/{}/{id}", server.download(), &id[..3]);
    let started = Instant::now();
    let gets = (0..clients).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        async move { awc_discard(&client, &url).await }
    });
    for n in join_all(gets).await {
        assert_eq!(n, file_len, "whole file served");
    }
    started.elapsed().as_secs_f64()
}

/// `url` registered and cached on `server`; its task ID.
async fn cached(server: &TestServer, url: &str) -> String {
    let data = register(server, url, "127.0.0.1-cache-1", 20001).await;
    let id = data["taskId"].as_str().expect("taskId").to_string();
    testkit::wait_success(server, &id, Duration::from_secs(900)).await;
    id
}

/// GETs `url` and counts the body's bytes without keeping them.
async fn awc_discard(client: &awc::Client, url: &str) -> u64 {
    use futures_util::StreamExt;
    let mut res = client.get(url).send().await.expect("GET");
    assert_eq!(res.status().as_u16(), 200, "GET {url}");
    let mut n = 0u64;
    while let Some(chunk) = res.next().await {
        n += chunk.expect("body chunk").len() as u64;
    }
    n
}

async fn run() {
    let size = env_u64("BENCH_BW_MIB", 512) * MIB;
    let cap = env_u64("BENCH_BW_CAP_MIB", 64) * MIB;
    let paths: Vec<String> = (0..6).map(|i| format!("/bw-{i}.bin")).collect();
    let files: Vec<(&str, u64, u64)> =
        paths.iter().enumerate().map(|(i, p)| (p.as_str(), 500 + i as u64, size)).collect();
    let origin = spawn_origin(&files);
    let url = |i: usize| origin.url(&paths[i]);

    let uncapped = testkit::start_with(config_with(|c| c.cdn.max_bandwidth = ByteRate(0))).await;
    let capped = testkit::start_with(config_with(|c| {
        c.cdn.max_bandwidth = ByteRate(cap + 20 * MIB);
        c.cdn.system_reserved_bandwidth = ByteRate(20 * MIB);
        c.server.upload_rate_limit = ByteRate(cap);
    }))
    .await;

    let free_one = ingest(&uncapped, &[url(0)], "free").await;
    let one = ingest(&capped, &[url(1)], "one").await;
    let two = ingest(&capped, &[url(2), url(3)], "two").await;
    println!("ingest: uncapped {free_one:.2} s · capped {one:.2} s · two capped runs {two:.2} s");

    // The download port: a cached file on each server.
    let (free_id, capped_id) = (cached(&uncapped, &url(4)).await, cached(&capped, &url(5)).await);
    let wrapped = size + 5 * size.div_ceil(testkit::protocol::piece_size(size) - 5);
    let free_serve = serve(&uncapped, &free_id, 1, wrapped).await;
    let serve_one = serve(&capped, &capped_id, 1, wrapped).await;
    let serve_two = serve(&capped, &capped_id, 2, wrapped).await;
    println!("serve: uncapped {free_serve:.2} s · capped {serve_one:.2} s · two capped clients {serve_two:.2} s");

    let cap_mib = cap as f64 / MIB as f64;
    let row = |what: &str, bytes: u64, secs: f64, capped: bool| {
        let rate = mib_s(bytes, secs);
        let ratio = if capped { format!("**{:.2}**", rate / cap_mib) } else { "—".into() };
        format!("| {what} | {secs:.2} | {rate:.0} | {ratio} |\n")
    };
    let mut md = format!("## Bandwidth caps (`bandwidth`)\n\n{}\n", measured_line("bandwidth"));
    md.push_str(&format!(
        "Files of {} MiB from the test origin at full speed (its own thread), the server in-process. \
         CDN ingest: `POST /peer/registry` until `cdnStatus` is SUCCESS, with `[cdn] max_bandwidth` = \
         {} MiB/s and `system_reserved_bandwidth` = 20 MiB/s (a cap of {cap_mib:.0} MiB/s on all runs \
         together), against the same server settings uncapped (`max_bandwidth = 0`). Download port: \
         whole cached files, with `[server] upload_rate_limit` = {cap_mib:.0} MiB/s on all connections \
         together, against uncapped. Two transfers at once must share the cap: their combined rate is \
         the figure. Target: 0.9–1.0 × the cap.\n\n",
        size / MIB,
        cap_mib as u64 + 20
    ));
    md.push_str("| transfer | wall (s) | MiB/s | ÷ cap |\n|---|---|---|---|\n");
    md.push_str(&row("CDN ingest, one run, uncapped", size, free_one, false));
    md.push_str(&row("CDN ingest, one run, capped", size, one, true));
    md.push_str(&row("CDN ingest, two runs at once, capped (combined)", 2 * size, two, true));
    md.push_str(&row("download port, one client, uncapped", wrapped, free_serve, false));
    md.push_str(&row("download port, one client, capped", wrapped, serve_one, true));
    md.push_str(&row("download port, two clients at once, capped (combined)", 2 * wrapped, serve_two, true));
    println!("{md}");
    write_section("bandwidth", &md);
    capped.stop().await;
    uncapped.stop().await;
}
