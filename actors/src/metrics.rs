//! Prometheus collectors under the names the Go supernode exported (namespace `dragonfly`),
//! plus this project's gauges. One `Metrics` per server, registered in its own registry,
//! so several servers in one test process do not mix their figures.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use prometheus::{
    exponential_buckets, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

const NS: &str = "dragonfly";

pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub http_request_size: HistogramVec,
    pub http_response_size: HistogramVec,
    pub pieces_downloaded_bytes: IntCounter,
    pub peers: IntGaugeVec,
    pub tasks: IntGaugeVec,
    pub tasks_registered: IntCounter,
    pub cdn_trigger: IntCounter,
    pub cdn_trigger_failed: IntCounter,
    pub schedule_duration_ms: HistogramVec,
    pub cdn_cache_hit: IntCounter,
    pub cdn_cache_miss: IntCounter,
    pub cdn_download: IntCounter,
    pub cdn_download_failed: IntCounter,
    pub cdn_download_bytes: IntCounter,
    pub cdn_duration: Histogram,
    pub dfgettasks: IntGaugeVec,
    pub dfgettasks_registered: IntCounterVec,
    pub dfgettasks_failed: IntCounterVec,
    pub gc_tasks: IntCounter,
    pub gc_peers: IntCounter,
    pub gc_disks: IntCounter,
    pub gc_runs: IntCounterVec,
    pub last_gc_disks: Gauge,
    pub dfget_duration: HistogramVec,
    pub dfget_size_bytes: IntCounterVec,
    pub dfget_download: IntCounterVec,
    pub dfget_failed: IntCounterVec,
    pub cache_bytes: IntGauge,
    pub cache_files: IntGauge,
    pub pieces_served: IntCounterVec,
    pub clients: IntGauge,
    pub held_polls: IntGauge,
    pub upload_addresses: IntGauge,
    pub cluster_healthy: IntGauge,
    pub cluster_members: IntGauge,
    pub build_info: GaugeVec,
    /// The dfget series of each peer address, so that they go with its last peer without a
    /// scan of every series (a deployment has one per host that ever reported).
    dfget_series: Mutex<HashMap<String, HashSet<DfgetSeries>>>,
}

/// The labels besides `peer` of one address's dfget series.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DfgetSeries {
    call_system: String,
    /// `Some` for the failure counter's series, which also has a `reason`.
    failed_reason: Option<String>,
}

/// How one dfget run ended, as its end-of-run report says.
#[derive(Debug, Clone, Copy)]
pub enum DfgetOutcome<'a> {
    Succeeded { seconds: f64, bytes: u64 },
    Failed { backsource_reason: &'a str },
}

fn sn(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NS).subsystem("supernode")
}

fn hist(name: &str, help: &str, buckets: Vec<f64>) -> HistogramOpts {
    HistogramOpts::new(name, help).namespace(NS).subsystem("supernode").buckets(buckets)
}

impl Metrics {
    /// Builds every collector; the names and label sets are constants, so this cannot fail
    /// unless two collectors share a name, which the unit test below rules out.
    pub fn new() -> Self {
        Self::try_new().expect("metric definitions are valid and unique")
    }

