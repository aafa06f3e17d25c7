//! Tasks and the CDN against the in-process origin.
//!
//! * `registration`: `/peer/registry` (JSON and form bodies, bad input → 400 with code 501,
//!   source errors → 607/608, a `Range` header), and the v1 task API;
//! * `cache_file`: the framed cache file, its `.md5` list and the download port, also while
//!   the CDN runs and for partial files left at start;
//! * `cache_reuse`: one source fetch per task however many register, a restart serving the
//!   cache without the source, revalidation with conditional GETs, and the CDN metrics;
//! * `failures`: an md5 mismatch and a body cut off fail the task, and it is fetched again
//!   from scratch;
//! * `undo`: a registration refused at a later step leaves no peer or task it created.

mod cache_file;
mod cache_reuse;
mod failures;
mod registration;
mod undo;
mod verify;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use testkit::protocol::is_task_id;
use testkit::{cache_dir, dfget_body, post_registration, TestServer};

const MIB: u64 = 1024 * 1024;
/// The piece size of every source up to 200 MiB.
const PIECE: u64 = 4 * MIB;
/// Payload bytes per piece: a piece is framed by a 4-byte header and a 1-byte trailer.
const PAYLOAD: u64 = PIECE - 5;

fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

/// A successful registration; returns the reply's `data`, checked to have the six keys of a
/// registry reply.
async fn register_ok(s: &TestServer, body: &Value) -> Value {
    let (status, v) = post_registration(s, body).await;
    assert_eq!(status, 200, "registration {body} → {v}");
    assert_eq!(v["code"], 200, "registration {body} → {v}");
    assert_eq!(v["msg"], "success", "{v}");
    let data = v["data"].as_object().unwrap_or_else(|| panic!("no data: {v}"));
    let keys: BTreeSet<&str> = data.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = ["taskId", "fileLength", "pieceSize", "cdnSource", "asSeed", "seedTaskID"].into();
    assert_eq!(keys, expected, "registry data keys: {v}");
    assert_eq!(data["cdnSource"], "supernode", "{v}");
    assert_eq!(data["asSeed"], false, "{v}");
    assert_eq!(data["seedTaskID"], "", "{v}");
    let id = data["taskId"].as_str().expect("taskId");
    assert!(is_task_id(id), "taskId {id:?} is not 64 hex");
    v["data"].clone()
}

/// Registers `url` as dfget would; returns the task ID.
async fn register_url(s: &TestServer, url: &str, cid: &str) -> String {
    let data = register_ok(s, &dfget_body(url, cid)).await;
    data["taskId"].as_str().unwrap().to_string()
}

/// `<cache dir>/<id><suffix>`: one of a task's cache files (`.tmp`, `.meta`, `.md5`).
fn suffixed(home: &Path, id: &str, suffix: &str) -> PathBuf {
    cache_dir(home, id).join(format!("{id}{suffix}"))
}

fn piece_count(len: u64, piece_size: u64) -> u64 {
    len.div_ceil(piece_size - 5).max(1)
}

const TASK_INFO_KEYS: [&str; 15] = [
    "ID",
    "cdnStatus",
    "fileLength",
    "httpFileLength",
    "pieceSize",
    "pieceTotal",
    "rawURL",
    "taskURL",
    "md5",
    "realMd5",
    "identifier",
    "headers",
    "asSeed",
    "paused",
    "errorMsg",
];

/// Every key of a TaskInfo is one of Go's keys or this project's `paused` and `errorMsg`.
fn assert_task_info_keys(v: &Value) {
    let obj = v.as_object().unwrap_or_else(|| panic!("TaskInfo not an object: {v}"));
    for k in obj.keys() {
        assert!(TASK_INFO_KEYS.contains(&k.as_str()), "unexpected TaskInfo key {k:?} in {v}");
    }
}

fn header_str(h: &awc::http::header::HeaderMap, name: &str) -> String {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}
