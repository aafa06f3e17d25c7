//! One handed-out piece, from the 601 reply to its report: fetch, md5 check, write, report.
//!
//! Like dfget, the peer runs every piece the supernode hands out as a task of its own; the poll
//! loop learns the outcome only through a queue, the supernode through `/peer/piece/suc` or
//! `/peer/piece/error`. In source mode (`cdnSource: source`) pieces are bare source bytes and
//! may come straight from the origin, which then has to be inside the peer's address scope too.
//!
//! A run may move to another supernode while pieces are under way. Like dfget, a piece reports
//! its success to the supernode that handed it out (its [`Session`]), and its outcome reaches
//! the poll loop tagged with that supernode, so the loop can tell old outcomes from new ones.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use serde_json::Value;
use tokio::sync::{mpsc, Semaphore};

use crate::client::{lossy, stale_connection, Control};
use crate::error::SimError;
use crate::scope::AddressScope;
use crate::sink::Sink;
use crate::stats::{unix_ms, FetchedPiece, Stats};
use crate::wire::{
    get_int, get_str, md5_hex, reply_code, DEFAULT_MIN_RATE, DFGET_VERSION, PIECE_META, PIECE_REPORT_OK, RESULT_FAIL,
    RESULT_INVALID, RESULT_SEMISUC, STATUS_RUNNING, STATUS_START, SUPER_CID_PREFIX,
};

/// A `/peer/task` 601 data item.
#[derive(Debug, Clone)]
pub(crate) struct PieceTask {
    pub(crate) range: String,
    pub(crate) piece_num: u64,
    pub(crate) piece_size: u64,
    pub(crate) piece_md5: String,
    pub(crate) cid: String,
    pub(crate) peer_ip: String,
    pub(crate) peer_port: u16,
    pub(crate) path: String,
}

/// Decodes the 601 piece list; `None` when dfget could not decode it (or there is none).
pub(crate) fn parse_continue(data: Option<&Value>) -> Option<Vec<PieceTask>> {
    let list = data?.as_array()?;
    let mut out = Vec::with_capacity(list.len());
    for el in list {
        if !el.is_object() {
            return None;
        }
        let piece_num = get_int(el, "pieceNum")?;
        let piece_size = get_int(el, "pieceSize")?;
        let peer_port = get_int(el, "peerPort")?;
        // A piece is framed by 5 bytes: a smaller size cannot be a piece.
        let bad_size = piece_size <= PIECE_META as i64 || piece_size > u32::MAX as i64;
        if piece_num < 0 || bad_size || !(0..=65535).contains(&peer_port) {
            return None;
        }
        out.push(PieceTask {
            range: get_str(el, "range")?,
            piece_num: piece_num as u64,
            piece_size: piece_size as u64,
            piece_md5: get_str(el, "pieceMd5")?,
            cid: get_str(el, "cid")?,
            peer_ip: get_str(el, "peerIp")?,
            peer_port: peer_port as u16,
            path: get_str(el, "path")?,
        });
    }
    Some(out)
}

/// One item of the poll queue (dfget's `Piece` queue item): what the next `/peer/task` reports.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) dst_cid: String,
    pub(crate) range: String,
    pub(crate) result: u32,
    pub(crate) status: u32,
    /// The supernode (`host:port`) whose session the item belongs to.
    pub(crate) node: String,
    /// That session's piece size; 0 for items that belong to no piece size.
    pub(crate) piece_size: u64,
}

impl Item {
    /// The first poll's item: no piece, `result=502&status=700`.
    pub(crate) fn start(node: &str) -> Self {
        Item {
            dst_cid: String::new(),
            range: String::new(),
            result: RESULT_INVALID,
            status: STATUS_START,
            node: node.to_string(),
            piece_size: 0,
        }
    }

    /// A successful piece from `dst_cid`, reported in the session `s`.
    pub(crate) fn success(s: &Session, dst_cid: &str, range: &str) -> Self {
        Item {
            dst_cid: dst_cid.to_string(),
            range: range.to_string(),
            result: RESULT_SEMISUC,
            status: STATUS_RUNNING,
            node: s.node.clone(),
            piece_size: s.piece_size,
        }
    }
}

/// The supernode a run is registered with for a while: where its control requests go and the
/// task it has there. A migration starts a new session.
pub(crate) struct Session {
    /// `host:port`.
    pub(crate) node: String,
    pub(crate) control: Control,
    pub(crate) task_id: String,
    pub(crate) piece_size: u64,
}

