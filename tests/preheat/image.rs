//! Image preheats against a real registry: the manifest is read and every layer of the
//! image's linux/amd64 platform is preheated as a child preheat (its own record, its own
//! cached task), each layer fetched once; later registrations of the blob URLs are cache
//! hits. A layer already cached or being preheated counts toward the image's SUCCESS.

use serde_json::json;
use testkit::protocol::preheat_id;
use testkit::registry::{push_image, push_index, Format, Front, FrontAuth, Hit, Registry};

use crate::{assert_layers_cached, bytes, child_ids, create, ids, list, post, wait_success};

const MIB: usize = 1024 * 1024;

/// The main scenario: a pushed image (config + 3 MiB and 5 MiB+3 layers) is preheated;
/// each layer is fetched once; later registrations of the blob URLs are cache hits.
#[actix_web::test]
async fn image_preheat_caches_every_layer() {
    let reg = Registry::start().await;
    let name = "library/app";
    let layers = vec![bytes(11, 3 * MIB), bytes(12, 5 * MIB + 3)];
    let image = push_image(&reg.base(), name, Some("v1"), Format::Docker, "amd64", &layers).await;
    let front = Front::start(Some(reg.base()), FrontAuth::None);
    let s = testkit::start().await;

    let url = front.url(&format!("/v2/{name}/manifests/v1"));
    let id = create(&s, &json!({"type": "image", "url": url})).await;
    assert_eq!(id, preheat_id(&url, "", "", None), "the preheat ID of the manifest URL");
    let done = wait_success(&s, &id).await;
    assert_eq!(done["ID"], id.as_str());

    // One parent and one child per layer, all SUCCESS; the config blob is not preheated.
    let all = list(&s, "/api/v1/preheats").await;
    assert_eq!(all.len(), 3, "parent + 2 layers: {all:?}");
    let children = child_ids(&front, name, &image.layers);
    let mut expected = children.clone();
    expected.insert(id.clone());
    assert_eq!(ids(&all), expected, "{all:?}");
    for p in &all {
        assert_eq!(p["status"], "SUCCESS", "{p}");
    }

    // The manifest was read and each layer blob fetched exactly once.
    let manifest_path = format!("/v2/{name}/manifests/v1");
    assert!(front.gets(&manifest_path) >= 1);
    for (digest, _) in &image.layers {
        let path = format!("/v2/{name}/blobs/{digest}");
        assert_eq!(front.gets(&path), 1, "GETs of {path}: {:?}", front.hits());
    }
    let config_fetches: Vec<Hit> = front
        .hits()
        .into_iter()
        .filter(|h| h.path.contains("/blobs/") && !image.layers.iter().any(|(d, _)| h.path.ends_with(d.as_str())))
        .collect();
    assert!(config_fetches.is_empty(), "the config blob is not preheated: {config_fetches:?}");

    assert_layers_cached(&s, &front, name, &image.layers).await;
}

/// A manifest list with linux/arm64 and linux/amd64 entries: only the amd64 layers are
/// preheated. Deleting the parent removes its children's records too.
#[actix_web::test]
async fn image_preheat_of_manifest_list_takes_linux_amd64() {
    let reg = Registry::start().await;
    let rb = reg.base();
    let name = "multi/arch";
    let amd64 = push_image(&rb, name, None, Format::Docker, "amd64", &[bytes(21, 200_000), bytes(22, 300_001)]).await;
    let arm64 = push_image(&rb, name, None, Format::Docker, "arm64", &[bytes(23, 250_000)]).await;
    push_index(&rb, name, "latest", Format::Docker, &[(&arm64, "arm64"), (&amd64, "amd64")]).await;
    let front = Front::start(Some(rb), FrontAuth::None);
    let s = testkit::start().await;

    let url = front.url(&format!("/v2/{name}/manifests/latest"));
    let id = create(&s, &json!({"type": "image", "url": url})).await;
    wait_success(&s, &id).await;

    let all = list(&s, "/preheats").await;
    let children = child_ids(&front, name, &amd64.layers);
    let mut expected = children.clone();
    expected.insert(id.clone());
    assert_eq!(ids(&all), expected, "parent + the 2 amd64 layers only: {all:?}");
    for (digest, _) in &amd64.layers {
        assert_eq!(front.gets(&format!("/v2/{name}/blobs/{digest}")), 1);
    }
    for (digest, _) in &arm64.layers {
        assert_eq!(
            front.requests(&format!("/v2/{name}/blobs/{digest}")),
            0,
            "the arm64 layer is not fetched: {:?}",
            front.hits()
        );
    }
    assert_layers_cached(&s, &front, name, &amd64.layers).await;

    // DELETE removes the parent and its children's records.
    let (status, _) = testkit::delete(&s, &format!("/api/v1/preheats/{id}")).await;
    assert_eq!(status, 200);
    let (status, _) = testkit::get(&s, &format!("/preheats/{id}")).await;
    assert_eq!(status, 404);
    for child in &children {
        let (status, body) = testkit::get(&s, &format!("/preheats/{child}")).await;
        assert_eq!(status, 404, "child {child} removed with its parent: {body}");
    }
    assert!(list(&s, "/preheats").await.is_empty());
}

