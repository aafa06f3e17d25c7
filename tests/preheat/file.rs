//! File preheats: a preheated URL is a cache hit for the next registration; the preheat ID
//! is the task ID a registration of the same (filtered) URL gets; duplicates while running
//! are the same preheat, after SUCCESS a 208 with the ID, after FAILED a new run; records
//! survive a restart and are collected once their retention has passed.

use std::time::Duration;

use serde_json::json;
use testkit::origin::Origin;
use testkit::protocol::preheat_id;
use testkit::{eventually, task_info, ClosedPort, Config, TestServer};

use crate::{create, info, list, post, register, wait_done, wait_failed, wait_success, EPOCH};

const MIB: u64 = 1024 * 1024;

#[actix_web::test]
async fn file_preheat_then_registration_is_a_cache_hit() {
    let origin = Origin::start().await;
    origin.add_generated("/files/big.bin", 5, 6 * MIB + 17);
    let s = testkit::start().await;
    let url = origin.url("/files/big.bin");

    let id = create(&s, &json!({"type": "file", "url": url})).await;
    assert_eq!(id, preheat_id(&url, "", "", None));
    let v = wait_success(&s, &id).await;
    assert!(v.get("errorMsg").is_none());
    let stats = origin.stats("/files/big.bin");
    assert_eq!(stats.body_requests, 1, "{stats:?}");

    let data = register(&s, &url, "127.0.0.1-1-1.000").await;
    assert_eq!(data["taskId"], id.as_str());
    assert_eq!(data["fileLength"], 6 * MIB + 17);
    assert_eq!(task_info(&s, &id).await["cdnStatus"], "SUCCESS");
    assert_eq!(origin.stats("/files/big.bin"), stats, "no new origin request");
}

/// `filter`, `identifier` and a `Range` header shape the ID as for a registration: the task ID
/// of the URL without the `filter` query keys, with `identifier` as the sign and the Range.
#[actix_web::test]
async fn file_preheat_id_follows_filter_identifier_and_range() {
    let origin = Origin::start().await;
    origin.add_generated("/files/f.bin", 6, 100_000);
    let s = testkit::start().await;
    let url = origin.url("/files/f.bin?token=abc&keep=1");
    let body = json!({"type": "file", "url": url, "filter": "token", "identifier": "build-7"});
    let id = create(&s, &body).await;
    assert_eq!(id, preheat_id(&url, "token", "build-7", None));
    assert_eq!(id, preheat_id(&origin.url("/files/f.bin?keep=1&token=other"), "token", "build-7", None));
    wait_success(&s, &id).await;
    let ranged = json!({"type": "file", "url": origin.url("/files/f.bin"), "headers": {"Range": "bytes=0-999"}});
    let rid = create(&s, &ranged).await;
    assert_eq!(rid, preheat_id(&origin.url("/files/f.bin"), "", "", Some("bytes=0-999")));
    assert_ne!(rid, preheat_id(&origin.url("/files/f.bin"), "", "", None));
    wait_done(&s, &rid).await;
}

#[actix_web::test]
async fn file_preheat_of_unreachable_url_fails_with_reason() {
    let closed = ClosedPort::bind();
    let s = testkit::start().await;
    let url = format!("http://127.0.0.1:{}/file.bin", closed.port());
    let id = create(&s, &json!({"type": "file", "url": url})).await;
    let v = wait_failed(&s, &id).await;
    eprintln!("unreachable: {}", v["errorMsg"]);
    let finish = chrono::DateTime::parse_from_rfc3339(v["finishTime"].as_str().unwrap()).unwrap();
    let start = chrono::DateTime::parse_from_rfc3339(v["startTime"].as_str().unwrap()).unwrap();
    assert!(finish >= start);
}

#[actix_web::test]
async fn duplicate_while_running_is_the_same_preheat() {
    let origin = Origin::start().await;
    origin.add_generated("/slow.bin", 7, 300_000);
    origin.set_delay("/slow.bin", Duration::from_secs(2));
    let s = testkit::start().await;
    let body = json!({"type": "file", "url": origin.url("/slow.bin")});

    let id = create(&s, &body).await;
    let first = info(&s, &id).await;
    assert!(first["status"] == "WAITING" || first["status"] == "RUNNING", "{first}");
    assert_eq!(first["finishTime"], EPOCH);
    // the run is under way: its fetch reached the origin, which holds the answer for 2 s
    eventually(Duration::from_secs(5), "the preheat's fetch reaches the origin", || async {
        origin.stats("/slow.bin").requests >= 1
    })
    .await;
    for path in ["/api/v1/preheats", "/preheats"] {
        let (status, text) = post(&s, path, &body.to_string()).await;
        assert_eq!(status, 200, "{path}: {text}");
        assert_eq!(testkit::json(&text), json!({"ID": id}), "{text}");
    }
    let again = info(&s, &id).await;
    assert_eq!(again["startTime"], first["startTime"], "no second run: {again}");
    wait_success(&s, &id).await;
    assert_eq!(origin.stats("/slow.bin").requests, 1, "{:?}", origin.stats("/slow.bin"));
    assert_eq!(list(&s, "/preheats").await.len(), 1);
}

