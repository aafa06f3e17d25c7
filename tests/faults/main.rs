//! Faults: the origin drops the connection mid-body, stalls, or never answers its head; the
//! cache quota is smaller than a file; the cache directory cannot be made; the disk fills up;
//! the supernode is killed with SIGKILL mid-CDN or while preheats run, and restarted on the
//! same home. Each time the task fails with a
//! reason, its clients are told (`/peer/task` answers 604 for a FAILED task, with the reason
//! in `msg`), nothing half-written is served, and the server keeps serving.
//!
//! * `origin`: the origin drops, stalls, or never answers its head;
//! * `cache`: a quota smaller than the file, a cache directory that cannot be made;
//! * `disk_full`: the home on a small filesystem that a download fills mid-run;
//! * `crash`: SIGKILL while preheats run and clients download; the clients finish at another
//!   supernode, the preheats end after the restart;
//! * `restart`: SIGKILL mid-CDN; finished files are kept, interrupted ones resume with a
//!   `Range` request while the source still has the same file, and are fetched again otherwise.

mod cache;
mod crash;
mod disk_full;
mod origin;
mod restart;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::origin::{salted_bytes, Content, Origin};
use testkit::protocol::url_task_id;
use testkit::{
    cache_dir, config_with, data_path, dfget_body, eventually, first_poll, get_json, task_info, wait_done,
    wait_success, ChildServer, Control,
};

const MIB: u64 = 1024 * 1024;
/// The piece size of every source up to 200 MiB.
const PIECE: u64 = 4 * MIB;
/// Payload bytes per piece: a piece is framed by a 4-byte header and a 1-byte trailer.
const PAYLOAD: u64 = PIECE - 5;

// The control API helpers work with the in-process server and the child process alike.

/// A successful registration of `url` for client `cid`; returns the task ID.
async fn register_ok(s: &impl Control, url: &str, cid: &str) -> String {
    let data = testkit::register(s, &dfget_body(url, cid)).await;
    let id = data["taskId"].as_str().expect("taskId").to_string();
    assert_eq!(id, url_task_id(url), "{data}");
    id
}

/// A FAILED task's client is told so: 604 with the reason in `msg`.
async fn assert_client_told_604(s: &impl Control, cid: &str, id: &str) {
    let v = first_poll(s, cid, id).await;
    assert_eq!(v["code"], 604, "/peer/task of a FAILED task answers 604: {v}");
    assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "604 without a reason: {v}");
}

fn tmp_path(home: &Path, id: &str) -> PathBuf {
    cache_dir(home, id).join(format!("{id}.tmp"))
}

/// The download port's answer for `id`: status and body.
async fn download(dl: SocketAddr, id: &str, range: Option<String>) -> (u16, Vec<u8>) {
    let (status, _, body) = testkit::download(dl, id, range).await;
    (status, body)
}

/// Piece `p` of `source` as the CDN frames it: a big-endian header `payload length |
/// pieceSize << 4`, the payload, 0x7F.
fn framed_piece(source: &Content, p: u64) -> Vec<u8> {
    let payload_len = (source.len() - p * PAYLOAD).min(PAYLOAD);
    let mut piece = Vec::with_capacity(payload_len as usize + 5);
    piece.extend_from_slice(&(payload_len as u32 | ((PIECE as u32) << 4)).to_be_bytes());
    piece.extend_from_slice(&source.slice(p * PAYLOAD, payload_len as usize));
    piece.push(0x7F);
    piece
}

/// Every piece of a SUCCESS task, read from the download port at `dl`, is byte-identical to
/// the source.
async fn assert_served_identical(dl: SocketAddr, id: &str, source: &Content) {
    let count = source.len().div_ceil(PAYLOAD).max(1);
    for p in 0..count {
        let range = format!("bytes={}-{}", p * PIECE, p * PIECE + PIECE - 1);
        let (status, body) = download(dl, id, Some(range.clone())).await;
        assert_eq!(status, 206, "piece {p} ({range}) of {id}");
        assert!(
            body == framed_piece(source, p),
            "piece {p} of {id} from the download port differs from the source ({} bytes)",
            body.len()
        );
    }
}

/// Files the CDN run left for `id`: neither the data file nor its temporary file.
fn no_cache_files(home: &Path, id: &str) -> bool {
    !data_path(home, id).exists() && !tmp_path(home, id).exists()
}

/// `POST /preheats` of a file: the preheat's ID.
async fn create_preheat(s: &impl Control, url: &str) -> String {
    let (status, v) = testkit::post_json(s, "/preheats", &serde_json::json!({"type": "file", "url": url})).await;
    assert_eq!(status, 200, "{v}");
    v["ID"].as_str().expect("ID").to_string()
}

/// Polls `GET /preheats/{id}` until SUCCESS or FAILED.
async fn wait_preheat(s: &impl Control, id: &str) -> serde_json::Value {
    testkit::poll_until(Duration::from_secs(30), &format!("preheat {id} finishes"), || async {
        let (_, v) = testkit::get_json(s, &format!("/preheats/{id}")).await;
        match v["status"].as_str() {
            Some("SUCCESS" | "FAILED") => Ok(v),
            _ => Err(v.to_string()),
        }
    })
    .await
}