/// An OCI image manifest, then an OCI index holding it: the index's preheat reuses the
/// already cached layers and succeeds.
#[actix_web::test]
async fn image_preheat_of_oci_manifest_and_index() {
    let reg = Registry::start().await;
    let rb = reg.base();
    let name = "oci/app";
    let amd64 =
        push_image(&rb, name, Some("v1"), Format::Oci, "amd64", &[bytes(31, 400_000), bytes(32, 123_457)]).await;
    let arm64 = push_image(&rb, name, None, Format::Oci, "arm64", &[bytes(33, 10_000)]).await;
    push_index(&rb, name, "index", Format::Oci, &[(&arm64, "arm64"), (&amd64, "amd64")]).await;
    let front = Front::start(Some(rb), FrontAuth::None);
    let s = testkit::start().await;

    let url = front.url(&format!("/v2/{name}/manifests/v1"));
    let id = create(&s, &json!({"type": "image", "url": url})).await;
    wait_success(&s, &id).await;
    let children = child_ids(&front, name, &amd64.layers);
    assert_eq!(list(&s, "/preheats").await.len(), 3);

    let index_url = front.url(&format!("/v2/{name}/manifests/index"));
    let index_id = create(&s, &json!({"type": "image", "url": index_url})).await;
    let v = wait_success(&s, &index_id).await;
    assert!(v.get("errorMsg").is_none(), "{v}");
    let mut expected = children.clone();
    expected.insert(id);
    expected.insert(index_id);
    assert_eq!(ids(&list(&s, "/preheats").await), expected);
    for (digest, _) in &amd64.layers {
        assert_eq!(front.gets(&format!("/v2/{name}/blobs/{digest}")), 1, "fetched once for both preheats");
    }
    for (digest, _) in &arm64.layers {
        assert_eq!(front.requests(&format!("/v2/{name}/blobs/{digest}")), 0);
    }
    assert_layers_cached(&s, &front, name, &amd64.layers).await;
}

/// Two images sharing a layer, preheated at the same time: both succeed (a layer already
/// cached or being preheated counts toward SUCCESS) and the shared blob is fetched once.
#[actix_web::test]
async fn images_sharing_a_layer_both_succeed() {
    let reg = Registry::start().await;
    let rb = reg.base();
    let name = "shared/app";
    let (a, shared, c) = (bytes(41, 700_000), bytes(42, 1_500_000), bytes(43, 80_000));
    let one = push_image(&rb, name, Some("one"), Format::Docker, "amd64", &[a, shared.clone()]).await;
    let two = push_image(&rb, name, Some("two"), Format::Docker, "amd64", &[shared, c]).await;
    let front = Front::start(Some(rb), FrontAuth::None);
    let s = testkit::start().await;

    let id1 = create(&s, &json!({"type": "image", "url": front.url(&format!("/v2/{name}/manifests/one"))})).await;
    let id2 = create(&s, &json!({"type": "image", "url": front.url(&format!("/v2/{name}/manifests/two"))})).await;
    for id in [&id1, &id2] {
        let v = wait_success(&s, id).await;
        assert!(v.get("errorMsg").is_none(), "{v}");
    }
    assert_eq!(list(&s, "/preheats").await.len(), 2 + 3, "2 parents + 3 distinct layers");
    let shared_path = format!("/v2/{name}/blobs/{}", one.layers[1].0);
    assert_eq!(one.layers[1].0, two.layers[0].0);
    assert_eq!(front.gets(&shared_path), 1, "{:?}", front.hits());

    // A third preheat after both finished: the layers are done, still SUCCESS.
    let (status, text) = post(
        &s,
        "/preheats",
        &json!({"type": "image", "url": front.url(&format!("/v2/{name}/manifests/one"))}).to_string(),
    )
    .await;
    assert_eq!(status, 208, "{text}");
    let mut all_layers = one.layers.clone();
    all_layers.push(two.layers[1].clone());
    assert_layers_cached(&s, &front, name, &all_layers).await;
}
