//! A peer's counters.
//!
//! Tests assert on what went over the wire (which source served a piece, which reports were sent,
//! what `/peer/task` answered), and they read it while the download still runs, from another
//! task. So the live counters are atomics shared by the uploader, the piece tasks and the poll
//! loop, and readers get a plain copy.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::wire::PEER_WAIT;

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) pieces_from_supernode: AtomicU64,
    pub(crate) pieces_from_peers: AtomicU64,
    pub(crate) piece_failures: AtomicU64,
    pub(crate) md5_errors_reported: AtomicU64,
    pub(crate) not_exist_reported: AtomicU64,
    pub(crate) uploads_served: AtomicU64,
    pub(crate) upload_bytes: AtomicU64,
    pub(crate) polls: AtomicU64,
    pub(crate) suc_reports_ok: AtomicU64,
    pub(crate) suc_reports_failed: AtomicU64,
    pub(crate) stalls: AtomicU64,
    pub(crate) bad_replies: AtomicU64,
    pub(crate) last_upload_ms: AtomicU64,
    pub(crate) codes: Mutex<BTreeMap<i64, u64>>,
    pub(crate) last_suc_error: Mutex<String>,
    pub(crate) piece_errors: Mutex<Vec<String>>,
    pub(crate) pieces_already_held: AtomicU64,
    pub(crate) migrations: AtomicU64,
    pub(crate) registrations: Mutex<Vec<String>>,
    pub(crate) registration_failures: Mutex<Vec<String>>,
    pub(crate) fetched: Mutex<Vec<FetchedPiece>>,
    /// The 602 answers in a row so far: when the first came, and how many.
    pub(crate) waiting: Mutex<Option<(Instant, u64)>>,
    pub(crate) longest_wait: Mutex<Wait>,
}

/// A run of 602 answers in a row: from the first of them to the next answer that is not one.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Wait {
    pub polls: u64,
    pub secs: f64,
}

/// One piece this run fetched, and from where.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FetchedPiece {
    pub piece_num: u64,
    pub range: String,
    /// The source's cid from the 601 item (`cdnnode:…` for a supernode).
    pub cid: String,
    /// The source's `peerIp:peerPort` from the 601 item (a supernode's download port for CDN
    /// pieces, the serving peer's uploader otherwise).
    pub addr: String,
    /// Whether the source is a supernode (its cid starts with `cdnnode:`).
    pub from_supernode: bool,
    /// From the request to the piece written, in seconds.
    pub secs: f64,
    /// The supernode (`host:port`) this run was registered with when the piece was handed out.
    pub node: String,
    /// Unix time (ms) when the piece was handed out (the 601 reply that named it arrived).
    pub handed_out_at_ms: u64,
    /// Unix time (ms) when its payload was written.
    pub written_at_ms: u64,
}

/// Live counters of a peer (readable while it downloads).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StatsSnapshot {
    /// Pieces fetched from the supernode (source cid starts with `cdnnode:`).
    pub pieces_from_supernode: u64,
    /// Pieces fetched from other peers.
    pub pieces_from_peers: u64,
    /// Piece downloads that failed (transport, status, md5, framing).
    pub piece_failures: u64,
    /// `FILE_MD5_NOT_MATCH` reports sent.
    pub md5_errors_reported: u64,
    /// `FILE_NOT_EXIST` reports sent.
    pub not_exist_reported: u64,
    /// Pieces this peer's uploader served (or, when it never answers, was asked for).
    pub uploads_served: u64,
    /// Bytes this peer's uploader served.
    pub upload_bytes: u64,
    /// `/peer/task` requests sent.
    pub polls: u64,
    /// `/peer/task` reply codes and how often each came.
    #[serde(deserialize_with = "codes_from_json")]
    pub poll_codes: BTreeMap<i64, u64>,
    /// `/peer/piece/suc` reports answered `{"code":611}`.
    pub suc_reports_ok: u64,
    /// `/peer/piece/suc` reports that failed 3 attempts.
    pub suc_reports_failed: u64,
    /// Last reason a `/peer/piece/suc` attempt failed.
    pub last_suc_error: String,
    /// Why piece downloads failed (the first 20).
    pub piece_errors: Vec<String>,
    /// Times nothing ran and nothing was queued for 4 s (dfget would hang there).
    pub stalls: u64,
    /// 601 replies whose data could not be decoded.
    pub bad_replies: u64,
    /// 601 items for pieces already held: reported with `/peer/piece/suc`, not fetched again.
    pub pieces_already_held: u64,
    /// Times a `/peer/task` failure made the run register with another supernode (successful
    /// or not).
    pub migrations: u64,
    /// The supernodes (`host:port`) the run registered with, in order.
    pub registrations: Vec<String>,
    /// `<host:port>: <why>` for each registration attempt a supernode did not accept.
    pub registration_failures: Vec<String>,
    /// Every piece fetched and written, in the order they completed.
    pub fetched: Vec<FetchedPiece>,
    /// The longest run of 602 answers in a row (a run still going counts up to now).
    pub longest_wait: Wait,
}

