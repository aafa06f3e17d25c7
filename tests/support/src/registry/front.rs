//! What a test puts in front of the registry: a reverse proxy that records every request and
//! can demand token (Bearer) or basic authentication or serve fixed documents instead (e.g. a
//! manifest naming a wrong digest), and a token server issuing tokens for basic credentials.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::http::header;
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde_json::json;

use super::digest_of;
use super::push::{client, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST};
use crate::loopback::serve_on_loopback;

/// Largest body the front forwards.
const MAX_BODY: usize = 256 * 1024 * 1024;

/// `Basic <base64(user:password)>`
pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn req_header(req: &HttpRequest, name: header::HeaderName) -> Option<String> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// How the front authenticates registry requests.
#[derive(Clone)]
pub enum FrontAuth {
    None,
    /// Requests without `Authorization: Bearer <token>` get 401 with this challenge.
    Bearer {
        token: String,
        challenge: String,
    },
    /// Requests without exactly this `Authorization` value get 401 `Basic realm=…`.
    Basic(String),
}

/// One request the front answered.
#[derive(Clone, Debug)]
pub struct Hit {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub status: u16,
}

struct FrontState {
    upstream: Option<String>,
    auth: FrontAuth,
    fixed: Mutex<HashMap<String, (String, Vec<u8>)>>,
    hits: Mutex<Vec<Hit>>,
}

/// A recording reverse proxy in front of the registry (or a fake registry of fixed documents).
pub struct Front {
    addr: SocketAddr,
    state: Arc<FrontState>,
    handle: ServerHandle,
}

impl Front {
    /// A front for the registry at `upstream` (`None`: only fixed documents, 404 otherwise).
    pub fn start(upstream: Option<String>, auth: FrontAuth) -> Front {
        let state =
            Arc::new(FrontState { upstream, auth, fixed: Mutex::new(HashMap::new()), hits: Mutex::new(Vec::new()) });
        let data = web::Data::from(state.clone());
        let (addr, handle) = serve_on_loopback(2, move |app| {
            app.app_data(data.clone()).app_data(web::PayloadConfig::new(MAX_BODY)).default_service(web::to(serve));
        });
        Front { addr, state, handle }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Serves `body` at `path` instead of asking the upstream.
    pub fn serve(&self, path: &str, content_type: &str, body: Vec<u8>) {
        self.state.fixed.lock().unwrap().insert(path.to_string(), (content_type.to_string(), body));
    }

    /// Serves a Docker image at `/v2/<name>/manifests/<reference>` (config `{}`) whose layers
    /// are `(named, served)`: the manifest names each layer by the digest and size of `named`,
    /// and its blob serves `served`, so a layer can come with bytes that do not match its digest.
    /// Returns the layer digests.
    pub fn serve_image(&self, name: &str, reference: &str, layers: &[(&[u8], &[u8])]) -> Vec<String> {
        let config = b"{}".to_vec();
        let digests: Vec<String> = layers.iter().map(|(named, _)| digest_of(named)).collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": config.len(), "digest": digest_of(&config)},
            "layers": layers.iter().zip(&digests)
                .map(|((named, _), d)| json!({"mediaType": DOCKER_LAYER, "size": named.len(), "digest": d}))
                .collect::<Vec<_>>(),
        });
        self.serve(&format!("/v2/{name}/manifests/{reference}"), DOCKER_MANIFEST, manifest.to_string().into_bytes());
        for ((_, served), d) in layers.iter().zip(&digests) {
            self.serve(&format!("/v2/{name}/blobs/{d}"), "application/octet-stream", served.to_vec());
        }
        digests
    }

    /// Every request so far, in order.
    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// Every request for `path` (any method, any answer).
    pub fn requests(&self, path: &str) -> usize {
        self.hits().iter().filter(|h| h.path == path).count()
    }

    /// GET requests for `path` (any answer).
    pub fn gets(&self, path: &str) -> usize {
        self.hits().iter().filter(|h| h.path == path && h.method == "GET").count()
    }

    /// How many requests the front answered.
    pub fn total(&self) -> usize {
        self.state.hits.lock().unwrap().len()
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

async fn serve(req: HttpRequest, body: web::Bytes, st: web::Data<FrontState>) -> HttpResponse {
    let res = answer(&req, body, &st).await;
    st.hits.lock().unwrap().push(Hit {
        method: req.method().to_string(),
        path: req.path().to_string(),
        authorization: req_header(&req, header::AUTHORIZATION),
        status: res.status().as_u16(),
    });
    res
}

async fn answer(req: &HttpRequest, body: web::Bytes, st: &FrontState) -> HttpResponse {
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
    let data = match res.body().limit(MAX_BODY).await {
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
pub struct TokenServer {
    addr: SocketAddr,
    state: Arc<TokenState>,
    handle: ServerHandle,
}

impl TokenServer {
    /// Issues `token` to requests carrying exactly the `basic` Authorization value.
    pub fn start(basic: &str, token: &str) -> TokenServer {
        let state = Arc::new(TokenState {
            basic: basic.to_string(),
            token: token.to_string(),
            requests: Mutex::new(Vec::new()),
        });
        let data = web::Data::from(state.clone());
        let (addr, handle) = serve_on_loopback(2, move |app| {
            app.app_data(data.clone()).default_service(web::to(issue_token));
        });
        TokenServer { addr, state, handle }
    }

    /// The `realm` of a Bearer challenge naming this server.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// (Authorization, query string) of every request so far.
    pub fn requests(&self) -> Vec<(Option<String>, String)> {
        self.state.requests.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

async fn issue_token(req: HttpRequest, st: web::Data<TokenState>) -> HttpResponse {
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
