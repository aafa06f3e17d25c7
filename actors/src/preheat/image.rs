//! Image preheat: reading a registry v2 manifest and finding the layer blobs.
//!
//! Handles Docker schema 2 and OCI manifests, manifest lists / OCI indexes (one
//! platform, linux/amd64 by default), schema 1 as a last resort, and the registry's
//! token authentication (401 with `WWW-Authenticate: Bearer …`) unless the caller's headers
//! already carry the token ([`RegistryAuth::AsGiven`]).

use std::collections::BTreeMap;

use awc::http::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use serde_json::Value;

pub use super::record::RegistryAuth;

/// Why an image's layers could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("{0:?} is not a registry manifest URL <scheme>://<host>/v2/<name>/manifests/<reference>")]
    NotAManifestUrl(String),
    #[error("bad header name {0:?}")]
    HeaderName(String),
    #[error("bad value for header {0}")]
    HeaderValue(String),
    #[error("{url}: {reason}")]
    Request { url: String, reason: String },
    /// The registry answered an error status; `body` is the start of its answer.
    #[error("{url}: {status} {body}")]
    Status { url: String, status: u16, body: String },
    #[error("token server {realm}: {reason}")]
    Token { realm: String, reason: String },
    #[error("WWW-Authenticate Bearer challenge has no realm")]
    NoRealm,
    #[error("{url}: {error}")]
    Manifest { url: String, error: ManifestError },
    #[error("{url}: no manifest for platform {platform}")]
    NoPlatform { url: String, platform: String },
    #[error("{url}: nested index for {platform}")]
    NestedIndex { url: String, platform: String },
}

/// Why a manifest body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not JSON: {0}")]
    NotJson(String),
    #[error("manifest has neither layers nor manifests")]
    NoLayers,
}

/// Manifest types we ask for, schema 1 last.
pub const MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.5, \
application/json;q=0.1";

const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// `<scheme>://<host>/v2/<name>/manifests/<reference>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestUrl {
    pub base: String,
    pub name: String,
    pub reference: String,
}

impl ManifestUrl {
    pub fn parse(url: &str) -> Result<ManifestUrl, RegistryError> {
        let bad = || RegistryError::NotAManifestUrl(url.to_string());
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(bad());
        }
        let (host, path) = rest.split_once('/').ok_or_else(bad)?;
        let path = path.strip_prefix("v2/").ok_or_else(bad)?;
        let (name, reference) = path.rsplit_once("/manifests/").ok_or_else(bad)?;
        if host.is_empty() || name.is_empty() || reference.is_empty() || reference.contains('/') {
            return Err(bad());
        }
        Ok(ManifestUrl { base: format!("{scheme}://{host}"), name: name.to_string(), reference: reference.to_string() })
    }

    pub fn manifest(&self, reference: &str) -> String {
        format!("{}/v2/{}/manifests/{}", self.base, self.name, reference)
    }

    pub fn blob(&self, digest: &str) -> String {
        format!("{}/v2/{}/blobs/{}", self.base, self.name, digest)
    }
}

/// A `WWW-Authenticate` challenge: scheme and its parameters (quoted strings may hold commas).
pub fn parse_challenge(value: &str) -> Option<(String, BTreeMap<String, String>)> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.trim().is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            val = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect::<String>().trim().to_string();
        }
        params.insert(key.trim().to_ascii_lowercase(), val);
    }
    Some((scheme.to_string(), params))
}

/// What a manifest points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// Layer digests of one image.
    Image(Vec<String>),
    /// Platform manifests of an index: (digest, "os/arch[/variant]").
    Index(Vec<(String, String)>),
}

