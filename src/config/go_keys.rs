//! Go's `base:` settings and what each sets here: the one table that reading a
//! `supernode.yml` and writing `config default` both follow, so the two cannot drift apart.
//!
//! Values are read as Go reads them: integers as integers (a string is the wrong type),
//! booleans also as the YAML 1.1 words Go's YAML library knows (`yes`, `off`…), durations in
//! Go's syntax or as bare nanoseconds, rates and sizes as text or bytes.

use std::time::Duration;

use serde_norway::Value;
use supernode_actors::rate::ByteRate;

use super::go_format::{
    format_cdn_pattern, format_duration, format_size, parse_cdn_pattern, parse_duration, parse_size,
};
use super::{default_home_dir, Config, POOL_SIZE};

/// What a Go key does here.
#[derive(Clone, Copy)]
pub enum Effect {
    /// Sets this server's settings for it.
    Sets(fn(&mut Config, &Value) -> Result<(), String>),
    /// Checked as Go checks it, then ignored: Go declares the setting and never uses it.
    NoEffect { check: fn(&Value) -> Result<(), String>, setting: &'static str },
    /// A Go setting this server does not have.
    Unsupported,
    /// Go replaces the value after reading the file, so it never counts.
    IgnoredByGo,
}

/// One key of `base:`.
pub struct GoKey {
    /// As Go spells it.
    pub name: &'static str,
    pub effect: Effect,
    /// What `config default` writes for it, from the defaults; `None`: not written.
    pub default: Option<fn(&Config) -> Value>,
}

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

pub(super) fn expected(what: &str, v: &Value) -> String {
    format!("expected {what}, found {}", kind(v))
}

fn integer<T: TryFrom<u64>>(v: &Value) -> Result<T, String> {
    let Value::Number(n) = v else { return Err(expected("a whole number", v)) };
    match (n.as_u64(), n.as_i64()) {
        (Some(u), _) => T::try_from(u).map_err(|_| format!("{u} is out of range")),
        (None, Some(_)) => Err(format!("{n}: must not be negative")),
        (None, None) => Err(format!("{n} is not a whole number")),
    }
}

fn signed(v: &Value) -> Result<i64, String> {
    let Value::Number(n) = v else { return Err(expected("a whole number", v)) };
    n.as_i64().ok_or_else(|| format!("{n} is not a whole number in range"))
}

/// `true`/`false`, and the other words Go's YAML reads as booleans (`yes`, `on`, `n`…).
fn boolean(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.as_str() {
            "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => Ok(true),
            "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => Ok(false),
            _ => Err(expected("true or false", v)),
        },
        _ => Err(expected("true or false", v)),
    }
}

fn text(v: &Value) -> Result<&str, String> {
    v.as_str().ok_or_else(|| expected("a string", v))
}

/// A Go duration; a bare integer is nanoseconds, as Go reads it.
fn duration(v: &Value) -> Result<Duration, String> {
    match v {
        Value::String(s) => parse_duration(s).map_err(|e| e.to_string()),
        Value::Number(_) => integer::<u64>(v).map(Duration::from_nanos),
        _ => Err(expected("a duration (e.g. 3m0s)", v)),
    }
}

/// A rate as text (`200M`) or bytes per second.
fn rate(v: &Value) -> Result<ByteRate, String> {
    match v {
        Value::String(s) => s.parse().map_err(|e: supernode_actors::rate::RateError| e.to_string()),
        Value::Number(_) => integer(v).map(ByteRate),
        _ => Err(expected("a rate (e.g. 200MB)", v)),
    }
}

/// A size as text (`100GB`) or bytes.
fn size(v: &Value) -> Result<u64, String> {
    match v {
        Value::String(s) => parse_size(s).map_err(|e| e.to_string()),
        Value::Number(_) => integer(v),
        _ => Err(expected("a size (e.g. 100GB)", v)),
    }
}

