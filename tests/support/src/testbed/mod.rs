//! A small data center on this machine, for what loopback cannot show: many hosts getting one
//! file through a slow origin link, which is what P2P distribution is for. On loopback the
//! origin has unlimited bandwidth, so there a swarm can only lose against direct downloads.
//!
//! The testbed is built from Linux network namespaces: an `origin` host whose link is shaped
//! (a WAN link, a registry in another region), a `supernode` host and N `peer` hosts, each with
//! its own address on a private /24 ([`SUBNET`]) and its own link into a bridge that sits in a
//! switch namespace; every link is held to its rate in each direction by `tc tbf`, and every
//! rate is a parameter ([`TestbedSpec`]). The supernode is the real binary, the peers are
//! dfget-sim processes (one per host), the origin is the test origin; all of them talk over
//! real sockets through the shaped links.
//!
//! Building it needs root and iproute2 (`ip`, `tc`). Where that is not so, [`Testbed::build`]
//! says why ([`Unavailable`]) and the caller skips; anything that fails once the network is up
//! panics. The testbed takes itself down when dropped, on SIGINT / SIGTERM / SIGHUP, and a run
//! killed outright is cleaned up by the next one.
//!
//! By concern: `net` (namespaces, veths, the bridge, addresses), `shaping` (rates and `tbf`),
//! `namespace_exec` (commands and threads inside a host), `cleanup` (taking it down), the hosts
//! (`origin_host`, `supernode_host`, `peers`, and `direct` for the curl baseline), `ingest`
//! (the CDN's fetch against curl on the supernode host), and
//! `figures` (what a run measured).

mod cleanup;
mod direct;
mod figures;
mod ingest;
mod namespace_exec;
mod net;
mod origin_host;
mod peers;
mod shaping;
mod supernode_host;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use figures::{process_cpu_secs, CpuUse, DirectRun, PeerRun, RunLinks, SwarmRun, CPU_BOUND_SHARE};
pub use ingest::IngestRun;
pub use net::{Host, HostRole, Unavailable, MAX_PEERS, SUBNET};
pub use origin_host::OriginHost;
pub use peers::{run_host_role_if_asked, PEER_ROLE_ARG};
pub use shaping::{Link, Rate};
pub use supernode_host::{ControlClient, SupernodeHost, CONTROL_PORT, DOWNLOAD_PORT};

use figures::{link_tx_bytes, CpuSample};
use net::Network;
use peers::PEER_ROLE_ENV;

use crate::origin::Origin;

/// What to build.
#[derive(Clone, Debug)]
pub struct TestbedSpec {
    /// Peer hosts (at most [`MAX_PEERS`]).
    pub peers: usize,
    pub origin: Link,
    pub supernode: Link,
    pub peer: Link,
    /// Where the supernode's cache and the downloaded files go (a directory per testbed is made
    /// inside and removed with it).
    pub scratch: PathBuf,
}

impl TestbedSpec {
    /// `peers` peer hosts and the supernode at 1 Gbit/s each way, the origin sending at
    /// `origin_up` (and receiving at 1 Gbit/s), scratch space in the temp directory.
    pub fn new(peers: usize, origin_up: Rate) -> TestbedSpec {
        let gigabit = Link::symmetric(Rate::gbit(1));
        TestbedSpec {
            peers,
            origin: Link { up: origin_up, down: Rate::gbit(1) },
            supernode: gigabit,
            peer: gigabit,
            scratch: std::env::temp_dir(),
        }
    }
}

/// The running testbed: the network and the origin; supernodes are started on it.
pub struct Testbed {
    // dropped in this order: the origin leaves its namespace before the network goes
    origin: OriginHost,
    net: Network,
    scratch: tempfile::TempDir,
}

impl Testbed {
    /// Builds the network of `spec` and starts the origin on it.
    pub fn build(spec: &TestbedSpec) -> Result<Testbed, Unavailable> {
        assert!(
            std::env::var_os(PEER_ROLE_ENV).is_none(),
            "this process is a testbed peer: its main must call testbed::run_host_role_if_asked() first"
        );
        assert!((1..=MAX_PEERS).contains(&spec.peers), "1 to {MAX_PEERS} peers, not {}", spec.peers);
        let mut hosts = vec![(HostRole::Origin, spec.origin), (HostRole::Supernode, spec.supernode)];
        hosts.extend((0..spec.peers).map(|i| (HostRole::Peer(i), spec.peer)));
        let net = Network::build(&hosts)?;
        let scratch = tempfile::Builder::new().prefix("sntb-").tempdir_in(&spec.scratch).expect("scratch directory");
        let origin_host = net.host(HostRole::Origin);
        let origin = OriginHost::start(&origin_host.namespace, origin_host.ip);
        Ok(Testbed { origin, net, scratch })
    }

    pub fn origin(&self) -> &Origin {
        self.origin.origin()
    }

    /// The URL of `path` at the origin, as the testbed's hosts reach it.
    pub fn origin_url(&self, path: &str) -> String {
        self.origin().url(path)
    }

    pub fn hosts(&self) -> &[Host] {
        &self.net.hosts
    }

    pub fn host(&self, role: HostRole) -> &Host {
        self.net.host(role)
    }

