//! Preheat jobs: the Dragonfly 2 manager's view of an image preheat, which Harbor 2.12 and
//! later create and poll instead of `/preheats`.
//!
//! A job wraps one image preheat record and keeps what Harbor reads once it is over: the
//! state, the error, and each layer's outcome. That outcome is copied into the job when the
//! job finishes, so a job answers the same after the records it wraps are run again,
//! deleted or collected. Jobs are numbered, and numbers are never handed out twice, also not
//! across restarts: Harbor keeps the number as its task ID.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::PreheatId;

/// A job's number, above zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(u64);

impl JobId {
    /// `None` for zero, which names no job.
    pub fn new(n: u64) -> Option<JobId> {
        (n > 0).then_some(JobId(n))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a job stands. Only these three: Harbor fails a preheat on any other state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Pending,
    Success,
    Failure,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Success => "SUCCESS",
            JobState::Failure => "FAILURE",
        }
    }
}

/// What to preheat, as the job was asked for, with the defaults filled in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobArgs {
    /// The image manifest URL (`…/v2/<name>/manifests/<reference>`).
    pub url: String,
    pub tag: String,
    /// `&`-separated query keys left out of the task URL.
    pub filtered_query_params: String,
    /// Sent to the registry as they are (Harbor passes its own registry token here).
    pub headers: BTreeMap<String, String>,
    /// Which peers should hold the image; the supernode is the one seed whatever it says.
    pub scope: String,
    /// Echoed only: every layer is fetched at once.
    pub concurrent_count: i64,
    /// A job not finished this long after it was created fails.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

/// The host that holds the preheated layers: this supernode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedHost {
    pub hostname: String,
    pub ip: Ipv4Addr,
}

impl Default for SeedHost {
    fn default() -> Self {
        SeedHost { hostname: "supernode".into(), ip: Ipv4Addr::LOCALHOST }
    }
}

/// One layer of a finished job: its blob URL, and why it failed if it did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerOutcome {
    pub url: String,
    pub error: Option<String>,
}

/// How a job ended. Layers still under way when it ended are not listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// What went wrong, on FAILURE.
    pub error: Option<String>,
    pub layers: Vec<LayerOutcome>,
    pub seed: SeedHost,
}

/// One job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreheatJob {
    pub id: JobId,
    /// The image preheat the job follows.
    pub preheat: PreheatId,
    pub args: JobArgs,
    pub state: JobState,
    pub created_at: DateTime<Utc>,
    /// When the state last changed.
    pub updated_at: DateTime<Utc>,
    /// Set when the job finishes.
    pub outcome: Option<JobOutcome>,
}

impl PreheatJob {
    pub fn deadline(&self) -> DateTime<Utc> {
        let timeout = chrono::Duration::from_std(self.args.timeout).unwrap_or(chrono::Duration::MAX);
        self.created_at.checked_add_signed(timeout).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// Every job, and the next number to hand out.
#[derive(Debug, Default)]
pub struct JobBook {
    jobs: BTreeMap<JobId, PreheatJob>,
    next_id: u64,
}

impl JobBook {
    /// The jobs read back; numbering goes on above `next_id` and above every job kept.
    pub fn new(jobs: Vec<PreheatJob>, next_id: u64) -> JobBook {
        let above_kept = jobs.iter().map(|j| j.id.get().saturating_add(1)).max().unwrap_or(1);
        let jobs = jobs.into_iter().map(|j| (j.id, j)).collect();
        JobBook { jobs, next_id: next_id.max(above_kept).max(1) }
    }

    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// A number no job had before.
    pub fn issue(&mut self) -> JobId {
        let id = JobId(self.next_id.max(1));
        self.next_id = id.0.saturating_add(1);
        id
    }

    pub fn insert(&mut self, job: PreheatJob) {
        self.jobs.insert(job.id, job);
    }

    pub fn get(&self, id: JobId) -> Option<&PreheatJob> {
        self.jobs.get(&id)
    }

    pub fn get_mut(&mut self, id: JobId) -> Option<&mut PreheatJob> {
        self.jobs.get_mut(&id)
    }

    pub fn all(&self) -> impl Iterator<Item = &PreheatJob> {
        self.jobs.values()
    }

    /// The pending jobs following `preheat`.
    pub fn pending_on(&self, preheat: &PreheatId) -> Vec<JobId> {
        self.jobs.values().filter(|j| j.state == JobState::Pending && j.preheat == *preheat).map(|j| j.id).collect()
    }

    /// The preheats that pending jobs follow.
    pub fn followed(&self) -> BTreeSet<PreheatId> {
        self.jobs.values().filter(|j| j.state == JobState::Pending).map(|j| j.preheat.clone()).collect()
    }

    /// Removes finished jobs whose last change is older than `retention`; how many went.
    pub fn collect(&mut self, now: DateTime<Utc>, retention: chrono::Duration) -> usize {
        let before = self.jobs.len();
        self.jobs.retain(|_, j| j.state == JobState::Pending || now - j.updated_at <= retention);
        before - self.jobs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: u64, state: JobState, updated_at: DateTime<Utc>) -> PreheatJob {
        let args = JobArgs {
            url: "http://r/v2/a/manifests/1".into(),
            tag: String::new(),
            filtered_query_params: String::new(),
            headers: BTreeMap::new(),
            scope: "single_seed_peer".into(),
            concurrent_count: 0,
            timeout: Duration::from_secs(60),
        };
        let preheat = PreheatId::from_raw("p");
        PreheatJob { id: JobId(id), preheat, args, state, created_at: updated_at, updated_at, outcome: None }
    }

    #[test]
    fn numbers_go_on_above_what_was_kept() {
        let t = Utc::now();
        let mut book = JobBook::new(vec![job(7, JobState::Success, t)], 3);
        assert_eq!(book.issue().get(), 8, "above the highest job kept");
        let mut book2 = JobBook::new(Vec::new(), 42);
        assert_eq!(book2.issue().get(), 42, "the persisted next number, though its jobs were collected");
        assert_eq!(book2.issue().get(), 43);
        assert_eq!(JobBook::new(Vec::new(), 0).issue().get(), 1, "never zero");
        assert!(JobId::new(0).is_none());
        assert_eq!(book.next_id(), 9);
    }

    #[test]
    fn collect_keeps_pending_and_recent_jobs() {
        let t = Utc::now();
        let old = t - chrono::Duration::hours(25);
        let mut book = JobBook::new(
            vec![job(1, JobState::Success, old), job(2, JobState::Pending, old), job(3, JobState::Failure, t)],
            4,
        );
        assert_eq!(book.collect(t, chrono::Duration::hours(24)), 1);
        assert!(book.get(JobId(1)).is_none() && book.get(JobId(2)).is_some() && book.get(JobId(3)).is_some());
        assert_eq!(book.issue().get(), 4, "collecting a job frees no number");
        let when = job(5, JobState::Pending, t).deadline();
        assert_eq!(when, t + chrono::Duration::seconds(60));
    }
}
