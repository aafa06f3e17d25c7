//! Peers that fail the others: an uploader that dies after it reported pieces, one that
//! corrupts every piece it serves, uploaders that stall, and a peer that reports pieces it
//! does not hold. The others report the failure, get the pieces elsewhere and finish; the
//! CDN copy is never thrown away because of them.

use std::rc::Rc;
use std::time::Duration;

use dfget_sim::{Report, SimError};
use testkit::eventually;
use testkit::swarm::{start_peer, Swarm};

use crate::{ok, peer, totals, Source, SMALL};

/// A peer's uploader dies after it reported pieces (no service-down): the others are handed
/// pieces from it, fail, report the failure (701/500) and get them elsewhere.
#[actix_web::test]
async fn uploader_killed_midway() {
    let src = Source::start(SMALL).await;
    let md5 = &src.md5;
    let s = testkit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut vcfg = peer(&s, &src.url(), dir.path(), "victim.bin");
    vcfg.piece_delay = Duration::from_millis(150);
    let victim = Rc::new(start_peer(vcfg));
    let v = victim.clone();
    let victim_run = actix_rt::spawn(async move { v.download().await });
    eventually(Duration::from_secs(30), "the victim reports pieces", || async { victim.stats().suc_reports_ok >= 3 })
        .await;
    victim.stop_uploader().await;
    let held_when_killed = victim.stats().suc_reports_ok;

    let others = Swarm::start(5, |i| peer(&s, &src.url(), dir.path(), &format!("o{i}.bin")));
    let results = others.download().await;
    let reports: Vec<&Report> = results.iter().enumerate().map(|(i, r)| ok(r, &format!("peer {i}"))).collect();
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(&r.md5, md5, "peer {i}: output md5");
    }
    let t = totals(others.peers(), &reports);
    assert!(t.failures >= 1, "someone was handed a piece of the dead uploader: {} failures", t.failures);
    assert_eq!(victim.uploads_served(), 0, "a dead uploader serves nothing");
    let vr = victim_run.await.expect("victim task");
    assert_eq!(&ok(&vr, "victim").md5, md5, "the victim's own download is unaffected");
    assert_eq!(src.body_bytes(), SMALL as u64);
    eprintln!(
        "p2p figures: uploader killed after {held_when_killed} pieces: others {} from the supernode, {} from peers, {} failed fetches",
        t.from_cdn, t.from_peers, t.failures
    );
}

/// A peer whose uploader corrupts every piece: the others detect the md5 mismatch, report
/// FILE_MD5_NOT_MATCH, fetch the piece elsewhere and finish; the CDN copy is not thrown away.
#[actix_web::test]
async fn corrupt_uploader_is_detected_and_avoided() {
    let src = Source::start(SMALL).await;
    let md5 = &src.md5;
    let s = testkit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ccfg = peer(&s, &src.url(), dir.path(), "corrupt.bin");
    ccfg.corrupt_uploads = true;
    let bad = start_peer(ccfg);
    let r = bad.download().await;
    assert_eq!(&ok(&r, "corrupting peer").md5, md5, "its own copy is fine");

    let others = Swarm::start(4, |i| peer(&s, &src.url(), dir.path(), &format!("o{i}.bin")));
    let results = others.download().await;
    let reports: Vec<&Report> = results.iter().enumerate().map(|(i, r)| ok(r, &format!("peer {i}"))).collect();
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(&r.md5, md5, "peer {i}: output md5");
    }
    let t = totals(others.peers(), &reports);
    assert!(bad.uploads_served() >= 1, "the corrupting peer was used as a source");
    assert!(t.md5_errors >= 1, "FILE_MD5_NOT_MATCH reported");
    assert_eq!(t.md5_errors, bad.uploads_served(), "every corrupted piece was refused and reported");
    for (i, r) in reports.iter().enumerate() {
        // at most the pieces it runs at once (peerDownLimit 4) before its first report
        assert!(
            r.stats.md5_errors_reported <= 4,
            "peer {i}: never handed the corrupting peer after a report: {:?}",
            r.stats
        );
    }
    assert_eq!(src.body_bytes(), SMALL as u64, "reports about a peer never invalidate the CDN copy");
    assert_eq!(src.requests(), 1);
    eprintln!(
        "p2p figures: corrupting uploader served {} pieces, {} md5 errors reported, others {} from the supernode, {} from peers",
        bad.uploads_served(),
        t.md5_errors,
        t.from_cdn,
        t.from_peers
    );
}

/// What dfget gives one piece here: 2 s (dfget's own rule, `pieceSize / 64 KiB/s + 10 s`,
/// would be 74 s for these 4 MiB pieces).
const PIECE_TIMEOUT: Duration = Duration::from_secs(2);

