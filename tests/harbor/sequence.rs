//! Harbor's own sequence against a real registry: `/healthy`, the POST, polls until SUCCESS.
//! The registry sits behind a front that demands Harbor's registry token and logs every
//! request, and whose token server would refuse the supernode: the token Harbor passes in
//! `args.headers` has to be used as it is.

use actix_web::http::Method;
use serde_json::Value;
use testkit::origin::Content;
use testkit::registry::{push_image, push_index, Format, Front, FrontAuth, Hit, Registry, TokenServer};
use testkit::swarm::start_peer;

use crate::{assert_arrays_hold_no_null, bytes, create_job, decode, harbor_body, harbor_call, poll, wait_job};

const MIB: usize = 1024 * 1024;
/// The registry token Harbor core mints for the preheat and puts in `args.headers`.
const HARBOR_TOKEN: &str = "eyJhbGciOiJSUzI1NiIs.harbor-distributor.sig";

/// A multi-arch image as Harbor's tag points at it (a manifest list of linux/arm64 and
/// linux/amd64): only the amd64 layers are preheated, each fetched once with Harbor's token.
/// Every Harbor call carries the instance's credential, `/healthy` included. Afterwards a
/// dfget download of a layer is served from the cache, and a second job of the same image,
/// or of an image preheated through `/preheats`, is SUCCESS at its first poll.
#[actix_web::test]
async fn harbor_preheats_a_pushed_image() {
    let reg = Registry::start().await;
    let name = "library/nginx";
    let (seed_a, len_a, seed_b, len_b) = (101, 3 * MIB + 5, 102, 2 * MIB);
    let amd64 =
        push_image(&reg.base(), name, None, Format::Docker, "amd64", &[bytes(seed_a, len_a), bytes(seed_b, len_b)])
            .await;
    let arm64 = push_image(&reg.base(), name, None, Format::Oci, "arm64", &[bytes(103, 100_000)]).await;
    push_index(&reg.base(), name, "1.27", Format::Docker, &[(&arm64, "arm64"), (&amd64, "amd64")]).await;
    let tokens = TokenServer::start(&testkit::registry::basic("nobody", "-"), "not-harbors-token");
    let challenge =
        format!("Bearer realm=\"{}\",service=\"harbor-registry\",scope=\"repository:{name}:pull\"", tokens.realm());
    let front = Front::start(Some(reg.base()), FrontAuth::Bearer { token: HARBOR_TOKEN.into(), challenge });
    let s = testkit::start().await;
    let url = front.url(&format!("/v2/{name}/manifests/1.27"));

    // Test connection, then the enforcer's and the task's health checks: any 2xx, body ignored.
    for auth in [None, Some("Bearer harbor-instance-token"), Some("Basic dXNlcm5hbWU6YWxpY2U=")] {
        let (status, text) = harbor_call(&s, Method::GET, "/healthy", None, auth).await;
        assert_eq!((status, text.as_str()), (200, "\"OK\"\n"), "/healthy with {auth:?}");
    }

    let job = create_job(&s, &url, HARBOR_TOKEN).await;
    let (done, raw) = wait_job(&s, job.id).await;
    assert_eq!(done.state, "SUCCESS", "{raw}");
    assert_eq!(done.id, job.id);
    assert_eq!(done.created_at, job.created_at, "{raw}");
    assert!(done.updated_at >= done.created_at, "Harbor logs updated_at - created_at as the duration: {raw}");
    assert_arrays_hold_no_null(&raw);
    assert_eq!(done.job_state().error, "", "{raw}");
    assert!(done.failures().is_empty(), "{raw}");
    assert_eq!(done.cluster_ids(), vec![1]);
    let cached: Vec<String> = done.successes().into_iter().map(|(u, _, _)| u).collect();
    let expected: Vec<String> = amd64.layers.iter().map(|(d, _)| front.url(&format!("/v2/{name}/blobs/{d}"))).collect();
    assert_eq!(cached, expected, "one success task per amd64 layer: {raw}");
    for (_, hostname, ip) in done.successes() {
        assert!(!hostname.is_empty(), "{raw}");
        assert_eq!(ip, "127.0.0.1", "the supernode's advertised address: {raw}");
    }

    // The registry's log: manifests with Harbor's token, each amd64 layer once, no arm64
    // layer, no config blob; the token server never asked.
    let hits = front.hits();
    assert!(tokens.requests().is_empty(), "no token dance: {:?}", tokens.requests());
    for h in hits.iter().filter(|h| h.path.contains("/manifests/")) {
        assert_eq!(h.authorization.as_deref(), Some(format!("Bearer {HARBOR_TOKEN}").as_str()), "{h:?}");
        assert_eq!(h.status, 200, "{hits:?}");
    }
    for (digest, _) in &amd64.layers {
        let path = format!("/v2/{name}/blobs/{digest}");
        let layer_hits: Vec<&Hit> = hits.iter().filter(|h| h.path == path).collect();
        assert_eq!(layer_hits.len(), 1, "{layer_hits:?}");
        assert_eq!(layer_hits[0].status, 200, "{layer_hits:?}");
        assert_eq!(layer_hits[0].authorization.as_deref(), Some(format!("Bearer {HARBOR_TOKEN}").as_str()));
    }
    for (digest, _) in &arm64.layers {
        assert_eq!(front.requests(&format!("/v2/{name}/blobs/{digest}")), 0, "{hits:?}");
    }
    let blob_gets = hits.iter().filter(|h| h.path.contains("/blobs/")).count();
    assert_eq!(blob_gets, amd64.layers.len(), "the layers only, not the config blob: {hits:?}");

    // A dfget download of a layer afterwards: served from the cache, nothing from the registry.
    let before = front.total();
    let dir = tempfile::tempdir().unwrap();
    let layer_url = expected[0].clone();
    let peer = start_peer(dfget_sim::PeerConfig::new(s.control().to_string(), layer_url, dir.path().join("layer")));
    let report = peer.download().await.expect("the layer downloads");
    assert_eq!(report.md5, Content::generated(seed_a, len_a as u64).md5_hex());
    assert!(report.stats.pieces_from_supernode > 0, "{report:?}");
    assert_eq!(front.total(), before, "no registry request for a cached layer: {:?}", &front.hits()[before..]);
    peer.stop_uploader().await;

    // The same image again (another tag of it, a rerun of the policy): 200, SUCCESS at once.
    let again = create_job(&s, &url, HARBOR_TOKEN).await;
    assert!(again.id > job.id, "a new job ID");
    let (first_poll, raw) = poll(&s, again.id).await;
    assert_eq!(first_poll.state, "SUCCESS", "SUCCESS at the first poll: {raw}");
    assert_eq!(first_poll.successes().len(), amd64.layers.len(), "{raw}");
    assert_eq!(front.total(), before, "nothing fetched again: {:?}", &front.hits()[before..]);
}

