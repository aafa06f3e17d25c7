//! The server's `/metrics` (Prometheus text exposition) as samples to look values up in.

use std::collections::BTreeMap;

use crate::http::{get, Control};

/// One sample line: `name{labels} value`.
#[derive(Clone, Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of one exposition.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    samples: Vec<Sample>,
}

impl Metrics {
    /// Parses exposition text; comments and lines that are not samples are skipped.
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => (name.to_string(), parse_labels(rest.strip_suffix('}').unwrap_or(rest))),
            };
            samples.push(Sample { name, labels, value });
        }
        Metrics { samples }
    }

    /// Sum of the samples of `name` whose labels include all of `want`; `None` if there is none.
    pub fn get(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for s in self.of(name) {
            if want.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)) {
                *found.get_or_insert(0.0) += s.value;
            }
        }
        found
    }

    /// The samples of `name`.
    pub fn of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }
}

/// `a="1",b="2"` → {a: 1, b: 2}.
fn parse_labels(body: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while let Some((k, after)) = rest.split_once("=\"") {
        let end = after.find('"').unwrap_or(after.len());
        labels.insert(k.trim_start_matches(',').trim().to_string(), after[..end].to_string());
        rest = after.get(end + 1..).unwrap_or("");
    }
    labels
}

/// `GET /metrics` of `s`, parsed.
pub async fn metrics(s: &impl Control) -> Metrics {
    let (status, body) = get(s, "/metrics").await;
    assert_eq!(status, 200, "GET /metrics → {body}");
    Metrics::parse(&body)
}
