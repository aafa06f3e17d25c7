//! Configuration: defaults < config file (TOML) < environment (`SUPERNODE_*`) < flags.
//!
//! Every key, with its default, is documented in the repository's `config.toml`.
//! Each component's section is its own struct with its own defaults.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use serde::Deserialize;
use supernode_actors::cdn::policy::{PolicyError, PolicyList, DEFAULT_DENY};
use supernode_actors::cdn::{CdnConfig, SourcePolicy};
use supernode_actors::cluster::ClusterConfig;
use supernode_actors::gc::GcConfig;
use supernode_actors::preheat::PreheatConfig;
use supernode_actors::rate::ByteRate;
use supernode_actors::scheduler::SchedulerConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Command-line flags; each may also come from its `SUPERNODE_*` environment variable.
#[derive(Parser, Debug, Default, Clone)]
#[command(name = "supernode", version, about = "Dragonfly 1.x compatible supernode: scheduler and CDN")]
pub struct Cli {
    /// Control API port (dfget, Harbor, ops).
    #[arg(long, env = "SUPERNODE_PORT")]
    pub port: Option<u16>,
    /// Port serving cached pieces (advertised to clients as the super peer's port).
    #[arg(long, env = "SUPERNODE_DOWNLOAD_PORT")]
    pub download_port: Option<u16>,
    /// Home directory: cache under `<home>/repo`, state files beside it.
    #[arg(long, env = "SUPERNODE_HOME_DIR")]
    pub home_dir: Option<PathBuf>,
    /// IPv4 address announced to clients for CDN pieces and in the super CID.
    #[arg(long, env = "SUPERNODE_ADVERTISE_IP")]
    pub advertise_ip: Option<Ipv4Addr>,
    /// Address both listeners bind to.
    #[arg(long, env = "SUPERNODE_LISTEN_HOST")]
    pub listen_host: Option<IpAddr>,
    /// TOML configuration file.
    #[arg(long, env = "SUPERNODE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "SUPERNODE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Debug logging.
    #[arg(long, env = "SUPERNODE_DEBUG")]
    pub debug: bool,
    /// Bearer token for the mutating /api/v1 and preheat endpoints (prefer the environment variable).
    #[arg(long, env = "SUPERNODE_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Cluster mode: the Redis shared by the supernodes (`redis://host:port[/db]`,
    /// `redis+sentinel://…`, `redis+cluster://…`). Sets `[cluster] redis_url`.
    #[arg(long, env = "SUPERNODE_CLUSTER_REDIS_URL", hide_env_values = true)]
    pub cluster_redis_url: Option<String>,
}

/// `[server]`: listeners, identity, logging and request limits.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub port: u16,
    pub download_port: u16,
    pub listen_host: IpAddr,
    /// Empty: the first non-loopback IPv4 address of the host, else 127.0.0.1.
    pub advertise_ip: Option<Ipv4Addr>,
    /// Empty: `<user data dir>/supernode`.
    pub home_dir: Option<PathBuf>,
    pub log_format: LogFormat,
    pub debug: bool,
    /// Largest request body accepted (bytes); larger ones get 413.
    pub max_body_bytes: usize,
    /// Most peers kept at once; registrations beyond it are refused.
    pub max_peers: usize,
    /// Seconds in-flight requests get to finish on SIGTERM/SIGINT.
    pub shutdown_timeout_secs: u64,
    /// Caps what the download port sends, all connections together; 0 = off.
    pub upload_rate_limit: ByteRate,
    /// The control API over HTTPS on this port too; unset = plain HTTP only.
    pub tls_port: Option<u16>,
    /// PEM certificate chain for `tls_port`.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for `tls_port`.
    pub tls_key_file: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            port: 8002,
            download_port: 8001,
            listen_host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            advertise_ip: None,
            home_dir: None,
            log_format: LogFormat::Text,
            debug: false,
            max_body_bytes: 1024 * 1024,
            max_peers: 100_000,
            shutdown_timeout_secs: 30,
            upload_rate_limit: ByteRate(0),
            tls_port: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// The whole file. Unknown sections or keys are an error, so typos do not pass silently.
