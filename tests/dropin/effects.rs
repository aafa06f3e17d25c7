//! What Go's flags and keys change, seen where the server shows it: the pieces a poll hands
//! out, registrations answered from memory, and garbage collection on the server's manual
//! clock. Each test sets a value unlike the default, so a flag or key that sets nothing fails.

use std::time::Duration;

use serde_json::{json, Value};
use testkit::origin::{salted_bytes, Origin};
use testkit::{
    first_poll, first_poll_past_hold, get_json, post_registration, start_from_args_on_manual_clock, wait_success,
    RunGc, TestServer,
};

use crate::{arg, write};

const KIB: usize = 1024;
const MIB: u64 = 1024 * 1024;
/// So that no periodic collection runs unless a test asks for one.
const NO_PERIODIC_GC: &str = "--gc-initial-delay=8760h";
/// `scheduler.poll_hold`'s default: how long a poll with nothing for it may be held.
const POLL_HOLD: Duration = Duration::from_secs(1);

/// dfget's registration from its own host at `ip`.
fn client(url: &str, cid: &str, ip: &str) -> Value {
    let mut body = testkit::dfget_body(url, cid);
    body["ip"] = json!(ip);
    body["hostName"] = json!(format!("host-{cid}"));
    body
}

/// Registers; the ResultInfo code and, on success, the task ID.
async fn register(s: &TestServer, body: &Value) -> (i64, String) {
    let (status, v) = post_registration(s, body).await;
    assert_eq!(status, 200, "registration {body} → {v}");
    let id = v["data"]["taskId"].as_str().unwrap_or_default().to_string();
    (v["code"].as_i64().expect("code"), id)
}

async fn gc_runs(s: &TestServer, kind: &str) -> f64 {
    testkit::metrics(s).await.get("dragonfly_supernode_gc_runs_total", &[("kind", kind)]).unwrap_or(0.0)
}

/// Waits until the periodic runs reach `meta` and `disk`, then checks they are exactly that.
async fn wait_runs(s: &TestServer, meta: f64, disk: f64, when: &str) {
    let what = format!("{meta} meta and {disk} disk runs {when}");
    testkit::eventually(Duration::from_secs(5), &what, || async {
        gc_runs(s, "meta").await >= meta && gc_runs(s, "disk").await >= disk
    })
    .await;
    assert_eq!((gc_runs(s, "meta").await, gc_runs(s, "disk").await), (meta, disk), "{what}");
}

/// `--down-limit` is Go's limit on the pieces one client runs at once and on the pieces the
/// supernode serves at once for a task.
#[actix_web::test]
async fn down_limit_caps_pieces_per_client_and_supernode_pieces_per_task() {
    let (s, clock) = start_from_args_on_manual_clock(&["--down-limit=2", NO_PERIODIC_GC]).await;
    let origin = Origin::start().await;
    origin.add_generated("/five-pieces.bin", 5, 17 * MIB);
    let url = origin.url("/five-pieces.bin");
    let (code, id) = register(&s, &client(&url, "first-1", "127.0.0.2")).await;
    assert_eq!(code, 200);
    assert_eq!(register(&s, &client(&url, "second-1", "127.0.0.3")).await, (200, id.clone()));
    wait_success(&s, &id, Duration::from_secs(30)).await;

    let first = first_poll(&s, "first-1", &id).await;
    assert_eq!(first["code"], 601, "{first}");
    let pieces = first["data"].as_array().map_or(0, Vec::len);
    assert_eq!(pieces, 2, "a client runs at most --down-limit pieces: {first}");
    let second = first_poll_past_hold(&s, &clock, POLL_HOLD, "second-1", &id).await;
    assert_eq!(second["code"], 602, "the supernode already serves --down-limit pieces of the task: {second}");
}

/// Polls for `cid` and reports its one piece fetched: the piece and the CID it came from.
async fn fetch_one_piece(s: &TestServer, cid: &str, id: &str) -> (String, String) {
    let poll = first_poll(s, cid, id).await;
    assert_eq!(poll["code"], 601, "{cid}: {poll}");
    let piece = &poll["data"][0];
    let (range, src) = (piece["range"].as_str().unwrap_or_default(), piece["cid"].as_str().unwrap_or_default());
    let suc = format!("/peer/piece/suc?taskId={id}&cid={cid}&dstCid={src}&pieceRange={range}");
    let (status, v) = get_json(s, &suc).await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(611)), "{suc} → {v}");
    (range.to_string(), src.to_string())
}

/// `--up-limit` is Go's limit on the pieces one peer uploads at once: with 1, a peer already
/// uploading is not handed to a second client, which waits while the supernode (held to one
/// piece by `--down-limit=1`) is busy too.
#[actix_web::test]
async fn up_limit_caps_the_uploads_handed_to_one_peer() {
    let (s, clock) = start_from_args_on_manual_clock(&["--up-limit=1", "--down-limit=1", NO_PERIODIC_GC]).await;
    let origin = Origin::start().await;
    origin.add_generated("/four-pieces.bin", 6, 13 * MIB);
    let url = origin.url("/four-pieces.bin");
    let (code, id) = register(&s, &client(&url, "holder-1", "127.0.0.2")).await;
    assert_eq!(code, 200);
    for (cid, ip) in [("busy-1", "127.0.0.3"), ("second-1", "127.0.0.4"), ("third-1", "127.0.0.5")] {
        assert_eq!(register(&s, &client(&url, cid, ip)).await, (200, id.clone()));
    }
    wait_success(&s, &id, Duration::from_secs(30)).await;

    let (held, _) = fetch_one_piece(&s, "holder-1", &id).await;
    let busy = first_poll(&s, "busy-1", &id).await;
    assert_eq!(busy["code"], 601, "the supernode serves its one piece: {busy}");
    assert_ne!(busy["data"][0]["cid"], "holder-1", "a piece no peer has yet comes from the supernode: {busy}");
    let second = first_poll(&s, "second-1", &id).await;
    assert_eq!(second["code"], 601, "{second}");
    let handed = (&second["data"][0]["cid"], &second["data"][0]["range"]);
    assert_eq!(handed, (&json!("holder-1"), &json!(held)), "the peer under its limit uploads: {second}");
    let third = first_poll_past_hold(&s, &clock, POLL_HOLD, "third-1", &id).await;
    assert_eq!(third["code"], 602, "the peer already runs --up-limit uploads: {third}");
}

