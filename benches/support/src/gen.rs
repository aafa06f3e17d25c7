//! A closed-loop load generator for the control port: `conns` requests in flight over
//! keep-alive connections (one awc client, so one connection per in-flight request), driving
//! simulated dfget clients through the piece loop the way dfget 1.0.6 polls `/peer/task`:
//!
//! * `GET /peer/task?…&status=700&result=502` first;
//! * for every piece handed out (601): the piece is "downloaded" at once (no bytes move), then
//!   `GET /peer/piece/suc` and `GET /peer/task?…&status=701&result=503&range=<r>&dstCid=<src>`;
//! * 602/603: the same poll again when the client's turn comes round again (1,000 clients in a
//!   round-robin queue, so a waiting client naturally backs off);
//! * 600: the run is over; with [`Rerun::SameHost`] the client registers again as a new dfget
//!   run (new cid, same host and uploader port), so load continues for as long as asked; with
//!   [`Rerun::NewHost`] the new run is on a new host and the old host is gone without a
//!   `/peer/service/down`, as a machine that was switched off: a piece handed out from one of
//!   its runs fails (`701/500`, as dfget reports a refused connection) and only GC removes it.
//!
//! Every answer is checked: HTTP 200 and the ResultInfo codes dfget expects (600–603 for polls,
//! 611 for success reports, 200 for registrations); anything else counts as an error.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use serde_json::Value;

use crate::stats::Latencies;

#[derive(Clone)]
pub struct GenConfig {
    pub control: SocketAddr,
    /// Requests in flight (= keep-alive connections).
    pub conns: usize,
    /// Simulated clients (each a host with its own uploader port).
    pub clients: usize,
    pub url: String,
    pub task_id: String,
    /// Stop after this long (`None`: when every client has finished one run).
    pub duration: Option<Duration>,
    /// What a client does on 600.
    pub rerun: Rerun,
    pub port_base: u16,
    /// Distinguishes cids between phases of one bench.
    pub tag: String,
}

impl GenConfig {
    /// dfget's piece loop for `clients` clients of task `task_id` (source `url`) at `control`,
    /// each once to the end (no deadline, no reruns; set `duration` and `rerun` for timed runs),
    /// uploader ports from 20000; `tag` keeps the cids of one phase apart from another's.
    pub fn piece_loop(control: SocketAddr, conns: usize, clients: usize, url: &str, task_id: &str, tag: &str) -> Self {
        GenConfig {
            control,
            conns,
            clients,
            url: url.to_string(),
            task_id: task_id.to_string(),
            duration: None,
            rerun: Rerun::Off,
            port_base: 20000,
            tag: tag.to_string(),
        }
    }
}

/// What a client does when its run is over (600).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rerun {
    /// Stops.
    Off,
    /// Registers again as a new run on the same host.
    SameHost,
    /// Registers again as a new run on a new host; the old host vanishes.
    NewHost,
}

/// Requests and errors of one minute of a run.
#[derive(Default, Clone)]
pub struct Window {
    pub lat: Latencies,
    pub errors: u64,
}

#[derive(Default)]
pub struct GenResult {
    pub elapsed: Duration,
    /// "task", "suc", "registry", "ping".
    pub lat: BTreeMap<&'static str, Latencies>,
    /// "task 601" → count.
    pub codes: BTreeMap<String, u64>,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub runs_finished: u64,
    pub pieces: u64,
    /// Requests completed per second of the run (index = second).
    pub per_second: Vec<u64>,
    /// Poll latencies per 10-second window.
    pub task_windows: Vec<Latencies>,
    /// Every request's latency and the errors, per minute.
    pub minutes: Vec<Window>,
    /// Pieces handed out from a vanished host's run and reported failed (not errors).
    pub vanished_sources: u64,
}

impl GenResult {
    pub fn requests(&self) -> u64 {
        self.lat.values().map(|l| l.len() as u64).sum()
    }
    pub fn rps(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64()
    }
    pub fn kind_rps(&self, kind: &str) -> f64 {
        self.lat.get(kind).map(|l| l.len()).unwrap_or(0) as f64 / self.elapsed.as_secs_f64()
    }
    pub fn all(&self) -> Latencies {
        let mut all = Latencies::default();
        for l in self.lat.values() {
            all.extend(l);
        }
        all
    }
    pub fn lat(&self, kind: &str) -> Latencies {
        self.lat.get(kind).cloned().unwrap_or_default()
    }
    pub fn codes_line(&self) -> String {
        self.codes.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
    }
}