#[derive(Clone, Debug, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub cdn: CdnConfig,
    pub scheduler: SchedulerConfig,
    pub tasks: TasksConfig,
    pub preheat: PreheatConfig,
    pub gc: GcConfig,
    pub security: SecurityConfig,
    pub cluster: ClusterConfig,
}

/// `[security]`: what the supernode fetches, who may register, who may change things.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Sources allowed (host names, `.suffix` names, addresses, CIDRs); empty = any not denied.
    pub source_allow: Vec<String>,
    /// Sources refused; by default link-local and cloud metadata addresses.
    pub source_deny: Vec<String>,
    /// `callSystem` values allowed to register; empty = any not denied.
    pub call_system_allow: Vec<String>,
    /// `callSystem` values refused.
    pub call_system_deny: Vec<String>,
    /// Bearer token required on the mutating `/api/v1` and preheat endpoints; empty = off.
    pub api_token: String,
    /// Longest list accepted in a request (headers, rootCAs, urls, sortKey, filter).
    pub max_list_len: usize,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            source_allow: Vec::new(),
            source_deny: DEFAULT_DENY.iter().map(|s| s.to_string()).collect(),
            call_system_allow: Vec::new(),
            call_system_deny: Vec::new(),
            api_token: String::new(),
            max_list_len: 64,
        }
    }
}

impl SecurityConfig {
    /// Whether a registration's `callSystem` (empty = none given) may register.
    pub fn call_system_allowed(&self, call_system: &str) -> bool {
        !self.call_system_deny.iter().any(|c| c == call_system)
            && (self.call_system_allow.is_empty() || self.call_system_allow.iter().any(|c| c == call_system))
    }
}

/// `[tasks]`: limits on the task registry.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TasksConfig {
    /// Most tasks kept at once; registrations of new tasks beyond it are refused.
    pub max_tasks: usize,
}

impl Default for TasksConfig {
    fn default() -> Self {
        TasksConfig { max_tasks: 10_000 }
    }
}

/// Fully resolved settings the server runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub config: Config,
    pub home_dir: PathBuf,
    pub advertise_ip: Ipv4Addr,
    /// `[security]`'s source lists, parsed.
    pub source_policy: SourcePolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: key `{key}`: {message}")]
    Parse { path: PathBuf, key: String, message: String },
    #[error("home dir {path}: {source}")]
    HomeDir { path: PathBuf, source: std::io::Error },
}

impl Config {
    /// Parses a TOML document; errors name the offending key.
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            ConfigError::Parse {
                path: path.to_path_buf(),
                key: if key == "." { "(document)".into() } else { key },
                message: inner.message().trim().to_string(),
            }
        })
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::from_toml(path, &text)
    }
}

/// The source policy of `[security]`; a rule that does not parse is an error naming its key
/// (an unreadable policy must never turn into one that allows everything).
fn source_policy(security: &SecurityConfig, file: Option<&Path>) -> Result<SourcePolicy, ConfigError> {
    SourcePolicy::new(&security.source_allow, &security.source_deny).map_err(|e: PolicyError| {
        let list = match e.list {
            PolicyList::Allow => "source_allow",
            PolicyList::Deny => "source_deny",
        };
        ConfigError::Parse {
            path: file.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("(settings)")),
            key: format!("security.{list}[{}]", e.index),
            message: e.error.to_string(),
        }
    })
}

/// A cluster URL that cannot be used stops the start, naming the key.
fn check_cluster(cluster: &ClusterConfig, file: Option<&Path>) -> Result<(), ConfigError> {
    if !cluster.enabled() {
        return Ok(());
    }
    let bad = |message: String| ConfigError::Parse {
        path: file.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("(settings)")),
        key: "cluster.redis_url".into(),
        message,
    };
    supernode_actors::cluster::RedisStore::new(&cluster.redis_url, &cluster.key_prefix)
        .map_err(|e| bad(e.to_string()))?;
    if cluster.member_ttl <= cluster.renew_interval {
        return Err(ConfigError::Parse {
            path: file.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("(settings)")),
            key: "cluster.member_ttl".into(),
            message: "must be longer than cluster.renew_interval, or members expire between renewals".into(),
        });
    }
    Ok(())
}

