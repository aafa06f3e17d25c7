//! One CDN run: open the source, report what it said, stream the body to the writer.

use std::fs::{File, OpenOptions};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use actix::{Addr, Recipient};
use futures_util::StreamExt;

use super::blocks::Blocks;
use super::policy::SourcePolicy;
use super::readback::{self, Prefix};
use super::source::{self, Condition, Opened, SourceBody, SourceRequest, SourceTimeouts, Validators};
use super::store::{CacheStore, FileMeta};
use super::writer::{Writer, WriterSpec};
use super::{CdnConfig, CdnManager, PieceOnDisk, TempFileOpened};
use crate::events::{SourceInfo, SourceOpened};
use crate::failure::{CdnFailure, SourceFailure, WriteError};
use crate::ids::TaskId;
use crate::metrics::Metrics;
use crate::piece::{piece_size_for, PieceDigest, PieceLayout};
use crate::spec::TaskSpec;
use crate::throttle::Throttle;

pub(super) struct RunJob {
    pub task_id: TaskId,
    pub run_id: u64,
    pub spec: TaskSpec,
    pub store: CacheStore,
    pub config: CdnConfig,
    pub policy: SourcePolicy,
    pub opened: Recipient<SourceOpened>,
    pub manager: Addr<CdnManager>,
    pub metrics: Arc<Metrics>,
    /// When the run started, recorded as the file's last use.
    pub access_time: SystemTime,
    /// The cap on source reads all runs share.
    pub throttle: Option<Throttle>,
}

pub(super) struct RunOutput {
    pub piece_size: u64,
    pub pieces: Vec<PieceDigest>,
    pub real_md5: String,
    pub http_len: u64,
    pub file_length: u64,
    /// The body was fetched into the temporary file, rather than confirmed by a 304.
    pub fetched: bool,
    /// Whether each piece was announced as it was written. A source with an expected md5 is
    /// announced only once the whole of it matched: a piece handed out earlier could come
    /// from a file that is then thrown away.
    pub announced: bool,
}

type RunResult = Result<RunOutput, CdnFailure>;

fn ms_epoch(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Runs blocking file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WriteError> + Send + 'static,
) -> Result<T, WriteError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(std::io::Error::other(e).into()))
}

pub(super) async fn execute(job: RunJob) -> RunResult {
    let started = Instant::now();
    let result = execute_inner(&job).await.map_err(|f| f.naming_disk(job.store.root()));
    job.metrics.cdn_duration.observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(out) => {
            tracing::info!(task = %job.task_id, bytes = out.http_len, elapsed_ms = started.elapsed().as_millis() as u64, "CDN run succeeded")
        }
        Err(reason) => tracing::warn!(task = %job.task_id, %reason, "CDN run failed"),
    }
    result
}

async fn execute_inner(job: &RunJob) -> RunResult {
    let report = |result: Result<SourceInfo, CdnFailure>| {
        job.opened.do_send(SourceOpened { task_id: job.task_id.clone(), run_id: job.run_id, result });
    };
    // A complete copy of this very resource on disk is revalidated instead of fetched again;
    // the pieces an interrupted run left are kept when the source still has the same file.
    let (store, id, spec) = (job.store.clone(), job.task_id.clone(), job.spec.clone());
    let (previous, partial) = blocking(move || Ok(on_disk(&store, &id, &spec))).await.unwrap_or((None, None));
    let request =
        SourceRequest { url: job.spec.raw_url.clone(), headers: job.spec.headers.clone(), tls: job.spec.tls.clone() };
    let timeouts = SourceTimeouts { connect: job.config.source_connect_timeout, head: job.config.source_head_timeout };
    let validators = |m: &FileMeta| Validators { last_modified: m.last_modified, etag: m.etag.clone() };
    let revalidate = previous.as_ref().map(validators).filter(|v| !v.is_empty());
    let resume = partial.as_ref().map(|(m, prefix)| (validators(m), prefix.payload));
    let condition = match (&revalidate, &resume) {
        (Some(v), _) => Condition::Revalidate(v),
        (None, Some((v, offset))) => Condition::ResumeFrom { offset: *offset, validators: v },
        (None, None) => Condition::Plain,
    };

    let source_failed = |f: SourceFailure| {
        job.metrics.cdn_download_failed.inc();
        report(Err(CdnFailure::Source(f.clone())));
        CdnFailure::Source(f)
    };
    let (body, rest) = match source::open(&request, condition, &timeouts, &job.policy).await {
        Err(f) => return Err(source_failed(f)),
        Ok(Opened::NotModified) => match previous {
            Some(meta) => return reuse_cached(job, meta, report).await,
            None => return Err(CdnFailure::CacheUnreadable("source answered 304 without a cached copy".into())),
        },
        Ok(Opened::Body(body)) => (body, None),
        Ok(Opened::Rest { body, total }) => match partial {
            Some((meta, prefix)) if meta.http_file_len == total as i64 => (body, Some((meta, prefix, total))),
            _ => {
                let kept = format!("the rest of a file of {total} bytes is not the file kept");
                return Err(source_failed(SourceFailure::Invalid(kept)));
            }
        },
    };
    job.metrics.cdn_cache_miss.inc();
    job.metrics.cdn_download.inc();
    match rest {
        Some((meta, prefix, total)) => {
            tracing::info!(task = %job.task_id, from = prefix.payload, total, "resuming an interrupted download");
            report(Ok(SourceInfo { length: Some(total), piece_size: meta.piece_size }));
            fetch(job, body, Start::Resume { meta: Box::new(meta), prefix, total }).await
        }
        None => {
            let piece_size = piece_size_for(body.content_length.map_or(-1, |l| l as i64));
            report(Ok(SourceInfo { length: body.content_length, piece_size }));
            fetch(job, body, Start::Fresh { piece_size }).await
        }
    }
}

