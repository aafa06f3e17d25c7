//! The cache on disk: names, metadata and the piece md5 index.
//!
//! ```text
//! <home>/repo/download/<id[0:3]>/<id>       CDN file (wrapped pieces), complete and verified
//! <home>/repo/download/<id[0:3]>/<id>.tmp   the file while a run writes it
//! <home>/repo/download/<id[0:3]>/<id>.meta  metadata (the Go supernode's keys plus ours)
//! <home>/repo/download/<id[0:3]>/<id>.md5   piece md5 list, file md5, SHA-1 of both
//! ```
//! The layout and the `.meta` keys are the Go supernode's, so its caches stay readable.
//! Every metadata write goes to a temporary name and is renamed, so a crash leaves either
//! the old or the new version, never a torn one.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use crate::ids::TaskId;
use crate::piece::{PieceDigest, PieceLayout, DEFAULT_PIECE_SIZE};
use crate::spec::{SourceTls, TaskSpec};

/// `.meta`: Go's keys plus `rawURL`, `headers`, `insecure`, `rootCAs` (Go ignores unknown keys).
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
    /// The metadata of a run that starts writing `spec`'s source.
    pub fn for_run(task_id: &TaskId, spec: &TaskSpec, piece_size: u64, access_time: i64) -> FileMeta {
        FileMeta {
            task_id: task_id.to_string(),
            url: spec.task_url.clone(),
            piece_size,
            http_file_len: -1,
            biz_id: spec.identifier.clone(),
            access_time,
            md5: spec.md5.clone(),
            raw_url: spec.raw_url.clone(),
            headers: spec.headers.clone(),
            insecure: spec.tls.is_insecure(),
            root_cas: spec.tls.extra_roots().iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect(),
            ..FileMeta::default()
        }
    }

    pub fn is_complete(&self) -> bool {
        self.finish && self.success
    }

    /// An unfinished run whose source can be asked for the rest of the same file: its length
    /// and a validator are known.
    pub fn resumable(&self) -> bool {
        !self.finish
            && self.http_file_len > 0
            && (!self.etag.is_empty() || self.last_modified > 0)
            && !self.headers.contains_key("Range")
    }

    pub fn layout(&self) -> PieceLayout {
        let piece_size = if self.piece_size == 0 { DEFAULT_PIECE_SIZE } else { self.piece_size };
        PieceLayout::new(self.http_file_len.max(0) as u64, piece_size)
    }

    /// What a registration of this file asked for (Go's metadata has no raw URL: the task URL).
    pub fn spec(&self) -> TaskSpec {
        let raw_url = if self.raw_url.is_empty() { self.url.clone() } else { self.raw_url.clone() };
        let roots = self.root_cas.iter().map(|s| s.as_bytes().to_vec()).collect();
        TaskSpec {
            raw_url,
            task_url: self.url.clone(),
            headers: self.headers.clone(),
            md5: self.md5.clone(),
            identifier: self.biz_id.clone(),
            tls: SourceTls::from_request(self.insecure, roots),
        }
    }

    /// Whether this complete copy is the resource `spec` asks for.
    pub fn matches(&self, spec: &TaskSpec) -> bool {
        self.is_complete() && self.names(spec)
    }

    /// Whether the file is of the resource `spec` asks for, complete or not.
    pub fn names(&self, spec: &TaskSpec) -> bool {
        self.url == spec.task_url
            && if spec.md5.is_empty() { self.biz_id == spec.identifier } else { self.md5 == spec.md5 }
    }
}

/// How a `.meta` file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("no metadata file")]
    Missing,
    #[error("metadata unreadable: {0}")]
    Io(io::Error),
    #[error("metadata corrupt: {0}")]
    Corrupt(serde_json::Error),
}

/// The cache directory and the names inside it.
#[derive(Clone, Debug)]
pub struct CacheStore {
    root: PathBuf,
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