#[actix_web::test]
async fn fail_access_interval_is_how_long_a_missing_source_is_remembered() {
    let (s, clock) = start_from_args_on_manual_clock(&["--fail-access-interval=30s", NO_PERIODIC_GC]).await;
    let origin = Origin::start().await;
    let url = origin.url("/gone.bin");
    assert_eq!(register(&s, &client(&url, "gone-1", "127.0.0.2")).await.0, 607);
    assert_eq!(origin.stats("/gone.bin").requests, 1);
    clock.advance(Duration::from_secs(29));
    assert_eq!(register(&s, &client(&url, "gone-2", "127.0.0.2")).await.0, 607);
    assert_eq!(origin.stats("/gone.bin").requests, 1, "remembered within --fail-access-interval");
    clock.advance(Duration::from_secs(1));
    assert_eq!(register(&s, &client(&url, "gone-3", "127.0.0.2")).await.0, 607);
    assert_eq!(origin.stats("/gone.bin").requests, 2, "asked again once --fail-access-interval is over");
}

/// `--gc-initial-delay` and `--gc-meta-interval` from flags, `gcDiskInterval` from a Go file,
/// each shorter than its default, so every run below comes before its default would.
#[actix_web::test]
async fn periodic_collections_follow_the_flags_and_the_go_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "supernode.yml", "base:\n  gcDiskInterval: 5s\n");
    let args = ["--config", arg(&file), "--gc-initial-delay=2s", "--gc-meta-interval=30s"];
    let (s, clock) = start_from_args_on_manual_clock(&args).await;
    // A run asked for is handled once the collector has started and set its timers.
    s.run_gc(RunGc::Disk).await;
    wait_runs(&s, 0.0, 1.0, "at the start").await;
    clock.advance(Duration::from_secs(2));
    wait_runs(&s, 1.0, 2.0, "after the initial delay of 2s").await;
    clock.advance(Duration::from_secs(5));
    wait_runs(&s, 1.0, 3.0, "5s later (gcDiskInterval)").await;
    clock.advance(Duration::from_secs(25));
    wait_runs(&s, 2.0, 4.0, "30s after the first (--gc-meta-interval)").await;
}

#[actix_web::test]
async fn task_expire_time_from_the_go_file_collects_an_idle_task() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "supernode.yml", "base:\n  taskExpireTime: 1m0s\n  gcInitialDelay: 8760h\n");
    let (s, clock) = start_from_args_on_manual_clock(&["--config", arg(&file)]).await;
    let origin = Origin::start().await;
    origin.add("/idle.bin", salted_bytes(64 * KIB, 4));
    let (_, id) = register(&s, &client(&origin.url("/idle.bin"), "idle-1", "127.0.0.2")).await;
    wait_success(&s, &id, Duration::from_secs(20)).await;

    clock.advance(Duration::from_secs(59));
    assert_eq!(s.run_gc(RunGc::Meta).await.tasks, 0, "collected before taskExpireTime");
    clock.advance(Duration::from_secs(1));
    assert_eq!(s.run_gc(RunGc::Meta).await.tasks, 1, "kept past taskExpireTime");
    assert_eq!(get_json(&s, &format!("/api/v1/tasks/{id}")).await.0, 404);
}

#[actix_web::test]
async fn peer_gc_delay_is_how_long_a_client_stays_after_service_down() {
    let (s, clock) = start_from_args_on_manual_clock(&["--peer-gc-delay=30s", NO_PERIODIC_GC]).await;
    let origin = Origin::start().await;
    origin.add("/down.bin", salted_bytes(64 * KIB, 5));
    let url = origin.url("/down.bin");
    let (_, id) = register(&s, &client(&url, "down-1", "127.0.0.2")).await;
    register(&s, &client(&url, "stays-1", "127.0.0.3")).await;
    wait_success(&s, &id, Duration::from_secs(20)).await;
    let path = format!("/peer/service/down?taskId={id}&cid=down-1");
    let (status, v) = get_json(&s, &path).await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(612)), "{path} → {v}");

    clock.advance(Duration::from_secs(29));
    assert_eq!(first_poll(&s, "stays-1", &id).await["code"], 601, "the other client keeps polling");
    assert_eq!(s.run_gc(RunGc::Meta).await.clients, 0, "collected before --peer-gc-delay");
    clock.advance(Duration::from_secs(1));
    assert_eq!(s.run_gc(RunGc::Meta).await.clients, 1, "kept past --peer-gc-delay");
    assert_eq!(first_poll(&s, "down-1", &id).await["code"], 502);
}