/// Reply codes read back from JSON, where they are object keys (strings).
fn codes_from_json<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<i64, u64>, D::Error> {
    let by_text = BTreeMap::<String, u64>::deserialize(d)?;
    let code = |k: &str| k.parse::<i64>().map_err(|_| serde::de::Error::custom(format!("reply code {k:?}")));
    by_text.into_iter().map(|(k, n)| Ok((code(&k)?, n))).collect()
}

/// Milliseconds since the Unix epoch: the clock that peers in separate processes share.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn copy<T: Clone + Default>(m: &Mutex<T>) -> T {
    m.lock().map(|v| v.clone()).unwrap_or_default()
}

impl Stats {
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            pieces_from_supernode: g(&self.pieces_from_supernode),
            pieces_from_peers: g(&self.pieces_from_peers),
            piece_failures: g(&self.piece_failures),
            md5_errors_reported: g(&self.md5_errors_reported),
            not_exist_reported: g(&self.not_exist_reported),
            uploads_served: g(&self.uploads_served),
            upload_bytes: g(&self.upload_bytes),
            polls: g(&self.polls),
            poll_codes: copy(&self.codes),
            suc_reports_ok: g(&self.suc_reports_ok),
            suc_reports_failed: g(&self.suc_reports_failed),
            last_suc_error: copy(&self.last_suc_error),
            piece_errors: copy(&self.piece_errors),
            stalls: g(&self.stalls),
            bad_replies: g(&self.bad_replies),
            pieces_already_held: g(&self.pieces_already_held),
            migrations: g(&self.migrations),
            registrations: copy(&self.registrations),
            registration_failures: copy(&self.registration_failures),
            fetched: copy(&self.fetched),
            longest_wait: self.longest_wait(),
        }
    }

    /// Follows runs of 602 answers: called with every `/peer/task` reply code.
    pub(crate) fn poll_answered(&self, code: i64) {
        let (Ok(mut waiting), Ok(mut longest)) = (self.waiting.lock(), self.longest_wait.lock()) else { return };
        match (code == PEER_WAIT, waiting.as_mut()) {
            (true, Some((_, polls))) => *polls += 1,
            (true, None) => *waiting = Some((Instant::now(), 1)),
            (false, Some((since, polls))) => {
                let run = Wait { polls: *polls, secs: since.elapsed().as_secs_f64() };
                if run.secs > longest.secs {
                    *longest = run;
                }
                *waiting = None;
            }
            (false, None) => {}
        }
    }

    fn longest_wait(&self) -> Wait {
        let longest = self.longest_wait.lock().map(|l| *l).unwrap_or_default();
        let current = self.waiting.lock().ok().and_then(|w| *w);
        match current {
            Some((since, polls)) if since.elapsed().as_secs_f64() > longest.secs => {
                Wait { polls, secs: since.elapsed().as_secs_f64() }
            }
            _ => longest,
        }
    }

    pub(crate) fn push<T>(list: &Mutex<Vec<T>>, v: T) {
        if let Ok(mut l) = list.lock() {
            l.push(v);
        }
    }

    pub(crate) fn inc(a: &AtomicU64) {
        a.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn piece_error(&self, why: String) {
        if let Ok(mut v) = self.piece_errors.lock() {
            if v.len() < 20 {
                v.push(why);
            }
        }
    }
}
