//! A scripted supernode for the crate's own tests.
//!
//! Registration and migration are decided by what supernodes answer, and a real one cannot be
//! made to answer 604 or 609 on cue, so these tests talk to a fake that replays a script: its
//! `/peer/registry` replies in turn, its `/peer/task` replies in turn (the last one again and
//! again), and it serves the pieces of a small file from its own port as CDN pieces. It records
//! every request, so a test can check where each report went.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

use crate::wire::{md5_hex, PIECE_TAIL};

/// Payload bytes per piece.
pub(crate) const PAYLOAD: usize = 16;
/// Wrapped piece size (payload and 5 framing bytes).
pub(crate) const PIECE_SIZE: u64 = PAYLOAD as u64 + 5;

/// The file the fake serves: `pieces` pieces of [`PAYLOAD`] bytes.
pub(crate) fn content(pieces: usize) -> Vec<u8> {
    (0..pieces * PAYLOAD).map(|i| b'a' + (i % 26) as u8).collect()
}

struct Script {
    registry: VecDeque<(u16, Value)>,
    polls: VecDeque<Value>,
    /// A scripted 600 is answered 602 until this many `/peer/piece/suc` reports came in.
    finish_after: usize,
    file: Vec<u8>,
    requests: Vec<String>,
}

/// A running fake supernode on 127.0.0.1 (its `/peer/task` script is set once its port is
/// known: the pieces it hands out name it).
pub(crate) struct FakeNode {
    pub(crate) addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    handle: ServerHandle,
}

/// The registration reply of a fake with task `task_id` and a file of `pieces` pieces.
pub(crate) fn accepted(task_id: &str, pieces: usize) -> (u16, Value) {
    let data =
        json!({"taskId": task_id, "fileLength": pieces * PAYLOAD, "pieceSize": PIECE_SIZE, "cdnSource": "supernode"});
    (200, json!({"code": 200, "msg": "success", "data": data}))
}

/// A ResultInfo reply with `code`.
pub(crate) fn code(code: i64) -> Value {
    json!({"code": code, "msg": format!("scripted {code}")})
}

/// The 600 reply for a file of `pieces` pieces.
pub(crate) fn finish(pieces: usize) -> Value {
    json!({"code": 600, "msg": "peer task end", "data": {"fileLength": pieces * PAYLOAD, "md5": md5_hex(&content(pieces))}})
}

impl FakeNode {
    /// Starts a fake serving a file of `pieces` pieces, answering registrations with `registry`.
    pub(crate) fn start(pieces: usize, registry: Vec<(u16, Value)>, finish_after: usize) -> FakeNode {
        let script = Arc::new(Mutex::new(Script {
            registry: registry.into(),
            polls: VecDeque::new(),
            finish_after,
            file: content(pieces),
            requests: Vec::new(),
        }));
        let data = web::Data::new(script.clone());
        let server = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(answer)))
            .workers(1)
            .disable_signals()
            .shutdown_timeout(0)
            .bind((Ipv4Addr::LOCALHOST, 0))
            .expect("the fake supernode binds");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        FakeNode { addr, script, handle }
    }

    /// Sets the `/peer/task` replies.
    pub(crate) fn script_polls(&self, polls: Vec<Value>) {
        self.script.lock().expect("script lock").polls = polls.into();
    }

    /// The request targets (path and query) that start with `prefix`, in order.
    pub(crate) fn requests(&self, prefix: &str) -> Vec<String> {
        let s = self.script.lock().expect("script lock");
        s.requests.iter().filter(|r| r.starts_with(prefix)).cloned().collect()
    }

    /// A 601 item for piece `n` served by this fake as the CDN.
    pub(crate) fn cdn_piece(&self, n: u64) -> Value {
        let start = n * PIECE_SIZE;
        json!({
            "range": format!("{start}-{}", start + PIECE_SIZE - 1), "pieceNum": n, "pieceSize": PIECE_SIZE,
            "pieceMd5": "", "cid": format!("cdnnode:127.0.0.1~{}", self.addr.port()), "peerIp": "127.0.0.1",
            "peerPort": self.addr.port(), "path": format!("/download/{n}"),
        })
    }

    pub(crate) async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// A 601 reply with `items`.
pub(crate) fn hand_out(items: Vec<Value>) -> Value {
    json!({"code": 601, "msg": "peer task go on", "data": items})
}

async fn answer(req: HttpRequest, script: web::Data<Arc<Mutex<Script>>>) -> HttpResponse {
    let target = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let Ok(mut s) = script.lock() else { return HttpResponse::InternalServerError().finish() };
    s.requests.push(target.clone());
    let path = req.path();
    let (status, body) = if path == "/peer/registry" {
        let next = s.registry.front().cloned().unwrap_or((500, code(500)));
        if s.registry.len() > 1 {
            s.registry.pop_front();
        }
        next
    } else if path == "/peer/task" {
        let next = s.polls.front().cloned().unwrap_or_else(|| code(502));
        let sucs = s.requests.iter().filter(|r| r.starts_with("/peer/piece/suc")).count();
        if next["code"] == 600 && sucs < s.finish_after {
            (200, code(602))
        } else {
            if s.polls.len() > 1 {
                s.polls.pop_front();
            }
            (200, next)
        }
    } else if path == "/peer/piece/suc" {
        (200, code(611))
    } else if path == "/task/metrics" {
        (200, code(1))
    } else if let Some(n) = path.strip_prefix("/download/").and_then(|n| n.parse::<usize>().ok()) {
        let Some(payload) = s.file.chunks(PAYLOAD).nth(n) else { return HttpResponse::RangeNotSatisfiable().finish() };
        let header = (payload.len() as u32) | ((PIECE_SIZE as u32) << 4);
        let mut body = header.to_be_bytes().to_vec();
        body.extend_from_slice(payload);
        body.push(PIECE_TAIL);
        return HttpResponse::PartialContent().body(body);
    } else {
        (200, Value::Null)
    };
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type("application/json")
        .body(body.to_string())
}

/// A directory under the system's temporary directory, removed when dropped.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("dfget-sim-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
