//! The baseline without P2P: each peer host downloads the file straight from the origin with
//! curl, all at once, each to a file on the same disk as the swarm's outputs.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::namespace_exec::command_in;
use super::net::Host;

/// One curl's end: its time from the run's start, or why it failed.
pub(crate) type CurlOutcome = Result<Duration, String>;

/// Runs curl on each of `hosts` at once, fetching `url` into `dir`; each must get `len` bytes
/// (curl gives up after `deadline`). Returns the time until the last one ended, and per host
/// the time from the start of the run to its end (its start plus curl's own total time).
pub(crate) fn run_curls(
    hosts: &[Host],
    url: &str,
    len: u64,
    dir: &Path,
    deadline: Duration,
) -> (Duration, Vec<CurlOutcome>) {
    let started = Instant::now();
    let children: Vec<_> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let mut cmd = command_in(&h.namespace, "curl");
            cmd.args([
                "-sS",
                "--max-time",
                &deadline.as_secs().to_string(),
                "-w",
                "%{http_code} %{size_download} %{time_total}",
            ]);
            cmd.arg("-o").arg(dir.join(format!("direct{i}.out"))).arg(url);
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
            let started_after = started.elapsed();
            (started_after, cmd.spawn().unwrap_or_else(|e| panic!("curl on host {i}: {e}")))
        })
        .collect();
    let outcomes: Vec<CurlOutcome> = children
        .into_iter()
        .map(|(started_after, child)| {
            let out = child.wait_with_output().expect("wait for curl");
            let said = String::from_utf8_lossy(&out.stdout).into_owned();
            let fields: Vec<&str> = said.split_whitespace().collect();
            let took = fields.get(2).and_then(|t| t.parse::<f64>().ok()).map(Duration::from_secs_f64);
            match (out.status.success(), fields.first(), fields.get(1), took) {
                (true, Some(&"200"), Some(got), Some(took)) if *got == len.to_string() => Ok(started_after + took),
                _ => Err(format!("curl {url}: {}: {said} {}", out.status, String::from_utf8_lossy(&out.stderr))),
            }
        })
        .collect();
    (started.elapsed(), outcomes)
}
