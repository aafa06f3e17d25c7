//! Image preheats behind authentication, Harbor's own calls, and image preheats that must
//! fail: a registry asking for a bearer token (fetched from its token server with the
//! preheat's basic credentials) or for basic credentials; the Harbor "Dragonfly" provider's
//! sequence at the root paths; a layer whose bytes do not match its digest; a manifest that
//! does not exist.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use testkit::protocol::preheat_id;
use testkit::registry::{basic, push_image, Format, Front, FrontAuth, Hit, Registry, TokenServer};
use testkit::{get_json, poll_until, TestServer};

use crate::{assert_layers_cached, bytes, create, list, wait_failed, wait_success};

/// Token authentication: the manifest GET is answered
/// 401 with a Bearer challenge; the token server issues a token only for the preheat's basic
/// credentials; blobs are fetched with the bearer token. Without the credentials → FAILED;
/// the same request with them then runs again (a FAILED preheat is run again) and succeeds.
#[actix_web::test]
async fn image_preheat_behind_token_auth() {
    let reg = Registry::start().await;
    let name = "secure/app";
    let image =
        push_image(&reg.base(), name, Some("v1"), Format::Docker, "amd64", &[bytes(51, 600_000), bytes(52, 900_001)])
            .await;
    let creds = basic("alice", "s3cret");
    let tokens = TokenServer::start(&creds, "tok-4711");
    let challenge = format!("Bearer realm=\"{}\",service=\"test\",scope=\"repository:{name}:pull\"", tokens.realm());
    let front = Front::start(Some(reg.base()), FrontAuth::Bearer { token: "tok-4711".into(), challenge });
    let s = testkit::start().await;
    let url = front.url(&format!("/v2/{name}/manifests/v1"));

    // Without credentials: no token, FAILED with a reason, no blob fetched.
    let id = create(&s, &json!({"type": "image", "url": url})).await;
    let v = wait_failed(&s, &id).await;
    eprintln!("without credentials: {}", v["errorMsg"]);
    assert!(tokens.requests().iter().all(|(auth, _)| auth.is_none()), "{:?}", tokens.requests());
    for (digest, _) in &image.layers {
        assert_eq!(front.requests(&format!("/v2/{name}/blobs/{digest}")), 0);
    }

    // With the basic credentials: runs again under the same ID and succeeds.
    let again = create(&s, &json!({"type": "image", "url": url, "headers": {"Authorization": creds}})).await;
    assert_eq!(again, id, "the preheat ID ignores headers other than Range");
    let v = wait_success(&s, &id).await;
    assert!(v.get("errorMsg").is_none(), "{v}");
    let token_requests = tokens.requests();
    let (auth, query) = token_requests.last().unwrap().clone();
    assert_eq!(auth.as_deref(), Some(creds.as_str()), "the token request carries the preheat's credentials");
    let params: BTreeMap<String, String> = serde_urlencoded::from_str(&query).unwrap();
    assert_eq!(params.get("service").map(String::as_str), Some("test"), "{query}");
    assert_eq!(params.get("scope").map(String::as_str), Some(format!("repository:{name}:pull").as_str()), "{query}");
    for (digest, _) in &image.layers {
        let path = format!("/v2/{name}/blobs/{digest}");
        let blob_hits: Vec<Hit> = front.hits().into_iter().filter(|h| h.path == path).collect();
        assert_eq!(blob_hits.len(), 1, "{blob_hits:?}");
        assert_eq!(blob_hits[0].status, 200, "the blob GET carries the bearer token: {blob_hits:?}");
        assert_eq!(blob_hits[0].authorization.as_deref(), Some("Bearer tok-4711"));
    }
    assert_eq!(list(&s, "/preheats").await.len(), 3);
    assert_layers_cached(&s, &front, name, &image.layers).await;
}

/// Plain basic auth at the registry: the preheat headers are sent as they are.
#[actix_web::test]
async fn image_preheat_behind_basic_auth() {
    let reg = Registry::start().await;
    let name = "basic/app";
    let image =
        push_image(&reg.base(), name, Some("v1"), Format::Docker, "amd64", &[bytes(61, 100_000), bytes(62, 200_000)])
            .await;
    let creds = basic("bob", "pw");
    let front = Front::start(Some(reg.base()), FrontAuth::Basic(creds.clone()));
    let s = testkit::start().await;
    let url = front.url(&format!("/v2/{name}/manifests/v1"));

    let id =
        create(&s, &json!({"type": "image", "url": url, "headers": {"Authorization": "Basic d3Jvbmc6d3Jvbmc="}})).await;
    wait_failed(&s, &id).await;

    create(&s, &json!({"type": "image", "url": url, "headers": {"Authorization": creds}})).await;
    wait_success(&s, &id).await;
    for (digest, _) in &image.layers {
        let path = format!("/v2/{name}/blobs/{digest}");
        let blob_hits: Vec<Hit> = front.hits().into_iter().filter(|h| h.path == path).collect();
        assert_eq!(blob_hits.len(), 1, "{blob_hits:?}");
        assert_eq!(blob_hits[0].authorization.as_deref(), Some(creds.as_str()));
    }
}

