//! `[cdn]` settings.

use std::time::Duration;

use serde::Deserialize;

use crate::rate::ByteRate;

/// Where clients get a task's pieces from (Go's `cdnPattern`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CdnPattern {
    /// The supernode fetches each source once into its cache and serves the pieces.
    #[default]
    Local,
    /// Nothing is cached: pieces not held by a peer are fetched by dfget from the source,
    /// one range request each.
    Source,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CdnConfig {
    /// TCP connect timeout towards sources.
    #[serde(with = "humantime_serde")]
    pub source_connect_timeout: Duration,
    /// Time until a source's response head must arrive. Registrations wait for it, and dfget
    /// gives up on a registration after 5 s.
    #[serde(with = "humantime_serde")]
    pub source_head_timeout: Duration,
    /// A source body that sends nothing for this long fails the run.
    #[serde(with = "humantime_serde")]
    pub source_stall_timeout: Duration,
    /// How long a 404 or unreachable source is answered from memory.
    #[serde(with = "humantime_serde")]
    pub fail_access_interval: Duration,
    /// Largest total size of the cache in bytes; 0 = no quota.
    pub cache_quota_bytes: u64,
    /// `local` or `source`.
    pub pattern: CdnPattern,
    /// With `system_reserved_bandwidth`, caps the rate at which all CDN runs together read
    /// their sources: `max_bandwidth - system_reserved_bandwidth`; 0 = no cap.
    pub max_bandwidth: ByteRate,
    pub system_reserved_bandwidth: ByteRate,
}

impl Default for CdnConfig {
    fn default() -> Self {
        CdnConfig {
            source_connect_timeout: Duration::from_secs(3),
            source_head_timeout: Duration::from_secs(4),
            source_stall_timeout: Duration::from_secs(60),
            fail_access_interval: Duration::from_secs(180),
            cache_quota_bytes: 0,
            pattern: CdnPattern::Local,
            max_bandwidth: ByteRate::mib(200),
            system_reserved_bandwidth: ByteRate::mib(20),
        }
    }
}

impl CdnConfig {
    /// The rate all CDN runs together read their sources at, `None` for no cap; an error
    /// when the reserve leaves nothing.
    pub fn source_rate(&self) -> Result<Option<ByteRate>, String> {
        if self.max_bandwidth.is_unlimited() {
            return Ok(None);
        }
        match self.max_bandwidth.0.checked_sub(self.system_reserved_bandwidth.0) {
            Some(rate) if rate > 0 => Ok(Some(ByteRate(rate))),
            _ => Err(format!(
                "must be larger than system_reserved_bandwidth ({}), or 0 for no cap",
                self.system_reserved_bandwidth
            )),
        }
    }

    /// The largest CDN file a run may write: a file larger than the whole quota can never be
    /// cached, smaller ones make room by eviction.
    pub fn max_file_bytes(&self) -> Option<u64> {
        (self.cache_quota_bytes > 0).then_some(self.cache_quota_bytes)
    }
}
