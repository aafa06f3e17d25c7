//! Registration over a node list and migration, against scripted supernodes: what dfget sends
//! where when a node is dead, refuses, or fails the run midway.

use std::time::Duration;

use crate::fake_node::{accepted, code, content, finish, hand_out, FakeNode, Scratch};
use crate::nodes::{parse_nodes, NodeList};
use crate::wire::md5_hex;
use crate::{Peer, PeerConfig, SimError};

/// A seed with which the list `addrs` is walked in exactly that order.
fn seed_for(addrs: &[String]) -> u64 {
    let entries = parse_nodes(addrs, &crate::scope::AddressScope::loopback()).expect("node list");
    (0..10_000).find(|s| NodeList::new(entries.clone(), Some(*s)).addrs() == addrs).expect("a seed for that order")
}

/// A peer of the nodes `addrs`, walked in that order.
fn peer(addrs: &[String], dir: &Scratch, name: &str) -> Peer {
    let mut c = PeerConfig::with_nodes(addrs.to_vec(), "http://127.0.0.1:1/file", dir.0.join(name));
    c.node_order_seed = Some(seed_for(addrs));
    c.download_timeout = Some(Duration::from_secs(20));
    c.control_timeout = Duration::from_secs(2);
    Peer::new(c).expect("peer config")
}

fn addrs(nodes: &[&FakeNode]) -> Vec<String> {
    nodes.iter().map(|n| n.addr.to_string()).collect()
}

#[actix_web::test]
async fn a_piece_handed_out_again_is_reported_not_fetched() {
    let dir = Scratch::new("held");
    let node = FakeNode::start(1, vec![accepted("t1", 1)], 2);
    node.script_polls(vec![hand_out(vec![node.cdn_piece(0)]), hand_out(vec![node.cdn_piece(0)]), finish(1)]);
    let p = peer(&addrs(&[&node]), &dir, "held.bin");
    let r = p.download().await.expect("download");
    assert_eq!(r.md5, md5_hex(&content(1)));
    assert_eq!(node.requests("/download/0").len(), 1, "fetched once");
    let sucs = node.requests("/peer/piece/suc");
    assert_eq!(sucs.len(), 2, "reported once per hand-out: {sucs:?}");
    assert!(sucs.iter().all(|s| s.contains("pieceRange=0-20")), "{sucs:?}");
    assert_eq!(r.stats.pieces_already_held, 1);
    assert_eq!(r.stats.pieces_from_supernode, 1);
    let node_addr = node.addr.to_string();
    let fetched: Vec<_> = r.stats.fetched.iter().map(|f| (f.piece_num, f.from_supernode, &f.addr, &f.node)).collect();
    assert_eq!(fetched, vec![(0, true, &node_addr, &node_addr)]);
    node.stop().await;
}

#[actix_web::test]
async fn a_failing_node_sends_the_run_to_the_next() {
    let dir = Scratch::new("migrate");
    let a = FakeNode::start(2, vec![accepted("ta", 2)], 1);
    let b = FakeNode::start(2, vec![accepted("tb", 2)], 2);
    a.script_polls(vec![hand_out(vec![a.cdn_piece(0)]), code(604)]);
    b.script_polls(vec![hand_out(vec![b.cdn_piece(0), b.cdn_piece(1)]), finish(2)]);
    let list = addrs(&[&a, &b]);
    let p = peer(&list, &dir, "migrated.bin");
    let r = p.download().await.expect("download");
    assert_eq!(r.md5, md5_hex(&content(2)));
    assert_eq!(r.stats.registrations, list, "registered with a, then with b");
    assert_eq!(r.stats.migrations, 1);
    assert_eq!(r.task_id, "tb");
    assert_eq!(p.node(), Some(list[1].clone()));

    // the piece held from a is reported to b, not fetched again; the other comes from b
    assert_eq!(r.stats.pieces_already_held, 1);
    let fetched: Vec<_> = r.stats.fetched.iter().map(|f| (f.piece_num, f.addr.clone(), f.node.clone())).collect();
    assert_eq!(fetched, vec![(0, list[0].clone(), list[0].clone()), (1, list[1].clone(), list[1].clone())]);
    assert_eq!(
        a.requests("/peer/piece/suc"),
        vec![format!(
            "/peer/piece/suc?taskId=ta&cid={}&dstCid=cdnnode:127.0.0.1~{}&pieceRange=0-20",
            p.cid(),
            a.addr.port()
        )]
    );
    let b_sucs = b.requests("/peer/piece/suc");
    assert_eq!(b_sucs.len(), 2, "{b_sucs:?}");
    assert!(b_sucs.iter().all(|s| s.contains("taskId=tb")), "{b_sucs:?}");

    // same cid everywhere; b's first poll starts over
    let b_polls = b.requests("/peer/task");
    assert!(b_polls[0].contains("status=700") && b_polls[0].contains("taskId=tb"), "{b_polls:?}");
    let src = format!("srcCid={}&", p.cid());
    assert!(a.requests("/peer/task").iter().chain(&b_polls).all(|q| q.contains(&src)));
    assert_eq!((a.requests("/peer/registry").len(), b.requests("/peer/registry").len()), (1, 1));
    // the metrics go to the node in use
    assert!(a.requests("/task/metrics").is_empty());
    assert!(!b.requests("/task/metrics").is_empty());
    a.stop().await;
    b.stop().await;
}

