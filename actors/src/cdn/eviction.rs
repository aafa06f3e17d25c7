//! Disk GC (§9.3, §16 P16): when free space under the cache runs low or the cache is over
//! its quota, delete least-recently-used files that nobody is writing or reading.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use actix::prelude::*;

use super::{CdnManager, Entry};
use crate::ids::TaskId;

/// Thresholds of one disk GC run.
#[derive(Debug, Clone)]
pub struct DiskPolicy {
    /// Free bytes above which nothing is collected (`youngGCThreshold`).
    pub young_gc_threshold: u64,
    /// Free bytes at or below which any idle file may go (`fullGCThreshold`).
    pub full_gc_threshold: u64,
    /// Files used within this window go only when the disk is full or the quota exceeded.
    pub recent_window: Duration,
    /// Tenths of the old candidates deleted per run while space is merely low (`CleanRatio`).
    pub clean_ratio: u32,
    /// Cache size limit in bytes; 0 = none.
    pub quota: u64,
}

/// Runs one disk GC; replies with the tasks whose files were deleted.
#[derive(Message, Debug)]
#[rtype(result = "Vec<TaskId>")]
pub struct CollectDisk {
    pub policy: DiskPolicy,
    /// Tasks with clients: their files stay.
    pub protected: HashSet<TaskId>,
}

/// Free bytes on the file system holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs struct.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

impl Handler<CollectDisk> for CdnManager {
    type Result = MessageResult<CollectDisk>;

    fn handle(&mut self, msg: CollectDisk, _ctx: &mut Context<Self>) -> Self::Result {
        let p = &msg.policy;
        let mut free = free_bytes(self.store.root()).unwrap_or(u64::MAX);
        let mut total: u64 =
            self.entries.values().map(|e| if let Entry::Cached { size, .. } = e { *size } else { 0 }).sum();
        let over_quota = |total: u64| p.quota > 0 && total > p.quota;
        if free > p.young_gc_threshold && !over_quota(total) {
            return MessageResult(Vec::new());
        }
        let now = SystemTime::now();
        let mut candidates: Vec<(SystemTime, TaskId, u64)> = self
            .entries
            .iter()
            .filter(|(id, _)| !msg.protected.contains(*id))
            .filter_map(|(id, e)| match e {
                Entry::Cached { size, last_used, readers: 0 } => Some((*last_used, id.clone(), *size)),
                _ => None,
            })
            .collect();
        candidates.sort();
        let old = candidates
            .iter()
            .filter(|(used, _, _)| now.duration_since(*used).unwrap_or_default() >= p.recent_window)
            .count();
        let mut gentle_budget = (old * p.clean_ratio as usize).div_ceil(10);
        let mut evicted = Vec::new();
        for (used, id, size) in candidates {
            let pressing = free <= p.full_gc_threshold || over_quota(total);
            let is_old = now.duration_since(used).unwrap_or_default() >= p.recent_window;
            let low = free <= p.young_gc_threshold;
            // Oldest first: once a file may not go, no newer one may either.
            if !(pressing || (low && is_old && gentle_budget > 0)) {
                break;
            }
            if !pressing {
                gentle_budget -= 1;
            }
            tracing::info!(task = %id, bytes = size, free, total, "disk GC: evicting cached file");
            self.entries.remove(&id);
            self.store.remove_all(&id);
            total = total.saturating_sub(size);
            free = free.saturating_add(size);
            self.metrics.gc_disks.inc();
            evicted.push(id);
        }
        self.metrics.last_gc_disks.set(now.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()));
        self.update_usage();
        MessageResult(evicted)
    }
}
