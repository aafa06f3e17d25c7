//! Issue 5: file and image preheat (§2.6, §8, §16 P2, P3, P4, P15).
//!
//! Image preheats run against the real Docker Distribution registry (Debian's
//! `docker-registry`, started here as a child process on 127.0.0.1 with a temporary
//! storage dir), reached through an in-test "front": a small reverse proxy that counts every
//! request per path and can demand token (Bearer) or basic authentication, or serve fixed
//! documents (e.g. a manifest naming a wrong digest). Images are pushed with plain registry
//! API calls. File preheats use the in-process origin of `tests/common/origin.rs`.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::header;
use actix_web::http::Method;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use common::origin::{Content, Origin};
use serde_json::{json, Value};
use supernode::config::Config;
use supernode_actors::ids::preheat_id;

const MIB: usize = 1024 * 1024;
const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Unfinished preheats show this `finishTime` (§8.1).
const EPOCH: &str = "1970-01-01T00:00:00.000Z";

// ---------------------------------------------------------------------------------------
// sha256 (via coreutils; the test crate has no sha2 dependency)
// ---------------------------------------------------------------------------------------

fn sha256_hex(data: &[u8]) -> String {
    let mut child =
        Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("sha256sum runs");
    {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(data).expect("sha256sum stdin");
    }
    let out = child.wait_with_output().expect("sha256sum output");
    assert!(out.status.success(), "sha256sum failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let hex = text.split_whitespace().next().unwrap().to_string();
    assert_eq!(hex.len(), 64, "sha256sum said {text:?}");
    hex
}

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    Content::generated(seed, len as u64).to_vec()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn client() -> awc::Client {
    awc::Client::builder().timeout(Duration::from_secs(60)).disable_redirects().finish()
}

// ---------------------------------------------------------------------------------------
// the real registry (child process)
// ---------------------------------------------------------------------------------------

/// Docker Distribution 2.8 on 127.0.0.1 with a temporary filesystem store; killed on drop.
struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    async fn start() -> Registry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: DEBIAN_FRONTEND=noninteractive apt-get install -y docker-registry"
        );
        let dir = tempfile::tempdir().expect("registry temp dir");
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log_path = dir.path().join(format!("registry-{port}.log"));
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("docker-registry starts");
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    break; // e.g. the port was taken meanwhile: try another one
                }
                let up = client()
                    .get(format!("http://127.0.0.1:{port}/v2/"))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                    .map(|r| r.status().as_u16() == 200)
                    .unwrap_or(false);
                if up {
                    return Registry { child, port, dir };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "registry did not answer GET /v2/ within 15 s: {}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
                actix_web::rt::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("registry failed to start: {last_log}");
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

// ---------------------------------------------------------------------------------------
// pushing with plain registry API calls
// ---------------------------------------------------------------------------------------

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

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Docker,
    Oci,
}

/// A pushed single-platform image.
#[derive(Clone, Debug)]
struct Pushed {
    manifest_digest: String,
    manifest_size: usize,
    /// (digest, size) of each layer, in manifest order.
    layers: Vec<(String, usize)>,
}

