//! The cache file and the download port: framing and piece md5s for sizes around piece
//! boundaries, an empty and a 201 MiB source, a source of unknown length, ranges and path
//! confinement, pieces served while the CDN still runs, and partial files removed at start.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use serde_json::{json, Value};
use testkit::origin::{hex, salted_bytes, Origin};
use testkit::protocol::url_task_id;
use testkit::{
    cache_dir, data_path, dfget_body, download, first_poll, get_json, task_info, wait_success, Config, TestServer,
};

use crate::verify::{verify_cached, verify_cached_with};
use crate::{header_str, register_ok, register_url, suffixed, MIB, PAYLOAD, PIECE};

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

#[actix_web::test]
async fn sizes_around_piece_boundaries_frame_and_serve() {
    let s = testkit::start().await;
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
    // spot checks of known values: an empty source is one empty piece, 10 MiB are 3 pieces
    let empty = &ids[0].2;
    let bytes = std::fs::read(data_path(&s.home_path(), empty)).unwrap();
    assert_eq!(bytes, [4, 0, 0, 0, 0x7F], "empty source: one empty piece");
    let info = task_info(&s, &ids[5].2).await;
    assert_eq!(info["fileLength"], 10_485_775);
    assert_eq!(info["pieceTotal"], 3);
}

/// TaskInfo leaves out every key whose value is zero, empty or false (Go's `omitempty`): an
/// empty source's task has
/// `httpFileLength` 0, so that key is left out (as are `md5`, `identifier`, `headers`).
#[actix_web::test]
async fn task_info_omits_zero_values() {
    let s = testkit::start().await;
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

/// The one source over 200 MiB (201 MiB + 7 bytes): above 200 MiB pieces are
/// (⌊len / 100 MiB⌋ + 2) MiB, which is still 4 MiB here; 51 pieces.
#[actix_web::test]
async fn large_source_over_200_mib() {
    let s = testkit::start().await;
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
    assert_eq!(data["pieceSize"], PIECE, "201 MiB → (2 + 2) MiB pieces");
    let id = data["taskId"].as_str().unwrap().to_string();
    let info = wait_success(&s, &id, Duration::from_secs(120)).await;
    assert_eq!(info["pieceTotal"], 51, "{info}");
    verify_cached_with(&s, &id, &url, &content, &info, source_md5).await;
    let st = origin.stats("/big.bin");
    assert_eq!((st.requests, st.body_requests, st.body_bytes), (1, 1, len));
}

#[actix_web::test]
async fn download_port_ranges_and_confinement() {
    let s = testkit::start().await;
    let origin = Origin::start().await;
    origin.add("/dl.bin", salted_bytes(3000, 1));
    let url = origin.url("/dl.bin");
    let id = register_url(&s, &url, "c-1").await;
    wait_success(&s, &id, Duration::from_secs(20)).await;
    let size = 3000 + 5;

    // whole file without Range
    let (status, _, body) = download(s.download(), &id, None).await;
    assert_eq!((status, body.len()), (200, size));
    // a range inside, and one running past the end (clamped)
    let (status, h, body) = download(s.download(), &id, Some("bytes=10-19".into())).await;
    assert_eq!(status, 206);
    assert_eq!(header_str(&h, "content-range"), format!("bytes 10-19/{size}"));
    assert_eq!(body.len(), 10);
    let (status, h, body) = download(s.download(), &id, Some(format!("bytes=3000-{}", PIECE - 1))).await;
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
        let (status, h, _) = download(s.download(), &id, Some(range.clone())).await;
        assert_eq!(status, 416, "{range}");
        assert_eq!(header_str(&h, "content-range"), format!("bytes */{size}"), "{range}");
    }
    // unknown id
    let unknown = url_task_id("http://127.0.0.1:1/never-registered");
    let (status, _, _) = download(s.download(), &unknown, None).await;
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
/// them (read from the temporary file; a piece is handed out only once it is written); the task
/// is RUNNING and has no cache file under its final name yet.
#[actix_web::test]
async fn pieces_are_served_while_the_cdn_runs() {
    let s = testkit::start().await;
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
        let (status, _, body) = download(s.download(), &id, Some(format!("bytes=0-{}", PIECE - 1))).await;
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
    let (status, _, body) = download(s.download(), &id, Some(format!("bytes={}-{}", PIECE, 2 * PIECE - 1))).await;
    assert!(!(200..300).contains(&status), "unwritten piece served: {status}, {} bytes", body.len());
    let (status, _, body) = download(s.download(), &id, None).await;
    assert!(status != 200 || body.len() as u64 <= PIECE, "whole-file GET while running returned {} bytes", body.len());

    origin.resume("/slow.bin");
    let info = wait_success(&s, &id, Duration::from_secs(30)).await;
    verify_cached(&s, &id, &url, &content, &info).await;
    assert_eq!(origin.stats("/slow.bin").body_requests, 1);
}

/// A temporary file, or a data file whose `.meta` is not finished and successful, is never
/// served; without a recorded length and validator (Go's partial files have neither) it is
/// deleted at start, as a resume could not prove the rest belongs to the same file.
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

    let s = TestServer::start_in(home, Config::default()).await;
    let home = s.home_path();
    assert!(!suffixed(&home, &tmp_id, ".tmp").exists(), "temporary file removed");
    assert!(!data_path(&home, &partial_id).exists(), "partial file removed");
    assert!(!suffixed(&home, &partial_id, ".meta").exists());
    for id in [&tmp_id, &partial_id] {
        let (status, _, _) = download(s.download(), id, Some("bytes=0-4".into())).await;
        assert_eq!(status, 404, "{id}");
        let (status, _) = get_json(&s, &format!("/api/v1/tasks/{id}")).await;
        assert_eq!(status, 404, "{id}");
    }
}

/// A source without Content-Length: the registry reply's `fileLength` is -1 (unknown), pieces
/// are 4 MiB, and
/// the CDN still produces the right file.
#[actix_web::test]
async fn source_of_unknown_length_is_cached() {
    let s = testkit::start().await;
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
