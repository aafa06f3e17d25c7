//! Byte rates as the Go supernode writes them: `200M`, `20MB`, `1G`, `512k`, or plain bytes
//! per second. Units are powers of 1024 and case-insensitive; a trailing `B` changes nothing.
//!
//! In a config file a rate is either such a string or an integer (bytes per second); `0`
//! means no limit where a setting allows one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// Bytes per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteRate(pub u64);

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a rate (e.g. 200M, 20MB, 1G, 512k, or bytes per second)")]
pub struct RateError(pub String);

impl ByteRate {
    pub const fn mib(n: u64) -> ByteRate {
        ByteRate(n * MIB)
    }

    pub fn bytes_per_sec(self) -> u64 {
        self.0
    }

    pub fn is_unlimited(self) -> bool {
        self.0 == 0
    }
}

impl FromStr for ByteRate {
    type Err = RateError;

    fn from_str(s: &str) -> Result<ByteRate, RateError> {
        let bad = || RateError(s.to_string());
        let text = s.trim();
        let text = text.strip_suffix(['B', 'b']).unwrap_or(text);
        let (digits, unit) = match text.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_uppercase()),
            _ => (text, ' '),
        };
        let scale = match unit {
            ' ' => 1,
            'K' => KIB,
            'M' => MIB,
            'G' => GIB,
            'T' => GIB * 1024,
            _ => return Err(bad()),
        };
        let n: u64 = digits.trim().parse().map_err(|_| bad())?;
        n.checked_mul(scale).map(ByteRate).ok_or_else(bad)
    }
}

impl fmt::Display for ByteRate {
    /// The largest unit that divides the rate exactly, as Go's `config default` writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (scale, unit) in [(GIB, "GB"), (MIB, "MB"), (KIB, "KB")] {
            if n != 0 && n.is_multiple_of(scale) {
                return write!(f, "{}{unit}", n / scale);
            }
        }
        write!(f, "{n}B")
    }
}

impl<'de> Deserialize<'de> for ByteRate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteRate, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(ByteRate(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl serde::Serialize for ByteRate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_syntax() {
        for (text, bytes) in [
            ("200M", 200 * MIB),
            ("20MB", 20 * MIB),
            ("1G", GIB),
            ("512k", 512 * KIB),
            ("512KB", 512 * KIB),
            ("1024", 1024),
            ("100B", 100),
            (" 3m ", 3 * MIB),
        ] {
            assert_eq!(text.parse::<ByteRate>(), Ok(ByteRate(bytes)), "{text}");
        }
        for bad in ["", "M", "2X", "-1M", "1.5M", "99999999999999999999G"] {
            assert!(bad.parse::<ByteRate>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prints_what_it_parses() {
        for rate in [ByteRate::mib(200), ByteRate(GIB), ByteRate(512 * KIB), ByteRate(1000), ByteRate(0)] {
            assert_eq!(rate.to_string().parse::<ByteRate>(), Ok(rate));
        }
        assert_eq!(ByteRate::mib(200).to_string(), "200MB");
    }
}
