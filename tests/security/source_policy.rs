//! The source policy: allow and deny lists of host names, addresses and CIDRs, the metadata and
//! link-local addresses denied by default, and redirects, which are checked like the URL a
//! client names. A refused source is never contacted.

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::origin::Origin;
use testkit::protocol::url_task_id;
use testkit::{config_with, dfget_body, wait_done, TestServer};

use crate::{assert_error, get, origin_with_file, post, register_and_cache, strings};

#[actix_web::test]
async fn denied_cidr_refuses_registration_task_api_and_preheat_without_fetching() {
    let config = config_with(|c| c.security.source_deny = strings(&["127.0.0.0/8"]));
    let s = testkit::start_with(config).await;
    let (origin, url) = origin_with_file("/denied.bin").await;

    let r = post(&s, "/peer/registry", &dfget_body(&url, "127.0.0.1-1-1.000")).await;
    assert_error(&r, 403, "registration of a denied source");
    let r = post(&s, "/api/v1/tasks", &json!({ "rawURL": url })).await;
    assert_error(&r, 403, "POST /api/v1/tasks of a denied source");
    for path in ["/preheats", "/api/v1/preheats"] {
        let r = post(&s, path, &json!({ "type": "file", "url": url })).await;
        assert_error(&r, 403, &format!("POST {path} of a denied source"));
    }
    // The policy is checked before any request is made, so each refusal above came back
    // without the origin being asked: nothing to wait for before counting its requests.
    assert_eq!(origin.stats("/denied.bin").requests, 0, "a denied source must not be contacted");
    let r = get(&s, &format!("/api/v1/tasks/{}", url_task_id(&url))).await;
    assert_eq!(r.status, 404, "no task for a denied source: {}", r.text);
    assert_eq!(get(&s, "/_ping").await.status, 200);
}

#[actix_web::test]
async fn metadata_and_link_local_addresses_are_denied_by_default_before_connecting() {
    let s = testkit::start().await;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.170.2/v2/credentials",
        "http://100.100.100.200/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
    ] {
        let started = Instant::now();
        let r = post(&s, "/peer/registry", &dfget_body(url, "127.0.0.1-1-1.000")).await;
        assert_error(&r, 403, &format!("registration of {url}"));
        let r = post(&s, "/api/v1/tasks", &json!({ "rawURL": url })).await;
        assert_error(&r, 403, &format!("POST /api/v1/tasks {url}"));
        let r = post(&s, "/preheats", &json!({ "type": "file", "url": url })).await;
        assert_error(&r, 403, &format!("POST /preheats {url}"));
        // a connection attempt would take the 3 s connect timeout: the check comes first
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(1), "{url}: refused only after {elapsed:?}");
        let r = get(&s, &format!("/api/v1/tasks/{}", url_task_id(url))).await;
        assert_eq!(r.status, 404, "{url}: {}", r.text);
    }
    // ordinary sources are untouched by the default list
    let (_origin, url) = origin_with_file("/fine.bin").await;
    register_and_cache(&s, &url, "127.0.0.1-2-2.000").await;
}

/// An origin whose `/redirect.bin` answers `302 Location: <target>`.
async fn redirecting_origin(target: &str) -> Origin {
    let origin = Origin::start().await;
    origin.add_redirect("/redirect.bin", target);
    origin
}

/// Registers a source that redirects somewhere it must not go; returns (elapsed, failure
/// reason). Panics if the download succeeds.
async fn register_refused_redirect(s: &TestServer, url: &str) -> (Duration, String) {
    let started = Instant::now();
    let r = post(s, "/peer/registry", &dfget_body(url, "127.0.0.1-1-1.000")).await;
    let v = r.json();
    let (elapsed, reason) = match (r.status, v["code"].as_i64()) {
        (200, Some(607)) | (200, Some(608)) => (started.elapsed(), v["msg"].as_str().unwrap_or("").to_string()),
        (403, _) => (started.elapsed(), v["message"].as_str().unwrap_or("").to_string()),
        (200, Some(200)) => {
            let id = v["data"]["taskId"].as_str().unwrap().to_string();
            let info = wait_done(s, &id, Duration::from_secs(15)).await;
            assert_ne!(info["cdnStatus"], "SUCCESS", "a redirect to a refused source was downloaded: {info}");
            (started.elapsed(), info["errorMsg"].as_str().unwrap_or("").to_string())
        }
        other => panic!("unexpected answer {other:?} to a redirecting source: {}", r.text),
    };
    eprintln!("{url}: refused after {elapsed:?}: {reason}");
    (elapsed, reason)
}

#[actix_web::test]
async fn redirect_to_the_metadata_address_fails_within_seconds() {
    let s = testkit::start().await;
    let redirecting = redirecting_origin("http://169.254.169.254/x").await;
    let url = redirecting.url("/redirect.bin");
    let (elapsed, reason) = register_refused_redirect(&s, &url).await;
    // (refused by the guarded connector, or at worst by the 3 s connect timeout)
    assert!(elapsed < Duration::from_secs(5), "a redirect to a denied address took {elapsed:?} ({reason})");
    assert!(!reason.is_empty(), "no reason given");
    assert!(redirecting.stats("/redirect.bin").requests >= 1, "the origin was asked");
    // the server still works
    let (_origin, ok) = origin_with_file("/after-redirect.bin").await;
    register_and_cache(&s, &ok, "127.0.0.1-2-2.000").await;
}