/// Messages from piece tasks to the poll loop.
pub(crate) enum Event {
    Outcome(Item),
    /// The output file cannot be written: the run fails.
    Fatal(SimError),
}

/// What the piece tasks of one run share.
pub(crate) struct Shared {
    /// The session in use (the poll loop replaces it when the run migrates).
    pub(crate) session: RefCell<Rc<Session>>,
    pub(crate) cid: String,
    /// From the first registration: dfget keeps it across migrations.
    pub(crate) cdn_source: String,
    pub(crate) file: Arc<File>,
    /// The streaming output, when the run has one.
    pub(crate) sink: Option<Arc<Sink>>,
    /// The client for piece downloads (separate from the control plane's).
    pub(crate) pieces: awc::Client,
    pub(crate) stats: Arc<Stats>,
    pub(crate) tx: mpsc::UnboundedSender<Event>,
    /// Wakes the poll loop's 602 back-off when a success report got through.
    pub(crate) notify: mpsc::UnboundedSender<()>,
    pub(crate) sem: Semaphore,
    pub(crate) piece_timeout: Option<Duration>,
    pub(crate) piece_delay: Duration,
    /// Report pieces as fetched without fetching them (fault injection).
    pub(crate) claim_unfetched: bool,
    /// Source length from the first registration.
    pub(crate) file_length: i64,
    /// Piece numbers written so far.
    pub(crate) held: RefCell<HashSet<u64>>,
    /// Where piece sources may be.
    pub(crate) scope: AddressScope,
}

impl Shared {
    pub(crate) fn session(&self) -> Rc<Session> {
        self.session.borrow().clone()
    }
}

/// A piece error for `/peer/piece/error`.
struct ClientError {
    error_type: &'static str,
    dst_cid: String,
    dst_ip: String,
    range: String,
    real_md5: String,
    expected_md5: String,
}

/// Clamps a range end to the source length (source mode).
fn wipe_out_of_range(range: &str, max_len: i64) -> String {
    let Some((a, b)) = range.split_once('-') else { return range.to_string() };
    match b.parse::<i64>() {
        Ok(end) if max_len >= 0 && end >= max_len => format!("{a}-{}", max_len - 1),
        _ => range.to_string(),
    }
}

/// Why a piece download failed, and the `/peer/piece/error` report it causes (if any).
struct PieceFailure {
    why: String,
    report: Option<ClientError>,
}

fn failed(why: impl Into<String>) -> PieceFailure {
    PieceFailure { why: why.into(), report: None }
}

