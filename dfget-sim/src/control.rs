//! The control loop of one download: poll `/peer/task`, start the pieces it hands out, report
//! their outcomes, finish on 600, then post `/task/metrics`.
//!
//! It follows dfget's P2PDownloader step by step (which outcomes trigger a poll, the 602
//! back-off) because the supernode has to cope with exactly that traffic. Where dfget would
//! migrate to another supernode, the run ends with [`SimError::Poll`].

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use crate::client::{lossy, Control};
use crate::config::PeerConfig;
use crate::error::{io_err, SimError};
use crate::piece::{fetch_piece, parse_continue, report_success, Event, Item, Shared};
use crate::register::Registration;
use crate::stats::Stats;
use crate::wire::{
    get_ci, get_int, get_str, go_json, md5_file, piece_count, reply_code, CODE_SUCCESS, PEER_CONTINUE, PEER_FINISH,
    PEER_LIMITED, PEER_WAIT, RESULT_FAIL, RESULT_INVALID, RESULT_SEMISUC, RESULT_SUC, STATUS_RUNNING,
};

/// `data` of the 600 reply.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FinishData {
    pub file_length: i64,
    pub md5: String,
}

/// A decoded `/peer/task` reply.
struct Reply {
    code: i64,
    msg: String,
    data: Option<Value>,
}

/// Aborts spawned tasks when dropped (error, timeout); the success path drains them first.
#[derive(Default)]
struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    fn push(&mut self, h: JoinHandle<()>) {
        self.0.retain(|h| !h.is_finished());
        self.0.push(h);
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

fn drain(rx: &mut mpsc::UnboundedReceiver<Event>, queue: &mut VecDeque<Item>) -> Result<(), SimError> {
    while let Ok(ev) = rx.try_recv() {
        match ev {
            Event::Outcome(i) => queue.push_back(i),
            Event::Fatal(e) => return Err(e),
        }
    }
    Ok(())
}

/// What the loop needs to know of its peer.
pub(crate) struct Run<'a> {
    pub(crate) control: &'a Control,
    pub(crate) config: &'a PeerConfig,
    pub(crate) cid: &'a str,
    pub(crate) stats: &'a Arc<Stats>,
}

