//! What the download port may read: a task's file and how many of its bytes.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;

use super::{CdnManager, Entry};
use crate::ids::TaskId;

/// Where the bytes are.
#[derive(Debug)]
pub enum ServableFile {
    /// The temporary file of a running task, already open: it is renamed when the run ends,
    /// and an open file survives that.
    Writing(Arc<File>),
    /// A cached file, to be opened by the reader.
    Cached(PathBuf),
}

/// A task's bytes for the download port. While it is held, disk GC leaves the file alone.
#[derive(Debug)]
pub struct Servable {
    pub file: ServableFile,
    /// Bytes that may be served: while a run writes, only its whole pieces.
    pub len: u64,
    pub guard: ReadGuard,
}

/// Marks a cached file as being read until dropped.
#[derive(Debug)]
pub struct ReadGuard {
    task_id: TaskId,
    cdn: Option<Addr<CdnManager>>,
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        if let Some(cdn) = self.cdn.take() {
            cdn.do_send(ReadFinished(self.task_id.clone()));
        }
    }
}

#[derive(Message, Debug)]
#[rtype(result = "()")]
struct ReadFinished(TaskId);

impl Handler<ReadFinished> for CdnManager {
    type Result = ();
    fn handle(&mut self, msg: ReadFinished, _ctx: &mut Context<Self>) {
        if let Some(Entry::Cached { readers, .. }) = self.entries.get_mut(&msg.0) {
            *readers = readers.saturating_sub(1);
        }
    }
}

/// A download of the task's file: counts as a use of it (least recently used goes first).
#[derive(Message, Debug)]
#[rtype(result = "Option<Servable>")]
pub struct LookupServable(pub TaskId);

impl Handler<LookupServable> for CdnManager {
    type Result = Option<Servable>;
    fn handle(&mut self, msg: LookupServable, ctx: &mut Context<Self>) -> Option<Servable> {
        let now = self.clock.wall();
        match self.entries.get_mut(&msg.0)? {
            Entry::Partial { .. } => None,
            Entry::Running { written, reader, .. } => Some(Servable {
                file: ServableFile::Writing(reader.clone()?),
                len: *written,
                guard: ReadGuard { task_id: msg.0, cdn: None },
            }),
            Entry::Cached { size, last_used, readers } => {
                *readers += 1;
                *last_used = now;
                Some(Servable {
                    file: ServableFile::Cached(self.store.data_path(&msg.0)),
                    len: *size,
                    guard: ReadGuard { task_id: msg.0, cdn: Some(ctx.address()) },
                })
            }
        }
    }
}
