//! `PeerRegistry`: every host that registered, keyed by its stable peer ID.
//!
//! A host registering again is the same peer (`<hostName>-<IP>`): port and version are
//! updated and `created` is kept. The super peer (the supernode itself) is added at start
//! and can be neither deleted through the API nor collected.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Local};

use crate::clock::SharedClock;
use crate::ids::PeerId;
use crate::metrics::Metrics;

/// One registered host.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerInfo {
    pub id: PeerId,
    pub ip: Ipv4Addr,
    pub host_name: String,
    pub port: u16,
    pub version: String,
    pub created: DateTime<Local>,
}

/// A field of `PeerInfo` to sort by; names as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerSortKey {
    Id,
    Ip,
    Created,
    HostName,
    Port,
    Version,
}

impl FromStr for PeerSortKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "id" => PeerSortKey::Id,
            "ip" => PeerSortKey::Ip,
            "created" => PeerSortKey::Created,
            "hostname" => PeerSortKey::HostName,
            "port" => PeerSortKey::Port,
            "version" => PeerSortKey::Version,
            _ => {
                return Err(format!("unknown sort key {s:?}: expected one of ID, IP, created, hostName, port, version"))
            }
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SortDirection {
    #[default]
    Asc,
    Desc,
}

impl FromStr for SortDirection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "ASC" => Ok(SortDirection::Asc),
            "DESC" => Ok(SortDirection::Desc),
            _ => Err(format!("invalid sortDirect {s:?}: expected ASC or DESC")),
        }
    }
}

fn compare(a: &PeerInfo, b: &PeerInfo, key: PeerSortKey) -> Ordering {
    match key {
        PeerSortKey::Id => a.id.cmp(&b.id),
        PeerSortKey::Ip => a.ip.cmp(&b.ip),
        PeerSortKey::Created => a.created.cmp(&b.created),
        PeerSortKey::HostName => a.host_name.cmp(&b.host_name),
        PeerSortKey::Port => a.port.cmp(&b.port),
        PeerSortKey::Version => a.version.cmp(&b.version),
    }
}

/// What kind of host a peer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerKind {
    /// A dfget host.
    Client,
    /// The supernode itself, which serves the CDN pieces.
    Supernode,
}

struct PeerEntry {
    info: PeerInfo,
    kind: PeerKind,
    last_seen: Instant,
    /// Which registration last touched the entry (see [`RetractPeer`]).
    stamp: u64,
}

pub struct PeerRegistry {
    peers: HashMap<PeerId, PeerEntry>,
    metrics: Arc<Metrics>,
    max_peers: usize,
    clock: SharedClock,
    next_stamp: u64,
}

impl PeerRegistry {
    pub fn new(metrics: Arc<Metrics>, max_peers: usize, clock: SharedClock) -> Self {
        PeerRegistry { peers: HashMap::new(), metrics, max_peers, clock, next_stamp: 1 }
    }

    fn remove(&mut self, id: &PeerId) -> Option<PeerInfo> {
        let e = self.peers.remove(id)?;
        let ip = e.info.ip.to_string();
        let on_this_ip = self.metrics.peers.with_label_values(&[&ip]);
        on_this_ip.dec();
        if on_this_ip.get() <= 0 {
            self.metrics.forget_peer(&ip);
        }
        Some(e.info)
    }
}

impl Actor for PeerRegistry {
    type Context = Context<Self>;
}

/// Errors of the peer registry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PeerError {
    #[error("peer {0} not found")]
    NotFound(String),
    #[error("peer {0} is the supernode itself and cannot be removed")]
    SuperPeer(String),
    #[error("too many peers: the limit is {0}")]
    TooMany(usize),
}

/// Registers (or refreshes) a host.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<PeerRegistration, PeerError>")]
pub struct RegisterPeer {
    pub host_name: String,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub version: String,
    pub kind: PeerKind,
}

/// Whether a registration created the peer, which decides what undoing it means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registered {
    /// Made by this registration; `stamp` identifies it for [`RetractPeer`].
    New { stamp: u64 },
    /// The host was known: only its port and version changed.
    Refreshed,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PeerRegistration {
    pub info: PeerInfo,
    pub registered: Registered,
}

impl Handler<RegisterPeer> for PeerRegistry {
    type Result = Result<PeerRegistration, PeerError>;

