//! The cluster as one P2P network: one origin fetch for all, clients of one node fetching
//! from clients of another, CDN pieces from the task's owner, and preheats carried out by
//! the owner whichever node gets them.

use std::time::Duration;

use serde_json::json;
use testkit::protocol::url_task_id;
use testkit::{eventually, get_json, post_json};

use crate::{assert_all_finished, clients, cluster, first_nodes};

#[actix_web::test]
async fn nine_clients_on_three_nodes_fetch_the_origin_once_and_share_across_nodes() {
    let (_redis, nodes, origin) = cluster("one-network").await;
    let url = origin.url("/f.bin");
    let dir = tempfile::tempdir().unwrap();
    let swarm = clients(&nodes, &url, dir.path());
    let results = swarm.download().await;
    assert_all_finished(&results, &origin);

    let stats = origin.stats("/f.bin");
    assert_eq!(stats.body_requests, 1, "one origin fetch for the whole cluster: {stats:?}");
    let registered = first_nodes(swarm.peers());
    let used: std::collections::BTreeSet<&String> = registered.values().collect();
    assert!(used.len() >= 2, "the clients spread over the nodes: {registered:?}");

    let owner = nodes.owner(&url_task_id(&url));
    let owner_download = nodes.download(owner).to_string();
    let mut crossed = 0;
    for p in swarm.peers() {
        let mine = &registered[p.cid()];
        for f in p.stats().fetched {
            if f.from_supernode {
                assert_eq!(f.addr, owner_download, "CDN pieces come from the owner's download port: {f:?}");
            } else if registered.get(&f.cid).is_some_and(|theirs| theirs != mine) {
                crossed += 1;
            }
        }
    }
    assert!(crossed > 0, "some piece went from a client of one node to a client of another");
}

#[actix_web::test]
async fn a_preheat_sent_to_a_node_that_does_not_own_the_task_is_fetched_by_the_owner_once() {
    let (_redis, nodes, origin) = cluster("preheat").await;
    let url = origin.url("/f.bin");
    let owner = nodes.owner(&url_task_id(&url));
    let other = (owner + 1) % 3;
    let (status, v) = post_json(&nodes.node(other), "/preheats", &json!({"type": "file", "url": url})).await;
    assert_eq!(status, 200, "{v}");
    let id = v["ID"].as_str().expect("ID").to_string();
    eventually(Duration::from_secs(60), "the preheat succeeds", || async {
        get_json(&nodes.node(other), &format!("/preheats/{id}")).await.1["status"] == "SUCCESS"
    })
    .await;
    let (_, owned) = get_json(&nodes.node(owner), &format!("/api/v1/tasks/{id}")).await;
    assert_eq!(owned["cdnStatus"], "SUCCESS", "the owner has the copy: {owned}");
    assert_eq!(origin.stats("/f.bin").body_requests, 1);

    let dir = tempfile::tempdir().unwrap();
    let results = clients(&nodes, &url, dir.path()).download().await;
    assert_all_finished(&results, &origin);
    let stats = origin.stats("/f.bin");
    assert_eq!(stats.requests, 1, "a download through any node after the preheat takes no origin bytes: {stats:?}");
}
