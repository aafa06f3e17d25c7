//! Link rates, and holding a link to one: a `tbf` qdisc on the egress of each end of a veth
//! pair (this kernel has `tbf` and `htb`, not `netem`, so there is no added delay or loss).
//!
//! A veth pair hands over whole GSO segments of up to 64 KiB, and `tbf` drops a segment larger
//! than its bucket, so the bucket holds at least that much; at high rates it holds 4 ms of
//! traffic, enough that timer granularity does not cut the rate. The queue in front of the
//! bucket holds 25 ms of traffic: TCP then sees drops when it overruns the link, as it would on
//! a real switch port.

use std::fmt;
use std::time::Duration;

use super::namespace_exec::run_tool;

/// A link rate, in bits per second and powers of 1000, as `tc` and network links count (the
/// supernode's own settings count bytes in powers of 1024).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate {
    bits_per_sec: u64,
}

impl Rate {
    pub const fn bits_per_sec(bits_per_sec: u64) -> Rate {
        Rate { bits_per_sec }
    }

    pub const fn mbit(n: u64) -> Rate {
        Rate { bits_per_sec: n * 1_000_000 }
    }

    pub const fn gbit(n: u64) -> Rate {
        Rate { bits_per_sec: n * 1_000_000_000 }
    }

    pub fn bits(self) -> u64 {
        self.bits_per_sec
    }

    pub fn bytes_per_sec(self) -> f64 {
        self.bits_per_sec as f64 / 8.0
    }

    /// How long `bytes` take at this rate.
    pub fn time_for(self, bytes: u64) -> Duration {
        Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec())
    }

    /// `50M`, `200m`, `1G`, `800k` (powers of 1000, bits) or a plain number of bits per second.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let t = text.trim();
        let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            Some((at, _)) => t.split_at(at),
            None => (t, ""),
        };
        let n: u64 = digits.parse().map_err(|_| format!("rate {text:?}: expected e.g. 50M, 1G or bits per second"))?;
        let scale = match unit.to_ascii_lowercase().trim_end_matches("bit").trim_end_matches("bps") {
            "" => 1,
            "k" => 1_000,
            "m" => 1_000_000,
            "g" => 1_000_000_000,
            _ => return Err(format!("rate {text:?}: unknown unit {unit:?} (k, M, G)")),
        };
        match n.checked_mul(scale) {
            Some(0) | None => Err(format!("rate {text:?}: must be above 0 and fit in 64 bits")),
            Some(bits) => Ok(Rate::bits_per_sec(bits)),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.bits_per_sec;
        if b.is_multiple_of(1_000_000_000) {
            write!(f, "{} Gbit/s", b / 1_000_000_000)
        } else if b.is_multiple_of(1_000_000) {
            write!(f, "{} Mbit/s", b / 1_000_000)
        } else {
            write!(f, "{b} bit/s")
        }
    }
}

/// The two directions of a host's link, named from the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// What the host can send.
    pub up: Rate,
    /// What the host can receive.
    pub down: Rate,
}

impl Link {
    /// The same rate both ways.
    pub const fn symmetric(rate: Rate) -> Link {
        Link { up: rate, down: rate }
    }
}

/// A GSO segment on a veth and a frame around it.
const MIN_BUCKET_BYTES: u64 = 64 * 1024 + 1514;

/// The `tbf` parameters for `rate`.
fn tbf_args(rate: Rate) -> Vec<String> {
    let bucket = (rate.bits() / 8 / 250).max(MIN_BUCKET_BYTES);
    ["tbf", "rate", &format!("{}bit", rate.bits()), "burst", &bucket.to_string(), "latency", "25ms"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Holds the egress of `dev` in namespace `ns` to `rate` (replacing a shaping set before).
pub(crate) fn shape_egress(ns: &str, dev: &str, rate: Rate) -> Result<(), String> {
    let mut args: Vec<String> =
        ["-n", ns, "qdisc", "replace", "dev", dev, "root"].iter().map(|s| s.to_string()).collect();
    args.extend(tbf_args(rate));
    run_tool("tc", &args).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(Rate::parse("50M"), Ok(Rate::mbit(50)));
        assert_eq!(Rate::parse("1G"), Ok(Rate::gbit(1)));
        assert_eq!(Rate::parse("200mbit"), Ok(Rate::mbit(200)));
        assert_eq!(Rate::parse("800k"), Ok(Rate::bits_per_sec(800_000)));
        assert_eq!(Rate::parse("12345"), Ok(Rate::bits_per_sec(12345)));
        for bad in ["", "0", "M", "5X", "99999999999999999999G"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Rate::mbit(50).to_string(), "50 Mbit/s");
        assert_eq!(Rate::gbit(1).to_string(), "1 Gbit/s");
        assert_eq!(Rate::mbit(50).time_for(6_250_000), Duration::from_secs(1));
    }

    #[test]
    fn bucket_holds_a_segment() {
        let args = tbf_args(Rate::mbit(50));
        assert_eq!(args[4], MIN_BUCKET_BYTES.to_string());
        let args = tbf_args(Rate::gbit(1));
        assert_eq!(args[4], "500000", "4 ms at 1 Gbit/s");
    }
}
