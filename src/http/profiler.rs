//! `GET /debug/pprof/profile?seconds=N`: a CPU profile of this process in the pprof format
//! (gzip-compressed protobuf, as Go's `net/http/pprof` serves it), which `go tool pprof`
//! and `pprof` read.
//!
//! Served only with `server.profiler` (`--profiler`); otherwise the path is unknown (404),
//! as in Go. Sampling runs at 100 Hz for N seconds (30 when not given, as in Go). The
//! process has one profiling timer, so one profile is taken at a time; a second request
//! meanwhile gets 409.

use std::io::Write;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use flate2::write::GzEncoder;
use flate2::Compression;
use pprof::protos::Message;

use super::error::ApiError;
use super::{AppState, RouteSet};

const DEFAULT_SECONDS: u64 = 30;
/// Longer profiles are refused: the connection would sit idle that long.
const MAX_SECONDS: u64 = 300;
const SAMPLES_PER_SECOND: i32 = 100;
/// Libraries whose frames cannot be unwound safely from a signal handler.
const UNWIND_BLOCKLIST: [&str; 4] = ["libc", "libgcc", "pthread", "vdso"];

/// Whether the profile route answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profiling {
    Off,
    On,
}

pub fn routes(r: &mut RouteSet) {
    r.add("/debug/pprof/profile", vec![(Method::GET, web::to(profile))]);
}

/// `seconds` from the query: a whole number from 1 to [`MAX_SECONDS`].
fn seconds(query: &str) -> Result<u64, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|e| ApiError::BadRequest(format!("query: {e}")))?;
    let Some((_, text)) = pairs.iter().rev().find(|(k, _)| k == "seconds") else { return Ok(DEFAULT_SECONDS) };
    match text.parse::<u64>() {
        Ok(n @ 1..=MAX_SECONDS) => Ok(n),
        _ => Err(ApiError::BadRequest(format!("seconds: {text:?} is not a whole number from 1 to {MAX_SECONDS}"))),
    }
}

async fn profile(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.profiling == Profiling::Off {
        return Ok(super::not_found().await);
    }
    let seconds = seconds(req.query_string())?;
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(SAMPLES_PER_SECOND)
        .blocklist(&UNWIND_BLOCKLIST)
        .build()
        .map_err(|e| match e {
            pprof::Error::Running => ApiError::Conflict("a CPU profile is already being taken".into()),
            other => ApiError::Internal(format!("starting the CPU profiler: {other}")),
        })?;
    actix_web::rt::time::sleep(Duration::from_secs(seconds)).await;
    let report = guard.report().build().map_err(|e| ApiError::Internal(format!("CPU profile: {e}")))?;
    drop(guard);
    let encode = |e: &dyn std::fmt::Display| ApiError::Internal(format!("encoding the CPU profile: {e}"));
    let encoded = report.pprof().map_err(|e| encode(&e))?.write_to_bytes().map_err(|e| encode(&e))?;
    let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
    let body = gzip
        .write_all(&encoded)
        .and_then(|()| gzip.finish())
        .map_err(|e| ApiError::Internal(format!("compressing the CPU profile: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(("Content-Disposition", "attachment; filename=\"profile\""))
        .body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_from_the_query() {
        assert_eq!(seconds("").unwrap(), DEFAULT_SECONDS);
        assert_eq!(seconds("seconds=5").unwrap(), 5);
        assert_eq!(seconds("debug=1&seconds=2").unwrap(), 2);
        for bad in ["seconds=0", "seconds=-1", "seconds=x", "seconds=301", "seconds=1.5", "seconds="] {
            assert!(matches!(seconds(bad), Err(ApiError::BadRequest(_))), "{bad}");
        }
    }
}
