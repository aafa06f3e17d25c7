//! A dfget 1.0.6-compatible peer for tests and benchmarks.
//!
//! [`Peer`] (also exported as [`DfgetSim`]) does on the wire what one run of the stock dfget
//! 1.0.6 client does (PROTOCOL.md §3.0, §7.5, and `shared/conformance/dfget_wire.py`, which was
//! checked against the real binary):
//!
//! * an uploader (an actix-web server on `<ip>:<port>`) that serves the pieces this peer holds at
//!   `GET /peer/file/<taskFileName>` exactly like dfget's uploader (§5.8);
//! * `POST /peer/registry` with dfget's keys, key order and escaping (§3.1);
//! * the `/peer/task` loop (§3.2, §7.5): `700/502` first, `701/503` after a success, `701/500` after
//!   a failure, dfget's merging of successes and its 602 back-off;
//! * one piece download per handed-out piece (`Range`, `pieceNum`, `pieceSize`), md5 check of the
//!   wrapped piece, `/peer/piece/error` reports, framing stripped, payload written at
//!   `pieceNum·(pieceSize-5)`, `/peer/piece/suc` (3 attempts);
//! * on 600 the whole-file md5 check, then `POST /task/metrics`.
//!
//! It never downloads from the origin itself (dfget `--notbs`), and it is meant for loopback use
//! only: its uploader binds a loopback address and it fetches pieces from loopback sources only.
//! Everything runs on the caller's actix/tokio runtime (the futures are `!Send`: use them inside
//! `#[actix_web::test]`, `actix_rt::System` or a tokio `LocalSet`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use md5::{Digest, Md5};
use rand::Rng;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

/// The client version this peer claims to be.
pub const DFGET_VERSION: &str = "1.0.6";
/// 4-byte header + 1-byte trailer around every piece payload (§5.4).
pub const PIECE_META: u64 = 5;
/// The trailer byte of a wrapped piece.
pub const PIECE_TAIL: u8 = 0x7F;
/// Prefix of the uploader path (§2.4).
pub const PEER_PATH_PREFIX: &str = "/peer/file/";
/// Prefix of the supernode's client id (§2.5).
pub const SUPER_CID_PREFIX: &str = "cdnnode:";
/// dfget's minimum rate, used for its piece and task timeouts (§1.8).
pub const DEFAULT_MIN_RATE: u64 = 64 * 1024;

// ResultInfo codes (§1.7) and client codes (§3.2).
const CODE_SUCCESS: i64 = 200;
const PEER_FINISH: i64 = 600;
const PEER_CONTINUE: i64 = 601;
const PEER_WAIT: i64 = 602;
const PEER_LIMITED: i64 = 603;
const PIECE_REPORT_OK: i64 = 611;
/// `/peer/service/down` success code (§3.4).
pub const PEER_DOWN_OK: i64 = 612;
const RESULT_FAIL: u32 = 500;
const RESULT_SUC: u32 = 501;
const RESULT_INVALID: u32 = 502;
const RESULT_SEMISUC: u32 = 503;
const STATUS_START: u32 = 700;
const STATUS_RUNNING: u32 = 701;

// ---------------------------------------------------------------------------------------------
// configuration

/// What one simulated dfget run does.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// Supernode control address, `host:port` (`127.0.0.1:8002`); `:8002` is added when missing.
    pub node: String,
    /// This peer's IP: registered as `ip`, part of the cid, the uploader's bind address. Loopback.
    pub ip: Ipv4Addr,
    /// Uploader port; 0 = pick a free one in dfget's 15000–65000 range.
    pub port: u16,
    /// URL to download (`rawUrl` and `taskUrl`).
    pub url: String,
    /// Output file; also the uploader's data file (dfget's `.service` file).
    pub output: PathBuf,
    /// `--md5`: expected md5 of the file (also the task identity, §2.2).
    pub md5: Option<String>,
    /// `--identifier` (sent only when there is no md5).
    pub identifier: Option<String>,
    /// `--header "K: V"` entries (sent in the registration, §3.1).
    pub headers: Vec<String>,
    /// `--callsystem`.
    pub callsystem: Option<String>,
    /// Fault: the uploader serves every piece with one flipped payload byte (same length).
    pub corrupt_uploads: bool,
    /// Most pieces fetched at once. dfget starts one download per handed-out piece (the server's
    /// `peerDownLimit` bounds them); the default 16 never binds with a compliant server.
    pub piece_concurrency: usize,
    /// Whole-download timeout; `None` = dfget's `fileLength / 64 KiB + 10 s` (5 min if unknown).
    pub download_timeout: Option<Duration>,
    /// One piece download; `None` = dfget's `pieceSize / 64 KiB + 10 s`.
    pub piece_timeout: Option<Duration>,
    /// Control-plane request timeout (dfget: 5 s).
    pub control_timeout: Duration,
    /// Extra pause after each fetched piece before it is reported (a slow peer; default none).
    pub piece_delay: Duration,
    /// Host name sent in the registration; `None` = this host's name.
    pub host_name: Option<String>,
}

