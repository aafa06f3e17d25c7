//! Checks of a resolved configuration that its types cannot express: a source rule that
//! does not parse, a cluster URL that cannot be used, a bandwidth reserve that leaves
//! nothing, an HTTPS port without its files, a poll hold dfget would time out on. Each stops the start naming its key.

use std::path::{Path, PathBuf};

use supernode_actors::cdn::policy::{PolicyError, PolicyList};
use supernode_actors::cdn::{CdnConfig, SourcePolicy};
use supernode_actors::cluster::ClusterConfig;
use supernode_actors::scheduler::SchedulerConfig;

use super::{ConfigError, SecurityConfig, ServerConfig};

/// The error that names `key` in the settings read from `file`.
fn bad_key(file: Option<&Path>, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Parse {
        path: file.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("(settings)")),
        key: key.into(),
        message: message.into(),
    }
}

/// The source policy of `[security]`; a rule that does not parse is an error naming its key
/// (an unreadable policy must never turn into one that allows everything).
pub fn source_policy(security: &SecurityConfig, file: Option<&Path>) -> Result<SourcePolicy, ConfigError> {
    SourcePolicy::new(&security.source_allow, &security.source_deny).map_err(|e: PolicyError| {
        let list = match e.list {
            PolicyList::Allow => "source_allow",
            PolicyList::Deny => "source_deny",
        };
        bad_key(file, format!("security.{list}[{}]", e.index), e.error.to_string())
    })
}

/// A cluster URL that cannot be used stops the start, naming the key.
pub fn check_cluster(cluster: &ClusterConfig, file: Option<&Path>) -> Result<(), ConfigError> {
    if !cluster.enabled() {
        return Ok(());
    }
    supernode_actors::cluster::RedisStore::new(&cluster.redis_url, &cluster.key_prefix)
        .map_err(|e| bad_key(file, "cluster.redis_url", e.to_string()))?;
    if cluster.member_ttl <= cluster.renew_interval {
        let why = "must be longer than cluster.renew_interval, or members expire between renewals";
        return Err(bad_key(file, "cluster.member_ttl", why));
    }
    Ok(())
}

/// A bandwidth cap the reserve leaves nothing of stops the start, naming the key.
pub fn check_bandwidth(cdn: &CdnConfig, file: Option<&Path>) -> Result<(), ConfigError> {
    cdn.source_rate().map(|_| ()).map_err(|message| bad_key(file, "cdn.max_bandwidth", message))
}

/// dfget gives a control call 5 s; a poll held for longer would fail it (and make it migrate).
pub fn check_poll_hold(scheduler: &SchedulerConfig, file: Option<&Path>) -> Result<(), ConfigError> {
    const MOST: std::time::Duration = std::time::Duration::from_secs(3);
    if scheduler.poll_hold <= MOST {
        return Ok(());
    }
    let why = format!("{:?} is too long: at most 3s, as dfget gives a poll 5 s", scheduler.poll_hold);
    Err(bad_key(file, "scheduler.poll_hold", why))
}

/// An HTTPS port needs both PEM files, and the files need the port.
pub fn check_tls(server: &ServerConfig, file: Option<&Path>) -> Result<(), ConfigError> {
    let bad = |key: &str, message: &str| bad_key(file, key, message);
    match (server.tls_port, &server.tls_cert_file, &server.tls_key_file) {
        (None, None, None) | (Some(_), Some(_), Some(_)) => Ok(()),
        (Some(_), None, _) => {
            Err(bad("server.tls_cert_file", "server.tls_port is set: give the PEM certificate chain"))
        }
        (Some(_), _, None) => Err(bad("server.tls_key_file", "server.tls_port is set: give the PEM private key")),
        (None, _, _) => Err(bad("server.tls_port", "a TLS certificate or key is given but no port to serve HTTPS on")),
    }
}