    pub fn load_meta(&self, id: &TaskId) -> Result<FileMeta, MetaError> {
        let text = match fs::read(self.meta_path(id)) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(MetaError::Missing),
            Err(e) => return Err(MetaError::Io(e)),
        };
        serde_json::from_slice(&text).map_err(MetaError::Corrupt)
    }

    /// The metadata, when it is there and readable.
    pub fn read_meta(&self, id: &TaskId) -> Option<FileMeta> {
        self.load_meta(id).ok()
    }

    pub fn write_meta(&self, id: &TaskId, meta: &FileMeta) -> io::Result<()> {
        fs::create_dir_all(self.dir(id))?;
        let body = serde_json::to_vec(meta).map_err(io::Error::other)?;
        write_atomic(&self.meta_path(id), &body)
    }

    /// `.md5`: piece md5s, file md5, SHA-1 of the previous lines concatenated; no trailing newline.
    pub fn write_md5_list(&self, id: &TaskId, pieces: &[PieceDigest], file_md5: &str) -> io::Result<()> {
        fs::create_dir_all(self.dir(id))?;
        let mut lines: Vec<String> = pieces.iter().map(PieceDigest::to_string).collect();
        lines.push(file_md5.to_string());
        let mut sha = Sha1::new();
        for l in &lines {
            sha.update(l.as_bytes());
        }
        let mut text = lines.join("\n");
        text.push('\n');
        text.push_str(&hex::encode(sha.finalize()));
        write_atomic(&self.md5_path(id), text.as_bytes())
    }

    /// Reads `.md5` back; `None` unless its SHA-1 line, file md5 and piece count check out.
    pub fn read_md5_list(&self, id: &TaskId, file_md5: &str, pieces: u64) -> Option<Vec<PieceDigest>> {
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
        lines.into_iter().map(|l| l.parse().ok()).collect()
    }

    /// Deletes the data, temporary, metadata and md5 files of a task, and its directory when empty.
    pub fn remove_all(&self, id: &TaskId) {
        let dir = self.dir(id);
        for suffix in ["", ".tmp", ".meta", ".md5", ".meta.part", ".md5.part"] {
            let _ = fs::remove_file(dir.join(format!("{id}{suffix}")));
        }
        let _ = fs::remove_dir(&dir);
    }

    pub fn remove_temp(&self, id: &TaskId) {
        let _ = fs::remove_file(self.temp_path(id));
    }
}

/// Writes to `<path>.part`, syncs it, then renames it over `path`. A write that fails (a full
/// disk, say) leaves `path` as it was and removes the partial copy.
pub fn write_atomic(path: &Path, body: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".part");
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> TaskId {
        TaskId::compute(&format!("http://h/{n}"), "", "", None)
    }

    #[test]
    fn md5_list_round_trips_and_rejects_tampering() {
        let home = tempfile::tempdir().unwrap();
        let store = CacheStore::open(home.path()).unwrap();
        let t = id(1);
        let pieces = [PieceDigest::new([1; 16], 4194304), PieceDigest::new([2; 16], 10)];
        store.write_md5_list(&t, &pieces, "f00d").unwrap();
        assert_eq!(store.read_md5_list(&t, "f00d", 2), Some(pieces.to_vec()));
        assert_eq!(store.read_md5_list(&t, "f00d", 3), None, "wrong piece count");
        assert_eq!(store.read_md5_list(&t, "beef", 2), None, "wrong file md5");
        let path = store.dir(&t).join(format!("{t}.md5"));
        let text = fs::read_to_string(&path).unwrap().replacen("01", "03", 1);
        fs::write(&path, text).unwrap();
        assert_eq!(store.read_md5_list(&t, "f00d", 2), None, "SHA-1 line no longer matches");
    }

    #[test]
    fn missing_and_corrupt_metadata_are_told_apart() {
        let home = tempfile::tempdir().unwrap();
        let store = CacheStore::open(home.path()).unwrap();
        let t = id(2);
        assert!(matches!(store.load_meta(&t), Err(MetaError::Missing)));
        fs::create_dir_all(store.dir(&t)).unwrap();
        fs::write(store.dir(&t).join(format!("{t}.meta")), b"{\"taskID\":").unwrap();
        assert!(matches!(store.load_meta(&t), Err(MetaError::Corrupt(_))));
        let meta = FileMeta { task_id: t.to_string(), finish: true, ..FileMeta::default() };
        store.write_meta(&t, &meta).unwrap();
        assert_eq!(store.load_meta(&t).unwrap(), meta);
        assert!(!store.dir(&t).join(format!("{t}.meta.part")).exists());
    }

    #[test]
    fn meta_keeps_the_spec() {
        let spec = TaskSpec {
            raw_url: "http://h/x?t=1".into(),
            task_url: "http://h/x".into(),
            identifier: "b".into(),
            tls: SourceTls::Verify { extra_roots: vec![b"PEM".to_vec()] },
            ..TaskSpec::default()
        };
        let meta = FileMeta::for_run(&spec.task_id(), &spec, 4 << 20, 0);
        assert_eq!(meta.spec(), spec);
        assert!(!FileMeta { finish: true, success: true, ..meta.clone() }
            .matches(&TaskSpec { identifier: "c".into(), ..spec.clone() }));
        assert!(FileMeta { finish: true, success: true, ..meta }.matches(&spec));
    }

    #[test]
    fn atomic_write_into_a_missing_directory_fails_cleanly() {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join("absent").join("f");
        assert!(write_atomic(&path, b"x").is_err());
        assert!(!home.path().join("absent").exists());
    }
}