#[derive(Clone, Debug)]
enum Req {
    Register,
    Poll {
        status: u16,
        result: u16,
        range: String,
        dst: String,
    },
    Suc {
        range: String,
        dst: String,
    },
    /// `701/500`: the piece's source could not be reached.
    Failed {
        range: String,
        dst: String,
    },
}

impl Req {
    fn start() -> Req {
        Req::Poll { status: 700, result: 502, range: String::new(), dst: String::new() }
    }
}

struct Client {
    slot: usize,
    run: u64,
    cid: String,
    queue: VecDeque<Req>,
    last_poll: Req,
    seen: HashSet<String>,
}

impl Client {
    fn new(cfg: &GenConfig, slot: usize, run: u64, register: bool) -> Client {
        let mut queue = VecDeque::new();
        if register {
            queue.push_back(Req::Register);
        }
        queue.push_back(Req::start());
        Client { slot, run, cid: cid(cfg, slot, run), queue, last_poll: Req::start(), seen: HashSet::new() }
    }
}

fn cid(cfg: &GenConfig, slot: usize, run: u64) -> String {
    format!("127.0.0.1-{}-{slot}-{run}", cfg.tag)
}

/// The (slot, run) of a cid made by [`cid`].
fn slot_run(cid: &str) -> Option<(usize, u64)> {
    let mut parts = cid.rsplit('-');
    let run = parts.next()?.parse().ok()?;
    Some((parts.next()?.parse().ok()?, run))
}

/// dfget's registration body for one simulated client: its own host and uploader port.
fn registry_body(cfg: &GenConfig, slot: usize, run: u64, cid: &str) -> String {
    let mut body = testkit::dfget_body(&cfg.url, cid);
    match cfg.rerun {
        Rerun::NewHost => {
            // a host of its own, address too: 127.x.y.z, all loopback
            let n = (run as usize * cfg.clients + slot + 1) as u32;
            body["hostName"] = format!("bench-host-{slot}-{run}").into();
            body["ip"] = std::net::Ipv4Addr::from(0x7f00_0000 | (n & 0x00ff_ffff)).to_string().into();
        }
        Rerun::Off | Rerun::SameHost => body["hostName"] = format!("bench-host-{slot}").into(),
    }
    body["port"] = (cfg.port_base as usize + slot).into();
    body["path"] = format!("/peer/file/bench-{cid}").into();
    body.to_string()
}

pub fn client(conns: usize) -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .connector(
            awc::Connector::new()
                .limit(conns.max(1) * 2)
                .conn_keep_alive(Duration::from_secs(300))
                .conn_lifetime(Duration::from_secs(3600)),
        )
        .finish()
}

struct Shared {
    cfg: GenConfig,
    http: awc::Client,
    ready: RefCell<VecDeque<Client>>,
    active: Cell<usize>,
    result: RefCell<GenResult>,
    started: Instant,
    deadline: Option<Instant>,
    /// The run each slot is on ([`Rerun::NewHost`]: the hosts of earlier runs are gone).
    runs: RefCell<Vec<u64>>,
}

impl Shared {
    fn error(&self, what: String) {
        let minute = self.started.elapsed().as_secs() as usize / 60;
        let mut r = self.result.borrow_mut();
        r.errors += 1;
        if r.minutes.len() <= minute {
            r.minutes.resize(minute + 1, Window::default());
        }
        r.minutes[minute].errors += 1;
        if r.error_samples.len() < 20 {
            r.error_samples.push(what);
        }
    }
    fn count(&self, key: String) {
        *self.result.borrow_mut().codes.entry(key).or_default() += 1;
    }
    fn record(&self, kind: &'static str, d: Duration) {
        let mut r = self.result.borrow_mut();
        r.lat.entry(kind).or_default().record(d);
        let sec = self.started.elapsed().as_secs() as usize;
        if r.per_second.len() <= sec {
            r.per_second.resize(sec + 1, 0);
        }
        r.per_second[sec] += 1;
        if r.minutes.len() <= sec / 60 {
            r.minutes.resize(sec / 60 + 1, Window::default());
        }
        r.minutes[sec / 60].lat.record(d);
        if kind == "task" {
            let w = sec / 10;
            if r.task_windows.len() <= w {
                r.task_windows.resize(w + 1, Latencies::default());
            }
            r.task_windows[w].record(d);
        }
    }
    fn over(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
    /// Whether `cid` is a run of a host that is gone.
    fn vanished(&self, cid: &str) -> bool {
        self.cfg.rerun == Rerun::NewHost
            && slot_run(cid).is_some_and(|(slot, run)| self.runs.borrow().get(slot).is_some_and(|now| run < *now))
    }
}

/// One request: (HTTP status, body) or a transport error, and the latency.
async fn send(req: awc::ClientRequest, body: Option<String>) -> (Result<(u16, Bytes), String>, Duration) {
    let t = Instant::now();
    let sent = match body {
        Some(b) => req.insert_header(("Content-Type", "application/json;charset=utf-8")).send_body(b).await,
        None => req.send().await,
    };
    let out = match sent {
        Err(e) => Err(format!("send: {e}")),
        Ok(mut res) => match res.body().limit(4 << 20).await {
            Ok(b) => Ok((res.status().as_u16(), b)),
            Err(e) => Err(format!("body: {e}")),
        },
    };
    (out, t.elapsed())
}

fn code_of(body: &[u8]) -> Option<(i64, Value)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let code = v.get("code")?.as_i64()?;
    Some((code, v))
}

