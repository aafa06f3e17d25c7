//! The `source` CDN pattern: the supernode caches nothing.
//!
//! A run only asks the source for its first byte: a 206 with a `Content-Range` says that
//! it serves ranges and how long it is. Every piece then counts as held by the supernode,
//! and dfget fetches those pieces from the source itself, one range request each; peers
//! share what they fetched as usual. A source that answers the range request with a whole
//! body (no range support), or with no length, cannot be served this way and the
//! registration is refused with the reason.

use std::time::Instant;

use super::run::RunJob;
use super::source::{self, Condition, Opened, SourceRequest, SourceTimeouts};
use crate::events::{CdnSuccess, SourceInfo, SourceOpened};
use crate::failure::{CdnFailure, SourceFailure};
use crate::piece::{piece_size_for, unwrapped_piece_count};

/// Checks the source of `job`'s task and reports its length; nothing is written.
pub(super) async fn check(job: RunJob) -> Result<CdnSuccess, CdnFailure> {
    let started = Instant::now();
    let result = probe(&job).await;
    job.metrics.cdn_duration.observe(started.elapsed().as_secs_f64());
    let opened = match &result {
        Ok(length) => Ok(SourceInfo { length: Some(*length), piece_size: piece_size_for(*length as i64) }),
        Err(reason) => Err(CdnFailure::Source(reason.clone())),
    };
    job.opened.do_send(SourceOpened { task_id: job.task_id.clone(), run_id: job.run_id, result: opened });
    match result {
        Ok(length) => {
            tracing::info!(task = %job.task_id, bytes = length, "source serves ranges; its pieces come from it");
            Ok(CdnSuccess {
                http_len: length,
                file_length: 0,
                real_md5: String::new(),
                piece_total: unwrapped_piece_count(length),
            })
        }
        Err(reason) => {
            tracing::warn!(task = %job.task_id, %reason, "source cannot be served by its ranges");
            Err(CdnFailure::Source(reason))
        }
    }
}

/// The source's length, from its answer to `Range: bytes=0-0`.
async fn probe(job: &RunJob) -> Result<u64, SourceFailure> {
    if job.spec.headers.keys().any(|k| k.eq_ignore_ascii_case("range")) {
        return Err(SourceFailure::NoRanges("a task with its own Range header is not served by the source".into()));
    }
    let request =
        SourceRequest { url: job.spec.raw_url.clone(), headers: job.spec.headers.clone(), tls: job.spec.tls.clone() };
    let timeouts = SourceTimeouts { connect: job.config.source_connect_timeout, head: job.config.source_head_timeout };
    match source::open(&request, Condition::FirstByte, &timeouts, &job.policy).await? {
        Opened::Rest { total, .. } => Ok(total),
        Opened::Body(_) | Opened::NotModified => Err(SourceFailure::NoRanges("no range answer".into())),
    }
}
