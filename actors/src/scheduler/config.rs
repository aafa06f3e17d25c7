//! `[scheduler]` settings (Go's names where Go had them).

use std::time::Duration;

use serde::Deserialize;

use super::policy::{HandOutPolicy, RarestFirst, Sequential};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Most uploads handed to one uploader address at once (`peerUpLimit`).
    pub peer_up_limit: u32,
    /// Most pieces one client fetches at once (`peerDownLimit`).
    pub peer_down_limit: u32,
    /// Most pieces the supernode itself serves at once for one task.
    pub cdn_up_limit: u32,
    /// Client errors above which a client is served by the supernode only (`failureCountLimit`).
    pub failure_count_limit: u32,
    /// Errors as a source at which a client stops being a source (`eliminationLimit`).
    pub elimination_limit: u32,
    /// Most clients (downloads) tracked at once; registrations beyond are refused.
    pub max_clients: usize,
    /// Most seed peers (`asSeed` registrations) accepted per taskURL.
    pub max_seeds_per_url: usize,
    /// Which pieces a client gets first.
    pub hand_out: HandOut,
    /// How long a poll of a client with nothing running may be held when there is nothing for
    /// it yet, so that it gets the next piece the moment it can be had instead of after dfget's
    /// doubling 602 back-off; 0 = answer 602 at once, as Go does. Below dfget's 5 s timeout.
    #[serde(with = "humantime_serde")]
    pub poll_hold: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            peer_up_limit: 5,
            peer_down_limit: 4,
            cdn_up_limit: 4,
            failure_count_limit: 5,
            elimination_limit: 5,
            max_clients: 100_000,
            max_seeds_per_url: 3,
            hand_out: HandOut::RarestFirst,
            poll_hold: Duration::from_secs(1),
        }
    }
}

/// The hand-out policies to choose from.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum HandOut {
    /// Go's order: the pieces fewest peers hold, then those nearest to what the client is
    /// already fetching. Spreads pieces over the swarm fastest.
    #[default]
    RarestFirst,
    /// Lowest piece number first: for clients that consume the file as it arrives.
    Sequential,
}

impl HandOut {
    pub fn policy(self) -> Box<dyn HandOutPolicy> {
        match self {
            HandOut::RarestFirst => Box::new(RarestFirst),
            HandOut::Sequential => Box::new(Sequential),
        }
    }
}
