//! Jobs as records: kept across a restart with their outcome, numbered without reuse (also
//! after a restart, after collection, and after an unreadable state file), and collected once
//! the preheat retention has passed since they ended.

use std::time::Duration;

use serde_json::Value;
use testkit::registry::{push_image, Format, Front, FrontAuth, Registry};
use testkit::{eventually, ClosedPort, Config, TestServer};

use crate::{bytes, create_job, poll, wait_job};

#[actix_web::test]
async fn jobs_survive_a_restart_and_ids_are_not_reused() {
    let reg = Registry::start().await;
    let name = "library/kept";
    push_image(&reg.base(), name, Some("v1"), Format::Docker, "amd64", &[bytes(141, 120_000)]).await;
    let front = Front::start(Some(reg.base()), FrontAuth::None);
    let s = testkit::start().await;
    let ok = create_job(&s, &front.url(&format!("/v2/{name}/manifests/v1")), "t").await;
    let failed = create_job(&s, &front.url(&format!("/v2/{name}/manifests/v404")), "t").await;
    let (_, ok_before) = wait_job(&s, ok.id).await;
    let (_, failed_before) = wait_job(&s, failed.id).await;
    assert_eq!(ok_before["state"], "SUCCESS", "{ok_before}");
    assert_eq!(failed_before["state"], "FAILURE", "{failed_before}");

    // A job still PENDING when the server stops (its registry never answers) is PENDING after
    // the restart, and its preheat runs again.
    let closed = ClosedPort::bind();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let pending =
        create_job(&s, &format!("http://{}/v2/slow/app/manifests/v1", silent.local_addr().unwrap()), "t").await;
    let home = s.stop().await;

    let s = TestServer::start_in(home, Config::default()).await;
    assert_eq!(poll(&s, ok.id).await.1, ok_before, "the same job after a restart");
    assert_eq!(poll(&s, failed.id).await.1, failed_before, "the same job after a restart");
    assert_eq!(poll(&s, pending.id).await.0.state, "PENDING");
    let next = create_job(&s, &format!("http://127.0.0.1:{}/v2/a/manifests/b", closed.port()), "t").await;
    assert_eq!(next.id, pending.id + 1, "numbering goes on after a restart");
    s.stop().await;
    drop(silent);
}

/// A job stays for `[preheat] retention` after it ended, then is collected (404); its number
/// is not handed out again.
#[actix_web::test]
async fn ended_jobs_are_collected_after_the_retention() {
    let closed = ClosedPort::bind();
    let config = Config::default();
    let (retention, every) = (config.preheat.retention, config.preheat.collect_interval);
    let (s, clock) = testkit::start_on_manual_clock(config).await;
    let url = format!("http://127.0.0.1:{}/v2/a/manifests/b", closed.port());
    let job = create_job(&s, &url, "t").await;
    let (done, _) = wait_job(&s, job.id).await;
    assert_eq!(done.state, "FAILURE");
    let status = || async { testkit::get(&s, &format!("/oapi/v1/jobs/{}", job.id)).await.0 };
    clock.advance(retention);
    assert_eq!(status().await, 200, "kept for the whole retention");
    clock.advance(every);
    eventually(Duration::from_secs(10), "collected after the retention", || async { status().await == 404 }).await;
    let (_, text) = testkit::get(&s, &format!("/oapi/v1/jobs/{}", job.id)).await;
    assert_eq!(testkit::json(&text), serde_json::json!({"message": "record not found"}));
    let next = create_job(&s, &url, "t").await;
    assert_eq!(next.id, job.id + 1, "a collected job's number is not reused");
}

/// A state file that cannot be read is set aside, and numbering starts above the clock in
/// milliseconds: no number handed out before (they count up from 1) comes again.
#[actix_web::test]
async fn unreadable_state_file_does_not_bring_back_old_ids() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("preheats.json"), b"{\"preheats\": [tor").unwrap();
    let s = TestServer::start_in(home, Config::default()).await;
    let closed = ClosedPort::bind();
    let job = create_job(&s, &format!("http://127.0.0.1:{}/v2/a/manifests/b", closed.port()), "t").await;
    let now_ms = chrono::Utc::now().timestamp_millis();
    assert!(job.id > 1_600_000_000_000 && job.id <= now_ms + 1, "above the clock in ms: {}", job.id);
    assert!(s.home_path().join("preheats.json.bad").exists(), "the unreadable file is kept aside");
    let v: Value = serde_json::from_slice(&std::fs::read(s.home_path().join("preheats.json")).unwrap()).unwrap();
    assert_eq!(v["next_job_id"], job.id + 1, "{v}");
}

/// The image preheat a pending job follows is deleted (`DELETE /preheats/{id}`): the job ends
/// in FAILURE saying so, instead of waiting for its timeout.
#[actix_web::test]
async fn deleting_the_preheat_fails_its_pending_job() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let s = testkit::start().await;
    let url = format!("http://{}/v2/slow/app/manifests/v1", silent.local_addr().unwrap());
    let job = create_job(&s, &url, "t").await;
    let (_, raw) = poll(&s, job.id).await;
    assert_eq!(raw["state"], "PENDING");
    let (status, text) = testkit::delete(&s, &format!("/preheats/{}", raw["task_id"].as_str().unwrap())).await;
    assert_eq!(status, 200, "{text}");
    let (done, raw) = poll(&s, job.id).await;
    assert_eq!(done.state, "FAILURE", "{raw}");
    assert!(done.job_state().error.contains("was deleted"), "{raw}");
    drop(silent);
}