impl PeerConfig {
    /// A loopback peer (`127.0.0.1`, uploader on a free port) downloading `url` to `output`.
    pub fn new(node: impl Into<String>, url: impl Into<String>, output: impl Into<PathBuf>) -> Self {
        PeerConfig {
            node: node.into(),
            ip: Ipv4Addr::LOCALHOST,
            port: 0,
            url: url.into(),
            output: output.into(),
            md5: None,
            identifier: None,
            headers: Vec::new(),
            callsystem: None,
            corrupt_uploads: false,
            piece_concurrency: 16,
            download_timeout: None,
            piece_timeout: None,
            control_timeout: Duration::from_secs(5),
            piece_delay: Duration::ZERO,
            host_name: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// errors

/// Why a run (or one call) failed.
#[derive(Debug, Clone, PartialEq)]
pub enum SimError {
    /// Bad configuration (not loopback, empty url, ...).
    Config(String),
    /// Local file or socket trouble.
    Io(String),
    /// The registration was refused: HTTP status, ResultInfo code (if any), message.
    Register { http_status: u16, code: Option<i64>, msg: String },
    /// A control request failed on the wire (connect, timeout, non-200 HTTP, not JSON).
    Transport(String),
    /// `/peer/task` answered a code dfget does not continue on (dfget migrates, then fails).
    Poll { code: i64, msg: String },
    /// The server broke the protocol in a way dfget cannot go on with.
    Protocol(String),
    /// The whole file's md5 differs from the expected one.
    Md5Mismatch { real: String, expected: String },
    /// The download did not finish in time.
    Timeout(Duration),
    /// `download`/`service_down` before a registration.
    NotRegistered,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Config(m) => write!(f, "config: {m}"),
            SimError::Io(m) => write!(f, "io: {m}"),
            SimError::Register { http_status, code, msg } => {
                write!(f, "registration refused: HTTP {http_status}, code {code:?}: {msg}")
            }
            SimError::Transport(m) => write!(f, "transport: {m}"),
            SimError::Poll { code, msg } => write!(f, "/peer/task answered {code}: {msg}"),
            SimError::Protocol(m) => write!(f, "protocol: {m}"),
            SimError::Md5Mismatch { real, expected } => {
                write!(f, "Md5NotMatch, real:{real} expect:{expected}")
            }
            SimError::Timeout(d) => write!(f, "download timeout ({:.3}s)", d.as_secs_f64()),
            SimError::NotRegistered => write!(f, "not registered"),
        }
    }
}

impl std::error::Error for SimError {}

fn io_err(what: &str, e: impl fmt::Display) -> SimError {
    SimError::Io(format!("{what}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// statistics

#[derive(Default)]
struct Stats {
    pieces_from_supernode: AtomicU64,
    pieces_from_peers: AtomicU64,
    piece_failures: AtomicU64,
    md5_errors_reported: AtomicU64,
    not_exist_reported: AtomicU64,
    uploads_served: AtomicU64,
    upload_bytes: AtomicU64,
    polls: AtomicU64,
    suc_reports_ok: AtomicU64,
    suc_reports_failed: AtomicU64,
    stalls: AtomicU64,
    bad_replies: AtomicU64,
    last_upload_ms: AtomicU64,
    codes: Mutex<BTreeMap<i64, u64>>,
    last_suc_error: Mutex<String>,
    piece_errors: Mutex<Vec<String>>,
}

/// Live counters of a peer (readable while it downloads).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StatsSnapshot {
    /// Pieces fetched from the supernode (source cid starts with `cdnnode:`).
    pub pieces_from_supernode: u64,
    /// Pieces fetched from other peers.
    pub pieces_from_peers: u64,
    /// Piece downloads that failed (transport, status, md5, framing).
    pub piece_failures: u64,
    /// `FILE_MD5_NOT_MATCH` reports sent.
    pub md5_errors_reported: u64,
    /// `FILE_NOT_EXIST` reports sent.
    pub not_exist_reported: u64,
    /// Pieces this peer's uploader served.
    pub uploads_served: u64,
    /// Bytes this peer's uploader served.
    pub upload_bytes: u64,
    /// `/peer/task` requests sent.
    pub polls: u64,
    /// `/peer/task` reply codes and how often each came.
    pub poll_codes: BTreeMap<i64, u64>,
    /// `/peer/piece/suc` reports answered `{"code":611}`.
    pub suc_reports_ok: u64,
    /// `/peer/piece/suc` reports that failed 3 attempts.
    pub suc_reports_failed: u64,
    /// Last reason a `/peer/piece/suc` attempt failed.
    pub last_suc_error: String,
    /// Why piece downloads failed (the first 20).
    pub piece_errors: Vec<String>,
    /// Times nothing ran and nothing was queued for 4 s (dfget would hang there).
    pub stalls: u64,
    /// 601 replies whose data could not be decoded.
    pub bad_replies: u64,
}

impl Stats {
    fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            pieces_from_supernode: g(&self.pieces_from_supernode),
            pieces_from_peers: g(&self.pieces_from_peers),
            piece_failures: g(&self.piece_failures),
            md5_errors_reported: g(&self.md5_errors_reported),
            not_exist_reported: g(&self.not_exist_reported),
            uploads_served: g(&self.uploads_served),
            upload_bytes: g(&self.upload_bytes),
            polls: g(&self.polls),
            poll_codes: self.codes.lock().map(|c| c.clone()).unwrap_or_default(),
            suc_reports_ok: g(&self.suc_reports_ok),
            suc_reports_failed: g(&self.suc_reports_failed),
            last_suc_error: self.last_suc_error.lock().map(|s| s.clone()).unwrap_or_default(),
            piece_errors: self.piece_errors.lock().map(|s| s.clone()).unwrap_or_default(),
            stalls: g(&self.stalls),
            bad_replies: g(&self.bad_replies),
        }
    }

    fn inc(a: &AtomicU64) {
        a.fetch_add(1, Ordering::Relaxed);
    }

    fn piece_error(&self, why: String) {
        if let Ok(mut v) = self.piece_errors.lock() {
            if v.len() < 20 {
                v.push(why);
            }
        }
    }
}

/// The registration reply (§3.1).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Registration {
    pub task_id: String,
    /// Source length as probed (`-1` unknown).
    pub file_length: i64,
    pub piece_size: u64,
    pub cdn_source: String,
}

/// `data` of the 600 reply.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FinishData {
    pub file_length: i64,
    pub md5: String,
}

/// What one successful run did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub cid: String,
    pub task_id: String,
    pub output: String,
    /// md5 of the output file.
    pub md5: String,
    /// Source length from the registration.
    pub file_length: i64,
    pub piece_size: u64,
    pub finish: Option<FinishData>,
    pub duration_secs: f64,
    /// Counters at the end of the download (`uploads_served` keeps growing afterwards: see
    /// [`Peer::stats`]).
    #[serde(flatten)]
    pub stats: StatsSnapshot,
}

// ---------------------------------------------------------------------------------------------
// identities

static LAST_SIGN_MS: AtomicU64 = AtomicU64::new(0);

/// `<pid>-<unix seconds with 3 decimals>`, unique per instance within this process (§2.4).
fn new_sign() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let mut prev = LAST_SIGN_MS.load(Ordering::Relaxed);
    let ms = loop {
        let ms = now.max(prev + 1);
        match LAST_SIGN_MS.compare_exchange(prev, ms, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break ms,
            Err(p) => prev = p,
        }
    };
    format!("{}-{}.{:03}", std::process::id(), ms / 1000, ms % 1000)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Go's `encoding/json` escapes `<`, `>`, `&`, U+2028 and U+2029 (HTML-safe); these characters
/// only occur inside strings, so replacing them in the encoded text is exact.
fn go_json<T: Serialize>(v: &T) -> Result<String, SimError> {
    let s = serde_json::to_string(v).map_err(|e| SimError::Config(format!("json: {e}")))?;
    Ok(s.replace('&', "\\u0026")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029"))
}

/// Key lookup like Go's `encoding/json`: exact spelling first, then case-insensitive.
fn get_ci<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    if let Some(v) = map.get(key) {
        return Some(v);
    }
    map.iter().filter(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v).next_back()
}

fn get_str(obj: &Value, key: &str) -> Option<String> {
    match get_ci(obj, key) {
        None | Some(Value::Null) => Some(String::new()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => None,
    }
}

fn get_int(obj: &Value, key: &str) -> Option<i64> {
    match get_ci(obj, key) {
        None | Some(Value::Null) => Some(0),
        Some(v) => v.as_i64(),
    }
}

fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.parse::<IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

fn split_node(node: &str) -> (String, String) {
    match node.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !p.is_empty() && !h.ends_with(':') => (h.to_string(), node.to_string()),
        _ => (node.to_string(), format!("{node}:8002")),
    }
}

/// Lowercase hex md5 of `data`.
pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// md5 of a whole file, read in 1 MiB blocks.
pub fn md5_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = File::open(path)?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Go's `strconv.Atoi` for the uploader's parameters (optional sign, decimal digits).
fn go_atoi(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.ParseInt: parsing {s:?}: invalid syntax"));
    }
    s.parse::<i64>().map_err(|_| format!("strconv.ParseInt: parsing {s:?}: value out of range"))
}

/// Number of pieces of a source of `len` bytes (§5.2); `None` when the length is unknown.
pub fn piece_count(len: i64, piece_size: u64) -> Option<u64> {
    if len < 0 || piece_size <= PIECE_META {
        return None;
    }
    if len == 0 {
        return Some(1);
    }
    Some((len as u64).div_ceil(piece_size - PIECE_META))
}

// ---------------------------------------------------------------------------------------------
// the uploader (§5.8)

struct UploaderState {
    task_file_name: String,
    data_file: PathBuf,
    corrupt: bool,
    stats: Arc<Stats>,
}

struct Uploader {
    handle: ServerHandle,
    port: u16,
    join: Option<JoinHandle<std::io::Result<()>>>,
}

