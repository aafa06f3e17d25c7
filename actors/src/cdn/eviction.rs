//! Disk GC: when free space under the cache runs low or the cache is over its quota, delete
//! least-recently-used files that nobody is writing or reading.
//!
//! Go's thresholds, with two changes: a file used within `recent_window` goes only when the
//! disk is really full or the quota is exceeded, and the oldest files go first (Go had no
//! age filter and evicted newest first).

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

/// A cached file that nobody writes or reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvictionCandidate {
    pub task_id: TaskId,
    pub last_used: SystemTime,
    pub size: u64,
}

/// Which candidates to delete, oldest first, given the free bytes and the cache's total size.
pub fn plan_eviction(
    mut candidates: Vec<EvictionCandidate>,
    mut free: u64,
    mut total: u64,
    p: &DiskPolicy,
    now: SystemTime,
) -> Vec<EvictionCandidate> {
    let over_quota = |total: u64| p.quota > 0 && total > p.quota;
    if free > p.young_gc_threshold && !over_quota(total) {
        return Vec::new();
    }
    candidates.sort_by(|a, b| a.last_used.cmp(&b.last_used).then_with(|| a.task_id.cmp(&b.task_id)));
    let is_old = |c: &EvictionCandidate| now.duration_since(c.last_used).unwrap_or_default() >= p.recent_window;
    let old = candidates.iter().filter(|c| is_old(c)).count();
    let mut gentle_budget = (old * p.clean_ratio as usize).div_ceil(10);
    let mut plan = Vec::new();
    for c in candidates {
        let pressing = free <= p.full_gc_threshold || over_quota(total);
        let low = free <= p.young_gc_threshold;
        // Oldest first: once a file may not go, no newer one may either.
        if !(pressing || (low && is_old(&c) && gentle_budget > 0)) {
            break;
        }
        if !pressing {
            gentle_budget -= 1;
        }
        total = total.saturating_sub(c.size);
        free = free.saturating_add(c.size);
        plan.push(c);
    }
    plan
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
        let free = free_bytes(self.store.root()).unwrap_or(u64::MAX);
        let mut total = 0;
        let mut candidates = Vec::new();
        for (id, e) in &self.entries {
            let (size, last_used, idle) = match e {
                Entry::Cached { size, last_used, readers } => (*size, *last_used, *readers == 0),
                Entry::Partial { size, last_used } => (*size, *last_used, true),
                Entry::Running { .. } => continue,
            };
            total += size;
            if idle && !msg.protected.contains(id) {
                candidates.push(EvictionCandidate { task_id: id.clone(), last_used, size });
            }
        }
        let now = self.clock.wall();
        let plan = plan_eviction(candidates, free, total, &msg.policy, now);
        let mut evicted = Vec::with_capacity(plan.len());
        for c in plan {
            tracing::info!(task = %c.task_id, bytes = c.size, free, total, "disk GC: evicting cached file");
            self.entries.remove(&c.task_id);
            self.store.remove_all(&c.task_id);
            self.metrics.gc_disks.inc();
            evicted.push(c.task_id);
        }
        let at = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        self.metrics.last_gc_disks.set(at);
        self.update_usage();
        MessageResult(evicted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const HOUR: Duration = Duration::from_secs(3600);

    fn policy() -> DiskPolicy {
        DiskPolicy {
            young_gc_threshold: 100 * GIB,
            full_gc_threshold: 5 * GIB,
            recent_window: 2 * HOUR,
            clean_ratio: 1,
            quota: 0,
        }
    }

    /// Files 0..n, file i last used `ages[i]` ago, each `size` bytes.
    fn files(now: SystemTime, ages: &[Duration], size: u64) -> Vec<EvictionCandidate> {
        ages.iter()
            .enumerate()
            .map(|(i, age)| EvictionCandidate {
                task_id: TaskId::compute(&format!("http://h/{i}"), "", "", None),
                last_used: now - *age,
                size,
            })
            .collect()
    }

    fn ids(plan: &[EvictionCandidate], all: &[EvictionCandidate]) -> Vec<usize> {
        plan.iter().map(|p| all.iter().position(|c| c.task_id == p.task_id).unwrap()).collect()
    }

    #[test]
    fn plenty_of_space_evicts_nothing() {
        let now = SystemTime::now();
        let all = files(now, &[10 * HOUR, 20 * HOUR], GIB);
        assert!(plan_eviction(all, 200 * GIB, 2 * GIB, &policy(), now).is_empty());
    }

    #[test]
    fn low_space_takes_a_tenth_of_the_old_files_oldest_first() {
        let now = SystemTime::now();
        let ages: Vec<Duration> = (0..15).map(|i| (3 + i) * HOUR).chain([HOUR]).collect();
        let all = files(now, &ages, GIB);
        let plan = plan_eviction(all.clone(), 50 * GIB, 16 * GIB, &policy(), now);
        assert_eq!(ids(&plan, &all), [14, 13], "ceil(15 old / 10) = 2, the oldest");
        let recent_only = files(now, &[HOUR, HOUR / 2], GIB);
        assert!(plan_eviction(recent_only, 50 * GIB, 2 * GIB, &policy(), now).is_empty(), "recent files stay");
    }

    #[test]
    fn a_full_disk_takes_recent_files_too_until_above_the_full_threshold() {
        let now = SystemTime::now();
        let all = files(now, &[HOUR, 3 * HOUR, HOUR / 2], 2 * GIB);
        let plan = plan_eviction(all.clone(), 2 * GIB, 6 * GIB, &policy(), now);
        assert_eq!(ids(&plan, &all), [1, 0], "oldest first, until free (6 GiB) is above 5 GiB");
    }

    #[test]
    fn over_quota_evicts_lru_until_under_it() {
        let now = SystemTime::now();
        let all = files(now, &[Duration::from_secs(3), Duration::from_secs(1), Duration::from_secs(2)], 100);
        let p = DiskPolicy { quota: 250, ..policy() };
        let plan = plan_eviction(all.clone(), 500 * GIB, 300, &p, now);
        assert_eq!(ids(&plan, &all), [0], "300 → 200 bytes: one file, the least recently used");
    }
}
