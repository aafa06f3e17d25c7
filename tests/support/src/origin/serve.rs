//! How the origin answers a request: counting it, then the configured fault or status, a 304
//! for a matching conditional request, or the (ranged) body as a stream that counts its bytes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_web::http::header::{self, HttpDate};
use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};

use super::{Content, Counters, Shared};

/// Body chunk size of the origin's streams.
const CHUNK: usize = 64 * 1024;

/// `bytes=a-b` / `bytes=a-` / `bytes=-n` → inclusive range; `Err(())` = unsatisfiable.
fn parse_range(value: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // multi-range: ignored, whole file
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || len == 0 {
            return Some(Err(()));
        }
        return Some(Ok((len.saturating_sub(n), len - 1)));
    }
    let start: u64 = a.parse().ok()?;
    let end: u64 = if b.is_empty() { u64::MAX } else { b.parse().ok()? };
    if end < start {
        return None;
    }
    if start >= len {
        return Some(Err(()));
    }
    Some(Ok((start, end.min(len - 1))))
}

fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_string();
    if_none_match.split(',').any(|t| t.trim() == "*" || strip(t) == strip(etag))
}

pub(super) async fn serve(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let path = req.path().to_string();
    let header = |name: header::HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let inm = header(header::IF_NONE_MATCH);
    let ims = header(header::IF_MODIFIED_SINCE);
    let range = header(header::RANGE);
    let if_range = header(header::IF_RANGE);
    let auth = header(header::AUTHORIZATION);
    let body_counter = {
        let mut counters = shared.counters.lock().unwrap();
        let c = counters.entry(path.clone()).or_default();
        c.requests += 1;
        if inm.is_some() || ims.is_some() {
            c.conditional += 1;
        }
        if let Some(a) = &auth {
            c.authorization.push(a.clone());
        }
        if let Some(r) = &range {
            c.ranges.push(r.clone());
        }
        c.body_bytes.clone()
    };
    let count = |f: &dyn Fn(&mut Counters)| {
        let mut counters = shared.counters.lock().unwrap();
        f(counters.get_mut(&path).expect("counted above"));
    };

    let entry = shared.files.lock().unwrap().get(&path).cloned();
    let Some(entry) = entry else {
        return HttpResponse::NotFound().content_type("text/plain").body("not found\n");
    };
    if let Some(d) = entry.delay {
        actix_web::rt::time::sleep(d).await;
    }
    if let Some(expected) = &entry.auth {
        if auth.as_deref() != Some(expected.as_str()) {
            return HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"origin\""))
                .finish();
        }
    }
    if let Some(status) = entry.status {
        return HttpResponse::build(StatusCode::from_u16(status).expect("valid status")).finish();
    }
    if let Some(location) = &entry.redirect {
        return HttpResponse::Found().insert_header((header::LOCATION, location.clone())).finish();
    }

    let last_modified = HttpDate::from(entry.last_modified).to_string();
    let not_modified = entry.validators
        && match (&inm, &ims) {
            (Some(inm), _) => etag_matches(inm, &entry.etag),
            (None, Some(ims)) => {
                ims.parse::<HttpDate>().map(|t| entry.last_modified <= SystemTime::from(t)).unwrap_or(false)
            }
            (None, None) => false,
        };
    if not_modified {
        count(&|c| c.not_modified += 1);
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, entry.etag.clone()))
            .insert_header((header::LAST_MODIFIED, last_modified))
            .finish();
    }

    let len = entry.content.len();
    // `If-Range`: the range only while the validator (an ETag, or the date) is current.
    let range_current = match &if_range {
        None => true,
        Some(v) if v.starts_with('"') || v.starts_with("W/") => entry.validators && v.as_str() == entry.etag,
        Some(v) => entry.validators && *v == last_modified,
    };
    let range = range.filter(|_| range_current && entry.ranges);
    let (status, start, end) = match range.as_deref().and_then(|r| parse_range(r, len)) {
        None => (StatusCode::OK, 0, len),
        Some(Ok((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        Some(Err(())) => {
            return HttpResponse::RangeNotSatisfiable()
                .insert_header((header::CONTENT_RANGE, format!("bytes */{len}")))
                .finish();
        }
    };
    let mut builder = HttpResponse::build(status);
    builder.content_type("application/octet-stream");
    if entry.ranges {
        builder.insert_header((header::ACCEPT_RANGES, "bytes"));
    }
    if entry.validators {
        builder.insert_header((header::ETAG, entry.etag.clone())).insert_header((header::LAST_MODIFIED, last_modified));
    }
    if status == StatusCode::PARTIAL_CONTENT {
        builder.insert_header((header::CONTENT_RANGE, format!("bytes {start}-{}/{len}", end - 1)));
    }
    if req.method() == actix_web::http::Method::HEAD {
        return builder.insert_header((header::CONTENT_LENGTH, end - start)).finish();
    }
    let own_counter = Arc::new(AtomicU64::new(0));
    count(&|c| {
        c.body_requests += 1;
        c.bodies.push(own_counter.clone());
    });
    let state = BodyState {
        content: entry.content.clone(),
        pos: start,
        end,
        fail_at: entry.fail_after.map(|n| start + n),
        pause_at: entry.pause_after.map(|n| start + n),
        gate: entry.gate.clone(),
        counters: [body_counter, own_counter],
    };
    let stream = futures_util::stream::unfold(state, next_chunk);
    if entry.chunked {
        return builder.streaming(stream);
    }
    builder.body(actix_web::body::SizedStream::new(end - start, Box::pin(stream)))
}

/// Where a body stream is; it generates chunk by chunk and counts what it hands out.
struct BodyState {
    content: Content,
    pos: u64,
    end: u64,
    fail_at: Option<u64>,
    pause_at: Option<u64>,
    gate: Arc<AtomicBool>,
    /// The path's and the request's.
    counters: [Arc<AtomicU64>; 2],
}

async fn next_chunk(mut st: BodyState) -> Option<(Result<Bytes, std::io::Error>, BodyState)> {
    if st.pos >= st.end {
        return None;
    }
    if st.pause_at.is_some_and(|p| st.pos >= p) {
        while !st.gate.load(Ordering::SeqCst) {
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
        st.pause_at = None;
    }
    if st.fail_at.is_some_and(|f| st.pos >= f) {
        st.end = st.pos; // nothing after the error
        let err = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "origin told to fail mid-body");
        return Some((Err(err), st));
    }
    let limit = [st.fail_at, st.pause_at].into_iter().flatten().fold(st.end, u64::min);
    let n = (limit - st.pos).min(CHUNK as u64) as usize;
    let mut buf = vec![0u8; n];
    st.content.read_at(st.pos, &mut buf);
    st.pos += n as u64;
    for counter in &st.counters {
        counter.fetch_add(n as u64, Ordering::SeqCst);
    }
    Some((Ok(Bytes::from(buf)), st))
}
