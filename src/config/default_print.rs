//! `supernode config default`: the default configuration as a file to start from.
//!
//! The Go format is what Go's own `config default` writes, so scripts and deployments made
//! for Go keep working: YAML, Go's keys under `base:` in Go's order, Go's value formats
//! (`3m0s`, `200MB`, `100GB`). Both supernodes accept it back through `--config`. The TOML
//! format is this server's documented `config.toml`, every key with its default.

use serde_norway::{Mapping, Value};

use super::go_keys::BASE_KEYS;
use super::{Config, DefaultFormat};

/// The repository's `config.toml`: every key with its default and what it means.
const DOCUMENTED_TOML: &str = include_str!("../../config.toml");

/// The text `config default --format <format>` prints.
pub fn default_config_text(format: DefaultFormat) -> Result<String, serde_norway::Error> {
    match format {
        DefaultFormat::Toml => Ok(DOCUMENTED_TOML.to_string()),
        DefaultFormat::Yaml => go_yaml_text(&Config::default()),
    }
}

/// `config` in Go's format, the keys this server has no counterpart for left out.
fn go_yaml_text(config: &Config) -> Result<String, serde_norway::Error> {
    let base: Mapping = BASE_KEYS
        .iter()
        .filter_map(|key| key.default.map(|value| (Value::String(key.name.into()), value(config))))
        .collect();
    let mut document = Mapping::new();
    document.insert(Value::String("base".into()), Value::Mapping(base));
    let header = format!(
        "# supernode {}: the default configuration in the Go supernode's format (supernode.yml)\n",
        env!("CARGO_PKG_VERSION")
    );
    Ok(header + &serde_norway::to_string(&Value::Mapping(document))?)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::go_yaml::from_go_yaml;

    #[test]
    fn go_format_reads_back_as_the_defaults() {
        let text = default_config_text(DefaultFormat::Yaml).unwrap();
        let mut notices = Vec::new();
        let read = from_go_yaml(Path::new("default.yml"), &text, &mut notices).unwrap();
        let mut expected = Config::default();
        expected.server.home_dir = Some(crate::config::default_home_dir());
        assert_eq!(read, expected, "{text}");
        let no_effect = notices.iter().all(|n| matches!(n, crate::config::Notice::NoEffect { .. }));
        assert!(no_effect, "{notices:?}");
    }

    #[test]
    fn go_format_uses_go_keys_and_value_formats() {
        let text = default_config_text(DefaultFormat::Yaml).unwrap();
        for line in [
            "base:",
            "  cdnPattern: local",
            "  listenPort: 8002",
            "  downloadPort: 8001",
            "  schedulerCorePoolSize: 10",
            "  peerUpLimit: 5",
            "  peerDownLimit: 4",
            "  linkLimit: 20MB",
            "  systemReservedBandwidth: 20MB",
            "  maxBandwidth: 200MB",
            "  enableProfiler: false",
            "  advertiseIP: ''",
            "  failAccessInterval: 3m0s",
            "  gcInitialDelay: 6s",
            "  gcMetaInterval: 2m0s",
            "  taskExpireTime: 3m0s",
            "  peerGCDelay: 3m0s",
            "  gcDiskInterval: 15s",
            "  youngGCThreshold: 100GB",
            "  fullGCThreshold: 5GB",
            "  IntervalThreshold: 2h0m0s",
            "  CleanRatio: 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        }
    }

    #[test]
    fn toml_format_is_the_documented_file() {
        let text = default_config_text(DefaultFormat::Toml).unwrap();
        assert_eq!(Config::from_toml(Path::new("default.toml"), &text).unwrap(), Config::default());
        assert!(text.contains("# "), "the TOML keeps its documentation");
    }
}