/// What is on disk for the task: a complete copy of the same resource, or the metadata and
/// the kept pieces of an interrupted run of it.
fn on_disk(store: &CacheStore, id: &TaskId, spec: &TaskSpec) -> (Option<FileMeta>, Option<(FileMeta, Prefix)>) {
    let Some(meta) = store.read_meta(id).filter(|m| m.names(spec)) else { return (None, None) };
    if meta.is_complete() {
        return (store.data_path(id).exists().then_some(meta), None);
    }
    if !meta.resumable() || meta.piece_size != piece_size_for(meta.http_file_len) {
        return (None, None);
    }
    match readback::rehash_prefix(&store.temp_path(id), &meta.layout()) {
        Ok(prefix) if !prefix.pieces.is_empty() => (None, Some((meta, prefix))),
        _ => (None, None),
    }
}

/// How a fetch starts.
enum Start {
    /// A fresh temporary file.
    Fresh { piece_size: u64 },
    /// After the kept pieces of an interrupted run; the source sends the rest of `total` bytes.
    Resume { meta: Box<FileMeta>, prefix: Prefix, total: u64 },
}

/// Streams a source body into the temporary file.
async fn fetch(job: &RunJob, body: SourceBody, start: Start) -> RunResult {
    let (meta, resume, expected_len) = match start {
        Start::Fresh { piece_size } => {
            let mut meta = FileMeta::for_run(&job.task_id, &job.spec, piece_size, ms_epoch(job.access_time));
            meta.http_file_len = body.content_length.map_or(-1, |l| l as i64);
            meta.last_modified = body.last_modified;
            meta.etag = body.etag.clone();
            (meta, None, body.content_length)
        }
        Start::Resume { meta, prefix, total } => (*meta, Some(prefix), Some(total)),
    };
    let piece_size = meta.piece_size;
    let fresh = resume.is_none();
    let (store, id, start_meta) = (job.store.clone(), job.task_id.clone(), meta.clone());
    let (file, reader) = blocking(move || -> Result<(File, File), WriteError> {
        if fresh {
            store.remove_all(&id);
            store.write_meta(&id, &start_meta)?;
        }
        let path = store.temp_path(&id);
        // Readable too: a last piece of a source of unknown length is re-read to fix its header.
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(fresh).open(&path)?;
        Ok((file, File::open(&path)?))
    })
    .await?;
    let reader = Arc::new(reader);
    job.manager.do_send(TempFileOpened { task_id: job.task_id.clone(), run_id: job.run_id, reader });
    let announce = job.spec.md5.is_empty();
    // The kept pieces are servable at once (once the whole source matched, for an expected md5).
    let kept = if announce { resume.as_ref() } else { None };
    for (n, digest) in kept.iter().flat_map(|p| p.pieces.iter().enumerate()) {
        let (piece_num, written) = (n as u64, (n as u64 + 1) * piece_size);
        let (task_id, run_id, digest) = (job.task_id.clone(), job.run_id, *digest);
        job.manager.do_send(PieceOnDisk { task_id, run_id, piece_size, piece_num, digest, written });
    }

    let manager = job.manager.clone();
    let (task_id, run_id) = (job.task_id.clone(), job.run_id);
    let mut writer = Writer::spawn(
        WriterSpec {
            store: job.store.clone(),
            task_id: job.task_id.clone(),
            file,
            piece_size,
            expected_len,
            expected_md5: (!job.spec.md5.is_empty()).then(|| job.spec.md5.clone()),
            meta,
            max_file_bytes: job.config.max_file_bytes(),
            resume,
        },
        move |piece_num, digest, written| {
            if announce {
                manager.do_send(PieceOnDisk {
                    task_id: task_id.clone(),
                    run_id,
                    piece_size,
                    piece_num,
                    digest,
                    written,
                });
            }
        },
    );

    let mut response = body.body;
    let stall = job.config.source_stall_timeout;
    let mut blocks = Blocks::new(PieceLayout::new(0, piece_size).payload_size());
    let mut ready = Vec::new();
    'body: loop {
        let Ok(next) = tokio::time::timeout(stall, response.next()).await else {
            job.metrics.cdn_download_failed.inc();
            return Err(CdnFailure::Stalled(stall));
        };
        match next {
            None => break,
            Some(Ok(chunk)) => {
                if let Some(throttle) = &job.throttle {
                    throttle.pass(chunk.len()).await;
                }
                job.metrics.cdn_download_bytes.inc_by(chunk.len() as u64);
                blocks.add(chunk, &mut ready);
                for block in ready.drain(..) {
                    if writer.send(block).await.is_err() {
                        break 'body;
                    }
                }
            }
            Some(Err(e)) => {
                job.metrics.cdn_download_failed.inc();
                return Err(CdnFailure::Interrupted(e.to_string()));
            }
        }
    }
    if let Some(block) = blocks.rest() {
        let _ = writer.send(block).await;
    }
    match writer.finish().await {
        Ok(written) => Ok(RunOutput {
            piece_size,
            pieces: written.pieces,
            real_md5: written.real_md5,
            http_len: written.http_len,
            file_length: written.file_length,
            fetched: true,
            announced: announce,
        }),
        Err(e) => {
            job.metrics.cdn_download_failed.inc();
            Err(CdnFailure::Write(e))
        }
    }
}

