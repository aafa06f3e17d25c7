//! The Go supernode's `supernode.yml`, so a Go deployment keeps its file: the settings under
//! `base:`, values in Go's formats ([`super::go_format`]).
//!
//! Go reads the file through viper, which folds case, so keys match here without regard to
//! case too. Each Go key sets the settings this server has for it ([`BASE_KEYS`]). What Go
//! would not stop on does not stop the start here either: a key Go ignores, or a Go setting
//! this server lacks, is a [`Notice`]; a value of the wrong type stops the start naming its
//! key, as it stops Go's. A key without a value keeps its default, as in Go.

use std::path::Path;

use serde_norway::Value;

use super::go_keys::{expected, kind, Effect, BASE_KEYS};
use super::{Config, ConfigError, Notice};

/// The top-level keys Go reads besides `base`, for settings this server does not have.
const UNSUPPORTED_SECTIONS: [&str; 2] = ["plugins", "storages"];

/// A mapping key as text (YAML allows numbers and booleans as keys).
fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => kind(other).to_string(),
    }
}

/// Reads a `supernode.yml` over the defaults; what to warn about goes to `notices`.
pub fn from_go_yaml(path: &Path, text: &str, notices: &mut Vec<Notice>) -> Result<Config, ConfigError> {
    let error = |key: &str, message: String| ConfigError::Parse { path: path.to_path_buf(), key: key.into(), message };
    let mut document: Value = serde_norway::from_str(text).map_err(|e| error("(document)", e.to_string()))?;
    document.apply_merge().map_err(|e| error("(document)", e.to_string()))?;
    let mut config = Config::default();
    let top = match document {
        Value::Null => return Ok(config),
        Value::Mapping(m) => m,
        other => return Err(error("(document)", expected("a mapping with a `base:` key", &other))),
    };
    for (key, value) in &top {
        let name = key_name(key);
        if name.eq_ignore_ascii_case("base") {
            read_base(&mut config, value, path, notices)?;
        } else if UNSUPPORTED_SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(&name)) {
            notices.push(Notice::Unsupported { file: path.to_path_buf(), key: name });
        } else {
            notices.push(Notice::IgnoredKey { file: path.to_path_buf(), key: name });
        }
    }
    Ok(config)
}

