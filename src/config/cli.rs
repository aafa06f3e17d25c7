//! The command line: the Go supernode 1.0.6's flags with its syntax (`--port=8002` or
//! `--port 8002`, `-D`, Go durations and rates, a repeated flag's last value wins) beside
//! this server's own, each also read from its `SUPERNODE_*` environment variable; and the
//! subcommands `version` and `config default`.
//!
//! Each flag's help names the setting it sets, so `--help` is the map from Go's flags to
//! this server's settings.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Parser, Subcommand, ValueEnum};
use supernode_actors::cdn::CdnPattern;
use supernode_actors::rate::ByteRate;

use super::go_format::{parse_cdn_pattern, parse_duration};
use super::{Config, LogFormat, Notice};

/// Where the Go supernode reads its configuration when no `--config` is given.
pub const GO_DEFAULT_CONFIG: &str = "/etc/dragonfly/supernode.yml";

/// Command-line flags; each may also come from its `SUPERNODE_*` environment variable.
#[derive(Parser, Debug, Default, Clone)]
#[command(
    name = "supernode",
    version,
    about = "Dragonfly 1.x compatible supernode: scheduler and CDN",
    args_override_self = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Configuration file: the Go supernode's YAML when it ends in .yml or .yaml, else TOML.
    /// Without it, /etc/dragonfly/supernode.yml is read when it exists.
    #[arg(long, env = "SUPERNODE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The file read when --config is not given; missing is fine.
    #[arg(long, env = "SUPERNODE_DEFAULT_CONFIG", default_value = GO_DEFAULT_CONFIG, hide = true)]
    pub default_config: Option<PathBuf>,
    /// Control API port (dfget, Harbor, ops). Sets server.port (Go: listenPort).
    #[arg(long, env = "SUPERNODE_PORT")]
    pub port: Option<u16>,
    /// Port serving cached pieces, advertised as the super peer's port. Sets
    /// server.download_port (Go: downloadPort).
    #[arg(long, env = "SUPERNODE_DOWNLOAD_PORT")]
    pub download_port: Option<u16>,
    /// Home directory: cache under <home>/repo, state files beside it. Sets server.home_dir
    /// (Go: homeDir).
    #[arg(long, env = "SUPERNODE_HOME_DIR")]
    pub home_dir: Option<PathBuf>,
    /// IPv4 address announced to clients for CDN pieces and in the super CID. Sets
    /// server.advertise_ip (Go: advertiseIP).
    #[arg(long, env = "SUPERNODE_ADVERTISE_IP")]
    pub advertise_ip: Option<Ipv4Addr>,
    /// Address both listeners bind to. Sets server.listen_host.
    #[arg(long, env = "SUPERNODE_LISTEN_HOST")]
    pub listen_host: Option<IpAddr>,
    /// Log format. Sets server.log_format.
    #[arg(long, env = "SUPERNODE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Debug logging. Sets server.debug (Go: debug).
    #[arg(short = 'D', long, env = "SUPERNODE_DEBUG", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub debug: Option<bool>,
    /// Serve CPU profiles at /debug/pprof/profile?seconds=N. Sets server.profiler
    /// (Go: enableProfiler).
    #[arg(long, env = "SUPERNODE_PROFILER", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub profiler: Option<bool>,
    /// "local": fetch each source once into the cache; "source": cache nothing, dfget fetches
    /// from the source. Sets cdn.pattern (Go: cdnPattern).
    #[arg(long, env = "SUPERNODE_CDN_PATTERN", value_name = "local|source", value_parser = parse_cdn_pattern)]
    pub cdn_pattern: Option<CdnPattern>,
    /// Rate all CDN runs may read sources at, with --system-bandwidth kept free (200M, 1G,
    /// 512k, bytes; 0 = no cap). Sets cdn.max_bandwidth (Go: maxBandwidth).
    #[arg(long, env = "SUPERNODE_MAX_BANDWIDTH", value_name = "RATE")]
    pub max_bandwidth: Option<ByteRate>,
    /// Part of --max-bandwidth left to the system. Sets cdn.system_reserved_bandwidth
    /// (Go: systemReservedBandwidth).
    #[arg(long, env = "SUPERNODE_SYSTEM_BANDWIDTH", value_name = "RATE")]
    pub system_bandwidth: Option<ByteRate>,
    /// Uploads handed to one peer at once. Sets scheduler.peer_up_limit (Go: peerUpLimit).
    #[arg(long, env = "SUPERNODE_UP_LIMIT", value_name = "N")]
    pub up_limit: Option<u32>,
    /// Pieces one client fetches at once, and pieces the supernode serves at once per task.
    /// Sets scheduler.peer_down_limit and scheduler.cdn_up_limit (Go: peerDownLimit).
    #[arg(long, env = "SUPERNODE_DOWN_LIMIT", value_name = "N")]
    pub down_limit: Option<u32>,
    /// How long a 404 or unreachable source is answered from memory (Go duration: 3m0s).
    /// Sets cdn.fail_access_interval (Go: failAccessInterval).
    #[arg(long, env = "SUPERNODE_FAIL_ACCESS_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub fail_access_interval: Option<Duration>,
    /// Delay before the first garbage collection. Sets gc.initial_delay (Go: gcInitialDelay).
    #[arg(long, env = "SUPERNODE_GC_INITIAL_DELAY", value_name = "DURATION", value_parser = parse_duration)]
    pub gc_initial_delay: Option<Duration>,
    /// Period of task and peer collection. Sets gc.meta_interval (Go: gcMetaInterval).
    #[arg(long, env = "SUPERNODE_GC_META_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub gc_meta_interval: Option<Duration>,
    /// Idle time after which a task is collected. Sets gc.task_expire_time (Go: taskExpireTime).
    #[arg(long, env = "SUPERNODE_TASK_EXPIRE_TIME", value_name = "DURATION", value_parser = parse_duration)]
    pub task_expire_time: Option<Duration>,
    /// Time after a client's service-down until it is collected. Sets gc.peer_gc_delay
    /// (Go: peerGCDelay).
    #[arg(long, env = "SUPERNODE_PEER_GC_DELAY", value_name = "DURATION", value_parser = parse_duration)]
    pub peer_gc_delay: Option<Duration>,
    /// Accepted for compatibility; no effect (Go: schedulerCorePoolSize, unused there too).
    #[arg(long, env = "SUPERNODE_POOL_SIZE", value_name = "N", allow_negative_numbers = true)]
    pub pool_size: Option<i64>,
    /// Bearer token for the mutating /api/v1 and preheat endpoints and the profiler (prefer
    /// the environment variable). Sets security.api_token.
    #[arg(long, env = "SUPERNODE_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Cluster mode: the Redis shared by the supernodes (`redis://host:port[/db]`,
    /// `redis+sentinel://…`, `redis+cluster://…`). Sets cluster.redis_url.
    #[arg(long, env = "SUPERNODE_CLUSTER_REDIS_URL", hide_env_values = true)]
    pub cluster_redis_url: Option<String>,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Show the version and build information: version, git commit, build date, compiler,
    /// OS/Arch.
    Version,
    /// Manage the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum ConfigAction {
    /// Print the default configuration: the Go supernode's supernode.yml, which both
    /// supernodes accept back through --config, or this server's own TOML.
    Default {
        #[arg(long, value_enum, default_value_t = DefaultFormat::Yaml)]
        format: DefaultFormat,
    },
}

