//! An in-process origin HTTP server for CDN tests.
//!
//! Files are registered by path, either as bytes or as deterministic generated content
//! (seed + length), so a 200 MiB source is never stored. Per path it counts requests,
//! requests that got a body (200/206) and body bytes actually handed to the HTTP layer
//! (counted as the body stream is polled). It sends `ETag` and `Last-Modified` and answers
//! conditional requests with 304, can demand an exact `Authorization` value (401 otherwise),
//! can cut a body off after N bytes (the stream errors, so the connection is dropped) or hold
//! it after N bytes until told to go on, can delay its response head or answer a fixed status,
//! and serves single `Range` requests with 206 (416 past the end).
//!
//! Stats are keyed by the request path without the query string, also for unknown paths (404).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::http::header::{self, HttpDate};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use md5::{Digest, Md5};

/// Body chunk size of the origin's streams.
const CHUNK: usize = 64 * 1024;

/// A file's bytes: stored, or generated from a seed (random access, never materialised).
///
/// Generated content is a 1 MiB pseudo-random table (from the seed) repeated, each 1 MiB block
/// rotated by its own pseudo-random amount: every read is a memcpy, which keeps 200 MiB cheap
/// even in debug builds, and no two pieces of a file look alike.
#[derive(Clone, Debug)]
pub enum Content {
    Bytes(Arc<Vec<u8>>),
    Generated { seed: u64, len: u64, table: Arc<Vec<u8>> },
}

const TABLE: u64 = 1 << 20;

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Content {
    pub fn generated(seed: u64, len: u64) -> Content {
        let mut table = Vec::with_capacity(TABLE as usize);
        for i in 0..TABLE / 8 {
            table.extend_from_slice(&mix(seed ^ mix(i)).to_le_bytes());
        }
        Content::Generated { seed, len, table: Arc::new(table) }
    }

    pub fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::Generated { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes at `offset..offset+buf.len()` (must lie inside the file).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) {
        assert!(offset + buf.len() as u64 <= self.len(), "read past the end of the content");
        match self {
            Content::Bytes(b) => {
                let start = offset as usize;
                buf.copy_from_slice(&b[start..start + buf.len()]);
            }
            Content::Generated { seed, table, .. } => {
                let mut pos = offset;
                let mut out = 0usize;
                while out < buf.len() {
                    let (block, within) = (pos / TABLE, pos % TABLE);
                    let shift = mix(seed.wrapping_add(block.wrapping_mul(0xD6E8_FEB8_6659_FD93))) % TABLE;
                    let idx = (within + shift) % TABLE;
                    let n = (TABLE - idx).min(TABLE - within).min((buf.len() - out) as u64) as usize;
                    buf[out..out + n].copy_from_slice(&table[idx as usize..idx as usize + n]);
                    out += n;
                    pos += n as u64;
                }
            }
        }
    }

    /// `len` bytes from `offset`.
    pub fn slice(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.read_at(offset, &mut v);
        v
    }

    /// The whole content (use for small files only).
    pub fn to_vec(&self) -> Vec<u8> {
        self.slice(0, self.len() as usize)
    }

    /// Lowercase hex md5 of the whole content.
    pub fn md5_hex(&self) -> String {
        let mut h = Md5::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = 0;
        while pos < self.len() {
            let n = (self.len() - pos).min(buf.len() as u64) as usize;
            self.read_at(pos, &mut buf[..n]);
            h.update(&buf[..n]);
            pos += n as u64;
        }
        hex(&h.finalize())
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the origin saw for one path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every request for the path (any method, any answer).
    pub requests: u64,
    /// Requests answered 200 or 206 (a body was started).
    pub body_requests: u64,
    /// Body bytes handed to the HTTP layer.
    pub body_bytes: u64,
    /// Requests answered 304.
    pub not_modified: u64,
    /// Requests that carried If-None-Match or If-Modified-Since.
    pub conditional: u64,
    /// `Authorization` values received, in order (requests without one are not listed).
    pub authorization: Vec<String>,
    /// `Range` values received, in order.
    pub ranges: Vec<String>,
}

#[derive(Default)]
struct Counters {
    requests: u64,
    body_requests: u64,
    body_bytes: Arc<AtomicU64>,
    not_modified: u64,
    conditional: u64,
    authorization: Vec<String>,
    ranges: Vec<String>,
}

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
    /// Bodies stop after this many bytes until `gate` opens.
    pause_after: Option<u64>,
    gate: Arc<AtomicBool>,
    /// Send ETag / Last-Modified and honour conditional requests.
    validators: bool,
    /// No Content-Length: a chunked body.
    chunked: bool,
}