    fn try_new() -> prometheus::Result<Self> {
        let size_buckets = exponential_buckets(100.0, 10.0, 8)?;
        let m = Metrics {
            registry: Registry::new(),
            http_requests: IntCounterVec::new(
                sn("http_requests_total", "HTTP requests by handler and status code"),
                &["code", "handler"],
            )?,
            http_duration: HistogramVec::new(
                hist(
                    "http_request_duration_seconds",
                    "HTTP request latency",
                    vec![0.01, 0.02, 0.04, 0.1, 0.2, 0.4, 1.0, 2.0, 4.0, 8.0, 20.0, 60.0, 120.0],
                ),
                &["handler"],
            )?,
            http_request_size: HistogramVec::new(
                hist("http_request_size_bytes", "HTTP request sizes", size_buckets.clone()),
                &["handler"],
            )?,
            http_response_size: HistogramVec::new(
                hist("http_response_size_bytes", "HTTP response sizes", size_buckets),
                &["handler"],
            )?,
            pieces_downloaded_bytes: IntCounter::with_opts(sn(
                "pieces_downloaded_size_bytes_total",
                "bytes of pieces clients reported fetched from the supernode",
            ))?,
            peers: IntGaugeVec::new(sn("peers", "registered peers by IP"), &["peer"])?,
            tasks: IntGaugeVec::new(sn("tasks", "tasks by CDN status"), &["cdnstatus"])?,
            tasks_registered: IntCounter::with_opts(sn("tasks_registered_total", "successful task registrations"))?,
            cdn_trigger: IntCounter::with_opts(sn("cdn_trigger_total", "CDN runs started"))?,
            cdn_trigger_failed: IntCounter::with_opts(sn("cdn_trigger_failed_total", "CDN runs failed"))?,
            schedule_duration_ms: HistogramVec::new(
                hist(
                    "schedule_duration_milliseconds",
                    "time to schedule one /peer/task poll",
                    exponential_buckets(0.01, 2.0, 11)?,
                ),
                &["peer"],
            )?,
            cdn_cache_hit: IntCounter::with_opts(sn("cdn_cache_hit_total", "CDN runs answered from the cache"))?,
            cdn_cache_miss: IntCounter::with_opts(sn("cdn_cache_miss_total", "CDN runs that had to fetch the source"))?,
            cdn_download: IntCounter::with_opts(sn("cdn_download_total", "origin downloads"))?,
            cdn_download_failed: IntCounter::with_opts(sn(
                "cdn_download_failed_total",
                "origin downloads that failed",
            ))?,
            cdn_download_bytes: IntCounter::with_opts(sn(
                "cdn_download_size_bytes_total",
                "bytes received from origins",
            ))?,
            cdn_duration: Histogram::with_opts(hist(
                "cdn_duration_seconds",
                "wall time of one CDN run",
                vec![0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0],
            ))?,
            dfgettasks: IntGaugeVec::new(sn("dfgettasks", "dfget tasks by status"), &["callsystem", "status"])?,
            dfgettasks_registered: IntCounterVec::new(
                sn("dfgettasks_registered_total", "dfget task registrations"),
                &["callsystem"],
            )?,
            dfgettasks_failed: IntCounterVec::new(
                sn("dfgettasks_failed_total", "failed dfget tasks"),
                &["callsystem"],
            )?,
            gc_tasks: IntCounter::with_opts(sn("gc_tasks_total", "collected tasks"))?,
            gc_peers: IntCounter::with_opts(sn("gc_peers_total", "collected peers"))?,
            gc_disks: IntCounter::with_opts(sn("gc_disks_total", "deleted cached files"))?,
            gc_runs: IntCounterVec::new(sn("gc_runs_total", "garbage collection runs by kind"), &["kind"])?,
            last_gc_disks: Gauge::with_opts(sn("last_gc_disks_timestamp_seconds", "time of the last disk GC"))?,
            dfget_duration: HistogramVec::new(
                HistogramOpts::new("download_duration_seconds", "dfget download durations")
                    .namespace(NS)
                    .subsystem("dfget")
                    .buckets(vec![1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0]),
                &["callsystem", "peer"],
            )?,
            dfget_size_bytes: IntCounterVec::new(
                Opts::new("download_size_bytes_total", "bytes downloaded by dfget").namespace(NS).subsystem("dfget"),
                &["callsystem", "peer"],
            )?,
            dfget_download: IntCounterVec::new(
                Opts::new("download_total", "dfget downloads reported").namespace(NS).subsystem("dfget"),
                &["callsystem", "peer"],
            )?,
            dfget_failed: IntCounterVec::new(
                Opts::new("download_failed_total", "failed dfget downloads").namespace(NS).subsystem("dfget"),
                &["callsystem", "peer", "reason"],
            )?,
            cache_bytes: IntGauge::with_opts(sn("cache_bytes", "bytes of complete files in the CDN cache"))?,
            cache_files: IntGauge::with_opts(sn("cache_files", "complete files in the CDN cache"))?,
            pieces_served: IntCounterVec::new(
                sn("pieces_scheduled_total", "pieces handed out, by source kind"),
                &["source"],
            )?,
            clients: IntGauge::with_opts(sn("clients", "dfget clients (downloads) known to the scheduler"))?,
            held_polls: IntGauge::with_opts(sn("held_polls", "/peer/task polls held until a piece can be handed out"))?,
            upload_addresses: IntGauge::with_opts(sn(
                "upload_addresses",
                "uploader addresses with pieces handed out from them right now",
            ))?,
            cluster_healthy: IntGauge::with_opts(sn(
                "cluster_healthy",
                "1 while the cluster store answers (or cluster mode is off), 0 while this node serves alone",
            ))?,
            cluster_members: IntGauge::with_opts(sn(
                "cluster_members",
                "live supernodes in the cluster, this one included",
            ))?,
            dfget_series: Mutex::default(),
            build_info: GaugeVec::new(
                sn("build_info", "build identity"),
                &["version", "revision", "os", "arch", "goversion"],
            )?,
        };
        let r = &m.registry;
        r.register(Box::new(m.http_requests.clone()))?;
        r.register(Box::new(m.http_duration.clone()))?;
        r.register(Box::new(m.http_request_size.clone()))?;
        r.register(Box::new(m.http_response_size.clone()))?;
        r.register(Box::new(m.pieces_downloaded_bytes.clone()))?;
        r.register(Box::new(m.peers.clone()))?;
        r.register(Box::new(m.tasks.clone()))?;
        r.register(Box::new(m.tasks_registered.clone()))?;
        r.register(Box::new(m.cdn_trigger.clone()))?;
        r.register(Box::new(m.cdn_trigger_failed.clone()))?;
        r.register(Box::new(m.schedule_duration_ms.clone()))?;
        r.register(Box::new(m.cdn_cache_hit.clone()))?;
        r.register(Box::new(m.cdn_cache_miss.clone()))?;
        r.register(Box::new(m.cdn_download.clone()))?;
        r.register(Box::new(m.cdn_download_failed.clone()))?;
        r.register(Box::new(m.cdn_download_bytes.clone()))?;
        r.register(Box::new(m.cdn_duration.clone()))?;
        r.register(Box::new(m.dfgettasks.clone()))?;
        r.register(Box::new(m.dfgettasks_registered.clone()))?;
        r.register(Box::new(m.dfgettasks_failed.clone()))?;
        r.register(Box::new(m.gc_tasks.clone()))?;
        r.register(Box::new(m.gc_peers.clone()))?;
        r.register(Box::new(m.gc_disks.clone()))?;
        r.register(Box::new(m.gc_runs.clone()))?;
        r.register(Box::new(m.last_gc_disks.clone()))?;
        r.register(Box::new(m.dfget_duration.clone()))?;
        r.register(Box::new(m.dfget_size_bytes.clone()))?;
        r.register(Box::new(m.dfget_download.clone()))?;
        r.register(Box::new(m.dfget_failed.clone()))?;
        r.register(Box::new(m.cache_bytes.clone()))?;
        r.register(Box::new(m.cache_files.clone()))?;
        r.register(Box::new(m.pieces_served.clone()))?;
        r.register(Box::new(m.clients.clone()))?;
        r.register(Box::new(m.held_polls.clone()))?;
        r.register(Box::new(m.upload_addresses.clone()))?;
        r.register(Box::new(m.cluster_healthy.clone()))?;
        r.register(Box::new(m.cluster_members.clone()))?;
        r.register(Box::new(m.build_info.clone()))?;
        #[cfg(target_os = "linux")]
        r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        // A single node is a healthy cluster of one until cluster mode says otherwise.
        m.cluster_healthy.set(1);
        m.cluster_members.set(1);
        Ok(m)
    }
}

