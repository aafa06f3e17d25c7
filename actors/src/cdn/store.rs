//! The cache on disk (PROTOCOL.md §5.6, §16 P13).
//!
//! ```text
//! <home>/repo/download/<id[0:3]>/<id>       CDN file (wrapped pieces), complete and verified
//! <home>/repo/download/<id[0:3]>/<id>.tmp   the file while a run writes it
//! <home>/repo/download/<id[0:3]>/<id>.meta  metadata (Go's keys plus ours)
//! <home>/repo/download/<id[0:3]>/<id>.md5   piece md5 list, file md5, SHA-1 of both
//! ```
//! Every metadata write goes to a temporary name and is renamed, so a crash leaves
//! either the old or the new version. Only a `.meta` with `finish && success` and a
//! data file of the recorded length is ever loaded; everything else is deleted at start.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use sha1::Sha1;

use crate::ids::TaskId;
use crate::piece::{piece_md5_string, unwrap_piece, PieceLayout, DEFAULT_PIECE_SIZE};

/// `.meta`: Go's keys (so Go caches stay readable) plus `rawURL`, `headers`, `insecure`, `rootCAs`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FileMeta {
    #[serde(rename = "taskID")]
    pub task_id: String,
    /// taskURL.
    pub url: String,
    #[serde(rename = "pieceSize")]
    pub piece_size: u64,
    #[serde(rename = "httpFileLen")]
    pub http_file_len: i64,
    #[serde(rename = "bizId")]
    pub biz_id: String,
    /// ms epoch.
    #[serde(rename = "accessTime")]
    pub access_time: i64,
    pub interval: i64,
    #[serde(rename = "fileLength")]
    pub file_length: i64,
    pub md5: String,
    #[serde(rename = "realMd5")]
    pub real_md5: String,
    /// ms epoch, second precision.
    #[serde(rename = "lastModified")]
    pub last_modified: i64,
    #[serde(rename = "eTag")]
    pub etag: String,
    pub finish: bool,
    pub success: bool,
    #[serde(rename = "rawURL")]
    pub raw_url: String,
    pub headers: BTreeMap<String, String>,
    pub insecure: bool,
    #[serde(rename = "rootCAs")]
    pub root_cas: Vec<String>,
}

impl FileMeta {
    pub fn is_complete(&self) -> bool {
        self.finish && self.success
    }

    pub fn layout(&self) -> PieceLayout {
        let piece_size = if self.piece_size == 0 { DEFAULT_PIECE_SIZE } else { self.piece_size };
        PieceLayout::new(self.http_file_len.max(0) as u64, piece_size)
    }
}

/// The cache directory and the names inside it.
#[derive(Clone, Debug)]
pub struct CacheStore {
    root: PathBuf,
}

/// A complete cached file found at start.
#[derive(Clone, Debug)]
pub struct CachedFile {
    pub meta: FileMeta,
    pub piece_md5s: Vec<String>,
    pub size: u64,
}

