//! Held polls (`[scheduler] poll_hold`): a client with nothing running whose poll finds nothing
//! for it is answered the moment a piece can be had, instead of being told to wait (602) and
//! coming back after dfget's back-off; with `poll_hold = "0s"` it is told to wait at once, as Go
//! does. The server runs on a clock the test moves, so "at once" means without the clock
//! moving at all.

use std::time::Duration;

use serde_json::{json, Value};
use testkit::origin::Origin;
use testkit::{first_poll, first_poll_past_hold, get_json, wait_success, ManualClock, TestServer};

const MIB: u64 = 1024 * 1024;

fn client(url: &str, cid: &str, ip: &str) -> Value {
    let mut body = testkit::dfget_body(url, cid);
    body["ip"] = json!(ip);
    body["hostName"] = json!(format!("host-{cid}"));
    body
}

/// A cached task of `len` bytes at `path` on a server started with `config`, and two
/// registered clients: (server, clock, task ID, origin).
async fn cached_for_two(
    config: supernode::config::Config,
    path: &str,
    len: u64,
) -> (TestServer, std::sync::Arc<ManualClock>, String, Origin) {
    let (s, clock) = testkit::start_on_manual_clock(config).await;
    let origin = Origin::start().await;
    origin.add_generated(path, 31, len);
    let url = origin.url(path);
    let id = testkit::register(&s, &client(&url, "first-1", "127.0.0.2")).await["taskId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    testkit::register(&s, &client(&url, "second-1", "127.0.0.3")).await;
    wait_success(&s, &id, Duration::from_secs(30)).await;
    (s, clock, id, origin)
}

/// A cached two-piece task on a server whose supernode serves one piece at a time, and two
/// registered clients.
async fn one_cdn_slot(poll_hold: Duration) -> (TestServer, std::sync::Arc<ManualClock>, String, Origin) {
    let config = testkit::config_with(|c| {
        c.scheduler.cdn_up_limit = 1;
        c.scheduler.peer_down_limit = 1;
        c.scheduler.poll_hold = poll_hold;
    });
    cached_for_two(config, "/two-pieces.bin", 6 * MIB).await
}

/// The second client's poll waits while the supernode's one slot is taken, and gets a piece as
/// soon as the first client reports its own (which frees the slot and makes the first client a
/// source): the clock never moves.
#[actix_web::test]
async fn a_held_poll_gets_the_piece_a_peer_just_finished() {
    let (s, _clock, id, _origin) = one_cdn_slot(Duration::from_secs(1)).await;
    let suc =
        |range: &str, src: &str| format!("/peer/piece/suc?taskId={id}&cid=first-1&dstCid={src}&pieceRange={range}");
    let (second, reported) = second_poll_after_report(&s, &id, suc).await;
    assert_eq!(reported["code"], 611, "{reported}");
    assert_eq!(second["code"], 601, "answered when the first client's piece was done: {second}");
    assert_eq!(second["data"].as_array().map(Vec::len), Some(1), "{second}");
    assert_eq!(held_polls(&s).await, 0.0, "nothing left held");
}

async fn held_polls(s: &TestServer) -> f64 {
    testkit::metrics(s).await.get("dragonfly_supernode_held_polls", &[]).unwrap_or(0.0)
}

/// The first client gets a piece; once the second client's poll is held, the first reports it
/// with the request `report` makes of (range, source). The second poll's answer and the report's.
async fn second_poll_after_report(s: &TestServer, id: &str, report: impl Fn(&str, &str) -> String) -> (Value, Value) {
    let first = first_poll(s, "first-1", id).await;
    assert_eq!(first["code"], 601, "{first}");
    let range = first["data"][0]["range"].as_str().unwrap_or_default();
    let src = first["data"][0]["cid"].as_str().unwrap_or_default();
    let send = async {
        testkit::eventually(Duration::from_secs(10), "the second poll is held", || async {
            held_polls(s).await == 1.0
        })
        .await;
        let path = report(range, src);
        let (status, v) = get_json(s, &path).await;
        assert_eq!(status, 200, "{path} → {v}");
        v
    };
    futures_util::join!(first_poll(s, "second-1", id), send)
}

/// Nothing turns up within `poll_hold`: the poll is answered 602 when it has passed.
#[actix_web::test]
async fn a_held_poll_is_told_to_wait_when_the_hold_passes() {
    let hold = Duration::from_secs(1);
    let (s, clock, id, _origin) = one_cdn_slot(hold).await;
    assert_eq!(first_poll(&s, "first-1", &id).await["code"], 601);
    let second = first_poll_past_hold(&s, &clock, hold, "second-1", &id).await;
    assert_eq!(second["code"], 602, "{second}");
}

/// `poll_hold = "0s"`: Go's behaviour, 602 at once.
#[actix_web::test]
async fn without_a_hold_the_answer_is_602_at_once() {
    let (s, _clock, id, _origin) = one_cdn_slot(Duration::ZERO).await;
    assert_eq!(first_poll(&s, "first-1", &id).await["code"], 601);
    let second = first_poll(&s, "second-1", &id).await;
    assert_eq!(second["code"], 602, "{second}");
}

/// dfget reports a finished piece twice, by its next poll and by `/peer/piece/suc`, in either
/// order. A poll's report alone makes its client a source: the held poll of another client gets
/// the piece from it, and the supernode, with a slot free, does not send the piece a second time.
#[actix_web::test]
async fn a_piece_reported_by_a_poll_alone_makes_a_source() {
    let config = testkit::config_with(|c| {
        c.scheduler.cdn_up_limit = 2;
        c.scheduler.poll_hold = Duration::from_secs(1);
    });
    let (s, _clock, id, _origin) = cached_for_two(config, "/one-piece.bin", 2 * MIB).await;
    let poll = |range: &str, src: &str| {
        format!("/peer/task?srcCid=first-1&dstCid={src}&range={range}&result=503&status=701&taskId={id}")
    };
    let (second, _) = second_poll_after_report(&s, &id, poll).await;
    assert_eq!(second["code"], 601, "{second}");
    assert_eq!(second["data"][0]["cid"], "first-1", "from the first client, not the supernode again: {second}");
}
