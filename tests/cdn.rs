//! Issue 3: tasks and the CDN against a real in-process origin (tests/common/origin.rs).
//! Registration (§3.1, §6.1, §16 P7, P8, P11, P12), the v1 task API (§4.2, §4.3), the CDN file
//! format and its md5 lists (§5.1–§5.6), the download port (§5.7, §16 P13), crash safety and
//! revalidation (§16 P13), one source fetch per task (§16 P7) and the CDN metrics (§10.3).

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::origin::{hex, Content, Origin};
use common::TestServer;
use common::{cache_dir, data_path, dfget_body, eventually, get_json, task_info, url_task_id, wait_done, wait_success};
use md5::{Digest, Md5};
use serde_json::{json, Value};
use supernode::config::Config;
use supernode_actors::TaskId;

const MIB: u64 = 1024 * 1024;
/// Piece size for every source up to 200 MiB (§5.1).
const PIECE: u64 = 4 * MIB;
/// Payload bytes per piece.
const PAYLOAD: u64 = PIECE - 5;

// ---------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------

fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

async fn send(req: awc::ClientRequest, content_type: &str, body: String) -> (u16, String) {
    let mut res = req.insert_header(("Content-Type", content_type)).send_body(body).await.expect("request sent");
    let bytes = res.body().limit(1 << 20).await.expect("body read");
    (res.status().as_u16(), String::from_utf8_lossy(&bytes).into_owned())
}

/// `POST /peer/registry` with a JSON body (dfget's content type): status and parsed reply.
async fn register_raw(s: &TestServer, body: &Value) -> (u16, Value) {
    let (status, text) =
        send(common::client().post(s.url("/peer/registry")), "application/json;charset=utf-8", body.to_string()).await;
    (status, common::json(&text))
}

/// A successful registration; returns the reply's `data`.
async fn register_ok(s: &TestServer, body: &Value) -> Value {
    let (status, v) = register_raw(s, body).await;
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
    assert!(TaskId::parse(id).is_some(), "taskId {id:?} is not 64 hex");
    v["data"].clone()
}

/// Registers `url` as dfget would; returns the task ID.
async fn register_url(s: &TestServer, url: &str, cid: &str) -> String {
    let data = register_ok(s, &dfget_body(url, cid)).await;
    data["taskId"].as_str().unwrap().to_string()
}

/// A registration refused with ResultInfo `code` (HTTP 200); returns `msg`.
async fn register_refused(s: &TestServer, body: &Value, code: i64) -> String {
    let (status, v) = register_raw(s, body).await;
    assert_eq!(status, 200, "registration {body} → {v}");
    assert_eq!(v["code"], code, "registration {body} → {v}");
    let msg = v["msg"].as_str().unwrap_or("").to_string();
    assert!(!msg.is_empty(), "no msg in {v}");
    msg
}

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

/// Every key of a TaskInfo is a declared one (§4.2; `paused`, `errorMsg` are this project's).
fn assert_task_info_keys(v: &Value) {
    let obj = v.as_object().unwrap_or_else(|| panic!("TaskInfo not an object: {v}"));
    for k in obj.keys() {
        assert!(TASK_INFO_KEYS.contains(&k.as_str()), "unexpected TaskInfo key {k:?} in {v}");
    }
}

/// GET on the download port with an optional Range: status, headers, body.
async fn download(s: &TestServer, id: &str, range: Option<String>) -> (u16, awc::http::header::HeaderMap, Vec<u8>) {
    let url = format!("http://{}/download/{}/{}", s.download(), &id[..3], id);
    let mut req = common::client().get(url);
    if let Some(r) = range {
        req = req.insert_header(("Range", r));
    }
    let mut res = req.send().await.expect("download request sent");
    let body = res.body().limit(64 << 20).await.expect("download body");
    (res.status().as_u16(), res.headers().clone(), body.to_vec())
}

fn header_str(h: &awc::http::header::HeaderMap, name: &str) -> String {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// One raw HTTP/1.1 GET with the request target sent byte for byte (no client normalisation).
async fn raw_get(addr: SocketAddr, target: &str) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("raw answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line for {target}: {text:?}"));
    (status, buf)
}

/// Checks a SUCCESS task against its source: TaskInfo, the framed cache file, the `.md5` list,
/// and every full-slot range read from the download port (§5.2–§5.7).
async fn verify_cached(s: &TestServer, id: &str, url: &str, source: &Content, info: &Value) {
    let src = source.clone();
    let source_md5 = tokio::task::spawn_blocking(move || src.md5_hex());
    verify_cached_with(s, id, url, source, info, source_md5).await;
}

/// [`verify_cached`] with the source's md5 already being computed (big files start it early).
async fn verify_cached_with(
    s: &TestServer,
    id: &str,
    url: &str,
    source: &Content,
    info: &Value,
    source_md5: tokio::task::JoinHandle<String>,
) {
    let len = source.len();
    let piece_size = info["pieceSize"].as_u64().expect("pieceSize");
    let n = piece_count(len, piece_size);
    let file_len = len + 5 * n;

    // TaskInfo
    assert_task_info_keys(info);
    assert_eq!(info["ID"], id, "{info}");
    assert_eq!(info["cdnStatus"], "SUCCESS", "{info}");
    assert_eq!(info["fileLength"], file_len, "fileLength = httpLen + 5·N: {info}");
    if len == 0 {
        assert!(info.get("httpFileLength").is_none() || info["httpFileLength"] == 0, "{info}");
    } else {
        assert_eq!(info["httpFileLength"], len, "{info}");
    }
    assert_eq!(info["pieceTotal"], n, "{info}");
    assert_eq!(info["rawURL"], url, "{info}");
    assert_eq!(info["taskURL"], url, "{info}");
    assert!(info.get("errorMsg").is_none(), "{info}");

    // the .md5 list: N lines `md5:len`, the file md5, a SHA-1 line; no trailing newline
    let home = s.home_path();
    let md5_text = std::fs::read_to_string(suffixed(&home, id, ".md5")).expect(".md5 file");
    assert!(!md5_text.ends_with('\n'), ".md5 ends with a newline");
    let lines: Vec<&str> = md5_text.split('\n').collect();
    assert_eq!(lines.len() as u64, n + 2, ".md5 line count: {md5_text}");
    let real_md5 = info["realMd5"].as_str().expect("realMd5").to_string();
    assert_eq!(lines[n as usize], real_md5, ".md5 file md5 line");
    let sha = lines[n as usize + 1];
    assert!(sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()), "SHA-1 line {sha:?}");
    assert!(!suffixed(&home, id, ".tmp").exists(), "temporary file left beside a SUCCESS file");

    // checked off the test thread, in parallel with the download-port reads below (and with
    // the md5 of the source): the framing, payloads and piece md5s of the file on disk
    let path = data_path(&home, id);
    let (src, md5_lines) = (source.clone(), lines[..n as usize].iter().map(|l| l.to_string()).collect::<Vec<_>>());
    let disk = tokio::task::spawn_blocking(move || check_file(&path, &src, piece_size, &md5_lines));

    // every full slot from the download port, clamped by the server to the file end (§5.3,
    // §5.7): the bytes of the file, and stripping 4 + 1 framing bytes rebuilds the source
    let mut file = std::fs::File::open(data_path(&home, id)).expect("cache file");
    assert_eq!(file.metadata().unwrap().len(), file_len, "cache file size");
    let mut on_disk = vec![0u8; piece_size as usize];
    let mut expected = vec![0u8; piece_size as usize];
    let mut rebuilt_len = 0u64;
    for p in 0..n {
        let payload_len = (len - p * (piece_size - 5)).min(piece_size - 5) as usize;
        let wlen = payload_len + 5;
        let start = p * piece_size;
        let range = format!("bytes={}-{}", start, start + piece_size - 1);
        let (status, headers, body) = download(s, id, Some(range.clone())).await;
        assert_eq!(status, 206, "piece {p} {range}");
        let last = (start + piece_size - 1).min(file_len - 1);
        assert_eq!(header_str(&headers, "content-range"), format!("bytes {start}-{last}/{file_len}"), "piece {p}");
        assert_eq!(body.len(), wlen, "piece {p}: clamped length");
        file.seek(SeekFrom::Start(start)).unwrap();
        file.read_exact(&mut on_disk[..wlen]).unwrap();
        assert!(body == on_disk[..wlen], "piece {p}: download port bytes differ from the file");
        source.read_at(p * (piece_size - 5), &mut expected[..payload_len]);
        assert!(
            body[4..wlen - 1] == expected[..payload_len],
            "piece {p}: payload from the download port differs from the source"
        );
        rebuilt_len += payload_len as u64;
    }
    assert_eq!(rebuilt_len, len, "rebuilt length");

    join(disk).await;
    let source_md5 = join(source_md5).await;
    assert_eq!(real_md5, source_md5, "realMd5 = md5 of the source");
}