#[actix_web::test]
async fn duplicate_after_success_is_208_with_the_id() {
    let origin = Origin::start().await;
    origin.add_generated("/done.bin", 8, 50_000);
    let s = testkit::start().await;
    let body = json!({"type": "file", "url": origin.url("/done.bin")});
    let id = create(&s, &body).await;
    let done = wait_success(&s, &id).await;
    for path in ["/api/v1/preheats", "/preheats", "/v1.24/preheats"] {
        let (status, text) = post(&s, path, &body.to_string()).await;
        assert_eq!(status, 208, "{path}: {text}");
        assert_eq!(
            text,
            format!("{{\"ID\":\"{id}\",\"code\":208,\"message\":\"preheat task already exists, id:{id}\"}}\n"),
            "{path}"
        );
    }
    assert_eq!(info(&s, &id).await, done, "the record is unchanged");
    assert_eq!(origin.stats("/done.bin").requests, 1);
}

#[actix_web::test]
async fn failed_preheat_runs_again() {
    let origin = Origin::start().await;
    origin.add_generated("/flaky.bin", 9, 70_000);
    origin.set_status("/flaky.bin", Some(500));
    let (s, clock) = testkit::start_on_manual_clock(Config::default()).await;
    let body = json!({"type": "file", "url": origin.url("/flaky.bin")});

    let id = create(&s, &body).await;
    let failed = wait_failed(&s, &id).await;
    let msg = failed["errorMsg"].as_str().unwrap();
    assert!(msg.contains("500"), "the reason names the source's answer: {msg}");
    let requests = origin.stats("/flaky.bin").requests;

    origin.set_status("/flaky.bin", None);
    clock.advance(Duration::from_secs(1)); // a later startTime
    let again = create(&s, &body).await;
    assert_eq!(again, id);
    let v = wait_success(&s, &id).await;
    assert!(v.get("errorMsg").is_none(), "{v}");
    assert!(v["startTime"].as_str().unwrap() > failed["startTime"].as_str().unwrap(), "a fresh run: {failed} then {v}");
    assert!(origin.stats("/flaky.bin").requests > requests);
    assert_eq!(list(&s, "/preheats").await.len(), 1);
}

#[actix_web::test]
async fn records_survive_a_restart() {
    let origin = Origin::start().await;
    origin.add_generated("/keep.bin", 4, 40_000);
    let home = tempfile::tempdir().unwrap();
    let first = TestServer::start_in(home, Config::default()).await;
    let ok = create(&first, &json!({"type": "file", "url": origin.url("/keep.bin")})).await;
    let ok_info = wait_success(&first, &ok).await;
    let closed = ClosedPort::bind();
    let gone = format!("http://127.0.0.1:{}/gone", closed.port());
    let bad = create(&first, &json!({"type": "file", "url": gone})).await;
    let bad_info = wait_failed(&first, &bad).await;
    let home = first.stop().await;

    let second = TestServer::start_in(home, Config::default()).await;
    assert_eq!(info(&second, &ok).await, ok_info);
    assert_eq!(info(&second, &bad).await, bad_info);
    assert_eq!(list(&second, "/preheats").await.len(), 2);
    // Still a finished duplicate after the restart.
    let (status, _) =
        post(&second, "/preheats", &json!({"type": "file", "url": origin.url("/keep.bin")}).to_string()).await;
    assert_eq!(status, 208);
    second.stop().await;
}

/// A finished record stays visible for `retention`, and is collected by the first collection
/// after that (then 404).
#[actix_web::test]
async fn finished_records_are_collected_after_retention() {
    let origin = Origin::start().await;
    origin.add_generated("/short.bin", 4, 1000);
    let config = Config::default();
    let (retention, every) = (config.preheat.retention, config.preheat.collect_interval);
    let (s, clock) = testkit::start_on_manual_clock(config).await;
    let id = create(&s, &json!({"type": "file", "url": origin.url("/short.bin")})).await;
    wait_success(&s, &id).await;
    let status = || async { testkit::get(&s, &format!("/preheats/{id}")).await.0 };
    assert_eq!(status().await, 200, "visible right after finishing");
    clock.advance(retention);
    assert_eq!(status().await, 200, "visible for the whole retention");
    clock.advance(every);
    eventually(Duration::from_secs(10), "collected after its retention", || async { status().await == 404 }).await;
    assert!(list(&s, "/preheats").await.is_empty());
}
