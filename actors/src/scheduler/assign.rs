//! Piece assignment: what a polling client gets next, decided from the task's state alone.
//!
//! A client may fetch a piece the CDN has on disk and it neither holds nor is fetching.
//! The policy orders those pieces; each then goes to the least-loaded peer holding it that
//! is under the per-uploader limit, has not failed this client, and has not failed others
//! too often; the supernode serves a piece only when no peer can, up to its own limit, and
//! sends a piece no peer holds yet to one client at a time.

use std::collections::HashMap;

use indexmap::IndexSet;
use rand::{Rng, RngCore};

use super::policy::{CandidatePiece, CandidateSource, HandOutPolicy};
use super::state::{Client, Source, TaskState, UploaderAddr};
use crate::ids::ClientId;
use crate::status::CdnStatus;

/// Eligible peers looked at per piece, from a random start among its holders: a popular
/// piece may have thousands, and the work must not grow with them.
const SOURCES_CONSIDERED: usize = 16;

/// Copies of one piece one peer sends at once. A new piece that many clients want then
/// spreads as a tree of copies at a holder's full link rate (each new holder serving the next
/// two) instead of a star of five sharing one link, which a swarm waits on for every piece.
/// A peer still serves up to `peer_up_limit` uploads of different pieces.
const COPIES_PER_HOLDER: u32 = 2;

/// Holders looked at per piece in search of those eligible: most of a popular piece's
/// holders may be busy or failed for this client, and a poll must not scan them all.
const HOLDERS_SCANNED: usize = 64;

/// The limits assignment works within (`[scheduler]`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Uploads at once per uploader address.
    pub up: u32,
    /// Pieces the supernode serves at once for the task.
    pub cdn: u32,
    /// Failures above which a client is served by the supernode only.
    pub failures: u32,
    /// Errors as a source at which a client is no longer handed out.
    pub elimination: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    CdnFailed,
    SourceError,
    Paused,
    /// The client holds every piece of the finished task.
    Finished,
    /// The client already runs `max` pieces.
    Limited,
    /// The CDN has no piece the client lacks yet.
    NoPieceYet,
    /// Pieces are there, but every source is at its limit.
    AllBusy,
    Pieces(Vec<(u64, Source)>),
}

/// What `cid` (a client of `task`) gets, running at most `max` pieces at once.
pub(super) fn decide(
    task: &TaskState,
    cid: &ClientId,
    max: usize,
    uploads: &HashMap<UploaderAddr, u32>,
    limits: &Limits,
    policy: &dyn HandOutPolicy,
    rng: &mut dyn RngCore,
) -> Decision {
    let Some(client) = task.clients.get(cid) else { return Decision::NoPieceYet };
    match task.status {
        CdnStatus::Failed => return Decision::CdnFailed,
        CdnStatus::SourceError => return Decision::SourceError,
        _ => {}
    }
    if task.paused {
        return Decision::Paused;
    }
    if task.has_everything(client) {
        return Decision::Finished;
    }
    if client.running.len() >= max {
        return Decision::Limited;
    }
    let mut candidates: Vec<CandidatePiece> = (0..task.known_pieces() as u64)
        .filter(|n| task.cdn_has(*n) && !client.holds(*n) && !client.running.contains_key(n))
        .map(|n| CandidatePiece { num: n, holders: task.holders.get(n as usize).map_or(0, IndexSet::len) })
        .collect();
    if candidates.is_empty() {
        return Decision::NoPieceYet;
    }
    let running: Vec<u64> = client.running.keys().copied().collect();
    policy.order(&mut candidates, &running, rng);

    let cdn_only = client.failures > limits.failures;
    let mut slots = max - client.running.len();
    let mut cdn_load = task.cdn_load;
    let mut extra_load: HashMap<UploaderAddr, u32> = HashMap::new();
    let mut picks = Vec::new();
    for cand in candidates {
        if slots == 0 {
            break;
        }
        let mut source = None;
        if !cdn_only {
            let load_of = |c: &Client| {
                uploads.get(&c.addr()).copied().unwrap_or(0) + extra_load.get(&c.addr()).copied().unwrap_or(0)
            };
            let eligible = eligible_sources(task, client, cid, cand.num, limits, load_of, rng);
            let loads: Vec<CandidateSource> = eligible
                .iter()
                .enumerate()
                .map(|(i, (_, _, load))| CandidateSource { index: i, load: *load })
                .collect();
            if let Some(i) = policy.pick_peer(&loads, rng) {
                let (holder, addr, _) = &eligible[i];
                *extra_load.entry(*addr).or_default() += 1;
                source = Some(Source::Peer((*holder).clone()));
            }
        }
        // The supernode sends a piece only while no peer can: not when a peer that would serve
        // this client holds it but is at its upload limit (a slot frees within a piece time,
        // and a held poll takes it), and not a second time while its first copy, which makes a
        // source, is on its way. Its upload then goes to pieces nobody has.
        let first_copy_running = cand.holders == 0 && task.cdn_copies.contains_key(&cand.num);
        let peer_soon = source.is_none() && !cdn_only && has_busy_source(task, client, cid, cand.num, limits);
        if source.is_none() && cdn_load < limits.cdn && !first_copy_running && !peer_soon {
            cdn_load += 1;
            source = Some(Source::Cdn);
        }
        if let Some(s) = source {
            picks.push((cand.num, s));
            slots -= 1;
        }
    }
    if picks.is_empty() {
        Decision::AllBusy
    } else {
        Decision::Pieces(picks)
    }
}

