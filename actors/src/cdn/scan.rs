//! The start-up scan: which cached files are served again, which interrupted downloads may
//! be resumed, and why the others are deleted.
//!
//! Only a file whose `.meta` says `finish` and `success`, whose data has the recorded
//! length, and whose pieces check out (against the `.md5` index, or re-hashed when the index
//! is missing or stale) is loaded. The temporary file of a run that was interrupted (a crash,
//! a `kill -9`) is kept when the source can be asked for the rest of the same file (its
//! length and a validator are recorded): it is never served, and the next run of the task
//! checks its pieces again and resumes after them. Everything else is deleted, with the
//! reason logged: a file the supernode cannot vouch for is never served.

use std::collections::BTreeSet;
use std::fs;
use std::io;

use super::readback;
use super::store::{CacheStore, FileMeta, MetaError};
use crate::ids::TaskId;
use crate::piece::PieceDigest;

/// A complete cached file found at start.
#[derive(Clone, Debug)]
pub struct CachedFile {
    pub meta: FileMeta,
    pub pieces: Vec<PieceDigest>,
    pub size: u64,
}

impl CachedFile {
    pub fn task_id(&self) -> Option<TaskId> {
        TaskId::parse(&self.meta.task_id)
    }
}

/// Why an entry found at start is not served.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// Data without metadata: what an interrupted delete leaves, or a file that is not ours.
    #[error("no metadata")]
    NoMeta,
    /// Metadata that does not parse: written atomically, so this is damage, not a crash.
    #[error("{0}")]
    BadMeta(MetaError),
    /// A run that never finished (or a partial file of the Go supernode, which resumed them).
    #[error("unfinished download")]
    Unfinished,
    #[error("metadata names task {0}")]
    OtherTask(String),
    #[error("data file missing: {0}")]
    DataMissing(io::Error),
    #[error("data file has {actual} bytes, metadata says {expected}")]
    WrongLength { expected: u64, actual: u64 },
    #[error("pieces do not check out: {0}")]
    Unverifiable(String),
}

/// An interrupted download kept for a resume.
#[derive(Clone, Debug)]
pub struct PartialFile {
    pub task_id: TaskId,
    /// Bytes of its temporary file.
    pub size: u64,
    /// ms epoch of the run's start.
    pub access_time: i64,
}

/// What the scan found.
#[derive(Debug, Default)]
pub struct Scan {
    pub files: Vec<CachedFile>,
    pub partials: Vec<PartialFile>,
    pub removed: Vec<(TaskId, Unusable)>,
}

/// Loads every complete, verified file under the store and deletes the rest.
pub fn scan(store: &CacheStore) -> Scan {
    let mut out = Scan::default();
    let Ok(dirs) = fs::read_dir(store.root()) else { return out };
    for dir in dirs.flatten() {
        let Ok(entries) = fs::read_dir(dir.path()) else { continue };
        let mut ids = BTreeSet::new();
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
            let found = match load_complete(store, &id) {
                Err(Unusable::Unfinished) => resumable(store, &id).ok_or(Unusable::Unfinished),
                Ok(file) => Ok(Found::Complete(Box::new(file))),
                Err(why) => Err(why),
            };
            match found {
                Ok(Found::Complete(file)) => out.files.push(*file),
                Ok(Found::Partial(partial)) => {
                    tracing::info!(task = %id, bytes = partial.size, "interrupted download kept for a resume");
                    out.partials.push(partial);
                }
                Err(why) => {
                    match &why {
                        Unusable::BadMeta(_) | Unusable::WrongLength { .. } | Unusable::Unverifiable(_) => {
                            tracing::warn!(task = %id, reason = %why, "damaged cache entry removed")
                        }
                        _ => tracing::info!(task = %id, reason = %why, "partial cache entry removed"),
                    }
                    store.remove_all(&id);
                    out.removed.push((id, why));
                }
            }
        }
    }
    out
}

enum Found {
    Complete(Box<CachedFile>),
    Partial(PartialFile),
}

/// An interrupted download that can be resumed.
fn resumable(store: &CacheStore, id: &TaskId) -> Option<Found> {
    let meta = store.read_meta(id)?;
    let size = fs::metadata(store.temp_path(id)).ok()?.len();
    let partial = PartialFile { task_id: id.clone(), size, access_time: meta.access_time };
    (meta.resumable() && size > 0).then_some(Found::Partial(partial))
}