fn string(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

fn number(n: impl Into<u64>) -> Value {
    Value::Number(n.into().into())
}

fn duration_text(d: Duration) -> Value {
    string(format_duration(d))
}

fn rate_text(r: ByteRate) -> Value {
    string(r.to_string())
}

fn size_text(bytes: u64) -> Value {
    string(format_size(bytes))
}

/// A key that sets one setting of ours: read with `$read`, written back with `$write`.
macro_rules! sets {
    ($name:literal, $($field:ident).+, $read:expr, $write:expr) => {
        GoKey {
            name: $name,
            effect: Effect::Sets(|c, v| {
                c.$($field).+ = $read(v)?;
                Ok(())
            }),
            default: Some(|c| $write(c.$($field).+)),
        }
    };
}

/// Go's keys of `base:` in the order Go writes them.
pub const BASE_KEYS: &[GoKey] = &[
    GoKey {
        name: "cdnPattern",
        effect: Effect::Sets(|c, v| {
            c.cdn.pattern = parse_cdn_pattern(text(v)?)?;
            Ok(())
        }),
        default: Some(|c| string(format_cdn_pattern(c.cdn.pattern))),
    },
    sets!("listenPort", server.port, integer, number),
    sets!("downloadPort", server.download_port, integer, number),
    GoKey {
        name: "homeDir",
        effect: Effect::Sets(|c, v| {
            let dir = text(v)?;
            c.server.home_dir = (!dir.is_empty()).then(|| dir.into());
            Ok(())
        }),
        default: Some(|c| string(c.server.home_dir.clone().unwrap_or_else(default_home_dir).to_string_lossy())),
    },
    GoKey {
        name: "schedulerCorePoolSize",
        effect: Effect::NoEffect { check: |v| signed(v).map(drop), setting: POOL_SIZE },
        default: Some(|_| number(10u32)),
    },
    GoKey { name: "downloadPath", effect: Effect::IgnoredByGo, default: None },
    sets!("peerUpLimit", scheduler.peer_up_limit, integer, number),
    GoKey {
        name: "peerDownLimit",
        effect: Effect::Sets(|c, v| {
            c.scheduler.peer_down_limit = integer(v)?;
            c.scheduler.cdn_up_limit = c.scheduler.peer_down_limit;
            Ok(())
        }),
        default: Some(|c| number(c.scheduler.peer_down_limit)),
    },
    sets!("eliminationLimit", scheduler.elimination_limit, integer, number),
    sets!("failureCountLimit", scheduler.failure_count_limit, integer, number),
    GoKey {
        name: "linkLimit",
        effect: Effect::NoEffect { check: |v| rate(v).map(drop), setting: "linkLimit" },
        default: Some(|_| rate_text(ByteRate::mib(20))),
    },
    sets!("systemReservedBandwidth", cdn.system_reserved_bandwidth, rate, rate_text),
    sets!("maxBandwidth", cdn.max_bandwidth, rate, rate_text),
    sets!("enableProfiler", server.profiler, boolean, Value::Bool),
    sets!("debug", server.debug, boolean, Value::Bool),
    GoKey {
        name: "advertiseIP",
        effect: Effect::Sets(|c, v| {
            let ip = text(v)?;
            let parsed = ip.parse().map_err(|_| format!("{ip:?} is not an IPv4 address"));
            c.server.advertise_ip = if ip.is_empty() { None } else { Some(parsed?) };
            Ok(())
        }),
        default: Some(|c| string(c.server.advertise_ip.map(|ip| ip.to_string()).unwrap_or_default())),
    },
    sets!("failAccessInterval", cdn.fail_access_interval, duration, duration_text),
    sets!("gcInitialDelay", gc.initial_delay, duration, duration_text),
    sets!("gcMetaInterval", gc.meta_interval, duration, duration_text),
    sets!("taskExpireTime", gc.task_expire_time, duration, duration_text),
    GoKey { name: "peerExpireTime", effect: Effect::Unsupported, default: None },
    sets!("peerGCDelay", gc.peer_gc_delay, duration, duration_text),
    sets!("gcDiskInterval", gc.disk_interval, duration, duration_text),
    sets!("youngGCThreshold", gc.young_gc_threshold, size, size_text),
    sets!("fullGCThreshold", gc.full_gc_threshold, size, size_text),
    sets!("IntervalThreshold", gc.recent_window, duration, duration_text),
    GoKey {
        name: "maxSeedPerObject",
        effect: Effect::Sets(|c, v| {
            c.scheduler.max_seeds_per_url = integer(v)?;
            Ok(())
        }),
        default: None,
    },
    sets!("CleanRatio", gc.clean_ratio, integer, number),
    GoKey { name: "logConfig", effect: Effect::Unsupported, default: None },
];