async fn worker(sh: Rc<Shared>) {
    let base = format!("http://{}", sh.cfg.control);
    loop {
        if sh.over() {
            return;
        }
        let next = sh.ready.borrow_mut().pop_front();
        let Some(mut c) = next else {
            if sh.active.get() == 0 {
                return;
            }
            actix_web::rt::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let req = c.queue.pop_front().unwrap_or_else(|| c.last_poll.clone());
        let mut finished = false;
        match &req {
            Req::Register => {
                let body = registry_body(&sh.cfg, c.slot, c.run, &c.cid);
                let (out, d) = send(sh.http.post(format!("{base}/peer/registry")), Some(body)).await;
                sh.record("registry", d);
                match out {
                    Ok((200, b)) => match code_of(&b) {
                        Some((200, _)) => sh.count("registry 200".into()),
                        other => {
                            sh.count(format!("registry {:?}", other.map(|o| o.0)));
                            sh.error(format!("registry: {}", String::from_utf8_lossy(&b)));
                        }
                    },
                    Ok((s, b)) => sh.error(format!("registry HTTP {s}: {}", String::from_utf8_lossy(&b))),
                    Err(e) => sh.error(format!("registry: {e}")),
                }
            }
            Req::Suc { range, dst } => {
                let url = format!(
                    "{base}/peer/piece/suc?taskId={}&cid={}&dstCid={dst}&pieceRange={range}",
                    sh.cfg.task_id, c.cid
                );
                let (out, d) = send(sh.http.get(url), None).await;
                sh.record("suc", d);
                match out {
                    Ok((200, b)) => match code_of(&b) {
                        Some((611, _)) => {
                            sh.count("suc 611".into());
                            sh.result.borrow_mut().pieces += 1;
                        }
                        other => {
                            sh.count(format!("suc {:?}", other.map(|o| o.0)));
                            sh.error(format!("suc: {}", String::from_utf8_lossy(&b)));
                        }
                    },
                    Ok((s, b)) => sh.error(format!("suc HTTP {s}: {}", String::from_utf8_lossy(&b))),
                    Err(e) => sh.error(format!("suc: {e}")),
                }
            }
            Req::Failed { range, dst } => {
                sh.result.borrow_mut().vanished_sources += 1;
                c.seen.remove(range);
                let failed = Req::Poll { status: 701, result: 500, range: range.clone(), dst: dst.clone() };
                c.queue.push_front(failed);
            }
            Req::Poll { status, result, range, dst } => {
                c.last_poll = req.clone();
                let url = format!(
                    "{base}/peer/task?srcCid={}&dstCid={dst}&range={range}&result={result}&status={status}&taskId={}",
                    c.cid, sh.cfg.task_id
                );
                let (out, d) = send(sh.http.get(url), None).await;
                sh.record("task", d);
                match out {
                    Ok((200, b)) => match code_of(&b) {
                        Some((601, v)) => {
                            sh.count("task 601".into());
                            for item in v.get("data").and_then(Value::as_array).into_iter().flatten() {
                                let r = item.get("range").and_then(Value::as_str).unwrap_or("").to_string();
                                let src = item.get("cid").and_then(Value::as_str).unwrap_or("").to_string();
                                if r.is_empty() || !c.seen.insert(r.clone()) {
                                    continue;
                                }
                                if sh.vanished(&src) {
                                    c.queue.push_back(Req::Failed { range: r, dst: src });
                                    continue;
                                }
                                c.queue.push_back(Req::Suc { range: r.clone(), dst: src.clone() });
                                c.queue.push_back(Req::Poll { status: 701, result: 503, range: r, dst: src });
                            }
                        }
                        Some((code @ (602 | 603), _)) => sh.count(format!("task {code}")),
                        Some((600, _)) => {
                            sh.count("task 600".into());
                            finished = true;
                        }
                        other => {
                            sh.count(format!("task {:?}", other.as_ref().map(|o| o.0)));
                            sh.error(format!("task: {}", String::from_utf8_lossy(&b)));
                        }
                    },
                    Ok((s, b)) => sh.error(format!("task HTTP {s}: {}", String::from_utf8_lossy(&b))),
                    Err(e) => sh.error(format!("task: {e}")),
                }
            }
        }
        if finished {
            sh.result.borrow_mut().runs_finished += 1;
            if sh.cfg.rerun == Rerun::Off {
                sh.active.set(sh.active.get() - 1);
            } else {
                if let Some(run) = sh.runs.borrow_mut().get_mut(c.slot) {
                    *run = c.run + 1;
                }
                let next = Client::new(&sh.cfg, c.slot, c.run + 1, true);
                sh.ready.borrow_mut().push_back(next);
            }
        } else {
            sh.ready.borrow_mut().push_back(c);
        }
    }
}

/// Registers `cfg.clients` clients (not timed as part of the run); returns failures.
pub async fn register_all(cfg: &GenConfig, http: &awc::Client) -> u64 {
    let base = format!("http://{}", cfg.control);
    let next = Cell::new(0usize);
    let failures = Cell::new(0u64);
    let one = || async {
        loop {
            let slot = next.get();
            if slot >= cfg.clients {
                return;
            }
            next.set(slot + 1);
            let body = registry_body(cfg, slot, 0, &cid(cfg, slot, 0));
            let (out, _) = send(http.post(format!("{base}/peer/registry")), Some(body)).await;
            let ok = matches!(&out, Ok((200, b)) if code_of(b).map(|c| c.0) == Some(200));
            if !ok {
                failures.set(failures.get() + 1);
                eprintln!("registration failed: {:?}", out.map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned())));
            }
        }
    };
    futures_util::future::join_all((0..cfg.conns).map(|_| one())).await;
    failures.get()
}

