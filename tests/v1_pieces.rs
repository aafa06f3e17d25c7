//! The v1 piece API the original never implemented (issue 4 item 4): pulling piece tasks,
//! updating pieces, declaring a peer complete, and reporting piece errors by peer ID.

mod common;

use std::time::{Duration, Instant};

use common::origin::Origin;
use serde_json::{json, Value};

const LEN: u64 = 5 * 1024 * 1024; // two pieces of 4 MiB

async fn send(req: awc::ClientRequest, body: Option<Value>) -> (u16, Value) {
    let (status, text) = common::call(req, body.map(|b| b.to_string()).as_deref()).await;
    let value = if text.trim().is_empty() { Value::Null } else { common::json(&text) };
    (status, value)
}

/// A peer registered through the API, with one download (`cid`) of the task at `url`.
async fn peer_with_client(s: &common::TestServer, host: &str, port: u16, cid: &str, url: &str) -> (String, String) {
    let c = common::client();
    let (status, peer) =
        send(c.post(s.url("/api/v1/peers")), Some(json!({"IP": "127.0.0.1", "hostName": host, "port": port}))).await;
    assert_eq!(status, 201, "{peer}");
    let peer_id = peer["ID"].as_str().unwrap_or_default().to_string();
    let body = json!({"rawURL": url, "cID": cid, "peerID": peer_id, "path": format!("/peer/file/{cid}")});
    let (status, task) = send(c.post(s.url("/api/v1/tasks")), Some(body)).await;
    assert_eq!(status, 201, "{task}");
    (peer_id, task["ID"].as_str().unwrap_or_default().to_string())
}

async fn wait_success(s: &common::TestServer, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, info) = send(common::client().get(s.url(&format!("/api/v1/tasks/{id}"))), None).await;
        if info["cdnStatus"] == "SUCCESS" {
            return;
        }
        assert!(Instant::now() < deadline, "{info}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn pull(s: &common::TestServer, id: &str, cid: &str, num: usize, body: Value) -> (u16, Value) {
    let url = s.url(&format!("/api/v1/tasks/{id}/pieces?clientID={cid}&num={num}"));
    send(common::client().get(url), Some(body)).await
}

async fn update(s: &common::TestServer, id: &str, range: &str, body: Value) -> (u16, Value) {
    send(common::client().put(s.url(&format!("/api/v1/tasks/{id}/pieces/{range}"))), Some(body)).await
}

fn pieces(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

#[actix_web::test]
async fn pull_update_complete_and_report_by_peer_id() {
    let origin = Origin::start().await;
    origin.add_generated("/two.bin", 7, LEN);
    let url = origin.url("/two.bin");
    let s = common::start().await;
    let (peer_a, id) = peer_with_client(&s, "host-a", 20001, "cid-a", &url).await;
    wait_success(&s, &id).await;

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
        send(common::client().put(s.url(&format!("/api/v1/tasks/{id}"))), Some(json!({"peerID": peer_b}))).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["ID"], id.as_str());
    let (status, list) = pull(&s, &id, "cid-b", 4, json!({})).await;
    assert_eq!((status, pieces(&list).len()), (200, 0), "{list}");

    // A MD5 error about A (by peer ID) stops A being a source of that piece.
    let err = json!({"srcCid": "cid-b", "dstPid": peer_a, "errorType": "FILE_MD5_NOT_MATCH"});
    let path = format!("/api/v1/tasks/{id}/pieces/0-4194303/error");
    let (status, body) = send(common::client().post(s.url(&path)), Some(err.clone())).await;
    assert_eq!(status, 200, "{body}");
}

#[actix_web::test]
async fn v1_piece_api_refuses_bad_input() {
    let origin = Origin::start().await;
    origin.add_generated("/one.bin", 3, 1000);
    let s = common::start().await;
    let (peer_a, id) = peer_with_client(&s, "host-a", 20001, "cid-a", &origin.url("/one.bin")).await;
    wait_success(&s, &id).await;
    let unknown = "a".repeat(64);
    let c = common::client();

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
