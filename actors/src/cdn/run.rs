//! One CDN run: open the source, report what it said, stream the body to the writer.

use std::sync::Arc;
use std::time::Instant;

use actix::{Addr, Recipient};
use futures_util::StreamExt;

use super::policy::SourcePolicy;
use super::source::{self, Opened, SourceFailure, SourceRequest, SourceTimeouts, Validators};
use super::store::{self, CacheStore, FileMeta};
use super::writer::{Writer, WriterSpec};
use super::{CdnConfig, CdnManager, PieceOnDisk, TaskSpec};
use crate::events::{FailureKind, SourceInfo, SourceOpened};
use crate::ids::TaskId;
use crate::metrics::Metrics;
use crate::piece::piece_size_for;

pub(super) struct RunJob {
    pub task_id: TaskId,
    pub run_id: u64,
    pub spec: TaskSpec,
    /// The complete cached copy of this task, if one is on disk.
    pub previous: Option<FileMeta>,
    pub store: CacheStore,
    pub config: CdnConfig,
    pub max_file_bytes: Option<u64>,
    pub policy: SourcePolicy,
    pub opened: Recipient<SourceOpened>,
    pub manager: Addr<CdnManager>,
    pub metrics: Arc<Metrics>,
}

pub(super) struct RunOutput {
    pub piece_size: u64,
    pub piece_md5s: Vec<String>,
    pub real_md5: String,
    pub http_len: u64,
    pub file_length: u64,
    /// Pieces were already reported one by one while written.
    pub announced: bool,
}

type RunResult = Result<RunOutput, (FailureKind, String)>;