/// Awaits a blocking task, re-raising its panic.
async fn join<T>(h: tokio::task::JoinHandle<T>) -> T {
    match h.await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The framed file (§5.4): every piece's header `dataLen | pieceSize<<4`, payload = the source
/// at `n·(pieceSize−5)`, trailer 0x7F, and `md5:len` equal to its `.md5` line (§5.5).
fn check_file(path: &Path, source: &Content, piece_size: u64, md5_lines: &[String]) {
    let len = source.len();
    let n = piece_count(len, piece_size);
    let mut file = std::fs::File::open(path).unwrap_or_else(|e| panic!("cache file {}: {e}", path.display()));
    assert_eq!(file.metadata().unwrap().len(), len + 5 * n, "cache file size");
    let mut wrapped = vec![0u8; piece_size as usize];
    let mut expected = vec![0u8; piece_size as usize];
    for p in 0..n {
        let payload_len = (len - p * (piece_size - 5)).min(piece_size - 5) as usize;
        let wlen = payload_len + 5;
        file.read_exact(&mut wrapped[..wlen]).unwrap_or_else(|e| panic!("piece {p}: {e}"));
        let piece = &wrapped[..wlen];
        let header = u32::from_be_bytes(piece[..4].try_into().unwrap());
        assert_eq!(header, payload_len as u32 | ((piece_size as u32) << 4), "piece {p} header");
        assert_eq!(header & 0x00FF_FFFF, payload_len as u32, "piece {p} dataLen");
        assert_eq!(piece[wlen - 1], 0x7F, "piece {p} trailer");
        source.read_at(p * (piece_size - 5), &mut expected[..payload_len]);
        assert!(piece[4..wlen - 1] == expected[..payload_len], "piece {p} payload differs from the source");
        let md5_line = format!("{}:{}", hex(&Md5::digest(piece)), wlen);
        assert_eq!(md5_lines[p as usize], md5_line, "piece {p} md5 line");
    }
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "bytes after the last piece");
}

/// dfget's first `/peer/task` poll (status 700) for client `cid` (§3.2): the ResultInfo.
async fn first_poll(s: &TestServer, cid: &str, id: &str) -> Value {
    let path = format!("/peer/task?srcCid={cid}&dstCid=&range=&result=502&status=700&taskId={id}");
    let (status, v) = get_json(s, &path).await;
    assert_eq!(status, 200, "{path} → {v}");
    v
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{')))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn metrics(s: &TestServer) -> String {
    let (status, body) = common::call(common::client().get(s.url("/metrics")), None).await;
    assert_eq!(status, 200);
    body
}

/// A 127.0.0.1 port that nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn small_bytes(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 8) as u8).collect()
}

// ---------------------------------------------------------------------------------------
// registration (§3.1, §6.1, §16 P8, P11, P12)
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn registration_json_and_form_reply_with_the_task() {
    let s = common::start().await;
    let origin = Origin::start().await;
    let content = small_bytes(10_000, 7);
    origin.add("/reg.bin", content.clone());
    let url = origin.url("/reg.bin");

    let data = register_ok(&s, &dfget_body(&url, "127.0.0.1-1-1.000")).await;
    assert_eq!(data["taskId"], url_task_id(&url), "taskID per §2.2: {data}");
    assert_eq!(data["fileLength"], 10_000, "source length: {data}");
    assert_eq!(data["pieceSize"], PIECE, "{data}");

    // the same download, form-encoded (0.2.x clients), with repeated headers=
    let form = format!(
        "superNodeIp=127.0.0.1&rawUrl={u}&taskUrl={u}&cid=127.0.0.1-2-2.000&ip=127.0.0.1\
         &hostName=vm&port=20002&path=%2Fpeer%2Ffile%2Fx-2&version=1.0.6\
         &headers=X-Foo%3A+a&headers=X-Bar%3A+b",
        u = url.replace(':', "%3A").replace('/', "%2F")
    );
    let (status, text) =
        send(common::client().post(s.url("/peer/registry")), "application/x-www-form-urlencoded", form).await;
    assert_eq!(status, 200, "{text}");
    let v = common::json(&text);
    assert_eq!(v["code"], 200, "{v}");
    assert_eq!(v["data"]["taskId"], url_task_id(&url), "{v}");
    assert_eq!(v["data"]["fileLength"], 10_000, "{v}");

    // the form media type with parameters (§3.1 Compat)
    let form = format!(
        "cid=127.0.0.1-3-3.000&ip=127.0.0.1&port=20003&path=%2Fpeer%2Ffile%2Fx-3&rawUrl={}",
        url.replace(':', "%3A").replace('/', "%2F")
    );
    let (status, text) =
        send(common::client().post(s.url("/peer/registry")), "application/x-www-form-urlencoded; charset=utf-8", form)
            .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(common::json(&text)["data"]["taskId"], url_task_id(&url), "{text}");

    let info = wait_success(&s, &url_task_id(&url), Duration::from_secs(20)).await;
    verify_cached(&s, &url_task_id(&url), &url, &origin.content("/reg.bin"), &info).await;
    assert_eq!(info["realMd5"], hex(&Md5::digest(&content)), "realMd5: {info}");
    assert_eq!(origin.stats("/reg.bin").body_requests, 1);
}

