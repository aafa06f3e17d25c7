//! Configuration: defaults < config file < environment (`SUPERNODE_*`) < flags.
//!
//! The file is this server's TOML (every key, with its default, is documented in the
//! repository's `config.toml`) or the Go supernode's `supernode.yml` ([`go_yaml`]), so a Go
//! deployment keeps its file; without `--config` the Go supernode's default path is read
//! when it exists. Each component's section is its own struct with its own defaults.

mod checks;
pub mod cli;
pub mod default_print;
pub mod go_format;
pub mod go_keys;
pub mod go_yaml;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use serde::Deserialize;
use supernode_actors::cdn::policy::DEFAULT_DENY;
use supernode_actors::cdn::{CdnConfig, SourcePolicy};
use supernode_actors::cluster::ClusterConfig;
use supernode_actors::gc::GcConfig;
use supernode_actors::preheat::PreheatConfig;
use supernode_actors::rate::ByteRate;
use supernode_actors::scheduler::SchedulerConfig;

pub use cli::{Cli, Command, ConfigAction, DefaultFormat};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
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
    /// Serve CPU profiles at `/debug/pprof/profile`.
    pub profiler: bool,
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
            profiler: false,
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
    /// The configuration file read, if any.
    pub file: Option<PathBuf>,
    /// What the start should warn about; none of it stops the start.
    pub notices: Vec<Notice>,
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

/// The Go setting behind `--pool-size`, which Go declares and never uses.
pub const POOL_SIZE: &str = "schedulerCorePoolSize (--pool-size)";

/// Something about the configuration worth a warning at start; the start goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A key the Go supernode ignores (no setting of its, or one it replaces): ignored.
    IgnoredKey { file: PathBuf, key: String },
    /// A Go supernode setting this server does not have: ignored.
    Unsupported { file: PathBuf, key: String },
    /// A Go setting that Go declares and never uses: accepted, no effect.
    NoEffect { setting: &'static str },
}

impl Notice {
    /// Adds `notice` unless it is already there, so each is logged once.
    pub fn push_once(notices: &mut Vec<Notice>, notice: Notice) {
        if !notices.contains(&notice) {
            notices.push(notice);
        }
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::IgnoredKey { file, key } => {
                write!(f, "config file {}: key `{key}` is ignored (the Go supernode ignores it too)", file.display())
            }
            Notice::Unsupported { file, key } => write!(
                f,
                "config file {}: key `{key}` is a Go supernode setting this supernode does not have; ignored",
                file.display()
            ),
            Notice::NoEffect { setting } => {
                write!(f, "{setting} is accepted and has no effect (the Go supernode does not use it either)")
            }
        }
    }
}

/// A configuration file's format, told by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// This server's own, `config.toml`.
    Toml,
    /// The Go supernode's `supernode.yml`.
    GoYaml,
}

impl FileFormat {
    /// `.yml` and `.yaml` files are Go's, any other is TOML.
    pub fn of(path: &Path) -> FileFormat {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("yml" | "yaml") => FileFormat::GoYaml,
            _ => FileFormat::Toml,
        }
    }
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

    /// Reads a file in the format its name tells; what to warn about goes to `notices`.
    pub fn load(path: &Path, notices: &mut Vec<Notice>) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        match FileFormat::of(path) {
            FileFormat::Toml => Config::from_toml(path, &text),
            FileFormat::GoYaml => go_yaml::from_go_yaml(path, &text, notices),
        }
    }
}

/// The file `cli` names, else its default file when that exists, else the defaults.
fn read_file(cli: &Cli, notices: &mut Vec<Notice>) -> Result<(Config, Option<PathBuf>), ConfigError> {
    if let Some(path) = &cli.config {
        return Ok((Config::load(path, notices)?, Some(path.clone())));
    }
    let Some(path) = &cli.default_config else { return Ok((Config::default(), None)) };
    match Config::load(path, notices) {
        Err(ConfigError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok((Config::default(), None))
        }
        read => Ok((read?, Some(path.clone()))),
    }
}

impl Settings {
    /// Settings for `config` as it is, with the home directory and advertised address given.
    pub fn from_config(config: Config, home_dir: PathBuf, advertise_ip: Ipv4Addr) -> Result<Settings, ConfigError> {
        let source_policy = checks::source_policy(&config.security, None)?;
        checks::check_cluster(&config.cluster, None)?;
        checks::check_bandwidth(&config.cdn, None)?;
        checks::check_tls(&config.server, None)?;
        checks::check_poll_hold(&config.scheduler, None)?;
        Ok(Settings { config, home_dir, advertise_ip, source_policy, file: None, notices: Vec::new() })
    }

