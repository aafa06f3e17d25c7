//! The published OpenAPI document (`src/http/openapi.json`): it parses, it lists exactly the
//! routes the server has, its references resolve, the optional bearer token is declared on
//! exactly the guarded operations, and the server serves it.

use std::collections::BTreeSet;

use serde_json::Value;

const DOCUMENT: &str = include_str!("../src/http/openapi.json");
const OPENAPI_ROUTE: (&str, &str) = ("GET", "/api/v1/openapi.json");
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn document() -> Value {
    serde_json::from_str(DOCUMENT).unwrap_or_else(|e| panic!("src/http/openapi.json is not JSON: {e}"))
}

/// `{id}` stays `{id}`; an actix pattern such as `{tail:.*}` becomes `{tail}`.
fn openapi_template(path: &str) -> String {
    let mut out = String::new();
    let mut in_var = false;
    let mut skipping = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_var = true;
                skipping = false;
                out.push(c);
            }
            '}' if in_var => {
                in_var = false;
                skipping = false;
                out.push(c);
            }
            ':' if in_var => skipping = true,
            _ if skipping => {}
            _ => out.push(c),
        }
    }
    out
}

/// (METHOD, path) of every route the server registers.
fn server_routes() -> BTreeSet<(String, String)> {
    testkit::control_routes().into_iter().map(|(method, path)| (method, openapi_template(&path))).collect()
}