#[actix_web::test]
async fn registration_bad_bodies_are_400_with_code_501() {
    let s = common::start().await;
    let origin = Origin::start().await;
    origin.add("/ok.bin", vec![1, 2, 3]);
    let url = origin.url("/ok.bin");
    let good = dfget_body(&url, "127.0.0.1-1-1.000");
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("truncated JSON", "{\"cid\":".into(), "application/json", ""),
        ("empty body", String::new(), "application/json", ""),
        ("not an object", "[1,2]".into(), "application/json", ""),
        ("empty cid", with(good.clone(), "cid", json!("")).to_string(), "application/json", "cid"),
        ("port as string", with(good.clone(), "port", json!("20001")).to_string(), "application/json", "port"),
        ("port out of range", with(good.clone(), "port", json!(80)).to_string(), "application/json", "port"),
        ("bad ip", with(good.clone(), "ip", json!("not-an-ip")).to_string(), "application/json", "ip"),
        (
            "missing ip",
            {
                let mut b = good.clone();
                b.as_object_mut().unwrap().remove("ip");
                b.to_string()
            },
            "application/json",
            "ip",
        ),
        ("empty path", with(good.clone(), "path", json!("")).to_string(), "application/json", "path"),
        (
            "ftp rawUrl",
            with(good.clone(), "rawUrl", json!("ftp://127.0.0.1/x")).to_string(),
            "application/json",
            "rawurl",
        ),
        ("relative rawUrl", with(good.clone(), "rawUrl", json!("/x")).to_string(), "application/json", "rawurl"),
        (
            "form with a non-integer port",
            "cid=a&ip=127.0.0.1&port=abc&path=%2Fp&rawUrl=http%3A%2F%2F127.0.0.1%2Fx".into(),
            "application/x-www-form-urlencoded",
            "port",
        ),
    ];
    for (what, body, ct, field) in cases {
        let (status, text) = send(common::client().post(s.url("/peer/registry")), ct, body).await;
        assert_eq!(status, 400, "{what}: {text}");
        let v = common::json(&text);
        assert_eq!(v["code"], 501, "{what}: {text}");
        let msg = v["msg"].as_str().unwrap_or("");
        assert!(!msg.is_empty(), "{what}: {text}");
        assert_eq!(v["message"], msg, "§16 P11: message = msg: {text}");
        if !field.is_empty() {
            assert!(msg.to_ascii_lowercase().contains(field), "{what}: msg should name {field:?}: {text}");
        }
    }
    assert_eq!(origin.stats("/ok.bin").requests, 0, "a refused registration must not reach the source");
}

#[actix_web::test]
async fn registration_source_errors_607_608() {
    let s = common::start().await;
    let origin = Origin::start().await;

    // 404 → 607, naming the cause, and remembered (§16 P8)
    let missing = origin.url("/missing.bin");
    let msg = register_refused(&s, &dfget_body(&missing, "c-1"), 607).await;
    assert!(msg.contains("404"), "607 message should name the cause: {msg}");
    assert_eq!(origin.stats("/missing.bin").requests, 1);
    register_refused(&s, &dfget_body(&missing, "c-2"), 607).await;
    assert_eq!(origin.stats("/missing.bin").requests, 1, "a 404 is remembered: no new origin request");

    // 5xx → 607
    origin.add("/broken.bin", vec![0; 10]);
    origin.set_status("/broken.bin", Some(500));
    let msg = register_refused(&s, &dfget_body(&origin.url("/broken.bin"), "c-3"), 607).await;
    assert!(msg.contains("500"), "607 message should name the cause: {msg}");
    // only 404s and unreachable sources are remembered: a 5xx is asked again
    register_refused(&s, &dfget_body(&origin.url("/broken.bin"), "c-3b"), 607).await;
    assert_eq!(origin.stats("/broken.bin").requests, 2);

    // 401 → 608; 403 → 608
    origin.add("/secret.bin", small_bytes(5000, 3));
    origin.require_auth("/secret.bin", "Bearer x");
    let secret = origin.url("/secret.bin");
    register_refused(&s, &dfget_body(&secret, "c-4"), 608).await;
    origin.add("/forbidden.bin", vec![0; 10]);
    origin.set_status("/forbidden.bin", Some(403));
    register_refused(&s, &dfget_body(&origin.url("/forbidden.bin"), "c-5"), 608).await;

    // with the header → success, and the origin saw it (and 401 is not remembered)
    let body = with(dfget_body(&secret, "c-6"), "headers", json!(["Authorization: Bearer x"]));
    let data = register_ok(&s, &body).await;
    assert_eq!(data["fileLength"], 5000);
    let id = data["taskId"].as_str().unwrap().to_string();
    let info = wait_success(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["realMd5"], hex(&Md5::digest(small_bytes(5000, 3))), "{info}");
    let st = origin.stats("/secret.bin");
    assert_eq!(st.authorization.last().map(String::as_str), Some("Bearer x"));
    assert_eq!(st.body_requests, 1, "{st:?}");

    // unreachable (closed port) → 607, remembered
    let dead = format!("http://127.0.0.1:{}/x.bin", closed_port());
    register_refused(&s, &dfget_body(&dead, "c-7"), 607).await;
    register_refused(&s, &dfget_body(&dead, "c-8"), 607).await;
}

/// Concurrent cold registrations of a missing source: one origin request, all get 607 (§16 P7, P8).
#[actix_web::test]
async fn concurrent_registrations_of_a_missing_source_ask_once() {
    let s = common::start().await;
    let origin = Origin::start().await;
    origin.add("/gone.bin", vec![0; 10]);
    origin.set_status("/gone.bin", Some(404));
    origin.set_delay("/gone.bin", Duration::from_millis(300));
    let url = origin.url("/gone.bin");
    let regs = (0..8).map(|i| {
        let body = dfget_body(&url, &format!("127.0.0.1-{i}-1.000"));
        let s = &s;
        async move { register_raw(s, &body).await }
    });
    for (status, v) in futures_util::future::join_all(regs).await {
        assert_eq!((status, v["code"].as_i64()), (200, Some(607)), "{v}");
    }
    assert_eq!(origin.stats("/gone.bin").requests, 1);
}