fn failure_kind(f: &SourceFailure) -> FailureKind {
    match f {
        SourceFailure::Auth(_) | SourceFailure::Status(_) => FailureKind::SourceError,
        SourceFailure::Unreachable(_) | SourceFailure::Invalid(_) | SourceFailure::Denied(_) => FailureKind::Failed,
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(super) async fn execute(job: RunJob) -> RunResult {
    let started = Instant::now();
    let result = execute_inner(&job).await;
    job.metrics.cdn_duration.observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(out) => {
            tracing::info!(task = %job.task_id, bytes = out.http_len, elapsed_ms = started.elapsed().as_millis() as u64, "CDN run succeeded")
        }
        Err((_, reason)) => tracing::warn!(task = %job.task_id, %reason, "CDN run failed"),
    }
    result
}

async fn execute_inner(job: &RunJob) -> RunResult {
    let request = SourceRequest {
        url: job.spec.raw_url.clone(),
        headers: job.spec.headers.clone(),
        insecure: job.spec.insecure,
        root_cas: job.spec.root_cas.clone(),
    };
    let timeouts = SourceTimeouts { connect: job.config.source_connect_timeout, head: job.config.source_head_timeout };
    let validators = job
        .previous
        .as_ref()
        .map(|m| Validators { last_modified: m.last_modified, etag: m.etag.clone() })
        .filter(|v| !v.is_empty());
    let report = |result: Result<SourceInfo, SourceFailure>| {
        job.opened.do_send(SourceOpened { task_id: job.task_id.clone(), run_id: job.run_id, result });
    };

    let opened = source::open(&request, validators.as_ref(), &timeouts, &job.policy).await;
    let body = match opened {
        Err(f) => {
            job.metrics.cdn_download_failed.inc();
            report(Err(f.clone()));
            return Err((failure_kind(&f), f.to_string()));
        }
        Ok(Opened::NotModified) => return reuse_cached(job, report).await,
        Ok(Opened::Body(body)) => body,
    };

    job.metrics.cdn_cache_miss.inc();
    job.metrics.cdn_download.inc();
    let http_len = body.content_length.map_or(-1, |l| l as i64);
    let piece_size = piece_size_for(http_len);
    report(Ok(SourceInfo { http_len, piece_size, cache_hit: false }));

    job.store.remove_all(&job.task_id);
    let meta = FileMeta {
        task_id: job.task_id.to_string(),
        url: job.spec.task_url.clone(),
        piece_size,
        http_file_len: http_len,
        biz_id: job.spec.identifier.clone(),
        access_time: now_ms(),
        md5: job.spec.md5.clone(),
        last_modified: body.last_modified,
        etag: body.etag.clone(),
        raw_url: job.spec.raw_url.clone(),
        headers: job.spec.headers.clone(),
        insecure: job.spec.insecure,
        root_cas: job.spec.root_cas.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect(),
        ..FileMeta::default()
    };
    job.store.write_meta(&job.task_id, &meta).map_err(|e| (FailureKind::Failed, format!("cache not writable: {e}")))?;

    let manager = job.manager.clone();
    let (task_id, run_id) = (job.task_id.clone(), job.run_id);
    let mut writer = Writer::spawn(
        WriterSpec {
            store: job.store.clone(),
            task_id: job.task_id.clone(),
            piece_size,
            expected_len: body.content_length,
            expected_md5: (!job.spec.md5.is_empty()).then(|| job.spec.md5.clone()),
            meta,
            max_file_bytes: job.max_file_bytes,
        },
        move |piece_num, md5, bytes_written| {
            manager.do_send(PieceOnDisk {
                task_id: task_id.clone(),
                run_id,
                piece_size,
                piece_num,
                md5,
                bytes_written,
            });
        },
    );

    let mut response = body.body;
    let stall = job.config.source_stall_timeout;
    loop {
        let next = match tokio::time::timeout(stall, response.next()).await {
            Ok(next) => next,
            Err(_) => {
                job.metrics.cdn_download_failed.inc();
                return Err((FailureKind::Failed, format!("source sent nothing for {}s", stall.as_secs())));
            }
        };
        match next {
            None => break,
            Some(Ok(chunk)) => {
                job.metrics.cdn_download_bytes.inc_by(chunk.len() as u64);
                if writer.send(chunk).await.is_err() {
                    break;
                }
            }
            Some(Err(e)) => {
                job.metrics.cdn_download_failed.inc();
                return Err((FailureKind::Failed, format!("source body interrupted: {e}")));
            }
        }
    }
    match writer.finish().await {
        Ok(written) => Ok(RunOutput {
            piece_size,
            piece_md5s: written.piece_md5s,
            real_md5: written.real_md5,
            http_len: written.http_len,
            file_length: written.file_length,
            announced: true,
        }),
        Err(e) => {
            job.metrics.cdn_download_failed.inc();
            Err((FailureKind::Failed, e.to_string()))
        }
    }
}

/// 304: the cached copy is current; no body is transferred.
async fn reuse_cached(job: &RunJob, report: impl Fn(Result<SourceInfo, SourceFailure>)) -> RunResult {
    let Some(meta) = job.previous.clone() else {
        return Err((FailureKind::Failed, "source answered 304 without a cached copy".into()));
    };
    let store = job.store.clone();
    let id = job.task_id.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let layout = meta.layout();
        let list = match store.read_md5_list(&id, &meta.real_md5, layout.piece_count()) {
            Some(list) => list,
            None => {
                let (list, md5) = store::rehash(&store.data_path(&id), &layout).ok()?;
                (md5 == meta.real_md5).then_some(list)?
            }
        };
        let mut touched = meta.clone();
        let now = now_ms();
        touched.interval = now - touched.access_time;
        touched.access_time = now;
        let _ = store.write_meta(&id, &touched);
        Some((meta, list))
    })
    .await
    .ok()
    .flatten();
    let Some((meta, piece_md5s)) = loaded else {
        report(Err(SourceFailure::Invalid("cached copy unreadable".into())));
        return Err((FailureKind::Failed, "cached copy unreadable".into()));
    };
    job.metrics.cdn_cache_hit.inc();
    let layout = meta.layout();
    report(Ok(SourceInfo { http_len: meta.http_file_len, piece_size: layout.piece_size, cache_hit: true }));
    Ok(RunOutput {
        piece_size: layout.piece_size,
        piece_md5s,
        real_md5: meta.real_md5,
        http_len: layout.http_len,
        file_length: layout.file_length(),
        announced: false,
    })
}