fn text(status: actix_web::http::StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status).content_type("text/plain; charset=utf-8").body(body)
}

fn header_str<'a>(req: &'a HttpRequest, name: &str) -> &'a str {
    req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Parses dfget's uploader parameters: `(pieceNum, pieceSize, start, length)`.
fn upload_params(req: &HttpRequest) -> Result<(i64, i64, i64, i64), String> {
    let piece_num = go_atoi(header_str(req, "pieceNum"))?;
    let piece_size = go_atoi(header_str(req, "pieceSize"))?;
    let range = header_str(req, "Range");
    let parts: Vec<&str> = range.split('=').collect();
    if parts.len() != 2 {
        return Err(format!("invalid range: {range}"));
    }
    let r = parts[1];
    let ends: Vec<&str> = r.split('-').collect();
    if ends.len() != 2 {
        return Err(format!("invalid range: {r}"));
    }
    let start = go_atoi(ends[0])?;
    let end = go_atoi(ends[1])?;
    if end <= start {
        return Err(format!("invalid range: {r}"));
    }
    let length = end.checked_sub(start).and_then(|l| l.checked_add(1)).ok_or_else(|| format!("invalid range: {r}"))?;
    Ok((piece_num, piece_size, start, length))
}

async fn upload(req: HttpRequest, name: web::Path<String>, st: web::Data<UploaderState>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let (piece_num, piece_size, start, length) = match upload_params(&req) {
        Ok(p) => p,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    if name.as_str() != st.task_file_name {
        return text(StatusCode::INTERNAL_SERVER_ERROR, format!("failed to get taskPath: {name}\n"));
    }
    let need_pad = header_str(&req, "cdnSource") != "source";
    let pad: i64 = if need_pad { PIECE_META as i64 } else { 0 };
    let path = st.data_file.clone();
    let read = web::block(move || -> std::io::Result<Option<(i64, Vec<u8>)>> {
        let f = File::open(&path)?;
        let size = f.metadata()?.len() as i64;
        let start = start.saturating_sub(piece_num.saturating_mul(pad));
        if length < pad || start < 0 || (start >= size && !need_pad) {
            return Ok(None);
        }
        let mut length = length;
        if start.saturating_add(length - pad) > size {
            length = size - start + pad;
            if size == 0 {
                length = pad;
            }
        }
        let read_len = length - pad;
        if read_len <= 0 {
            return Ok(Some((read_len, Vec::new())));
        }
        let mut data = vec![0u8; read_len as usize];
        let mut got = 0usize;
        while got < data.len() {
            let n = f.read_at(&mut data[got..], (start as u64) + got as u64)?;
            if n == 0 {
                break; // short file: the rest stays zero, like dfget's padding
            }
            got += n;
        }
        Ok(Some((read_len, data)))
    })
    .await;
    let (read_len, mut data) = match read {
        Ok(Ok(Some(x))) => x,
        Ok(Ok(None)) => return text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n".into()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return text(StatusCode::NOT_FOUND, format!("{e}\n")),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return text(StatusCode::FORBIDDEN, format!("{e}\n"))
        }
        Ok(Err(e)) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    };
    if st.corrupt && !data.is_empty() {
        let i = data.len() / 2;
        data[i] ^= 0xFF;
    }
    let body = if need_pad {
        let header = ((read_len | (piece_size << 4)) & 0xFFFF_FFFF) as u32;
        let mut b = Vec::with_capacity(data.len() + PIECE_META as usize);
        b.extend_from_slice(&header.to_be_bytes());
        b.extend_from_slice(&data);
        b.push(PIECE_TAIL);
        b
    } else {
        data
    };
    Stats::inc(&st.stats.uploads_served);
    st.stats.upload_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    st.stats.last_upload_ms.store(now, Ordering::Relaxed);
    HttpResponse::PartialContent().content_type("application/octet-stream").body(body)
}

async fn server_ping() -> HttpResponse {
    HttpResponse::Ok().body("success")
}

async fn check(name: web::Path<String>) -> HttpResponse {
    HttpResponse::Ok().body(format!("{name}@{DFGET_VERSION}"))
}

async fn rate(req: HttpRequest) -> HttpResponse {
    let rl = header_str(&req, "rateLimit").to_string();
    match go_atoi(&rl) {
        Ok(_) => HttpResponse::Ok().body(rl),
        Err(e) => text(actix_web::http::StatusCode::BAD_REQUEST, e),
    }
}

async fn client_finish(req: HttpRequest) -> HttpResponse {
    let q: HashMap<String, String> = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let ok = ["taskFileName", "taskID", "cid"].iter().all(|k| q.get(*k).is_some_and(|v| !v.is_empty()));
    if ok {
        HttpResponse::Ok().body("success")
    } else {
        HttpResponse::BadRequest().body("invalid params")
    }
}

