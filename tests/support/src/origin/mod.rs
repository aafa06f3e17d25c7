//! An in-process origin HTTP server: the source every CDN test fetches from.
//!
//! Files are registered by path, either as bytes or as deterministic generated content
//! (seed + length), so a 200 MiB source is never stored. Per path it counts requests,
//! requests that got a body (200/206) and body bytes actually handed to the HTTP layer
//! (counted as the body stream is polled). It sends `ETag` and `Last-Modified` and answers
//! conditional requests with 304, can demand an exact `Authorization` value (401 otherwise),
//! can cut a body off after N bytes (the stream errors, so the connection is dropped) or hold
//! it after N bytes until told to go on, can delay its response head, answer a fixed status or
//! redirect, and serves single `Range` requests with 206 (416 past the end) unless told not to.
//!
//! Stats are keyed by the request path without the query string, also for unknown paths (404).

mod content;
mod serve;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::web;

pub use content::{hex, salted_bytes, Content};

use crate::loopback::serve_on;

/// What the origin saw for one path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every request for the path (any method, any answer).
    pub requests: u64,
    /// Requests answered 200 or 206 (a body was started).
    pub body_requests: u64,
    /// Body bytes handed to the HTTP layer.
    pub body_bytes: u64,
    /// The same per request answered with a body, in order.
    pub bodies: Vec<u64>,
    /// Requests answered 304.
    pub not_modified: u64,
    /// Requests that carried If-None-Match or If-Modified-Since.
    pub conditional: u64,
    /// `Authorization` values received, in order (requests without one are not listed).
    pub authorization: Vec<String>,
    /// `Range` values received, in order.
    pub ranges: Vec<String>,
}

impl Stats {
    /// Asserts that a path first fetched with `first` (one request with a body) was then
    /// revalidated: one more request, conditional and answered 304, and no body bytes.
    pub fn assert_revalidated_by_one_304(&self, first: &Stats) {
        assert_eq!(self.requests, 2, "one more origin request: {self:?}");
        assert_eq!(self.conditional, 1, "it is conditional: {self:?}");
        assert_eq!(self.not_modified, 1, "answered 304: {self:?}");
        assert_eq!(self.body_requests, 1, "no new body: {self:?}");
        assert_eq!(self.body_bytes, first.body_bytes, "no body bytes: {self:?}");
    }
}

/// [`Stats`] as they are collected; body bytes are counted by the body streams.
#[derive(Default)]
struct Counters {
    requests: u64,
    body_requests: u64,
    body_bytes: Arc<AtomicU64>,
    bodies: Vec<Arc<AtomicU64>>,
    not_modified: u64,
    conditional: u64,
    authorization: Vec<String>,
    ranges: Vec<String>,
}

/// One path's file and how it is to be answered.
#[derive(Clone)]
struct FileEntry {
    content: Content,
    version: u64,
    etag: String,
    /// Whole seconds.
    last_modified: SystemTime,
    auth: Option<String>,
    fail_after: Option<u64>,
    delay: Option<Duration>,
    status: Option<u16>,
    /// Answer `302 Found` with this `Location` instead of the file.
    redirect: Option<String>,
    /// Bodies stop after this many bytes until `gate` opens.
    pause_after: Option<u64>,
    gate: Arc<AtomicBool>,
    /// Send ETag / Last-Modified and honour conditional requests.
    validators: bool,
    /// No Content-Length: a chunked body.
    chunked: bool,
    /// Answer `Range` requests with 206; otherwise ignore them and send the whole body.
    ranges: bool,
}

#[derive(Default)]
struct Shared {
    files: Mutex<HashMap<String, FileEntry>>,
    counters: Mutex<HashMap<String, Counters>>,
}

/// The running origin; it stops when dropped.
pub struct Origin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    handle: ServerHandle,
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
    UNIX_EPOCH + Duration::from_secs(secs)
}

