//! What one run of the testbed measured, and how it is sampled: the machine's CPU from
//! `/proc/stat`, a process's CPU from `/proc/<pid>/stat`, the bytes each host sent from its
//! link's counters, and the rest from the origin's counters and the peers' reports.

use std::time::{Duration, Instant};

use dfget_sim::Report;

use super::namespace_exec::ip;
use super::net::HOST_DEV;
use super::shaping::Rate;

/// Above this share of the cores, used by a run's own processes and the kernel's packet work,
/// a run is limited by the CPU rather than by the links.
pub const CPU_BOUND_SHARE: f64 = 0.9;

/// Linux reports process and machine CPU time in these ticks per second (USER_HZ).
const USER_HZ: f64 = 100.0;

/// The machine's CPU counters (all cores), in clock ticks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuSample {
    busy: u64,
    total: u64,
    /// Interrupt and softirq time: the shaped links' packet work (veth, bridge, tbf) is done
    /// there, on no process's account.
    irq: u64,
    /// CPU seconds of this process and of its children that have been waited for.
    harness_secs: f64,
    at: Instant,
}

impl CpuSample {
    pub(crate) fn now() -> CpuSample {
        let text = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
        let line = text.lines().next().unwrap_or("");
        // cpu user nice system idle iowait irq softirq steal (guest time is inside user)
        let ticks: Vec<u64> = line.split_whitespace().skip(1).take(8).filter_map(|v| v.parse().ok()).collect();
        let tick = |i: usize| ticks.get(i).copied().unwrap_or(0);
        let total: u64 = ticks.iter().sum();
        CpuSample {
            busy: total - tick(3) - tick(4),
            total,
            irq: tick(5) + tick(6),
            harness_secs: process_cpu_secs(std::process::id()) + children_cpu_secs(),
            at: Instant::now(),
        }
    }

    /// The share of CPU time that was busy since `earlier`, all cores together (0..=1).
    pub(crate) fn busy_since(&self, earlier: &CpuSample) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        self.busy.saturating_sub(earlier.busy) as f64 / total as f64
    }

    /// What a run between `earlier` and now used, `others_secs` being the CPU seconds of its
    /// processes that are not this one or its waited-for children (e.g. the supernode).
    pub(crate) fn use_since(&self, earlier: &CpuSample, others_secs: f64) -> CpuUse {
        CpuUse {
            machine_busy: self.busy_since(earlier),
            own_secs: self.harness_secs - earlier.harness_secs + others_secs,
            irq_secs: self.irq.saturating_sub(earlier.irq) as f64 / USER_HZ,
            window: self.at.duration_since(earlier.at),
        }
    }
}

/// The CPU a run used. The machine is shared (other builds may run beside a bench), so the
/// run's own share is counted from its processes and the kernel's interrupt work, and the
/// machine's busy share is shown beside it.
#[derive(Clone, Copy, Debug)]
pub struct CpuUse {
    /// Busy share of all the machine's cores over the run (0..=1), whoever used them.
    pub machine_busy: f64,
    /// CPU seconds of the run's processes: the harness (the origin), the peers or curls, the
    /// supernode.
    pub own_secs: f64,
    /// Interrupt and softirq seconds over the run (the links' packet work).
    pub irq_secs: f64,
    /// How long the sampling took: the run, from the first process's start until every one
    /// has exited.
    pub window: Duration,
}

impl CpuUse {
    /// The run's own share of the cores (its processes and the interrupt work), 0..=1.
    pub fn own_share(&self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
        let available = self.window.as_secs_f64() * cores;
        if available == 0.0 {
            return 0.0;
        }
        (self.own_secs + self.irq_secs) / available
    }

    pub fn cpu_bound(&self) -> bool {
        self.own_share() > CPU_BOUND_SHARE
    }
}

/// User + system CPU seconds of process `pid` so far (0 when it is gone).
pub fn process_cpu_secs(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // after the command name (in parentheses): utime and stime are the 12th and 13th fields
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / USER_HZ
}

