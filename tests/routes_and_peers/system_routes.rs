//! `/_ping`, `/version` and `/metrics`, the version prefix in front of every route, and the
//! router's answers for unknown paths (404) and wrong methods (405).

use std::collections::BTreeSet;

use serde_json::Value;

use testkit::get;

use crate::create_peer;

#[actix_web::test]
async fn ping_answers_ok() {
    let s = testkit::start().await;
    let res = testkit::client().get(s.url("/_ping")).send().await.expect("sent");
    let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(ct.as_deref(), Some("text/plain; charset=utf-8"));
    let (status, body) = get(&s, "/_ping").await;
    assert_eq!((status, body.as_str()), (200, "OK"));
}

#[actix_web::test]
async fn version_has_go_keys() {
    let s = testkit::start().await;
    let mut res = testkit::client().get(s.url("/version")).send().await.expect("sent");
    assert_eq!(res.status().as_u16(), 200);
    let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(ct.as_deref(), Some("application/json"));
    let body = res.body().await.expect("body");
    let v: Value = serde_json::from_slice(&body).expect("JSON");
    let obj = v.as_object().expect("object");
    let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
    let mut required: BTreeSet<&str> = ["Version", "BuildDate", "GoVersion", "OS", "Arch"].into();
    assert!(required.is_subset(&keys), "missing keys in {v}");
    required.insert("Revision");
    assert!(keys.is_subset(&required), "unexpected keys in {v}");
    for (k, val) in obj {
        let text = val.as_str().unwrap_or_else(|| panic!("{k} is not a string in {v}"));
        assert!(!text.is_empty(), "{k} is empty in {v}");
    }
    // Version is the release number without a leading `v`.
    assert!(!obj["Version"].as_str().unwrap().starts_with('v'), "{v}");
    // BuildDate in Go's build-date format: YYYYMMDD-HH:MM:SS.
    let date = obj["BuildDate"].as_str().unwrap().as_bytes();
    let shape_ok = date.len() == 17
        && date[..8].iter().all(u8::is_ascii_digit)
        && date[8] == b'-'
        && date[9..11].iter().all(u8::is_ascii_digit)
        && date[11] == b':'
        && date[12..14].iter().all(u8::is_ascii_digit)
        && date[14] == b':'
        && date[15..17].iter().all(u8::is_ascii_digit);
    assert!(shape_ok, "BuildDate {:?} is not YYYYMMDD-HH:MM:SS", obj["BuildDate"]);
}

#[actix_web::test]
async fn metrics_count_requests_by_route_template() {
    let s = testkit::start().await;
    assert_eq!(get(&s, "/_ping").await.0, 200);
    assert_eq!(get(&s, "/v1.24/_ping").await.0, 200);
    let id = create_peer(&s, "metrics-host", "10.9.0.1", 20000).await;
    assert_eq!(get(&s, &format!("/api/v1/peers/{id}")).await.0, 200);
    assert_eq!(get(&s, "/no/such/path").await.0, 404);

    let (status, text) = get(&s, "/metrics").await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("dragonfly_supernode_http_requests_total{")).collect();
    assert!(!lines.is_empty(), "no dragonfly_supernode_http_requests_total samples:\n{text}");
    let has = |handler: &str, code: &str| {
        lines.iter().any(|l| l.contains(&format!("handler=\"{handler}\"")) && l.contains(&format!("code=\"{code}\"")))
    };
    assert!(has("/_ping", "200"), "no /_ping sample:\n{}", lines.join("\n"));
    assert!(has("/api/v1/peers", "201"), "no POST /api/v1/peers sample:\n{}", lines.join("\n"));
    assert!(has("/api/v1/peers/{id}", "200"), "handler must be the route template:\n{}", lines.join("\n"));
    // Two pings (one versioned) count under the unversioned handler name.
    let ping_line = lines.iter().find(|l| l.contains("handler=\"/_ping\"") && l.contains("code=\"200\"")).unwrap();
    let count: f64 = ping_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 2.0, "{ping_line}");
    assert!(!lines.iter().any(|l| l.contains("/v1.24")), "versioned handler label:\n{}", lines.join("\n"));
    assert!(!lines.iter().any(|l| l.contains(&id)), "raw peer ID used as a label:\n{}", lines.join("\n"));
    assert!(text.contains("dragonfly_supernode_build_info{"), "no build_info:\n{text}");
    if cfg!(target_os = "linux") {
        assert!(text.lines().any(|l| l.starts_with("process_")), "no process_ metrics:\n{text}");
    }
}

#[actix_web::test]
async fn version_prefix_reaches_the_same_routes() {
    let s = testkit::start().await;
    let (status, body) = get(&s, "/v1.24/_ping").await;
    assert_eq!((status, body.as_str()), (200, "OK"));
    let (status, body) = get(&s, "/v1.0/api/v1/peers?pageSize=0").await;
    assert_eq!(status, 200, "{body}");
    let peers = testkit::json(&body);
    assert!(peers.as_array().is_some_and(|a| !a.is_empty()), "{body}");
    // POST through a prefix too.
    let (status, body) = testkit::call(
        testkit::client().post(s.url("/v1.24/api/v1/peers")),
        Some(r#"{"IP":"10.8.0.1","hostName":"pfx","port":20000}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(testkit::json(&body)["ID"], "pfx-10.8.0.1");
    let (status, _) = get(&s, "/v1.24/api/v1/peers/pfx-10.8.0.1").await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn unknown_path_is_go_404() {
    let s = testkit::start().await;
    for path in ["/nope", "/api/v1/nope", "/api/v1/peers/a/b", "/vx/_ping", "/v1.24/nope"] {
        let res = testkit::client().get(s.url(path)).send().await.expect("sent");
        let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(ct.as_deref(), Some("text/plain; charset=utf-8"), "{path}");
        let (status, body) = get(&s, path).await;
        assert_eq!((status, body.as_str()), (404, "404 page not found\n"), "{path}");
    }
}

#[actix_web::test]
async fn wrong_method_is_405() {
    let s = testkit::start().await;
    let c = testkit::client();
    let (status, body) = testkit::call(c.put(s.url("/api/v1/peers")), Some("{}")).await;
    assert_eq!(status, 405, "{body}");
    let (status, _) = testkit::call(c.post(s.url("/_ping")), Some("{}")).await;
    assert_eq!(status, 405);
    let (status, _) = testkit::call(c.put(s.url("/api/v1/peers/x-1.2.3.4")), Some("{}")).await;
    assert_eq!(status, 405);
}
