//! Cluster mode: several supernodes that act as one, on Redis.
//!
//! Stock dfget shuffles its `--node` list and registers with whichever node answers, so
//! without coordination N supernodes are N separate P2P networks that each fetch every file
//! from the origin. Here Redis is both the membership service and the shared store:
//!
//! - each node keeps a key with a TTL (its address, ports and start time) and reads the
//!   live set from Redis ([`membership`]);
//! - the owner of a task is the live node with the highest rendezvous weight for the task
//!   ID ([`owner_of`]); only the owner fetches the task from the origin, and the others
//!   register it with the owner and hand their clients the owner's download port for CDN
//!   pieces;
//! - every node writes its clients (who holds which piece, where its uploader listens) and,
//!   for the tasks it owns, the task's state and CDN pieces to Redis, and reads the others'
//!   ([`sync`]), so a node can hand out peers that registered with any node. `/peer/task`
//!   never waits for Redis: it is answered from the scheduler's memory, which the sync
//!   refreshes a few times a second.
//!
//! When Redis is unavailable the live set is this node alone: it keeps serving what it
//! owns or has, answers the rest as a single node would, says so in `/metrics` and the log,
//! and rejoins when Redis is back.

pub mod forward;
pub mod membership;
pub mod memory;
pub mod redis_store;
pub mod store;
mod sync;
pub mod view;

pub use membership::{ClusterActor, ClusterDeps};
pub use memory::MemoryStore;
pub use redis_store::RedisStore;
pub use store::ClusterStore;
pub use view::{owner_of, ClusterView, Member, NodeId};

use std::time::Duration;

use serde::Deserialize;

/// `[cluster]` settings. Without `redis_url` the supernode runs alone.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://host:port[/db]`, `redis+sentinel://host:port[,host:port]/service[/db]` or
    /// `redis+cluster://host:port[,host:port]`; empty = cluster mode off.
    pub redis_url: String,
    /// A node whose key was not renewed for this long is out of the live set.
    #[serde(with = "humantime_serde")]
    pub member_ttl: Duration,
    /// How often a node renews its key and reads the live set.
    #[serde(with = "humantime_serde")]
    pub renew_interval: Duration,
    /// How often clients and task states are written to and read from Redis.
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// Prefix of every key; several clusters can share one Redis with different prefixes.
    pub key_prefix: String,
    /// Shared state not refreshed for this long expires from Redis on its own.
    #[serde(with = "humantime_serde")]
    pub state_ttl: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: String::new(),
            member_ttl: Duration::from_secs(10),
            renew_interval: Duration::from_secs(2),
            sync_interval: Duration::from_millis(250),
            key_prefix: "supernode".into(),
            state_ttl: Duration::from_secs(3600),
        }
    }
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        !self.redis_url.trim().is_empty()
    }
}