#[actix_web::test]
async fn registration_with_range_header_is_that_range() {
    let s = common::start().await;
    let origin = Origin::start().await;
    let content = small_bytes(1000, 9);
    origin.add("/ranged.bin", content.clone());
    let url = origin.url("/ranged.bin");
    let body = with(dfget_body(&url, "c-1"), "headers", json!(["Range: bytes=0-99"]));
    let data = register_ok(&s, &body).await;
    let id = TaskId::compute(&url, "", "", Some("bytes=0-99"));
    assert_eq!(data["taskId"], id.as_str(), "the Range header is part of the taskID");
    assert_eq!(data["fileLength"], 100, "{data}");
    let info = wait_success(&s, id.as_str(), Duration::from_secs(20)).await;
    assert_eq!(info["realMd5"], hex(&Md5::digest(&content[..100])), "{info}");
    assert_eq!(origin.stats("/ranged.bin").ranges, vec!["bytes=0-99".to_string()]);
}

// ---------------------------------------------------------------------------------------
// the CDN file, piece md5s and the download port (§5)
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn sizes_around_piece_boundaries_frame_and_serve() {
    let s = common::start().await;
    let origin = Origin::start().await;
    let sizes = [0, 1, PAYLOAD - 1, PAYLOAD, PAYLOAD + 1, 10 * MIB];
    let mut ids = Vec::new();
    for (i, len) in sizes.iter().enumerate() {
        let path = format!("/size-{len}.bin");
        origin.add_generated(&path, 1000 + i as u64, *len);
        let url = origin.url(&path);
        let data = register_ok(&s, &dfget_body(&url, &format!("c-{i}"))).await;
        assert_eq!(data["fileLength"], *len, "registry fileLength = source length");
        assert_eq!(data["pieceSize"], PIECE);
        assert_eq!(data["taskId"], url_task_id(&url));
        ids.push((path, url, data["taskId"].as_str().unwrap().to_string()));
    }
    for (path, url, id) in &ids {
        let info = wait_success(&s, id, Duration::from_secs(30)).await;
        let content = origin.content(path);
        verify_cached(&s, id, url, &content, &info).await;
        assert_eq!(info["realMd5"], content.md5_hex(), "{path}: {info}");
        let st = origin.stats(path);
        assert_eq!(st.body_requests, 1, "{path}: {st:?}");
        assert_eq!(st.body_bytes, content.len(), "{path}: {st:?}");
    }
    // spot checks of known values (§5.2, §5.4)
    let empty = &ids[0].2;
    let bytes = std::fs::read(data_path(&s.home_path(), empty)).unwrap();
    assert_eq!(bytes, [4, 0, 0, 0, 0x7F], "empty source: one empty piece");
    let info = task_info(&s, &ids[5].2).await;
    assert_eq!(info["fileLength"], 10_485_775);
    assert_eq!(info["pieceTotal"], 3);
}

/// TaskInfo keys are all omitempty (§4.2, §1.5): an empty source's task has
/// `httpFileLength` 0, so that key is left out (as are `md5`, `identifier`, `headers`).
#[actix_web::test]
async fn task_info_omits_zero_values() {
    let s = common::start().await;
    let origin = Origin::start().await;
    origin.add("/empty.bin", Vec::new());
    let id = register_url(&s, &origin.url("/empty.bin"), "c-1").await;
    let info = wait_success(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["fileLength"], 5, "{info}");
    assert_eq!(info["pieceTotal"], 1, "{info}");
    assert_eq!(info["realMd5"], "d41d8cd98f00b204e9800998ecf8427e", "{info}");
    for (k, v) in info.as_object().unwrap() {
        let zero = match v {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
        };
        assert!(!zero, "TaskInfo key {k:?} has a zero value (omitempty): {info}");
    }
}

/// The one source over 200 MiB (201 MiB + 7 bytes): still 4 MiB pieces (§5.1), 51 pieces.
#[actix_web::test]
async fn large_source_over_200_mib() {
    let s = common::start().await;
    let origin = Origin::start().await;
    let len = 201 * MIB + 7;
    origin.add_generated("/big.bin", 42, len);
    let content = origin.content("/big.bin");
    // md5 of the source, computed while the CDN ingests it
    let source_md5 = {
        let content = content.clone();
        tokio::task::spawn_blocking(move || content.md5_hex())
    };
    let url = origin.url("/big.bin");
    let data = register_ok(&s, &dfget_body(&url, "c-big")).await;
    assert_eq!(data["fileLength"], len);
    assert_eq!(data["pieceSize"], PIECE, "201 MiB → 4 MiB pieces (§5.1)");
    let id = data["taskId"].as_str().unwrap().to_string();
    let info = wait_success(&s, &id, Duration::from_secs(120)).await;
    assert_eq!(info["pieceTotal"], 51, "{info}");
    verify_cached_with(&s, &id, &url, &content, &info, source_md5).await;
    let st = origin.stats("/big.bin");
    assert_eq!((st.requests, st.body_requests, st.body_bytes), (1, 1, len));
}