    #[tracing::instrument(name = "PeerRegistry::register", skip(self, _ctx), fields(host = %msg.host_name, ip = %msg.ip))]
    fn handle(&mut self, msg: RegisterPeer, _ctx: &mut Context<Self>) -> Self::Result {
        let ip = msg.ip.to_string();
        let id = match msg.kind {
            PeerKind::Client => PeerId::for_host(&msg.host_name, &ip),
            PeerKind::Supernode => PeerId::for_supernode(&msg.host_name, &ip),
        };
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        let now = self.clock.now();
        if let Some(entry) = self.peers.get_mut(&id) {
            entry.info.port = msg.port;
            entry.info.version = msg.version;
            entry.last_seen = now;
            entry.stamp = stamp;
            return Ok(PeerRegistration { info: entry.info.clone(), registered: Registered::Refreshed });
        }
        if self.peers.len() >= self.max_peers {
            return Err(PeerError::TooMany(self.max_peers));
        }
        let info = PeerInfo {
            id: id.clone(),
            ip: msg.ip,
            host_name: msg.host_name,
            port: msg.port,
            version: msg.version,
            created: DateTime::<Local>::from(self.clock.wall()),
        };
        self.metrics.peers.with_label_values(&[&ip]).inc();
        self.peers.insert(id, PeerEntry { info: info.clone(), kind: msg.kind, last_seen: now, stamp });
        Ok(PeerRegistration { info, registered: Registered::New { stamp } })
    }
}

/// Undoes a registration that created a peer, when a later step of it failed. A peer that
/// registered again since then is left alone: that registration still needs it.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct RetractPeer {
    pub id: PeerId,
    pub stamp: u64,
}

impl Handler<RetractPeer> for PeerRegistry {
    type Result = ();
    fn handle(&mut self, msg: RetractPeer, _ctx: &mut Context<Self>) {
        if self.peers.get(&msg.id).is_some_and(|e| e.stamp == msg.stamp && e.kind == PeerKind::Client) {
            self.remove(&msg.id);
        }
    }
}

#[derive(Message, Debug)]
#[rtype(result = "Result<PeerInfo, PeerError>")]
pub struct GetPeer(pub PeerId);

impl Handler<GetPeer> for PeerRegistry {
    type Result = Result<PeerInfo, PeerError>;
    fn handle(&mut self, msg: GetPeer, _ctx: &mut Context<Self>) -> Self::Result {
        self.peers.get(&msg.0).map(|e| e.info.clone()).ok_or_else(|| PeerError::NotFound(msg.0.to_string()))
    }
}

/// The known ones of several peers, in one message.
#[derive(Message, Debug)]
#[rtype(result = "HashMap<PeerId, PeerInfo>")]
pub struct GetPeers(pub Vec<PeerId>);

impl Handler<GetPeers> for PeerRegistry {
    type Result = MessageResult<GetPeers>;
    fn handle(&mut self, msg: GetPeers, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(
            msg.0.into_iter().filter_map(|id| Some((id.clone(), self.peers.get(&id)?.info.clone()))).collect(),
        )
    }
}

/// A page of peers sorted by `sort` keys (later keys break ties).
#[derive(Message, Debug, Default)]
#[rtype(result = "Vec<PeerInfo>")]
pub struct ListPeers {
    pub page_num: usize,
    /// 0 = all.
    pub page_size: usize,
    pub sort: Vec<PeerSortKey>,
    pub direction: SortDirection,
}

impl Handler<ListPeers> for PeerRegistry {
    type Result = MessageResult<ListPeers>;
    fn handle(&mut self, msg: ListPeers, _ctx: &mut Context<Self>) -> Self::Result {
        let mut all: Vec<PeerInfo> = self.peers.values().map(|e| e.info.clone()).collect();
        let keys = if msg.sort.is_empty() { vec![PeerSortKey::Created] } else { msg.sort };
        all.sort_by(|a, b| {
            let ord = keys.iter().fold(Ordering::Equal, |acc, k| acc.then_with(|| compare(a, b, *k)));
            let ord = ord.then_with(|| a.id.cmp(&b.id));
            match msg.direction {
                SortDirection::Asc => ord,
                SortDirection::Desc => ord.reverse(),
            }
        });
        if msg.page_size == 0 {
            return MessageResult(all);
        }
        let start = msg.page_num.saturating_mul(msg.page_size);
        MessageResult(all.into_iter().skip(start).take(msg.page_size).collect())
    }
}

#[derive(Message, Debug)]
#[rtype(result = "Result<PeerInfo, PeerError>")]
pub struct DeletePeer(pub PeerId);

impl Handler<DeletePeer> for PeerRegistry {
    type Result = Result<PeerInfo, PeerError>;
    fn handle(&mut self, msg: DeletePeer, _ctx: &mut Context<Self>) -> Self::Result {
        match self.peers.get(&msg.0).map(|e| e.kind) {
            None => Err(PeerError::NotFound(msg.0.to_string())),
            Some(PeerKind::Supernode) => Err(PeerError::SuperPeer(msg.0.to_string())),
            Some(PeerKind::Client) => self.remove(&msg.0).ok_or_else(|| PeerError::NotFound(msg.0.to_string())),
        }
    }
}