/// One piece download (dfget's PowerClient) handed out in `session`: Ok(true) when the payload
/// was written, Ok(false) when it was not because the run has since moved to a supernode with
/// another piece size (its pieces are numbered differently), or the failure.
async fn download_piece(sh: &Shared, session: &Session, it: &PieceTask) -> Result<bool, PieceFailure> {
    let source_mode = sh.cdn_source == "source";
    let (url, host) = if it.path.contains("://") {
        let host = it.path.split("://").nth(1).and_then(|r| r.split(['/', '?']).next()).unwrap_or("").to_string();
        (it.path.clone(), host.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or(host))
    } else {
        (format!("http://{}:{}{}", it.peer_ip, it.peer_port, it.path), it.peer_ip.clone())
    };
    let what = format!("piece {} [{}] from {} ({url})", it.piece_num, it.range, it.cid);
    if !sh.scope.allows_host(&host) {
        return Err(failed(format!("{what}: source outside the allowed addresses ({}), refused", sh.scope.describe())));
    }
    let mut range = it.range.clone();
    if source_mode && sh.file_length > 0 {
        range = wipe_out_of_range(&range, sh.file_length);
    }
    let timeout = sh.piece_timeout.unwrap_or_else(|| Duration::from_secs(it.piece_size / DEFAULT_MIN_RATE + 10));
    let make = || {
        let req = sh
            .pieces
            .get(url.as_str())
            .camel_case()
            .no_decompress()
            .insert_header(("User-Agent", format!("dfget/{DFGET_VERSION}")))
            .insert_header(("pieceNum", it.piece_num.to_string()))
            .insert_header(("pieceSize", it.piece_size.to_string()))
            .insert_header(("Range", format!("bytes={range}")))
            .timeout(timeout);
        if source_mode {
            req.insert_header(("cdnSource", "source")).send()
        } else {
            req.send()
        }
    };
    let limit = (it.piece_size as usize).saturating_mul(2).max(1 << 20);
    let fetch = async {
        let mut res = match make().await {
            Ok(r) => r,
            Err(e) if stale_connection(&e) => make().await.map_err(|e| failed(format!("{what}: {e}")))?,
            Err(e) => return Err(failed(format!("{what}: {e}"))),
        };
        let status = res.status().as_u16();
        if !(200..300).contains(&status) {
            let report = (status == 404).then(|| ClientError {
                error_type: "FILE_NOT_EXIST",
                dst_cid: it.cid.clone(),
                dst_ip: String::new(),
                range: String::new(),
                real_md5: String::new(),
                expected_md5: String::new(),
            });
            return Err(PieceFailure { why: format!("{what}: HTTP {status}"), report });
        }
        res.body().limit(limit).await.map_err(|e| failed(format!("{what}: body: {e}")))
    };
    let body = match tokio::time::timeout(timeout, fetch).await {
        Ok(r) => r?,
        Err(_) => return Err(failed(format!("{what}: no complete answer within {:.1}s", timeout.as_secs_f64()))),
    };
    if !source_mode && (body.len() as u64) < PIECE_META {
        return Err(failed(format!("{what}: {} bytes, shorter than the framing", body.len())));
    }
    if sh.session().piece_size != session.piece_size {
        return Ok(false);
    }
    // md5 check and write off the runtime thread
    let expected = it.piece_md5.split(':').next().unwrap_or("").to_string();
    let (file, sink) = (sh.file.clone(), sh.sink.clone());
    let (piece_num, piece_size) = (it.piece_num, it.piece_size);
    let checked = tokio::task::spawn_blocking(move || {
        check_and_write(&body, &expected, (&file, sink.as_deref()), piece_num, piece_size, source_mode)
    })
    .await;
    let fatal = |e: String| {
        let _ = sh.tx.send(Event::Fatal(SimError::Io(format!("write piece: {e}"))));
        failed(format!("{what}: write: {e}"))
    };
    match checked {
        Ok(Ok(Ok(()))) => Ok(true),
        Ok(Ok(Err(real))) => Err(PieceFailure {
            why: format!("{what}: md5 {real}, expected {}", it.piece_md5),
            report: Some(ClientError {
                error_type: "FILE_MD5_NOT_MATCH",
                dst_cid: it.cid.clone(),
                dst_ip: it.peer_ip.clone(),
                range: it.range.clone(),
                real_md5: real,
                expected_md5: it.piece_md5.split(':').next().unwrap_or("").to_string(),
            }),
        }),
        Ok(Err(e)) => Err(fatal(e.to_string())),
        Err(e) => Err(fatal(e.to_string())),
    }
}

/// Checks the md5 of the received bytes (when one is `expected`) and writes the payload at its
/// place in the output file (and its sink): `Ok(Err(real md5))` on a mismatch, `Err` when
/// writing failed.
fn check_and_write(
    body: &Bytes,
    expected: &str,
    (file, sink): (&File, Option<&Sink>),
    piece_num: u64,
    piece_size: u64,
    source_mode: bool,
) -> Result<Result<(), String>, std::io::Error> {
    if !expected.is_empty() {
        let real = md5_hex(body);
        if real != expected {
            return Ok(Err(real));
        }
    }
    let (payload, offset) = if source_mode {
        (&body[..], piece_num.checked_mul(piece_size))
    } else {
        (&body[4..body.len() - 1], piece_num.checked_mul(piece_size - PIECE_META))
    };
    let offset = offset.ok_or_else(|| std::io::Error::other("piece offset overflows"))?;
    file.write_all_at(payload, offset)?;
    if let Some(sink) = sink {
        sink.written(piece_num, offset, payload)?;
    }
    Ok(Ok(()))
}

