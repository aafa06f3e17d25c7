//! P2P end to end: simulated dfget 1.0.6 peers (`dfget-sim`) download through the real server
//! from the in-process origin. Every peer runs its own uploader on 127.0.0.1 with a distinct
//! port, so peers serve each other pieces as dfget's uploaders do.
//!
//! * `swarms`: 1, 3 and 16 peers on a 64 MiB file; CDN pieces stay servable while a run ends;
//! * `bad_peers`: an uploader that dies midway, one that corrupts every piece, uploaders that
//!   stall, a peer claiming pieces it lacks;
//! * `operator`: a paused task waits and resumes, a deleted task fails its client at once;
//! * `failover`: a client of two supernodes moves to the other when its own fails it midway;
//! * `source_pattern`: nothing cached; pieces from the origin by range and from peers;
//! * `large_file`: 4 peers fetch a 2 GiB file in 15 MiB pieces through the supernode binary.

mod bad_peers;
mod failover;
mod large_file;
mod operator;
mod source_pattern;
mod swarms;

use std::path::Path;
use std::time::{Duration, Instant};

use dfget_sim::{Peer, PeerConfig, Report, SimError};
use testkit::origin::Origin;
use testkit::swarm::Swarm;
use testkit::TestServer;

const MIB: usize = 1024 * 1024;
/// The file of the swarm scenarios (17 pieces of 4 MiB).
const BIG: usize = 64 * MIB;
/// The file of the fault scenarios (7 pieces).
const SMALL: usize = 24 * MIB;
/// Where the origin serves a scenario's file.
const FILE: &str = "/file.bin";

/// The origin of a scenario: one generated file at `/file.bin`, and its md5.
struct Source {
    origin: Origin,
    md5: String,
}

impl Source {
    async fn start(len: usize) -> Source {
        let origin = Origin::start().await;
        origin.add_generated(FILE, len as u64, len as u64);
        let md5 = origin.content(FILE).md5_hex();
        Source { origin, md5 }
    }

    fn url(&self) -> String {
        self.origin.url(FILE)
    }

    /// Requests the origin got for the file.
    fn requests(&self) -> u64 {
        self.origin.stats(FILE).requests
    }

    /// Body bytes the origin sent for the file.
    fn body_bytes(&self) -> u64 {
        self.origin.stats(FILE).body_bytes
    }
}

/// A peer of the supernode `s` downloading `url` to `dir/name`.
fn peer(s: &TestServer, url: &str, dir: &Path, name: &str) -> PeerConfig {
    let mut c = PeerConfig::new(s.control().to_string(), url, dir.join(name));
    c.download_timeout = Some(Duration::from_secs(80));
    c.piece_timeout = Some(Duration::from_secs(30));
    c
}

struct Totals {
    from_cdn: u64,
    from_peers: u64,
    failures: u64,
    md5_errors: u64,
    uploads: u64,
    suc_failed: u64,
}

fn totals(peers: &[Peer], reports: &[&Report]) -> Totals {
    Totals {
        from_cdn: reports.iter().map(|r| r.stats.pieces_from_supernode).sum(),
        from_peers: reports.iter().map(|r| r.stats.pieces_from_peers).sum(),
        failures: reports.iter().map(|r| r.stats.piece_failures).sum(),
        md5_errors: reports.iter().map(|r| r.stats.md5_errors_reported).sum(),
        uploads: peers.iter().map(Peer::uploads_served).sum(),
        suc_failed: reports.iter().map(|r| r.stats.suc_reports_failed).sum(),
    }
}

/// The piece failures of a swarm, described (a peer keeps the first 20 reasons).
fn piece_failures(reports: &[&Report]) -> Vec<String> {
    let mut described: Vec<String> = reports.iter().flat_map(|r| r.stats.piece_errors.iter().cloned()).collect();
    let total: u64 = reports.iter().map(|r| r.stats.piece_failures).sum();
    let undescribed = (total as usize).saturating_sub(described.len());
    if undescribed > 0 {
        described.push(format!("{undescribed} more failures"));
    }
    described
}

fn ok<'a>(r: &'a Result<Report, SimError>, who: &str) -> &'a Report {
    match r {
        Ok(r) => r,
        Err(e) => panic!("{who}: download failed: {e}"),
    }
}

/// `n` peers download one 64 MiB file at the same time; returns (swarm, reports, wall time).
async fn swarm_downloads(n: usize) -> (Swarm, Vec<Report>, Duration) {
    let src = Source::start(BIG).await;
    let md5 = &src.md5;
    let s = testkit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let swarm = Swarm::start(n, |i| peer(&s, &src.url(), dir.path(), &format!("out{i}.bin")));
    let started = Instant::now();
    let results = swarm.download().await;
    let wall = started.elapsed();
    let reports: Vec<Report> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| match r {
            Ok(r) => r,
            Err(e) => panic!("peer {i} of {n}: download failed: {e}"),
        })
        .collect();
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(&r.md5, md5, "peer {i}: output md5");
        assert_eq!(
            std::fs::metadata(dir.path().join(format!("out{i}.bin"))).unwrap().len(),
            BIG as u64,
            "peer {i}: file size"
        );
        assert_eq!(r.stats.pieces_from_supernode + r.stats.pieces_from_peers, 17, "peer {i}: 17 pieces fetched: {r:?}");
        assert_eq!(r.finish.as_ref().map(|f| f.md5.as_str()), Some(md5.as_str()), "peer {i}: finish md5");
        assert_eq!(
            r.stats.suc_reports_failed, 0,
            "peer {i}: /peer/piece/suc must answer 611: {}",
            r.stats.last_suc_error
        );
    }
    assert_eq!(src.body_bytes(), BIG as u64, "the origin sent the file exactly once");
    assert_eq!(src.requests(), 1, "one origin GET");
    (swarm, reports, wall)
}
