//! The v1 piece API the Go supernode only declared in its swagger: pulling piece tasks,
//! updating pieces, declaring a peer complete, and reporting piece errors by peer ID.

use std::time::Duration;

use serde_json::{json, Value};
use testkit::origin::Origin;
use testkit::TestServer;

const LEN: u64 = 5 * 1024 * 1024; // two pieces of 4 MiB

async fn send(req: awc::ClientRequest, body: Option<Value>) -> (u16, Value) {
    let (status, text) = testkit::call(req, body.map(|b| b.to_string()).as_deref()).await;
    let value = if text.trim().is_empty() { Value::Null } else { testkit::json(&text) };
    (status, value)
}

/// A peer registered through the API, with one download (`cid`) of the task at `url`.
async fn peer_with_client(s: &TestServer, host: &str, port: u16, cid: &str, url: &str) -> (String, String) {
    let c = testkit::client();
    let (status, peer) =
        send(c.post(s.url("/api/v1/peers")), Some(json!({"IP": "127.0.0.1", "hostName": host, "port": port}))).await;
    assert_eq!(status, 201, "{peer}");
    let peer_id = peer["ID"].as_str().unwrap_or_default().to_string();
    let body = json!({"rawURL": url, "cID": cid, "peerID": peer_id, "path": format!("/peer/file/{cid}")});
    let (status, task) = send(c.post(s.url("/api/v1/tasks")), Some(body)).await;
    assert_eq!(status, 201, "{task}");
    (peer_id, task["ID"].as_str().unwrap_or_default().to_string())
}

async fn pull(s: &TestServer, id: &str, cid: &str, num: usize, body: Value) -> (u16, Value) {
    let url = s.url(&format!("/api/v1/tasks/{id}/pieces?clientID={cid}&num={num}"));
    send(testkit::client().get(url), Some(body)).await
}

async fn update(s: &TestServer, id: &str, range: &str, body: Value) -> (u16, Value) {
    send(testkit::client().put(s.url(&format!("/api/v1/tasks/{id}/pieces/{range}"))), Some(body)).await
}

fn pieces(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

#[actix_web::test]
async fn pull_update_complete_and_report_by_peer_id() {
    let origin = Origin::start().await;
    origin.add_generated("/two.bin", 7, LEN);
    let url = origin.url("/two.bin");
    let s = testkit::start().await;
    let (peer_a, id) = peer_with_client(&s, "host-a", 20001, "cid-a", &url).await;
    testkit::wait_success(&s, &id, Duration::from_secs(20)).await;

    // A fresh client gets CDN pieces: pID is the supernode's peer, the path its download path.
    let (status, list) = pull(&s, &id, "cid-a", 2, json!({})).await;
    assert_eq!(status, 200, "{list}");
    let first = pieces(&list);
    assert_eq!(first.len(), 2, "{list}");
    let supernode_pid = first[0]["pID"].as_str().unwrap_or_default().to_string();
    assert!(supernode_pid.ends_with("-supernode"), "{list}");
    for p in &first {
        assert_eq!(p["peerPort"], s.download().port(), "{p}");
        assert_eq!(p["path"], format!("/download/{}/{id}", &id[..3]));
        assert_eq!(p["pieceSize"], 4 * 1024 * 1024);
        let md5 = p["pieceMD5"].as_str().unwrap_or_default();
        assert!(md5.len() > 33 && md5.contains(':'), "{p}");
    }
    let ranges: Vec<String> = first.iter().map(|p| p["pieceRange"].as_str().unwrap_or_default().to_string()).collect();
    assert!(ranges.contains(&"0-4194303".to_string()), "{ranges:?}");

    // A reports piece 0 done (SUCCESS from the supernode): it now holds and serves it.
    let (status, body) =
        update(&s, &id, "0-4194303", json!({"clientID": "cid-a", "dstPID": supernode_pid, "pieceStatus": "SUCCESS"}))
            .await;
    assert_eq!(status, 200, "{body}");

    // B gets piece 0 from A (a peer holding it beats the CDN) and piece 1 from the CDN.
    let (peer_b, id_b) = peer_with_client(&s, "host-b", 20002, "cid-b", &url).await;
    assert_eq!(id_b, id);
    let (status, list) = pull(&s, &id, "cid-b", 2, json!({"dfgetTaskStatus": "STARTED"})).await;
    assert_eq!(status, 200, "{list}");
    let from_a: Vec<Value> = pieces(&list).into_iter().filter(|p| p["pID"] == peer_a.as_str()).collect();
    assert_eq!(from_a.len(), 1, "piece 0 from A: {list}");
    assert_eq!(from_a[0]["pieceRange"], "0-4194303");
    assert_eq!(from_a[0]["peerPort"], 20001);
    assert_eq!(from_a[0]["path"], "/peer/file/cid-a");

    // B's fetch from A fails: reported with RUNNING/FAILED, B gets piece 0 again, not from A.
    let report =
        json!({"dstPID": peer_a, "dfgetTaskStatus": "RUNNING", "pieceResult": "FAILED", "pieceRange": "0-4194303"});
    let (status, list) = pull(&s, &id, "cid-b", 2, report).await;
    assert_eq!(status, 200, "{list}");
    let again: Vec<Value> = pieces(&list).into_iter().filter(|p| p["pieceRange"] == "0-4194303").collect();
    assert_eq!(again.len(), 1, "{list}");
    assert_eq!(again[0]["pID"], supernode_pid.as_str(), "A failed B once, so the CDN serves it: {list}");

    // B declared complete: it holds every piece and nothing more is handed out to it.
    let (status, info) =
        send(testkit::client().put(s.url(&format!("/api/v1/tasks/{id}"))), Some(json!({"peerID": peer_b}))).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["ID"], id.as_str());
    let (status, list) = pull(&s, &id, "cid-b", 4, json!({})).await;
    assert_eq!((status, pieces(&list).len()), (200, 0), "{list}");

    // A MD5 error about A (by peer ID) stops A being a source of that piece.
    let err = json!({"srcCid": "cid-b", "dstPid": peer_a, "errorType": "FILE_MD5_NOT_MATCH"});
    let path = format!("/api/v1/tasks/{id}/pieces/0-4194303/error");
    let (status, body) = send(testkit::client().post(s.url(&path)), Some(err.clone())).await;
    assert_eq!(status, 200, "{body}");
}

