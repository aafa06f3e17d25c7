//! The control loop of one download: poll `/peer/task`, start the pieces it hands out, report
//! their outcomes, finish on 600, then post `/task/metrics`.
//!
//! It follows dfget's P2PDownloader step by step (which outcomes trigger a poll, the 602
//! back-off, the move to another supernode) because the supernode has to cope with exactly that
//! traffic. On a `/peer/task` answer dfget does not go on with, or a failed request, dfget
//! migrates: it registers with the next supernode of its list and polls that one with
//! `status=700`, keeping its cid, its uploader and the pieces it holds. When no supernode is
//! left, the run ends with that failure ([`SimError::Poll`] or [`SimError::Transport`]).

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use crate::client::{lossy, Control};
use crate::config::PeerConfig;
use crate::error::{io_err, SimError};
use crate::piece::{fetch_piece, parse_continue, report_success, Event, Item, Session, Shared};
use crate::register::{Registered, Registrant, Registrar, Registration};
use crate::sink::Sink;
use crate::stats::Stats;
use crate::wire::{
    get_ci, get_int, get_str, go_json, md5_file, piece_count, reply_code, CODE_SUCCESS, PEER_CONTINUE, PEER_FINISH,
    PEER_LIMITED, PEER_WAIT, RESULT_FAIL, RESULT_INVALID, RESULT_SEMISUC, RESULT_SUC, STATUS_START,
};

/// `data` of the 600 reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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

/// The session of a registration.
fn session_of(r: &Registered, timeout: Duration) -> Rc<Session> {
    Rc::new(Session {
        node: r.node.addr.clone(),
        control: Control::new(&r.node.addr, timeout),
        task_id: r.reg.task_id.clone(),
        piece_size: r.reg.piece_size,
    })
}

/// The state of the poll loop (dfget's P2PDownloader fields).
struct Loop {
    sh: Rc<Shared>,
    rx: mpsc::UnboundedReceiver<Event>,
    /// Success reports that got through (they end a 602 back-off early).
    nrx: mpsc::UnboundedReceiver<()>,
    queue: VecDeque<Item>,
    /// range -> held (true) or running (false)
    piece_set: HashMap<String, bool>,
    /// The item to report next, held back while successes are merged.
    latest: Option<Item>,
    last_success: Option<Item>,
    stall_ticks: u32,
    /// The 602 back-off bounds in ms.
    wait: (u64, u64),
    tasks: Tasks,
    reports: Tasks,
}

