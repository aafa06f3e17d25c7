//! What the scheduler knows of each task and each of its clients.
//!
//! State is kept per client (CID), not per peer: several dfget runs on one host are separate
//! sources, each with its own uploader address, held pieces and failures.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::net::Ipv4Addr;
use std::time::Instant;

use indexmap::IndexSet;

use super::SchedError;
use crate::cluster::view::NodeId;
use crate::events::CdnHost;
use crate::failure::CdnFailure;
use crate::ids::{ClientId, PeerId};
use crate::piece::{PieceDigest, PieceRange};
use crate::status::CdnStatus;

/// Where a client fetches a piece from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    Cdn,
    Peer(ClientId),
}

#[derive(Debug, Clone)]
pub(super) struct Running {
    pub source: Source,
    pub since: Instant,
    /// The uploader the piece counts against: kept here because the source may be gone from
    /// the task (collected, or another run on the same address) by the time it is released.
    pub upload: Option<UploaderAddr>,
}

/// Where one dfget run is, for the `dfgettasks` gauge (Go's dfget task statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DfgetState {
    Waiting,
    Running,
    Success,
    Failed,
}

impl DfgetState {
    pub fn as_str(self) -> &'static str {
        match self {
            DfgetState::Waiting => "WAITING",
            DfgetState::Running => "RUNNING",
            DfgetState::Success => "SUCCESS",
            DfgetState::Failed => "FAILED",
        }
    }
}

/// What a client offers other clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRole {
    /// No uploader (port 0) or the `cdn` pattern: it only downloads.
    DownloadOnly,
    /// Serves the pieces it holds.
    Peer,
    /// Also offers its whole copy as a seed of the task's URL (dfdaemon's streaming mode).
    Seed,
}

/// Whether a client's uploader is still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Uploader {
    Up,
    /// Gone since then: `/peer/service/down`, or a download-only client that finished.
    Down {
        since: Instant,
    },
}

/// Which supernode a client registered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Home {
    /// This one: it polls here, and this node publishes it.
    Local,
    /// Another node of the cluster, which publishes it; here it is only a source.
    Remote(NodeId),
}

/// The uploader address: upload limits count per (IP, port).
pub(super) type UploaderAddr = (Ipv4Addr, u16);

/// One dfget run downloading one task.
#[derive(Debug, Clone)]
pub(super) struct Client {
    pub peer_id: PeerId,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub path: String,
    /// The address the client used to reach us: the `peerIp` of its CDN pieces.
    pub super_node_ip: String,
    pub role: ClientRole,
    pub uploader: Uploader,
    pub have: Vec<bool>,
    pub have_count: u64,
    pub running: HashMap<u64, Running>,
    /// Sources that failed this client once; never used for it again.
    pub bad_sources: HashSet<ClientId>,
    pub failures: u32,
    pub source_errors: u32,
    pub last_seen: Instant,
    pub call_system: String,
    pub state: DfgetState,
    pub home: Home,
}

impl Client {
    /// A client that has just registered: nothing held, nothing failed.
    pub fn new(peer_id: PeerId, addr: UploaderAddr, path: String, role: ClientRole, now: Instant) -> Client {
        Client {
            peer_id,
            ip: addr.0,
            port: addr.1,
            path,
            super_node_ip: String::new(),
            role,
            uploader: Uploader::Up,
            have: Vec::new(),
            have_count: 0,
            running: HashMap::new(),
            bad_sources: HashSet::new(),
            failures: 0,
            source_errors: 0,
            last_seen: now,
            call_system: String::new(),
            state: DfgetState::Waiting,
            home: Home::Local,
        }
    }

    pub fn is_local(&self) -> bool {
        self.home == Home::Local
    }

    pub fn addr(&self) -> UploaderAddr {
        (self.ip, self.port)
    }

    pub fn serves(&self) -> bool {
        self.role != ClientRole::DownloadOnly
    }

    /// It uploads at all and has not failed as a source `elimination` times.
    pub fn is_usable_source(&self, elimination: u32) -> bool {
        self.serves() && self.source_errors < elimination
    }

    /// A live seed: counted against the seeds allowed per URL and reported by heartbeats.
    pub fn is_seed(&self) -> bool {
        self.role == ClientRole::Seed && self.uploader == Uploader::Up
    }

    pub fn is_down(&self) -> bool {
        matches!(self.uploader, Uploader::Down { .. })
    }

    pub fn mark_down(&mut self, now: Instant) {
        if self.uploader == Uploader::Up {
            self.uploader = Uploader::Down { since: now };
        }
    }

    pub fn holds(&self, n: u64) -> bool {
        self.have.get(n as usize).copied().unwrap_or(false)
    }

    pub fn mark_have(&mut self, n: u64) -> bool {
        let i = n as usize;
        if self.have.len() <= i {
            self.have.resize(i + 1, false);
        }
        if self.have[i] {
            return false;
        }
        self.have[i] = true;
        self.have_count += 1;
        true
    }
}

