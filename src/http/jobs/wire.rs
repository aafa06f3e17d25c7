//! The job object as the Dragonfly 2 manager renders it, for Harbor's strict decoding:
//! `id` a JSON integer, times RFC 3339, `state` one of PENDING / SUCCESS / FAILURE, `result`
//! `null` until the job ended and then one job state whose task lists are arrays of objects,
//! never `null` and never holding `null`.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use supernode_actors::preheat::{JobOutcome, JobState, PreheatJob};

/// The one scheduler cluster the supernode stands for in job results.
pub const CLUSTER_ID: u64 = 1;

/// Header values echoed as this instead: the job is readable by anyone who may poll it.
const REDACTED: &str = "***";
const SECRET_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// RFC 3339 in UTC with microseconds: a fixed width, so times sort as text too.
fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[derive(Serialize)]
pub struct JobReply {
    id: u64,
    created_at: String,
    updated_at: String,
    is_del: u8,
    /// The ID of the image preheat the job follows (`/preheats/{id}` shows it too).
    task_id: String,
    bio: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    state: &'static str,
    args: ArgsReply,
    result: Option<ResultReply>,
    user_id: u64,
}

#[derive(Serialize)]
struct ArgsReply {
    #[serde(rename = "type")]
    kind: &'static str,
    url: String,
    tag: String,
    filtered_query_params: String,
    headers: BTreeMap<String, String>,
    scope: String,
    concurrent_count: i64,
    /// Nanoseconds, as Go's `time.Duration`.
    timeout: i64,
}

#[derive(Serialize)]
struct ResultReply {
    state: &'static str,
    created_at: String,
    updated_at: String,
    job_states: Vec<JobStateReply>,
}

#[derive(Serialize)]
struct JobStateReply {
    task_name: &'static str,
    state: &'static str,
    /// Empty unless the job failed.
    error: String,
    created_at: String,
    results: Vec<PreheatResultReply>,
}

#[derive(Serialize)]
struct PreheatResultReply {
    scheduler_cluster_id: u64,
    success_tasks: Vec<SuccessTask>,
    failure_tasks: Vec<FailureTask>,
}

#[derive(Serialize)]
struct SuccessTask {
    url: String,
    hostname: String,
    ip: String,
}

#[derive(Serialize)]
struct FailureTask {
    url: String,
    hostname: String,
    ip: String,
    description: String,
}

impl ResultReply {
    fn new(job: &PreheatJob, outcome: &JobOutcome) -> ResultReply {
        let (hostname, ip) = (&outcome.seed.hostname, outcome.seed.ip.to_string());
        let mut success_tasks = Vec::new();
        let mut failure_tasks = Vec::new();
        for layer in &outcome.layers {
            let (url, hostname, ip) = (layer.url.clone(), hostname.clone(), ip.clone());
            match &layer.error {
                None => success_tasks.push(SuccessTask { url, hostname, ip }),
                Some(description) => {
                    failure_tasks.push(FailureTask { url, hostname, ip, description: description.clone() })
                }
            }
        }
        let state = job.state.as_str();
        let job_state = JobStateReply {
            task_name: "preheat",
            state,
            error: outcome.error.clone().unwrap_or_default(),
            created_at: time(job.created_at),
            results: vec![PreheatResultReply { scheduler_cluster_id: CLUSTER_ID, success_tasks, failure_tasks }],
        };
        ResultReply {
            state,
            created_at: time(job.created_at),
            updated_at: time(job.updated_at),
            job_states: vec![job_state],
        }
    }
}

impl From<&PreheatJob> for JobReply {
    fn from(job: &PreheatJob) -> Self {
        let a = &job.args;
        let headers = a
            .headers
            .iter()
            .map(|(k, v)| {
                let secret = SECRET_HEADERS.iter().any(|s| k.eq_ignore_ascii_case(s));
                (k.clone(), if secret { REDACTED.to_string() } else { v.clone() })
            })
            .collect();
        let result = match (job.state, &job.outcome) {
            (JobState::Pending, _) | (_, None) => None,
            (_, Some(outcome)) => Some(ResultReply::new(job, outcome)),
        };
        JobReply {
            id: job.id.get(),
            created_at: time(job.created_at),
            updated_at: time(job.updated_at),
            is_del: 0,
            task_id: job.preheat.to_string(),
            bio: "",
            kind: "preheat",
            state: job.state.as_str(),
            args: ArgsReply {
                kind: "image",
                url: a.url.clone(),
                tag: a.tag.clone(),
                filtered_query_params: a.filtered_query_params.clone(),
                headers,
                scope: a.scope.clone(),
                concurrent_count: a.concurrent_count,
                timeout: i64::try_from(a.timeout.as_nanos()).unwrap_or(i64::MAX),
            },
            result,
            user_id: 0,
        }
    }
}