impl Loop {
    fn drain(&mut self) -> Result<(), SimError> {
        while let Ok(ev) = self.rx.try_recv() {
            match ev {
                Event::Outcome(i) => self.queue.push_back(i),
                Event::Fatal(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn running(&self) -> usize {
        self.piece_set.values().filter(|v| !**v).count()
    }

    /// `item` as reported in `session`: an outcome from the session of another supernode goes
    /// to the new one without its source cid.
    fn adopt(mut item: Item, session: &Session) -> Item {
        if item.node != session.node {
            item.dst_cid.clear();
            item.node = session.node.clone();
        }
        item
    }

    /// dfget's getItem: the next item to poll with, or `None` when this round polls nothing (a
    /// success held back to be merged with the next, an outcome of a piece not tracked, 2 s
    /// without news). Successes trigger a poll only when at most 2 pieces run and nothing else
    /// is queued; failures always do.
    async fn next_item(&mut self) -> Result<Option<Item>, SimError> {
        self.drain()?;
        let item = match self.queue.pop_front() {
            Some(i) => Some(i),
            None => match tokio::time::timeout(Duration::from_secs(2), self.rx.recv()).await {
                Ok(Some(Event::Outcome(i))) => Some(i),
                Ok(Some(Event::Fatal(e))) => return Err(e),
                Ok(None) => return Err(SimError::Protocol("piece queue closed".into())),
                Err(_) => None,
            },
        };
        let session = self.sh.session();
        let mut need_merge = true;
        match item {
            Some(item) => {
                self.stall_ticks = 0;
                // a piece numbered for the piece size of an earlier supernode
                if item.piece_size != 0 && item.piece_size != session.piece_size {
                    return Ok(None);
                }
                let item = Self::adopt(item, &session);
                if !item.range.is_empty() {
                    match self.piece_set.get(&item.range).copied() {
                        None => return Ok(None),
                        Some(false) if matches!(item.result, RESULT_SEMISUC | RESULT_SUC) => {
                            self.piece_set.insert(item.range.clone(), true);
                        }
                        Some(false) => {
                            self.piece_set.remove(&item.range);
                        }
                        Some(true) => {}
                    }
                }
                if matches!(item.result, RESULT_SEMISUC | RESULT_SUC) {
                    self.last_success = Some(item.clone());
                }
                self.latest = Some(item);
            }
            None => {
                need_merge = false;
                if self.latest.is_none() && self.running() == 0 {
                    // dfget would wait here until its download timeout; poll again
                    self.stall_ticks += 1;
                    if self.stall_ticks >= 2 {
                        self.stall_ticks = 0;
                        Stats::inc(&self.sh.stats.stalls);
                        let again = self.last_success.clone().unwrap_or_else(|| Item::start(&session.node));
                        self.latest = Some(Self::adopt(again, &session));
                    }
                }
            }
        }
        let Some(l) = self.latest.as_ref() else { return Ok(None) };
        if matches!(l.result, RESULT_SUC | RESULT_FAIL | RESULT_INVALID) {
            need_merge = false;
        }
        self.drain()?;
        if need_merge && (!self.queue.is_empty() || self.running() > 2) {
            return Ok(None);
        }
        Ok(self.latest.take())
    }

    /// Sleeps a random time within the back-off bounds (less when a success report gets
    /// through), then doubles them until they reach [800, 1600) ms.
    async fn back_off(&mut self) {
        let (min, max) = self.wait;
        let wait = rand::thread_rng().gen_range(min..max);
        let _ = tokio::time::timeout(Duration::from_millis(wait), self.nrx.recv()).await;
        if min < 800 {
            self.wait = (min * 2, max * 2);
        }
    }

    /// A 601: starts one download per piece not yet tracked.
    fn start_pieces(&mut self, data: Option<&Value>) {
        let Some(items) = parse_continue(data) else {
            if data.is_some() {
                Stats::inc(&self.sh.stats.bad_replies);
            }
            return;
        };
        let session = self.sh.session();
        for it in items {
            match self.piece_set.get(&it.range).copied() {
                Some(true) => {
                    // handed out again although held (e.g. by the supernode the run moved to):
                    // not fetched again but reported again, as the last dfget 1.x does
                    Stats::inc(&self.sh.stats.pieces_already_held);
                    let again = Item::success(&session, &it.cid, &it.range);
                    self.queue.push_back(again.clone());
                    self.reports.push(actix_rt::spawn(report_success(self.sh.clone(), session.clone(), again)));
                }
                Some(false) => {}
                None => {
                    self.piece_set.insert(it.range.clone(), false);
                    self.tasks.push(actix_rt::spawn(fetch_piece(self.sh.clone(), it)));
                }
            }
        }
    }
}

/// What the loop needs to know of its peer.
pub(crate) struct Run<'a> {
    pub(crate) config: &'a PeerConfig,
    pub(crate) who: &'a Registrant,
    pub(crate) registrar: &'a Registrar,
    pub(crate) stats: &'a Arc<Stats>,
}

impl Run<'_> {
    /// `POST /task/metrics` as dfget sends it at the end of a run (`bsr`: its back-source reason):
    /// to the supernode in use, naming the task and file length of the first registration `reg`.
    pub(crate) async fn report_metrics(&self, reg: &Registration, port: u16, d: Duration, success: bool, bsr: &str) {
        let Some(current) = self.registrar.current() else { return };
        let control = Control::new(&current.node.addr, self.config.control_timeout);
        let mut fl = reg.file_length;
        if success && fl < 0 {
            fl = std::fs::metadata(&self.config.output).map(|m| m.len() as i64).unwrap_or(fl);
        }
        // dfget's TaskMetricsRequest; Go's omitempty leaves out an empty callSystem, a zero
        // fileLength or port, and success when false
        let mut m = serde_json::Map::new();
        m.insert("IP".into(), Value::from(self.config.ip.to_string()));
        m.insert("backsourceReason".into(), Value::from(bsr));
        m.insert("cID".into(), Value::from(self.who.cid.as_str()));
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
            if let Ok((200, bytes)) = control.post_json("/task/metrics", &body).await {
                if reply_code(&bytes) == Some(1) {
                    return;
                }
            }
        }
    }

    /// The p2p download (dfget's P2PDownloader), starting in the registration `first`: returns
    /// (output md5, finish data).
    pub(crate) async fn download(&self, first: &Registered) -> Result<(String, Option<FinishData>), SimError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.config.output)
            .map_err(|e| io_err(&format!("open {}", self.config.output.display()), e))?;
        let (tx, rx) = mpsc::unbounded_channel::<Event>();
        let (ntx, nrx) = mpsc::unbounded_channel::<()>();
        let pieces = awc::Client::builder()
            .no_default_headers()
            .timeout(Duration::from_secs(3600))
            .connector(
                awc::Connector::new().timeout(Duration::from_millis(500)).conn_keep_alive(Duration::from_secs(1)),
            )
            .finish();
        let file = Arc::new(file);
        let sink = self.config.sink.clone().map(|group| Arc::new(Sink::join(group, file.clone())));
        let shared = Rc::new(Shared {
            session: std::cell::RefCell::new(session_of(first, self.config.control_timeout)),
            cid: self.who.cid.clone(),
            cdn_source: first.reg.cdn_source.clone(),
            file,
            sink,
            pieces,
            stats: self.stats.clone(),
            tx,
            notify: ntx,
            sem: Semaphore::new(self.config.piece_concurrency.max(1)),
            piece_timeout: self.config.piece_timeout,
            piece_delay: self.config.piece_delay,
            claim_unfetched: self.config.claim_unfetched,
            file_length: first.reg.file_length,
            held: Default::default(),
            scope: self.config.scope.clone(),
        });
        let mut lp = Loop {
            sh: shared,
            rx,
            nrx,
            queue: VecDeque::new(),
            piece_set: HashMap::new(),
            latest: None,
            last_success: None,
            stall_ticks: 0,
            wait: (50, 100),
            tasks: Tasks::default(),
            reports: Tasks::default(),
        };
        let mut pending = Some(Item::start(&first.node.addr));
        loop {
            let mut cur = match pending.take() {
                Some(i) => i,
                None => match lp.next_item().await? {
                    Some(i) => i,
                    None => continue,
                },
            };
            let reply = self.pull(&mut lp, &mut cur).await?;
            match reply.code {
                PEER_CONTINUE => lp.start_pieces(reply.data.as_ref()),
                PEER_FINISH => {
                    let finish = self.finish(&lp.sh, first.reg.file_length, reply.data.as_ref()).await?;
                    // let the success reports still on the way arrive (they have their own
                    // timeouts: 3 attempts of at most control_timeout + 0.55 s)
                    let outstanding: Vec<JoinHandle<()>> =
                        std::mem::take(&mut lp.reports.0).into_iter().chain(std::mem::take(&mut lp.tasks.0)).collect();
                    let cap = self.config.control_timeout * 3 + Duration::from_secs(2);
                    let _ = tokio::time::timeout(cap, futures_util::future::join_all(outstanding)).await;
                    return Ok(finish);
                }
                // 602 with news queued, 603, 200: go on
                _ => {}
            }
        }
    }

    /// dfget's pullPieceTask: polls with `cur`, again after each 602 until news is queued, and
    /// returns the first answer dfget goes on with. On any other answer or a failed request the
    /// run migrates and polls the new supernode with `cur` as its first poll (`status=700`);
    /// when no supernode accepts, that failure ends the run.
    async fn pull(&self, lp: &mut Loop, cur: &mut Item) -> Result<Reply, SimError> {
        loop {
            let failure = loop {
                let r = match self.poll(&lp.sh.session(), cur).await {
                    Ok(r) => r,
                    Err(e) => break e,
                };
                match r.code {
                    PEER_WAIT => {}
                    PEER_CONTINUE | PEER_FINISH | PEER_LIMITED | CODE_SUCCESS => return Ok(r),
                    code => break SimError::Poll { code, msg: r.msg },
                }
                lp.drain()?;
                if !lp.queue.is_empty() {
                    return Ok(r);
                }
                lp.back_off().await;
            };
            if !self.migrate(lp).await? {
                return Err(failure);
            }
            cur.status = STATUS_START;
        }
    }

    /// Registers with the next supernode of the list and makes it the session in use; false
    /// when none accepts. Pieces are numbered by their size, so when the new supernode cuts the
    /// file into pieces of another size, what is held is forgotten and the file starts over.
    async fn migrate(&self, lp: &mut Loop) -> Result<bool, SimError> {
        Stats::inc(&self.stats.migrations);
        let Ok(r) = self.registrar.register(self.config, self.who, self.stats).await else { return Ok(false) };
        let session = session_of(&r, self.config.control_timeout);
        if session.piece_size != lp.sh.session().piece_size {
            if lp.sh.sink.is_some() {
                return Err(SimError::Config("a sink output cannot start over with another piece size".into()));
            }
            lp.piece_set.clear();
            lp.sh.held.borrow_mut().clear();
            lp.sh.file.set_len(0).map_err(|e| io_err("truncate the output for a new piece size", e))?;
        }
        *lp.sh.session.borrow_mut() = session;
        Ok(true)
    }

    /// On 600: every piece of the `file_length` bytes must be held and the file's md5 must be
    /// the expected one (the user's, else the one in the reply).
    async fn finish(
        &self,
        shared: &Shared,
        file_length: i64,
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
        if file_length > 0 {
            if let Some(n) = piece_count(file_length, shared.session().piece_size) {
                let held = shared.held.borrow();
                let missing: Vec<u64> = (0..n).filter(|i| !held.contains(i)).take(20).collect();
                if !missing.is_empty() {
                    return Err(SimError::Protocol(format!("600 while pieces {missing:?} are missing")));
                }
            }
        }
        let real = match &shared.sink {
            Some(sink) => {
                let pieces = piece_count(file_length, shared.session().piece_size).unwrap_or(0);
                sink.md5(pieces).ok_or_else(|| SimError::Protocol("600 before the sink hashed every piece".into()))?
            }
            None => {
                let file = shared.file.clone();
                let path = self.config.output.clone();
                tokio::task::spawn_blocking(move || {
                    file.sync_data().ok();
                    md5_file(&path)
                })
                .await
                .map_err(|e| io_err("md5", e))?
                .map_err(|e| io_err("md5", e))?
            }
        };
        if !expected.is_empty() && real != expected {
            return Err(SimError::Md5Mismatch { real, expected });
        }
        Ok((real, fd))
    }

    /// One `/peer/task` request to the supernode of `session` reporting `item`.
    async fn poll(&self, session: &Session, item: &Item) -> Result<Reply, SimError> {
        let target = format!(
            "/peer/task?srcCid={}&dstCid={}&range={}&result={}&status={}&taskId={}",
            self.who.cid, item.dst_cid, item.range, item.result, item.status, session.task_id
        );
        Stats::inc(&self.stats.polls);
        let (status, body) = session.control.get(&target).await?;
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
        self.stats.poll_answered(code);
        let data = get_ci(&v, "data").filter(|d| !d.is_null()).cloned();
        Ok(Reply { code, msg, data })
    }
}