/// Binds `ip:port`, or for port 0 a free port within dfget's 15000–65000.
fn bind_uploader(ip: Ipv4Addr, port: u16) -> Result<TcpListener, SimError> {
    if port != 0 {
        return TcpListener::bind((ip, port)).map_err(|e| io_err(&format!("uploader bind {ip}:{port}"), e));
    }
    let mut last = String::new();
    for attempt in 0..64 {
        let try_port = if attempt == 0 { 0 } else { rand::thread_rng().gen_range(15000..=65000) };
        match TcpListener::bind((ip, try_port)) {
            Ok(l) => {
                let p = l.local_addr().map(|a| a.port()).unwrap_or(0);
                if (15000..=65000).contains(&p) {
                    return Ok(l);
                }
                last = format!("port {p} outside 15000-65000");
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(SimError::Io(format!("uploader: no free port in 15000-65000 on {ip}: {last}")))
}

// ---------------------------------------------------------------------------------------------
// the peer

/// One simulated dfget run (its uploader included).
pub struct Peer {
    config: PeerConfig,
    sign: String,
    cid: String,
    task_file_name: String,
    super_node_host: String,
    node: String,
    stats: Arc<Stats>,
    uploader: Mutex<Option<Uploader>>,
    registration: Mutex<Option<Registration>>,
    metrics_sent: AtomicBool,
}

/// The name the brief and the docs use for [`Peer`].
pub type DfgetSim = Peer;

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer").field("cid", &self.cid).field("node", &self.node).finish()
    }
}

/// One item of the poll queue (dfget's `Piece` queue item).
#[derive(Debug, Clone)]
struct Item {
    dst_cid: String,
    range: String,
    result: u32,
    status: u32,
}

impl Item {
    fn start() -> Self {
        Item { dst_cid: String::new(), range: String::new(), result: RESULT_INVALID, status: STATUS_START }
    }
}

/// A `/peer/task` 601 data item.
#[derive(Debug, Clone)]
struct PieceTask {
    range: String,
    piece_num: u64,
    piece_size: u64,
    piece_md5: String,
    cid: String,
    peer_ip: String,
    peer_port: u16,
    path: String,
}

struct Reply {
    code: i64,
    msg: String,
    data: Option<Value>,
}

/// Messages from piece tasks to the poll loop.
enum Event {
    Outcome(Item),
    Fatal(SimError),
}

/// What the piece tasks share.
struct Shared {
    node: String,
    cid: String,
    task_id: String,
    cdn_source: String,
    file: Arc<File>,
    ctl: awc::Client,
    pieces: awc::Client,
    stats: Arc<Stats>,
    tx: mpsc::UnboundedSender<Event>,
    notify: mpsc::UnboundedSender<()>,
    sem: Semaphore,
    piece_timeout: Option<Duration>,
    control_timeout: Duration,
    piece_delay: Duration,
    file_length: i64,
    held: std::cell::RefCell<HashSet<u64>>,
}

/// Aborts spawned tasks when dropped (error, timeout); the success path drains them first.
#[derive(Default)]
struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    fn push(&mut self, h: JoinHandle<()>) {
        self.0.retain(|h| !h.is_finished());
        self.0.push(h);
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

impl Peer {
    /// Checks the configuration and fixes this run's identity (sign, cid, task file name).
    pub fn new(config: PeerConfig) -> Result<Peer, SimError> {
        if !config.ip.is_loopback() {
            return Err(SimError::Config(format!("ip {} is not a loopback address", config.ip)));
        }
        if config.url.is_empty() {
            return Err(SimError::Config("url: empty".into()));
        }
        let (host, node) = split_node(config.node.trim());
        if !is_loopback_host(&host) {
            return Err(SimError::Config(format!("node {host} is not a loopback address")));
        }
        let base = config
            .output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| SimError::Config(format!("output {:?} has no file name", config.output)))?;
        let sign = new_sign();
        Ok(Peer {
            cid: format!("{}-{sign}", config.ip),
            task_file_name: format!("{base}-{sign}"),
            sign,
            super_node_host: host,
            node,
            stats: Arc::new(Stats::default()),
            uploader: Mutex::new(None),
            registration: Mutex::new(None),
            metrics_sent: AtomicBool::new(false),
            config,
        })
    }

    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// `<pid>-<secs.millis>`.
    pub fn sign(&self) -> &str {
        &self.sign
    }

    /// `<ip>-<sign>`.
    pub fn cid(&self) -> &str {
        &self.cid
    }

    /// `<output basename>-<sign>`.
    pub fn task_file_name(&self) -> &str {
        &self.task_file_name
    }

    /// The registered uploader path `/peer/file/<taskFileName>`.
    pub fn path(&self) -> String {
        format!("{PEER_PATH_PREFIX}{}", self.task_file_name)
    }

    /// The registration reply, once registered.
    pub fn registration(&self) -> Option<Registration> {
        self.registration.lock().ok().and_then(|r| r.clone())
    }

    /// The task id, once registered.
    pub fn task_id(&self) -> Option<String> {
        self.registration().map(|r| r.task_id)
    }

    /// Live counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Pieces served by the uploader so far.
    pub fn uploads_served(&self) -> u64 {
        self.stats.uploads_served.load(Ordering::Relaxed)
    }

    /// Milliseconds since the epoch of the last piece served (0 = none yet).
    pub fn last_upload_ms(&self) -> u64 {
        self.stats.last_upload_ms.load(Ordering::Relaxed)
    }

    /// The uploader's port, if it runs.
    pub fn uploader_port(&self) -> Option<u16> {
        self.uploader.lock().ok().and_then(|u| u.as_ref().map(|u| u.port))
    }

    /// Starts the uploader (idempotent) and returns its port. Call inside an actix system.
    pub fn start_uploader(&self) -> Result<u16, SimError> {
        let mut guard = self.uploader.lock().map_err(|_| SimError::Io("uploader lock poisoned".into()))?;
        if let Some(u) = guard.as_ref() {
            return Ok(u.port);
        }
        let listener = bind_uploader(self.config.ip, self.config.port)?;
        listener.set_nonblocking(true).map_err(|e| io_err("uploader socket", e))?;
        let port = listener.local_addr().map_err(|e| io_err("uploader address", e))?.port();
        let state = web::Data::new(UploaderState {
            task_file_name: self.task_file_name.clone(),
            data_file: self.config.output.clone(),
            corrupt: self.config.corrupt_uploads,
            stats: self.stats.clone(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/peer/file/{name}", web::get().to(upload))
                .route("/server/ping", web::get().to(server_ping))
                .route("/check/{name}", web::get().to(check))
                .route("/rate/{name}", web::get().to(rate))
                .route("/client/finish", web::get().to(client_finish))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .map_err(|e| io_err("uploader listen", e))?
        .run();
        let handle = server.handle();
        let join = actix_rt::spawn(server);
        *guard = Some(Uploader { handle, port, join: Some(join) });
        Ok(port)
    }

    /// Stops the uploader at once (open connections are dropped): a dfget uploader dying.
    /// The supernode is not told (see [`Peer::service_down`]).
    pub async fn stop_uploader(&self) {
        let up = self.uploader.lock().ok().and_then(|mut u| u.take());
        if let Some(mut u) = up {
            u.handle.stop(false).await;
            if let Some(j) = u.join.take() {
                let _ = tokio::time::timeout(Duration::from_secs(5), j).await;
            }
        }
    }

    fn control_client(&self) -> awc::Client {
        awc::Client::builder()
            .no_default_headers()
            .timeout(self.config.control_timeout)
            .connector(awc::Connector::new().timeout(Duration::from_secs(2)).conn_keep_alive(Duration::from_secs(1)))
            .finish()
    }

    async fn control_get(&self, ctl: &awc::Client, target: &str) -> Result<(u16, Bytes), SimError> {
        control_get(ctl, &self.node, target, self.config.control_timeout).await
    }

    /// `POST /peer/registry` as dfget sends it (starts the uploader first if needed).
    pub async fn register(&self) -> Result<Registration, SimError> {
        let port = self.start_uploader()?;
        let ctl = self.control_client();
        self.register_with(&ctl, port).await
    }

    async fn register_with(&self, ctl: &awc::Client, port: u16) -> Result<Registration, SimError> {
        #[derive(Serialize)]
        struct Req<'a> {
            #[serde(rename = "superNodeIp")]
            super_node_ip: &'a str,
            #[serde(rename = "rawUrl")]
            raw_url: &'a str,
            #[serde(rename = "taskUrl")]
            task_url: &'a str,
            cid: &'a str,
            ip: String,
            #[serde(rename = "hostName")]
            host_name: String,
            port: u16,
            path: String,
            version: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            md5: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            identifier: Option<&'a str>,
            #[serde(rename = "callSystem", skip_serializing_if = "Option::is_none")]
            call_system: Option<&'a str>,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            headers: &'a Vec<String>,
            pattern: &'static str,
        }
        let c = &self.config;
        let md5 = c.md5.as_deref().filter(|s| !s.is_empty());
        let req = Req {
            super_node_ip: &self.super_node_host,
            raw_url: &c.url,
            task_url: &c.url,
            cid: &self.cid,
            ip: c.ip.to_string(),
            host_name: c.host_name.clone().unwrap_or_else(host_name),
            port,
            path: self.path(),
            version: DFGET_VERSION,
            md5,
            identifier: if md5.is_none() { c.identifier.as_deref().filter(|s| !s.is_empty()) } else { None },
            call_system: c.callsystem.as_deref().filter(|s| !s.is_empty()),
            headers: &c.headers,
            pattern: "p2p",
        };
        let body = go_json(&req)?;
        let url = format!("http://{}/peer/registry", self.node);
        let send = || {
            ctl.post(url.as_str())
                .no_decompress()
                .insert_header(("User-Agent", "fasthttp"))
                .insert_header(("Content-Type", "application/json;charset=utf-8"))
                .timeout(c.control_timeout)
                .send_body(body.clone())
        };
        let (status, bytes) = read_reply(send, c.control_timeout).await?;
        if status != 200 {
            let v: Option<Value> = serde_json::from_slice(&bytes).ok();
            return Err(SimError::Register {
                http_status: status,
                code: v.as_ref().and_then(|v| get_ci(v, "code")).and_then(Value::as_i64),
                msg: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| SimError::Transport(format!("/peer/registry: not JSON ({e}): {}", lossy(&bytes))))?;
        let code =
            get_int(&v, "code").ok_or_else(|| SimError::Protocol("/peer/registry: code is not an integer".into()))?;
        if code != CODE_SUCCESS {
            return Err(SimError::Register {
                http_status: status,
                code: Some(code),
                msg: get_str(&v, "msg").unwrap_or_default(),
            });
        }
        let data = get_ci(&v, "data")
            .filter(|d| d.is_object())
            .ok_or_else(|| SimError::Protocol(format!("/peer/registry: success without data: {}", lossy(&bytes))))?;
        let bad = |k: &str| SimError::Protocol(format!("/peer/registry: data.{k} has the wrong type"));
        let task_id = get_str(data, "taskId").ok_or_else(|| bad("taskId"))?;
        let file_length = get_int(data, "fileLength").ok_or_else(|| bad("fileLength"))?;
        let piece_size = get_int(data, "pieceSize").ok_or_else(|| bad("pieceSize"))?;
        let cdn_source = get_str(data, "cdnSource").ok_or_else(|| bad("cdnSource"))?;
        if task_id.is_empty() {
            return Err(SimError::Protocol("/peer/registry: empty taskId".into()));
        }
        if piece_size <= PIECE_META as i64 || piece_size > u32::MAX as i64 {
            return Err(SimError::Protocol(format!("/peer/registry: unusable pieceSize {piece_size}")));
        }
        let reg = Registration { task_id, file_length, piece_size: piece_size as u64, cdn_source };
        if let Ok(mut r) = self.registration.lock() {
            *r = Some(reg.clone());
        }
        Ok(reg)
    }

    /// Runs the download (registering first unless [`Peer::register`] was called), then posts
    /// `/task/metrics`. The uploader keeps running afterwards.
    pub async fn download(&self) -> Result<Report, SimError> {
        let started = Instant::now();
        let port = self.start_uploader()?;
        let ctl = self.control_client();
        let reg = match self.registration() {
            Some(r) => r,
            None => self.register_with(&ctl, port).await?,
        };
        let timeout = self.config.download_timeout.unwrap_or_else(|| {
            if reg.file_length <= 0 {
                Duration::from_secs(300)
            } else {
                Duration::from_secs(reg.file_length as u64 / DEFAULT_MIN_RATE + 10)
            }
        });
        let result = match tokio::time::timeout(timeout, self.run(&ctl, &reg)).await {
            Ok(r) => r,
            Err(_) => Err(SimError::Timeout(timeout)),
        };
        let bsr = match &result {
            Ok(_) => "0",
            Err(SimError::Poll { .. } | SimError::Transport(_)) => "1003",
            Err(_) => "1000",
        };
        self.report_metrics(&ctl, &reg, port, started.elapsed(), result.is_ok(), bsr).await;
        let (md5, finish) = result?;
        Ok(Report {
            cid: self.cid.clone(),
            task_id: reg.task_id.clone(),
            output: self.config.output.display().to_string(),
            md5,
            file_length: reg.file_length,
            piece_size: reg.piece_size,
            finish,
            duration_secs: started.elapsed().as_secs_f64(),
            stats: self.stats.snapshot(),
        })
    }

    /// `/peer/service/down?taskId=&cid=`; returns the ResultInfo code (612 expected).
    pub async fn service_down(&self) -> Result<i64, SimError> {
        let task_id = self.task_id().ok_or(SimError::NotRegistered)?;
        let ctl = self.control_client();
        let (status, body) =
            self.control_get(&ctl, &format!("/peer/service/down?taskId={task_id}&cid={}", self.cid)).await?;
        if status != 200 {
            return Err(SimError::Transport(format!("/peer/service/down: HTTP {status}: {}", lossy(&body))));
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| SimError::Transport(format!("/peer/service/down: not JSON ({e}): {}", lossy(&body))))?;
        get_int(&v, "code").ok_or_else(|| SimError::Protocol("/peer/service/down: code is not an integer".into()))
    }

    async fn report_metrics(
        &self,
        ctl: &awc::Client,
        reg: &Registration,
        port: u16,
        d: Duration,
        success: bool,
        bsr: &str,
    ) {
        if self.metrics_sent.swap(true, Ordering::Relaxed) {
            return;
        }
        let mut fl = reg.file_length;
        if success && fl < 0 {
            fl = std::fs::metadata(&self.config.output).map(|m| m.len() as i64).unwrap_or(fl);
        }
        // dfget's TaskMetricsRequest with its omitempty rules (§3.6)
        let mut m = serde_json::Map::new();
        m.insert("IP".into(), Value::from(self.config.ip.to_string()));
        m.insert("backsourceReason".into(), Value::from(bsr));
        m.insert("cID".into(), Value::from(self.cid.clone()));
        if let Some(cs) = self.config.callsystem.as_deref().filter(|s| !s.is_empty()) {
            m.insert("callSystem".into(), Value::from(cs));
        }
        m.insert("duration".into(), Value::from(d.as_secs_f64()));
        if fl != 0 {
            m.insert("fileLength".into(), Value::from(fl));
        }
        if port != 0 {
            m.insert("port".into(), Value::from(port));
        }
        if success {
            m.insert("success".into(), Value::from(true));
        }
        m.insert("taskId".into(), Value::from(reg.task_id.clone()));
        let Ok(body) = go_json(&Value::Object(m)) else { return };
        // dfget resends unless the reply's code is 1 (§3.6, §16 P1)
        for _ in 0..2 {
            let send = || {
                ctl.post(format!("http://{}/task/metrics", self.node))
                    .no_decompress()
                    .insert_header(("User-Agent", "fasthttp"))
                    .insert_header(("Content-Type", "application/json;charset=utf-8"))
                    .timeout(self.config.control_timeout)
                    .send_body(body.clone())
            };
            if let Ok((200, bytes)) = read_reply(send, self.config.control_timeout).await {
                let code = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|v| get_ci(&v, "code").and_then(Value::as_i64));
                if code == Some(1) {
                    return;
                }
            }
        }
    }

    /// The p2p download (dfget's P2PDownloader): returns (output md5, finish data).
    async fn run(&self, ctl: &awc::Client, reg: &Registration) -> Result<(String, Option<FinishData>), SimError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.config.output)
            .map_err(|e| io_err(&format!("open {}", self.config.output.display()), e))?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        let (ntx, mut nrx) = mpsc::unbounded_channel::<()>();
        let pieces = awc::Client::builder()
            .no_default_headers()
            .timeout(Duration::from_secs(3600))
            .connector(
                awc::Connector::new().timeout(Duration::from_millis(500)).conn_keep_alive(Duration::from_secs(1)),
            )
            .finish();
        let shared = Rc::new(Shared {
            node: self.node.clone(),
            cid: self.cid.clone(),
            task_id: reg.task_id.clone(),
            cdn_source: reg.cdn_source.clone(),
            file: Arc::new(file),
            ctl: ctl.clone(),
            pieces,
            stats: self.stats.clone(),
            tx,
            notify: ntx,
            sem: Semaphore::new(self.config.piece_concurrency.max(1)),
            piece_timeout: self.config.piece_timeout,
            control_timeout: self.config.control_timeout,
            piece_delay: self.config.piece_delay,
            file_length: reg.file_length,
            held: Default::default(),
        });
        let mut tasks = Tasks::default();
        let mut reports = Tasks::default();
        let mut queue: VecDeque<Item> = VecDeque::new();
        // range -> held (true) or running (false)
        let mut piece_set: HashMap<String, bool> = HashMap::new();
        let mut latest: Option<Item> = None;
        let mut pending = Some(Item::start());
        let mut last_success: Option<Item> = None;
        let (mut min_t, mut max_t) = (50u64, 100u64);
        let mut stall_ticks = 0u32;
        let running = |ps: &HashMap<String, bool>| ps.values().filter(|v| !**v).count();

        loop {
            // ---- next item to report (dfget's getItem, with its merging of successes)
            let cur = match pending.take() {
                Some(i) => i,
                None => {
                    drain(&mut rx, &mut queue)?;
                    let item = match queue.pop_front() {
                        Some(i) => Some(i),
                        None => match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
                            Ok(Some(Event::Outcome(i))) => Some(i),
                            Ok(Some(Event::Fatal(e))) => return Err(e),
                            Ok(None) => return Err(SimError::Protocol("piece queue closed".into())),
                            Err(_) => None,
                        },
                    };
                    let mut need_merge = true;
                    match item {
                        Some(item) => {
                            stall_ticks = 0;
                            if !item.range.is_empty() {
                                match piece_set.get(&item.range).copied() {
                                    None => continue,
                                    Some(false) if matches!(item.result, RESULT_SEMISUC | RESULT_SUC) => {
                                        piece_set.insert(item.range.clone(), true);
                                    }
                                    Some(false) => {
                                        piece_set.remove(&item.range);
                                    }
                                    Some(true) => {}
                                }
                            }
                            if matches!(item.result, RESULT_SEMISUC | RESULT_SUC) {
                                last_success = Some(item.clone());
                            }
                            latest = Some(item);
                        }
                        None => {
                            need_merge = false;
                            if latest.is_none() && running(&piece_set) == 0 {
                                // dfget would wait here until its download timeout; poll again
                                stall_ticks += 1;
                                if stall_ticks >= 2 {
                                    stall_ticks = 0;
                                    Stats::inc(&self.stats.stalls);
                                    latest = Some(last_success.clone().unwrap_or_else(Item::start));
                                }
                            }
                        }
                    }
                    let Some(l) = latest.as_ref() else { continue };
                    if matches!(l.result, RESULT_SUC | RESULT_FAIL | RESULT_INVALID) {
                        need_merge = false;
                    }
                    drain(&mut rx, &mut queue)?;
                    if need_merge && (!queue.is_empty() || running(&piece_set) > 2) {
                        continue;
                    }
                    match latest.take() {
                        Some(l) => l,
                        None => continue,
                    }
                }
            };

            // ---- poll, sleeping on 602 (dfget's pullPieceTask)
            let reply = loop {
                let r = self.api_pull(ctl, &reg.task_id, &cur).await?;
                if r.code != PEER_WAIT {
                    break r;
                }
                drain(&mut rx, &mut queue)?;
                if !queue.is_empty() {
                    break r;
                }
                let wait = rand::thread_rng().gen_range(min_t..max_t);
                let _ = tokio::time::timeout(Duration::from_millis(wait), nrx.recv()).await;
                if min_t < 800 {
                    min_t *= 2;
                    max_t *= 2;
                }
            };
            match reply.code {
                PEER_CONTINUE => {
                    let Some(items) = parse_continue(reply.data.as_ref()) else {
                        if reply.data.is_some() {
                            Stats::inc(&self.stats.bad_replies);
                        }
                        continue;
                    };
                    for it in items {
                        match piece_set.get(&it.range).copied() {
                            Some(true) => {
                                // handed out again although held: re-report it ([HEAD] dfget)
                                let again = Item {
                                    dst_cid: it.cid.clone(),
                                    range: it.range.clone(),
                                    result: RESULT_SEMISUC,
                                    status: STATUS_RUNNING,
                                };
                                queue.push_back(again.clone());
                                reports.push(actix_rt::spawn(report_success(shared.clone(), again)));
                            }
                            Some(false) => {}
                            None => {
                                piece_set.insert(it.range.clone(), false);
                                tasks.push(actix_rt::spawn(fetch_piece(shared.clone(), it)));
                            }
                        }
                    }
                }
                PEER_FINISH => {
                    let finish = self.finish(&shared, reg, reply.data.as_ref()).await?;
                    // let the success reports still on the way arrive (they have their own
                    // timeouts: 3 attempts of at most control_timeout + 0.55 s)
                    let outstanding: Vec<JoinHandle<()>> =
                        std::mem::take(&mut reports.0).into_iter().chain(std::mem::take(&mut tasks.0)).collect();
                    let cap = self.config.control_timeout * 3 + Duration::from_secs(2);
                    let _ = tokio::time::timeout(cap, futures_util::future::join_all(outstanding)).await;
                    return Ok(finish);
                }
                PEER_WAIT | PEER_LIMITED | CODE_SUCCESS => {}
                code => return Err(SimError::Poll { code, msg: reply.msg }),
            }
        }
    }

    async fn finish(
        &self,
        shared: &Shared,
        reg: &Registration,
        data: Option<&Value>,
    ) -> Result<(String, Option<FinishData>), SimError> {
        let fd = match data {
            Some(d) if d.is_object() => Some(FinishData {
                file_length: get_int(d, "fileLength").unwrap_or(0),
                md5: get_str(d, "md5").unwrap_or_default(),
            }),
            _ => None,
        };
        let expected = match (&self.config.md5, &fd) {
            (Some(m), _) if !m.is_empty() => m.clone(),
            (_, Some(fd)) => fd.md5.clone(),
            _ => return Err(SimError::Protocol("600 without finish data (dfget 1.0.6 would crash)".into())),
        };
        if reg.file_length > 0 {
            if let Some(n) = piece_count(reg.file_length, reg.piece_size) {
                let held = shared.held.borrow();
                let missing: Vec<u64> = (0..n).filter(|i| !held.contains(i)).take(20).collect();
                if !missing.is_empty() {
                    return Err(SimError::Protocol(format!("600 while pieces {missing:?} are missing")));
                }
            }
        }
        let file = shared.file.clone();
        let path = self.config.output.clone();
        let real = tokio::task::spawn_blocking(move || {
            file.sync_data().ok();
            md5_file(&path)
        })
        .await
        .map_err(|e| io_err("md5", e))?
        .map_err(|e| io_err("md5", e))?;
        if !expected.is_empty() && real != expected {
            return Err(SimError::Md5Mismatch { real, expected });
        }
        Ok((real, fd))
    }

    async fn api_pull(&self, ctl: &awc::Client, task_id: &str, item: &Item) -> Result<Reply, SimError> {
        let target = format!(
            "/peer/task?srcCid={}&dstCid={}&range={}&result={}&status={}&taskId={}",
            self.cid, item.dst_cid, item.range, item.result, item.status, task_id
        );
        Stats::inc(&self.stats.polls);
        let (status, body) = self.control_get(ctl, &target).await?;
        if status != 200 {
            return Err(SimError::Transport(format!("/peer/task: HTTP {status}: {}", lossy(&body))));
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| SimError::Transport(format!("/peer/task: not JSON ({e}): {}", lossy(&body))))?;
        if !v.is_object() {
            return Err(SimError::Transport(format!("/peer/task: not a JSON object: {}", lossy(&body))));
        }
        let code =
            get_int(&v, "code").ok_or_else(|| SimError::Transport("/peer/task: code is not an integer".into()))?;
        let msg = get_str(&v, "msg").unwrap_or_default();
        if let Ok(mut c) = self.stats.codes.lock() {
            *c.entry(code).or_default() += 1;
        }
        let data = get_ci(&v, "data").filter(|d| !d.is_null()).cloned();
        Ok(Reply { code, msg, data })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(mut u) = self.uploader.lock() {
            if let Some(u) = u.take() {
                // sends the stop command now; the returned future only waits for completion
                drop(u.handle.stop(false));
            }
        }
    }
}

fn drain(rx: &mut mpsc::UnboundedReceiver<Event>, queue: &mut VecDeque<Item>) -> Result<(), SimError> {
    while let Ok(ev) = rx.try_recv() {
        match ev {
            Event::Outcome(i) => queue.push_back(i),
            Event::Fatal(e) => return Err(e),
        }
    }
    Ok(())
}

fn lossy(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s.into_owned()
    }
}