#[derive(Default)]
struct Shared {
    files: Mutex<HashMap<String, FileEntry>>,
    counters: Mutex<HashMap<String, Counters>>,
}

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
        let shared = Arc::new(Shared::default());
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(serve)))
            .workers(2)
            .disable_signals()
            .shutdown_timeout(1)
            .bind(("127.0.0.1", 0))
            .expect("origin binds");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Origin { addr, shared, handle }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn put(&self, path: &str, content: Content) {
        let mut files = self.shared.files.lock().unwrap();
        let now = whole_seconds(SystemTime::now());
        let entry = match files.remove(path) {
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
                pause_after: None,
                gate: Arc::new(AtomicBool::new(true)),
                validators: true,
                chunked: false,
            },
        };
        let mut entry = entry;
        entry.etag = format!(
            "\"{:x}-{}-v{}\"",
            mix(path.len() as u64 ^ entry.content.len()),
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

    /// Changes the file's content: new ETag, later Last-Modified.
    pub fn replace(&self, path: &str, bytes: Vec<u8>) {
        assert!(self.shared.files.lock().unwrap().contains_key(path));
        self.put(path, Content::Bytes(Arc::new(bytes)));
    }

    pub fn replace_generated(&self, path: &str, seed: u64, len: u64) {
        assert!(self.shared.files.lock().unwrap().contains_key(path));
        self.put(path, Content::generated(seed, len));
    }

    /// Removes the file (later requests get 404).
    pub fn remove(&self, path: &str) {
        self.shared.files.lock().unwrap().remove(path);
    }

    /// The file's current content.
    pub fn content(&self, path: &str) -> Content {
        self.shared.files.lock().unwrap()[path].content.clone()
    }

    pub fn etag(&self, path: &str) -> String {
        self.shared.files.lock().unwrap()[path].etag.clone()
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

/// `bytes=a-b` / `bytes=a-` / `bytes=-n` → inclusive range; `Err(())` = unsatisfiable.
fn parse_range(value: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // multi-range: ignored, whole file
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || len == 0 {
            return Some(Err(()));
        }
        return Some(Ok((len.saturating_sub(n), len - 1)));
    }
    let start: u64 = a.parse().ok()?;
    let end: u64 = if b.is_empty() { u64::MAX } else { b.parse().ok()? };
    if end < start {
        return None;
    }
    if start >= len {
        return Some(Err(()));
    }
    Some(Ok((start, end.min(len - 1))))
}

fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_string();
    if_none_match.split(',').any(|t| t.trim() == "*" || strip(t) == strip(etag))
}

