//! Preheat records as kept, shown and persisted (`<home>/preheats.json`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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

    /// The records on disk. An unreadable file is set aside (`preheats.json.bad`) and logged.
    pub fn load(&self) -> HashMap<PreheatId, Preheat> {
        let Ok(bytes) = std::fs::read(&self.path) else { return HashMap::new() };
        match serde_json::from_slice::<StateFile>(&bytes) {
            Ok(s) => s.preheats.into_iter().map(|p| (p.id.clone(), p)).collect(),
            Err(e) => {
                tracing::error!(file = %self.path.display(), error = %e, "preheat state unreadable; starting empty");
                let _ = std::fs::rename(&self.path, self.path.with_extension("json.bad"));
                HashMap::new()
            }
        }
    }

    pub fn save(&self, records: &HashMap<PreheatId, Preheat>) {
        let mut preheats: Vec<Preheat> = records.values().cloned().collect();
        preheats.sort_by(|a, b| a.start_time.cmp(&b.start_time).then_with(|| a.id.cmp(&b.id)));
        let result = serde_json::to_vec(&StateFile { preheats })
            .map_err(std::io::Error::other)
            .and_then(|body| write_atomic(&self.path, &body));
        if let Err(e) = result {
            tracing::error!(file = %self.path.display(), error = %e, "cannot persist preheat state");
        }
    }
}