/// Whether a send failed the way a stale keep-alive connection fails (the server closed it
/// while it was idle): fasthttp and Go's net/http retry such requests once on a new connection.
fn stale_connection(e: &awc::error::SendRequestError) -> bool {
    use awc::error::{ConnectError, SendRequestError as E};
    matches!(e, E::Connect(ConnectError::Disconnected) | E::Send(_) | E::Response(_))
}

/// Sends a request (built by `make`, at most twice: see [`stale_connection`]) and reads the
/// whole (small) reply.
async fn read_reply(make: impl Fn() -> awc::SendClientRequest, timeout: Duration) -> Result<(u16, Bytes), SimError> {
    let fut = async {
        let mut attempt = 0;
        let mut res = loop {
            match make().await {
                Ok(r) => break r,
                Err(e) if attempt == 0 && stale_connection(&e) => attempt += 1,
                Err(e) => return Err(SimError::Transport(e.to_string())),
            }
        };
        let status = res.status().as_u16();
        let body = res.body().limit(16 * 1024 * 1024).await.map_err(|e| SimError::Transport(e.to_string()))?;
        Ok::<_, SimError>((status, body))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(SimError::Transport(format!("no answer within {:.1}s", timeout.as_secs_f64()))),
    }
}

async fn control_get(ctl: &awc::Client, node: &str, target: &str, timeout: Duration) -> Result<(u16, Bytes), SimError> {
    let url = format!("http://{node}{target}");
    let send =
        || ctl.get(url.as_str()).no_decompress().insert_header(("User-Agent", "fasthttp")).timeout(timeout).send();
    read_reply(send, timeout).await.map_err(|e| match e {
        SimError::Transport(m) => SimError::Transport(format!("GET {target}: {m}")),
        other => other,
    })
}

