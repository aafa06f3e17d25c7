//! Where a task's CDN copy is. Part of the vocabulary: imports nothing of the crate.

use serde::{Deserialize, Serialize};

/// The CDN status of a task, with Go's names on the wire (`cdnStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CdnStatus {
    /// A run is starting: the source has not answered yet.
    Waiting,
    /// The source answered and its body is being written.
    Running,
    /// The run failed on our side or in transport (timeout, stall, cut-off body, length or
    /// md5 mismatch, cache not writable).
    Failed,
    /// The copy is complete and verified.
    Success,
    /// The source answered an error status.
    SourceError,
}

impl CdnStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CdnStatus::Waiting => "WAITING",
            CdnStatus::Running => "RUNNING",
            CdnStatus::Failed => "FAILED",
            CdnStatus::Success => "SUCCESS",
            CdnStatus::SourceError => "SOURCE_ERROR",
        }
    }

    /// The run is over, one way or the other.
    pub fn is_final(self) -> bool {
        matches!(self, CdnStatus::Success | CdnStatus::Failed | CdnStatus::SourceError)
    }

    /// The last run failed: the next registration starts a fresh one.
    pub fn is_failure(self) -> bool {
        matches!(self, CdnStatus::Failed | CdnStatus::SourceError)
    }
}
