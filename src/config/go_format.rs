//! The Go supernode's text formats for values, so its flags and `supernode.yml` keep their
//! meaning here and `config default` writes what Go writes.
//!
//! * Durations as Go's `time.ParseDuration` reads them (`3m0s`, `6s`, `2h`, `1h30m`, `1.5s`,
//!   `500ms`, `250us`) and `time.Duration.String` writes them (`3m0s`, `2h0m0s`, `500ms`).
//!   Go's durations are signed nanoseconds; a negative one means nothing for a setting here
//!   and is refused, and so is one beyond Go's range (about 292 years), which Go refuses too.
//! * Rates and sizes share one grammar (`200M`, `20MB`, `1G`, `512k`, plain bytes; powers
//!   of 1024), that of [`ByteRate`]; Go writes both as `200MB`, `100GB`, `0B`.
//! * The CDN pattern is `local` or `source`, spelt exactly so.

use std::fmt::Write as _;
use std::time::Duration;

use supernode_actors::cdn::CdnPattern;
use supernode_actors::rate::{ByteRate, RateError};

const NANOS_PER_SEC: u128 = 1_000_000_000;
/// Go's longest duration: `i64::MAX` nanoseconds.
const GO_MAX_NANOS: u128 = i64::MAX as u128;
/// Fraction digits beyond this are below a nanosecond for every unit.
const MAX_FRACTION_DIGITS: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration (e.g. 3m0s, 6s, 2h, 1h30m, 500ms)")]
    Syntax(String),
    #[error("{0:?}: a duration cannot be negative")]
    Negative(String),
    #[error("{0:?} is longer than the longest duration (about 292 years)")]
    TooLong(String),
}

/// One `<number><unit>` term's unit in nanoseconds.
fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3600 * NANOS_PER_SEC,
        _ => return None,
    })
}

/// A sequence of terms such as `1h30m` or `1.5s`; a lone `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let syntax = || DurationError::Syntax(text.to_string());
    let too_long = || DurationError::TooLong(text.to_string());
    let trimmed = text.trim();
    let (negative, mut rest) = match trimmed.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, trimmed.strip_prefix('+').unwrap_or(trimmed)),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(syntax());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
        let (int, after) = rest.split_at(digits(rest));
        let (fraction, after) = match after.strip_prefix('.') {
            Some(a) => a.split_at(digits(a)),
            None => ("", after),
        };
        if int.is_empty() && fraction.is_empty() {
            return Err(syntax());
        }
        let unit_len = after.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = unit_nanos(unit).ok_or_else(syntax)?;
        let whole: u128 = if int.is_empty() { 0 } else { int.parse().map_err(|_| too_long())? };
        let mut term = whole.checked_mul(scale).ok_or_else(too_long)?;
        let fraction = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
        if !fraction.is_empty() {
            let numerator: u128 = fraction.parse().map_err(|_| syntax())?;
            term += numerator * scale / 10u128.pow(fraction.len() as u32);
        }
        total = total.checked_add(term).filter(|t| *t <= GO_MAX_NANOS).ok_or_else(too_long)?;
        rest = after;
    }
    if negative && total > 0 {
        return Err(DurationError::Negative(text.to_string()));
    }
    let nanos = u64::try_from(total).map_err(|_| too_long())?;
    Ok(Duration::from_nanos(nanos))
}

/// `value / 10^precision` with the fraction's trailing zeros (and a bare point) left out.
fn decimal(value: u128, precision: u32) -> String {
    let scale = 10u128.pow(precision);
    let mut out = (value / scale).to_string();
    let fraction = value % scale;
    if fraction > 0 {
        let digits = format!("{fraction:0width$}", width = precision as usize);
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out
}

/// As Go writes it: `0s`, `500ms`, `1.5µs`, `6s`, `3m0s`, `1h30m0s`.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < NANOS_PER_SEC {
        let (unit, precision) = match nanos {
            0..=999 => ("ns", 0),
            1_000..=999_999 => ("\u{b5}s", 3),
            _ => ("ms", 6),
        };
        return format!("{}{unit}", decimal(nanos, precision));
    }
    let seconds = nanos / NANOS_PER_SEC;
    let (hours, minutes) = (seconds / 3600, seconds / 60 % 60);
    let mut out = String::new();
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if seconds >= 60 {
        let _ = write!(out, "{minutes}m");
    }
    let second_nanos = nanos % (60 * NANOS_PER_SEC);
    let _ = write!(out, "{}s", decimal(second_nanos, 9));
    out
}