#[actix_web::test]
async fn download_port_ranges_and_confinement() {
    let s = common::start().await;
    let origin = Origin::start().await;
    origin.add("/dl.bin", small_bytes(3000, 1));
    let url = origin.url("/dl.bin");
    let id = register_url(&s, &url, "c-1").await;
    wait_success(&s, &id, Duration::from_secs(20)).await;
    let size = 3000 + 5;

    // whole file without Range
    let (status, _, body) = download(&s, &id, None).await;
    assert_eq!((status, body.len()), (200, size));
    // a range inside, and one running past the end (clamped)
    let (status, h, body) = download(&s, &id, Some("bytes=10-19".into())).await;
    assert_eq!(status, 206);
    assert_eq!(header_str(&h, "content-range"), format!("bytes 10-19/{size}"));
    assert_eq!(body.len(), 10);
    let (status, h, body) = download(&s, &id, Some(format!("bytes=3000-{}", PIECE - 1))).await;
    assert_eq!(status, 206);
    assert_eq!(header_str(&h, "content-range"), format!("bytes 3000-{}/{size}", size - 1));
    let on_disk = std::fs::read(data_path(&s.home_path(), &id)).unwrap();
    assert_eq!(body, on_disk[3000..].to_vec());
    // a range starting at or past the end → 416 with `bytes */size`
    for range in [
        format!("bytes={size}-{}", size + 10),
        format!("bytes={}-", size + 100),
        format!("bytes={PIECE}-{}", 2 * PIECE - 1),
    ] {
        let (status, h, _) = download(&s, &id, Some(range.clone())).await;
        assert_eq!(status, 416, "{range}");
        assert_eq!(header_str(&h, "content-range"), format!("bytes */{size}"), "{range}");
    }
    // unknown id
    let unknown = url_task_id("http://127.0.0.1:1/never-registered");
    let (status, _, _) = download(&s, &unknown, None).await;
    assert_eq!(status, 404);

    // nothing outside the cache, and nothing but the data file inside it
    let home = s.home_path();
    let real = data_path(&home, &id);
    let real_encoded = real.display().to_string().replace('/', "%2F");
    let wrong_prefix = if &id[..3] == "000" { "001" } else { "000" };
    let targets = vec![
        "/download/../../etc/passwd".to_string(),
        "/download/../../../../../../etc/passwd".to_string(),
        "/download/%2e%2e/x".to_string(),
        "/download/%2e%2e/%2e%2e/etc/passwd".to_string(),
        "/download/abc/..%2F..%2Fetc%2Fpasswd".to_string(),
        "/download/abc/%2e%2e%2f%2e%2e%2fetc%2fpasswd".to_string(),
        format!("/download/{}/..%2F..%2F..%2Fetc%2Fpasswd", &id[..3]),
        "/download//etc/passwd".to_string(),
        "/download/%2Fetc/passwd".to_string(),
        "/download/abc/%2Fetc%2Fpasswd".to_string(),
        format!("/download/{}/{real_encoded}", &id[..3]),
        format!("/download/{wrong_prefix}/{id}"),
        format!("/download/{}/{}", &id[..3], id.to_uppercase()),
        format!("/download/{}/{id}.meta", &id[..3]),
        format!("/download/{}/{id}.md5", &id[..3]),
        format!("/download/{}/{id}.tmp", &id[..3]),
        format!("/download/{}/{id}%2Emeta", &id[..3]),
        format!("/download/{}/{id}/", &id[..3]),
        format!("/{}/{id}", &id[..3]),
        format!("/repo/download/{}/{id}", &id[..3]),
        "/etc/passwd".to_string(),
    ];
    // control: the same raw client gets the real file
    let (status, body) = raw_get(s.download(), &format!("/download/{}/{id}", &id[..3])).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    for target in targets {
        let (status, body) = raw_get(s.download(), &target).await;
        assert_eq!(status, 404, "{target}: {}", String::from_utf8_lossy(&body));
        assert!(!String::from_utf8_lossy(&body).contains("root:"), "{target} leaked /etc/passwd");
    }
}