/// Decodes the 601 piece list; `None` when dfget could not decode it (or there is none).
fn parse_continue(data: Option<&Value>) -> Option<Vec<PieceTask>> {
    let list = data?.as_array()?;
    let mut out = Vec::with_capacity(list.len());
    for el in list {
        if !el.is_object() {
            return None;
        }
        let piece_num = get_int(el, "pieceNum")?;
        let piece_size = get_int(el, "pieceSize")?;
        let peer_port = get_int(el, "peerPort")?;
        if piece_num < 0 || piece_size <= 0 || piece_size > u32::MAX as i64 || !(0..=65535).contains(&peer_port) {
            return None;
        }
        out.push(PieceTask {
            range: get_str(el, "range")?,
            piece_num: piece_num as u64,
            piece_size: piece_size as u64,
            piece_md5: get_str(el, "pieceMd5")?,
            cid: get_str(el, "cid")?,
            peer_ip: get_str(el, "peerIp")?,
            peer_port: peer_port as u16,
            path: get_str(el, "path")?,
        });
    }
    Some(out)
}

/// A piece error for `/peer/piece/error` (§3.5).
struct ClientError {
    error_type: &'static str,
    dst_cid: String,
    dst_ip: String,
    range: String,
    real_md5: String,
    expected_md5: String,
}