/// Drives the registered clients (see the module doc).
pub async fn run_scheduler(cfg: &GenConfig) -> GenResult {
    let http = client(cfg.conns);
    let ready = (0..cfg.clients).map(|slot| Client::new(cfg, slot, 0, false)).collect();
    let started = Instant::now();
    let sh = Rc::new(Shared {
        cfg: cfg.clone(),
        http,
        ready: RefCell::new(ready),
        active: Cell::new(cfg.clients),
        result: RefCell::new(GenResult::default()),
        started,
        deadline: cfg.duration.map(|d| started + d),
        runs: RefCell::new(vec![0; cfg.clients]),
    });
    futures_util::future::join_all((0..cfg.conns).map(|_| worker(sh.clone()))).await;
    let mut r = std::mem::take(&mut *sh.result.borrow_mut());
    r.elapsed = started.elapsed();
    r
}

/// The baseline: `GET /_ping` with the same concurrency, for `requests` requests or `duration`.
pub async fn run_ping(
    control: SocketAddr,
    conns: usize,
    requests: Option<u64>,
    duration: Option<Duration>,
) -> GenResult {
    let http = client(conns);
    let url = format!("http://{control}/_ping");
    let started = Instant::now();
    let deadline = duration.map(|d| started + d);
    let issued = Cell::new(0u64);
    let result = RefCell::new(GenResult::default());
    let one = || async {
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return;
            }
            if requests.is_some_and(|n| issued.get() >= n) {
                return;
            }
            issued.set(issued.get() + 1);
            let (out, d) = send(http.get(url.as_str()), None).await;
            let mut r = result.borrow_mut();
            r.lat.entry("ping").or_default().record(d);
            let sec = started.elapsed().as_secs() as usize;
            if r.per_second.len() <= sec {
                r.per_second.resize(sec + 1, 0);
            }
            r.per_second[sec] += 1;
            match out {
                Ok((200, _)) => *r.codes.entry("ping 200".into()).or_default() += 1,
                Ok((s, _)) => {
                    r.errors += 1;
                    *r.codes.entry(format!("ping HTTP {s}")).or_default() += 1;
                }
                Err(e) => {
                    r.errors += 1;
                    if r.error_samples.len() < 20 {
                        r.error_samples.push(e);
                    }
                }
            }
        }
    };
    futures_util::future::join_all((0..conns).map(|_| one())).await;
    let mut r = result.into_inner();
    r.elapsed = started.elapsed();
    r
}