/// (METHOD, path) of every operation in the document.
fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("`paths` is an object");
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        let item = item.as_object().unwrap_or_else(|| panic!("path item {path} is not an object"));
        for key in item.keys() {
            if METHODS.contains(&key.as_str()) {
                out.insert((key.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn document_is_openapi_3_0() {
    let doc = document();
    let version = doc["openapi"].as_str().expect("`openapi` is a string");
    assert!(version.starts_with("3.0."), "openapi: {version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string(), "info.title and info.version");
    assert!(doc["paths"].is_object(), "paths");
}

#[test]
fn template_conversion() {
    assert_eq!(openapi_template("/api/v1/tasks/{id}/pieces/{pieceRange}"), "/api/v1/tasks/{id}/pieces/{pieceRange}");
    assert_eq!(openapi_template("/files/{tail:.*}"), "/files/{tail}");
    assert_eq!(openapi_template("/_ping"), "/_ping");
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let doc = document();
    let server = server_routes();
    let documented = documented_routes(&doc);
    assert!(!server.is_empty(), "the route table is empty");
    assert!(
        server.contains(&(OPENAPI_ROUTE.0.to_string(), OPENAPI_ROUTE.1.to_string())),
        "GET {} (this document) is a route",
        OPENAPI_ROUTE.1
    );
    let undocumented: Vec<_> = server.difference(&documented).collect();
    let not_routes: Vec<_> = documented.difference(&server).collect();
    assert!(
        undocumented.is_empty() && not_routes.is_empty(),
        "routes missing from src/http/openapi.json: {undocumented:?}\ndocumented but not routes: {not_routes:?}"
    );
}

#[test]
fn path_templates_declare_their_parameters() {
    let doc = document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let names: BTreeSet<String> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_string)
            .collect();
        for (method, op) in item.as_object().unwrap() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let mut declared = BTreeSet::new();
            for list in [&item["parameters"], &op["parameters"]] {
                for param in list.as_array().into_iter().flatten() {
                    let param = resolve(&doc, param);
                    if param["in"] == "path" {
                        assert_eq!(param["required"], true, "{method} {path}: path parameter {param} must be required");
                        declared.insert(param["name"].as_str().unwrap().to_string());
                    }
                }
            }
            assert_eq!(declared, names, "{method} {path}: path parameters");
        }
    }
}

/// Follows a local `$ref` (one level).
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("non-local $ref {r}"));
            doc.pointer(pointer).unwrap_or_else(|| panic!("unresolved $ref {r}"))
        }
        None => v,
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push(v.as_str().expect("$ref is a string").to_string());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(list) => list.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn references_resolve_and_named_schemas_exist() {
    let doc = document();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in &refs {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("non-local $ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "unresolved $ref {r}");
    }
    let schemas = doc["components"]["schemas"].as_object().expect("components.schemas");
    for name in [
        "ResultInfo",
        "Error",
        "PeerInfo",
        "PeerCreateRequest",
        "TaskRegisterRequest",
        "PieceTask",
        "TaskInfo",
        "TaskSummary",
        "TaskCreateRequest",
        "TaskCreateResponse",
        "TaskUpdateRequest",
        "PiecePullRequest",
        "PieceInfo",
        "PieceUpdateRequest",
        "PieceErrorRequest",
        "TaskMetricsRequest",
        "PreheatCreateRequest",
        "PreheatInfo",
        "HeartBeatRequest",
        "HeartBeatResponse",
        "NetworkInfoFetchRequest",
        "NetworkInfoFetchResponse",
        "DragonflyVersion",
    ] {
        assert!(schemas.contains_key(name), "components.schemas.{name} missing");
    }
}

/// The optional token guards POST/PUT/DELETE under `/api/v1` except heartbeat and network,
/// POST/DELETE on `/preheats…`, everything under `/oapi/v1/jobs` and the profiler; the document
/// declares `bearer` on exactly those, and the `access_token` query on the job API only.
#[test]
fn bearer_token_declared_on_exactly_the_guarded_operations() {
    let doc = document();
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let jobs = |path: &str| path.starts_with("/oapi/v1/jobs");
    let guarded = |method: &str, path: &str| {
        let mutating = matches!(method, "POST" | "PUT" | "DELETE");
        let v1 = path.starts_with("/api/v1/") && !matches!(path, "/api/v1/peer/heartbeat" | "/api/v1/peer/network");
        let preheat = path.starts_with("/preheats") && matches!(method, "POST" | "DELETE");
        let profile = path.starts_with("/debug/pprof/");
        (mutating && v1) || preheat || jobs(path) || profile
    };
    for (method, path) in documented_routes(&doc) {
        let op = &doc["paths"][&path][method.to_ascii_lowercase()];
        let security = op["security"].as_array().cloned().unwrap_or_default();
        let declares_bearer = security.iter().any(|s| s.get("bearer").is_some());
        assert_eq!(declares_bearer, guarded(&method, &path), "{method} {path}: security {security:?}");
        let declares_query = security.iter().any(|s| s.get("accessToken").is_some());
        assert_eq!(declares_query, jobs(&path), "{method} {path}: security {security:?}");
        if declares_bearer {
            assert!(
                security.iter().any(|s| s.as_object().is_some_and(|o| o.is_empty())),
                "{method} {path}: the token is optional"
            );
            assert!(op["responses"].get("401").is_some(), "{method} {path}: 401 documented");
        }
    }
}

#[test]
fn every_operation_documents_a_success() {
    let doc = document();
    for (method, path) in documented_routes(&doc) {
        let responses = doc["paths"][&path][method.to_ascii_lowercase()]["responses"].as_object().unwrap().clone();
        assert!(
            responses.keys().any(|k| k.starts_with('2') || k.starts_with('3')),
            "{method} {path}: no 2xx/3xx response"
        );
    }
}

#[actix_rt::test]
async fn served_document_matches() {
    let server = testkit::start().await;
    let mut res = testkit::client().get(server.url(OPENAPI_ROUTE.1)).send().await.expect("request sent");
    assert_eq!(res.status().as_u16(), 200, "GET {}", OPENAPI_ROUTE.1);
    let content_type = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert_eq!(content_type, "application/json", "GET {}", OPENAPI_ROUTE.1);
    let body = res.body().limit(16 * 1024 * 1024).await.expect("body read");
    let served: Value = serde_json::from_slice(&body).expect("served document is JSON");
    assert_eq!(served, document(), "GET {} differs from src/http/openapi.json", OPENAPI_ROUTE.1);
    // The version prefix reaches the same route.
    let (status, versioned) = testkit::get(&server, "/v1.24/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(testkit::json(&versioned), document());
}