impl CacheStore {
    /// `<home>/repo/download`, created if missing.
    pub fn open(home: &Path) -> io::Result<CacheStore> {
        let root = home.join("repo").join("download");
        fs::create_dir_all(&root)?;
        Ok(CacheStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, id: &TaskId) -> PathBuf {
        self.root.join(id.prefix())
    }

    pub fn data_path(&self, id: &TaskId) -> PathBuf {
        self.dir(id).join(id.as_str())
    }

    pub fn temp_path(&self, id: &TaskId) -> PathBuf {
        self.dir(id).join(format!("{id}.tmp"))
    }

    fn meta_path(&self, id: &TaskId) -> PathBuf {
        self.dir(id).join(format!("{id}.meta"))
    }

    fn md5_path(&self, id: &TaskId) -> PathBuf {
        self.dir(id).join(format!("{id}.md5"))
    }

    pub fn read_meta(&self, id: &TaskId) -> Option<FileMeta> {
        let text = fs::read(self.meta_path(id)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn write_meta(&self, id: &TaskId, meta: &FileMeta) -> io::Result<()> {
        fs::create_dir_all(self.dir(id))?;
        let body = serde_json::to_vec(meta).map_err(io::Error::other)?;
        write_atomic(&self.meta_path(id), &body)
    }

    /// `.md5`: piece md5s, file md5, SHA-1 of the previous lines concatenated; no trailing newline.
    pub fn write_md5_list(&self, id: &TaskId, piece_md5s: &[String], file_md5: &str) -> io::Result<()> {
        let mut lines: Vec<&str> = piece_md5s.iter().map(String::as_str).collect();
        lines.push(file_md5);
        let mut sha = Sha1::new();
        for l in &lines {
            sha.update(l.as_bytes());
        }
        let digest = hex::encode(sha.finalize());
        let mut text = lines.join("\n");
        text.push('\n');
        text.push_str(&digest);
        write_atomic(&self.md5_path(id), text.as_bytes())
    }

    /// Reads `.md5` back; `None` unless its SHA-1 line and file md5 check out.
    pub fn read_md5_list(&self, id: &TaskId, file_md5: &str, pieces: u64) -> Option<Vec<String>> {
        let text = fs::read_to_string(self.md5_path(id)).ok()?;
        let mut lines: Vec<&str> = text.split('\n').collect();
        let digest = lines.pop()?;
        let mut sha = Sha1::new();
        for l in &lines {
            sha.update(l.as_bytes());
        }
        if hex::encode(sha.finalize()) != digest {
            return None;
        }
        let md5_line = lines.pop()?;
        if md5_line != file_md5 || lines.len() as u64 != pieces {
            return None;
        }
        Some(lines.into_iter().map(str::to_string).collect())
    }

    /// Deletes the data, temporary, metadata and md5 files of a task, and its directory when empty.
    pub fn remove_all(&self, id: &TaskId) {
        let dir = self.dir(id);
        for suffix in ["", ".tmp", ".meta", ".md5", ".meta.part", ".md5.part"] {
            let _ = fs::remove_file(dir.join(format!("{id}{suffix}")));
        }
        let _ = fs::remove_dir(self.dir(id));
    }

    pub fn remove_temp(&self, id: &TaskId) {
        let _ = fs::remove_file(self.temp_path(id));
    }

    /// Start-up scan: keeps complete, verified files; deletes temporaries and anything partial.
    pub fn scan(&self) -> Vec<CachedFile> {
        let mut found = Vec::new();
        let Ok(dirs) = fs::read_dir(&self.root) else { return found };
        for dir in dirs.flatten() {
            let Ok(entries) = fs::read_dir(dir.path()) else { continue };
            let mut ids = std::collections::BTreeSet::new();
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let stem = name.split('.').next().unwrap_or("");
                match TaskId::parse(stem) {
                    Some(id) if id.prefix() == dir.file_name().to_string_lossy() => {
                        ids.insert(id);
                    }
                    _ => tracing::warn!(file = %entry.path().display(), "ignoring unexpected file in cache"),
                }
            }
            for id in ids {
                match self.load_complete(&id) {
                    Some(f) => found.push(f),
                    None => {
                        tracing::info!(task = %id, "removing partial or unverifiable cache entry");
                        self.remove_all(&id);
                    }
                }
            }
        }
        found
    }

    fn load_complete(&self, id: &TaskId) -> Option<CachedFile> {
        self.remove_temp(id);
        let meta = self.read_meta(id)?;
        if !meta.is_complete() || meta.task_id != id.as_str() || meta.http_file_len < 0 {
            return None;
        }
        let layout = meta.layout();
        let size = fs::metadata(self.data_path(id)).ok()?.len();
        if size != layout.file_length() || meta.file_length != size as i64 {
            return None;
        }
        let piece_md5s = match self.read_md5_list(id, &meta.real_md5, layout.piece_count()) {
            Some(list) => list,
            None => {
                let (list, file_md5) = rehash(&self.data_path(id), &layout).ok()?;
                if file_md5 != meta.real_md5 {
                    return None;
                }
                self.write_md5_list(id, &list, &file_md5).ok()?;
                list
            }
        };
        Some(CachedFile { meta, piece_md5s, size })
    }

    /// Bytes and number of complete files in the cache.
    pub fn usage(&self) -> (u64, u64) {
        let mut bytes = 0;
        let mut files = 0;
        let Ok(dirs) = fs::read_dir(&self.root) else { return (0, 0) };
        for dir in dirs.flatten() {
            let Ok(entries) = fs::read_dir(dir.path()) else { continue };
            for e in entries.flatten() {
                let name = e.file_name();
                if TaskId::parse(&name.to_string_lossy()).is_some() {
                    bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                    files += 1;
                }
            }
        }
        (bytes, files)
    }
}

/// Re-reads a CDN file: each wrapped piece's `md5:len` and the md5 of the payloads.
pub fn rehash(path: &Path, layout: &PieceLayout) -> io::Result<(Vec<String>, String)> {
    let mut file = fs::File::open(path)?;
    let mut whole = Md5::new();
    let mut list = Vec::with_capacity(layout.piece_count() as usize);
    let mut buf = vec![0u8; layout.piece_size as usize];
    for n in 0..layout.piece_count() {
        let len = layout.wrapped_len(n) as usize;
        file.read_exact(&mut buf[..len])?;
        let piece = &buf[..len];
        let payload = unwrap_piece(piece, layout.piece_size)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("piece {n}: {e}")))?;
        list.push(piece_md5_string(&Md5::digest(piece), len as u64));
        whole.update(payload);
    }
    Ok((list, hex::encode(whole.finalize())))
}

/// sha256 of the source bytes of a CDN file (payloads without framing), e.g. to check a layer digest.
pub fn source_sha256(path: &Path, layout: &PieceLayout) -> io::Result<String> {
    use sha2::{Digest as _, Sha256};
    let mut file = fs::File::open(path)?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; layout.piece_size as usize];
    for n in 0..layout.piece_count() {
        let len = layout.wrapped_len(n) as usize;
        file.read_exact(&mut buf[..len])?;
        let payload = unwrap_piece(&buf[..len], layout.piece_size)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("piece {n}: {e}")))?;
        sha.update(payload);
    }
    Ok(hex::encode(sha.finalize()))
}

/// md5 of one wrapped piece read from disk, clamped to the file end (§16 P10).
pub fn piece_md5_on_disk(path: &Path, offset: u64, len: u64) -> io::Result<String> {
    use std::io::{Seek, SeekFrom};
    let mut file = fs::File::open(path)?;
    let size = file.metadata()?.len();
    if offset >= size {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "piece starts past the end of the file"));
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len.min(size - offset) as usize];
    file.read_exact(&mut buf)?;
    Ok(hex::encode(Md5::digest(&buf)))
}

/// Writes to `<path>.part` then renames over `path`.
pub fn write_atomic(path: &Path, body: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".part");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}