/// An HTTPS port needs both PEM files, and the files need the port.
fn check_tls(server: &ServerConfig, file: Option<&Path>) -> Result<(), ConfigError> {
    let bad = |key: &str, message: &str| ConfigError::Parse {
        path: file.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("(settings)")),
        key: key.into(),
        message: message.into(),
    };
    match (server.tls_port, &server.tls_cert_file, &server.tls_key_file) {
        (None, None, None) | (Some(_), Some(_), Some(_)) => Ok(()),
        (Some(_), None, _) => {
            Err(bad("server.tls_cert_file", "server.tls_port is set: give the PEM certificate chain"))
        }
        (Some(_), _, None) => Err(bad("server.tls_key_file", "server.tls_port is set: give the PEM private key")),
        (None, _, _) => Err(bad("server.tls_port", "a TLS certificate or key is given but no port to serve HTTPS on")),
    }
}

/// A bandwidth cap the reserve leaves nothing of stops the start, naming the key.
fn check_bandwidth(cdn: &CdnConfig, file: Option<&Path>) -> Result<(), ConfigError> {
    cdn.source_rate().map(|_| ()).map_err(|message| ConfigError::Parse {
        path: file.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("(settings)")),
        key: "cdn.max_bandwidth".into(),
        message,
    })
}

impl Settings {
    /// Settings for `config` as it is, with the home directory and advertised address given.
    pub fn from_config(config: Config, home_dir: PathBuf, advertise_ip: Ipv4Addr) -> Result<Settings, ConfigError> {
        let source_policy = source_policy(&config.security, None)?;
        check_cluster(&config.cluster, None)?;
        check_bandwidth(&config.cdn, None)?;
        check_tls(&config.server, None)?;
        Ok(Settings { config, home_dir, advertise_ip, source_policy })
    }

    /// Applies the precedence flags > environment > file > defaults and creates the home dir.
    pub fn resolve(cli: &Cli) -> Result<Settings, ConfigError> {
        let mut config = match &cli.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        let s = &mut config.server;
        if let Some(v) = cli.port {
            s.port = v;
        }
        if let Some(v) = cli.download_port {
            s.download_port = v;
        }
        if let Some(v) = &cli.home_dir {
            s.home_dir = Some(v.clone());
        }
        if let Some(v) = cli.advertise_ip {
            s.advertise_ip = Some(v);
        }
        if let Some(v) = cli.listen_host {
            s.listen_host = v;
        }
        if let Some(v) = cli.log_format {
            s.log_format = v;
        }
        if cli.debug {
            s.debug = true;
        }
        if let Some(t) = &cli.api_token {
            config.security.api_token = t.clone();
        }
        if let Some(url) = &cli.cluster_redis_url {
            config.cluster.redis_url = url.clone();
        }
        let source_policy = source_policy(&config.security, cli.config.as_deref())?;
        check_cluster(&config.cluster, cli.config.as_deref())?;
        check_bandwidth(&config.cdn, cli.config.as_deref())?;
        check_tls(&config.server, cli.config.as_deref())?;
        let s = &config.server;
        let home_dir = s.home_dir.clone().unwrap_or_else(default_home_dir);
        std::fs::create_dir_all(&home_dir).map_err(|source| ConfigError::HomeDir { path: home_dir.clone(), source })?;
        let advertise_ip = s.advertise_ip.unwrap_or_else(first_non_loopback_ipv4);
        Ok(Settings { config, home_dir, advertise_ip, source_policy })
    }
}

fn default_home_dir() -> PathBuf {
    dirs::data_dir().unwrap_or_else(std::env::temp_dir).join("supernode")
}