/// Removes non-super peers idle for longer than `idle` and without an active client in `keep`.
#[derive(Message, Debug)]
#[rtype(result = "Vec<PeerId>")]
pub struct CollectIdlePeers {
    pub idle: Duration,
    pub keep: std::collections::HashSet<PeerId>,
}

impl Handler<CollectIdlePeers> for PeerRegistry {
    type Result = MessageResult<CollectIdlePeers>;
    fn handle(&mut self, msg: CollectIdlePeers, _ctx: &mut Context<Self>) -> Self::Result {
        let now = self.clock.now();
        let gone: Vec<PeerId> = self
            .peers
            .values()
            .filter(|e| e.kind == PeerKind::Client && !msg.keep.contains(&e.info.id))
            .filter(|e| now.duration_since(e.last_seen) >= msg.idle)
            .map(|e| e.info.id.clone())
            .collect();
        for id in &gone {
            self.remove(id);
        }
        MessageResult(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::clock::{ManualClock, SharedClock};

    fn reg(host: &str, ip: [u8; 4], port: u16) -> RegisterPeer {
        RegisterPeer {
            host_name: host.into(),
            ip: Ipv4Addr::from(ip),
            port,
            version: "1.0.6".into(),
            kind: PeerKind::Client,
        }
    }

    fn registry(clock: SharedClock) -> Addr<PeerRegistry> {
        PeerRegistry::new(Arc::new(Metrics::new()), 100, clock).start()
    }

    #[actix::test]
    async fn same_host_same_id_and_sorting() {
        let addr = registry(ManualClock::new());
        let a = addr.send(reg("b-host", [10, 0, 0, 2], 20000)).await.unwrap().unwrap();
        let a2 = addr.send(reg("b-host", [10, 0, 0, 2], 20001)).await.unwrap().unwrap();
        assert!(matches!(a.registered, Registered::New { .. }));
        assert_eq!(a2.registered, Registered::Refreshed);
        let (a, a2) = (a.info, a2.info);
        assert_eq!(a.id, a2.id);
        assert_eq!(a2.port, 20001);
        addr.send(reg("a-host", [10, 0, 0, 3], 20000)).await.unwrap().unwrap();
        let list = addr
            .send(ListPeers {
                sort: vec![PeerSortKey::Port, PeerSortKey::HostName],
                direction: SortDirection::Desc,
                ..Default::default()
            })
            .await
            .unwrap();
        let names: Vec<_> = list.iter().map(|p| p.host_name.as_str()).collect();
        assert_eq!(names, ["b-host", "a-host"]);
        assert!(addr.send(DeletePeer(PeerId::from_raw("nope"))).await.unwrap().is_err());
    }

    #[actix::test]
    async fn a_retracted_registration_leaves_a_peer_that_registered_again() {
        let addr = registry(ManualClock::new());
        let first = addr.send(reg("h", [10, 0, 0, 9], 20000)).await.unwrap().unwrap();
        let Registered::New { stamp } = first.registered else { panic!("new peer") };
        addr.send(reg("h", [10, 0, 0, 9], 20000)).await.unwrap().unwrap();
        addr.send(RetractPeer { id: first.info.id.clone(), stamp }).await.unwrap();
        assert!(addr.send(GetPeer(first.info.id.clone())).await.unwrap().is_ok(), "refreshed since: kept");

        let other = addr.send(reg("g", [10, 0, 0, 8], 20000)).await.unwrap().unwrap();
        let Registered::New { stamp } = other.registered else { panic!("new peer") };
        addr.send(RetractPeer { id: other.info.id.clone(), stamp }).await.unwrap();
        assert!(addr.send(GetPeer(other.info.id)).await.unwrap().is_err(), "retracted");
    }

    #[actix::test]
    async fn idle_peers_are_collected_on_the_clock() {
        let clock = ManualClock::new();
        let addr = registry(clock.clone());
        let idle = addr.send(reg("idle", [10, 0, 0, 2], 20000)).await.unwrap().unwrap().info.id;
        let kept = addr.send(reg("kept", [10, 0, 0, 3], 20000)).await.unwrap().unwrap().info.id;
        let collect = |keep: &PeerId| CollectIdlePeers { idle: Duration::from_secs(600), keep: [keep.clone()].into() };
        clock.advance(Duration::from_secs(599));
        assert!(addr.send(collect(&kept)).await.unwrap().is_empty());
        clock.advance(Duration::from_secs(1));
        assert_eq!(addr.send(collect(&kept)).await.unwrap(), vec![idle]);
        assert!(addr.send(GetPeer(kept)).await.unwrap().is_ok(), "a peer with an active client stays");
    }
}