#[actix_web::test]
async fn v1_piece_api_refuses_bad_input() {
    let origin = Origin::start().await;
    origin.add_generated("/one.bin", 3, 1000);
    let s = testkit::start().await;
    let (peer_a, id) = peer_with_client(&s, "host-a", 20001, "cid-a", &origin.url("/one.bin")).await;
    testkit::wait_success(&s, &id, Duration::from_secs(20)).await;
    let unknown = "a".repeat(64);
    let c = testkit::client();

    assert_eq!(send(c.get(s.url(&format!("/api/v1/tasks/{id}/pieces"))), None).await.0, 400, "clientID required");
    assert_eq!(pull(&s, &id, "cid-a", 0, json!({})).await.0, 400, "num out of range");
    assert_eq!(pull(&s, &id, "nobody", 1, json!({})).await.0, 404, "unknown client");
    assert_eq!(pull(&s, &unknown, "cid-a", 1, json!({})).await.0, 404, "unknown task");
    assert_eq!(pull(&s, &id, "cid-a", 1, json!({"dfgetTaskStatus": "DANCING"})).await.0, 400);
    assert_eq!(pull(&s, &id, "cid-a", 1, json!({"dfgetTaskStatus": "RUNNING", "pieceRange": "x"})).await.0, 400);

    let ok = json!({"clientID": "cid-a", "dstPID": peer_a, "pieceStatus": "SUCCESS"});
    assert_eq!(update(&s, &id, "0-4194303", json!({"clientID": "cid-a", "pieceStatus": "INVALID"})).await.0, 400);
    assert_eq!(update(&s, &id, "0-4194303", json!({"clientID": "cid-a", "pieceStatus": "DONE"})).await.0, 400);
    assert_eq!(update(&s, &id, "4-3", ok.clone()).await.0, 400, "bad range");
    assert_eq!(update(&s, &id, "0-4194303", json!({"pieceStatus": "SUCCESS"})).await.0, 400, "clientID required");
    assert_eq!(update(&s, &unknown, "0-4194303", ok.clone()).await.0, 404);
    assert_eq!(update(&s, &id, "0-4194303", ok).await.0, 200);

    let path = |t: &str| s.url(&format!("/api/v1/tasks/{t}/pieces/0-4194303/error"));
    let (status, _) = send(c.post(path(&id)), Some(json!({"dstPid": peer_a, "errorType": "BROKEN"}))).await;
    assert_eq!(status, 400);
    let (status, _) = send(c.post(path(&id)), Some(json!({"errorType": "FILE_NOT_EXIST"}))).await;
    assert_eq!(status, 400, "dstPid required");
    let (status, _) =
        send(c.post(path(&unknown)), Some(json!({"dstPid": peer_a, "errorType": "FILE_NOT_EXIST"}))).await;
    assert_eq!(status, 404);
    let (status, _) = send(c.get(path(&id)), Some(json!({"dstPid": peer_a, "errorType": "FILE_NOT_EXIST"}))).await;
    assert_eq!(status, 200, "Go's GET form works too");

    let (status, _) = send(c.put(s.url(&format!("/api/v1/tasks/{id}"))), Some(json!({}))).await;
    assert_eq!(status, 400, "peerID or paused required");
    let (status, _) =
        send(c.put(s.url(&format!("/api/v1/tasks/{id}"))), Some(json!({"peerID": "ghost-1.2.3.4"}))).await;
    assert_eq!(status, 404, "a peer without a download of the task");
}