/// The source address the kernel would use for an outbound route; no packet is sent
/// (UDP connect only selects a route). Falls back to loopback on an isolated host.
fn first_non_loopback_ipv4() -> Ipv4Addr {
    let probe = || -> Option<Ipv4Addr> {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
        sock.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
        match sock.local_addr().ok()?.ip() {
            IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Some(ip),
            _ => None,
        }
    };
    probe().unwrap_or(Ipv4Addr::LOCALHOST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_type_names_key() {
        let err = Config::from_toml(Path::new("x.toml"), "[server]\nport = \"abc\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("x.toml") && text.contains("server.port"), "{text}");
    }

    #[test]
    fn unknown_key_is_error() {
        let err = Config::from_toml(Path::new("x.toml"), "[server]\nprot = 1\n").unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
    }

    #[test]
    fn a_source_rule_that_does_not_parse_stops_the_start_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[security]\nsource_deny = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n").unwrap();
        let cli = Cli { config: Some(file), home_dir: Some(dir.path().join("home")), ..Cli::default() };
        let err = Settings::resolve(&cli).unwrap_err().to_string();
        assert!(err.contains("security.source_deny[1]") && err.contains("10.0.0.0/33"), "{err}");
        let mut config = Config::default();
        config.security.source_allow = vec!["not a host".into()];
        let err = Settings::from_config(config, dir.path().into(), Ipv4Addr::LOCALHOST).unwrap_err().to_string();
        assert!(err.contains("security.source_allow[0]"), "{err}");
    }

    #[test]
    fn a_cluster_url_that_cannot_be_used_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let cli = Cli {
            cluster_redis_url: Some("http://not-redis".into()),
            home_dir: Some(dir.path().join("home")),
            ..Cli::default()
        };
        let err = Settings::resolve(&cli).unwrap_err().to_string();
        assert!(err.contains("cluster.redis_url"), "{err}");
        let cli = Cli { cluster_redis_url: Some("redis://127.0.0.1:1/0".into()), ..cli };
        let s = Settings::resolve(&cli).expect("a well-formed URL is enough to start: Redis may come later");
        assert!(s.config.cluster.enabled());
    }

    #[test]
    fn a_reserve_that_leaves_no_bandwidth_stops_the_start() {
        let text = "[cdn]\nmax_bandwidth = \"20M\"\nsystem_reserved_bandwidth = \"20MB\"\n";
        let config = Config::from_toml(Path::new("x.toml"), text).unwrap();
        let err = Settings::from_config(config, PathBuf::from("/tmp"), Ipv4Addr::LOCALHOST).unwrap_err();
        assert!(err.to_string().contains("cdn.max_bandwidth"), "{err}");
        let config = Config::from_toml(Path::new("x.toml"), "[cdn]\nmax_bandwidth = 0\n").unwrap();
        assert_eq!(config.cdn.source_rate(), Ok(None));
        let err = Config::from_toml(Path::new("x.toml"), "[server]\nupload_rate_limit = \"fast\"\n").unwrap_err();
        assert!(err.to_string().contains("server.upload_rate_limit"), "{err}");
    }

    #[test]
    fn an_https_port_needs_both_files_and_the_files_need_the_port() {
        let check = |text: &str| {
            let config = Config::from_toml(Path::new("x.toml"), text).unwrap();
            Settings::from_config(config, PathBuf::from("/tmp"), Ipv4Addr::LOCALHOST).map(|_| ())
        };
        let err = check("[server]\ntls_port = 8443\ntls_key_file = \"k.pem\"\n").unwrap_err();
        assert!(err.to_string().contains("server.tls_cert_file"), "{err}");
        let err = check("[server]\ntls_port = 8443\ntls_cert_file = \"c.pem\"\n").unwrap_err();
        assert!(err.to_string().contains("server.tls_key_file"), "{err}");
        let err = check("[server]\ntls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\n").unwrap_err();
        assert!(err.to_string().contains("server.tls_port"), "{err}");
        check("[server]\ntls_port = 8443\ntls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\n").unwrap();
    }

    #[test]
    fn shipped_config_parses_to_defaults() {
        let text = include_str!("../config.toml");
        assert_eq!(Config::from_toml(Path::new("config.toml"), text).unwrap(), Config::default());
    }
}
