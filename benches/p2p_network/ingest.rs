//! The CDN's ingest over a shaped link, against curl over the same link: the origin on its own
//! host, the supernode fetching into its cache (source read, piece framing, both md5s, the
//! cache write) while curl on the supernode host writes the same URL to the same disk.

use std::fmt::Write as _;

use benchkit::stats::{median, mib_s};
use benchkit::MIB;
use testkit::testbed::{HostRole, IngestRun, Link, Rate, Testbed, TestbedSpec};

use super::{cpu, env_text};

/// One source size over one origin rate, fetched `reps` times (each a fresh URL).
#[derive(Clone, Debug)]
pub struct IngestCase {
    pub file_mib: u64,
    pub origin_up: Rate,
    pub reps: usize,
}

/// `1024@1G` → cases of `reps` repetitions.
pub fn parse_ingest_cases(name: &str, default: &str, reps: usize) -> Vec<IngestCase> {
    env_text(name, default)
        .split(',')
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            let (mib, rate) = c.split_once('@').unwrap_or_else(|| panic!("{name}: {c:?} is not MiB@rate"));
            let file_mib = mib.trim().parse().unwrap_or_else(|_| panic!("{name}: {mib:?} is not a size in MiB"));
            let origin_up = Rate::parse(rate).unwrap_or_else(|e| panic!("{name}: {e}"));
            IngestCase { file_mib, origin_up, reps }
        })
        .collect()
}

/// Runs `case` on a fresh supernode started by `start`: curl, then the CDN, per repetition.
pub fn run_case(
    testbed: &mut Testbed,
    spec: &TestbedSpec,
    case: &IngestCase,
    start: impl Fn(&Testbed) -> testkit::testbed::SupernodeHost,
) -> Vec<IngestRun> {
    testbed.set_link(HostRole::Origin, Link { up: case.origin_up, down: spec.origin.down });
    let supernode = start(testbed);
    (0..case.reps)
        .map(|rep| {
            let path = format!("/ingest-{}m-{rep}.bin", case.file_mib);
            testbed.origin().add_generated(&path, 9000 + case.file_mib * 10 + rep as u64, case.file_mib * MIB);
            let run = testbed.run_ingest(&supernode, &path, &format!("ingest-{rep}"));
            assert_eq!(run.cdn_origin_bytes, run.file_len, "{path}: the CDN fetched the source once");
            println!(
                "ingest {} MiB at {} rep {}: curl {:.2} s, CDN {:.2} s, CPU curl {} / CDN {}",
                case.file_mib,
                case.origin_up,
                rep + 1,
                run.curl.as_secs_f64(),
                run.cdn.as_secs_f64(),
                cpu(&run.curl_cpu),
                cpu(&run.cdn_cpu)
            );
            run
        })
        .collect()
}

/// The section's part on ingest: a table row per case and what it means.
pub fn write_ingest(md: &mut String, cases: &[(IngestCase, Vec<IngestRun>)], supernode_link: Link) {
    if cases.is_empty() {
        return;
    }
    let _ = write!(
        md,
        "\n### CDN ingest over the same shaped link\n\n\
         The supernode host ({} each way) fetches one source from the origin host: first `curl -o file` on the \
         supernode host, writing to the same disk as the cache, then the CDN (dfget's `POST /peer/registry`, then \
         `GET /api/v1/tasks/{{id}}` every 20 ms until `cdnStatus` is SUCCESS: source read, framing into pieces, the \
         piece md5s and the whole-source md5, the cache write and its rename). Each repetition is a fresh URL, \
         one origin fetch each; medians. The link's **rate** is what `tbf` lets through as TCP goodput, which is \
         about 95 % of its configured rate.\n\n\
         | source, origin link | repetitions | curl (s) | CDN (s) | curl MiB/s | CDN MiB/s | **CDN ÷ curl** (throughput) | CPU, last repetition: curl / CDN |\n\
         |---|---|---|---|---|---|---|---|\n",
        supernode_link.up
    );
    for (case, runs) in cases {
        let curl: Vec<f64> = runs.iter().map(|r| r.curl.as_secs_f64()).collect();
        let cdn: Vec<f64> = runs.iter().map(|r| r.cdn.as_secs_f64()).collect();
        let all = |v: &[f64]| v.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>().join(" / ");
        let (m_curl, m_cdn) = (median(&curl), median(&cdn));
        let len = case.file_mib * MIB;
        let last = runs.last().expect("a case has repetitions");
        let _ = writeln!(
            md,
            "| {} MiB, {} | {} | {} | {} | {:.0} | {:.0} | **{:.2}** | {} / {} |",
            case.file_mib,
            case.origin_up,
            runs.len(),
            all(&curl),
            all(&cdn),
            mib_s(len, m_curl),
            mib_s(len, m_cdn),
            m_curl / m_cdn,
            cpu(&last.curl_cpu),
            cpu(&last.cdn_cpu)
        );
    }
}