pub fn parse_manifest(body: &[u8]) -> Result<Manifest, ManifestError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ManifestError::NotJson(e.to_string()))?;
    let digests = |list: &Value, key: &str| -> Vec<String> {
        list.as_array()
            .map(|a| a.iter().filter_map(|l| l.get(key).and_then(Value::as_str)).map(str::to_string).collect())
            .unwrap_or_default()
    };
    if v.get("schemaVersion").and_then(Value::as_i64) == Some(1) {
        let mut layers = digests(&v["fsLayers"], "blobSum");
        layers.reverse();
        let mut seen = std::collections::HashSet::new();
        layers.retain(|d| seen.insert(d.clone()));
        return Ok(Manifest::Image(layers));
    }
    if let Some(list) = v.get("manifests").and_then(Value::as_array) {
        let entries = list
            .iter()
            .filter_map(|m| {
                let digest = m.get("digest")?.as_str()?.to_string();
                let p = m.get("platform");
                let field = |k: &str| p.and_then(|p| p.get(k)).and_then(Value::as_str).unwrap_or("");
                let mut platform = format!("{}/{}", field("os"), field("architecture"));
                if !field("variant").is_empty() {
                    platform = format!("{platform}/{}", field("variant"));
                }
                Some((digest, platform))
            })
            .collect();
        return Ok(Manifest::Index(entries));
    }
    if v.get("layers").is_some() {
        return Ok(Manifest::Image(digests(&v["layers"], "digest")));
    }
    Err(ManifestError::NoLayers)
}

/// Picks the index entry for `platform` ("os/arch" matches any variant of it).
pub fn pick_platform(entries: &[(String, String)], platform: &str) -> Option<String> {
    entries
        .iter()
        .find(|(_, p)| p == platform)
        .or_else(|| entries.iter().find(|(_, p)| p.starts_with(&format!("{platform}/"))))
        .map(|(d, _)| d.clone())
}

fn apply_headers(
    mut req: awc::ClientRequest,
    headers: &BTreeMap<String, String>,
) -> Result<awc::ClientRequest, RegistryError> {
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| RegistryError::HeaderName(k.clone()))?;
        let value = HeaderValue::from_str(v).map_err(|_| RegistryError::HeaderValue(k.clone()))?;
        req = req.insert_header((name, value));
    }
    Ok(req)
}

async fn get_once(
    client: &awc::Client,
    url: &str,
    headers: &BTreeMap<String, String>,
) -> Result<(u16, Option<String>, Vec<u8>), RegistryError> {
    let failed = |reason: String| RegistryError::Request { url: url.to_string(), reason };
    let req = apply_headers(client.get(url), headers)?.insert_header((ACCEPT, MANIFEST_ACCEPT));
    let mut res = req.send().await.map_err(|e| failed(e.to_string()))?;
    let challenge = res.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = res.body().limit(MAX_MANIFEST_BYTES).await.map_err(|e| failed(format!("reading body: {e}")))?;
    Ok((res.status().as_u16(), challenge, body.to_vec()))
}

fn status_error(url: &str, status: u16, body: &[u8]) -> RegistryError {
    let body = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    RegistryError::Status { url: url.to_string(), status, body }
}

