//! `[preheat]` settings.

use std::time::Duration;

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PreheatConfig {
    /// How long finished preheats and ended preheat jobs stay visible (Harbor polls a preheat
    /// for up to 30 min).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// A preheat not finished after this long fails with `timeout`; also the timeout of a
    /// preheat job that names none.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Platform chosen from a manifest list / OCI index.
    pub platform: String,
    /// Timeout of each registry request (manifests, tokens).
    #[serde(with = "humantime_serde")]
    pub registry_timeout: Duration,
    /// How often finished records older than `retention` are collected.
    #[serde(with = "humantime_serde")]
    pub collect_interval: Duration,
}

impl Default for PreheatConfig {
    fn default() -> Self {
        PreheatConfig {
            retention: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(30 * 60),
            platform: "linux/amd64".into(),
            registry_timeout: Duration::from_secs(30),
            collect_interval: Duration::from_secs(60),
        }
    }
}