impl Run<'_> {
    /// `POST /task/metrics` as dfget sends it at the end of a run (`bsr`: its back-source reason).
    pub(crate) async fn report_metrics(&self, reg: &Registration, port: u16, d: Duration, success: bool, bsr: &str) {
        let mut fl = reg.file_length;
        if success && fl < 0 {
            fl = std::fs::metadata(&self.config.output).map(|m| m.len() as i64).unwrap_or(fl);
        }
        // dfget's TaskMetricsRequest; Go's omitempty leaves out an empty callSystem, a zero
        // fileLength or port, and success when false
        let mut m = serde_json::Map::new();
        m.insert("IP".into(), Value::from(self.config.ip.to_string()));
        m.insert("backsourceReason".into(), Value::from(bsr));
        m.insert("cID".into(), Value::from(self.cid));
        if let Some(cs) = self.config.callsystem.as_deref().filter(|s| !s.is_empty()) {
            m.insert("callSystem".into(), Value::from(cs));
        }
        m.insert("duration".into(), Value::from(d.as_secs_f64()));
        if fl != 0 {
            m.insert("fileLength".into(), Value::from(fl));
        }
        if port != 0 {
            m.insert("port".into(), Value::from(port));
        }
        if success {
            m.insert("success".into(), Value::from(true));
        }
        m.insert("taskId".into(), Value::from(reg.task_id.clone()));
        let Ok(body) = go_json(&Value::Object(m)) else { return };
        // dfget sends the report again unless the reply's code is 1 (the Go supernode never
        // answers that, so it always sends it twice)
        for _ in 0..2 {
            if let Ok((200, bytes)) = self.control.post_json("/task/metrics", &body).await {
                if reply_code(&bytes) == Some(1) {
                    return;
                }
            }
        }
    }

    /// The p2p download (dfget's P2PDownloader): returns (output md5, finish data).
    pub(crate) async fn download(&self, reg: &Registration) -> Result<(String, Option<FinishData>), SimError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.config.output)
            .map_err(|e| io_err(&format!("open {}", self.config.output.display()), e))?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        let (ntx, mut nrx) = mpsc::unbounded_channel::<()>();
        let pieces = awc::Client::builder()
            .no_default_headers()
            .timeout(Duration::from_secs(3600))
            .connector(
                awc::Connector::new().timeout(Duration::from_millis(500)).conn_keep_alive(Duration::from_secs(1)),
            )
            .finish();
        let shared = Rc::new(Shared {
            control: self.control.clone(),
            cid: self.cid.to_string(),
            task_id: reg.task_id.clone(),
            cdn_source: reg.cdn_source.clone(),
            file: Arc::new(file),
            pieces,
            stats: self.stats.clone(),
            tx,
            notify: ntx,
            sem: Semaphore::new(self.config.piece_concurrency.max(1)),
            piece_timeout: self.config.piece_timeout,
            piece_delay: self.config.piece_delay,
            file_length: reg.file_length,
            held: Default::default(),
        });
        let mut tasks = Tasks::default();
        let mut reports = Tasks::default();
        let mut queue: VecDeque<Item> = VecDeque::new();
        // range -> held (true) or running (false)
        let mut piece_set: HashMap<String, bool> = HashMap::new();
        let mut latest: Option<Item> = None;
        let mut pending = Some(Item::start());
        let mut last_success: Option<Item> = None;
        let (mut min_t, mut max_t) = (50u64, 100u64);
        let mut stall_ticks = 0u32;
        let running = |ps: &HashMap<String, bool>| ps.values().filter(|v| !**v).count();

        loop {
            // ---- next item to report (dfget's getItem, with its merging of successes)
            let cur = match pending.take() {
                Some(i) => i,
                None => {
                    drain(&mut rx, &mut queue)?;
                    let item = match queue.pop_front() {
                        Some(i) => Some(i),
                        None => match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
                            Ok(Some(Event::Outcome(i))) => Some(i),
                            Ok(Some(Event::Fatal(e))) => return Err(e),
                            Ok(None) => return Err(SimError::Protocol("piece queue closed".into())),
                            Err(_) => None,
                        },
                    };
                    let mut need_merge = true;
                    match item {
                        Some(item) => {
                            stall_ticks = 0;
                            if !item.range.is_empty() {
                                match piece_set.get(&item.range).copied() {
                                    None => continue,
                                    Some(false) if matches!(item.result, RESULT_SEMISUC | RESULT_SUC) => {
                                        piece_set.insert(item.range.clone(), true);
                                    }
                                    Some(false) => {
                                        piece_set.remove(&item.range);
                                    }
                                    Some(true) => {}
                                }
                            }
                            if matches!(item.result, RESULT_SEMISUC | RESULT_SUC) {
                                last_success = Some(item.clone());
                            }
                            latest = Some(item);
                        }
                        None => {
                            need_merge = false;
                            if latest.is_none() && running(&piece_set) == 0 {
                                // dfget would wait here until its download timeout; poll again
                                stall_ticks += 1;
                                if stall_ticks >= 2 {
                                    stall_ticks = 0;
                                    Stats::inc(&self.stats.stalls);
                                    latest = Some(last_success.clone().unwrap_or_else(Item::start));
                                }
                            }
                        }
                    }
                    let Some(l) = latest.as_ref() else { continue };
                    if matches!(l.result, RESULT_SUC | RESULT_FAIL | RESULT_INVALID) {
                        need_merge = false;
                    }
                    drain(&mut rx, &mut queue)?;
                    if need_merge && (!queue.is_empty() || running(&piece_set) > 2) {
                        continue;
                    }
                    match latest.take() {
                        Some(l) => l,
                        None => continue,
                    }
                }
            };

            // ---- poll, sleeping on 602 (dfget's pullPieceTask)
            let reply = loop {
                let r = self.poll(&reg.task_id, &cur).await?;
                if r.code != PEER_WAIT {
                    break r;
                }
                drain(&mut rx, &mut queue)?;
                if !queue.is_empty() {
                    break r;
                }
                let wait = rand::thread_rng().gen_range(min_t..max_t);
                let _ = tokio::time::timeout(Duration::from_millis(wait), nrx.recv()).await;
                if min_t < 800 {
                    min_t *= 2;
                    max_t *= 2;
                }
            };
            match reply.code {
                PEER_CONTINUE => {
                    let Some(items) = parse_continue(reply.data.as_ref()) else {
                        if reply.data.is_some() {
                            Stats::inc(&self.stats.bad_replies);
                        }
                        continue;
                    };
                    for it in items {
                        match piece_set.get(&it.range).copied() {
                            Some(true) => {
                                // handed out again although held: report it again, as the last dfget 1.x does
                                let again = Item {
                                    dst_cid: it.cid.clone(),
                                    range: it.range.clone(),
                                    result: RESULT_SEMISUC,
                                    status: STATUS_RUNNING,
                                };
                                queue.push_back(again.clone());
                                reports.push(actix_rt::spawn(report_success(shared.clone(), again)));
                            }
                            Some(false) => {}
                            None => {
                                piece_set.insert(it.range.clone(), false);
                                tasks.push(actix_rt::spawn(fetch_piece(shared.clone(), it)));
                            }
                        }
                    }
                }
                PEER_FINISH => {
                    let finish = self.finish(&shared, reg, reply.data.as_ref()).await?;
                    // let the success reports still on the way arrive (they have their own
                    // timeouts: 3 attempts of at most control_timeout + 0.55 s)
                    let outstanding: Vec<JoinHandle<()>> =
                        std::mem::take(&mut reports.0).into_iter().chain(std::mem::take(&mut tasks.0)).collect();
                    let cap = self.config.control_timeout * 3 + Duration::from_secs(2);
                    let _ = tokio::time::timeout(cap, futures_util::future::join_all(outstanding)).await;
                    return Ok(finish);
                }
                PEER_WAIT | PEER_LIMITED | CODE_SUCCESS => {}
                code => return Err(SimError::Poll { code, msg: reply.msg }),
            }
        }
    }

    /// On 600: every piece must be held and the file's md5 must be the expected one (the user's,
    /// else the one in the reply).
    async fn finish(
        &self,
        shared: &Shared,
        reg: &Registration,
        data: Option<&Value>,
    ) -> Result<(String, Option<FinishData>), SimError> {
        let fd = match data {
            Some(d) if d.is_object() => Some(FinishData {
                file_length: get_int(d, "fileLength").unwrap_or(0),
                md5: get_str(d, "md5").unwrap_or_default(),
            }),
            _ => None,
        };
        let expected = match (&self.config.md5, &fd) {
            (Some(m), _) if !m.is_empty() => m.clone(),
            (_, Some(fd)) => fd.md5.clone(),
            _ => return Err(SimError::Protocol("600 without finish data (dfget 1.0.6 would crash)".into())),
        };
        if reg.file_length > 0 {
            if let Some(n) = piece_count(reg.file_length, reg.piece_size) {
                let held = shared.held.borrow();
                let missing: Vec<u64> = (0..n).filter(|i| !held.contains(i)).take(20).collect();
                if !missing.is_empty() {
                    return Err(SimError::Protocol(format!("600 while pieces {missing:?} are missing")));
                }
            }
        }
        let file = shared.file.clone();
        let path = self.config.output.clone();
        let real = tokio::task::spawn_blocking(move || {
            file.sync_data().ok();
            md5_file(&path)
        })
        .await
        .map_err(|e| io_err("md5", e))?
        .map_err(|e| io_err("md5", e))?;
        if !expected.is_empty() && real != expected {
            return Err(SimError::Md5Mismatch { real, expected });
        }
        Ok((real, fd))
    }

    /// One `/peer/task` request reporting `item`.
    async fn poll(&self, task_id: &str, item: &Item) -> Result<Reply, SimError> {
        let target = format!(
            "/peer/task?srcCid={}&dstCid={}&range={}&result={}&status={}&taskId={}",
            self.cid, item.dst_cid, item.range, item.result, item.status, task_id
        );
        Stats::inc(&self.stats.polls);
        let (status, body) = self.control.get(&target).await?;
        if status != 200 {
            return Err(SimError::Transport(format!("/peer/task: HTTP {status}: {}", lossy(&body))));
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| SimError::Transport(format!("/peer/task: not JSON ({e}): {}", lossy(&body))))?;
        if !v.is_object() {
            return Err(SimError::Transport(format!("/peer/task: not a JSON object: {}", lossy(&body))));
        }
        let code =
            get_int(&v, "code").ok_or_else(|| SimError::Transport("/peer/task: code is not an integer".into()))?;
        let msg = get_str(&v, "msg").unwrap_or_default();
        if let Ok(mut c) = self.stats.codes.lock() {
            *c.entry(code).or_default() += 1;
        }
        let data = get_ci(&v, "data").filter(|d| !d.is_null()).cloned();
        Ok(Reply { code, msg, data })
    }
}