impl Origin {
    /// Binds 127.0.0.1:0 and runs the server inside the current actix system.
    pub async fn start() -> Origin {
        Origin::start_on(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0))).await
    }

    /// [`Origin::start`] on `addr` (a testbed's origin host binds its own address).
    pub async fn start_on(addr: SocketAddr) -> Origin {
        let shared = Arc::new(Shared::default());
        let data = web::Data::from(shared.clone());
        let (addr, handle) = serve_on(addr, 2, move |app| {
            app.app_data(data.clone()).default_service(web::to(serve::serve));
        });
        Origin { addr, shared, handle }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<address>:<port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn put(&self, path: &str, content: Content) {
        let mut files = self.shared.files.lock().unwrap();
        let now = whole_seconds(SystemTime::now());
        let mut entry = match files.remove(path) {
            Some(mut old) => {
                // A new version: new ETag, and a Last-Modified strictly later than the old one.
                old.version += 1;
                old.last_modified = now.max(old.last_modified + Duration::from_secs(1));
                old.content = content;
                old
            }
            None => FileEntry {
                content,
                version: 1,
                etag: String::new(),
                // In the past, so If-Modified-Since with "now" is clearly not older.
                last_modified: now - Duration::from_secs(3600),
                auth: None,
                fail_after: None,
                delay: None,
                status: None,
                redirect: None,
                pause_after: None,
                gate: Arc::new(AtomicBool::new(true)),
                validators: true,
                chunked: false,
                ranges: true,
            },
        };
        entry.etag = format!(
            "\"{:x}-{}-v{}\"",
            content::mix(path.len() as u64 ^ entry.content.len()),
            entry.content.len(),
            entry.version
        );
        files.insert(path.to_string(), entry);
    }

    fn with_entry(&self, path: &str, f: impl FnOnce(&mut FileEntry)) {
        let mut files = self.shared.files.lock().unwrap();
        let entry = files.get_mut(path).unwrap_or_else(|| panic!("origin has no file {path}"));
        f(entry);
    }

    /// Serves `bytes` at `path`.
    pub fn add(&self, path: &str, bytes: Vec<u8>) {
        self.put(path, Content::Bytes(Arc::new(bytes)));
    }

    /// Serves `len` generated bytes (deterministic from `seed`) at `path`.
    pub fn add_generated(&self, path: &str, seed: u64, len: u64) {
        self.put(path, Content::generated(seed, len));
    }

    /// Answers every request for `path` with `302 Found` and `Location: <location>`.
    pub fn add_redirect(&self, path: &str, location: &str) {
        self.add(path, Vec::new());
        self.with_entry(path, |e| e.redirect = Some(location.to_string()));
    }

    /// Changes the file's content: new ETag, later Last-Modified.
    pub fn replace(&self, path: &str, bytes: Vec<u8>) {
        assert!(self.shared.files.lock().unwrap().contains_key(path));
        self.put(path, Content::Bytes(Arc::new(bytes)));
    }

    /// The file's current content.
    pub fn content(&self, path: &str) -> Content {
        self.shared.files.lock().unwrap()[path].content.clone()
    }

    /// Requests without exactly this `Authorization` value get 401.
    pub fn require_auth(&self, path: &str, value: &str) {
        self.with_entry(path, |e| e.auth = Some(value.to_string()));
    }

    /// Bodies of this path stop after `n` bytes with a stream error (connection dropped).
    pub fn fail_after(&self, path: &str, n: u64) {
        self.with_entry(path, |e| e.fail_after = Some(n));
    }

    pub fn stop_failing(&self, path: &str) {
        self.with_entry(path, |e| e.fail_after = None);
    }

    /// Bodies of this path send `n` bytes, then wait until [`Origin::resume`].
    pub fn pause_after(&self, path: &str, n: u64) {
        self.with_entry(path, |e| {
            e.pause_after = Some(n);
            e.gate = Arc::new(AtomicBool::new(false));
        });
    }

    /// Lets paused bodies of this path continue; later bodies are not paused.
    pub fn resume(&self, path: &str) {
        self.with_entry(path, |e| {
            e.pause_after = None;
            e.gate.store(true, Ordering::SeqCst);
        });
    }

    /// `false`: no ETag / Last-Modified, conditional headers ignored (always 200).
    pub fn set_validators(&self, path: &str, on: bool) {
        self.with_entry(path, |e| e.validators = on);
    }

    /// `true`: bodies are sent chunked, without Content-Length.
    pub fn set_chunked(&self, path: &str, on: bool) {
        self.with_entry(path, |e| e.chunked = on);
    }

    /// `false`: `Range` is ignored and the whole body sent with 200, as by a server without
    /// range support.
    pub fn set_ranges(&self, path: &str, on: bool) {
        self.with_entry(path, |e| e.ranges = on);
    }

    /// Delays the response head of this path.
    pub fn set_delay(&self, path: &str, delay: Duration) {
        self.with_entry(path, |e| e.delay = Some(delay));
    }

    /// Answers every request for this path with `status` and no body (`None`: normal again).
    pub fn set_status(&self, path: &str, status: Option<u16>) {
        self.with_entry(path, |e| e.status = status);
    }

    pub fn stats(&self, path: &str) -> Stats {
        let counters = self.shared.counters.lock().unwrap();
        match counters.get(path) {
            None => Stats::default(),
            Some(c) => Stats {
                requests: c.requests,
                body_requests: c.body_requests,
                body_bytes: c.body_bytes.load(Ordering::SeqCst),
                bodies: c.bodies.iter().map(|b| b.load(Ordering::SeqCst)).collect(),
                not_modified: c.not_modified,
                conditional: c.conditional,
                authorization: c.authorization.clone(),
                ranges: c.ranges.clone(),
            },
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        // The stop command is sent when `stop` is called; the returned future only waits.
        drop(self.handle.stop(false));
    }
}