#[actix_web::test]
async fn with_no_other_node_the_failure_ends_the_run() {
    let dir = Scratch::new("alone");
    let a = FakeNode::start(1, vec![accepted("ta", 1)], 1);
    a.script_polls(vec![code(604)]);
    let p = peer(&addrs(&[&a]), &dir, "alone.bin");
    match p.download().await {
        Err(SimError::Poll { code: 604, .. }) => {}
        other => panic!("expected the 604, got {other:?}"),
    }
    let st = p.stats();
    assert_eq!(st.migrations, 1);
    assert_eq!(st.registrations, addrs(&[&a]));
    assert_eq!(a.requests("/peer/registry").len(), 1, "the node just used is not asked again");
    a.stop().await;
}

#[actix_web::test]
async fn registration_skips_nodes_that_do_not_answer() {
    let dir = Scratch::new("walk");
    let dead = tokio::net::TcpSocket::new_v4().expect("socket");
    dead.bind((std::net::Ipv4Addr::LOCALHOST, 0).into()).expect("bind");
    let dead_addr = dead.local_addr().expect("bound").to_string();
    let http_500 = FakeNode::start(1, vec![(500, code(500))], 1);
    let code_500 = FakeNode::start(1, vec![(200, code(500))], 1);
    let good = FakeNode::start(1, vec![accepted("tg", 1)], 1);
    let mut list = vec![dead_addr];
    list.extend(addrs(&[&http_500, &code_500, &good]));
    let p = peer(&list, &dir, "walk.bin");
    let reg = p.register().await.expect("registered with the good node");
    assert_eq!(reg.task_id, "tg");
    let st = p.stats();
    assert_eq!(st.registrations, vec![list[3].clone()]);
    let failed: Vec<&str> = st.registration_failures.iter().filter_map(|f| f.split(": ").next()).collect();
    assert_eq!(failed, list[..3].iter().map(String::as_str).collect::<Vec<_>>(), "{:?}", st.registration_failures);
    for n in [http_500, code_500, good] {
        n.stop().await;
    }
}

#[actix_web::test]
async fn a_source_error_ends_the_walk_and_auth_waits_are_asked_again() {
    let dir = Scratch::new("codes");
    let refuses = FakeNode::start(1, vec![(200, code(607))], 1);
    let good = FakeNode::start(1, vec![accepted("tg", 1)], 1);
    let p = peer(&addrs(&[&refuses, &good]), &dir, "refused.bin");
    match p.register().await {
        Err(SimError::Register { code: Some(607), .. }) => {}
        other => panic!("expected the 607, got {other:?}"),
    }
    assert!(good.requests("/peer/registry").is_empty(), "no other node is asked after 607");

    let waits = FakeNode::start(1, vec![(200, code(609)), (200, code(609)), accepted("tw", 1)], 1);
    let p = peer(&addrs(&[&waits]), &dir, "waited.bin");
    assert_eq!(p.register().await.expect("registered after the waits").task_id, "tw");
    assert_eq!(waits.requests("/peer/registry").len(), 3);
    for n in [refuses, good, waits] {
        n.stop().await;
    }
}