/// While the CDN runs, the download port serves the pieces already on disk and nothing beyond
/// them (§5.7, §16 P13); the task is RUNNING and has no cache file under its final name yet.
#[actix_web::test]
async fn pieces_are_served_while_the_cdn_runs() {
    let s = common::start().await;
    let origin = Origin::start().await;
    let len = 10 * MIB;
    origin.add_generated("/slow.bin", 99, len);
    // one full piece and a bit, then the origin holds the body
    origin.pause_after("/slow.bin", PAYLOAD + 1000);
    let url = origin.url("/slow.bin");
    let id = register_url(&s, &url, "c-1").await;
    let content = origin.content("/slow.bin");

    let start = Instant::now();
    loop {
        let (status, _, body) = download(&s, &id, Some(format!("bytes=0-{}", PIECE - 1))).await;
        if status == 206 {
            assert_eq!(body.len() as u64, PIECE, "piece 0 is complete when served");
            assert_eq!(&body[..4], &(PAYLOAD as u32 | ((PIECE as u32) << 4)).to_be_bytes());
            assert_eq!(body[PIECE as usize - 1], 0x7F);
            assert!(body[4..PIECE as usize - 1] == content.slice(0, PAYLOAD as usize)[..]);
            break;
        }
        assert!(status == 404 || status == 416, "before piece 0 is written: {status}");
        assert!(start.elapsed() < Duration::from_secs(10), "piece 0 never served while running");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let info = task_info(&s, &id).await;
    assert_eq!(info["cdnStatus"], "RUNNING", "{info}");
    // the scheduler hands piece 0 out from the supernode, and nothing that is not on disk
    let mut piece0 = vec![0u8; PIECE as usize];
    piece0[..4].copy_from_slice(&(PAYLOAD as u32 | ((PIECE as u32) << 4)).to_be_bytes());
    content.read_at(0, &mut piece0[4..PIECE as usize - 1]);
    piece0[PIECE as usize - 1] = 0x7F;
    let v = first_poll(&s, "c-1", &id).await;
    assert_eq!(v["code"], 601, "piece 0 is schedulable while the CDN runs: {v}");
    let items = v["data"].as_array().unwrap_or_else(|| panic!("no pieces: {v}"));
    assert_eq!(items.len(), 1, "only piece 0 is on disk: {v}");
    let item = &items[0];
    assert_eq!(item["range"], format!("0-{}", PIECE - 1), "{v}");
    assert_eq!(item["pieceNum"], 0, "{v}");
    assert_eq!(item["pieceSize"], PIECE, "{v}");
    assert_eq!(item["pieceMd5"], format!("{}:{PIECE}", hex(&Md5::digest(&piece0))), "{v}");
    assert_eq!(item["cid"], format!("cdnnode:127.0.0.1~{id}"), "{v}");
    assert_eq!(item["peerIp"], "127.0.0.1", "{v}");
    assert_eq!(item["peerPort"], s.download().port(), "{v}");
    assert_eq!(item["path"], format!("/download/{}/{id}", &id[..3]), "{v}");
    assert!(!data_path(&s.home_path(), &id).exists(), "an unfinished file has no final name");
    // piece 1 is not on disk yet: not served
    let (status, _, body) = download(&s, &id, Some(format!("bytes={}-{}", PIECE, 2 * PIECE - 1))).await;
    assert!(!(200..300).contains(&status), "unwritten piece served: {status}, {} bytes", body.len());
    let (status, _, body) = download(&s, &id, None).await;
    assert!(status != 200 || body.len() as u64 <= PIECE, "whole-file GET while running returned {} bytes", body.len());

    origin.resume("/slow.bin");
    let info = wait_success(&s, &id, Duration::from_secs(30)).await;
    verify_cached(&s, &id, &url, &content, &info).await;
    assert_eq!(origin.stats("/slow.bin").body_requests, 1);
}

/// A temporary file, or a data file whose `.meta` is not finished and successful, is never
/// served and is deleted at start (§16 P13).
#[actix_web::test]
async fn partial_cache_files_are_removed_at_start() {
    let home = tempfile::tempdir().unwrap();
    let tmp_id = url_task_id("http://127.0.0.1:1/tmp-only.bin");
    let partial_id = url_task_id("http://127.0.0.1:1/partial.bin");
    for id in [&tmp_id, &partial_id] {
        std::fs::create_dir_all(cache_dir(home.path(), id)).unwrap();
    }
    std::fs::write(suffixed(home.path(), &tmp_id, ".tmp"), [4, 0, 0, 0, 0x7F]).unwrap();
    // Go's layout for a run that never finished: data, and .meta with finish=false
    std::fs::write(data_path(home.path(), &partial_id), [4, 0, 0, 0, 0x7F]).unwrap();
    let meta = json!({
        "taskID": partial_id, "url": "http://127.0.0.1:1/partial.bin", "pieceSize": PIECE,
        "httpFileLen": 0, "bizId": "", "accessTime": 0, "interval": 0, "fileLength": 5,
        "md5": "", "realMd5": "", "lastModified": 0, "eTag": "", "finish": false,
        "success": false
    });
    std::fs::write(suffixed(home.path(), &partial_id, ".meta"), meta.to_string()).unwrap();

    let server = supernode::start(common::settings(home.path(), Config::default())).await.expect("server starts");
    let s = TestServer { server, home };
    let home = s.home_path();
    assert!(!suffixed(&home, &tmp_id, ".tmp").exists(), "temporary file removed");
    assert!(!data_path(&home, &partial_id).exists(), "partial file removed");
    assert!(!suffixed(&home, &partial_id, ".meta").exists());
    for id in [&tmp_id, &partial_id] {
        let (status, _, _) = download(&s, id, Some("bytes=0-4".into())).await;
        assert_eq!(status, 404, "{id}");
        let (status, _) = get_json(&s, &format!("/api/v1/tasks/{id}")).await;
        assert_eq!(status, 404, "{id}");
    }
}

// ---------------------------------------------------------------------------------------
// one fetch per task (§16 P7), restart (§16 P13), revalidation (§16 P13)
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn eight_concurrent_cold_registrations_fetch_once() {
    let s = common::start().await;
    let origin = Origin::start().await;
    let len = 64 * MIB;
    origin.add_generated("/cold64m.bin", 64, len);
    // the head comes late, so every registration arrives while the source is being opened;
    // then the body holds after 8 MiB, so more registrations arrive while the CDN runs
    origin.set_delay("/cold64m.bin", Duration::from_millis(300));
    origin.pause_after("/cold64m.bin", 8 * MIB);
    let url = origin.url("/cold64m.bin");
    let id = url_task_id(&url);
    let register_many = |round: u32| {
        let s = &s;
        let url = &url;
        futures_util::future::join_all((0..8).map(move |i| async move {
            register_ok(s, &dfget_body(url, &format!("127.0.0.1-{round}{i}-1.000"))).await
        }))
    };
    for d in register_many(1).await {
        assert_eq!(d["taskId"], id.as_str(), "{d}");
        assert_eq!(d["fileLength"], len, "{d}");
        assert_eq!(d["pieceSize"], PIECE, "{d}");
    }
    let st = origin.stats("/cold64m.bin");
    assert_eq!(st.body_requests, 1, "cold registrations: one body GET: {st:?}");
    assert!(st.requests <= 2, "at most one probe and one body GET: {st:?}");

    // while the CDN runs, later registrations join it
    assert_eq!(task_info(&s, &id).await["cdnStatus"], "RUNNING");
    for d in register_many(2).await {
        assert_eq!(d["taskId"], id.as_str(), "{d}");
        assert_eq!(d["fileLength"], len, "{d}");
    }
    origin.resume("/cold64m.bin");
    let info = wait_success(&s, &id, Duration::from_secs(60)).await;
    assert_eq!(info["fileLength"], 67_108_949, "{info}");
    assert_eq!(info["pieceTotal"], 17, "{info}");
    let st = origin.stats("/cold64m.bin");
    assert_eq!(st.body_requests, 1, "exactly one body fetch: {st:?}");
    assert_eq!(st.body_bytes, len, "{st:?}");
    assert!(st.requests <= 2, "at most one probe and one body GET: {st:?}");
}

#[actix_web::test]
async fn restart_serves_the_cache_without_the_source() {
    let home = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let content = small_bytes(PAYLOAD as usize + 1000, 5);
    origin.add("/restart.bin", content.clone());
    let url = origin.url("/restart.bin");

    let first = supernode::start(common::settings(home.path(), Config::default())).await.expect("first server");
    let s1 = TestServer { server: first, home };
    let id = register_url(&s1, &url, "c-1").await;
    let info1 = wait_success(&s1, &id, Duration::from_secs(20)).await;
    s1.server.stop(true).await;
    let before = origin.stats("/restart.bin");
    assert_eq!(before.requests, 1, "{before:?}");

    let TestServer { home, .. } = s1;
    let second = supernode::start(common::settings(home.path(), Config::default()))
        .await
        .expect("second server on the same home");
    let s2 = TestServer { server: second, home };
    // TaskInfo is there after the restart, before any registration
    let (status, info) = get_json(&s2, &format!("/api/v1/tasks/{id}")).await;
    assert_eq!(status, 200, "TaskInfo after restart: {info}");
    assert_eq!(info["cdnStatus"], "SUCCESS", "{info}");
    for key in ["fileLength", "httpFileLength", "pieceSize", "pieceTotal", "realMd5", "taskURL"] {
        assert_eq!(info[key], info1[key], "{key} after restart: {info}");
    }
    // registering again: SUCCESS at once, no origin request
    let data = register_ok(&s2, &dfget_body(&url, "c-2")).await;
    assert_eq!(data["taskId"], id.as_str());
    assert_eq!(data["fileLength"], content.len());
    let info = task_info(&s2, &id).await;
    assert_eq!(info["cdnStatus"], "SUCCESS", "immediately SUCCESS: {info}");
    assert_eq!(origin.stats("/restart.bin"), before, "no origin request after restart");
    // and the download port of the new server serves the file
    let (status, _, body) = download(&s2, &id, Some(format!("bytes={}-{}", PIECE, 2 * PIECE - 1))).await;
    assert_eq!(status, 206);
    assert_eq!(body.len(), 1000 + 5);
    assert_eq!(&body[4..1004], &content[PAYLOAD as usize..]);
    s2.server.stop(true).await;
    assert!(data_path(&s2.home_path(), &id).exists());
}

#[actix_web::test]
async fn deleted_task_is_revalidated_304_then_refetched_when_changed() {
    let s = common::start().await;
    let origin = Origin::start().await;
    let v1 = small_bytes(MIB as usize, 11);
    origin.add("/reval.bin", v1.clone());
    let url = origin.url("/reval.bin");
    let id = register_url(&s, &url, "c-1").await;
    let info = wait_success(&s, &id, Duration::from_secs(20)).await;
    let md5_v1 = info["realMd5"].as_str().unwrap().to_string();
    assert_eq!(md5_v1, hex(&Md5::digest(&v1)));
    let st1 = origin.stats("/reval.bin");
    assert_eq!((st1.requests, st1.body_requests), (1, 1));

    // forget the task, keep the file (full=false) → one conditional GET answered 304
    let (status, body) =
        common::call(common::client().delete(s.url(&format!("/api/v1/tasks/{id}?full=false"))), None).await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = get_json(&s, &format!("/api/v1/tasks/{id}")).await;
    assert_eq!(status, 404, "deleted task is unknown");
    assert!(data_path(&s.home_path(), &id).exists(), "full=false keeps the file");
    let data = register_ok(&s, &dfget_body(&url, "c-2")).await;
    assert_eq!(data["fileLength"], v1.len(), "source length of the revalidated copy");
    let info = wait_success(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["realMd5"], md5_v1.as_str());
    let st2 = origin.stats("/reval.bin");
    assert_eq!(st2.requests, 2, "{st2:?}");
    assert_eq!(st2.conditional, 1, "a conditional GET: {st2:?}");
    assert_eq!(st2.not_modified, 1, "answered 304: {st2:?}");
    assert_eq!(st2.body_requests, 1, "no new body: {st2:?}");
    assert_eq!(st2.body_bytes, st1.body_bytes, "no body bytes: {st2:?}");
    verify_cached(&s, &id, &url, &origin.content("/reval.bin"), &info).await;

    // the source changes → delete + register downloads again
    let v2 = small_bytes(MIB as usize + 17, 12);
    origin.replace("/reval.bin", v2.clone());
    let (status, _) = common::call(common::client().delete(s.url(&format!("/api/v1/tasks/{id}"))), None).await;
    assert_eq!(status, 204);
    let data = register_ok(&s, &dfget_body(&url, "c-3")).await;
    assert_eq!(data["fileLength"], v2.len());
    let info = wait_success(&s, &id, Duration::from_secs(20)).await;
    assert_ne!(info["realMd5"], md5_v1.as_str(), "realMd5 changes with the content");
    assert_eq!(info["realMd5"], hex(&Md5::digest(&v2)));
    let st3 = origin.stats("/reval.bin");
    assert_eq!(st3.requests, 3, "{st3:?}");
    assert_eq!(st3.body_requests, 2, "{st3:?}");
    assert_eq!(st3.body_bytes, v1.len() as u64 + v2.len() as u64, "{st3:?}");
    verify_cached(&s, &id, &url, &origin.content("/reval.bin"), &info).await;
}

/// A cached copy without validators cannot be revalidated: it is downloaded again (§16 P13).
#[actix_web::test]
async fn cached_copy_without_validators_is_downloaded_again() {
    let s = common::start().await;
    let origin = Origin::start().await;
    let content = small_bytes(100_000, 41);
    origin.add("/noval.bin", content.clone());
    origin.set_validators("/noval.bin", false);
    let url = origin.url("/noval.bin");
    let id = register_url(&s, &url, "c-1").await;
    wait_success(&s, &id, Duration::from_secs(20)).await;
    let (status, _) = common::call(common::client().delete(s.url(&format!("/api/v1/tasks/{id}"))), None).await;
    assert_eq!(status, 204);
    register_url(&s, &url, "c-2").await;
    let info = wait_success(&s, &id, Duration::from_secs(20)).await;
    let st = origin.stats("/noval.bin");
    assert_eq!(st.requests, 2, "{st:?}");
    assert_eq!(st.conditional, 0, "nothing to send a conditional GET with: {st:?}");
    assert_eq!(st.body_requests, 2, "downloaded again: {st:?}");
    verify_cached(&s, &id, &url, &origin.content("/noval.bin"), &info).await;
}

/// A source without Content-Length: registry `fileLength` -1 (§3.1), 4 MiB pieces (§5.1), and
/// the CDN still produces the right file.
#[actix_web::test]
async fn source_of_unknown_length_is_cached() {
    let s = common::start().await;
    let origin = Origin::start().await;
    let len = PIECE + 12_345;
    origin.add_generated("/chunked.bin", 8, len);
    origin.set_chunked("/chunked.bin", true);
    let url = origin.url("/chunked.bin");
    let data = register_ok(&s, &dfget_body(&url, "c-1")).await;
    assert_eq!(data["fileLength"], -1, "unknown length: {data}");
    assert_eq!(data["pieceSize"], PIECE, "{data}");
    let id = data["taskId"].as_str().unwrap().to_string();
    let mut info = wait_success(&s, &id, Duration::from_secs(20)).await;
    // the probe's -1 may stay in TaskInfo (Go keeps it); the CDN length must be right
    if info["httpFileLength"] == -1 {
        info["httpFileLength"] = json!(len);
    }
    verify_cached(&s, &id, &url, &origin.content("/chunked.bin"), &info).await;
}

// ---------------------------------------------------------------------------------------
// verification and failures (§6.4, §16 P12, P13)
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn client_md5_is_checked() {
    let s = common::start().await;
    let origin = Origin::start().await;
    let content = small_bytes(PAYLOAD as usize + 10, 21);
    let right = hex(&Md5::digest(&content));
    origin.add("/md5.bin", content);
    let url = origin.url("/md5.bin");
    let home = s.home_path();

    let wrong = "0123456789abcdef0123456789abcdef";
    let data = register_ok(&s, &with(dfget_body(&url, "c-1"), "md5", json!(wrong))).await;
    let id = data["taskId"].as_str().unwrap().to_string();
    assert_eq!(id, TaskId::compute(&url, wrong, "", None).as_str(), "md5 is the sign");
    let info = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["cdnStatus"], "FAILED", "md5 mismatch → FAILED: {info}");
    assert!(info["errorMsg"].as_str().is_some_and(|m| !m.is_empty()), "a reason: {info}");
    assert_eq!(info["md5"], wrong);
    eventually("the mismatching file is discarded", || {
        !data_path(&home, &id).exists() && !suffixed(&home, &id, ".tmp").exists()
    })
    .await;
    let (status, _, _) = download(&s, &id, Some("bytes=0-99".into())).await;
    assert_eq!(status, 404, "a discarded file is not served");
    let v = first_poll(&s, "c-1", &id).await;
    assert_eq!(v["code"], 604, "md5 mismatch → 604 (§16 P12): {v}");

    let data = register_ok(&s, &with(dfget_body(&url, "c-2"), "md5", json!(right))).await;
    let id = data["taskId"].as_str().unwrap().to_string();
    let info = wait_success(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["md5"], right.as_str());
    assert_eq!(info["realMd5"], right.as_str());
    assert!(data_path(&home, &id).exists());
}