/// A layer whose bytes do not match its digest: the child fails, the image fails naming it.
#[actix_web::test]
async fn image_preheat_fails_on_a_layer_digest_mismatch() {
    let front = Front::start(None, FrontAuth::None);
    let name = "bad/app";
    let (good, claimed) = (bytes(71, 300_000), bytes(72, 200_000));
    let served = bytes(73, 200_000); // not what the digest says
    let digests = front.serve_image(name, "v1", &[(&good, &good), (&claimed, &served)]);
    let (good_digest, bad_digest) = (digests[0].as_str(), digests[1].as_str());
    let s = testkit::start().await;

    let id = create(&s, &json!({"type": "image", "url": front.url(&format!("/v2/{name}/manifests/v1"))})).await;
    let v = wait_failed(&s, &id).await;
    let msg = v["errorMsg"].as_str().unwrap();
    assert!(msg.contains(bad_digest), "the failing layer is named: {msg}");
    assert!(!msg.contains(good_digest), "only the failing layer is named: {msg}");

    let bad_child = preheat_id(&front.url(&format!("/v2/{name}/blobs/{bad_digest}")), "", "", None);
    let child = wait_failed(&s, &bad_child).await;
    eprintln!("failed layer: {}", child["errorMsg"]);
    let good_child = preheat_id(&front.url(&format!("/v2/{name}/blobs/{good_digest}")), "", "", None);
    wait_success(&s, &good_child).await;
}

/// Manifest errors: an unknown tag at the real registry and a URL that is no manifest URL.
#[actix_web::test]
async fn image_preheat_of_a_missing_manifest_fails() {
    let reg = Registry::start().await;
    let s = testkit::start().await;
    let id = create(&s, &json!({"type": "image", "url": format!("{}/v2/nothing/here/manifests/v9", reg.base())})).await;
    let v = wait_failed(&s, &id).await;
    eprintln!("missing manifest: {}", v["errorMsg"]);
    let id = create(&s, &json!({"type": "image", "url": format!("{}/not/a/manifest", reg.base())})).await;
    wait_failed(&s, &id).await;
    assert_eq!(list(&s, "/preheats").await.len(), 2, "no children for failed manifests");
}

/// Harbor's create call: `POST /preheats` with its headers.
async fn harbor_post(s: &TestServer, body: &str) -> (u16, String) {
    let mut res = testkit::client()
        .post(s.url("/preheats"))
        .insert_header(("Content-Type", "application/json"))
        .insert_header(("Accept", "application/json"))
        .send_body(body.to_string())
        .await
        .expect("create sent");
    let bytes = res.body().await.unwrap();
    (res.status().as_u16(), String::from_utf8_lossy(&bytes).into_owned())
}

/// The Harbor 2.x "Dragonfly" provider's calls at the root paths (`/_ping`, create, GET one,
/// which it polls until SUCCESS and reads `ID`, `startTime`, `finishTime`, `status` of), against a registry
/// behind token auth with the bearer token Harbor passes in `headers`.
#[actix_web::test]
async fn harbor_sequence() {
    let reg = Registry::start().await;
    let name = "library/harbor-app";
    let image = push_image(
        &reg.base(),
        name,
        Some("1.0"),
        Format::Docker,
        "amd64",
        &[bytes(81, 512_000), bytes(82, 1_000_000)],
    )
    .await;
    let tokens = TokenServer::start(&basic("harbor", "x"), "harbor-token");
    let challenge =
        format!("Bearer realm=\"{}\",service=\"harbor-registry\",scope=\"repository:{name}:pull\"", tokens.realm());
    let front = Front::start(Some(reg.base()), FrontAuth::Bearer { token: "harbor-token".into(), challenge });
    let s = testkit::start().await;

    let (status, _) = testkit::get(&s, "/_ping").await;
    assert!((200..300).contains(&status), "/_ping → {status}");

    let body = json!({
        "type": "image",
        "url": front.url(&format!("/v2/{name}/manifests/1.0")),
        "headers": {"Authorization": "Bearer harbor-token"},
        "image": name,
        "tag": "1.0",
        "digest": image.manifest_digest,
    })
    .to_string();
    let (status, text) = harbor_post(&s, &body).await;
    assert!((200..300).contains(&status) && status != 208, "create → {status} {text}");
    let id = testkit::json(&text)["ID"].as_str().unwrap_or_else(|| panic!("no ID: {text}")).to_string();
    poll_until(Duration::from_secs(30), "Harbor's preheat succeeds", || async {
        let (status, v) = get_json(&s, &format!("/preheats/{id}")).await;
        assert_eq!(status, 200, "{v}");
        for key in ["ID", "startTime", "finishTime", "status"] {
            assert!(v[key].is_string(), "Harbor reads {key}: {v}");
        }
        let st = v["status"].as_str().unwrap();
        assert!(["WAITING", "RUNNING", "SUCCESS"].contains(&st), "{v}");
        if st == "SUCCESS" {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
    assert!(tokens.requests().is_empty(), "Harbor's bearer token was accepted as is");

    // Re-preheating a warm image: 208 with the ID (Harbor marks it SUCCESS at once).
    let (status, text) = harbor_post(&s, &body).await;
    assert_eq!(status, 208, "{text}");
    assert_eq!(testkit::json(&text)["ID"], id.as_str(), "{text}");
    assert!(text.ends_with(&format!("preheat task already exists, id:{id}\"}}\n")), "{text}");
    assert_layers_cached(&s, &front, name, &image.layers).await;
}