/// 304: the cached copy is current; no body is transferred. Its pieces come from the index,
/// or from the file itself when the index is gone.
async fn reuse_cached(job: &RunJob, meta: FileMeta, report: impl Fn(Result<SourceInfo, CdnFailure>)) -> RunResult {
    let (store, id) = (job.store.clone(), job.task_id.clone());
    let now = ms_epoch(job.access_time);
    let loaded = blocking(move || {
        let layout = meta.layout();
        let pieces = match store.read_md5_list(&id, &meta.real_md5, layout.piece_count()) {
            Some(list) => list,
            None => {
                let (list, md5) = readback::rehash(&store.data_path(&id), &layout)?;
                if md5 != meta.real_md5 {
                    return Err(
                        std::io::Error::other(format!("source md5 {md5}, metadata says {}", meta.real_md5)).into()
                    );
                }
                list
            }
        };
        let touched = FileMeta { interval: now - meta.access_time, access_time: now, ..meta.clone() };
        if let Err(e) = store.write_meta(&id, &touched) {
            tracing::warn!(task = %id, error = %e, "cannot record the cached file's last use");
        }
        Ok((meta, pieces))
    })
    .await;
    let (meta, pieces) = match loaded {
        Ok(found) => found,
        Err(e) => {
            let failure = CdnFailure::CacheUnreadable(e.to_string());
            report(Err(failure.clone()));
            return Err(failure);
        }
    };
    job.metrics.cdn_cache_hit.inc();
    let layout = meta.layout();
    report(Ok(SourceInfo { length: Some(layout.http_len), piece_size: layout.piece_size }));
    Ok(RunOutput {
        piece_size: layout.piece_size,
        pieces,
        real_md5: meta.real_md5,
        http_len: layout.http_len,
        file_length: layout.file_length(),
        fetched: false,
        announced: false,
    })
}