/// A size in bytes, in the grammar of rates (`100G`, `5GB`, `512k`, bytes).
pub fn parse_size(text: &str) -> Result<u64, RateError> {
    text.parse::<ByteRate>().map(ByteRate::bytes_per_sec)
}

/// A size as Go writes it: the largest unit that divides it (`100GB`, `5GB`, `0B`).
pub fn format_size(bytes: u64) -> String {
    ByteRate(bytes).to_string()
}

/// `local` or `source`.
pub fn parse_cdn_pattern(text: &str) -> Result<CdnPattern, String> {
    match text {
        "local" => Ok(CdnPattern::Local),
        "source" => Ok(CdnPattern::Source),
        other => Err(format!("{other:?} is not a CDN pattern (local or source)")),
    }
}

/// The name [`parse_cdn_pattern`] reads.
pub fn format_cdn_pattern(pattern: CdnPattern) -> &'static str {
    match pattern {
        CdnPattern::Local => "local",
        CdnPattern::Source => "source",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn reads_go_durations() {
        for (text, nanos) in [
            ("3m0s", 180 * SEC),
            ("6s", 6 * SEC),
            ("2h", 7200 * SEC),
            ("1h30m", 5400 * SEC),
            ("1h30m0s", 5400 * SEC),
            ("500ms", SEC / 2),
            ("1.5s", 3 * SEC / 2),
            (".5m", 30 * SEC),
            ("1.m", 60 * SEC),
            ("250us", 250_000),
            ("250\u{b5}s", 250_000),
            ("250\u{3bc}s", 250_000),
            ("7ns", 7),
            ("0", 0),
            ("+0", 0),
            ("-0s", 0),
            ("+6s", 6 * SEC),
            ("1h1h", 7200 * SEC),
        ] {
            assert_eq!(parse_duration(text), Ok(Duration::from_nanos(nanos)), "{text}");
        }
    }

    #[test]
    fn refuses_what_go_refuses_and_negatives() {
        for bad in ["", "3", "1.5", "s", ".s", "3x", "3 m", "1h-1m", "3m0", "--1s", "1e3s"] {
            assert!(matches!(parse_duration(bad), Err(DurationError::Syntax(_))), "{bad:?}");
        }
        assert!(matches!(parse_duration("-3m"), Err(DurationError::Negative(_))));
        assert!(matches!(parse_duration("2562048h"), Err(DurationError::TooLong(_))));
        assert!(matches!(parse_duration("99999999999999999999999999999999999999999h"), Err(DurationError::TooLong(_))));
        assert_eq!(parse_duration("2562047h").map(|d| d.as_secs() / 3600), Ok(2_562_047));
    }

    #[test]
    fn writes_as_go_does() {
        for (nanos, text) in [
            (0, "0s"),
            (7, "7ns"),
            (1_500, "1.5\u{b5}s"),
            (SEC / 2, "500ms"),
            (1_234_567, "1.234567ms"),
            (6 * SEC, "6s"),
            (3 * SEC / 2, "1.5s"),
            (15 * SEC, "15s"),
            (120 * SEC, "2m0s"),
            (180 * SEC, "3m0s"),
            (90 * SEC, "1m30s"),
            (3600 * SEC, "1h0m0s"),
            (7200 * SEC, "2h0m0s"),
            (5400 * SEC + SEC / 4, "1h30m0.25s"),
            (24 * 3600 * SEC, "24h0m0s"),
        ] {
            let d = Duration::from_nanos(nanos);
            assert_eq!(format_duration(d), text, "{nanos} ns");
            assert_eq!(parse_duration(text), Ok(d), "{text} reads back");
        }
    }

    #[test]
    fn sizes_as_go_writes_them() {
        assert_eq!(format_size(100 << 30), "100GB");
        assert_eq!(format_size(5 << 30), "5GB");
        assert_eq!(format_size(0), "0B");
        assert_eq!(parse_size("100GB"), Ok(100 << 30));
        assert_eq!(parse_size("5G"), Ok(5 << 30));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("lots").is_err());
    }
}