fn load_complete(store: &CacheStore, id: &TaskId) -> Result<CachedFile, Unusable> {
    let meta = match store.load_meta(id) {
        Ok(m) => m,
        Err(MetaError::Missing) => return Err(Unusable::NoMeta),
        Err(e) => return Err(Unusable::BadMeta(e)),
    };
    if meta.task_id != id.as_str() {
        return Err(Unusable::OtherTask(meta.task_id));
    }
    if !meta.is_complete() || meta.http_file_len < 0 {
        return Err(Unusable::Unfinished);
    }
    store.remove_temp(id);
    let layout = meta.layout();
    let size = fs::metadata(store.data_path(id)).map_err(Unusable::DataMissing)?.len();
    if size != layout.file_length() || meta.file_length != size as i64 {
        return Err(Unusable::WrongLength { expected: layout.file_length(), actual: size });
    }
    if let Some(pieces) = store.read_md5_list(id, &meta.real_md5, layout.piece_count()) {
        return Ok(CachedFile { meta, pieces, size });
    }
    let (pieces, file_md5) =
        readback::rehash(&store.data_path(id), &layout).map_err(|e| Unusable::Unverifiable(e.to_string()))?;
    if file_md5 != meta.real_md5 {
        return Err(Unusable::Unverifiable(format!("source md5 {file_md5}, metadata says {}", meta.real_md5)));
    }
    // The bytes are verified; an index that cannot be written only costs a re-hash next start.
    if let Err(e) = store.write_md5_list(id, &pieces, &file_md5) {
        tracing::warn!(task = %id, error = %e, "cannot write the piece md5 index; serving the verified file anyway");
    }
    Ok(CachedFile { meta, pieces, size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdn::readback::wrapped_file;
    use md5::{Digest, Md5};

    const PIECE: u64 = 1 << 20;

    /// A complete entry for a 2.5-piece source; returns its ID.
    fn put_complete(store: &CacheStore, n: u8) -> TaskId {
        let id = TaskId::compute(&format!("http://h/{n}"), "", "", None);
        let payload = vec![n; (PIECE * 5 / 2) as usize];
        let file = wrapped_file(&payload, PIECE);
        fs::create_dir_all(store.dir(&id)).unwrap();
        fs::write(store.data_path(&id), &file).unwrap();
        let meta = FileMeta {
            task_id: id.to_string(),
            url: format!("http://h/{n}"),
            piece_size: PIECE,
            http_file_len: payload.len() as i64,
            file_length: file.len() as i64,
            real_md5: hex::encode(Md5::digest(&payload)),
            finish: true,
            success: true,
            ..FileMeta::default()
        };
        store.write_meta(&id, &meta).unwrap();
        id
    }

    fn reason(scan: &Scan, id: &TaskId) -> String {
        let (_, why) = scan.removed.iter().find(|(i, _)| i == id).expect("removed");
        format!("{why:?}")
    }

    #[test]
    fn keeps_verified_files_and_removes_the_rest_with_their_reason() {
        let home = tempfile::tempdir().unwrap();
        let store = CacheStore::open(home.path()).unwrap();
        let good = put_complete(&store, 1);
        let no_meta = put_complete(&store, 2);
        fs::remove_file(store.dir(&no_meta).join(format!("{no_meta}.meta"))).unwrap();
        let corrupt = put_complete(&store, 3);
        fs::write(store.dir(&corrupt).join(format!("{corrupt}.meta")), b"{not json").unwrap();
        let unfinished = put_complete(&store, 4);
        let mut meta = store.read_meta(&unfinished).unwrap();
        meta.finish = false;
        store.write_meta(&unfinished, &meta).unwrap();
        let short = put_complete(&store, 5);
        fs::write(store.data_path(&short), b"short").unwrap();
        let flipped = put_complete(&store, 6);
        let mut bytes = fs::read(store.data_path(&flipped)).unwrap();
        bytes[100] ^= 1;
        fs::write(store.data_path(&flipped), bytes).unwrap();
        fs::write(store.temp_path(&good), b"partial").unwrap();

        let scan = scan(&store);
        assert_eq!(scan.files.len(), 1);
        assert_eq!(scan.files[0].task_id(), Some(good.clone()));
        assert_eq!(scan.files[0].pieces.len(), 3);
        assert!(!store.temp_path(&good).exists(), "temporaries never survive a start");
        assert!(reason(&scan, &no_meta).starts_with("NoMeta"));
        assert!(reason(&scan, &corrupt).starts_with("BadMeta(Corrupt"));
        assert!(reason(&scan, &unfinished).starts_with("Unfinished"));
        assert!(reason(&scan, &short).starts_with("WrongLength"));
        assert!(reason(&scan, &flipped).starts_with("Unverifiable"));
        for id in [&no_meta, &corrupt, &unfinished, &short, &flipped] {
            assert!(!store.dir(id).exists(), "{id} removed");
        }
        assert!(store.read_md5_list(&good, &scan.files[0].meta.real_md5, 3).is_some(), "index written");
    }

    #[test]
    fn an_unwritable_index_does_not_cost_the_verified_file() {
        let home = tempfile::tempdir().unwrap();
        let store = CacheStore::open(home.path()).unwrap();
        let id = put_complete(&store, 7);
        // A directory where the index's temporary copy goes: its write fails, also for root.
        let blocker = store.dir(&id).join(format!("{id}.md5.part"));
        fs::create_dir(&blocker).unwrap();
        let scan = scan(&store);
        assert_eq!(scan.files.len(), 1, "{:?}", scan.removed);
        assert!(store.data_path(&id).exists());
        assert!(blocker.exists());
    }

    #[test]
    fn an_interrupted_download_with_a_validator_is_kept_and_one_without_is_removed() {
        let home = tempfile::tempdir().unwrap();
        let store = CacheStore::open(home.path()).unwrap();
        let interrupted = |n: u8, etag: &str| {
            let id = put_complete(&store, n);
            let mut meta = store.read_meta(&id).unwrap();
            (meta.finish, meta.success, meta.etag) = (false, false, etag.to_string());
            store.write_meta(&id, &meta).unwrap();
            let file = fs::read(store.data_path(&id)).unwrap();
            fs::remove_file(store.data_path(&id)).unwrap();
            fs::write(store.temp_path(&id), &file[..file.len() / 2]).unwrap();
            (id, file.len() / 2)
        };
        let (kept, kept_len) = interrupted(8, "\"v1\"");
        let (no_validator, _) = interrupted(9, "");

        let scan = scan(&store);
        assert!(scan.files.is_empty());
        assert_eq!(scan.partials.len(), 1);
        assert_eq!((&scan.partials[0].task_id, scan.partials[0].size), (&kept, kept_len as u64));
        assert!(store.temp_path(&kept).exists() && store.read_meta(&kept).is_some());
        assert!(reason(&scan, &no_validator).starts_with("Unfinished"));
        assert!(!store.dir(&no_validator).exists());
    }
}