/// Clamps a range end to the source length (source mode).
fn wipe_out_of_range(range: &str, max_len: i64) -> String {
    let Some((a, b)) = range.split_once('-') else { return range.to_string() };
    match b.parse::<i64>() {
        Ok(end) if max_len >= 0 && end >= max_len => format!("{a}-{}", max_len - 1),
        _ => range.to_string(),
    }
}

/// Why a piece download failed, and the `/peer/piece/error` report it causes (if any).
struct PieceFailure {
    why: String,
    report: Option<ClientError>,
}

fn failed(why: impl Into<String>) -> PieceFailure {
    PieceFailure { why: why.into(), report: None }
}

/// One piece download (dfget's PowerClient): Ok(payload written) or the failure.
async fn download_piece(sh: &Shared, it: &PieceTask) -> Result<(), PieceFailure> {
    let source_mode = sh.cdn_source == "source";
    let (url, host) = if it.path.contains("://") {
        let host = it.path.split("://").nth(1).and_then(|r| r.split(['/', '?']).next()).unwrap_or("").to_string();
        (it.path.clone(), host.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or(host))
    } else {
        (format!("http://{}:{}{}", it.peer_ip, it.peer_port, it.path), it.peer_ip.clone())
    };
    let what = format!("piece {} [{}] from {} ({url})", it.piece_num, it.range, it.cid);
    if !is_loopback_host(&host) {
        return Err(failed(format!("{what}: not a loopback source, refused")));
    }
    let mut range = it.range.clone();
    if source_mode && sh.file_length > 0 {
        range = wipe_out_of_range(&range, sh.file_length);
    }
    let timeout = sh.piece_timeout.unwrap_or_else(|| Duration::from_secs(it.piece_size / DEFAULT_MIN_RATE + 10));
    let make = || {
        let req = sh
            .pieces
            .get(url.as_str())
            .camel_case()
            .no_decompress()
            .insert_header(("User-Agent", format!("dfget/{DFGET_VERSION}")))
            .insert_header(("pieceNum", it.piece_num.to_string()))
            .insert_header(("pieceSize", it.piece_size.to_string()))
            .insert_header(("Range", format!("bytes={range}")))
            .timeout(timeout);
        if source_mode {
            req.insert_header(("cdnSource", "source")).send()
        } else {
            req.send()
        }
    };
    let limit = (it.piece_size as usize).saturating_mul(2).max(1 << 20);
    let fetch = async {
        let mut res = match make().await {
            Ok(r) => r,
            Err(e) if stale_connection(&e) => make().await.map_err(|e| failed(format!("{what}: {e}")))?,
            Err(e) => return Err(failed(format!("{what}: {e}"))),
        };
        let status = res.status().as_u16();
        if !(200..300).contains(&status) {
            let report = (status == 404).then(|| ClientError {
                error_type: "FILE_NOT_EXIST",
                dst_cid: it.cid.clone(),
                dst_ip: String::new(),
                range: String::new(),
                real_md5: String::new(),
                expected_md5: String::new(),
            });
            return Err(PieceFailure { why: format!("{what}: HTTP {status}"), report });
        }
        res.body().limit(limit).await.map_err(|e| failed(format!("{what}: body: {e}")))
    };
    let body = match tokio::time::timeout(timeout, fetch).await {
        Ok(r) => r?,
        Err(_) => return Err(failed(format!("{what}: no complete answer within {:.1}s", timeout.as_secs_f64()))),
    };
    if !source_mode && (body.len() as u64) < PIECE_META {
        return Err(failed(format!("{what}: {} bytes, shorter than the framing", body.len())));
    }
    // md5 check and write off the runtime thread
    let expected = it.piece_md5.split(':').next().unwrap_or("").to_string();
    let file = sh.file.clone();
    let piece_num = it.piece_num;
    let piece_size = it.piece_size;
    let checked = tokio::task::spawn_blocking(move || -> Result<Result<(), String>, std::io::Error> {
        if !expected.is_empty() {
            let real = md5_hex(&body);
            if real != expected {
                return Ok(Err(real));
            }
        }
        let (payload, offset) = if source_mode {
            (&body[..], piece_num.checked_mul(piece_size))
        } else {
            (&body[4..body.len() - 1], piece_num.checked_mul(piece_size - PIECE_META))
        };
        let offset = offset.ok_or_else(|| std::io::Error::other("piece offset overflows"))?;
        file.write_all_at(payload, offset)?;
        Ok(Ok(()))
    })
    .await;
    let fatal = |e: String| {
        let _ = sh.tx.send(Event::Fatal(SimError::Io(format!("write piece: {e}"))));
        failed(format!("{what}: write: {e}"))
    };
    match checked {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(real))) => Err(PieceFailure {
            why: format!("{what}: md5 {real}, expected {}", it.piece_md5),
            report: Some(ClientError {
                error_type: "FILE_MD5_NOT_MATCH",
                dst_cid: it.cid.clone(),
                dst_ip: it.peer_ip.clone(),
                range: it.range.clone(),
                real_md5: real,
                expected_md5: it.piece_md5.split(':').next().unwrap_or("").to_string(),
            }),
        }),
        Ok(Err(e)) => Err(fatal(e.to_string())),
        Err(e) => Err(fatal(e.to_string())),
    }
}