fn read_base(config: &mut Config, base: &Value, path: &Path, notices: &mut Vec<Notice>) -> Result<(), ConfigError> {
    let entries = match base {
        Value::Null => return Ok(()),
        Value::Mapping(m) => m,
        other => {
            let message = expected("a mapping of settings", other);
            return Err(ConfigError::Parse { path: path.to_path_buf(), key: "base".into(), message });
        }
    };
    for (key, value) in entries {
        let name = key_name(key);
        let Some(go) = BASE_KEYS.iter().find(|k| k.name.eq_ignore_ascii_case(&name)) else {
            notices.push(Notice::IgnoredKey { file: path.to_path_buf(), key: format!("base.{name}") });
            continue;
        };
        if value.is_null() {
            continue;
        }
        let bad = |message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            key: format!("base.{}", go.name),
            message,
        };
        match go.effect {
            Effect::Sets(set) => set(config, value).map_err(bad)?,
            Effect::NoEffect { check, setting } => {
                check(value).map_err(bad)?;
                Notice::push_once(notices, Notice::NoEffect { setting });
            }
            Effect::Unsupported => {
                notices.push(Notice::Unsupported { file: path.to_path_buf(), key: format!("base.{}", go.name) })
            }
            Effect::IgnoredByGo => {
                notices.push(Notice::IgnoredKey { file: path.to_path_buf(), key: format!("base.{}", go.name) })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use supernode_actors::cdn::CdnPattern;
    use supernode_actors::rate::ByteRate;

    use super::*;
    use crate::config::POOL_SIZE;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    /// Every Go key, each with a value unlike its default.
    const EVERY_KEY: &str = include_str!("../../tests/data/go-every-key.yml");

    fn read(text: &str) -> Result<(Config, Vec<Notice>), ConfigError> {
        let mut notices = Vec::new();
        from_go_yaml(Path::new("supernode.yml"), text, &mut notices).map(|c| (c, notices))
    }

    fn error(text: &str) -> String {
        read(text).map(|_| ()).expect_err(text).to_string()
    }

    #[test]
    fn every_go_key_changes_every_setting() {
        let (config, notices) = read(EVERY_KEY).unwrap();
        let mut want = Config::default();
        want.cdn.pattern = CdnPattern::Source;
        want.server.port = 0;
        want.server.download_port = 0;
        want.server.home_dir = Some("/srv/supernode".into());
        want.scheduler.peer_up_limit = 7;
        want.scheduler.peer_down_limit = 3;
        want.scheduler.cdn_up_limit = 3;
        want.scheduler.elimination_limit = 9;
        want.scheduler.failure_count_limit = 8;
        want.cdn.system_reserved_bandwidth = ByteRate(10 * MIB);
        want.cdn.max_bandwidth = ByteRate(GIB);
        want.server.profiler = true;
        want.server.debug = true;
        want.server.advertise_ip = Some(Ipv4Addr::new(10, 1, 2, 3));
        want.cdn.fail_access_interval = Duration::from_secs(90);
        want.gc.initial_delay = Duration::from_millis(500);
        want.gc.meta_interval = Duration::from_secs(3600);
        want.gc.task_expire_time = Duration::from_secs(600);
        want.gc.peer_gc_delay = Duration::from_secs(45);
        want.gc.disk_interval = Duration::from_secs(60);
        want.gc.young_gc_threshold = 50 * GIB;
        want.gc.full_gc_threshold = 2 * GIB;
        want.gc.recent_window = Duration::from_secs(3 * 3600);
        want.scheduler.max_seeds_per_url = 6;
        want.gc.clean_ratio = 4;
        assert_eq!(config, want);
        let no_effect = [Notice::NoEffect { setting: POOL_SIZE }, Notice::NoEffect { setting: "linkLimit" }];
        assert_eq!(notices, no_effect, "each key without effect is noted once");

        // Every key of the table that sets or checks something is in the file above.
        let used: BTreeSet<&str> = EVERY_KEY.lines().filter_map(|l| l.trim().split(':').next()).collect();
        for key in BASE_KEYS {
            if matches!(key.effect, Effect::Sets(_) | Effect::NoEffect { .. }) {
                assert!(used.contains(key.name), "{} is not in the every-key file", key.name);
            }
        }
    }

    #[test]
    fn keys_fold_case_and_empty_values_keep_the_defaults() {
        let (config, _) = read("BASE:\n  listenport: 1\n  CLEANRATIO: 2\n  Debug: yes\n  gcInitialDelay:\n").unwrap();
        assert_eq!((config.server.port, config.gc.clean_ratio, config.server.debug), (1, 2, true));
        assert_eq!(config.gc.initial_delay, Config::default().gc.initial_delay);
        for empty in ["", "base:\n", "# only a comment\n"] {
            assert_eq!(read(empty).unwrap(), (Config::default(), vec![]), "{empty:?}");
        }
    }

    #[test]
    fn go_value_forms() {
        let (c, _) =
            read("base:\n  taskExpireTime: 1500\n  maxBandwidth: 1048576\n  fullGCThreshold: 4096\n  debug: off\n")
                .unwrap();
        assert_eq!(c.gc.task_expire_time, Duration::from_nanos(1500), "a bare integer is nanoseconds, as in Go");
        assert_eq!((c.cdn.max_bandwidth, c.gc.full_gc_threshold, c.server.debug), (ByteRate(MIB), 4096, false));
        let (c, _) = read("base:\n  advertiseIP: ''\n  homeDir: ''\n").unwrap();
        assert_eq!((c.server.advertise_ip, c.server.home_dir), (None, None), "empty means the default");
        let (c, _) = read("defaults: &d\n  peerUpLimit: 2\nbase:\n  <<: *d\n").unwrap();
        assert_eq!(c.scheduler.peer_up_limit, 2, "merge keys, as Go's YAML reads them");
    }

    #[test]
    fn a_wrong_type_stops_naming_the_key() {
        for (text, key) in [
            ("base:\n  listenPort: \"8002\"\n", "base.listenPort"),
            ("base:\n  listenport: 70000\n", "base.listenPort"),
            ("base:\n  peerUpLimit: -1\n", "base.peerUpLimit"),
            ("base:\n  peerDownLimit: 2.5\n", "base.peerDownLimit"),
            ("base:\n  debug: maybe\n", "base.debug"),
            ("base:\n  enableProfiler: 1\n", "base.enableProfiler"),
            ("base:\n  taskExpireTime: 3\n  gcMetaInterval: three minutes\n", "base.gcMetaInterval"),
            ("base:\n  peerGCDelay: -3m\n", "base.peerGCDelay"),
            ("base:\n  maxBandwidth: fast\n", "base.maxBandwidth"),
            ("base:\n  linkLimit: [1]\n", "base.linkLimit"),
            ("base:\n  schedulerCorePoolSize: ten\n", "base.schedulerCorePoolSize"),
            ("base:\n  youngGCThreshold: big\n", "base.youngGCThreshold"),
            ("base:\n  cdnPattern: remote\n", "base.cdnPattern"),
            ("base:\n  advertiseIP: example.com\n", "base.advertiseIP"),
            ("base:\n  homeDir: 7\n", "base.homeDir"),
            ("base: 3\n", "`base`"),
            ("- base\n", "(document)"),
            ("base:\n  listenPort: [\n", "(document)"),
        ] {
            let err = error(text);
            assert!(err.contains("supernode.yml") && err.contains(key), "{text:?} → {err}");
        }
    }

    #[test]
    fn keys_go_ignores_or_this_server_lacks_are_noted_and_skipped() {
        let text = "base:\n  listenPort: 1\n  downloadPath: /x\n  colour: blue\n  peerExpireTime: 5\n  logConfig: {}\n\
                    plugins: {}\nstorages:\n  local: {}\nextra: 1\n";
        let (config, notices) = read(text).unwrap();
        assert_eq!(config.server.port, 1);
        let file = Path::new("supernode.yml").to_path_buf();
        let ignored = |key: &str| Notice::IgnoredKey { file: file.clone(), key: key.into() };
        let unsupported = |key: &str| Notice::Unsupported { file: file.clone(), key: key.into() };
        assert_eq!(
            notices,
            [
                ignored("base.downloadPath"),
                ignored("base.colour"),
                unsupported("base.peerExpireTime"),
                unsupported("base.logConfig"),
                unsupported("plugins"),
                unsupported("storages"),
                ignored("extra"),
            ]
        );
        assert!(notices[1].to_string().contains("base.colour"), "{}", notices[1]);
    }
}