/// An image preheated through `/preheats` (Harbor 2.1–2.11) before Harbor was upgraded: the
/// first job of it answers 200 and is SUCCESS at its first poll, with no registry request.
#[actix_web::test]
async fn image_preheated_through_preheats_is_success_at_the_first_poll() {
    let reg = Registry::start().await;
    let name = "library/app";
    let image = push_image(&reg.base(), name, Some("v1"), Format::Oci, "amd64", &[bytes(111, 300_000)]).await;
    let front = Front::start(Some(reg.base()), FrontAuth::None);
    let s = testkit::start().await;
    let url = front.url(&format!("/v2/{name}/manifests/v1"));

    let (status, v) = testkit::post_json(&s, "/preheats", &serde_json::json!({"type": "image", "url": url})).await;
    assert_eq!(status, 200, "{v}");
    let id = v["ID"].as_str().unwrap().to_string();
    testkit::poll_until(std::time::Duration::from_secs(30), "the /preheats preheat succeeds", || async {
        let (_, v) = testkit::get_json(&s, &format!("/preheats/{id}")).await;
        if v["status"] == "SUCCESS" {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
    let before = front.total();

    let body = harbor_body(&url, "unused", "", Value::Null);
    let (status, text) = harbor_call(&s, Method::POST, "/oapi/v1/jobs", Some(&body), None).await;
    assert_eq!(status, 200, "200, never 208: {text}");
    let job = decode(&text);
    assert_eq!(testkit::json(&text)["task_id"], id.as_str(), "the job follows the same image preheat: {text}");
    let (done, raw) = poll(&s, job.id).await;
    assert_eq!(done.state, "SUCCESS", "{raw}");
    let layer = front.url(&format!("/v2/{name}/blobs/{}", image.layers[0].0));
    assert_eq!(done.successes().into_iter().map(|(u, _, _)| u).collect::<Vec<_>>(), vec![layer]);
    assert_eq!(front.total(), before, "{:?}", &front.hits()[before..]);
}
