//! Checking a SUCCESS task against its source, down to every byte on disk and on the wire.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use md5::{Digest, Md5};
use serde_json::Value;
use testkit::origin::{hex, Content};
use testkit::{data_path, download, TestServer};

use crate::{assert_task_info_keys, header_str, piece_count, suffixed};

/// Checks a SUCCESS task against its source: TaskInfo, the framed cache file, the `.md5` list,
/// and every full-slot range read from the download port.
pub(crate) async fn verify_cached(s: &TestServer, id: &str, url: &str, source: &Content, info: &Value) {
    let src = source.clone();
    let source_md5 = tokio::task::spawn_blocking(move || src.md5_hex());
    verify_cached_with(s, id, url, source, info, source_md5).await;
}

/// [`verify_cached`] with the source's md5 already being computed (big files start it early).
pub(crate) async fn verify_cached_with(
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

    // every full slot (the range a piece is handed out with) from the download port, clamped
    // by the server to the file end: the bytes of the file, and stripping the 4 + 1 framing
    // bytes rebuilds the source
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
        let (status, headers, body) = download(s.download(), id, Some(range.clone())).await;
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

/// The framed file: every piece's big-endian header `dataLen | pieceSize<<4`, payload = the
/// source at `n·(pieceSize−5)`, trailer 0x7F, and `md5:len` (md5 of the whole framed piece and
/// its length) equal to its `.md5` line.
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