/// Pushes a config blob, the layer blobs and the manifest (under `reference`, or under its
/// own digest when `reference` is `None`).
async fn push_image(
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
async fn push_index(reg: &str, name: &str, tag: &str, format: Format, entries: &[(&Pushed, &str)]) {
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

// ---------------------------------------------------------------------------------------
// in-test HTTP servers: the counting front and a token server
// ---------------------------------------------------------------------------------------

/// Runs an actix server on 127.0.0.1:0 inside the current system: `(addr, handle)`.
macro_rules! spawn_server {
    ($factory:expr) => {{
        let server = HttpServer::new($factory)
            .workers(2)
            .disable_signals()
            .shutdown_timeout(1)
            .bind(("127.0.0.1", 0))
            .expect("test server binds");
        let addr: SocketAddr = server.addrs()[0];
        let server = server.run();
        let handle: ServerHandle = server.handle();
        actix_web::rt::spawn(server);
        (addr, handle)
    }};
}

fn req_header(req: &HttpRequest, name: header::HeaderName) -> Option<String> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// How the front authenticates registry requests.
#[derive(Clone)]
enum FrontAuth {
    None,
    /// Requests without `Authorization: Bearer <token>` get 401 with this challenge.
    Bearer {
        token: String,
        challenge: String,
    },
    /// Requests without exactly this `Authorization` value get 401 `Basic realm=…`.
    Basic(String),
}

#[derive(Clone, Debug)]
struct Hit {
    method: String,
    path: String,
    authorization: Option<String>,
    status: u16,
}

struct FrontState {
    upstream: Option<String>,
    auth: FrontAuth,
    fixed: Mutex<HashMap<String, (String, Vec<u8>)>>,
    hits: Mutex<Vec<Hit>>,
}

/// A counting reverse proxy in front of the registry (or a fake registry of fixed documents).
struct Front {
    addr: SocketAddr,
    state: Arc<FrontState>,
    handle: ServerHandle,
}

impl Front {
    fn start(upstream: Option<String>, auth: FrontAuth) -> Front {
        let state =
            Arc::new(FrontState { upstream, auth, fixed: Mutex::new(HashMap::new()), hits: Mutex::new(Vec::new()) });
        let data = web::Data::from(state.clone());
        let (addr, handle) = spawn_server!(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(256 * MIB))
                .default_service(web::to(front_serve))
        });
        Front { addr, state, handle }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Serves `body` at `path` instead of asking the upstream.
    fn serve(&self, path: &str, content_type: &str, body: Vec<u8>) {
        self.state.fixed.lock().unwrap().insert(path.to_string(), (content_type.to_string(), body));
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// Every request for `path` (any method, any answer).
    fn requests(&self, path: &str) -> usize {
        self.hits().iter().filter(|h| h.path == path).count()
    }

    /// GET requests for `path` (any answer).
    fn gets(&self, path: &str) -> usize {
        self.hits().iter().filter(|h| h.path == path && h.method == "GET").count()
    }

    fn total(&self) -> usize {
        self.state.hits.lock().unwrap().len()
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

async fn front_serve(req: HttpRequest, body: web::Bytes, st: web::Data<FrontState>) -> HttpResponse {
    let res = front_answer(&req, body, &st).await;
    st.hits.lock().unwrap().push(Hit {
        method: req.method().to_string(),
        path: req.path().to_string(),
        authorization: req_header(&req, header::AUTHORIZATION),
        status: res.status().as_u16(),
    });
    res
}

async fn front_answer(req: &HttpRequest, body: web::Bytes, st: &FrontState) -> HttpResponse {
    let auth = req_header(req, header::AUTHORIZATION);
    let unauthorized = |challenge: String| {
        HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, challenge))
            .content_type("application/json")
            .body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#)
    };
    match &st.auth {
        FrontAuth::None => {}
        FrontAuth::Bearer { token, challenge } => {
            if auth.as_deref() != Some(format!("Bearer {token}").as_str()) {
                return unauthorized(challenge.clone());
            }
        }
        FrontAuth::Basic(expected) => {
            if auth.as_deref() != Some(expected.as_str()) {
                return unauthorized("Basic realm=\"test-registry\"".into());
            }
        }
    }
    let head = req.method() == Method::HEAD;
    let fixed = st.fixed.lock().unwrap().get(req.path()).cloned();
    if let Some((content_type, data)) = fixed {
        let mut b = HttpResponse::Ok();
        b.content_type(content_type).insert_header(("Docker-Content-Digest", digest_of(&data)));
        if head {
            return b.insert_header((header::CONTENT_LENGTH, data.len())).finish();
        }
        return b.body(data);
    }
    let Some(upstream) = &st.upstream else {
        return HttpResponse::NotFound()
            .content_type("application/json")
            .body(r#"{"errors":[{"code":"NOT_FOUND","message":"not served by this front"}]}"#);
    };
    let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut up = client().request(req.method().clone(), format!("{upstream}{pq}"));
    for (k, v) in req.headers() {
        if k == header::HOST || k == header::CONNECTION || k == header::CONTENT_LENGTH || k == header::TRANSFER_ENCODING
        {
            continue;
        }
        up = up.append_header((k.clone(), v.clone()));
    }
    let sent = if body.is_empty() { up.send().await } else { up.send_body(body).await };
    let mut res = match sent {
        Ok(r) => r,
        Err(e) => return HttpResponse::BadGateway().body(format!("upstream: {e}")),
    };
    let data = match res.body().limit(256 * MIB).await {
        Ok(d) => d,
        Err(e) => return HttpResponse::BadGateway().body(format!("upstream body: {e}")),
    };
    let mut b = HttpResponse::build(res.status());
    for (k, v) in res.headers() {
        if k == header::CONTENT_LENGTH || k == header::TRANSFER_ENCODING || k == header::CONNECTION {
            continue;
        }
        b.append_header((k.clone(), v.clone()));
    }
    if head {
        if let Some(len) = res.headers().get(header::CONTENT_LENGTH) {
            b.insert_header((header::CONTENT_LENGTH, len.clone()));
        }
        return b.finish();
    }
    b.body(data)
}

struct TokenState {
    /// The `Authorization` value that earns a token.
    basic: String,
    token: String,
    /// (Authorization, query string) of every request.
    requests: Mutex<Vec<(Option<String>, String)>>,
}

/// A registry token server: `GET /token` → `{"token": …}` only for the right basic credentials.
struct TokenServer {
    addr: SocketAddr,
    state: Arc<TokenState>,
    handle: ServerHandle,
}

impl TokenServer {
    fn start(basic: &str, token: &str) -> TokenServer {
        let state = Arc::new(TokenState {
            basic: basic.to_string(),
            token: token.to_string(),
            requests: Mutex::new(Vec::new()),
        });
        let data = web::Data::from(state.clone());
        let (addr, handle) =
            spawn_server!(move || { App::new().app_data(data.clone()).default_service(web::to(token_serve)) });
        TokenServer { addr, state, handle }
    }

    fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    fn requests(&self) -> Vec<(Option<String>, String)> {
        self.state.requests.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

async fn token_serve(req: HttpRequest, st: web::Data<TokenState>) -> HttpResponse {
    let auth = req_header(&req, header::AUTHORIZATION);
    st.requests.lock().unwrap().push((auth.clone(), req.query_string().to_string()));
    if req.path() != "/token" {
        return HttpResponse::NotFound().finish();
    }
    if auth.as_deref() != Some(st.basic.as_str()) {
        return HttpResponse::Unauthorized()
            .content_type("application/json")
            .body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#);
    }
    HttpResponse::Ok()
        .content_type("application/json")
        .body(json!({"token": st.token, "access_token": st.token, "expires_in": 300}).to_string())
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

// ---------------------------------------------------------------------------------------
// supernode helpers (`base` = "http://127.0.0.1:<control port>")
// ---------------------------------------------------------------------------------------

fn base(s: &common::TestServer) -> String {
    s.url("")
}

async fn get(url: &str) -> (u16, String) {
    common::call(common::client().get(url), None).await
}

async fn get_json(url: &str) -> (u16, Value) {
    let (status, body) = get(url).await;
    (status, common::json(&body))
}

/// `POST <base><path>` with a JSON body (as text, so malformed bodies can be sent).
async fn post(base: &str, path: &str, body: &str) -> (u16, String) {
    common::call(common::client().post(format!("{base}{path}")), Some(body)).await
}

/// Creates a preheat on `/api/v1/preheats`, expecting a new run: 200 `{"ID": …}`.
async fn create(base: &str, body: &Value) -> String {
    let (status, text) = post(base, "/api/v1/preheats", &body.to_string()).await;
    assert_eq!(status, 200, "POST /api/v1/preheats {body} → {text}");
    let v = common::json(&text);
    let id = v["ID"].as_str().unwrap_or_else(|| panic!("no ID: {text}"));
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "ID is not 64 lowercase hex: {text}"
    );
    assert_eq!(v, json!({"ID": id}), "create body: {text}");
    id.to_string()
}

async fn info(base: &str, id: &str) -> Value {
    let (status, v) = get_json(&format!("{base}/api/v1/preheats/{id}")).await;
    assert_eq!(status, 200, "GET /api/v1/preheats/{id} → {v}");
    check_info(&v);
    v
}

/// Polls `GET /preheats/{id}` until SUCCESS or FAILED (30 s).
async fn wait_done(base: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = get_json(&format!("{base}/preheats/{id}")).await;
        assert_eq!(status, 200, "GET /preheats/{id} → {v}");
        check_info(&v);
        match v["status"].as_str() {
            Some("SUCCESS") | Some("FAILED") => return v,
            Some("WAITING") | Some("RUNNING") => {}
            other => panic!("unexpected status {other:?}: {v}"),
        }
        assert!(Instant::now() < deadline, "preheat {id} not finished after 30 s: {v}");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_success(base: &str, id: &str) -> Value {
    let v = wait_done(base, id).await;
    assert_eq!(v["status"], "SUCCESS", "preheat {id}: {v}");
    v
}

async fn wait_failed(base: &str, id: &str) -> Value {
    let v = wait_done(base, id).await;
    assert_eq!(v["status"], "FAILED", "preheat {id}: {v}");
    let msg = v["errorMsg"].as_str().unwrap_or("");
    assert!(!msg.is_empty(), "a failed preheat names its reason: {v}");
    v
}

/// `GET /api/v1/preheats`: every record as PreheatInfo (§16 P15).
async fn list(base: &str, path: &str) -> Vec<Value> {
    let (status, v) = get_json(&format!("{base}{path}")).await;
    assert_eq!(status, 200, "GET {path} → {v}");
    let all = v.as_array().unwrap_or_else(|| panic!("GET {path} is not an array: {v}")).clone();
    for p in &all {
        check_info(p);
    }
    all
}

fn ids(all: &[Value]) -> BTreeSet<String> {
    all.iter().map(|p| p["ID"].as_str().unwrap().to_string()).collect()
}

/// RFC 3339 in UTC with exactly three fractional digits, e.g. `2026-11-25T05:36:42.644Z`.
fn check_time(what: &str, t: &str) {
    let b = t.as_bytes();
    let ok = b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[20..23].iter().all(u8::is_ascii_digit)
        && b[23] == b'Z';
    assert!(ok, "{what} {t:?} is not YYYY-MM-DDTHH:MM:SS.mmmZ");
    chrono::DateTime::parse_from_rfc3339(t).unwrap_or_else(|e| panic!("{what} {t:?} is not RFC 3339: {e}"));
}

/// PreheatInfo (§8.1): `ID`, `status`, `startTime`, `finishTime`, and `errorMsg` only when
/// failed.
fn check_info(v: &Value) {
    let obj = v.as_object().unwrap_or_else(|| panic!("PreheatInfo is not an object: {v}"));
    let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
    let status = v["status"].as_str().unwrap_or_else(|| panic!("status: {v}"));
    assert!(["WAITING", "RUNNING", "SUCCESS", "FAILED"].contains(&status), "status {status:?}: {v}");
    let mut expected: BTreeSet<&str> = ["ID", "status", "startTime", "finishTime"].into();
    if status == "FAILED" {
        expected.insert("errorMsg");
    }
    assert_eq!(keys, expected, "PreheatInfo keys: {v}");
    assert!(v["ID"].is_string(), "{v}");
    let start = v["startTime"].as_str().expect("startTime string");
    let finish = v["finishTime"].as_str().expect("finishTime string");
    check_time("startTime", start);
    check_time("finishTime", finish);
    if status == "WAITING" || status == "RUNNING" {
        assert_eq!(finish, EPOCH, "an unfinished preheat's finishTime: {v}");
    } else {
        assert!(finish >= start, "finishTime before startTime: {v}");
    }
}

/// A dfget-style registration of `url`; returns the reply's `data` (code 200 asserted).
async fn register(base: &str, url: &str, cid: &str) -> Value {
    let mut body = common::dfget_body(url, cid);
    body["path"] = json!("/peer/file/x");
    let (status, text) =
        common::call(common::client().post(format!("{base}/peer/registry")), Some(&body.to_string())).await;
    let v = common::json(&text);
    assert_eq!(status, 200, "registration of {url} → {text}");
    assert_eq!(v["code"], 200, "registration of {url} → {text}");
    v["data"].clone()
}

async fn task_info(base: &str, id: &str) -> Value {
    let (status, v) = get_json(&format!("{base}/api/v1/tasks/{id}")).await;
    assert_eq!(status, 200, "GET /api/v1/tasks/{id} → {v}");
    v
}

/// Registers each layer blob URL as dfget would and checks it is served from the cache:
/// taskId = the child preheat ID, cdnStatus SUCCESS at once, and the front sees nothing.
async fn assert_layers_cached(base: &str, front: &Front, name: &str, layers: &[(String, usize)]) {
    let before = front.total();
    for (i, (digest, size)) in layers.iter().enumerate() {
        let url = front.url(&format!("/v2/{name}/blobs/{digest}"));
        let child = preheat_id(&url, "", "", None).to_string();
        let data = register(base, &url, &format!("127.0.0.1-{}-1.000", i + 1)).await;
        assert_eq!(data["taskId"], child, "a registration of {url} gets the child preheat's ID (§2.6): {data}");
        assert_eq!(data["fileLength"], *size, "{data}");
        let t = task_info(base, &child).await;
        assert_eq!(t["cdnStatus"], "SUCCESS", "layer {digest} is cached: {t}");
        assert_eq!(t["httpFileLength"], *size, "{t}");
    }
    let after: Vec<Hit> = front.hits()[before..].to_vec();
    assert!(after.is_empty(), "registrations of preheated layers must not reach the registry: {after:?}");
}

/// The child preheat IDs of an image's layers reached through `front`.
fn child_ids(front: &Front, name: &str, layers: &[(String, usize)]) -> BTreeSet<String> {
    layers
        .iter()
        .map(|(d, _)| preheat_id(&front.url(&format!("/v2/{name}/blobs/{d}")), "", "", None).to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------
// image preheat against the real registry
// ---------------------------------------------------------------------------------------

/// The issue's main scenario: a pushed image (config + 3 MiB and 5 MiB+3 layers) is preheated;
/// each layer is fetched once; later registrations of the blob URLs are cache hits.
#[actix_web::test]
async fn image_preheat_caches_every_layer() {
    let reg = Registry::start().await;
    let name = "library/app";
    let layers = vec![bytes(11, 3 * MIB), bytes(12, 5 * MIB + 3)];
    let image = push_image(&reg.base(), name, Some("v1"), Format::Docker, "amd64", &layers).await;
    let front = Front::start(Some(reg.base()), FrontAuth::None);
    let s = common::start().await;
    let base = base(&s);

    let url = front.url(&format!("/v2/{name}/manifests/v1"));
    let id = create(&base, &json!({"type": "image", "url": url})).await;
    assert_eq!(id, preheat_id(&url, "", "", None).to_string(), "§2.6");
    let done = wait_success(&base, &id).await;
    assert_eq!(done["ID"], id.as_str());

    // One parent and one child per layer, all SUCCESS; the config blob is not preheated.
    let all = list(&base, "/api/v1/preheats").await;
    assert_eq!(all.len(), 3, "parent + 2 layers: {all:?}");
    let children = child_ids(&front, name, &image.layers);
    let mut expected = children.clone();
    expected.insert(id.clone());
    assert_eq!(ids(&all), expected, "{all:?}");
    for p in &all {
        assert_eq!(p["status"], "SUCCESS", "{p}");
    }

    // The manifest was read and each layer blob fetched exactly once (§16 P7).
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

    assert_layers_cached(&base, &front, name, &image.layers).await;
}

/// A manifest list with linux/arm64 and linux/amd64 entries: only the amd64 layers are
/// preheated. Deleting the parent removes its children's records too (§8.1).
#[actix_web::test]
async fn image_preheat_of_manifest_list_takes_linux_amd64() {
    let reg = Registry::start().await;
    let rb = reg.base();
    let name = "multi/arch";
    let amd64 = push_image(&rb, name, None, Format::Docker, "amd64", &[bytes(21, 200_000), bytes(22, 300_001)]).await;
    let arm64 = push_image(&rb, name, None, Format::Docker, "arm64", &[bytes(23, 250_000)]).await;
    push_index(&rb, name, "latest", Format::Docker, &[(&arm64, "arm64"), (&amd64, "amd64")]).await;
    let front = Front::start(Some(rb), FrontAuth::None);
    let s = common::start().await;
    let base = base(&s);

    let url = front.url(&format!("/v2/{name}/manifests/latest"));
    let id = create(&base, &json!({"type": "image", "url": url})).await;
    wait_success(&base, &id).await;

    let all = list(&base, "/preheats").await;
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
    assert_layers_cached(&base, &front, name, &amd64.layers).await;

    // DELETE removes the parent and its children's records.
    let (status, _) = common::call(common::client().delete(s.url(&format!("/api/v1/preheats/{id}"))), None).await;
    assert_eq!(status, 200);
    let (status, _) = get(&s.url(&format!("/preheats/{id}"))).await;
    assert_eq!(status, 404);
    for child in &children {
        let (status, body) = get(&s.url(&format!("/preheats/{child}"))).await;
        assert_eq!(status, 404, "child {child} removed with its parent: {body}");
    }
    assert!(list(&base, "/preheats").await.is_empty());
}

/// An OCI image manifest, then an OCI index holding it: the index's preheat reuses the
/// already cached layers and succeeds (§16 P4).
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
    let s = common::start().await;
    let base = base(&s);

    let url = front.url(&format!("/v2/{name}/manifests/v1"));
    let id = create(&base, &json!({"type": "image", "url": url})).await;
    wait_success(&base, &id).await;
    let children = child_ids(&front, name, &amd64.layers);
    assert_eq!(list(&base, "/preheats").await.len(), 3);

    let index_url = front.url(&format!("/v2/{name}/manifests/index"));
    let index_id = create(&base, &json!({"type": "image", "url": index_url})).await;
    let v = wait_success(&base, &index_id).await;
    assert!(v.get("errorMsg").is_none(), "{v}");
    let mut expected = children.clone();
    expected.insert(id);
    expected.insert(index_id);
    assert_eq!(ids(&list(&base, "/preheats").await), expected);
    for (digest, _) in &amd64.layers {
        assert_eq!(front.gets(&format!("/v2/{name}/blobs/{digest}")), 1, "fetched once for both preheats");
    }
    for (digest, _) in &arm64.layers {
        assert_eq!(front.requests(&format!("/v2/{name}/blobs/{digest}")), 0);
    }
    assert_layers_cached(&base, &front, name, &amd64.layers).await;
}

/// Two images sharing a layer, preheated at the same time: both succeed (a layer already
/// cached or being preheated counts toward SUCCESS, §16 P4) and the shared blob is fetched once.
#[actix_web::test]
async fn images_sharing_a_layer_both_succeed() {
    let reg = Registry::start().await;
    let rb = reg.base();
    let name = "shared/app";
    let (a, shared, c) = (bytes(41, 700_000), bytes(42, 1_500_000), bytes(43, 80_000));
    let one = push_image(&rb, name, Some("one"), Format::Docker, "amd64", &[a, shared.clone()]).await;
    let two = push_image(&rb, name, Some("two"), Format::Docker, "amd64", &[shared, c]).await;
    let front = Front::start(Some(rb), FrontAuth::None);
    let s = common::start().await;
    let base = base(&s);

    let id1 = create(&base, &json!({"type": "image", "url": front.url(&format!("/v2/{name}/manifests/one"))})).await;
    let id2 = create(&base, &json!({"type": "image", "url": front.url(&format!("/v2/{name}/manifests/two"))})).await;
    for id in [&id1, &id2] {
        let v = wait_success(&base, id).await;
        assert!(v.get("errorMsg").is_none(), "{v}");
    }
    assert_eq!(list(&base, "/preheats").await.len(), 2 + 3, "2 parents + 3 distinct layers");
    let shared_path = format!("/v2/{name}/blobs/{}", one.layers[1].0);
    assert_eq!(one.layers[1].0, two.layers[0].0);
    assert_eq!(front.gets(&shared_path), 1, "{:?}", front.hits());

    // A third preheat after both finished: the layers are done, still SUCCESS.
    let (status, text) = post(
        &base,
        "/preheats",
        &json!({"type": "image", "url": front.url(&format!("/v2/{name}/manifests/one"))}).to_string(),
    )
    .await;
    assert_eq!(status, 208, "{text}");
    let mut all_layers = one.layers.clone();
    all_layers.push(two.layers[1].clone());
    assert_layers_cached(&base, &front, name, &all_layers).await;
}

/// Token authentication (§8.4 step 3 as this project does it): the manifest GET is answered
/// 401 with a Bearer challenge; the token server issues a token only for the preheat's basic
/// credentials; blobs are fetched with the bearer token. Without the credentials → FAILED;
/// the same request with them then runs again (§16 P2) and succeeds.
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
    let s = common::start().await;
    let base = base(&s);
    let url = front.url(&format!("/v2/{name}/manifests/v1"));

    // Without credentials: no token, FAILED with a reason, no blob fetched.
    let id = create(&base, &json!({"type": "image", "url": url})).await;
    let v = wait_failed(&base, &id).await;
    eprintln!("without credentials: {}", v["errorMsg"]);
    assert!(tokens.requests().iter().all(|(auth, _)| auth.is_none()), "{:?}", tokens.requests());
    for (digest, _) in &image.layers {
        assert_eq!(front.requests(&format!("/v2/{name}/blobs/{digest}")), 0);
    }

    // With the basic credentials: runs again under the same ID and succeeds.
    let again = create(&base, &json!({"type": "image", "url": url, "headers": {"Authorization": creds}})).await;
    assert_eq!(again, id, "the preheat ID ignores headers other than Range (§2.6)");
    let v = wait_success(&base, &id).await;
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
    assert_eq!(list(&base, "/preheats").await.len(), 3);
    assert_layers_cached(&base, &front, name, &image.layers).await;
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
    let s = common::start().await;
    let base = base(&s);
    let url = front.url(&format!("/v2/{name}/manifests/v1"));

    let id =
        create(&base, &json!({"type": "image", "url": url, "headers": {"Authorization": "Basic d3Jvbmc6d3Jvbmc="}}))
            .await;
    wait_failed(&base, &id).await;

    create(&base, &json!({"type": "image", "url": url, "headers": {"Authorization": creds}})).await;
    wait_success(&base, &id).await;
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
    let good = bytes(71, 300_000);
    let good_digest = digest_of(&good);
    let claimed = bytes(72, 200_000);
    let bad_digest = digest_of(&claimed);
    let served = bytes(73, 200_000); // not what the digest says
    let config = b"{}".to_vec();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": config.len(), "digest": digest_of(&config)},
        "layers": [
            {"mediaType": DOCKER_LAYER, "size": good.len(), "digest": good_digest},
            {"mediaType": DOCKER_LAYER, "size": claimed.len(), "digest": bad_digest},
        ],
    });
    front.serve(&format!("/v2/{name}/manifests/v1"), DOCKER_MANIFEST, manifest.to_string().into_bytes());
    front.serve(&format!("/v2/{name}/blobs/{good_digest}"), "application/octet-stream", good);
    front.serve(&format!("/v2/{name}/blobs/{bad_digest}"), "application/octet-stream", served);
    let s = common::start().await;
    let base = base(&s);

    let id = create(&base, &json!({"type": "image", "url": front.url(&format!("/v2/{name}/manifests/v1"))})).await;
    let v = wait_failed(&base, &id).await;
    let msg = v["errorMsg"].as_str().unwrap();
    assert!(msg.contains(&bad_digest), "the failing layer is named: {msg}");
    assert!(!msg.contains(&good_digest), "only the failing layer is named: {msg}");

    let bad_child = preheat_id(&front.url(&format!("/v2/{name}/blobs/{bad_digest}")), "", "", None).to_string();
    let child = wait_failed(&base, &bad_child).await;
    eprintln!("failed layer: {}", child["errorMsg"]);
    let good_child = preheat_id(&front.url(&format!("/v2/{name}/blobs/{good_digest}")), "", "", None).to_string();
    wait_success(&base, &good_child).await;
}

/// Manifest errors: an unknown tag at the real registry and a URL that is no manifest URL.
#[actix_web::test]
async fn image_preheat_of_a_missing_manifest_fails() {
    let reg = Registry::start().await;
    let s = common::start().await;
    let base = base(&s);
    let id =
        create(&base, &json!({"type": "image", "url": format!("{}/v2/nothing/here/manifests/v9", reg.base())})).await;
    let v = wait_failed(&base, &id).await;
    eprintln!("missing manifest: {}", v["errorMsg"]);
    let id = create(&base, &json!({"type": "image", "url": format!("{}/not/a/manifest", reg.base())})).await;
    wait_failed(&base, &id).await;
    assert_eq!(list(&base, "/preheats").await.len(), 2, "no children for failed manifests");
}

// ---------------------------------------------------------------------------------------
// file preheat
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn file_preheat_then_registration_is_a_cache_hit() {
    let origin = Origin::start().await;
    origin.add_generated("/files/big.bin", 5, 6 * MIB as u64 + 17);
    let s = common::start().await;
    let base = base(&s);
    let url = origin.url("/files/big.bin");

    let id = create(&base, &json!({"type": "file", "url": url})).await;
    assert_eq!(id, preheat_id(&url, "", "", None).to_string());
    let v = wait_success(&base, &id).await;
    assert!(v.get("errorMsg").is_none());
    let stats = origin.stats("/files/big.bin");
    assert_eq!(stats.body_requests, 1, "{stats:?}");

    let data = register(&base, &url, "127.0.0.1-1-1.000").await;
    assert_eq!(data["taskId"], id.as_str());
    assert_eq!(data["fileLength"], 6 * MIB as u64 + 17);
    assert_eq!(task_info(&base, &id).await["cdnStatus"], "SUCCESS");
    assert_eq!(origin.stats("/files/big.bin"), stats, "no new origin request");
}

/// `filter`, `identifier` and a `Range` header shape the ID like a registration (§2.6).
#[actix_web::test]
async fn file_preheat_id_follows_filter_identifier_and_range() {
    let origin = Origin::start().await;
    origin.add_generated("/files/f.bin", 6, 100_000);
    let s = common::start().await;
    let base = base(&s);
    let url = origin.url("/files/f.bin?token=abc&keep=1");
    let body = json!({"type": "file", "url": url, "filter": "token", "identifier": "build-7"});
    let id = create(&base, &body).await;
    assert_eq!(id, preheat_id(&url, "token", "build-7", None).to_string());
    assert_eq!(id, preheat_id(&origin.url("/files/f.bin?keep=1&token=other"), "token", "build-7", None).to_string());
    wait_success(&base, &id).await;
    let ranged = json!({"type": "file", "url": origin.url("/files/f.bin"), "headers": {"Range": "bytes=0-999"}});
    let rid = create(&base, &ranged).await;
    assert_eq!(rid, preheat_id(&origin.url("/files/f.bin"), "", "", Some("bytes=0-999")).to_string());
    assert_ne!(rid, preheat_id(&origin.url("/files/f.bin"), "", "", None).to_string());
    wait_done(&base, &rid).await;
}

#[actix_web::test]
async fn file_preheat_of_unreachable_url_fails_with_reason() {
    let port = free_port(); // nothing listens there any more
    let s = common::start().await;
    let base = base(&s);
    let id = create(&base, &json!({"type": "file", "url": format!("http://127.0.0.1:{port}/file.bin")})).await;
    let v = wait_failed(&base, &id).await;
    eprintln!("unreachable: {}", v["errorMsg"]);
    let finish = chrono::DateTime::parse_from_rfc3339(v["finishTime"].as_str().unwrap()).unwrap();
    let start = chrono::DateTime::parse_from_rfc3339(v["startTime"].as_str().unwrap()).unwrap();
    assert!(finish >= start);
}

// ---------------------------------------------------------------------------------------
// duplicates (§16 P2)
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn duplicate_while_running_is_the_same_preheat() {
    let origin = Origin::start().await;
    origin.add_generated("/slow.bin", 7, 300_000);
    origin.set_delay("/slow.bin", Duration::from_secs(2));
    let s = common::start().await;
    let base = base(&s);
    let body = json!({"type": "file", "url": origin.url("/slow.bin")});

    let id = create(&base, &body).await;
    let first = info(&base, &id).await;
    assert!(first["status"] == "WAITING" || first["status"] == "RUNNING", "{first}");
    assert_eq!(first["finishTime"], EPOCH);
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    for path in ["/api/v1/preheats", "/preheats"] {
        let (status, text) = post(&base, path, &body.to_string()).await;
        assert_eq!(status, 200, "{path}: {text}");
        assert_eq!(common::json(&text), json!({"ID": id}), "{text}");
    }
    let again = info(&base, &id).await;
    assert_eq!(again["startTime"], first["startTime"], "no second run: {again}");
    wait_success(&base, &id).await;
    assert_eq!(origin.stats("/slow.bin").requests, 1, "{:?}", origin.stats("/slow.bin"));
    assert_eq!(list(&base, "/preheats").await.len(), 1);
}

#[actix_web::test]
async fn duplicate_after_success_is_208_with_the_id() {
    let origin = Origin::start().await;
    origin.add_generated("/done.bin", 8, 50_000);
    let s = common::start().await;
    let base = base(&s);
    let body = json!({"type": "file", "url": origin.url("/done.bin")});
    let id = create(&base, &body).await;
    let done = wait_success(&base, &id).await;
    for path in ["/api/v1/preheats", "/preheats", "/v1.24/preheats"] {
        let (status, text) = post(&base, path, &body.to_string()).await;
        assert_eq!(status, 208, "{path}: {text}");
        assert_eq!(
            text,
            format!("{{\"ID\":\"{id}\",\"code\":208,\"message\":\"preheat task already exists, id:{id}\"}}\n"),
            "{path}"
        );
    }
    assert_eq!(info(&base, &id).await, done, "the record is unchanged");
    assert_eq!(origin.stats("/done.bin").requests, 1);
}

#[actix_web::test]
async fn failed_preheat_runs_again() {
    let origin = Origin::start().await;
    origin.add_generated("/flaky.bin", 9, 70_000);
    origin.set_status("/flaky.bin", Some(500));
    let s = common::start().await;
    let base = base(&s);
    let body = json!({"type": "file", "url": origin.url("/flaky.bin")});

    let id = create(&base, &body).await;
    let failed = wait_failed(&base, &id).await;
    let msg = failed["errorMsg"].as_str().unwrap();
    assert!(msg.contains("500"), "the reason names the source's answer: {msg}");
    let requests = origin.stats("/flaky.bin").requests;

    origin.set_status("/flaky.bin", None);
    actix_web::rt::time::sleep(Duration::from_millis(20)).await; // a later startTime
    let again = create(&base, &body).await;
    assert_eq!(again, id);
    let v = wait_success(&base, &id).await;
    assert!(v.get("errorMsg").is_none(), "{v}");
    assert!(v["startTime"].as_str().unwrap() > failed["startTime"].as_str().unwrap(), "a fresh run: {failed} then {v}");
    assert!(origin.stats("/flaky.bin").requests > requests);
    assert_eq!(list(&base, "/preheats").await.len(), 1);
}

// ---------------------------------------------------------------------------------------
// API shape (§8.1, §16 P15)
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn create_validation() {
    let s = common::start().await;
    let base = base(&s);
    let cases: Vec<(&str, &str)> = vec![
        ("bad type", r#"{"type":"docker","url":"http://127.0.0.1:1/x"}"#),
        ("type is case-sensitive", r#"{"type":"IMAGE","url":"http://127.0.0.1:1/x"}"#),
        ("missing type", r#"{"url":"http://127.0.0.1:1/x"}"#),
        ("url shorter than 3", r#"{"type":"file","url":"ab"}"#),
        ("empty url", r#"{"type":"file","url":""}"#),
        ("missing url", r#"{"type":"file"}"#),
        ("malformed JSON", r#"{"type":"file","url":"#),
        ("not an object", r#"[1,2]"#),
        ("wrong type of url", r#"{"type":"file","url":42}"#),
    ];
    for path in ["/preheats", "/api/v1/preheats", "/v1.24/preheats"] {
        for (what, body) in &cases {
            let (status, text) = post(&base, path, body).await;
            assert_eq!(status, 400, "{what} on {path}: {text}");
            let v = common::json(&text);
            assert_eq!(v["code"], 400, "{what}: {text}");
            let message = v["message"].as_str().unwrap_or("");
            assert!(!message.is_empty(), "{what}: a message: {text}");
        }
        let (status, text) = post(&base, path, "").await;
        assert_eq!(status, 400, "empty body on {path}");
        assert_eq!(text, "{\"code\":400,\"message\":\"empty request\"}\n");
    }
    // Unknown keys are ignored (Harbor's image/tag/digest/scope/extra_attrs).
    let origin = Origin::start().await;
    origin.add_generated("/ok.bin", 1, 10);
    let id = create(
        &base,
        &json!({"type": "file", "url": origin.url("/ok.bin"), "scope": "single_peer", "extra_attrs": {}, "image": "x"}),
    )
    .await;
    let all = list(&base, "/preheats").await;
    assert_eq!(ids(&all), BTreeSet::from([id.clone()]), "nothing created by the refused requests");
    wait_success(&base, &id).await;
}

#[actix_web::test]
async fn get_list_delete_on_every_path() {
    let origin = Origin::start().await;
    origin.add_generated("/a.bin", 1, 1000);
    origin.add_generated("/b.bin", 2, 2000);
    let s = common::start().await;
    let base = base(&s);
    let a = create(&base, &json!({"type": "file", "url": origin.url("/a.bin")})).await;
    let (status, text) =
        post(&base, "/v1.24/preheats", &json!({"type": "file", "url": origin.url("/b.bin")}).to_string()).await;
    assert_eq!(status, 200, "{text}");
    let b = common::json(&text)["ID"].as_str().unwrap().to_string();
    wait_success(&base, &a).await;
    wait_success(&base, &b).await;

    let paths = ["/preheats", "/api/v1/preheats", "/v1.24/preheats", "/v1.24/api/v1/preheats"];
    for p in paths {
        let all = list(&base, p).await;
        assert_eq!(ids(&all), BTreeSet::from([a.clone(), b.clone()]), "{p}");
        for id in [&a, &b] {
            let (status, v) = get_json(&format!("{base}{p}/{id}")).await;
            assert_eq!(status, 200, "{p}/{id}: {v}");
            check_info(&v);
            assert_eq!(v["ID"], id.as_str());
            assert_eq!(v["status"], "SUCCESS");
            assert!(all.contains(&v), "the list holds the same PreheatInfo: {v}");
        }
    }

    let unknown = "0".repeat(64);
    for p in paths {
        let (status, text) = get(&format!("{base}{p}/{unknown}")).await;
        assert_eq!(status, 404, "{p}");
        assert_eq!(text, format!("{{\"code\":404,\"message\":\"{unknown} doesn't exists\"}}\n"));
        let (status, text) = common::call(common::client().delete(format!("{base}{p}/{unknown}")), None).await;
        assert_eq!(status, 404, "DELETE unknown on {p}: {text}");
    }

    let (status, _) = common::call(common::client().delete(format!("{base}/v1.24/preheats/{a}")), None).await;
    assert_eq!(status, 200);
    let (status, _) = get(&format!("{base}/api/v1/preheats/{a}")).await;
    assert_eq!(status, 404);
    let (status, _) = common::call(common::client().delete(format!("{base}/preheats/{a}")), None).await;
    assert_eq!(status, 404, "already deleted");
    let (status, _) = common::call(common::client().delete(format!("{base}/api/v1/preheats/{b}")), None).await;
    assert_eq!(status, 200);
    assert!(list(&base, "/preheats").await.is_empty());

    // After a delete the same request is a new preheat (200, not 208).
    let again = create(&base, &json!({"type": "file", "url": origin.url("/a.bin")})).await;
    assert_eq!(again, a);
    wait_success(&base, &a).await;
}

#[actix_web::test]
async fn preheat_info_format() {
    let origin = Origin::start().await;
    origin.add_generated("/slow.bin", 3, 1000);
    origin.set_delay("/slow.bin", Duration::from_secs(2));
    let s = common::start().await;
    let base = base(&s);
    let before = chrono::Utc::now();
    let id = create(&base, &json!({"type": "file", "url": origin.url("/slow.bin")})).await;

    let (_, text) = get(&format!("{base}/preheats/{id}")).await;
    let v = common::json(&text);
    check_info(&v);
    assert_eq!(v["finishTime"], EPOCH, "{text}");
    assert!(!text.contains("errorMsg"), "{text}");
    let start = chrono::DateTime::parse_from_rfc3339(v["startTime"].as_str().unwrap()).unwrap();
    assert!(start >= before - chrono::Duration::milliseconds(1) && start <= chrono::Utc::now(), "{v}");

    let done = wait_success(&base, &id).await;
    assert_eq!(done["startTime"], v["startTime"]);
    assert_ne!(done["finishTime"], EPOCH);
    let finish = chrono::DateTime::parse_from_rfc3339(done["finishTime"].as_str().unwrap()).unwrap();
    assert!(finish - start >= chrono::Duration::milliseconds(1500), "took the origin's delay: {done}");
}

/// Harbor's create call: `POST <endpoint>/preheats` with its headers.
async fn harbor_post(endpoint: &str, body: &str) -> (u16, String) {
    let mut res = common::client()
        .post(format!("{endpoint}/preheats"))
        .insert_header(("Content-Type", "application/json"))
        .insert_header(("Accept", "application/json"))
        .send_body(body.to_string())
        .await
        .expect("create sent");
    let bytes = res.body().await.unwrap();
    (res.status().as_u16(), String::from_utf8_lossy(&bytes).into_owned())
}

/// The Harbor 2.x "Dragonfly" provider's calls at the root paths (§8.5), against a registry
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
    let s = common::start().await;
    let endpoint = base(&s);

    let (status, _) = get(&format!("{endpoint}/_ping")).await;
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
    let (status, text) = harbor_post(&endpoint, &body).await;
    assert!((200..300).contains(&status) && status != 208, "create → {status} {text}");
    let id = common::json(&text)["ID"].as_str().unwrap_or_else(|| panic!("no ID: {text}")).to_string();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = get_json(&format!("{endpoint}/preheats/{id}")).await;
        assert_eq!(status, 200, "{v}");
        for key in ["ID", "startTime", "finishTime", "status"] {
            assert!(v[key].is_string(), "Harbor reads {key}: {v}");
        }
        let st = v["status"].as_str().unwrap().to_string();
        assert!(["WAITING", "RUNNING", "SUCCESS"].contains(&st.as_str()), "{v}");
        seen.insert(st.clone());
        if st == "SUCCESS" {
            break;
        }
        assert!(Instant::now() < deadline, "not done after 30 s: {v}");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(tokens.requests().is_empty(), "Harbor's bearer token was accepted as is");

    // Re-preheating a warm image: 208 with the ID (Harbor marks it SUCCESS at once).
    let (status, text) = harbor_post(&endpoint, &body).await;
    assert_eq!(status, 208, "{text}");
    assert_eq!(common::json(&text)["ID"], id.as_str(), "{text}");
    assert!(text.ends_with(&format!("preheat task already exists, id:{id}\"}}\n")), "{text}");
    assert_layers_cached(&endpoint, &front, name, &image.layers).await;
}

// ---------------------------------------------------------------------------------------
// persistence and retention (§16 P3)
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn records_survive_a_restart() {
    let origin = Origin::start().await;
    origin.add_generated("/keep.bin", 4, 40_000);
    let home = tempfile::tempdir().unwrap();
    let first = supernode::start(common::settings(home.path(), Config::default())).await.expect("first server");
    let base1 = format!("http://{}", first.control_addr);
    let ok = create(&base1, &json!({"type": "file", "url": origin.url("/keep.bin")})).await;
    let ok_info = wait_success(&base1, &ok).await;
    let port = free_port();
    let bad = create(&base1, &json!({"type": "file", "url": format!("http://127.0.0.1:{port}/gone")})).await;
    let bad_info = wait_failed(&base1, &bad).await;
    first.stop(false).await;

    let second = supernode::start(common::settings(home.path(), Config::default())).await.expect("second server");
    let base2 = format!("http://{}", second.control_addr);
    assert_eq!(info(&base2, &ok).await, ok_info);
    assert_eq!(info(&base2, &bad).await, bad_info);
    assert_eq!(list(&base2, "/preheats").await.len(), 2);
    // Still a finished duplicate after the restart.
    let (status, _) =
        post(&base2, "/preheats", &json!({"type": "file", "url": origin.url("/keep.bin")}).to_string()).await;
    assert_eq!(status, 208);
    second.stop(false).await;
}

/// With `retention` = 1 s and collection every 200 ms a finished record is collected (then 404).
#[actix_web::test]
async fn finished_records_are_collected_after_retention() {
    let origin = Origin::start().await;
    origin.add_generated("/short.bin", 4, 1000);
    let mut config = Config::default();
    config.preheat.retention = Duration::from_secs(1);
    config.preheat.collect_interval = Duration::from_millis(200);
    let s = common::start_with(config).await;
    let base = base(&s);
    let id = create(&base, &json!({"type": "file", "url": origin.url("/short.bin")})).await;
    wait_success(&base, &id).await;
    let (status, _) = get(&format!("{base}/preheats/{id}")).await;
    assert_eq!(status, 200, "visible right after finishing");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = get(&format!("{base}/preheats/{id}")).await;
        if status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "still there after 10 s");
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(list(&base, "/preheats").await.is_empty());
}