impl Metrics {
    /// Counts one dfget run's end-of-run report under its caller and address.
    pub fn count_dfget_run(&self, call_system: &str, ip: &str, outcome: DfgetOutcome<'_>) {
        let labels = [call_system, ip];
        self.dfget_download.with_label_values(&labels).inc();
        let failed_reason = match outcome {
            DfgetOutcome::Succeeded { seconds, bytes } => {
                self.dfget_duration.with_label_values(&labels).observe(seconds);
                self.dfget_size_bytes.with_label_values(&labels).inc_by(bytes);
                None
            }
            DfgetOutcome::Failed { backsource_reason } => {
                self.dfget_failed.with_label_values(&[call_system, ip, backsource_reason]).inc();
                self.dfgettasks_failed.with_label_values(&[call_system]).inc();
                Some(backsource_reason.to_string())
            }
        };
        let mut series = self.dfget_series.lock().unwrap_or_else(PoisonError::into_inner);
        let of_ip = series.entry(ip.to_string()).or_default();
        of_ip.insert(DfgetSeries { call_system: call_system.to_string(), failed_reason: None });
        if failed_reason.is_some() {
            of_ip.insert(DfgetSeries { call_system: call_system.to_string(), failed_reason });
        }
    }

    /// Drops every series labelled with peer `ip`, once no registered peer has that address:
    /// where hosts come and go (new pod addresses), the series would otherwise grow for as long
    /// as the process lives, which no scrape needs.
    pub fn forget_peer(&self, ip: &str) {
        let _ = self.peers.remove_label_values(&[ip]);
        let _ = self.schedule_duration_ms.remove_label_values(&[ip]);
        let removed = self.dfget_series.lock().unwrap_or_else(PoisonError::into_inner).remove(ip);
        for series in removed.into_iter().flatten() {
            let labels = [series.call_system.as_str(), ip];
            match &series.failed_reason {
                Some(reason) => {
                    let _ = self.dfget_failed.remove_label_values(&[labels[0], ip, reason]);
                }
                None => {
                    let _ = self.dfget_download.remove_label_values(&labels);
                    let _ = self.dfget_duration.remove_label_values(&labels);
                    let _ = self.dfget_size_bytes.remove_label_values(&labels);
                }
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn all_collectors_register() {
        let m = super::Metrics::try_new().unwrap();
        m.tasks_registered.inc();
        assert!(!m.registry.gather().is_empty());
    }

    #[test]
    fn a_forgotten_peer_leaves_no_series() {
        let m = super::Metrics::try_new().unwrap();
        for ip in ["10.0.0.1", "10.0.0.2"] {
            m.peers.with_label_values(&[ip]).inc();
            m.schedule_duration_ms.with_label_values(&[ip]).observe(0.1);
            m.count_dfget_run("harbor", ip, super::DfgetOutcome::Failed { backsource_reason: "no space" });
            m.count_dfget_run("dfdaemon", ip, super::DfgetOutcome::Succeeded { seconds: 3.0, bytes: 10 });
        }
        m.forget_peer("10.0.0.1");
        let text = prometheus::TextEncoder::new().encode_to_string(&m.registry.gather()).unwrap();
        assert!(!text.contains("10.0.0.1"), "{text}");
        // its gauge, the 14 lines of its schedule histogram, two runs, a failure, the bytes of
        // the success and the 12 lines of its duration histogram
        assert_eq!(text.matches("peer=\"10.0.0.2\"").count(), 31, "the other peer's series stay: {text}");
    }
}
