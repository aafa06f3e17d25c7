//! Simulated dfget peers (`dfget-sim`) for P2P scenarios: each runs its own uploader on a
//! distinct 127.0.0.1 port, so peers serve each other pieces as dfget's uploaders do.

use dfget_sim::{Peer, PeerConfig, Report, SimError};
use futures_util::future::join_all;

/// A peer of `config` with its uploader running.
pub fn start_peer(config: PeerConfig) -> Peer {
    let p = Peer::new(config).expect("peer config");
    p.start_uploader().expect("uploader starts");
    p
}

/// Peers that download together.
pub struct Swarm {
    peers: Vec<Peer>,
}

impl Swarm {
    /// `n` peers, the i-th configured by `config(i)`, each with its uploader on its own port.
    pub fn start(n: usize, config: impl FnMut(usize) -> PeerConfig) -> Swarm {
        let peers: Vec<Peer> = (0..n).map(config).map(start_peer).collect();
        let mut ports: Vec<u16> = peers.iter().filter_map(Peer::uploader_port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), n, "distinct uploader ports");
        Swarm { peers }
    }

    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// Every peer downloads at the same time; the results in peer order.
    pub async fn download(&self) -> Vec<Result<Report, SimError>> {
        join_all(self.peers.iter().map(Peer::download)).await
    }

    /// Stops every peer's uploader.
    pub async fn stop_uploaders(&self) {
        for p in &self.peers {
            p.stop_uploader().await;
        }
    }
}