#[actix_web::test]
async fn source_failing_mid_body_fails_then_retries_from_scratch() {
    let s = common::start().await;
    let origin = Origin::start().await;
    let len = 10 * MIB;
    origin.add_generated("/cut.bin", 77, len);
    origin.fail_after("/cut.bin", 5 * MIB + 3);
    let url = origin.url("/cut.bin");
    let home = s.home_path();

    let id = register_url(&s, &url, "c-1").await;
    let info = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["cdnStatus"], "FAILED", "body cut off → FAILED (§16 P12): {info}");
    assert!(info["errorMsg"].as_str().is_some_and(|m| !m.is_empty()), "a reason: {info}");
    assert!(info.get("realMd5").is_none(), "{info}");
    eventually("no data file and no .tmp after a failed run", || {
        !data_path(&home, &id).exists() && !suffixed(&home, &id, ".tmp").exists()
    })
    .await;
    assert_eq!(origin.stats("/cut.bin").requests, 1);
    // the waiting client learns that the CDN failed: 604 with the reason (§16 P9, P12)
    let v = first_poll(&s, "c-1", &id).await;
    assert_eq!(v["code"], 604, "{v}");
    assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");

    // the next registration retries from scratch (still failing)
    register_url(&s, &url, "c-2").await;
    let info = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["cdnStatus"], "FAILED", "{info}");
    let st = origin.stats("/cut.bin");
    assert_eq!(st.requests, 2, "a new source request: {st:?}");
    assert!(st.ranges.is_empty(), "from scratch, not resumed with a Range: {st:?}");

    // and succeeds once the origin behaves
    origin.stop_failing("/cut.bin");
    register_url(&s, &url, "c-3").await;
    let info = wait_success(&s, &id, Duration::from_secs(30)).await;
    let st = origin.stats("/cut.bin");
    assert_eq!(st.requests, 3, "{st:?}");
    assert!(st.ranges.is_empty(), "{st:?}");
    verify_cached(&s, &id, &url, &origin.content("/cut.bin"), &info).await;
}