/// User + system CPU seconds of this process's children that have ended and been waited for.
fn children_cpu_secs() -> f64 {
    // SAFETY: getrusage writes one struct that we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Bytes the host of namespace `ns` has sent on its link so far (headers included).
pub(crate) fn link_tx_bytes(ns: &str) -> u64 {
    let json = ip(&["-n", ns, "-j", "-s", "link", "show", "dev", HOST_DEV]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("ip -j link: {e}: {json}"));
    v[0]["stats64"]["tx"]["bytes"].as_u64().unwrap_or_else(|| panic!("no tx bytes in {json}"))
}

/// The rates a run's bound is computed from.
#[derive(Clone, Copy, Debug)]
pub struct RunLinks {
    pub origin_up: Rate,
    pub peer_down: Rate,
}

impl RunLinks {
    /// The physical bound of any distribution of `file_len` bytes in pieces of `piece_len`: every
    /// byte must leave the origin once, and the last piece must still cross a host's link.
    pub fn bound(&self, file_len: u64, piece_len: u64) -> Duration {
        self.origin_up.time_for(file_len) + self.peer_down.time_for(piece_len)
    }
}

/// One peer host's part of a swarm run.
#[derive(Clone, Debug)]
pub struct PeerRun {
    /// Which peer host (0-based).
    pub host: usize,
    /// From the start of the run (the first peer process started) to this host's last byte
    /// (the last of its pieces written).
    pub last_byte_after: Duration,
    /// From the start of the run to the end of this host's dfget run: after its last byte,
    /// dfget checks the whole file's md5 and reports its last pieces.
    pub finished_after: Duration,
    /// What dfget-sim reported (its upload counters are final: taken when the uploader stopped).
    pub report: Report,
    /// What the peer process wrote on stderr.
    pub log: String,
    /// CPU seconds the peer process used (up to the end of the last host's download).
    pub cpu_secs: f64,
}

/// One swarm run: N peer hosts downloading one file through the supernode, starting together.
#[derive(Clone, Debug)]
pub struct SwarmRun {
    pub file_len: u64,
    pub links: RunLinks,
    /// From the start of the first peer process to the last host's last byte.
    pub wall: Duration,
    /// From the start of the first peer process until every host's dfget run ended (each has
    /// checked its whole file's md5; on the testbed every host does that on the same cores).
    pub verified: Duration,
    pub peers: Vec<PeerRun>,
    /// Body bytes the origin sent for the file during the run.
    pub origin_bytes: u64,
    /// Bytes the supernode host sent on its link (pieces, control replies, TCP/IP headers).
    pub supernode_link_bytes: u64,
    /// Bytes the peer hosts together sent on their links.
    pub peer_link_bytes: u64,
    pub cpu: CpuUse,
    /// CPU seconds the supernode process used during the run.
    pub supernode_cpu_secs: f64,
}

impl SwarmRun {
    /// Piece size of the task (framing included).
    pub fn piece_len(&self) -> u64 {
        self.peers.first().map_or(0, |p| p.report.piece_size)
    }

    /// The physical bound of this file on these links.
    pub fn bound(&self) -> Duration {
        self.links.bound(self.file_len, self.piece_len())
    }

    /// Piece bytes (framing included) the peers fetched from the supernode.
    pub fn supernode_upload_bytes(&self) -> u64 {
        let fetched = self.peers.iter().flat_map(|p| &p.report.stats.fetched);
        fetched.filter(|f| f.from_supernode).map(|f| range_len(&f.range)).sum()
    }

    /// Piece bytes the peers' uploaders served.
    pub fn peer_upload_bytes(&self) -> u64 {
        self.peers.iter().map(|p| p.report.stats.upload_bytes).sum()
    }

    pub fn pieces_from_supernode(&self) -> u64 {
        self.peers.iter().map(|p| p.report.stats.pieces_from_supernode).sum()
    }

    pub fn pieces_from_peers(&self) -> u64 {
        self.peers.iter().map(|p| p.report.stats.pieces_from_peers).sum()
    }

    /// `/peer/task` polls the peers sent.
    pub fn polls(&self) -> u64 {
        self.peers.iter().map(|p| p.report.stats.polls).sum()
    }

    /// Polls answered 602 (wait).
    pub fn waits(&self) -> u64 {
        self.peers.iter().map(|p| p.report.stats.poll_codes.get(&602).copied().unwrap_or(0)).sum()
    }

    /// Share of polls answered 602.
    pub fn wait_share(&self) -> f64 {
        self.waits() as f64 / self.polls().max(1) as f64
    }

    /// The peer host that got its last byte last.
    pub fn slowest(&self) -> &PeerRun {
        self.peers.iter().max_by_key(|p| p.last_byte_after).expect("a run has peers")
    }

    /// CPU seconds the peer processes used up to the end of the last download (they are
    /// inside [`CpuUse::own_secs`] too).
    pub fn peers_cpu_secs(&self) -> f64 {
        self.peers.iter().map(|p| p.cpu_secs).sum()
    }
}

/// One direct run: the same hosts each downloading the file straight from the origin with curl.
#[derive(Clone, Debug)]
pub struct DirectRun {
    pub file_len: u64,
    /// From the start of the first curl to the end of the last.
    pub wall: Duration,
    /// Per host, from the start of the run to its last byte.
    pub finished_after: Vec<Duration>,
    pub origin_bytes: u64,
    pub cpu: CpuUse,
}

impl DirectRun {
    /// The host that finished last and when.
    pub fn slowest(&self) -> (usize, Duration) {
        let (host, d) = self.finished_after.iter().enumerate().max_by_key(|(_, d)| **d).expect("a run has hosts");
        (host, *d)
    }
}

/// Bytes in an inclusive range `a-b`.
fn range_len(range: &str) -> u64 {
    let bounds = range.split_once('-').and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    bounds.map_or(0, |(a, b)| b.saturating_sub(a) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_and_ranges() {
        let links = RunLinks { origin_up: Rate::mbit(50), peer_down: Rate::gbit(1) };
        let bound = links.bound(64 << 20, 4 << 20);
        assert!((bound.as_secs_f64() - (10.737 + 0.0336)).abs() < 0.01, "{bound:?}");
        assert_eq!(range_len("0-4194303"), 4 << 20);
        assert_eq!(range_len("x"), 0);
    }

    #[test]
    fn cpu_share() {
        let at = Instant::now();
        let a = CpuSample { busy: 100, total: 1000, irq: 10, harness_secs: 1.0, at };
        let b = CpuSample { busy: 550, total: 1500, irq: 110, harness_secs: 2.0, at: at + Duration::from_secs(2) };
        assert!((b.busy_since(&a) - 0.9).abs() < 1e-9);
        assert_eq!(a.busy_since(&a), 0.0);
        let used = b.use_since(&a, 0.5);
        assert!((used.own_secs - 1.5).abs() < 1e-9 && (used.irq_secs - 1.0).abs() < 1e-9, "{used:?}");
        let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
        assert!((used.own_share() - 2.5 / (2.0 * cores)).abs() < 1e-9, "{used:?}");
    }
}
