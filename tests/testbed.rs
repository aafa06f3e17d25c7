//! The testbed's small case: 4 peer hosts download a 16 MiB file through the supernode while
//! the origin's link is held to 50 Mbit/s, each host in its own network namespace with a
//! 1 Gbit/s link (`testkit::testbed`). Every output's md5 must be the file's, the origin must
//! have sent the file exactly once (one CDN fetch), and most pieces must have come from peers.
//! Timing is reported, never asserted.
//!
//! Its own `main` (no libtest harness): the executable is started again as each peer host's
//! dfget-sim. Where the machine cannot build the network (not root, no iproute2, a sandbox
//! that refuses namespaces) it says why and skips.

use std::time::Instant;

use testkit::testbed::{run_host_role_if_asked, Rate, Testbed, TestbedSpec};

const MIB: u64 = 1024 * 1024;
const HOSTS: usize = 4;
const FILE: &str = "/testbed-16m.bin";

fn main() {
    run_host_role_if_asked();
    let started = Instant::now();
    let testbed = match Testbed::build(&TestbedSpec::new(HOSTS, Rate::mbit(50))) {
        Ok(testbed) => testbed,
        Err(why) => {
            println!("testbed: SKIPPED, the network cannot be built here: {why}");
            return;
        }
    };
    testbed.origin().add_generated(FILE, 15, 16 * MIB);
    let md5 = testbed.origin().content(FILE).md5_hex();
    let supernode = testbed.start_supernode(env!("CARGO_BIN_EXE_supernode"), &[]);

    let run = testbed.run_swarm(&supernode, FILE, HOSTS);

    for peer in &run.peers {
        assert_eq!(peer.report.md5, md5, "peer host {}: output md5\n{}", peer.host, peer.log);
    }
    let origin = testbed.origin().stats(FILE);
    assert_eq!(run.origin_bytes, 16 * MIB, "the origin sent the file once: {origin:?}");
    assert_eq!(origin.body_requests, 1, "one CDN fetch: {origin:?}");
    let (from_peers, from_supernode) = (run.pieces_from_peers(), run.pieces_from_supernode());
    assert!(
        from_peers > from_supernode,
        "most pieces from peers: {from_peers} from peers, {from_supernode} from the supernode\n{}",
        supernode.log()
    );
    println!(
        "testbed: {HOSTS} hosts, 16 MiB at 50 Mbit/s: swarm {:.2} s (bound {:.2} s), {from_peers} pieces from peers, \
         {from_supernode} from the supernode, {} of {} polls answered 602; {:.1} s in all",
        run.wall.as_secs_f64(),
        run.bound().as_secs_f64(),
        run.waits(),
        run.polls(),
        started.elapsed().as_secs_f64()
    );
}