// ---------------------------------------------------------------------------------------
// the v1 task API (§4.2, §4.3, §2.1)
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn v1_task_api_create_get_delete() {
    let s = common::start().await;
    let origin = Origin::start().await;
    let content = small_bytes(2000, 31);
    origin.add("/api.bin", content.clone());
    let raw_a = origin.url("/api.bin?token=a&x=1");
    let raw_b = origin.url("/api.bin?token=b&x=1");
    let filtered = origin.url("/api.bin?x=1");

    let (status, text) = common::call(
        common::client().post(s.url("/api/v1/tasks")),
        Some(&json!({"rawURL": raw_a, "filter": ["token"]}).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let v = common::json(&text);
    let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["ID", "fileLength", "pieceSize", "cdnSource"]), "{v}");
    assert_eq!(v["ID"], url_task_id(&filtered), "filtered taskURL: {v}");
    assert_eq!(v["fileLength"], 2000);
    assert_eq!(v["pieceSize"], PIECE);
    assert_eq!(v["cdnSource"], "supernode");
    let id = v["ID"].as_str().unwrap().to_string();

    let (status, text) = common::call(
        common::client().post(s.url("/api/v1/tasks")),
        Some(&json!({"rawURL": raw_b, "filter": ["token"]}).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    assert_eq!(common::json(&text)["ID"], id.as_str(), "only the filtered key differs");

    let info = wait_success(&s, &id, Duration::from_secs(20)).await;
    assert_task_info_keys(&info);
    assert_eq!(info["taskURL"], filtered.as_str(), "{info}");
    assert_eq!(info["realMd5"], hex(&Md5::digest(&content)));
    assert_eq!(origin.stats("/api.bin").body_requests, 1);

    // unknown ids → 404 (also a malformed one)
    let unknown = url_task_id("http://127.0.0.1:1/unknown");
    let (status, _) = get_json(&s, &format!("/api/v1/tasks/{unknown}")).await;
    assert_eq!(status, 404);
    let (status, _) = get_json(&s, "/api/v1/tasks/not-a-task-id").await;
    assert_eq!(status, 404);

    // full delete → 204 and the files are gone
    let home = s.home_path();
    assert!(data_path(&home, &id).exists());
    let (status, body) =
        common::call(common::client().delete(s.url(&format!("/api/v1/tasks/{id}?full=true"))), None).await;
    assert_eq!(status, 204, "{body}");
    eventually("cache files removed by full=true", || {
        ["", ".meta", ".md5", ".tmp"].iter().all(|suf| !suffixed(&home, &id, suf).exists())
    })
    .await;
    let (status, _) = get_json(&s, &format!("/api/v1/tasks/{id}")).await;
    assert_eq!(status, 404);
    let (status, _) =
        common::call(common::client().delete(s.url(&format!("/api/v1/tasks/{id}?full=true"))), None).await;
    assert_eq!(status, 404, "deleting an unknown task");
    let (status, _) = common::call(common::client().delete(s.url(&format!("/api/v1/tasks/{unknown}"))), None).await;
    assert_eq!(status, 404);
    let (status, _, _) = download(&s, &id, None).await;
    assert_eq!(status, 404, "a fully deleted file is not served");
}

// ---------------------------------------------------------------------------------------
// metrics (§10.3, issue 3 item 9)
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn cdn_metrics_count_bytes_hits_and_durations() {
    let s = common::start().await;
    let origin = Origin::start().await;
    let len = 2 * MIB + 3;
    origin.add_generated("/m.bin", 5, len);
    let url = origin.url("/m.bin");
    let id = register_url(&s, &url, "c-1").await;
    wait_success(&s, &id, Duration::from_secs(20)).await;

    let text = metrics(&s).await;
    assert_eq!(
        metric(&text, "dragonfly_supernode_cdn_download_size_bytes_total"),
        Some(len as f64),
        "bytes fetched from the source"
    );
    assert_eq!(metric(&text, "dragonfly_supernode_cdn_duration_seconds_count"), Some(1.0), "one CDN duration observed");
    assert!(metric(&text, "dragonfly_supernode_cdn_cache_hit_total").unwrap_or(0.0) == 0.0, "no hit yet");

    // a 304 reuse is a cache hit and fetches nothing
    let (status, _) = common::call(common::client().delete(s.url(&format!("/api/v1/tasks/{id}"))), None).await;
    assert_eq!(status, 204);
    register_url(&s, &url, "c-2").await;
    wait_success(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(origin.stats("/m.bin").not_modified, 1);
    let text = metrics(&s).await;
    assert_eq!(metric(&text, "dragonfly_supernode_cdn_cache_hit_total"), Some(1.0));
    assert_eq!(
        metric(&text, "dragonfly_supernode_cdn_download_size_bytes_total"),
        Some(len as f64),
        "no bytes for a 304"
    );
    assert_eq!(metric(&text, "dragonfly_supernode_cdn_duration_seconds_count"), Some(2.0));
    assert!(text.contains("dragonfly_supernode_cdn_duration_seconds_bucket{"));
}
