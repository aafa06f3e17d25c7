//! Jobs that must fail, and what Harbor is told: the POST is accepted (Harbor would fail the
//! task on an error status just the same) and the job ends in FAILURE with the reason in
//! `result.job_states[].error`, which Harbor copies into the task's error.

use std::time::Duration;

use actix_web::http::Method;
use serde_json::json;
use testkit::registry::{push_image, Format, Front, FrontAuth, Registry, TokenServer};
use testkit::Config;

use crate::{assert_arrays_hold_no_null, bytes, create_job, harbor_body, harbor_call, poll, wait_job};

/// A tag the registry does not have: FAILURE naming the manifest URL and the registry's 404.
#[actix_web::test]
async fn missing_manifest_fails_with_the_registry_status() {
    let reg = Registry::start().await;
    let front = Front::start(Some(reg.base()), FrontAuth::None);
    let s = testkit::start().await;
    let url = front.url("/v2/library/nothing/manifests/9.9");

    let job = create_job(&s, &url, "harbor-token").await;
    let (done, raw) = wait_job(&s, job.id).await;
    assert_eq!(done.state, "FAILURE", "{raw}");
    assert_arrays_hold_no_null(&raw);
    let error = &done.job_state().error;
    eprintln!("missing manifest: {error}");
    assert!(error.contains(&url) && error.contains("404"), "names the manifest and the status: {error}");
    assert!(done.successes().is_empty() && done.failures().is_empty(), "no layer was known: {raw}");
    assert_eq!(raw["result"]["state"], "FAILURE", "{raw}");
    assert_eq!(raw["result"]["job_states"][0]["state"], "FAILURE", "{raw}");
}

/// A registry token that the registry does not take (expired, wrong repository): FAILURE with
/// the 401; no other token is fetched from the challenge's realm, whose server would hand one
/// out, and no layer is fetched.
#[actix_web::test]
async fn rejected_registry_token_fails_with_401() {
    let reg = Registry::start().await;
    let name = "secure/app";
    let image = push_image(&reg.base(), name, Some("v1"), Format::Docker, "amd64", &[bytes(121, 50_000)]).await;
    let tokens = TokenServer::start(&testkit::registry::basic("harbor", "x"), "good-token");
    let challenge = format!("Bearer realm=\"{}\",service=\"harbor-registry\"", tokens.realm());
    let front = Front::start(Some(reg.base()), FrontAuth::Bearer { token: "good-token".into(), challenge });
    let s = testkit::start().await;
    let url = front.url(&format!("/v2/{name}/manifests/v1"));

    let job = create_job(&s, &url, "expired-token").await;
    let (done, raw) = wait_job(&s, job.id).await;
    assert_eq!(done.state, "FAILURE", "{raw}");
    let error = &done.job_state().error;
    eprintln!("rejected token: {error}");
    assert!(error.contains(&url) && error.contains("401"), "names the manifest and the status: {error}");
    assert!(tokens.requests().is_empty(), "no token dance: {:?}", tokens.requests());
    assert_eq!(front.requests(&format!("/v2/{name}/blobs/{}", image.layers[0].0)), 0);
    for h in front.hits() {
        assert_eq!(h.authorization.as_deref(), Some("Bearer expired-token"), "sent as given: {h:?}");
    }
}

/// A layer whose bytes do not match its digest: FAILURE naming that layer, which is listed in
/// `failure_tasks` with its reason; the good layer in `success_tasks`.
#[actix_web::test]
async fn layer_digest_mismatch_names_the_layer() {
    let front = Front::start(None, FrontAuth::None);
    let name = "bad/app";
    let (good, claimed, served) = (bytes(131, 200_000), bytes(132, 100_000), bytes(133, 100_000));
    let digests = front.serve_image(name, "v1", &[(&good, &good), (&claimed, &served)]);
    let (good_digest, claimed_digest) = (digests[0].as_str(), digests[1].as_str());
    let s = testkit::start().await;

    let job = create_job(&s, &front.url(&format!("/v2/{name}/manifests/v1")), "t").await;
    // The image fails as soon as the bad layer does: the good one is listed if it was done by then.
    let (done, raw) = wait_job(&s, job.id).await;
    assert_eq!(done.state, "FAILURE", "{raw}");
    assert_arrays_hold_no_null(&raw);
    let bad_url = front.url(&format!("/v2/{name}/blobs/{claimed_digest}"));
    let error = &done.job_state().error;
    assert!(error.contains(&bad_url) && error.contains("digest"), "names the failing layer: {error}");
    let failures = done.failures();
    assert_eq!(failures.len(), 1, "{raw}");
    assert_eq!(failures[0].0, bad_url);
    assert!(failures[0].1.contains("digest mismatch"), "{failures:?}");
    let good_url = front.url(&format!("/v2/{name}/blobs/{good_digest}"));
    assert!(done.successes().iter().all(|(u, _, _)| *u == good_url), "{raw}");
}

/// `args.timeout` (nanoseconds): a job whose manifest does not come within it fails, even
/// though the preheat itself may still go on. The registry here accepts the connection and
/// never answers; only the server's clock moves.
#[actix_web::test]
async fn job_fails_after_its_timeout() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v2/slow/app/manifests/v1", silent.local_addr().unwrap());
    let (s, clock) = testkit::start_on_manual_clock(Config::default()).await;
    let body = harbor_body(&url, "t", "", json!([1])).replace(r#""timeout":0"#, r#""timeout":5000000000"#);
    let (status, text) = harbor_call(&s, Method::POST, "/oapi/v1/jobs", Some(&body), None).await;
    assert_eq!(status, 200, "{text}");
    let id = testkit::json(&text)["id"].as_i64().unwrap();
    assert_eq!(testkit::json(&text)["args"]["timeout"], 5_000_000_000_i64, "echoed: {text}");

    clock.advance(Duration::from_secs(4));
    assert_eq!(poll(&s, id).await.0.state, "PENDING");
    clock.advance(Duration::from_secs(1));
    let (done, raw) = wait_job(&s, id).await;
    assert_eq!(done.state, "FAILURE", "{raw}");
    let error = &done.job_state().error;
    assert!(error.contains("timeout of 5s"), "{error}");
    drop(silent);
}
