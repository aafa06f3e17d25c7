//! The source CDN pattern: the supernode caches nothing; the pieces no peer has come from the
//! origin, one range request each, and peers share the rest.

use dfget_sim::Report;
use supernode_actors::cdn::CdnPattern;
use testkit::origin::Origin;
use testkit::protocol::url_task_id;
use testkit::swarm::Swarm;
use testkit::{config_with, data_path, dfget_body, post_registration};

use crate::{ok, peer, piece_failures, FILE, MIB, SMALL};

/// Source pieces are whole piece sizes of the source: no header, no trailer.
const PIECE: u64 = 4 * MIB as u64;

fn source_pattern() -> supernode::config::Config {
    config_with(|c| c.cdn.pattern = CdnPattern::Source)
}

#[actix_web::test]
async fn pieces_come_from_the_source_by_range_and_from_peers_and_nothing_is_cached() {
    let len = SMALL as u64 + 3;
    let pieces = len.div_ceil(PIECE);
    let origin = Origin::start().await;
    origin.add_generated(FILE, 41, len);
    let md5 = origin.content(FILE).md5_hex();
    let s = testkit::start_with(source_pattern()).await;
    let dir = tempfile::tempdir().unwrap();
    let url = origin.url(FILE);

    let (status, v) = post_registration(&s, &dfget_body(&url, "127.0.0.1-9-9.000")).await;
    assert_eq!((status, &v["code"]), (200, &serde_json::json!(200)), "{v}");
    assert_eq!(v["data"]["cdnSource"], "source", "{v}");
    assert_eq!(v["data"]["fileLength"], len, "{v}");

    let swarm = Swarm::start(3, |i| peer(&s, &url, dir.path(), &format!("out{i}.bin")));
    let reports: Vec<Report> =
        swarm.download().await.iter().enumerate().map(|(i, r)| ok(r, &format!("peer {i}")).clone()).collect();
    let refs: Vec<&Report> = reports.iter().collect();
    assert!(piece_failures(&refs).is_empty(), "{:#?}", piece_failures(&refs));
    let from_source: u64 = reports.iter().map(|r| r.stats.pieces_from_supernode).sum();
    let from_peers: u64 = reports.iter().map(|r| r.stats.pieces_from_peers).sum();
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(r.md5, md5, "peer {i}: output md5");
        assert_eq!(r.stats.pieces_from_supernode + r.stats.pieces_from_peers, pieces, "peer {i}: {r:?}");
        let finish = r.finish.as_ref().expect("finish data");
        assert_eq!((finish.file_length, finish.md5.as_str()), (0, ""), "peer {i}: nothing cached, nothing to compare");
    }

    let st = origin.stats(FILE);
    assert_eq!(st.requests, st.ranges.len() as u64, "every origin request asked for a range: {st:?}");
    assert_eq!(st.ranges[0], "bytes=0-0", "the registration checks the source with its first byte: {st:?}");
    assert_eq!(st.ranges.len() as u64, 1 + from_source, "one range GET per piece not served by a peer: {st:?}");
    let piece_bytes: u64 = st.bodies[1..].iter().sum();
    assert_eq!(st.bodies[0], 1);
    assert!(
        st.bodies[1..].iter().all(|b| *b <= PIECE) && piece_bytes <= from_source * PIECE,
        "no whole body, only pieces: {st:?}"
    );
    assert!(from_peers > 0, "peers share pieces: {from_source} from the source, {from_peers} from peers");
    assert!(!data_path(&s.home_path(), &url_task_id(&url)).exists(), "nothing is cached");
    eprintln!(
        "source pattern: {} pieces for 3 peers, {from_source} from the origin by range, {from_peers} from peers, \
         {} origin body bytes for a {len}-byte file",
        3 * pieces,
        st.body_bytes
    );
}

#[actix_web::test]
async fn a_source_without_ranges_is_refused_with_the_reason() {
    let origin = Origin::start().await;
    origin.add_generated(FILE, 42, 5 * MIB as u64);
    origin.set_ranges(FILE, false);
    let s = testkit::start_with(source_pattern()).await;

    let (status, v) = post_registration(&s, &dfget_body(&origin.url(FILE), "127.0.0.1-1-1.000")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["code"], 607, "a source without ranges cannot serve the pattern: {v}");
    let msg = v["msg"].as_str().unwrap_or("");
    assert!(msg.contains("range"), "the reason names the missing range support: {v}");
    assert_eq!(origin.stats(FILE).ranges, ["bytes=0-0"], "only the check was asked for");
    let (_, again) = post_registration(&s, &dfget_body(&origin.url(FILE), "127.0.0.1-2-2.000")).await;
    assert_eq!(again["code"], 607, "the next registration checks again: {again}");
    assert_eq!(origin.stats(FILE).ranges.len(), 2);
}
