//! Why a CDN run failed, kept typed from where it happens to where it is rendered. Part of
//! the vocabulary: imports nothing of the crate but [`CdnStatus`].

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::status::CdnStatus;

/// Why the source policy refuses a source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyRefusal {
    #[error("source host {0} is denied by the source policy")]
    DeniedHost(String),
    #[error("source address {0} is denied by the source policy")]
    DeniedAddress(IpAddr),
    #[error("source {0} is not in the allowed sources")]
    NotAllowed(String),
    #[error("no address of {0} is allowed by the source policy")]
    NoAllowedAddress(String),
    #[error("{url:?} is not a URL the source policy can check: {reason}")]
    BadUrl { url: String, reason: String },
}

/// How a source answered the request that opens a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceFailure {
    #[error("source unreachable: {0}")]
    Unreachable(String),
    #[error("source answered {0}: authentication required")]
    Auth(u16),
    #[error("source answered {0}")]
    Status(u16),
    #[error("invalid source request: {0}")]
    Invalid(String),
    #[error(transparent)]
    Denied(PolicyRefusal),
    /// The source CDN pattern needs a source that serves ranges of a known length.
    #[error("source cannot be served by its ranges: {0}")]
    NoRanges(String),
}

impl SourceFailure {
    /// 404s and unreachable sources are answered from memory for a while
    /// (`fail_access_interval`), so a burst of registrations does not hammer the origin.
    pub fn remembered(&self) -> bool {
        matches!(self, SourceFailure::Unreachable(_) | SourceFailure::Status(404))
    }
}

/// Why a run's bytes could not become a cached file.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("cache not writable: {0}")]
    Disk(Arc<io::Error>),
    #[error("source sent {got} bytes, expected {expected}")]
    Length { expected: u64, got: u64 },
    #[error("md5 mismatch: expected {expected}, source bytes have {got}")]
    Md5 { expected: String, got: String },
    #[error("run abandoned before the end of the source")]
    Aborted,
    #[error("cache quota exceeded: the file needs more than the {0} bytes allowed")]
    Quota(u64),
    #[error("disk full: no space left on the device of the cache directory {}", .0.display())]
    DiskFull(PathBuf),
}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        WriteError::Disk(Arc::new(e))
    }
}

/// Why a CDN run failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CdnFailure {
    /// The source's answer when the run opened it.
    #[error(transparent)]
    Source(#[from] SourceFailure),
    #[error("source sent nothing for {}s", .0.as_secs())]
    Stalled(Duration),
    #[error("source body interrupted: {0}")]
    Interrupted(String),
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A 304 confirmed the cached copy, which could then not be read back.
    #[error("cached copy unreadable: {0}")]
    CacheUnreadable(String),
    /// The run failed at the task's owner in a cluster, with that status and reason.
    #[error("{reason}")]
    AtOwner { status: CdnStatus, reason: String },
}

impl CdnFailure {
    /// `SourceError` when the source answered an error status; `Failed` for everything else.
    pub fn status(&self) -> CdnStatus {
        match self {
            CdnFailure::Source(SourceFailure::Auth(_) | SourceFailure::Status(_) | SourceFailure::NoRanges(_)) => {
                CdnStatus::SourceError
            }
            CdnFailure::AtOwner { status: CdnStatus::SourceError, .. } => CdnStatus::SourceError,
            _ => CdnStatus::Failed,
        }
    }

    /// A write that ran out of space says so, naming the cache directory `dir`.
    pub fn naming_disk(self, dir: &Path) -> CdnFailure {
        match self {
            CdnFailure::Write(WriteError::Disk(e))
                if matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded) =>
            {
                CdnFailure::Write(WriteError::DiskFull(dir.to_path_buf()))
            }
            other => other,
        }
    }

    pub fn source(&self) -> Option<&SourceFailure> {
        match self {
            CdnFailure::Source(f) => Some(f),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_the_kind_of_failure() {
        assert_eq!(CdnFailure::Source(SourceFailure::Status(500)).status(), CdnStatus::SourceError);
        assert_eq!(CdnFailure::Source(SourceFailure::Auth(401)).status(), CdnStatus::SourceError);
        assert_eq!(CdnFailure::Source(SourceFailure::Unreachable("x".into())).status(), CdnStatus::Failed);
        assert_eq!(CdnFailure::Stalled(Duration::from_secs(60)).status(), CdnStatus::Failed);
        let disk = CdnFailure::Write(io::Error::from(io::ErrorKind::StorageFull).into());
        assert_eq!(disk.status(), CdnStatus::Failed);
        assert!(disk.to_string().starts_with("cache not writable"), "{disk}");
        let full = disk.naming_disk(Path::new("/srv/cache")).to_string();
        assert!(full.starts_with("disk full") && full.contains("/srv/cache"), "{full}");
        let other = CdnFailure::Write(io::Error::from(io::ErrorKind::PermissionDenied).into());
        assert!(other.naming_disk(Path::new("/srv/cache")).to_string().starts_with("cache not writable"));
    }
}
