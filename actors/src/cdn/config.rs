//! `[cdn]` settings.

use std::time::Duration;

use serde::Deserialize;

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
}

impl Default for CdnConfig {
    fn default() -> Self {
        CdnConfig {
            source_connect_timeout: Duration::from_secs(3),
            source_head_timeout: Duration::from_secs(4),
            source_stall_timeout: Duration::from_secs(60),
            fail_access_interval: Duration::from_secs(180),
            cache_quota_bytes: 0,
        }
    }
}

impl CdnConfig {
    /// The largest CDN file a run may write: a file larger than the whole quota can never be
    /// cached, smaller ones make room by eviction.
    pub fn max_file_bytes(&self) -> Option<u64> {
        (self.cache_quota_bytes > 0).then_some(self.cache_quota_bytes)
    }
}
