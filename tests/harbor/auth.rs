//! The API token on the job API: with `[security] api_token` set, every `/oapi/v1/jobs…`
//! request needs it, as Harbor's OAuth mode sends it (`Authorization: Bearer <token>`) or as
//! `?access_token=`; anything else is 401 `{"message":"Unauthorized"}`. `/healthy` never needs
//! it. Without a token the job API is open, like the rest of the API.

use actix_web::http::Method;
use serde_json::{json, Value};
use testkit::{config_with, ClosedPort, TestServer};

use crate::{decode, harbor_body, harbor_call};

const TOKEN: &str = "pat-7f3b2c";

/// Status and body of a POST of a valid job and of a GET of job `id`, with `auth` and an
/// optional query string.
async fn both(s: &TestServer, url: &str, id: i64, query: &str, auth: Option<&str>) -> [(u16, String); 2] {
    let body = harbor_body(url, "registry-token", "single_seed_peer", json!([1, 2]));
    [
        harbor_call(s, Method::POST, &format!("/oapi/v1/jobs{query}"), Some(&body), auth).await,
        harbor_call(s, Method::GET, &format!("/oapi/v1/jobs/{id}{query}"), None, auth).await,
    ]
}

fn assert_unauthorized(answers: &[(u16, String)], what: &str) {
    for (status, text) in answers {
        assert_eq!(*status, 401, "{what}: {text}");
        assert_eq!(testkit::json(text), json!({"message": "Unauthorized"}), "{what}");
    }
}

#[actix_web::test]
async fn token_set_guards_the_job_api_but_not_healthy() {
    let s = testkit::start_with(config_with(|c| c.security.api_token = TOKEN.into())).await;
    let closed = ClosedPort::bind();
    let url = format!("http://127.0.0.1:{}/v2/library/app/manifests/v1", closed.port());

    for auth in [None, Some("Bearer wrong"), Some(&*format!("Basic {TOKEN}")), Some("password:pat-7f3b2c")] {
        let (status, text) = harbor_call(&s, Method::GET, "/healthy", None, auth).await;
        assert_eq!((status, text.as_str()), (200, "\"OK\"\n"), "/healthy with {auth:?}");
    }

    assert_unauthorized(&both(&s, &url, 1, "", None).await, "no token");
    assert_unauthorized(&both(&s, &url, 1, "", Some("Bearer wrong")).await, "a wrong token");
    assert_unauthorized(&both(&s, &url, 1, "", Some(&format!("Bearer {TOKEN}x"))).await, "a longer token");
    assert_unauthorized(&both(&s, &url, 1, "", Some(TOKEN)).await, "no scheme");
    assert_unauthorized(&both(&s, &url, 1, "?access_token=wrong", None).await, "a wrong access_token");
    let (status, text) = harbor_call(&s, Method::GET, "/v1.24/oapi/v1/jobs/1", None, None).await;
    assert_eq!(status, 401, "under a version prefix too: {text}");
    let (status, _) = harbor_call(&s, Method::DELETE, "/oapi/v1/jobs/1", None, None).await;
    assert_eq!(status, 401, "on any method");

    // Harbor's OAuth mode, the scheme in any case, and the query form.
    let mut ids: Vec<i64> = Vec::new();
    let bearer = format!("Bearer {TOKEN}");
    let lower = format!("bearer {TOKEN}");
    for (query, auth) in
        [("", Some(bearer.as_str())), ("", Some(lower.as_str())), (&*format!("?access_token={TOKEN}"), None)]
    {
        let [(status, text), _] = both(&s, &url, 1, query, auth).await;
        assert_eq!(status, 200, "{query} {auth:?}: {text}");
        let id = decode(&text).id;
        let (status, text) = harbor_call(&s, Method::GET, &format!("/oapi/v1/jobs/{id}{query}"), None, auth).await;
        assert_eq!(status, 200, "{query} {auth:?}: {text}");
        assert_eq!(decode(&text).id, id);
        ids.push(id);
    }
    assert_eq!(ids, vec![1, 2, 3], "IDs from 1, one per job");
    // A wrong header is not saved by a right query.
    let [(status, _), _] = both(&s, &url, 1, &format!("?access_token={TOKEN}"), Some("Bearer wrong")).await;
    assert_eq!(status, 401);

    // The rest of the API keeps its own rule: reads are open.
    let (status, _) = testkit::get(&s, "/api/v1/preheats").await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn no_token_leaves_the_job_api_open() {
    let s = testkit::start().await;
    let closed = ClosedPort::bind();
    let url = format!("http://127.0.0.1:{}/v2/library/app/manifests/v1", closed.port());
    for auth in [None, Some("Bearer anything"), Some("Basic dXNlcm5hbWU6eA==")] {
        let [(post, created), _] = both(&s, &url, 1, "", auth).await;
        assert_eq!(post, 200, "{auth:?}: {created}");
        let id = decode(&created).id;
        let (status, text) = harbor_call(&s, Method::GET, &format!("/oapi/v1/jobs/{id}"), None, auth).await;
        assert_eq!(status, 200, "{auth:?}: {text}");
        let v: Value = testkit::json(&text);
        assert_eq!(v["id"], id);
    }
}