#[actix_web::test]
async fn redirect_to_a_denied_host_name_is_not_followed() {
    let config = config_with(|c| c.security.source_deny.push("localhost".into()));
    let s = testkit::start_with(config).await;
    let (target, _) = origin_with_file("/target.bin").await;
    let to = format!("http://localhost:{}/target.bin", target.addr().port());
    let redirecting = redirecting_origin(&to).await;
    let url = redirecting.url("/redirect.bin");
    let (_, reason) = register_refused_redirect(&s, &url).await;
    assert!(redirecting.stats("/redirect.bin").requests >= 1, "the origin was asked");
    assert_eq!(target.stats("/target.bin").requests, 0, "the denied name was contacted after a redirect ({reason})");
}

#[actix_web::test]
async fn allow_list_of_names_refuses_address_literals() {
    let config = config_with(|c| c.security.source_allow = strings(&["localhost"]));
    let s = testkit::start_with(config).await;
    let (origin, url) = origin_with_file("/literal.bin").await;
    let r = post(&s, "/peer/registry", &dfget_body(&url, "127.0.0.1-1-1.000")).await;
    assert_error(&r, 403, "an address literal with a names-only allow list");
    assert_eq!(origin.stats("/literal.bin").requests, 0);
    // the named host is admitted
    let by_name = format!("http://localhost:{}/literal.bin", origin.addr().port());
    register_and_cache(&s, &by_name, "127.0.0.1-2-2.000").await;
}

#[actix_web::test]
async fn redirect_outside_a_names_only_allow_list_is_not_followed() {
    let config = config_with(|c| c.security.source_allow = strings(&["localhost"]));
    let s = testkit::start_with(config).await;
    let (target, to) = origin_with_file("/target.bin").await;
    let redirecting = redirecting_origin(&to).await;
    let url = format!("http://localhost:{}/redirect.bin", redirecting.addr().port());
    let (_, reason) = register_refused_redirect(&s, &url).await;
    assert!(redirecting.stats("/redirect.bin").requests >= 1, "the allowed origin was asked");
    assert_eq!(
        target.stats("/target.bin").requests,
        0,
        "a source outside the allow list was contacted after a redirect ({reason})"
    );
}

#[actix_web::test]
async fn allow_list_admits_only_what_it_names() {
    // an allow list without 127.0.0.1
    let config = config_with(|c| c.security.source_allow = strings(&["10.0.0.0/8"]));
    let s = testkit::start_with(config).await;
    let (origin, url) = origin_with_file("/allow.bin").await;
    let r = post(&s, "/peer/registry", &dfget_body(&url, "127.0.0.1-1-1.000")).await;
    assert_error(&r, 403, "a source outside the allow list");
    let r = post(&s, "/api/v1/tasks", &json!({ "rawURL": url })).await;
    assert_error(&r, 403, "POST /api/v1/tasks outside the allow list");
    assert_eq!(origin.stats("/allow.bin").requests, 0);
    drop(s);

    // an allow list naming 127.0.0.1
    let config = config_with(|c| c.security.source_allow = strings(&["127.0.0.1"]));
    let s = testkit::start_with(config).await;
    register_and_cache(&s, &url, "127.0.0.1-2-2.000").await;
    assert_eq!(origin.stats("/allow.bin").body_requests, 1);
    // the default deny list still applies beside an allow list
    let r = post(&s, "/peer/registry", &dfget_body("http://169.254.169.254/x", "127.0.0.1-3-3.000")).await;
    assert_error(&r, 403, "metadata address with an allow list");
}

#[actix_web::test]
async fn denied_host_name_is_refused() {
    let config = config_with(|c| c.security.source_deny = strings(&["localhost"]));
    let s = testkit::start_with(config).await;
    let (origin, url) = origin_with_file("/named.bin").await;
    let by_name = format!("http://localhost:{}/named.bin", origin.addr().port());
    let r = post(&s, "/peer/registry", &dfget_body(&by_name, "127.0.0.1-1-1.000")).await;
    assert_error(&r, 403, "a denied host name");
    let r = post(&s, "/api/v1/tasks", &json!({ "rawURL": by_name })).await;
    assert_error(&r, 403, "POST /api/v1/tasks of a denied host name");
    let r = post(&s, "/peer/registry", &dfget_body("http://LOCALHOST./x", "127.0.0.1-1-1.000")).await;
    assert_error(&r, 403, "a denied host name in another case, with a trailing dot");
    assert_eq!(origin.stats("/named.bin").requests, 0);
    // the same origin by address is not named by the list
    register_and_cache(&s, &url, "127.0.0.1-2-2.000").await;
}
