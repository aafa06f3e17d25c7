//! What a dfget client does: register a download, poll for pieces, fetch them from the
//! download port, and (as a test) wait for the task's CDN run; plus where the CDN keeps a
//! task's files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use awc::http::header::HeaderMap;

use serde_json::Value;

use crate::http::{client, get_json, json, Control};
use crate::wait::{eventually, poll_until};
use supernode_actors::clock::ManualClock;

/// The registration body exactly as dfget 1.0.6 sends it, for `url` and client ID `cid`
/// (host `vm` on 127.0.0.1, uploader port 20001).
pub fn dfget_body(url: &str, cid: &str) -> Value {
    serde_json::json!({
        "superNodeIp": "127.0.0.1",
        "rawUrl": url,
        "taskUrl": url,
        "cid": cid,
        "ip": "127.0.0.1",
        "hostName": "vm",
        "port": 20001,
        "path": format!("/peer/file/x-{cid}"),
        "version": "1.0.6",
        "pattern": "p2p",
    })
}

/// `POST /peer/registry` with dfget's content type: the HTTP status and the reply as JSON.
pub async fn post_registration(s: &impl Control, body: &Value) -> (u16, Value) {
    let mut res = client()
        .post(s.control_url("/peer/registry"))
        .insert_header(("Content-Type", "application/json;charset=utf-8"))
        .send_body(body.to_string())
        .await
        .expect("registration sent");
    let bytes = res.body().limit(1 << 20).await.expect("registration reply read");
    (res.status().as_u16(), json(&String::from_utf8_lossy(&bytes)))
}

/// A registration that must succeed (HTTP 200, code 200); returns the reply's `data`.
pub async fn register(s: &impl Control, body: &Value) -> Value {
    let (status, v) = post_registration(s, body).await;
    assert_eq!(status, 200, "registration {body} → {v}");
    assert_eq!(v["code"], 200, "registration {body} → {v}");
    v["data"].clone()
}

/// dfget's first `/peer/task` poll (status 700, result 502) for client `cid`: the reply.
pub async fn first_poll(s: &impl Control, cid: &str, id: &str) -> Value {
    let path = format!("/peer/task?srcCid={cid}&dstCid=&range=&result=502&status=700&taskId={id}");
    let (status, v) = get_json(s, &path).await;
    assert_eq!(status, 200, "{path} → {v}");
    v
}

/// [`first_poll`] on a server whose clock the test moves, for a client that gets nothing yet:
/// once the server holds the poll (its `held_polls` gauge grows), the clock passes `hold`
/// (the server's `scheduler.poll_hold`) and the poll is answered with what there is then.
pub async fn first_poll_past_hold(s: &impl Control, clock: &ManualClock, hold: Duration, cid: &str, id: &str) -> Value {
    let held = || async { crate::metrics(s).await.get("dragonfly_supernode_held_polls", &[]).unwrap_or(0.0) };
    let before = held().await;
    let advance = async {
        eventually(Duration::from_secs(10), "the poll is held", || async { held().await > before }).await;
        clock.advance(hold);
    };
    let (v, ()) = futures_util::join!(first_poll(s, cid, id), advance);
    v
}

/// TaskInfo of `id`, which must exist.
pub async fn task_info(s: &impl Control, id: &str) -> Value {
    let (status, v) = get_json(s, &format!("/api/v1/tasks/{id}")).await;
    assert_eq!(status, 200, "GET /api/v1/tasks/{id} → {v}");
    v
}

/// Polls TaskInfo until `cdnStatus` is SUCCESS, FAILED or SOURCE_ERROR.
pub async fn wait_done(s: &impl Control, id: &str, within: Duration) -> Value {
    poll_until(within, &format!("the CDN run of task {id} ends"), || async {
        let v = task_info(s, id).await;
        let done = matches!(v["cdnStatus"].as_str(), Some("SUCCESS" | "FAILED" | "SOURCE_ERROR"));
        if done {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    })
    .await
}

/// Polls TaskInfo until the CDN run ends, which must be SUCCESS.
pub async fn wait_success(s: &impl Control, id: &str, within: Duration) -> Value {
    let v = wait_done(s, id, within).await;
    assert_eq!(v["cdnStatus"], "SUCCESS", "task {id}: {v}");
    v
}

/// `GET /download/<id[0:3]>/<id>` on the download port at `addr`, with an optional `Range`
/// value: status, headers and body.
pub async fn download(addr: SocketAddr, id: &str, range: Option<String>) -> (u16, HeaderMap, Vec<u8>) {
    let mut req = client().get(format!("http://{addr}/download/{}/{id}", &id[..3]));
    if let Some(r) = range {
        req = req.insert_header(("Range", r));
    }
    let mut res = req.send().await.expect("download request sent");
    let body = res.body().limit(64 << 20).await.expect("download body");
    (res.status().as_u16(), res.headers().clone(), body.to_vec())
}

/// `<home>/repo/download/<id[0:3]>`: the directory of a task's cache files.
pub fn cache_dir(home: &Path, id: &str) -> PathBuf {
    home.join("repo").join("download").join(&id[..3])
}

/// The CDN data file of task `id` under `home`.
pub fn data_path(home: &Path, id: &str) -> PathBuf {
    cache_dir(home, id).join(id)
}
