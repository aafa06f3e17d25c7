//! Pushing images with plain registry API calls: blobs, image manifests and manifest lists
//! (Docker) or indexes (OCI).

use std::time::Duration;

use actix_web::http::header;
use serde_json::json;

use super::digest_of;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A client for registry calls: a long timeout for big blobs, redirects not followed.
pub(super) fn client() -> awc::Client {
    awc::Client::builder().timeout(Duration::from_secs(60)).disable_redirects().finish()
}

/// `POST /v2/<name>/blobs/uploads/` then `PUT <location>&digest=…`; returns the digest.
async fn push_blob(reg: &str, name: &str, data: &[u8]) -> String {
    let digest = digest_of(data);
    let c = client();
    let mut res = c.post(format!("{reg}/v2/{name}/blobs/uploads/")).send_body("").await.expect("upload start");
    let _ = res.body().await;
    assert_eq!(res.status().as_u16(), 202, "starting an upload of {name}");
    let location = res.headers().get(header::LOCATION).expect("upload Location").to_str().unwrap().to_string();
    let location = if location.starts_with("http") { location } else { format!("{reg}{location}") };
    let sep = if location.contains('?') { '&' } else { '?' };
    let mut res = c
        .put(format!("{location}{sep}digest={digest}"))
        .insert_header((header::CONTENT_TYPE, "application/octet-stream"))
        .send_body(data.to_vec())
        .await
        .expect("upload put");
    let body = res.body().await.unwrap_or_default();
    assert_eq!(res.status().as_u16(), 201, "finishing the upload of {digest}: {}", String::from_utf8_lossy(&body));
    digest
}

/// `PUT /v2/<name>/manifests/<reference>`; returns the manifest digest.
async fn put_manifest(reg: &str, name: &str, reference: &str, media: &str, body: &[u8]) -> String {
    let mut res = client()
        .put(format!("{reg}/v2/{name}/manifests/{reference}"))
        .insert_header((header::CONTENT_TYPE, media))
        .send_body(body.to_vec())
        .await
        .expect("manifest put");
    let reply = res.body().await.unwrap_or_default();
    assert_eq!(
        res.status().as_u16(),
        201,
        "PUT manifest {name}:{reference} ({media}): {}",
        String::from_utf8_lossy(&reply)
    );
    let digest = digest_of(body);
    if let Some(d) = res.headers().get("Docker-Content-Digest") {
        assert_eq!(d.to_str().unwrap(), digest, "registry's manifest digest");
    }
    digest
}

/// The manifest format of a pushed image.
#[derive(Clone, Copy, PartialEq)]
pub enum Format {
    Docker,
    Oci,
}

/// A pushed single-platform image.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub manifest_digest: String,
    pub manifest_size: usize,
    /// (digest, size) of each layer, in manifest order.
    pub layers: Vec<(String, usize)>,
}

/// Pushes a config blob, the layer blobs and the manifest (under `reference`, or under its
/// own digest when `reference` is `None`).
pub async fn push_image(
    reg: &str,
    name: &str,
    reference: Option<&str>,
    format: Format,
    arch: &str,
    layers: &[Vec<u8>],
) -> Pushed {
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
    })
    .to_string()
    .into_bytes();
    let config_digest = push_blob(reg, name, &config).await;
    let mut pushed_layers = Vec::new();
    for l in layers {
        pushed_layers.push((push_blob(reg, name, l).await, l.len()));
    }
    let (media, config_media, layer_media) = match format {
        Format::Docker => (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER),
        Format::Oci => (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER),
    };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media,
        "config": {"mediaType": config_media, "size": config.len(), "digest": config_digest},
        "layers": pushed_layers
            .iter()
            .map(|(d, n)| json!({"mediaType": layer_media, "size": n, "digest": d}))
            .collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    let own_digest = digest_of(&manifest);
    let reference = reference.unwrap_or(&own_digest);
    let manifest_digest = put_manifest(reg, name, reference, media, &manifest).await;
    Pushed { manifest_digest, manifest_size: manifest.len(), layers: pushed_layers }
}

/// Pushes a manifest list / OCI index of the given platform images under `tag`.
pub async fn push_index(reg: &str, name: &str, tag: &str, format: Format, entries: &[(&Pushed, &str)]) {
    let (media, entry_media) = match format {
        Format::Docker => (DOCKER_LIST, DOCKER_MANIFEST),
        Format::Oci => (OCI_INDEX, OCI_MANIFEST),
    };
    let body = json!({
        "schemaVersion": 2,
        "mediaType": media,
        "manifests": entries
            .iter()
            .map(|(p, arch)| json!({
                "mediaType": entry_media,
                "size": p.manifest_size,
                "digest": p.manifest_digest,
                "platform": {"architecture": arch, "os": "linux"},
            }))
            .collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    put_manifest(reg, name, tag, media, &body).await;
}