/// Fetches a bearer token from the challenge's realm, passing the caller's credentials.
async fn fetch_token(
    client: &awc::Client,
    params: &BTreeMap<String, String>,
    headers: &BTreeMap<String, String>,
) -> Result<String, RegistryError> {
    let realm = params.get("realm").ok_or(RegistryError::NoRealm)?;
    let failed = |reason: String| RegistryError::Token { realm: realm.clone(), reason };
    let mut query: Vec<(&str, &str)> = Vec::new();
    for key in ["service", "scope"] {
        if let Some(v) = params.get(key) {
            query.push((key, v));
        }
    }
    let mut req = client.get(realm.as_str()).query(&query).map_err(|e| failed(format!("token request: {e}")))?;
    if let Some((_, auth)) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization")) {
        if !auth.to_ascii_lowercase().starts_with("bearer ") {
            req = req.insert_header((AUTHORIZATION, auth.as_str()));
        }
    }
    let mut res = req.send().await.map_err(|e| failed(e.to_string()))?;
    let status = res.status();
    let body = res.body().limit(1024 * 1024).await.map_err(|e| failed(e.to_string()))?;
    if !status.is_success() {
        return Err(failed(format!("answered {status}")));
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| failed(format!("not JSON: {e}")))?;
    v.get("token")
        .or_else(|| v.get("access_token"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .ok_or_else(|| failed("no token in reply".into()))
}

/// GETs a registry URL, following one Bearer token challenge when `auth` allows it. `headers`
/// is updated to the headers that succeeded (with the token), so blob fetches can reuse them.
pub async fn registry_get(
    client: &awc::Client,
    url: &str,
    headers: &mut BTreeMap<String, String>,
    auth: RegistryAuth,
) -> Result<Vec<u8>, RegistryError> {
    let (status, challenge, body) = get_once(client, url, headers).await?;
    if (200..300).contains(&status) {
        return Ok(body);
    }
    if status == 401 && auth == RegistryAuth::Challenge {
        if let Some((scheme, params)) = challenge.as_deref().and_then(parse_challenge) {
            if scheme.eq_ignore_ascii_case("bearer") {
                let token = fetch_token(client, &params, headers).await?;
                headers.retain(|k, _| !k.eq_ignore_ascii_case("authorization"));
                headers.insert("Authorization".into(), format!("Bearer {token}"));
                let (status, _, body) = get_once(client, url, headers).await?;
                if (200..300).contains(&status) {
                    return Ok(body);
                }
                return Err(status_error(url, status, &body));
            }
        }
    }
    Err(status_error(url, status, &body))
}

/// The layer blob URLs of the image at `url`, and the headers to fetch them with.
pub async fn layer_urls(
    client: &awc::Client,
    url: &str,
    mut headers: BTreeMap<String, String>,
    platform: &str,
    auth: RegistryAuth,
) -> Result<(Vec<(String, String)>, BTreeMap<String, String>), RegistryError> {
    let at = ManifestUrl::parse(url)?;
    let manifest =
        |body: &[u8]| parse_manifest(body).map_err(|error| RegistryError::Manifest { url: url.to_string(), error });
    let body = registry_get(client, url, &mut headers, auth).await?;
    let layers = match manifest(&body)? {
        Manifest::Image(layers) => layers,
        Manifest::Index(entries) => {
            let digest = pick_platform(&entries, platform)
                .ok_or_else(|| RegistryError::NoPlatform { url: url.to_string(), platform: platform.to_string() })?;
            let body = registry_get(client, &at.manifest(&digest), &mut headers, auth).await?;
            match manifest(&body)? {
                Manifest::Image(layers) => layers,
                Manifest::Index(_) => {
                    return Err(RegistryError::NestedIndex { url: url.to_string(), platform: platform.to_string() })
                }
            }
        }
    };
    Ok((layers.into_iter().map(|d| (at.blob(&d), d)).collect(), headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_urls() {
        let u = ManifestUrl::parse("http://127.0.0.1:5000/v2/library/app/x/manifests/v1").unwrap();
        assert_eq!(u.name, "library/app/x");
        assert_eq!(u.blob("sha256:ab"), "http://127.0.0.1:5000/v2/library/app/x/blobs/sha256:ab");
        assert!(ManifestUrl::parse("http://h/v2/x/blobs/y").is_err());
        assert!(ManifestUrl::parse("ftp://h/v2/x/manifests/y").is_err());
        assert!(ManifestUrl::parse("h/v2/x/manifests/y").is_err());
    }

    #[test]
    fn challenges() {
        let (scheme, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(scheme, "Bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        assert_eq!(p["service"], "registry");
    }

    #[test]
    fn manifests() {
        let m = br#"{"schemaVersion":2,"layers":[{"digest":"sha256:a"},{"digest":"sha256:b"}],"config":{"digest":"sha256:c"}}"#;
        assert_eq!(parse_manifest(m).unwrap(), Manifest::Image(vec!["sha256:a".into(), "sha256:b".into()]));
        let idx = br#"{"schemaVersion":2,"manifests":[{"digest":"sha256:x","platform":{"os":"linux","architecture":"arm64","variant":"v8"}},{"digest":"sha256:y","platform":{"os":"linux","architecture":"amd64"}}]}"#;
        let Manifest::Index(e) = parse_manifest(idx).unwrap() else { panic!() };
        assert_eq!(pick_platform(&e, "linux/amd64").as_deref(), Some("sha256:y"));
        assert_eq!(pick_platform(&e, "linux/arm64").as_deref(), Some("sha256:x"));
        let v1 =
            br#"{"schemaVersion":1,"fsLayers":[{"blobSum":"sha256:b"},{"blobSum":"sha256:a"},{"blobSum":"sha256:b"}]}"#;
        assert_eq!(parse_manifest(v1).unwrap(), Manifest::Image(vec!["sha256:b".into(), "sha256:a".into()]));
        assert!(parse_manifest(b"{}").is_err());
        assert!(parse_manifest(b"nope").is_err());
    }
}
