//! What one simulated dfget run is told to do.
//!
//! Besides dfget's own options, the configuration carries the knobs tests need and dfget lacks:
//! fault injection, a cap on concurrent pieces, a slow-peer delay, overridable timeouts, and
//! the addresses the peer may use (loopback unless a network is allowed explicitly).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::scope::AddressScope;
use crate::sink::SinkGroup;

/// What one simulated dfget run does.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// Supernode control addresses as dfget's `--node` takes them: `host[:port][=weight]`
    /// (`:8002` is added when the port is missing), an entry may hold several separated by
    /// commas, and a node given twice is given twice the weight.
    pub nodes: Vec<String>,
    /// Seed of the shuffle that orders `nodes`; `None` = a random order, as dfget.
    pub node_order_seed: Option<u64>,
    /// This peer's IP: registered as `ip`, part of the cid, the uploader's bind address. Inside
    /// `scope`.
    pub ip: Ipv4Addr,
    /// The addresses the peer may use as its own, as supernodes and as piece sources; anything
    /// else is refused. Default: loopback only.
    pub scope: AddressScope,
    /// Uploader port; 0 = pick a free one in dfget's 15000–65000 range.
    pub port: u16,
    /// URL to download (`rawUrl` and `taskUrl`).
    pub url: String,
    /// Output file; also the uploader's data file (dfget's `.service` file).
    pub output: PathBuf,
    /// `--md5`: expected md5 of the file (the supernode also hashes it into the task id).
    pub md5: Option<String>,
    /// `--identifier` (sent only when there is no md5).
    pub identifier: Option<String>,
    /// `--header "K: V"` entries (sent in the registration; the supernode passes them to the origin).
    pub headers: Vec<String>,
    /// `--callsystem`.
    pub callsystem: Option<String>,
    /// Fault: the uploader serves every piece with one flipped payload byte (same length).
    pub corrupt_uploads: bool,
    /// Fault: the uploader sends every piece at this many bytes per second; 0: it accepts the
    /// request and never answers.
    pub upload_rate: Option<u64>,
    /// Fault: every piece handed out is reported as fetched without being fetched, so the
    /// uploader serves what the output does not hold.
    pub claim_unfetched: bool,
    /// Most pieces fetched at once. dfget starts one download per handed-out piece (the server's
    /// `peerDownLimit` bounds them); the default 16 never binds with a compliant server.
    pub piece_concurrency: usize,
    /// Whole-download timeout; `None` = dfget's `fileLength / 64 KiB + 10 s` (5 min if unknown).
    pub download_timeout: Option<Duration>,
    /// One piece download; `None` = dfget's `pieceSize / 64 KiB + 10 s`.
    pub piece_timeout: Option<Duration>,
    /// Control-plane request timeout (dfget: 5 s).
    pub control_timeout: Duration,
    /// Extra pause after each fetched piece before it is reported (a slow peer; default none).
    pub piece_delay: Duration,
    /// Host name sent in the registration; `None` = this host's name.
    pub host_name: Option<String>,
    /// `None`: the output keeps the whole file, as dfget's does. A group: the output is a
    /// [`SinkGroup`] member's, hashed as it arrives and given back to the disk piece by piece
    /// once every member holds it (for files larger than the disk).
    pub sink: Option<Arc<SinkGroup>>,
}

impl PeerConfig {
    /// A loopback peer (`127.0.0.1`, uploader on a free port) of the supernode `node`
    /// downloading `url` to `output`.
    pub fn new(node: impl Into<String>, url: impl Into<String>, output: impl Into<PathBuf>) -> Self {
        Self::with_nodes([node], url, output)
    }

    /// [`PeerConfig::new`] with a list of supernodes (see [`PeerConfig::nodes`]).
    pub fn with_nodes(
        nodes: impl IntoIterator<Item = impl Into<String>>,
        url: impl Into<String>,
        output: impl Into<PathBuf>,
    ) -> Self {
        PeerConfig {
            nodes: nodes.into_iter().map(Into::into).collect(),
            node_order_seed: None,
            ip: Ipv4Addr::LOCALHOST,
            scope: AddressScope::loopback(),
            port: 0,
            url: url.into(),
            output: output.into(),
            md5: None,
            identifier: None,
            headers: Vec::new(),
            callsystem: None,
            corrupt_uploads: false,
            upload_rate: None,
            claim_unfetched: false,
            piece_concurrency: 16,
            download_timeout: None,
            piece_timeout: None,
            control_timeout: Duration::from_secs(5),
            piece_delay: Duration::ZERO,
            host_name: None,
            sink: None,
        }
    }
}

/// `(host, host:port)` of a supernode address, dfget's default port 8002 added when missing.
pub(crate) fn split_node(node: &str) -> (String, String) {
    match node.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !p.is_empty() && !h.ends_with(':') => (h.to_string(), node.to_string()),
        _ => (node.to_string(), format!("{node}:8002")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes() {
        assert_eq!(split_node("127.0.0.1:8002"), ("127.0.0.1".into(), "127.0.0.1:8002".into()));
        assert_eq!(split_node("localhost"), ("localhost".into(), "localhost:8002".into()));
    }
}
