//! Preheat records as kept, shown and persisted (`<home>/preheats.json`, which also holds
//! the preheat jobs of the Dragonfly 2 job API, so that both are written in one atomic step).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::job_record::{JobBook, PreheatJob};
use crate::cdn::store::write_atomic;
use crate::ids::PreheatId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PreheatType {
    Image,
    File,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PreheatStatus {
    Waiting,
    Running,
    Success,
    Failed,
}

impl PreheatStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PreheatStatus::Waiting => "WAITING",
            PreheatStatus::Running => "RUNNING",
            PreheatStatus::Success => "SUCCESS",
            PreheatStatus::Failed => "FAILED",
        }
    }

    pub fn finished(self) -> bool {
        matches!(self, PreheatStatus::Success | PreheatStatus::Failed)
    }
}

/// How an image preheat authenticates at the registry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistryAuth {
    /// A 401 with a Bearer challenge is answered by fetching a token from the challenge's
    /// realm with the preheat's own credentials (what `/preheats` callers rely on).
    #[default]
    Challenge,
    /// The headers are sent exactly as given and a 401 fails the preheat: Harbor 2.12+ passes
    /// a registry token it issued itself, and a second token from the realm is not asked for.
    AsGiven,
}

/// One preheat.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Preheat {
    pub id: PreheatId,
    pub kind: PreheatType,
    pub url: String,
    pub filter: String,
    pub identifier: String,
    pub headers: BTreeMap<String, String>,
    pub parent: Option<PreheatId>,
    /// The layers of an image preheat.
    pub children: Vec<PreheatId>,
    pub status: PreheatStatus,
    pub start_time: DateTime<Utc>,
    pub finish_time: Option<DateTime<Utc>>,
    pub error_msg: String,
    /// Layer digest to verify (children of image preheats).
    pub digest: Option<String>,
    /// Absent in records written before jobs existed: those answered challenges.
    #[serde(default)]
    pub registry_auth: RegistryAuth,
}

/// What to preheat.
#[derive(Debug, Clone)]
pub struct PreheatRequest {
    pub kind: PreheatType,
    pub url: String,
    /// `&`-separated query keys left out of the task URL.
    pub filter: String,
    pub identifier: String,
    pub headers: BTreeMap<String, String>,
    pub registry_auth: RegistryAuth,
}

impl PreheatRequest {
    pub fn id(&self) -> PreheatId {
        PreheatId::compute(&self.url, &self.filter, &self.identifier, self.headers.get("Range").map(String::as_str))
    }
}

/// The query keys of a `filter` (`&`-separated).
pub fn filter_keys(filter: &str) -> Vec<&str> {
    if filter.is_empty() {
        Vec::new()
    } else {
        filter.split('&').collect()
    }
}

#[derive(Serialize, Deserialize, Default)]
struct StateFile {
    preheats: Vec<Preheat>,
    /// Absent in files written before jobs existed.
    #[serde(default)]
    jobs: Vec<PreheatJob>,
    /// The next job ID to hand out; kept so that IDs are never reused after a restart.
    #[serde(default)]
    next_job_id: u64,
}

/// What the state file holds.
pub struct State {
    pub preheats: HashMap<PreheatId, Preheat>,
    pub jobs: JobBook,
}

/// The records' file. Every write replaces it atomically, so a crash or a full disk leaves
/// the previous version, never a torn one.
pub struct RecordFile {
    path: PathBuf,
}

impl RecordFile {
    pub fn new(home: &Path) -> RecordFile {
        RecordFile { path: home.join("preheats.json") }
    }

    /// The records on disk. An unreadable file is set aside (`preheats.json.bad`) and logged;
    /// job IDs then start above `now` in milliseconds, which no ID handed out before reaches.
    pub fn load(&self, now: DateTime<Utc>) -> State {
        let fresh =
            |first_job_id: u64| State { preheats: HashMap::new(), jobs: JobBook::new(Vec::new(), first_job_id) };
        let Ok(bytes) = std::fs::read(&self.path) else { return fresh(1) };
        match serde_json::from_slice::<StateFile>(&bytes) {
            Ok(s) => State {
                preheats: s.preheats.into_iter().map(|p| (p.id.clone(), p)).collect(),
                jobs: JobBook::new(s.jobs, s.next_job_id),
            },
            Err(e) => {
                tracing::error!(file = %self.path.display(), error = %e, "preheat state unreadable; starting empty");
                let _ = std::fs::rename(&self.path, self.path.with_extension("json.bad"));
                fresh(u64::try_from(now.timestamp_millis()).unwrap_or(1).saturating_add(1))
            }
        }
    }

    /// Replaces the file with `records` and the jobs; false (logged) when it could not be written.
    pub fn save(&self, records: &HashMap<PreheatId, Preheat>, book: &JobBook) -> bool {
        let mut preheats: Vec<Preheat> = records.values().cloned().collect();
        preheats.sort_by(|a, b| a.start_time.cmp(&b.start_time).then_with(|| a.id.cmp(&b.id)));
        let file = StateFile { preheats, jobs: book.all().cloned().collect(), next_job_id: book.next_id() };
        let result =
            serde_json::to_vec(&file).map_err(std::io::Error::other).and_then(|body| write_atomic(&self.path, &body));
        if let Err(e) = &result {
            tracing::error!(file = %self.path.display(), error = %e, "cannot persist preheat state");
        }
        result.is_ok()
    }
}