/// What `config default` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DefaultFormat {
    /// The Go supernode's `supernode.yml`: Go's keys under `base:`, Go's value formats.
    Yaml,
    /// This server's `config.toml`, every key documented.
    Toml,
}

fn set<T>(slot: &mut T, flag: Option<T>) {
    if let Some(value) = flag {
        *slot = value;
    }
}

impl Cli {
    /// Sets what the flags (or their environment variables) give over `config`; a flag
    /// that has no effect is noted.
    pub fn apply(&self, config: &mut Config, notices: &mut Vec<Notice>) {
        let s = &mut config.server;
        set(&mut s.port, self.port);
        set(&mut s.download_port, self.download_port);
        set(&mut s.home_dir, self.home_dir.clone().map(Some));
        set(&mut s.advertise_ip, self.advertise_ip.map(Some));
        set(&mut s.listen_host, self.listen_host);
        set(&mut s.log_format, self.log_format);
        set(&mut s.debug, self.debug);
        set(&mut s.profiler, self.profiler);
        let cdn = &mut config.cdn;
        set(&mut cdn.pattern, self.cdn_pattern);
        set(&mut cdn.max_bandwidth, self.max_bandwidth);
        set(&mut cdn.system_reserved_bandwidth, self.system_bandwidth);
        set(&mut cdn.fail_access_interval, self.fail_access_interval);
        let scheduler = &mut config.scheduler;
        set(&mut scheduler.peer_up_limit, self.up_limit);
        set(&mut scheduler.peer_down_limit, self.down_limit);
        set(&mut scheduler.cdn_up_limit, self.down_limit);
        let gc = &mut config.gc;
        set(&mut gc.initial_delay, self.gc_initial_delay);
        set(&mut gc.meta_interval, self.gc_meta_interval);
        set(&mut gc.task_expire_time, self.task_expire_time);
        set(&mut gc.peer_gc_delay, self.peer_gc_delay);
        set(&mut config.security.api_token, self.api_token.clone());
        set(&mut config.cluster.redis_url, self.cluster_redis_url.clone());
        if self.pool_size.is_some() {
            Notice::push_once(notices, Notice::NoEffect { setting: super::POOL_SIZE });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("supernode").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn applied(args: &[&str]) -> (Config, Vec<Notice>) {
        let mut config = Config::default();
        let mut notices = Vec::new();
        parse(args).apply(&mut config, &mut notices);
        (config, notices)
    }

    #[test]
    fn every_go_flag_sets_its_settings() {
        let (c, notices) = applied(&[
            "--port=9002",
            "--download-port",
            "9001",
            "--home-dir=/srv/sn",
            "--advertise-ip=10.1.2.3",
            "-D",
            "--profiler",
            "--cdn-pattern=source",
            "--max-bandwidth=1G",
            "--system-bandwidth",
            "512k",
            "--up-limit=7",
            "--down-limit=3",
            "--fail-access-interval=1m30s",
            "--gc-initial-delay=500ms",
            "--gc-meta-interval=1h",
            "--task-expire-time=10m0s",
            "--peer-gc-delay=45s",
            "--pool-size=20",
        ]);
        let s = &c.server;
        assert_eq!((s.port, s.download_port), (9002, 9001));
        assert_eq!(s.home_dir.as_deref(), Some(std::path::Path::new("/srv/sn")));
        assert_eq!(s.advertise_ip, Some(Ipv4Addr::new(10, 1, 2, 3)));
        assert!(s.debug && s.profiler);
        assert_eq!(c.cdn.pattern, CdnPattern::Source);
        assert_eq!((c.cdn.max_bandwidth, c.cdn.system_reserved_bandwidth), (ByteRate(1 << 30), ByteRate(512 << 10)));
        assert_eq!(c.cdn.fail_access_interval, Duration::from_secs(90));
        let sch = &c.scheduler;
        assert_eq!((sch.peer_up_limit, sch.peer_down_limit, sch.cdn_up_limit), (7, 3, 3));
        let gc = &c.gc;
        assert_eq!(gc.initial_delay, Duration::from_millis(500));
        assert_eq!(gc.meta_interval, Duration::from_secs(3600));
        assert_eq!(gc.task_expire_time, Duration::from_secs(600));
        assert_eq!(gc.peer_gc_delay, Duration::from_secs(45));
        assert_eq!(notices, vec![Notice::NoEffect { setting: super::super::POOL_SIZE }]);
    }

    #[test]
    fn no_flag_changes_nothing() {
        let (c, notices) = applied(&[]);
        assert_eq!(c, Config::default());
        assert!(notices.is_empty());
    }

    #[test]
    fn booleans_take_go_forms_and_the_last_repeat_wins() {
        assert_eq!(parse(&["--debug"]).debug, Some(true));
        assert_eq!(parse(&["--debug=false"]).debug, Some(false));
        assert_eq!(parse(&["-D", "--debug=false"]).debug, Some(false));
        assert_eq!(parse(&["--profiler=true"]).profiler, Some(true));
        assert_eq!(parse(&["--port=1", "--port=2"]).port, Some(2));
        assert_eq!(
            parse(&["--advertise-ip=10.0.0.1", "--advertise-ip", "10.0.0.2"]).advertise_ip.map(|ip| ip.octets()[3]),
            Some(2)
        );
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, flag) in [
            (&["--task-expire-time=3"][..], "--task-expire-time"),
            (&["--gc-meta-interval=-1m"][..], "--gc-meta-interval"),
            (&["--max-bandwidth=fast"][..], "--max-bandwidth"),
            (&["--cdn-pattern=remote"][..], "--cdn-pattern"),
            (&["--up-limit=-1"][..], "--up-limit"),
            (&["--debug=maybe"][..], "--debug"),
        ] {
            let err = Cli::try_parse_from(std::iter::once("supernode").chain(args.iter().copied())).unwrap_err();
            assert!(err.to_string().contains(flag), "{args:?}: {err}");
        }
    }

    #[test]
    fn subcommands() {
        assert_eq!(parse(&["version"]).command, Some(Command::Version));
        let default = |format| Some(Command::Config { action: ConfigAction::Default { format } });
        assert_eq!(parse(&["config", "default"]).command, default(DefaultFormat::Yaml));
        assert_eq!(parse(&["config", "default", "--format", "toml"]).command, default(DefaultFormat::Toml));
        assert!(Cli::try_parse_from(["supernode", "--port=1", "version"]).is_err());
    }

    /// The help paragraph of `flag`: from its line to the next flag's.
    fn help_of<'h>(help: &'h str, flag: &str) -> &'h str {
        let lines: Vec<&str> = help.lines().collect();
        let is_flag_line = |l: &str| l.trim_start().starts_with('-');
        let start = lines
            .iter()
            .position(|l| is_flag_line(l) && l.split([' ', ',', '[', '=']).any(|w| w == flag))
            .unwrap_or_else(|| panic!("{flag} not in the help:\n{help}"));
        let end = lines[start + 1..].iter().position(|l| is_flag_line(l)).map_or(lines.len(), |n| start + 1 + n);
        let from = lines[..start].iter().map(|l| l.len() + 1).sum::<usize>();
        let to = lines[..end].iter().map(|l| l.len() + 1).sum::<usize>().min(help.len());
        &help[from..to]
    }

    #[test]
    fn help_maps_each_go_flag_to_its_settings() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for (flag, settings) in [
            ("--port", &["server.port", "listenPort"][..]),
            ("--download-port", &["server.download_port", "downloadPort"]),
            ("--home-dir", &["server.home_dir", "homeDir"]),
            ("--advertise-ip", &["server.advertise_ip", "advertiseIP"]),
            ("--debug", &["server.debug"]),
            ("--profiler", &["server.profiler", "enableProfiler"]),
            ("--cdn-pattern", &["cdn.pattern", "cdnPattern"]),
            ("--max-bandwidth", &["cdn.max_bandwidth", "maxBandwidth"]),
            ("--system-bandwidth", &["cdn.system_reserved_bandwidth", "systemReservedBandwidth"]),
            ("--up-limit", &["scheduler.peer_up_limit", "peerUpLimit"]),
            ("--down-limit", &["scheduler.peer_down_limit", "scheduler.cdn_up_limit", "peerDownLimit"]),
            ("--fail-access-interval", &["cdn.fail_access_interval", "failAccessInterval"]),
            ("--gc-initial-delay", &["gc.initial_delay", "gcInitialDelay"]),
            ("--gc-meta-interval", &["gc.meta_interval", "gcMetaInterval"]),
            ("--task-expire-time", &["gc.task_expire_time", "taskExpireTime"]),
            ("--peer-gc-delay", &["gc.peer_gc_delay", "peerGCDelay"]),
            ("--pool-size", &["no effect", "schedulerCorePoolSize"]),
        ] {
            let paragraph = help_of(&help, flag);
            for setting in settings {
                assert!(paragraph.contains(setting), "{flag}: {setting} missing from\n{paragraph}");
            }
        }
        assert!(help.contains("-D, --debug"), "{help}");
        assert!(!help.contains("--default-config"), "the default path is not a user flag:\n{help}");
    }
}