/// The holder `h`, if it would serve `client` (`cid`) leaving its upload limit aside: not the
/// client itself, not failed for it, uploading at all, not down, not eliminated.
fn would_serve<'a>(
    task: &'a TaskState,
    client: &Client,
    cid: &ClientId,
    h: &ClientId,
    limits: &Limits,
) -> Option<&'a Client> {
    if h == cid || client.bad_sources.contains(h) {
        return None;
    }
    task.clients.get(h).filter(|c| c.is_usable_source(limits.elimination) && !c.is_down())
}

/// Whether a holder of piece `n` would serve `client` but for its upload limits.
fn has_busy_source(task: &TaskState, client: &Client, cid: &ClientId, n: u64, limits: &Limits) -> bool {
    let Some(holders) = task.holders.get(n as usize) else { return false };
    holders.iter().take(HOLDERS_SCANNED).any(|h| would_serve(task, client, cid, h, limits).is_some())
}

/// Holders of piece `n` that may serve `client` now (under the upload limit, sending fewer
/// than [`COPIES_PER_HOLDER`] copies of it): (CID, uploader address, its load).
fn eligible_sources<'a>(
    task: &'a TaskState,
    client: &Client,
    cid: &ClientId,
    n: u64,
    limits: &Limits,
    load_of: impl Fn(&Client) -> u32,
    rng: &mut dyn RngCore,
) -> Vec<(&'a ClientId, UploaderAddr, u32)> {
    let Some(holders) = task.holders.get(n as usize) else { return Vec::new() };
    let count = holders.len();
    if count == 0 {
        return Vec::new();
    }
    let start = rng.gen_range(0..count);
    (0..count.min(HOLDERS_SCANNED))
        .filter_map(|i| holders.get_index((start + i) % count))
        .filter_map(|h| Some((h, would_serve(task, client, cid, h, limits)?)))
        .filter(|(h, _)| task.piece_uploads_of(n, h) < COPIES_PER_HOLDER)
        .map(|(h, c)| (h, c.addr(), load_of(c)))
        .filter(|(_, _, load)| *load < limits.up)
        .take(SOURCES_CONSIDERED)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PeerId;
    use crate::piece::PieceDigest;
    use crate::scheduler::policy::RarestFirst;
    use crate::scheduler::state::{ClientRole, Running};
    use rand::rngs::mock::StepRng;
    use std::net::Ipv4Addr;
    use std::time::Instant;

    const LIMITS: Limits = Limits { up: 2, cdn: 2, failures: 5, elimination: 5 };

    fn client(n: u8, now: Instant) -> Client {
        let peer = PeerId::for_host("h", &format!("10.0.0.{n}"));
        Client::new(peer, (Ipv4Addr::new(10, 0, 0, n), 20000), format!("/peer/file/{n}"), ClientRole::Peer, now)
    }

    fn cid(n: u8) -> ClientId {
        ClientId::new(format!("c{n}"))
    }

    /// A running task whose CDN has `pieces` pieces, with clients 1..=clients.
    fn task(pieces: usize, clients: u8) -> TaskState {
        let now = Instant::now();
        let mut t = TaskState::new(1, now);
        t.status = CdnStatus::Running;
        t.piece_size = 4 << 20;
        t.cdn_pieces = vec![Some(PieceDigest::new([0; 16], 4 << 20)); pieces];
        for n in 1..=clients {
            t.clients.insert(cid(n), client(n, now));
        }
        t
    }

    fn hold(t: &mut TaskState, n: u8, piece: u64) {
        t.clients.get_mut(&cid(n)).unwrap().mark_have(piece);
        t.add_holder(piece as usize, &cid(n));
    }

    fn decide_for(t: &TaskState, n: u8, max: usize, uploads: &HashMap<UploaderAddr, u32>) -> Decision {
        decide(t, &cid(n), max, uploads, &LIMITS, &RarestFirst, &mut StepRng::new(7, 3))
    }

    #[test]
    fn a_fresh_client_gets_cdn_pieces_up_to_the_cdn_limit() {
        let t = task(4, 1);
        let Decision::Pieces(p) = decide_for(&t, 1, 4, &HashMap::new()) else { panic!() };
        assert_eq!(p.len(), 2, "cdn_up_limit 2: {p:?}");
        assert!(p.iter().all(|(_, s)| *s == Source::Cdn));
    }

    #[test]
    fn peers_serve_before_the_cdn_and_the_least_loaded_peer_first() {
        let mut t = task(1, 3);
        hold(&mut t, 2, 0);
        hold(&mut t, 3, 0);
        let uploads = HashMap::from([((Ipv4Addr::new(10, 0, 0, 2), 20000), 1)]);
        assert_eq!(decide_for(&t, 1, 4, &uploads), Decision::Pieces(vec![(0, Source::Peer(cid(3)))]));
    }

    #[test]
    fn busy_bad_and_eliminated_sources_are_skipped() {
        let mut t = task(1, 4);
        for n in 2..=4 {
            hold(&mut t, n, 0);
        }
        t.clients.get_mut(&cid(1)).unwrap().bad_sources.insert(cid(2));
        t.clients.get_mut(&cid(3)).unwrap().source_errors = 5;
        let uploads = HashMap::from([((Ipv4Addr::new(10, 0, 0, 4), 20000), 2)]);
        t.cdn_load = 2;
        assert_eq!(decide_for(&t, 1, 4, &uploads), Decision::AllBusy, "all peers excluded, CDN at its limit");
        t.cdn_load = 0;
        assert_eq!(decide_for(&t, 1, 4, &uploads), Decision::AllBusy, "client 4 would serve once a slot frees");
        t.clients.get_mut(&cid(4)).unwrap().mark_down(Instant::now());
        assert_eq!(decide_for(&t, 1, 4, &uploads), Decision::Pieces(vec![(0, Source::Cdn)]), "no peer would serve");
    }

    #[test]
    fn a_piece_nobody_holds_goes_from_the_supernode_to_one_client_at_a_time() {
        let mut t = task(2, 3);
        t.count_cdn_copy(0, true);
        assert_eq!(
            decide_for(&t, 2, 4, &HashMap::new()),
            Decision::Pieces(vec![(1, Source::Cdn)]),
            "piece 0 is on its way to client 1"
        );
        t.count_cdn_copy(1, true);
        assert_eq!(decide_for(&t, 3, 4, &HashMap::new()), Decision::AllBusy, "both first copies are running");
        hold(&mut t, 1, 0);
        t.count_cdn_copy(0, false);
        assert_eq!(decide_for(&t, 3, 4, &HashMap::new()), Decision::Pieces(vec![(0, Source::Peer(cid(1)))]));
        t.count_cdn_copy(1, false);
        assert!(t.cdn_copies.is_empty() && t.cdn_load == 0, "every copy given back");
    }

    #[test]
    fn a_holder_sends_two_copies_of_a_piece_at_once() {
        let mut t = task(2, 4);
        hold(&mut t, 2, 0);
        hold(&mut t, 2, 1);
        t.count_piece_upload(0, &cid(2), true);
        t.count_piece_upload(0, &cid(2), true);
        assert_eq!(
            decide_for(&t, 1, 4, &HashMap::new()),
            Decision::Pieces(vec![(1, Source::Peer(cid(2)))]),
            "two copies of piece 0 on their way from client 2; the supernode leaves it to client 2's next slot"
        );
        hold(&mut t, 3, 0);
        assert_eq!(
            decide_for(&t, 4, 4, &HashMap::new()),
            Decision::Pieces(vec![(1, Source::Peer(cid(2))), (0, Source::Peer(cid(3)))]),
            "piece 0 from the holder that sends none of it yet"
        );
        t.count_piece_upload(0, &cid(2), false);
        t.count_piece_upload(0, &cid(2), false);
        assert!(t.piece_uploads.is_empty(), "every copy given back");
    }

    #[test]
    fn an_eliminated_source_is_nobodys_holder() {
        let mut t = task(2, 2);
        hold(&mut t, 2, 0);
        hold(&mut t, 2, 1);
        for _ in 1..LIMITS.elimination {
            t.count_source_error(&cid(2), LIMITS.elimination);
        }
        assert_eq!(t.holders[0].len(), 1, "one error short of elimination, still a holder");
        t.count_source_error(&cid(2), LIMITS.elimination);
        assert!(t.holders.iter().all(|h| h.is_empty()), "eliminated: no poll looks at it again");
        assert_eq!(decide_for(&t, 1, 4, &HashMap::new()), Decision::Pieces(vec![(0, Source::Cdn), (1, Source::Cdn)]));
    }

    #[test]
    fn a_client_that_failed_too_often_gets_the_cdn_only() {
        let mut t = task(1, 2);
        hold(&mut t, 2, 0);
        t.clients.get_mut(&cid(1)).unwrap().failures = 6;
        assert_eq!(decide_for(&t, 1, 4, &HashMap::new()), Decision::Pieces(vec![(0, Source::Cdn)]));
    }

    #[test]
    fn states_before_pieces() {
        let mut t = task(2, 1);
        let c = t.clients.get_mut(&cid(1)).unwrap();
        c.running.insert(0, Running { source: Source::Cdn, since: Instant::now(), upload: None });
        assert_eq!(decide_for(&t, 1, 1, &HashMap::new()), Decision::Limited);
        assert_eq!(decide_for(&task(0, 1), 1, 4, &HashMap::new()), Decision::NoPieceYet);
        t.paused = true;
        assert_eq!(decide_for(&t, 1, 4, &HashMap::new()), Decision::Paused);
        t.status = CdnStatus::SourceError;
        assert_eq!(decide_for(&t, 1, 4, &HashMap::new()), Decision::SourceError);
        let mut done = task(2, 1);
        done.status = CdnStatus::Success;
        done.piece_total = 2;
        hold(&mut done, 1, 0);
        hold(&mut done, 1, 1);
        assert_eq!(decide_for(&done, 1, 4, &HashMap::new()), Decision::Finished);
    }

    #[test]
    fn a_down_or_download_only_holder_is_never_a_source() {
        let mut t = task(1, 3);
        hold(&mut t, 2, 0);
        hold(&mut t, 3, 0);
        t.clients.get_mut(&cid(2)).unwrap().mark_down(Instant::now());
        t.clients.get_mut(&cid(3)).unwrap().role = ClientRole::DownloadOnly;
        assert_eq!(decide_for(&t, 1, 4, &HashMap::new()), Decision::Pieces(vec![(0, Source::Cdn)]));
    }
}
