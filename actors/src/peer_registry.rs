//! `PeerRegistry`: every host that registered, keyed by its stable peer ID (§16 P6).
//!
//! A host registering again is the same peer: port and version are updated and
//! `created` is kept. The super peer (the supernode itself) is added at start
//! and can be neither deleted through the API nor collected.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Local};

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

struct PeerEntry {
    info: PeerInfo,
    is_super: bool,
    last_seen: Instant,
}

pub struct PeerRegistry {
    peers: HashMap<PeerId, PeerEntry>,
    metrics: Arc<Metrics>,
    max_peers: usize,
}

impl PeerRegistry {
    pub fn new(metrics: Arc<Metrics>, max_peers: usize) -> Self {
        PeerRegistry { peers: HashMap::new(), metrics, max_peers }
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

/// Registers (or refreshes) a host. Reply: its info and whether it was new.
#[derive(Message, Debug)]
#[rtype(result = "Result<(PeerInfo, bool), PeerError>")]
pub struct RegisterPeer {
    pub host_name: String,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub version: String,
    /// The supernode itself (§2.5).
    pub is_super: bool,
}

impl Handler<RegisterPeer> for PeerRegistry {
    type Result = Result<(PeerInfo, bool), PeerError>;

    #[tracing::instrument(name = "PeerRegistry::register", skip(self, _ctx), fields(host = %msg.host_name, ip = %msg.ip))]
    fn handle(&mut self, msg: RegisterPeer, _ctx: &mut Context<Self>) -> Self::Result {
        let ip = msg.ip.to_string();
        let id = if msg.is_super {
            PeerId::for_supernode(&msg.host_name, &ip)
        } else {
            PeerId::for_host(&msg.host_name, &ip)
        };
        if let Some(entry) = self.peers.get_mut(&id) {
            entry.info.port = msg.port;
            entry.info.version = msg.version;
            entry.last_seen = Instant::now();
            return Ok((entry.info.clone(), false));
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
            created: Local::now(),
        };
        self.metrics.peers.with_label_values(&[&ip]).inc();
        self.peers.insert(id, PeerEntry { info: info.clone(), is_super: msg.is_super, last_seen: Instant::now() });
        Ok((info, true))
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
        match self.peers.get(&msg.0) {
            None => Err(PeerError::NotFound(msg.0.to_string())),
            Some(e) if e.is_super => Err(PeerError::SuperPeer(msg.0.to_string())),
            Some(_) => {
                let removed = self.peers.remove(&msg.0).map(|e| e.info);
                if let Some(info) = &removed {
                    self.metrics.peers.with_label_values(&[&info.ip.to_string()]).dec();
                }
                removed.ok_or_else(|| PeerError::NotFound(msg.0.to_string()))
            }
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
        let now = Instant::now();
        let gone: Vec<PeerId> = self
            .peers
            .values()
            .filter(|e| !e.is_super && !msg.keep.contains(&e.info.id) && now.duration_since(e.last_seen) >= msg.idle)
            .map(|e| e.info.id.clone())
            .collect();
        for id in &gone {
            if let Some(e) = self.peers.remove(id) {
                self.metrics.peers.with_label_values(&[&e.info.ip.to_string()]).dec();
            }
        }
        MessageResult(gone)
    }
}

/// Number of peers, for the gauges and the ops page.
#[derive(Message, Debug)]
#[rtype(result = "usize")]
pub struct CountPeers;

impl Handler<CountPeers> for PeerRegistry {
    type Result = usize;
    fn handle(&mut self, _msg: CountPeers, _ctx: &mut Context<Self>) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(host: &str, ip: [u8; 4], port: u16) -> RegisterPeer {
        RegisterPeer { host_name: host.into(), ip: Ipv4Addr::from(ip), port, version: "1.0.6".into(), is_super: false }
    }

    #[actix::test]
    async fn same_host_same_id_and_sorting() {
        let addr = PeerRegistry::new(Arc::new(Metrics::new()), 100).start();
        let (a, new_a) = addr.send(reg("b-host", [10, 0, 0, 2], 20000)).await.unwrap().unwrap();
        let (a2, new_a2) = addr.send(reg("b-host", [10, 0, 0, 2], 20001)).await.unwrap().unwrap();
        assert!(new_a && !new_a2);
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
}
