//! The piece hand-out policy: which pieces a client gets next and from whom.
//!
//! Kept apart from the actor so it can be read, tested and swapped on its own
//! (`[scheduler] hand_out`). Every policy picks, among the peers holding a piece, the
//! least-loaded uploader under the per-uploader limit; the CDN serves only when no peer can.

use rand::{Rng, RngCore};

/// A piece the client may fetch: held by the CDN, not held or running for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandidatePiece {
    pub num: u64,
    /// Peers holding it (rarity).
    pub holders: usize,
}

/// A peer able to serve a piece, with its uploader's current load.
#[derive(Debug, Clone, Copy)]
pub struct CandidateSource {
    pub index: usize,
    pub load: u32,
}

pub trait HandOutPolicy: Send {
    /// Orders candidates in place, best first; `running` are the piece numbers the client is fetching.
    fn order(&self, candidates: &mut Vec<CandidatePiece>, running: &[u64], rng: &mut dyn RngCore);

    /// Picks one of the eligible peer sources (all under the upload limit): the least
    /// loaded, ties at random; `None` leaves the piece to the CDN.
    fn pick_peer(&self, sources: &[CandidateSource], rng: &mut dyn RngCore) -> Option<usize> {
        let min = sources.iter().map(|s| s.load).min()?;
        let best: Vec<&CandidateSource> = sources.iter().filter(|s| s.load == min).collect();
        Some(best[rng.gen_range(0..best.len())].index)
    }
}

/// How far past its first missing piece a client's pieces may run ahead before that gap comes
/// first. While the CDN is still writing, a new piece is always rarer than an old one others
/// hold, so by rarity alone a client's old gaps wait until the end: its file is then a sparse
/// spread of pieces rather than a prefix that grows (which a client hashing as it goes, or
/// handing its file on, needs).
const AHEAD_OF_FIRST_GAP: u64 = 32;

/// Rarest first among the pieces within [`AHEAD_OF_FIRST_GAP`] of the client's first missing
/// piece, then the rest; each group rarest first, then nearest to the mean of the running
/// pieces, ties at random.
#[derive(Debug, Default, Clone, Copy)]
pub struct RarestFirst;

impl HandOutPolicy for RarestFirst {
    fn order(&self, candidates: &mut Vec<CandidatePiece>, running: &[u64], rng: &mut dyn RngCore) {
        let centre = if running.is_empty() { 0 } else { running.iter().sum::<u64>() / running.len() as u64 };
        let first_gap = candidates.iter().map(|c| c.num).chain(running.iter().copied()).min().unwrap_or(0);
        let beyond = |c: &CandidatePiece| c.num >= first_gap + AHEAD_OF_FIRST_GAP;
        let mut keyed: Vec<(bool, usize, u64, u32, CandidatePiece)> =
            candidates.iter().map(|c| (beyond(c), c.holders, c.num.abs_diff(centre), rng.gen::<u32>(), *c)).collect();
        keyed.sort_unstable_by_key(|k| (k.0, k.1, k.2, k.3));
        candidates.clear();
        candidates.extend(keyed.into_iter().map(|k| k.4));
    }
}

/// Lowest piece number first.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sequential;

impl HandOutPolicy for Sequential {
    fn order(&self, candidates: &mut Vec<CandidatePiece>, _running: &[u64], _rng: &mut dyn RngCore) {
        candidates.sort_unstable_by_key(|c| c.num);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::mock::StepRng;

    fn pieces() -> Vec<CandidatePiece> {
        vec![
            CandidatePiece { num: 0, holders: 2 },
            CandidatePiece { num: 9, holders: 0 },
            CandidatePiece { num: 5, holders: 0 },
            CandidatePiece { num: 1, holders: 1 },
        ]
    }

    #[test]
    fn rarest_then_nearest() {
        let mut c = pieces();
        RarestFirst.order(&mut c, &[4, 6], &mut StepRng::new(0, 1));
        let order: Vec<u64> = c.iter().map(|p| p.num).collect();
        assert_eq!(order, [5, 9, 1, 0]);
    }

    #[test]
    fn an_old_gap_comes_before_rarer_pieces_far_ahead_of_it() {
        let far = AHEAD_OF_FIRST_GAP + 3;
        let mut c = vec![
            CandidatePiece { num: far, holders: 0 },
            CandidatePiece { num: 2, holders: 3 },
            CandidatePiece { num: far + 1, holders: 1 },
        ];
        RarestFirst.order(&mut c, &[far - 1], &mut StepRng::new(0, 1));
        assert_eq!(c.iter().map(|p| p.num).collect::<Vec<_>>(), [2, far, far + 1]);
    }

    #[test]
    fn sequential_is_in_order() {
        let mut c = pieces();
        Sequential.order(&mut c, &[4, 6], &mut StepRng::new(0, 1));
        assert_eq!(c.iter().map(|p| p.num).collect::<Vec<_>>(), [0, 1, 5, 9]);
    }

    #[test]
    fn least_loaded_peer() {
        let s = [CandidateSource { index: 3, load: 2 }, CandidateSource { index: 7, load: 0 }];
        assert_eq!(RarestFirst.pick_peer(&s, &mut StepRng::new(0, 1)), Some(7));
        assert_eq!(RarestFirst.pick_peer(&[], &mut StepRng::new(0, 1)), None);
    }
}