async fn fetch_piece(sh: Rc<Shared>, it: PieceTask) {
    let outcome = {
        let Ok(_permit) = sh.sem.acquire().await else { return };
        download_piece(&sh, &it).await
    };
    match outcome {
        Ok(()) => {
            if it.cid.starts_with(SUPER_CID_PREFIX) {
                Stats::inc(&sh.stats.pieces_from_supernode);
            } else {
                Stats::inc(&sh.stats.pieces_from_peers);
            }
            sh.held.borrow_mut().insert(it.piece_num);
            if !sh.piece_delay.is_zero() {
                tokio::time::sleep(sh.piece_delay).await;
            }
            let item = Item {
                dst_cid: it.cid.clone(),
                range: it.range.clone(),
                result: RESULT_SEMISUC,
                status: STATUS_RUNNING,
            };
            let _ = sh.tx.send(Event::Outcome(item.clone()));
            report_success(sh.clone(), item).await;
        }
        Err(PieceFailure { why, report: client_error }) => {
            Stats::inc(&sh.stats.piece_failures);
            sh.stats.piece_error(why);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let item =
                Item { dst_cid: it.cid.clone(), range: it.range.clone(), result: RESULT_FAIL, status: STATUS_RUNNING };
            let _ = sh.tx.send(Event::Outcome(item));
            if let Some(err) = client_error {
                report_client_error(&sh, err).await;
            }
        }
    }
}

/// `/peer/piece/suc`: 3 attempts, 50–550 ms apart; a success wakes the poll loop's back-off.
async fn report_success(sh: Rc<Shared>, item: Item) {
    let target = format!(
        "/peer/piece/suc?taskId={}&cid={}&dstCid={}&pieceRange={}",
        sh.task_id, sh.cid, item.dst_cid, item.range
    );
    for _ in 0..3 {
        let why = match control_get(&sh.ctl, &sh.node, &target, sh.control_timeout).await {
            Ok((200, body)) => {
                let code = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| get_ci(&v, "code").and_then(Value::as_i64));
                if code == Some(PIECE_REPORT_OK) {
                    Stats::inc(&sh.stats.suc_reports_ok);
                    let _ = sh.notify.send(());
                    return;
                }
                format!("{target}: HTTP 200 {}", lossy(&body))
            }
            Ok((status, body)) => format!("{target}: HTTP {status} {}", lossy(&body)),
            Err(e) => e.to_string(),
        };
        if let Ok(mut s) = sh.stats.last_suc_error.lock() {
            *s = why;
        }
        let pause = rand::thread_rng().gen_range(50..550);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    Stats::inc(&sh.stats.suc_reports_failed);
}

/// `/peer/piece/error` in dfget's key order; the answer is ignored (§3.5).
async fn report_client_error(sh: &Shared, e: ClientError) {
    match e.error_type {
        "FILE_MD5_NOT_MATCH" => Stats::inc(&sh.stats.md5_errors_reported),
        _ => Stats::inc(&sh.stats.not_exist_reported),
    }
    let target = format!(
        "/peer/piece/error?errorType={}&srcCid={}&dstCid={}&dstIp={}&taskId={}&range={}&realMd5={}&expectedMd5={}",
        e.error_type, sh.cid, e.dst_cid, e.dst_ip, sh.task_id, e.range, e.real_md5, e.expected_md5
    );
    let _ = control_get(&sh.ctl, &sh.node, &target, sh.control_timeout).await;
}

/// The socket address a started uploader listens on.
pub fn uploader_addr(peer: &Peer) -> Option<SocketAddr> {
    peer.uploader_port().map(|p| SocketAddr::from((peer.config.ip, p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_are_unique() {
        let a = new_sign();
        let b = new_sign();
        assert_ne!(a, b);
        let (pid, secs) = a.split_once('-').unwrap();
        assert_eq!(pid, std::process::id().to_string());
        let (s, ms) = secs.split_once('.').unwrap();
        assert!(s.parse::<u64>().is_ok());
        assert_eq!(ms.len(), 3);
    }

    #[test]
    fn go_escaping() {
        let s = go_json(&serde_json::json!({"u": "http://a/b?x=1&y=<2>"})).unwrap();
        assert_eq!(s, r#"{"u":"http://a/b?x=1\u0026y=\u003c2\u003e"}"#);
    }

    #[test]
    fn atoi_like_go() {
        assert_eq!(go_atoi("12"), Ok(12));
        assert_eq!(go_atoi("+3"), Ok(3));
        assert!(go_atoi("").is_err());
        assert!(go_atoi("1a").is_err());
        assert!(go_atoi("-").is_err());
    }

    #[test]
    fn counts() {
        assert_eq!(piece_count(64 << 20, 4 << 20), Some(17));
        assert_eq!(piece_count(0, 4 << 20), Some(1));
        assert_eq!(piece_count(-1, 4 << 20), None);
        assert_eq!(piece_count(10 << 20, 4 << 20), Some(3));
    }

    #[test]
    fn continue_items() {
        let v = serde_json::json!([{"range":"0-4194303","pieceNum":0,"pieceSize":4194304,"pieceMd5":"ab:3","cid":"cdnnode:127.0.0.1~x","peerIp":"127.0.0.1","peerPort":8001,"path":"/download/x","downLink":0}]);
        let items = parse_continue(Some(&v)).unwrap();
        assert_eq!(items[0].piece_size, 4194304);
        assert_eq!(items[0].peer_port, 8001);
        assert!(parse_continue(Some(&serde_json::json!([{"pieceNum":"x"}]))).is_none());
        assert!(parse_continue(Some(&serde_json::json!({"a":1}))).is_none());
    }

    #[test]
    fn nodes() {
        assert_eq!(split_node("127.0.0.1:8002"), ("127.0.0.1".into(), "127.0.0.1:8002".into()));
        assert_eq!(split_node("localhost"), ("localhost".into(), "localhost:8002".into()));
        assert!(is_loopback_host("127.0.0.1"));
        assert!(!is_loopback_host("10.0.0.1"));
    }
}
