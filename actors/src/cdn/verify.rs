//! Checks of the supernode's own copy, read back from disk off this actor's thread. They
//! do not count as a use of the file.

use std::fs::File;
use std::io;
use std::sync::Arc;

use actix::prelude::*;

use super::{readback, CdnManager, Entry};
use crate::ids::TaskId;
use crate::piece::PieceDigest;

/// What to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyCheck {
    /// The wrapped piece at `offset` (clamped to the end of the file) must hash to `expected`'s md5.
    Piece { offset: u64, len: u64, expected: PieceDigest },
    /// The file must still be there.
    Exists,
}

/// Why the copy cannot be trusted, or could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CopyError {
    #[error("no complete cached copy")]
    NotCached,
    #[error("piece md5 is {actual}, expected {expected}")]
    Mismatch { expected: String, actual: String },
    #[error("cached copy unreadable: {0}")]
    Unreadable(Arc<io::Error>),
}

/// Checks a task's copy; `Ok` when it passes.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), CopyError>")]
pub struct VerifyCopy {
    pub task_id: TaskId,
    pub check: CopyCheck,
}

/// The file to read: the running file's handle, or the cached file's path.
enum Source {
    Open(Arc<File>),
    Path(std::path::PathBuf),
}

impl Source {
    fn open(self) -> io::Result<Arc<File>> {
        match self {
            Source::Open(f) => Ok(f),
            Source::Path(p) => File::open(p).map(Arc::new),
        }
    }
}

impl CdnManager {
    fn copy_of(&self, id: &TaskId) -> Option<Source> {
        match self.entries.get(id)? {
            Entry::Running { reader, .. } => reader.clone().map(Source::Open),
            Entry::Cached { .. } => Some(Source::Path(self.store.data_path(id))),
            Entry::Partial { .. } => None,
        }
    }
}

async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CopyError> + Send + 'static,
) -> Result<T, CopyError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(CopyError::Unreadable(Arc::new(io::Error::other(e)))))
}

impl Handler<VerifyCopy> for CdnManager {
    type Result = ResponseFuture<Result<(), CopyError>>;

    fn handle(&mut self, msg: VerifyCopy, _ctx: &mut Context<Self>) -> Self::Result {
        let copy = self.copy_of(&msg.task_id);
        Box::pin(off_thread(move || {
            let file = copy.ok_or(CopyError::NotCached)?.open().map_err(|e| CopyError::Unreadable(Arc::new(e)))?;
            match msg.check {
                CopyCheck::Exists => Ok(()),
                CopyCheck::Piece { offset, len, expected } => {
                    let actual =
                        readback::md5_at(&file, offset, len).map_err(|e| CopyError::Unreadable(Arc::new(e)))?;
                    if actual == expected.md5_hex() {
                        Ok(())
                    } else {
                        Err(CopyError::Mismatch { expected: expected.md5_hex(), actual })
                    }
                }
            }
        }))
    }
}

/// sha256 (hex) of a cached task's source bytes, read back from the framed file.
#[derive(Message, Debug)]
#[rtype(result = "Result<String, CopyError>")]
pub struct SourceSha256(pub TaskId);

impl Handler<SourceSha256> for CdnManager {
    type Result = ResponseFuture<Result<String, CopyError>>;

    fn handle(&mut self, msg: SourceSha256, _ctx: &mut Context<Self>) -> Self::Result {
        let cached = matches!(self.entries.get(&msg.0), Some(Entry::Cached { .. }));
        let store = self.store.clone();
        Box::pin(off_thread(move || {
            let meta = store.read_meta(&msg.0).filter(|m| cached && m.is_complete()).ok_or(CopyError::NotCached)?;
            readback::source_sha256(&store.data_path(&msg.0), &meta.layout())
                .map_err(|e| CopyError::Unreadable(Arc::new(e)))
        }))
    }
}