/// One task as the scheduler sees it.
#[derive(Debug, Clone)]
pub(super) struct TaskState {
    pub run_id: u64,
    pub task_url: String,
    pub status: CdnStatus,
    pub paused: bool,
    pub failure: Option<CdnFailure>,
    /// Source length, once known.
    pub http_len: Option<u64>,
    pub piece_size: u64,
    pub piece_total: u64,
    pub file_length: u64,
    pub real_md5: String,
    /// The digest of each piece the CDN has on disk.
    pub cdn_pieces: Vec<Option<PieceDigest>>,
    pub holders: Vec<IndexSet<ClientId>>,
    pub clients: HashMap<ClientId, Client>,
    /// Pieces the supernode is serving right now.
    pub cdn_load: u32,
    /// Of those, how many copies of each piece.
    pub cdn_copies: HashMap<u64, u32>,
    /// Copies of a piece each peer is sending right now, by (piece, holder).
    pub piece_uploads: HashMap<(u64, ClientId), u32>,
    pub last_access: Instant,
    /// Where its CDN pieces are served.
    pub cdn_host: CdnHost,
}

impl TaskState {
    /// The supernode started (`true`) or stopped sending a copy of piece `n`.
    pub fn count_cdn_copy(&mut self, n: u64, started: bool) {
        if started {
            self.cdn_load += 1;
            *self.cdn_copies.entry(n).or_default() += 1;
            return;
        }
        self.cdn_load = self.cdn_load.saturating_sub(1);
        count_down(&mut self.cdn_copies, n);
    }

    /// A copy of piece `n` from holder `src` started (`started`) or ended.
    pub fn count_piece_upload(&mut self, n: u64, src: &ClientId, started: bool) {
        let key = (n, src.clone());
        if started {
            *self.piece_uploads.entry(key).or_default() += 1;
        } else {
            count_down(&mut self.piece_uploads, key);
        }
    }

    /// Copies of piece `n` that holder `src` is sending now.
    pub fn piece_uploads_of(&self, n: u64, src: &ClientId) -> u32 {
        self.piece_uploads.get(&(n, src.clone())).copied().unwrap_or(0)
    }

    /// Nothing is being served by the supernode any more (a new run, a CDN that moved).
    pub fn reset_cdn_load(&mut self) {
        self.cdn_load = 0;
        self.cdn_copies.clear();
    }

    pub fn new(run_id: u64, now: Instant) -> Self {
        TaskState {
            run_id,
            task_url: String::new(),
            status: CdnStatus::Waiting,
            paused: false,
            failure: None,
            http_len: None,
            piece_size: 0,
            piece_total: 0,
            file_length: 0,
            real_md5: String::new(),
            cdn_pieces: Vec::new(),
            holders: Vec::new(),
            clients: HashMap::new(),
            cdn_load: 0,
            cdn_copies: HashMap::new(),
            piece_uploads: HashMap::new(),
            last_access: now,
            cdn_host: CdnHost::Local,
        }
    }

    /// Whether the supernode can hand out piece `n`: the CDN has it on disk or, with the source
    /// pattern, the source checked out and has every piece.
    pub fn cdn_has(&self, n: u64) -> bool {
        match self.cdn_host {
            CdnHost::Source { .. } => self.status == CdnStatus::Success && n < self.piece_total,
            CdnHost::Local | CdnHost::Remote { .. } => self.cdn_pieces.get(n as usize).is_some_and(Option::is_some),
        }
    }

    /// Pieces known so far (the CDN's, or the total once the length is known).
    pub fn known_pieces(&self) -> usize {
        self.cdn_pieces.len().max(self.piece_total as usize)
    }

    /// The piece number of `range`, if it is one of this task's pieces exactly as handed out
    /// (a whole slot, the last one too): ranges come from the network, and a piece number
    /// sizes per-client bitmaps.
    pub fn piece_of(&self, range: PieceRange) -> Result<u64, SchedError> {
        if self.piece_size == 0 || !range.start.is_multiple_of(self.piece_size) || range.len() != self.piece_size {
            return Err(SchedError::NotAPiece(range));
        }
        let n = range.start / self.piece_size;
        if n >= self.known_pieces() as u64 {
            return Err(SchedError::PastTheEnd(range));
        }
        Ok(n)
    }

    /// `cid` holds piece `n` and may be handed out as its source.
    pub fn add_holder(&mut self, n: usize, cid: &ClientId) {
        if self.holders.len() <= n {
            self.holders.resize_with(n + 1, IndexSet::new);
        }
        self.holders[n].insert(cid.clone());
    }

    /// `src` failed as a source once more; at `elimination` errors it is nobody's holder any
    /// more, so that polls stop looking at it.
    pub fn count_source_error(&mut self, src: &ClientId, elimination: u32) {
        let Some(c) = self.clients.get_mut(src) else { return };
        c.source_errors += 1;
        if c.source_errors >= elimination {
            self.forget_holder(src);
        }
    }

    pub fn forget_holder(&mut self, cid: &ClientId) {
        for h in &mut self.holders {
            h.swap_remove(cid);
        }
    }

    /// `client` holds every piece of the finished task.
    pub fn has_everything(&self, client: &Client) -> bool {
        self.status == CdnStatus::Success && self.piece_total > 0 && client.have_count >= self.piece_total
    }
}

/// One fewer of `key` in a count of things in progress; a count that reaches 0 goes.
fn count_down<K: Hash + Eq>(counts: &mut HashMap<K, u32>, key: K) {
    if let Entry::Occupied(mut e) = counts.entry(key) {
        *e.get_mut() -= 1;
        if *e.get() == 0 {
            e.remove();
        }
    }
}
