//! Heartbeat, seeds and `/peer/network`. Both answer one body that is both shapes dfdaemon
//! reads: `{"code":200,"msg":"success","data":{…}}` with the payload keys again at top level.

use std::time::Duration;

use serde_json::{json, Value};
use testkit::origin::{salted_bytes, Origin};
use testkit::{post_json, wait_success, RunGc, TestServer};

use crate::{gc_config, heartbeat, need_register, register, start, Dfget, KIB};

fn version(v: &Value) -> String {
    let top = v["version"].as_str().unwrap_or("");
    assert!(!top.is_empty(), "no version: {v}");
    assert_eq!(v["data"]["version"], top, "version differs between the shapes: {v}");
    top.to_string()
}

/// `seedTaskIDs` (null = empty), checked to be the same in both shapes.
fn seed_task_ids(v: &Value) -> Vec<String> {
    assert_eq!(v.get("seedTaskIDs"), v["data"].get("seedTaskIDs"), "seedTaskIDs differ between the shapes: {v}");
    match &v["seedTaskIDs"] {
        Value::Null => Vec::new(),
        Value::Array(a) => a.iter().map(|x| x.as_str().expect("string id").to_string()).collect(),
        other => panic!("seedTaskIDs is {other}"),
    }
}

async fn network(s: &TestServer, urls: &[&str]) -> Value {
    let (status, v) = post_json(s, "/peer/network", &json!({ "urls": urls })).await;
    assert_eq!(status, 200, "network → {v}");
    assert_eq!(v["code"], 200, "network → {v}");
    assert_eq!(v.get("nodes"), v["data"].get("nodes"), "nodes differ between the shapes: {v}");
    v
}

#[actix_web::test]
async fn heartbeat_needs_register_for_unknown_and_after_restart() {
    let s = testkit::start_with(gc_config()).await;
    let origin = Origin::start().await;
    origin.add("/hb.bin", salted_bytes(16 * KIB, 4));

    let v = heartbeat(&s, "unknown").await;
    assert!(need_register(&v), "unknown cID: {v}");
    assert_eq!(v["data"]["needRegister"], true, "{v}");
    assert_eq!(v["needRegister"], true, "{v}");
    let v1 = version(&v);

    let c = Dfget::new("hb-1", "127.0.0.2", "hb-host");
    register(&s, &c, &origin.url("/hb.bin")).await;
    let v = heartbeat(&s, &c.cid).await;
    assert!(!need_register(&v), "registered cID: {v}");
    assert_eq!(version(&v), v1, "same process, same version");

    // restart on the same home
    let home = s.stop().await;
    let s = TestServer::start_in(home, gc_config()).await;
    let v = heartbeat(&s, &c.cid).await;
    assert!(need_register(&v), "after a restart: {v}");
    let v2 = version(&v);
    assert_ne!(v1, v2, "version must change on restart");
}

#[actix_web::test]
async fn seeds_are_granted_listed_and_dropped() {
    let mut config = gc_config();
    config.scheduler.max_seeds_per_url = 1;
    let seed_expire = config.gc.seed_expire_time;
    let (s, clock) = start(config).await;
    let origin = Origin::start().await;
    origin.add("/seed.bin", salted_bytes(100 * KIB, 5));
    let url = origin.url("/seed.bin");

    let seed = Dfget::new("seed-1", "127.0.0.2", "seed-a");
    let mut body = seed.body(&url);
    body["asSeed"] = json!(true);
    let data = testkit::register(&s, &body).await;
    let id = data["taskId"].as_str().unwrap().to_string();
    assert_eq!(data["asSeed"], true, "{data}");
    assert_eq!(data["seedTaskID"], id.as_str(), "{data}");

    let second = Dfget::new("seed-2", "127.0.0.3", "seed-b");
    let mut body = second.body(&url);
    body["asSeed"] = json!(true);
    let data = testkit::register(&s, &body).await;
    assert_eq!(data["taskId"], id.as_str());
    assert_eq!(data["asSeed"], false, "max_seeds_per_url = 1: {data}");
    assert_eq!(data["seedTaskID"], "", "{data}");
    wait_success(&s, &id, Duration::from_secs(20)).await;

    let v = heartbeat(&s, &seed.cid).await;
    assert!(!need_register(&v));
    assert_eq!(seed_task_ids(&v), vec![id.clone()], "{v}");
    let v = heartbeat(&s, &second.cid).await;
    assert!(!need_register(&v));
    assert!(seed_task_ids(&v).is_empty(), "not a seed: {v}");

    heartbeat(&s, &seed.cid).await;
    let v = network(&s, &[&url]).await;
    let nodes = v["nodes"].as_array().unwrap_or_else(|| panic!("nodes: {v}"));
    assert_eq!(nodes.len(), 1, "{v}");
    let node = &nodes[0];
    assert_eq!(node["basic"]["ID"], seed.peer_id(), "{node}");
    assert_eq!(node["basic"]["IP"], "127.0.0.2", "{node}");
    assert!(node["load"].is_u64(), "load: {node}");
    assert_eq!(node["tasks"][0]["task"]["ID"], id.as_str(), "{node}");
    assert_eq!(node["tasks"][0]["pieces"][0]["path"], seed.path(), "{node}");
    assert_eq!(v["data"]["nodes"][0]["basic"]["ID"], seed.peer_id());
    let other = network(&s, &["http://127.0.0.1:1/not-seeded.bin"]).await;
    assert!(other["nodes"].is_null(), "{other}");

    // the seed stops heart-beating → dropped after seed_expire_time
    clock.advance(seed_expire - Duration::from_secs(1));
    s.run_gc(RunGc::Meta).await;
    assert!(!network(&s, &[&url]).await["nodes"].is_null(), "seed dropped before seed_expire_time");
    clock.advance(Duration::from_secs(1));
    assert_eq!(s.run_gc(RunGc::Meta).await.clients, 1, "the silent seed goes");
    let v = network(&s, &[&url]).await;
    assert!(v["nodes"].is_null() && v["data"]["nodes"].is_null(), "{v}");
    assert!(seed_task_ids(&heartbeat(&s, &seed.cid).await).is_empty());
}