async fn serve(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let path = req.path().to_string();
    let header = |name: header::HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let inm = header(header::IF_NONE_MATCH);
    let ims = header(header::IF_MODIFIED_SINCE);
    let range = header(header::RANGE);
    let auth = header(header::AUTHORIZATION);
    let body_counter = {
        let mut counters = shared.counters.lock().unwrap();
        let c = counters.entry(path.clone()).or_default();
        c.requests += 1;
        if inm.is_some() || ims.is_some() {
            c.conditional += 1;
        }
        if let Some(a) = &auth {
            c.authorization.push(a.clone());
        }
        if let Some(r) = &range {
            c.ranges.push(r.clone());
        }
        c.body_bytes.clone()
    };
    let count = |f: &dyn Fn(&mut Counters)| {
        let mut counters = shared.counters.lock().unwrap();
        f(counters.get_mut(&path).expect("counted above"));
    };

    let entry = shared.files.lock().unwrap().get(&path).cloned();
    let Some(entry) = entry else {
        return HttpResponse::NotFound().content_type("text/plain").body("not found\n");
    };
    if let Some(d) = entry.delay {
        actix_web::rt::time::sleep(d).await;
    }
    if let Some(expected) = &entry.auth {
        if auth.as_deref() != Some(expected.as_str()) {
            return HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"origin\""))
                .finish();
        }
    }
    if let Some(status) = entry.status {
        return HttpResponse::build(StatusCode::from_u16(status).expect("valid status")).finish();
    }

    let last_modified = HttpDate::from(entry.last_modified).to_string();
    let not_modified = entry.validators
        && match (&inm, &ims) {
            (Some(inm), _) => etag_matches(inm, &entry.etag),
            (None, Some(ims)) => {
                ims.parse::<HttpDate>().map(|t| entry.last_modified <= SystemTime::from(t)).unwrap_or(false)
            }
            (None, None) => false,
        };
    if not_modified {
        count(&|c| c.not_modified += 1);
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, entry.etag.clone()))
            .insert_header((header::LAST_MODIFIED, last_modified))
            .finish();
    }

    let len = entry.content.len();
    let (status, start, end) = match range.as_deref().and_then(|r| parse_range(r, len)) {
        None => (StatusCode::OK, 0, len),
        Some(Ok((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        Some(Err(())) => {
            return HttpResponse::RangeNotSatisfiable()
                .insert_header((header::CONTENT_RANGE, format!("bytes */{len}")))
                .finish();
        }
    };
    let mut builder = HttpResponse::build(status);
    builder.content_type("application/octet-stream").insert_header((header::ACCEPT_RANGES, "bytes"));
    if entry.validators {
        builder.insert_header((header::ETAG, entry.etag.clone())).insert_header((header::LAST_MODIFIED, last_modified));
    }
    if status == StatusCode::PARTIAL_CONTENT {
        builder.insert_header((header::CONTENT_RANGE, format!("bytes {start}-{}/{len}", end - 1)));
    }
    if req.method() == actix_web::http::Method::HEAD {
        return builder.insert_header((header::CONTENT_LENGTH, end - start)).finish();
    }
    count(&|c| c.body_requests += 1);
    let state = BodyState {
        content: entry.content.clone(),
        pos: start,
        end,
        fail_at: entry.fail_after.map(|n| start + n),
        pause_at: entry.pause_after.map(|n| start + n),
        gate: entry.gate.clone(),
        counter: body_counter,
    };
    let stream = futures_util::stream::unfold(state, next_chunk);
    if entry.chunked {
        return builder.streaming(stream);
    }
    builder.body(actix_web::body::SizedStream::new(end - start, Box::pin(stream)))
}

/// Where a body stream is; it generates chunk by chunk and counts what it hands out.
struct BodyState {
    content: Content,
    pos: u64,
    end: u64,
    fail_at: Option<u64>,
    pause_at: Option<u64>,
    gate: Arc<AtomicBool>,
    counter: Arc<AtomicU64>,
}

async fn next_chunk(mut st: BodyState) -> Option<(Result<Bytes, std::io::Error>, BodyState)> {
    if st.pos >= st.end {
        return None;
    }
    if st.pause_at.is_some_and(|p| st.pos >= p) {
        while !st.gate.load(Ordering::SeqCst) {
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
        st.pause_at = None;
    }
    if st.fail_at.is_some_and(|f| st.pos >= f) {
        st.end = st.pos; // nothing after the error
        let err = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "origin told to fail mid-body");
        return Some((Err(err), st));
    }
    let limit = [st.fail_at, st.pause_at].into_iter().flatten().fold(st.end, u64::min);
    let n = (limit - st.pos).min(CHUNK as u64) as usize;
    let mut buf = vec![0u8; n];
    st.content.read_at(st.pos, &mut buf);
    st.pos += n as u64;
    st.counter.fetch_add(n as u64, Ordering::SeqCst);
    Some((Ok(Bytes::from(buf)), st))
}
