//! Several supernode processes in cluster mode on one Redis, on loopback: the fixture of the
//! cluster tests and benchmarks. Membership and syncs run on short intervals, so a node that
//! is killed leaves the live set within about two seconds.

use std::net::SocketAddr;
use std::time::Duration;

use crate::child::{supernode_command, ChildServer};
use crate::http::Control;
use crate::wait::eventually;

/// The test nodes' configuration: `extra` (TOML sections) and short cluster intervals (the
/// key prefix is the test's own).
fn config(prefix: &str, extra: &str) -> String {
    format!(
        "{extra}\n[cluster]\nmember_ttl = \"2s\"\nrenew_interval = \"300ms\"\nsync_interval = \"100ms\"\nkey_prefix = \"{prefix}\"\n"
    )
}

/// One node: the process (`None` once killed) and its home.
struct Node {
    server: Option<ChildServer>,
    control: SocketAddr,
    download: SocketAddr,
    _home: tempfile::TempDir,
}

pub struct ClusterNodes {
    nodes: Vec<Node>,
}

impl ClusterNodes {
    /// `n` nodes of the binary at `exe` on the Redis at `redis_url`, each on its own ports,
    /// with `extra` added to their configuration file; returns once every node sees all `n`
    /// in the live set.
    pub async fn start(exe: &str, n: usize, redis_url: &str, prefix: &str, extra: &str) -> ClusterNodes {
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            let home = tempfile::tempdir().expect("node home");
            let file = home.path().join("supernode.toml");
            std::fs::write(&file, config(prefix, extra)).expect("node config");
            let mut cmd = supernode_command(exe);
            cmd.args(["--port", "0", "--download-port", "0", "--cluster-redis-url", redis_url]);
            cmd.arg("--home-dir").arg(home.path().join("home")).arg("--config").arg(&file);
            let mut server = ChildServer::spawn(cmd);
            let (control, download) = server.wait_listening();
            nodes.push(Node { server: Some(server), control, download, _home: home });
        }
        let cluster = ClusterNodes { nodes };
        cluster.wait_members(n).await;
        cluster
    }

    /// Waits until every running node counts `n` live members.
    pub async fn wait_members(&self, n: usize) {
        for node in self.nodes.iter().filter(|node| node.server.is_some()) {
            let what = format!("node {} sees {n} members", node.control);
            eventually(Duration::from_secs(20), &what, || async {
                crate::metrics(node).await.get("dragonfly_supernode_cluster_members", &[]) == Some(n as f64)
            })
            .await;
        }
    }

    /// The `host:port` control addresses, for dfget's `--node` list.
    pub fn node_list(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.control.to_string()).collect()
    }

    pub fn control(&self, i: usize) -> SocketAddr {
        self.nodes[i].control
    }

    pub fn download(&self, i: usize) -> SocketAddr {
        self.nodes[i].download
    }

    /// The node that owns `task_id` while all are live.
    pub fn owner(&self, task_id: &str) -> usize {
        let ports: Vec<u16> = self.nodes.iter().map(|n| n.control.port()).collect();
        crate::protocol::cluster_owner(&ports, task_id)
    }

    /// SIGKILL node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut s) = self.nodes[i].server.take() {
            s.kill();
        }
    }

    /// Everything node `i` logged so far.
    pub fn log(&self, i: usize) -> String {
        self.nodes[i].server.as_ref().map(ChildServer::log).unwrap_or_default()
    }

    /// A handle on node `i`'s control API.
    pub fn node(&self, i: usize) -> impl Control + '_ {
        &self.nodes[i]
    }
}

impl Control for Node {
    fn control_addr(&self) -> SocketAddr {
        self.control
    }
}

impl Control for &Node {
    fn control_addr(&self) -> SocketAddr {
        self.control
    }
}