/// Two peers that hold the whole file and whose uploaders stall, one never answering and one
/// sending 64 bytes a second: their downloaders time out each piece, report it failed (701 with
/// result 500) and are never handed them again; with `elimination_limit` (5) failures each
/// (the first round of four clients asks each for five pieces), nobody is, so a later client
/// never waits on them.
#[actix_web::test]
async fn stalled_uploaders_time_out_and_are_left_out() {
    let src = Source::start(SMALL).await;
    src.origin.add_generated("/plain.bin", SMALL as u64, SMALL as u64);
    let s = testkit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let timed = |name: String| {
        let mut c = peer(&s, &src.url(), dir.path(), &name);
        c.piece_timeout = Some(PIECE_TIMEOUT);
        c
    };
    // they fetch the file together first (and may time out on each other)
    let rates = [Some(0), Some(64)];
    let (bad, held, _) =
        timed_swarm(2, |i| dfget_sim::PeerConfig { upload_rate: rates[i], ..timed(format!("s{i}.bin")) }).await;
    for (i, r) in held.iter().enumerate() {
        assert_eq!(&ok(r, &format!("stalled {i}")).md5, &src.md5, "they hold the file");
    }
    let stalled = bad.peers();
    let cids: Vec<String> = stalled.iter().map(|p| p.cid().to_string()).collect();
    let (swarm, others, with_bad) = timed_swarm(4, |i| timed(format!("o{i}.bin"))).await;
    let reports: Vec<&Report> = others.iter().enumerate().map(|(i, r)| ok(r, &format!("peer {i}"))).collect();
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(&r.md5, &src.md5, "peer {i}: output md5");
        let timed_out = |e: &String| e.contains("no complete answer within") || e.contains("Timeout while waiting");
        assert!(r.stats.piece_errors.iter().all(timed_out), "peer {i} failed pieces otherwise: {:?}", r.stats);
        for cid in &cids {
            let failed = r.stats.piece_errors.iter().filter(|e| e.contains(cid.as_str())).count();
            assert!(failed <= 4, "peer {i} was handed {cid} again after a failure: {:?}", r.stats.piece_errors);
        }
    }
    let failures: u64 = reports.iter().map(|r| r.stats.piece_failures).sum();
    let asked: Vec<u64> = stalled.iter().map(|p| p.uploads_served()).collect();
    let late = start_peer(timed("late.bin".into()));
    let late = late.download().await;
    assert_eq!(ok(&late, "late peer").stats.piece_failures, 0, "eliminated sources are handed to nobody");
    assert_eq!(stalled.iter().map(|p| p.uploads_served()).collect::<Vec<_>>(), asked);
    swarm.stop_uploaders().await;

    // the same four on a file without bad peers (cached and held by one good peer first)
    let plain = src.origin.url("/plain.bin");
    let good = start_peer(peer(&s, &plain, dir.path(), "good.bin"));
    ok(&good.download().await, "good peer");
    let (_, _, without) = timed_swarm(4, |i| peer(&s, &plain, dir.path(), &format!("p{i}.bin"))).await;
    eprintln!(
        "p2p figures: stalled uploaders (silent, 64 B/s): 4 clients in {:.2} s with {failures} pieces timed out \
         after {}s (asked {asked:?}), {:.2} s without them",
        with_bad.as_secs_f64(),
        PIECE_TIMEOUT.as_secs(),
        without.as_secs_f64()
    );
}

/// A peer that reports every piece without fetching any: its uploader serves what it does not
/// hold, each downloader's md5 check fails (FILE_MD5_NOT_MATCH, and 701 with result 500), and
/// after `elimination_limit` source errors it is handed to nobody. One piece at a time per
/// client (`peer_down_limit` 1), and each client goes down when done, so until then every
/// client is handed the liar, the one peer holding pieces, for its first piece.
#[actix_web::test]
async fn a_peer_claiming_pieces_it_lacks_is_eliminated() {
    let src = Source::start(SMALL).await;
    let config = testkit::config_with(|c| c.scheduler.peer_down_limit = 1);
    let limit = config.scheduler.elimination_limit as u64;
    let s = testkit::start_with(config).await;
    let dir = tempfile::tempdir().unwrap();
    let mut lcfg = peer(&s, &src.url(), dir.path(), "liar.bin");
    lcfg.claim_unfetched = true;
    let liar = start_peer(lcfg);
    let own = liar.download().await;
    assert!(matches!(own, Err(SimError::Md5Mismatch { .. })), "the liar holds nothing: {own:?}");

    let mut errors = Vec::new();
    let mut secs = Vec::new();
    for i in 0..limit + 1 {
        let p = start_peer(peer(&s, &src.url(), dir.path(), &format!("o{i}.bin")));
        let r = p.download().await;
        let r = ok(&r, &format!("peer {i}"));
        assert_eq!(&r.md5, &src.md5, "peer {i}: output md5");
        errors.push(r.stats.md5_errors_reported);
        secs.push(r.duration_secs);
        assert_eq!(p.service_down().await, Ok(612));
        p.stop_uploader().await;
    }
    assert_eq!(errors.iter().sum::<u64>(), liar.uploads_served(), "every piece it served was refused: {errors:?}");
    assert!(errors.iter().all(|e| *e <= 1), "never handed again to whom it failed: {errors:?}");
    let out = errors.iter().position(|e| *e == 0).expect("eliminated within elimination_limit failures");
    assert!(out as u64 <= limit && errors[out..].iter().all(|e| *e == 0), "eliminated for good: {errors:?}");
    eprintln!(
        "p2p figures: a peer claiming pieces it lacks served {} pieces, all refused, and was handed to nobody \
         after {out} clients (elimination_limit {limit}); clients took {secs:.2?} s",
        liar.uploads_served()
    );
}

/// `n` peers of `config` download at the same time: the peers (their uploaders still up),
/// their results and the wall time.
async fn timed_swarm(
    n: usize,
    config: impl FnMut(usize) -> dfget_sim::PeerConfig,
) -> (Swarm, Vec<Result<Report, SimError>>, Duration) {
    let swarm = Swarm::start(n, config);
    let started = std::time::Instant::now();
    let results = swarm.download().await;
    (swarm, results, started.elapsed())
}