    /// Reshapes the link of `role` (e.g. another origin rate for the next case).
    pub fn set_link(&mut self, role: HostRole, link: Link) {
        let switch = self.net.switch.clone();
        self.net.host_mut(role).shape(&switch, link);
    }

    /// Starts the supernode binary at `exe` on the supernode host with a fresh cache and
    /// `extra_args`.
    pub fn start_supernode(&self, exe: &str, extra_args: &[&str]) -> SupernodeHost {
        let host = self.net.host(HostRole::Supernode);
        SupernodeHost::start(&host.namespace, host.ip, exe, self.scratch.path(), extra_args)
    }

    fn peer_hosts(&self, count: usize) -> Vec<Host> {
        assert!(count <= self.net.hosts.len() - 2, "the testbed has fewer than {count} peer hosts");
        (0..count).map(|i| self.net.host(HostRole::Peer(i)).clone()).collect()
    }

    fn run_links(&self) -> RunLinks {
        RunLinks { origin_up: self.host(HostRole::Origin).link.up, peer_down: self.host(HostRole::Peer(0)).link.down }
    }

    /// How long a run of `len` bytes may take before it counts as hung: 30 times the time the
    /// origin link needs for it on its own, and two minutes.
    fn deadline(&self, len: u64) -> Duration {
        self.run_links().origin_up.time_for(len) * 30 + Duration::from_secs(120)
    }

    /// The first `hosts` peer hosts download the origin's `path` through `supernode`, all
    /// starting at once; every peer must succeed (a failure panics with the peers' logs).
    pub fn run_swarm(&self, supernode: &SupernodeHost, path: &str, hosts: usize) -> SwarmRun {
        let peers = self.peer_hosts(hosts);
        let url = self.origin_url(path);
        let file_len = self.origin().content(path).len();
        let dir = tempfile::tempdir_in(self.scratch.path()).expect("a run directory");
        let sn_ns = self.host(HostRole::Supernode).namespace.clone();
        let link_sent = || {
            let peers_sent: u64 = peers.iter().map(|h| link_tx_bytes(&h.namespace)).sum();
            (link_tx_bytes(&sn_ns), peers_sent)
        };
        let (sn_before, peers_before) = link_sent();
        let origin_before = self.origin().stats(path).body_bytes;
        let sn_cpu_before = process_cpu_secs(supernode.pid());
        let cpu_before = CpuSample::now();
        let started_at_ms = unix_ms();
        let node = supernode.control().to_string();
        let outcomes = peers::run_peers(&peers, &node, &url, dir.path(), self.deadline(file_len));
        let supernode_cpu_secs = process_cpu_secs(supernode.pid()) - sn_cpu_before;
        let cpu = CpuSample::now().use_since(&cpu_before, supernode_cpu_secs);
        let origin_bytes = self.origin().stats(path).body_bytes - origin_before;
        let (sn_after, peers_after) = link_sent();
        let runs: Vec<PeerRun> = outcomes
            .into_iter()
            .map(|o| {
                let report = o.report.unwrap_or_else(|e| panic!("peer {}: {e}\n--- its stderr:\n{}", o.index, o.log));
                let after = |ms: u64| Duration::from_millis(ms.saturating_sub(started_at_ms));
                let last_written = report.stats.fetched.iter().map(|f| f.written_at_ms).max();
                let finished_after = after(report.finished_at_ms);
                let last_byte_after = last_written.map_or(finished_after, after);
                PeerRun { host: o.index, last_byte_after, finished_after, report, log: o.log, cpu_secs: o.cpu_secs }
            })
            .collect();
        let wall = runs.iter().map(|r| r.last_byte_after).max().unwrap_or_default();
        let verified = runs.iter().map(|r| r.finished_after).max().unwrap_or_default();
        SwarmRun {
            file_len,
            links: self.run_links(),
            wall,
            verified,
            peers: runs,
            origin_bytes,
            supernode_link_bytes: sn_after - sn_before,
            peer_link_bytes: peers_after - peers_before,
            cpu,
            supernode_cpu_secs,
        }
    }

    /// The first `hosts` peer hosts download the origin's `path` directly with curl, all at
    /// once; every download must succeed.
    pub fn run_direct(&self, path: &str, hosts: usize) -> DirectRun {
        let peers = self.peer_hosts(hosts);
        let url = self.origin_url(path);
        let file_len = self.origin().content(path).len();
        let dir = tempfile::tempdir_in(self.scratch.path()).expect("a run directory");
        let origin_before = self.origin().stats(path).body_bytes;
        let cpu_before = CpuSample::now();
        let (wall, outcomes) = direct::run_curls(&peers, &url, file_len, dir.path(), self.deadline(file_len));
        let cpu = CpuSample::now().use_since(&cpu_before, 0.0);
        let finished_after = outcomes
            .into_iter()
            .enumerate()
            .map(|(i, o)| o.unwrap_or_else(|e| panic!("direct download on peer host {i}: {e}")))
            .collect();
        let origin_bytes = self.origin().stats(path).body_bytes - origin_before;
        DirectRun { file_len, wall, finished_after, origin_bytes, cpu }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
