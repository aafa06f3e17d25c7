//! Swarms of 1, 3 and 16 peers downloading one 64 MiB file: every peer gets the whole file,
//! the origin sends it once, and peers serve each other pieces; and CDN pieces that were
//! handed out stay servable while the CDN run finishes.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dfget_sim::Report;
use futures_util::future::join_all;
use testkit::eventually;
use testkit::swarm::start_peer;

use crate::{peer, piece_failures, swarm_downloads, totals, Source, BIG, MIB};

#[actix_web::test]
async fn one_peer_downloads_64m() {
    let (swarm, reports, wall) = swarm_downloads(1).await;
    let r = &reports[0];
    assert_eq!(r.stats.pieces_from_supernode, 17, "{r:?}");
    assert_eq!(r.stats.pieces_from_peers, 0);
    let failures = piece_failures(&[r]);
    assert!(failures.is_empty(), "no piece failure without faults: {failures:#?}");
    assert_eq!(r.finish.as_ref().map(|f| f.file_length), Some(BIG as i64 + 17 * 5), "finish fileLength = CDN length");
    assert_eq!(
        r.stats.poll_codes.keys().filter(|c| ![600, 601, 602, 603].contains(*c)).count(),
        0,
        "{:?}",
        r.stats.poll_codes
    );
    assert_eq!(swarm.peers()[0].uploads_served(), 0);
    eprintln!(
        "p2p figures: 1 peer: 17 pieces from the supernode, {} polls, wall {:.2}s",
        r.stats.polls,
        wall.as_secs_f64()
    );
}

#[actix_web::test]
async fn three_peers_share_pieces() {
    let (swarm, reports, wall) = swarm_downloads(3).await;
    let refs: Vec<&Report> = reports.iter().collect();
    let t = totals(swarm.peers(), &refs);
    assert_eq!(t.from_cdn + t.from_peers, 3 * 17);
    assert!(
        t.from_peers > 0,
        "peers must serve some pieces: {} from the supernode, {} from peers",
        t.from_cdn,
        t.from_peers
    );
    let failures = piece_failures(&refs);
    assert!(failures.is_empty(), "no piece failure without faults: {failures:#?}");
    assert_eq!(t.uploads, t.from_peers, "every piece from a peer was served by one of the uploaders");
    assert_eq!(t.suc_failed, 0);
    eprintln!(
        "p2p figures: 3 peers: {} pieces from the supernode, {} from peers ({:.0}%), wall {:.2}s",
        t.from_cdn,
        t.from_peers,
        100.0 * t.from_peers as f64 / (3.0 * 17.0),
        wall.as_secs_f64()
    );
}

#[actix_web::test]
async fn sixteen_peers_share_pieces() {
    let (swarm, reports, wall) = swarm_downloads(16).await;
    let refs: Vec<&Report> = reports.iter().collect();
    let t = totals(swarm.peers(), &refs);
    let all = 16 * 17;
    assert_eq!(t.from_cdn + t.from_peers, all);
    // The supernode serves at most cdn_up_limit (4) pieces of a task at once and the scheduler
    // prefers peers holding a piece, so most of the 272 fetches go to peers. 25% is far below
    // what it achieves and far above what a CDN-only scheduler would give (0).
    assert!(
        t.from_peers * 4 >= all,
        "peers must serve at least 25% of the pieces: {} from the supernode, {} from peers",
        t.from_cdn,
        t.from_peers
    );
    assert!(t.from_cdn >= 17, "every piece came from the supernode at least once");
    let failures = piece_failures(&refs);
    assert!(failures.is_empty(), "no piece failure without faults: {failures:#?}");
    assert_eq!(t.uploads, t.from_peers, "every piece from a peer was served by one of the uploaders");
    let serving = swarm.peers().iter().filter(|p| p.uploads_served() > 0).count();
    assert!(serving >= 4, "uploads spread over several peers, got {serving}");
    eprintln!(
        "p2p figures: 16 peers: {} pieces from the supernode, {} from peers ({:.0}%), {} uploaders served, wall {:.2}s",
        t.from_cdn,
        t.from_peers,
        100.0 * t.from_peers as f64 / all as f64,
        serving,
        wall.as_secs_f64()
    );
}

