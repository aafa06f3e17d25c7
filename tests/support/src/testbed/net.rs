//! The network: one namespace per host, each with an `eth0` whose other end is a port of a
//! bridge in a switch namespace of its own, all on one private /24 that exists only inside
//! these namespaces. Nothing is created in the namespace this process runs in.

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::cleanup::{new_stem, remove_leftovers, Inventory};
use super::namespace_exec::{ip, run_tool};
use super::shaping::{shape_egress, Link};

/// The testbed's network; its addresses exist only inside the testbed's namespaces.
pub const SUBNET: &str = "10.77.0.0/24";
const SUBNET_BASE: [u8; 3] = [10, 77, 0];
const SUBNET_PREFIX_LEN: u8 = 24;
/// Host addresses of peers start here (.2 is the origin, .3 the supernode).
const FIRST_PEER_OCTET: u8 = 10;
/// Peers that fit in the /24.
pub const MAX_PEERS: usize = 240;

/// What a host is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostRole {
    Origin,
    Supernode,
    /// The i-th peer host, from 0.
    Peer(usize),
}

impl HostRole {
    fn last_octet(self) -> u8 {
        match self {
            HostRole::Origin => 2,
            HostRole::Supernode => 3,
            HostRole::Peer(i) => FIRST_PEER_OCTET + i as u8,
        }
    }

    fn short_name(self) -> String {
        match self {
            HostRole::Origin => "origin".into(),
            HostRole::Supernode => "sn".into(),
            HostRole::Peer(i) => format!("p{i}"),
        }
    }
}

impl fmt::Display for HostRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostRole::Origin => write!(f, "origin"),
            HostRole::Supernode => write!(f, "supernode"),
            HostRole::Peer(i) => write!(f, "peer {i}"),
        }
    }
}

/// One host: its namespace, address and link.
#[derive(Clone, Debug)]
pub struct Host {
    pub role: HostRole,
    /// The network namespace (`ip netns exec <namespace> …` runs a command on the host).
    pub namespace: String,
    pub ip: Ipv4Addr,
    pub link: Link,
    /// The switch port the host's `eth0` is plugged into (a device in the switch namespace).
    switch_port: String,
}

/// The device every host has on the network.
pub(crate) const HOST_DEV: &str = "eth0";

impl Host {
    /// Holds the host's link to `link` from now on.
    pub(crate) fn shape(&mut self, switch: &str, link: Link) {
        shape_egress(&self.namespace, HOST_DEV, link.up).unwrap_or_else(|e| panic!("{e}"));
        shape_egress(switch, &self.switch_port, link.down).unwrap_or_else(|e| panic!("{e}"));
        self.link = link;
    }
}

/// Why a testbed cannot be built on this machine (it is then skipped, with this as the reason).
#[derive(Debug, Clone, PartialEq)]
pub enum Unavailable {
    NotRoot,
    /// `ip` or `tc` (iproute2) is missing.
    MissingTool(String),
    /// The kernel or the sandbox refused a namespace, veth, bridge or `tbf` qdisc.
    Refused(String),
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::NotRoot => write!(f, "not root: network namespaces need CAP_NET_ADMIN and CAP_SYS_ADMIN"),
            Unavailable::MissingTool(why) => write!(f, "iproute2 is missing ({why}); apt-get install iproute2"),
            Unavailable::Refused(why) => write!(f, "this machine refused to build the network: {why}"),
        }
    }
}

/// The hosts and the switch, taken down when dropped.
pub(crate) struct Network {
    pub(crate) switch: String,
    pub(crate) hosts: Vec<Host>,
    stem: String,
    inventory: Arc<Inventory>,
}

impl Network {
    /// The address of `host` (before the host is built).
    pub(crate) fn address(role: HostRole) -> Ipv4Addr {
        let [a, b, c] = SUBNET_BASE;
        Ipv4Addr::new(a, b, c, role.last_octet())
    }

    /// Builds the switch and the hosts, each shaped to its link. What fails before the first
    /// host is shaped means the machine cannot do it ([`Unavailable`]); what fails later panics.
    pub(crate) fn build(hosts: &[(HostRole, Link)]) -> Result<Network, Unavailable> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(Unavailable::NotRoot);
        }
        for tool in ["ip", "tc"] {
            run_tool(tool, &["-V"]).map_err(Unavailable::MissingTool)?;
        }
        remove_leftovers();
        let stem = new_stem();
        let mut net = Network { switch: format!("{stem}-sw"), hosts: Vec::new(), stem, inventory: Inventory::new() };
        net.inventory.add_namespace(&net.switch);
        let switch = net.switch.clone();
        let refused = |e: String| Unavailable::Refused(e);
        run_tool("ip", &["netns", "add", &switch]).map_err(refused)?;
        run_tool("ip", &["-n", &switch, "link", "add", "br0", "type", "bridge"]).map_err(refused)?;
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        for (at, (role, link)) in hosts.iter().enumerate() {
            let host = net.add_host(*role, *link);
            let mut host = if at == 0 { host.map_err(refused)? } else { host.unwrap_or_else(|e| panic!("{e}")) };
            if at == 0 {
                shape_egress(&host.namespace, HOST_DEV, link.up).map_err(refused)?;
            }
            host.shape(&switch, *link);
            net.hosts.push(host);
        }
        Ok(net)
    }

    /// A host's namespace, plugged into the switch, addressed and up (not shaped to `link` yet).
    fn add_host(&self, role: HostRole, link: Link) -> Result<Host, String> {
        let namespace = format!("{}-{}", self.stem, role.short_name());
        let ip_addr = Network::address(role);
        let switch_port = format!("h{}", role.last_octet());
        self.inventory.add_namespace(&namespace);
        run_tool("ip", &["netns", "add", &namespace])?;
        let (sw, ns) = (self.switch.as_str(), namespace.as_str());
        let cidr = format!("{ip_addr}/{SUBNET_PREFIX_LEN}");
        for args in [
            vec!["-n", sw, "link", "add", &switch_port, "type", "veth", "peer", "name", HOST_DEV, "netns", ns],
            vec!["-n", sw, "link", "set", &switch_port, "master", "br0", "up"],
            vec!["-n", ns, "addr", "add", &cidr, "dev", HOST_DEV],
            vec!["-n", ns, "link", "set", HOST_DEV, "up"],
            vec!["-n", ns, "link", "set", "lo", "up"],
        ] {
            run_tool("ip", &args)?;
        }
        Ok(Host { role, namespace, ip: ip_addr, link, switch_port })
    }

    pub(crate) fn host(&self, role: HostRole) -> &Host {
        self.hosts.iter().find(|h| h.role == role).unwrap_or_else(|| panic!("the testbed has no {role}"))
    }

    pub(crate) fn host_mut(&mut self, role: HostRole) -> &mut Host {
        self.hosts.iter_mut().find(|h| h.role == role).unwrap_or_else(|| panic!("the testbed has no {role}"))
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.inventory.take_down();
    }
}
