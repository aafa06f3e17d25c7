//! The download port: serves `/download/<id[0:3]>/<id>` with single-range semantics straight
//! from the cache, which is what dfget asks the super peer's port for (Go needed an nginx
//! beside the supernode for it). While a run is still writing, only the whole pieces
//! already written are served: the only ones handed out.
//!
//! The path is never joined onto the file system: the ID must be a task ID and the
//! directory its prefix, and the file comes from the `CdnManager`, so nothing outside the
//! cache can be named.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use actix::Addr;
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream::{self, Stream};
use supernode_actors::cdn::{CdnManager, LookupServable, ReadGuard, ServableFile};
use supernode_actors::throttle::Throttle;
use supernode_actors::TaskId;

/// Bytes read from disk per chunk of a response body.
const CHUNK: u64 = 256 * 1024;

pub struct DownloadState {
    pub cdn: Addr<CdnManager>,
    /// `[server] upload_rate_limit`, shared by every connection.
    pub throttle: Option<Throttle>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/download/{prefix}/{id}").route(web::get().to(serve)).route(web::head().to(serve)));
}

/// A parsed `Range` header against a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    Whole,
    /// Inclusive, already clamped to the file.
    Part(u64, u64),
    Unsatisfiable,
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n`; an end past the file is clamped (dfget asks for
/// whole piece slots, and the last piece is shorter).
pub fn parse_range(value: Option<&str>, len: u64) -> RangeRequest {
    let Some(value) = value else { return RangeRequest::Whole };
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return RangeRequest::Unsatisfiable };
    if spec.contains(',') {
        return RangeRequest::Unsatisfiable;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeRequest::Unsatisfiable };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (a.is_empty(), b.is_empty()) {
        (false, _) => {
            let Some(start) = parse(a) else { return RangeRequest::Unsatisfiable };
            let end = if b.is_empty() { Some(u64::MAX) } else { parse(b) };
            match end {
                Some(end) if end >= start && start < len => RangeRequest::Part(start, end.min(len - 1)),
                _ => RangeRequest::Unsatisfiable,
            }
        }
        (true, false) => match parse(b) {
            Some(n) if n > 0 && len > 0 => RangeRequest::Part(len.saturating_sub(n), len - 1),
            _ => RangeRequest::Unsatisfiable,
        },
        (true, true) => RangeRequest::Unsatisfiable,
    }
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound().content_type("text/plain; charset=utf-8").body("404 page not found\n")
}

/// `[start, end)` of `file`, read on the blocking pool with positioned reads (readers share
/// a running task's file handle, so none of them may move its offset).
fn body(
    file: Arc<File>,
    (start, end): (u64, u64),
    guard: ReadGuard,
    throttle: Option<Throttle>,
) -> impl Stream<Item = std::io::Result<web::Bytes>> {
    stream::try_unfold((file, start, guard), move |(file, at, guard)| {
        let throttle = throttle.clone();
        async move {
            if at >= end {
                return Ok(None);
            }
            let len = (end - at).min(CHUNK) as usize;
            if let Some(throttle) = &throttle {
                throttle.pass(len).await;
            }
            let reader = file.clone();
            let chunk = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; len];
                reader.read_exact_at(&mut buf, at).map(|()| buf)
            })
            .await
            .map_err(std::io::Error::other)??;
            Ok(Some((web::Bytes::from(chunk), (file, at + len as u64, guard))))
        }
    })
}

async fn serve(req: HttpRequest, path: web::Path<(String, String)>, state: web::Data<DownloadState>) -> HttpResponse {
    let (prefix, raw_id) = path.into_inner();
    let Some(id) = TaskId::parse(&raw_id).filter(|id| id.prefix() == prefix) else { return not_found() };
    let Ok(Some(servable)) = state.cdn.send(LookupServable(id)).await else { return not_found() };
    let file = match servable.file {
        ServableFile::Writing(file) => file,
        ServableFile::Cached(path) => match tokio::task::spawn_blocking(move || File::open(path)).await {
            Ok(Ok(f)) => Arc::new(f),
            _ => return not_found(),
        },
    };
    let len = servable.len;
    let range = parse_range(req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()), len);
    let (status, start, end) = match range {
        RangeRequest::Whole => (StatusCode::OK, 0, len),
        RangeRequest::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        RangeRequest::Unsatisfiable => {
            return HttpResponse::RangeNotSatisfiable()
                .insert_header((header::CONTENT_RANGE, format!("bytes */{len}")))
                .finish();
        }
    };
    let mut builder = HttpResponse::build(status);
    builder.content_type("application/octet-stream").insert_header((header::ACCEPT_RANGES, "bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        builder.insert_header((header::CONTENT_RANGE, format!("bytes {start}-{}/{len}", end - 1)));
    }
    if req.method() == Method::HEAD {
        return builder.insert_header((header::CONTENT_LENGTH, end - start)).finish();
    }
    // The guard lives as long as the body: disk GC keeps the file while it is read.
    let stream = body(file, (start, end), servable.guard, state.throttle.clone());
    builder.body(actix_web::body::SizedStream::new(end - start, Box::pin(stream)))
}

#[cfg(test)]
mod tests {
    use super::{parse_range, RangeRequest::*};

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Whole);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Part(0, 4));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), Part(5, 9));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Part(5, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Part(7, 9));
        assert_eq!(parse_range(Some("bytes=10-20"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=4-3"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("items=0-1"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), Unsatisfiable);
    }
}
