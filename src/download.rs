//! The download port (§5.7): serves `/download/<id[0:3]>/<id>` with single-range
//! semantics straight from the cache, streaming from the file. While a run is still
//! writing, only the bytes already written are served (§16 P13).
//!
//! The path is never joined onto the file system: the ID must be a task ID and the
//! directory its prefix, and the file comes from the `CdnManager`, so nothing outside
//! the cache can be named.

use std::io::SeekFrom;
use std::time::Duration;

use actix::Addr;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use supernode_actors::cdn::{CdnManager, LookupServable};
use supernode_actors::TaskId;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

pub struct DownloadState {
    pub cdn: Addr<CdnManager>,
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

/// `bytes=a-b`, `bytes=a-`, `bytes=-n`; an end past the file is clamped (dfget asks for full slots).
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

async fn serve(req: HttpRequest, path: web::Path<(String, String)>, state: web::Data<DownloadState>) -> HttpResponse {
    let (prefix, raw_id) = path.into_inner();
    let Some(id) = TaskId::parse(&raw_id).filter(|id| id.prefix() == prefix) else { return not_found() };
    // A finishing run renames its temporary file; the bytes are then under the final name.
    let mut opened = None;
    for _ in 0..3 {
        let Ok(Some(servable)) = state.cdn.send(LookupServable(id.clone())).await else { return not_found() };
        let mut file = tokio::fs::File::open(&servable.path).await;
        if let (Err(_), Some(renamed)) = (&file, &servable.renamed) {
            file = tokio::fs::File::open(renamed).await;
        }
        match file {
            Ok(f) => {
                opened = Some((f, servable.len, servable.guard));
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let Some((mut file, len, guard)) = opened else { return not_found() };
    let range = parse_range(req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()), len);
    let (status, start, end) = match range {
        RangeRequest::Whole => (actix_web::http::StatusCode::OK, 0, len),
        RangeRequest::Part(a, b) => (actix_web::http::StatusCode::PARTIAL_CONTENT, a, b + 1),
        RangeRequest::Unsatisfiable => {
            return HttpResponse::RangeNotSatisfiable()
                .insert_header((header::CONTENT_RANGE, format!("bytes */{len}")))
                .finish();
        }
    };
    let mut builder = HttpResponse::build(status);
    builder.content_type("application/octet-stream").insert_header((header::ACCEPT_RANGES, "bytes"));
    if status == actix_web::http::StatusCode::PARTIAL_CONTENT {
        builder.insert_header((header::CONTENT_RANGE, format!("bytes {start}-{}/{len}", end - 1)));
    }
    if req.method() == actix_web::http::Method::HEAD {
        return builder.insert_header((header::CONTENT_LENGTH, end - start)).finish();
    }
    if file.seek(SeekFrom::Start(start)).await.is_err() {
        return HttpResponse::InternalServerError().finish();
    }
    let reader = file.take(end - start);
    // The guard lives as long as the body stream: disk GC keeps the file while it is read.
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024).map(move |chunk| {
        let _reading = &guard;
        chunk
    });
    builder.body(actix_web::body::SizedStream::new(end - start, stream))
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
