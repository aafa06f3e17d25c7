//! `DfgetReports`: dfget's end-of-run reports (`/task/metrics`) turned into the dfget
//! metrics. Each (task, client) report counts once: dfget sends a report again when it did
//! not get the reply it expects, and a resend after a timeout must not count twice.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use actix::prelude::*;

use crate::metrics::{DfgetOutcome, Metrics};

/// Reports remembered for de-duplication, oldest forgotten first.
const REMEMBERED: usize = 100_000;

/// One dfget run's report, as sent (the task and client IDs are not checked: a report may
/// come after the task was collected).
#[derive(Message, Debug, Clone, Default)]
#[rtype(result = "bool")]
pub struct DfgetReport {
    pub task_id: String,
    pub cid: String,
    pub call_system: String,
    pub ip: String,
    pub success: bool,
    /// Seconds.
    pub duration: f64,
    pub file_length: u64,
    pub backsource_reason: String,
}

pub struct DfgetReports {
    seen: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
    metrics: Arc<Metrics>,
}

impl DfgetReports {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        DfgetReports { seen: HashSet::new(), order: VecDeque::new(), metrics }
    }

    /// Whether this (task, client) report is the first one.
    fn first(&mut self, key: (String, String)) -> bool {
        if self.seen.contains(&key) {
            return false;
        }
        if self.order.len() >= REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(key.clone());
        self.order.push_back(key);
        true
    }
}

impl Actor for DfgetReports {
    type Context = Context<Self>;
}

impl Handler<DfgetReport> for DfgetReports {
    /// Whether the report was counted.
    type Result = bool;

    fn handle(&mut self, r: DfgetReport, _ctx: &mut Context<Self>) -> bool {
        if !self.first((r.task_id.clone(), r.cid.clone())) {
            return false;
        }
        let outcome = if r.success {
            DfgetOutcome::Succeeded { seconds: r.duration, bytes: r.file_length }
        } else {
            DfgetOutcome::Failed { backsource_reason: &r.backsource_reason }
        };
        self.metrics.count_dfget_run(&r.call_system, &r.ip, outcome);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix::test]
    async fn a_resent_report_counts_once() {
        let metrics = Arc::new(Metrics::new());
        let reports = DfgetReports::new(metrics.clone()).start();
        let r =
            DfgetReport { task_id: "t".into(), cid: "c".into(), success: true, file_length: 10, ..Default::default() };
        assert!(reports.send(r.clone()).await.unwrap());
        assert!(!reports.send(r.clone()).await.unwrap());
        assert!(reports.send(DfgetReport { cid: "d".into(), ..r }).await.unwrap());
        assert_eq!(metrics.dfget_download.with_label_values(&["", ""]).get(), 2);
        assert_eq!(metrics.dfget_size_bytes.with_label_values(&["", ""]).get(), 20);
    }
}
