//! `POST /oapi/v1/jobs` bodies and job IDs, read as the Dragonfly 2 manager reads them.
//!
//! Harbor sends every key of its Go structs, `null` for empty lists. Keys match ignoring case
//! at both levels (Go's rule), `null` counts as absent, unknown keys (`bio`, `user_id`,
//! `args.platform`, …) are ignored, and types are strict. Anything that does not validate is
//! a 422 naming the field: Harbor fails the task with that text.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use supernode_actors::preheat::{JobArgs, JobId};

use super::error::JobsError;
use crate::http::json::{bind_json, bind_value};
use crate::http::AppState;

/// The body Harbor posts.
#[derive(Deserialize, Default)]
#[serde(default)]
struct CreateJobRequest {
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Bound on its own, so that its keys match ignoring case too and errors name `args.`.
    args: Option<Value>,
    /// Accepted whatever clusters they name: the supernode is the one cluster.
    scheduler_cluster_ids: Option<Vec<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PreheatArgsRequest {
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<String>,
    tag: String,
    filtered_query_params: String,
    headers: BTreeMap<String, String>,
    scope: String,
    concurrent_count: i64,
    /// Go's `time.Duration`: nanoseconds.
    timeout: i64,
}

fn invalid(e: crate::http::error::ApiError, prefix: &str) -> JobsError {
    match JobsError::from(e) {
        JobsError::Invalid(m) => JobsError::Invalid(format!("{prefix}{m}")),
        other => other,
    }
}

/// The job a body asks for; 422 unless it validates, 403 when the source policy denies the
/// manifest's host.
pub fn parse_create(body: &[u8], state: &AppState) -> Result<JobArgs, JobsError> {
    let r: CreateJobRequest = bind_json(body).map_err(|e| invalid(e, ""))?;
    match r.kind.as_deref() {
        Some("preheat") => {}
        Some(other) => return Err(JobsError::Invalid(format!("type: {other:?} is not supported, only \"preheat\""))),
        None => return Err(JobsError::Invalid("type: required".into())),
    }
    let ids = r.scheduler_cluster_ids.unwrap_or_default();
    state.check_list_len("scheduler_cluster_ids", ids.len()).map_err(|e| invalid(e, ""))?;
    let args = match r.args {
        Some(object @ Value::Object(_)) => object,
        None => Value::Null,
        Some(_) => return Err(JobsError::Invalid("args: must be a JSON object".into())),
    };
    let a: PreheatArgsRequest = bind_value(args).map_err(|e| invalid(e, "args."))?;
    match a.kind.as_deref() {
        Some("image") => {}
        Some(other) => {
            return Err(JobsError::Invalid(format!("args.type: {other:?} is not supported, only \"image\"")));
        }
        None => return Err(JobsError::Invalid("args.type: required".into())),
    }
    let url = a.url.ok_or_else(|| JobsError::Invalid("args.url: required".into()))?;
    if !is_manifest_url(&url) {
        return Err(JobsError::Invalid(format!(
            "args.url: {url:?} is not a registry manifest URL http(s)://<host>[:<port>]/v2/<name>/manifests/<reference>"
        )));
    }
    state.check_list_len("headers", a.headers.len()).map_err(|e| invalid(e, "args."))?;
    crate::http::registry::check_headers(&a.headers).map_err(|e| invalid(e, "args."))?;
    let concurrent_count = non_negative("args.concurrent_count", a.concurrent_count)?;
    let timeout = Duration::from_nanos(non_negative("args.timeout", a.timeout)?.unsigned_abs());
    state.check_source(&url)?;
    Ok(JobArgs {
        url,
        tag: a.tag,
        filtered_query_params: a.filtered_query_params,
        headers: a.headers,
        scope: a.scope,
        concurrent_count,
        timeout,
    })
}

fn non_negative(field: &str, n: i64) -> Result<i64, JobsError> {
    if n < 0 {
        return Err(JobsError::Invalid(format!("{field}: {n} is negative")));
    }
    Ok(n)
}

/// A job ID in a path: decimal digits only, above zero, at most Go's largest `int`.
pub fn parse_id(raw: &str) -> Result<JobId, JobsError> {
    let bad = || JobsError::Invalid(format!("id: {raw:?} is not a job ID (a whole number from 1 to {})", i64::MAX));
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: i64 = raw.parse().map_err(|_| bad())?;
    JobId::new(n.unsigned_abs()).ok_or_else(bad)
}

/// `^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?/v2/[A-Za-z0-9_./-]+/manifests/[A-Za-z0-9_.:-]+$`,
/// the pattern the OpenAPI document gives: what Harbor sends (`<ext_endpoint>/v2/<project>/<repository>/manifests/<tag>`).
pub fn is_manifest_url(url: &str) -> bool {
    let all = |s: &str, ok: fn(u8) -> bool| !s.is_empty() && s.bytes().all(ok);
    let Some((scheme, rest)) = url.split_once("://") else { return false };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return false;
    }
    let Some((authority, path)) = rest.split_once('/') else { return false };
    let port = if let Some(v6) = authority.strip_prefix('[') {
        let Some((inside, after)) = v6.split_once(']') else { return false };
        if !all(inside, |b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return false;
        }
        after
    } else {
        let (host, port) = authority.find(':').map_or((authority, ""), |i| authority.split_at(i));
        if !all(host, |b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
            return false;
        }
        port
    };
    if !port.is_empty() {
        let digits = &port[1..];
        if !port.starts_with(':') || digits.len() > 5 || !all(digits, |b| b.is_ascii_digit()) {
            return false;
        }
    }
    let Some((name, reference)) = path.strip_prefix("v2/").and_then(|p| p.rsplit_once("/manifests/")) else {
        return false;
    };
    all(name, |b| b.is_ascii_alphanumeric() || b"_./-".contains(&b))
        && all(reference, |b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_urls() {
        for ok in [
            "https://harbor.example.com/v2/library/nginx/manifests/1.27",
            "HTTP://127.0.0.1:5000/v2/a/b/c/manifests/sha256:ab12",
            "http://[::1]:80/v2/x/manifests/latest",
            "http://h/v2/a/manifests/b/manifests/c",
        ] {
            assert!(is_manifest_url(ok), "{ok}");
        }
        for bad in [
            "ftp://h/v2/a/manifests/b",
            "http://h/v2/a/blobs/b",
            "http://h/v2//manifests/b",
            "http://h/v2/a/manifests/",
            "http://h/v2/a/manifests/b/c",
            "http://h:/v2/a/manifests/b",
            "http://h:123456/v2/a/manifests/b",
            "http://h_h/v2/a/manifests/b",
            "http:///v2/a/manifests/b",
            "http://h/v2/a/manifests/b\n",
            "http://[]/v2/a/manifests/b",
            "http://[::1]x/v2/a/manifests/b",
            "http://h/v3/a/manifests/b",
            "http://h/v2/a b/manifests/b",
        ] {
            assert!(!is_manifest_url(bad), "{bad:?}");
        }
    }

    #[test]
    fn job_ids() {
        assert_eq!(parse_id("7").unwrap().get(), 7);
        assert_eq!(parse_id("007").unwrap().get(), 7);
        for bad in ["0", "", "-1", "+1", "1.0", "x", "9223372036854775808", " 1"] {
            assert!(parse_id(bad).is_err(), "{bad:?}");
        }
    }
}
