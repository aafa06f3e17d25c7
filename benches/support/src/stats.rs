//! Statistics of a run: medians, client-side latencies, and the server's own histograms read
//! from `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use testkit::Metrics;

use crate::MIB;

/// Median of a few samples.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if s.is_empty() {
        return f64::NAN;
    }
    s[s.len() / 2]
}

/// MiB per second for `bytes` in `secs`.
pub fn mib_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / MIB as f64 / secs
}

/// Latencies in microseconds.
#[derive(Default, Clone)]
pub struct Latencies(pub Vec<u32>);

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        self.0.push(d.as_micros().min(u32::MAX as u128) as u32);
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn extend(&mut self, other: &Latencies) {
        self.0.extend_from_slice(&other.0);
    }
    /// Percentile in milliseconds (nearest rank).
    pub fn pct_ms(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let mut s = self.0.clone();
        s.sort_unstable();
        let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize - 1;
        s[rank.min(s.len() - 1)] as f64 / 1000.0
    }
    pub fn max_ms(&self) -> f64 {
        self.0.iter().copied().max().unwrap_or(0) as f64 / 1000.0
    }
}

/// One Prometheus histogram (all label sets summed): cumulative bucket counts, sum, count.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl Histogram {
    /// The histogram `name` (`<name>_bucket{le=…}`, `<name>_sum`, `<name>_count`) of `m`.
    pub fn of(m: &Metrics, name: &str) -> Histogram {
        let bucket = format!("{name}_bucket");
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for s in m.of(&bucket) {
            let le = match s.labels.get("le").map(String::as_str) {
                Some("+Inf") => f64::INFINITY,
                Some(v) => v.parse().unwrap_or(f64::NAN),
                None => f64::NAN,
            };
            buckets.entry(le.to_bits()).or_insert((le, 0.0)).1 += s.value;
        }
        let mut buckets: Vec<(f64, f64)> = buckets.into_values().collect();
        buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        Histogram {
            buckets,
            sum: m.get(&format!("{name}_sum"), &[]).unwrap_or(0.0),
            count: m.get(&format!("{name}_count"), &[]).unwrap_or(0.0),
        }
    }

    /// `self - before` (counters only grow).
    pub fn minus(&self, before: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|(le, n)| {
                let b = before.buckets.iter().find(|(l, _)| l == le).map(|x| x.1).unwrap_or(0.0);
                (*le, n - b)
            })
            .collect();
        Histogram { buckets, sum: self.sum - before.sum, count: self.count - before.count }
    }

    /// Adds `other`'s counts (the same metric read from another window).
    pub fn add(&mut self, other: &Histogram) {
        if self.buckets.is_empty() {
            self.buckets = other.buckets.iter().map(|(le, _)| (*le, 0.0)).collect();
        }
        for (b, (_, n)) in self.buckets.iter_mut().zip(&other.buckets) {
            b.1 += n;
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    pub fn mean(&self) -> f64 {
        if self.count > 0.0 {
            self.sum / self.count
        } else {
            f64::NAN
        }
    }

    /// The upper bound of the bucket holding the `p`th percentile (Prometheus-style, no interpolation).
    fn pct_upper(&self, p: f64) -> f64 {
        let target = self.count * p / 100.0;
        for (le, n) in &self.buckets {
            if *n >= target {
                return *le;
            }
        }
        f64::INFINITY
    }

    /// `≤ 0.32 ms`, or `> 0.64 ms` when the percentile lies beyond the last finite bucket.
    pub fn pct_text(&self, p: f64) -> String {
        let v = self.pct_upper(p);
        if v.is_finite() {
            format!("≤ {v} ms")
        } else {
            let last = self.buckets.iter().rev().find(|(le, _)| le.is_finite()).map(|b| b.0).unwrap_or(0.0);
            format!("> {last} ms (beyond the last bucket)")
        }
    }

    /// `≤0.01: n · ≤0.02: n …` with per-bucket (not cumulative) counts.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut prev = 0.0;
        for (le, n) in &self.buckets {
            let label = if le.is_infinite() { "+Inf".to_string() } else { format!("≤{le}") };
            let _ = write!(out, "{label}: {} · ", (n - prev).round() as u64);
            prev = *n;
        }
        out.trim_end_matches(" · ").to_string()
    }
}
