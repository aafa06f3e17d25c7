//! `--profiler`: CPU profiles at `/debug/pprof/profile?seconds=N` in the pprof format (gzip
//! of the protobuf `go tool pprof` reads), off by default, behind the API token when one is
//! set.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pprof::protos::{Message, Profile};
use testkit::{ChildServer, Control};

use crate::{arg, start_serving, supernode};

/// Most requests sent to keep the server busy while it profiles itself.
const LOAD_REQUESTS: usize = 2000;

async fn profiled(args: &[&str]) -> (ChildServer, tempfile::TempDir) {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = supernode();
    cmd.args(["--home-dir", arg(home.path()), "--port=0", "--download-port=0"]).args(args);
    (start_serving(cmd).await, home)
}

/// `GET` with an optional bearer token: status, `Content-Type` and body bytes.
async fn fetch(s: &impl Control, path: &str, token: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut req = testkit::client().get(s.control_url(path));
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    let mut res = req.send().await.expect("request sent");
    let body = res.body().limit(64 << 20).await.expect("body read").to_vec();
    let content_type = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (res.status().as_u16(), content_type, body)
}

/// The profile in a gzip body, as `go tool pprof` reads it.
fn decode(body: &[u8]) -> Profile {
    assert_eq!(body.get(..2), Some(&[0x1f, 0x8b][..]), "gzip-compressed");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(body).read_to_end(&mut raw).expect("gunzip");
    Profile::parse_from_bytes(&raw).expect("a pprof protobuf Profile")
}

/// `(type, unit)` of each sample value, read through the string table.
fn sample_types(p: &Profile) -> Vec<(String, String)> {
    let text = |i: i64| p.string_table.get(i as usize).cloned().unwrap_or_default();
    p.sample_type.iter().map(|t| (text(t.ty), text(t.unit))).collect()
}

#[actix_web::test]
async fn a_cpu_profile_in_the_pprof_format_only_with_the_flag() {
    let (server, _home) = profiled(&["--profiler"]).await;
    let busy = Arc::new(AtomicBool::new(true));
    let load = {
        let (url, busy) = (server.control_url("/metrics"), busy.clone());
        actix_web::rt::spawn(async move {
            for _ in 0..LOAD_REQUESTS {
                if !busy.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(mut res) = testkit::client().get(&url).send().await {
                    let _ = res.body().await;
                }
            }
        })
    };
    let (status, content_type, body) = fetch(&server, "/debug/pprof/profile?seconds=1", None).await;
    busy.store(false, Ordering::Relaxed);
    let _ = load.await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/octet-stream"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let profile = decode(&body);
    let types = sample_types(&profile);
    assert!(types.contains(&("cpu".into(), "nanoseconds".into())), "sample types {types:?}");
    assert!(profile.duration_nanos >= 1_000_000_000, "sampled for the second asked: {} ns", profile.duration_nanos);
    assert!(!profile.sample.is_empty() && !profile.function.is_empty(), "a busy second leaves samples and functions");

    let (status, _, body) = fetch(&server, "/debug/pprof/profile?seconds=0", None).await;
    assert_eq!(status, 400, "seconds=0: {}", String::from_utf8_lossy(&body));

    let (off, _home) = profiled(&[]).await;
    let (status, _, body) = fetch(&off, "/debug/pprof/profile?seconds=1", None).await;
    assert_eq!((status, body.as_slice()), (404, &b"404 page not found\n"[..]), "off by default");
}

/// Two profiles asked for at once: the process has one profiling timer, so one is taken and
/// the other refused, whichever comes first.
#[actix_web::test]
async fn one_profile_at_a_time() {
    let (server, _home) = profiled(&["--profiler"]).await;
    let (a, b) = futures_util::join!(
        fetch(&server, "/debug/pprof/profile?seconds=2", None),
        fetch(&server, "/debug/pprof/profile?seconds=2", None)
    );
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{} / {}", String::from_utf8_lossy(&a.2), String::from_utf8_lossy(&b.2));
}

#[actix_web::test]
async fn with_an_api_token_the_profiler_needs_it() {
    let (server, _home) = profiled(&["--profiler", "--api-token=s3cret"]).await;
    for token in [None, Some("wrong")] {
        let (status, _, _) = fetch(&server, "/debug/pprof/profile?seconds=1", token).await;
        assert_eq!(status, 401, "token {token:?}");
    }
    let (status, _, body) = fetch(&server, "/debug/pprof/profile?seconds=1", Some("s3cret")).await;
    assert_eq!(status, 200);
    assert!(sample_types(&decode(&body)).iter().any(|(t, _)| t == "cpu"));
}
