//! Peers that fail the others: an uploader that dies after it reported pieces, and one that
//! corrupts every piece it serves. The others report the failure, get the pieces elsewhere
//! and finish; the CDN copy is never thrown away because of them.

use std::rc::Rc;
use std::time::Duration;

use dfget_sim::Report;
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
