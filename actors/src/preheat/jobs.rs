//! The work of one preheat, as a future the `PreheatManager` runs: a file preheat registers
//! its task as dfget would and waits for the CDN; an image preheat reads the manifest and
//! names its layers, which become file preheats of their own.

use std::collections::BTreeMap;
use std::time::Duration;

use actix::Addr;

use super::image::{self, RegistryError};
use super::record::{filter_keys, Preheat};
use crate::cdn::source::{http_client, SourceTimeouts};
use crate::cdn::{CacheFiles, CdnManager, CopyError, SourcePolicy, SourceSha256};
use crate::failure::{CdnFailure, PolicyRefusal, SourceFailure};
use crate::spec::{task_url, SourceTls, TaskSpec};
use crate::status::CdnStatus;
use crate::task_manager::{AwaitTask, DeleteTask, Downloader, Register, RegisterError, Route, TaskManager};

/// Why a preheat failed; its text is the record's `errorMsg`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PreheatError {
    #[error(transparent)]
    Register(RegisterError),
    #[error(transparent)]
    Cdn(CdnFailure),
    #[error("task was deleted while preheating")]
    TaskGone,
    #[error("layer digest mismatch: expected sha256:{expected}, got sha256:{actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("cannot check the layer digest: {0}")]
    Readback(CopyError),
    #[error(transparent)]
    Registry(RegistryError),
    #[error(transparent)]
    Denied(PolicyRefusal),
    #[error(transparent)]
    Client(SourceFailure),
    /// A layer of an image failed: its URL and its own error.
    #[error("{url} {reason}")]
    LayerFailed { url: String, reason: String },
    #[error("{0} was deleted")]
    LayerDeleted(String),
    #[error("timeout")]
    Timeout,
    #[error("service is shutting down")]
    Stopped,
}

impl From<actix::MailboxError> for PreheatError {
    fn from(_: actix::MailboxError) -> Self {
        PreheatError::Stopped
    }
}

/// What a job needs of the rest of the supernode.
#[derive(Clone)]
pub struct JobEnv {
    pub tasks: Addr<TaskManager>,
    pub cdn: Addr<CdnManager>,
    pub policy: SourcePolicy,
    pub registry_timeout: Duration,
    pub platform: String,
}

/// Registers the task like dfget would and waits for the CDN; checks a layer digest if given.
pub async fn run_file(record: Preheat, env: JobEnv) -> Result<(), PreheatError> {
    let spec = TaskSpec {
        raw_url: record.url.clone(),
        task_url: task_url(&record.url, "", &filter_keys(&record.filter)),
        headers: record.headers.clone(),
        identifier: record.identifier.clone(),
        ..TaskSpec::default()
    };
    let registered = env.tasks.send(Register { spec, downloader: Downloader::Nobody, route: Route::ToOwner }).await?;
    let task = registered.map_err(PreheatError::Register)?.task;
    let done = env.tasks.send(AwaitTask(task.id.clone())).await?.ok_or(PreheatError::TaskGone)?;
    match (done.cdn_status, done.failure) {
        (CdnStatus::Success, _) => {}
        (_, Some(failure)) => return Err(PreheatError::Cdn(failure)),
        (_, None) => return Err(PreheatError::TaskGone),
    }
    if let Some(expected) = record.digest.as_deref().and_then(|d| d.strip_prefix("sha256:")) {
        let actual = env.cdn.send(SourceSha256(task.id.clone())).await?.map_err(PreheatError::Readback)?;
        if actual != expected {
            env.tasks.do_send(DeleteTask { task_id: task.id, files: CacheFiles::Remove });
            return Err(PreheatError::DigestMismatch { expected: expected.to_string(), actual });
        }
    }
    Ok(())
}

/// A layer of an image: its blob URL and digest, and the headers to fetch it with.
pub struct Layers {
    pub blobs: Vec<(String, String)>,
    pub headers: BTreeMap<String, String>,
}

/// Reads the manifest (following a registry token challenge) and names the layer blobs.
pub async fn read_image(record: Preheat, env: JobEnv) -> Result<Layers, PreheatError> {
    let timeouts = SourceTimeouts { connect: Duration::from_secs(3), head: env.registry_timeout };
    env.policy.check_url(&record.url).map_err(PreheatError::Denied)?;
    let client = http_client(&SourceTls::default(), &timeouts, &env.policy).map_err(PreheatError::Client)?;
    let (blobs, headers) =
        image::layer_urls(&client, &record.url, record.headers.clone(), &env.platform, record.registry_auth)
            .await
            .map_err(PreheatError::Registry)?;
    Ok(Layers { blobs, headers })
}