/// Ranges are network input: one that is not a piece of the task is refused (400) on the
/// v1 API and ignored in a `/peer/task` report, and never sizes anything. (A schemathesis
/// run once aborted the server with `SEMISUC` for `40704138952-40704138952`.)
#[actix_web::test]
async fn ranges_that_are_not_pieces_of_the_task() {
    let origin = Origin::start().await;
    origin.add_generated("/two.bin", 5, LEN);
    let s = testkit::start().await;
    let (peer_a, id) = peer_with_client(&s, "host-a", 20001, "cid-a", &origin.url("/two.bin")).await;
    testkit::wait_success(&s, &id, Duration::from_secs(20)).await;
    let c = testkit::client();

    for range in ["40704138952-40704138952", "58-40704138952", "8388608-12582911", "4194304-4194304", "1-1"] {
        for status in ["SEMISUC", "FAILED", "SUCCESS"] {
            let (code, body) = update(&s, &id, range, json!({"clientID": "cid-a", "pieceStatus": status})).await;
            assert_eq!(code, 400, "{range} {status}: {body}");
            assert!(body["message"].as_str().unwrap_or_default().contains(range), "{body}");
        }
        let poll = format!("/peer/task?srcCid=cid-a&dstCid=&range={range}&result=503&status=701&taskId={id}");
        let (code, text) = testkit::get(&s, &poll).await;
        assert_eq!(code, 200, "{text}");
        let code = &testkit::json(&text)["code"];
        assert!(code == 601 || code == 602, "a bad report does not stop scheduling: {text}");
    }

    let error = |range: &str| s.url(&format!("/api/v1/tasks/{id}/pieces/{range}/error"));
    let report = json!({"dstPid": peer_a, "errorType": "FILE_NOT_EXIST"});
    let (code, body) = send(c.post(error("%C3%AE%05y")), Some(report.clone())).await;
    assert_eq!(code, 400, "a path range that is not `start-end`: {body}");
    let mut other = report.clone();
    other["range"] = json!("4194304-8388607");
    let (code, body) = send(c.post(error("0-4194303")), Some(other)).await;
    assert_eq!(code, 400, "the body's range must be the path's: {body}");
    let mut same = report;
    same["range"] = json!("0-4194303");
    assert_eq!(send(c.post(error("0-4194303")), Some(same)).await.0, 200);

    // Still scheduling normally: the piece API works, and once the first client has both
    // pieces (the supernode sends a piece nobody holds to one client at a time) a new client
    // gets both.
    for range in ["0-4194303", "4194304-8388607"] {
        let (code, body) = update(&s, &id, range, json!({"clientID": "cid-a", "pieceStatus": "SEMISUC"})).await;
        assert_eq!(code, 200, "{range}: {body}");
    }
    let (_, id_b) = peer_with_client(&s, "host-b", 20002, "cid-b", &origin.url("/two.bin")).await;
    let (code, list) = pull(&s, &id_b, "cid-b", 2, json!({})).await;
    assert_eq!((code, pieces(&list).len()), (200, 2), "{list}");
}

/// The v1 task API answers a source that cannot be used with 422 and a failed CDN run's
/// pieces with 409, each with the reason: never a 5xx for something the origin did.
#[actix_web::test]
async fn source_failures_are_client_errors() {
    let origin = Origin::start().await;
    origin.add_generated("/real.bin", 9, 3000);
    let s = testkit::start().await;
    let c = testkit::client();

    let (code, body) = send(c.post(s.url("/api/v1/tasks")), Some(json!({"rawURL": origin.url("/missing.bin")}))).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["code"], 422);
    assert!(body["message"].as_str().unwrap_or_default().contains("404"), "the origin's status is named: {body}");

    let (code, peer) =
        send(c.post(s.url("/api/v1/peers")), Some(json!({"IP": "127.0.0.1", "hostName": "host-m", "port": 20003})))
            .await;
    assert_eq!(code, 201, "{peer}");
    let wrong_md5 = "0".repeat(32);
    let create = json!({"rawURL": origin.url("/real.bin"), "md5": wrong_md5, "cID": "cid-m", "peerID": peer["ID"], "path": "/peer/file/m"});
    let (code, task) = send(c.post(s.url("/api/v1/tasks")), Some(create)).await;
    assert_eq!(code, 201, "{task}");
    let id = task["ID"].as_str().unwrap_or_default().to_string();
    let info = testkit::wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["cdnStatus"], "FAILED", "the md5 mismatch fails the run: {info}");
    let (code, body) = pull(&s, &id, "cid-m", 2, json!({})).await;
    assert_eq!(code, 409, "{body}");
    assert!(!body["message"].as_str().unwrap_or_default().is_empty(), "{body}");
}