    /// Applies the precedence flags > environment > file > defaults and creates the home dir.
    pub fn resolve(cli: &Cli) -> Result<Settings, ConfigError> {
        let mut notices = Vec::new();
        let (mut config, file) = read_file(cli, &mut notices)?;
        cli.apply(&mut config, &mut notices);
        let source_policy = checks::source_policy(&config.security, file.as_deref())?;
        checks::check_cluster(&config.cluster, file.as_deref())?;
        checks::check_bandwidth(&config.cdn, file.as_deref())?;
        checks::check_tls(&config.server, file.as_deref())?;
        checks::check_poll_hold(&config.scheduler, file.as_deref())?;
        let s = &config.server;
        let home_dir = s.home_dir.clone().unwrap_or_else(default_home_dir);
        std::fs::create_dir_all(&home_dir).map_err(|source| ConfigError::HomeDir { path: home_dir.clone(), source })?;
        let advertise_ip = s.advertise_ip.unwrap_or_else(first_non_loopback_ipv4);
        Ok(Settings { config, home_dir, advertise_ip, source_policy, file, notices })
    }
}

/// Where the cache lives when no home directory is set.
pub fn default_home_dir() -> PathBuf {
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
    fn a_poll_hold_dfget_would_time_out_on_stops_the_start() {
        let config = Config::from_toml(Path::new("x.toml"), "[scheduler]\npoll_hold = \"4s\"\n").unwrap();
        let err = Settings::from_config(config, PathBuf::from("/tmp"), Ipv4Addr::LOCALHOST).unwrap_err();
        assert!(err.to_string().contains("scheduler.poll_hold"), "{err}");
        let config = Config::from_toml(Path::new("x.toml"), "[scheduler]\npoll_hold = \"0s\"\n").unwrap();
        Settings::from_config(config, PathBuf::from("/tmp"), Ipv4Addr::LOCALHOST).expect("0s: Go's behaviour");
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
    fn the_default_file_is_read_when_it_exists_and_skipped_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.yml");
        let cli =
            Cli { default_config: Some(missing.clone()), home_dir: Some(dir.path().join("home")), ..Cli::default() };
        let s = Settings::resolve(&cli).expect("a missing default file is no error");
        assert_eq!(s.file, None);
        assert_eq!(s.config, Config { server: s.config.server.clone(), ..Config::default() });
        assert_eq!(s.config.server.port, 8002);

        let present = dir.path().join("supernode.yml");
        std::fs::write(&present, "base:\n  listenPort: 9100\n  peerUpLimit: 9\n").unwrap();
        let cli = Cli { default_config: Some(present.clone()), port: Some(9200), ..cli };
        let s = Settings::resolve(&cli).unwrap();
        assert_eq!(s.file.as_deref(), Some(present.as_path()));
        assert_eq!((s.config.server.port, s.config.scheduler.peer_up_limit), (9200, 9), "the flag wins over the file");

        let unreadable = Cli { default_config: Some(dir.path().to_path_buf()), ..cli.clone() };
        assert!(
            matches!(Settings::resolve(&unreadable), Err(ConfigError::Read { .. })),
            "only a missing file is skipped"
        );
        let named = Cli { config: Some(missing), ..cli };
        assert!(matches!(Settings::resolve(&named), Err(ConfigError::Read { .. })), "--config must exist");
    }

    #[test]
    fn the_format_follows_the_file_name() {
        assert_eq!(FileFormat::of(Path::new("/etc/dragonfly/supernode.yml")), FileFormat::GoYaml);
        assert_eq!(FileFormat::of(Path::new("s.YAML")), FileFormat::GoYaml);
        assert_eq!(FileFormat::of(Path::new("config.toml")), FileFormat::Toml);
        assert_eq!(FileFormat::of(Path::new("supernode.conf")), FileFormat::Toml);
    }

    #[test]
    fn shipped_config_parses_to_defaults() {
        let text = include_str!("../../config.toml");
        assert_eq!(Config::from_toml(Path::new("config.toml"), text).unwrap(), Config::default());
    }
}