/// The task of one handed-out piece: download it, queue the outcome for the poll loop, report it.
pub(crate) async fn fetch_piece(sh: Rc<Shared>, it: PieceTask) {
    let handed_out_at_ms = unix_ms();
    let session = sh.session();
    let (outcome, took) = {
        let Ok(_permit) = sh.sem.acquire().await else { return };
        let started = Instant::now();
        let outcome = if sh.claim_unfetched { Ok(true) } else { download_piece(&sh, &session, &it).await };
        (outcome, started.elapsed())
    };
    match outcome {
        Ok(true) => {
            let from_supernode = it.cid.starts_with(SUPER_CID_PREFIX);
            Stats::inc(if from_supernode { &sh.stats.pieces_from_supernode } else { &sh.stats.pieces_from_peers });
            let fetched = FetchedPiece {
                piece_num: it.piece_num,
                range: it.range.clone(),
                cid: it.cid.clone(),
                addr: format!("{}:{}", it.peer_ip, it.peer_port),
                from_supernode,
                secs: took.as_secs_f64(),
                node: session.node.clone(),
                handed_out_at_ms,
                written_at_ms: unix_ms(),
            };
            Stats::push(&sh.stats.fetched, fetched);
            sh.held.borrow_mut().insert(it.piece_num);
            if !sh.piece_delay.is_zero() {
                tokio::time::sleep(sh.piece_delay).await;
            }
            let item = Item::success(&session, &it.cid, &it.range);
            let _ = sh.tx.send(Event::Outcome(item.clone()));
            report_success(sh.clone(), session, item).await;
        }
        Ok(false) => {}
        Err(PieceFailure { why, report: client_error }) => {
            Stats::inc(&sh.stats.piece_failures);
            sh.stats.piece_error(why);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let item = Item { result: RESULT_FAIL, ..Item::success(&session, &it.cid, &it.range) };
            let _ = sh.tx.send(Event::Outcome(item));
            if let Some(err) = client_error {
                report_client_error(&sh, &session.task_id, err).await;
            }
        }
    }
}

/// `/peer/piece/suc` to the supernode of `session`: 3 attempts, 50–550 ms apart; a success wakes
/// the poll loop's back-off.
pub(crate) async fn report_success(sh: Rc<Shared>, session: Rc<Session>, item: Item) {
    let target = format!(
        "/peer/piece/suc?taskId={}&cid={}&dstCid={}&pieceRange={}",
        session.task_id, sh.cid, item.dst_cid, item.range
    );
    for _ in 0..3 {
        let why = match session.control.get(&target).await {
            Ok((200, body)) => {
                if reply_code(&body) == Some(PIECE_REPORT_OK) {
                    Stats::inc(&sh.stats.suc_reports_ok);
                    let _ = sh.notify.send(());
                    return;
                }
                format!("{target}: HTTP 200 {}", lossy(&body))
            }
            Ok((status, body)) => format!("{target}: HTTP {status} {}", lossy(&body)),
            Err(e) => e.to_string(),
        };
        if let Ok(mut s) = sh.stats.last_suc_error.lock() {
            *s = why;
        }
        let pause = rand::thread_rng().gen_range(50..550);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    Stats::inc(&sh.stats.suc_reports_failed);
}

/// `/peer/piece/error` in dfget's key order; dfget ignores the answer, and so does this.
/// `FILE_NOT_EXIST` (after a 404) carries only the cids and the task, `FILE_MD5_NOT_MATCH` all
/// fields, with the md5 part of `pieceMd5` (no `:length`) as the expected md5. As in dfget, the
/// report names the task of the supernode that handed the piece out (`task_id`) but goes to the
/// supernode in use when the download failed.
async fn report_client_error(sh: &Shared, task_id: &str, e: ClientError) {
    match e.error_type {
        "FILE_MD5_NOT_MATCH" => Stats::inc(&sh.stats.md5_errors_reported),
        _ => Stats::inc(&sh.stats.not_exist_reported),
    }
    let target = format!(
        "/peer/piece/error?errorType={}&srcCid={}&dstCid={}&dstIp={}&taskId={}&range={}&realMd5={}&expectedMd5={}",
        e.error_type, sh.cid, e.dst_cid, e.dst_ip, task_id, e.range, e.real_md5, e.expected_md5
    );
    let _ = sh.session().control.get(&target).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_items() {
        let v = serde_json::json!([{"range":"0-4194303","pieceNum":0,"pieceSize":4194304,"pieceMd5":"ab:3","cid":"cdnnode:127.0.0.1~x","peerIp":"127.0.0.1","peerPort":8001,"path":"/download/x","downLink":0}]);
        let items = parse_continue(Some(&v)).unwrap();
        assert_eq!(items[0].piece_size, 4194304);
        assert_eq!(items[0].peer_port, 8001);
        assert!(parse_continue(Some(&serde_json::json!([{"pieceNum":"x"}]))).is_none());
        assert!(parse_continue(Some(&serde_json::json!({"a":1}))).is_none());
        let mut tiny = v.clone();
        tiny[0]["pieceSize"] = serde_json::json!(5);
        assert!(parse_continue(Some(&tiny)).is_none(), "a piece is more than its 5 framing bytes");
    }
}