/// A CDN piece that was written (and so may be handed out by `/peer/task`) must stay servable
/// by the download port: pieces are handed out as soon as they are written and served from
/// the temporary file while the run goes on, and at the end of the run the file is renamed to
/// its final name. This test keeps the disk busy on purpose, so the end of the run (fsyncs,
/// index and metadata, rename) is slow, and probes the piece throughout and after it.
#[actix_web::test]
async fn cdn_pieces_stay_servable_while_the_run_finishes() {
    let src = Source::start(BIG).await;
    let s = testkit::start().await;
    let dir = tempfile::tempdir().unwrap();
    // fsync-heavy disk load: makes the writer's fsyncs after the rename slow
    let stop = Arc::new(AtomicBool::new(false));
    let synced = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (junk, stop, synced) = (dir.path().join(format!("junk{w}")), stop.clone(), synced.clone());
            std::thread::spawn(move || {
                use std::io::Write;
                let buf = vec![1u8; 4 * MIB];
                while !stop.load(Ordering::Relaxed) {
                    let mut f = std::fs::File::create(&junk).unwrap();
                    for _ in 0..8 {
                        f.write_all(&buf).unwrap();
                    }
                    f.sync_all().unwrap();
                    synced.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // the load is on before the run starts: the writers have written and fsynced twice
    eventually(Duration::from_secs(30), "the disk load is under way", || async { synced.load(Ordering::Relaxed) >= 2 })
        .await;
    let p = start_peer(peer(&s, &src.url(), dir.path(), "x.bin"));
    let id = p.register().await.expect("registration").task_id;
    let url = format!("http://{}/download/{}/{}", s.download(), &id[..3], id);
    // Probes run until the task is SUCCESS and each has probed a few more times after that.
    const AFTER_SUCCESS: u32 = 5;
    let succeeded = Rc::new(std::cell::Cell::new(false));
    let started = Instant::now();
    let watcher = {
        let (succeeded, url) = (succeeded.clone(), s.url(&format!("/api/v1/tasks/{id}")));
        async move {
            let status = || async { testkit::call(testkit::client().get(url.as_str()), None).await.1 };
            eventually(Duration::from_secs(30), "the task succeeds", || async {
                status().await.contains(r#""cdnStatus":"SUCCESS""#)
            })
            .await;
            succeeded.set(true);
        }
    };
    let probes = (0..16).map(|_| {
        let (url, succeeded) = (url.clone(), succeeded.clone());
        async move {
            let c = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
            let mut out = Vec::new();
            let mut after = 0;
            while after < AFTER_SUCCESS {
                if succeeded.get() {
                    after += 1;
                }
                let sent = started.elapsed();
                let st = match c.get(url.as_str()).insert_header(("Range", "bytes=0-99")).send().await {
                    Ok(mut r) => {
                        let _ = r.body().limit(MIB).await;
                        r.status().as_u16()
                    }
                    Err(_) => 0,
                };
                out.push((sent, started.elapsed(), st));
            }
            out
        }
    });
    let (_, results) = futures_util::future::join(watcher, join_all(probes)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let all: Vec<(Duration, Duration, u16)> = results.into_iter().flatten().collect();
    // before piece 0 is on disk a 404 or 416 is fine: it is not handed out yet
    let first_ok = all.iter().filter(|r| r.2 == 206).map(|r| r.1).min().expect("piece 0 served at some point");
    let later: Vec<&(Duration, Duration, u16)> = all.iter().filter(|r| r.0 > first_ok).collect();
    let bad: Vec<String> =
        later.iter().filter(|r| r.2 != 206).map(|r| format!("{} at {:.3}s", r.2, r.0.as_secs_f64())).collect();
    assert!(bad.is_empty(), "piece 0 was served, then answered {bad:?} (of {} requests)", later.len());
}
