//! Peer hosts: one dfget-sim process per host, inside the host's namespace, and a swarm run of
//! several of them.
//!
//! A peer process is this very executable started again with [`PEER_ROLE_ARG`]: its `main`
//! hands such a start to dfget-sim's command line ([`run_host_role_if_asked`]), so the peer
//! code always is the code the harness was built with, never a stale `dfget-sim` binary.
//!
//! A peer keeps serving pieces after its own download until its stdin closes (dfget's uploader
//! also outlives the download), so hosts that finish early go on feeding the others. The run
//! learns that a host is done from the line dfget-sim writes on stderr at that moment, closes
//! every stdin once all are done, and reads each report (with its final upload counters) from
//! stdout. A harness that dies closes the pipes too, and the peers end by themselves.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::figures::process_cpu_secs;
use super::namespace_exec::command_in;
use super::net::{Host, SUBNET};

/// The first argument that makes this executable a peer host's dfget-sim.
pub const PEER_ROLE_ARG: &str = "--testbed-peer";
/// Set in a peer process, so that one whose `main` forgot the dispatch fails at once instead
/// of building a testbed of its own.
pub(crate) const PEER_ROLE_ENV: &str = "SUPERNODE_TESTBED_PEER";

/// Call first in the `main` of a bench or test that uses a testbed: when this process was
/// started as a peer host, it runs dfget-sim's command line and exits; otherwise it returns.
pub fn run_host_role_if_asked() {
    let mut args = std::env::args_os();
    let _program = args.next();
    if args.next().as_deref() == Some(PEER_ROLE_ARG.as_ref()) {
        let argv = std::iter::once(OsString::from("dfget-sim")).chain(args);
        std::process::exit(dfget_sim::cli::run_command_line(argv));
    }
}

/// What the harness hears from a peer process.
enum PeerEvent {
    /// dfget-sim's `download finished` / `download FAIL` line.
    Done { peer: usize },
    /// Its stderr closed: the process has exited.
    Exited { peer: usize },
}

/// One running peer process; killed when dropped.
struct PeerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<JoinHandle<String>>,
    log: Arc<Mutex<String>>,
}

impl PeerProcess {
    fn start(
        index: usize,
        host: &Host,
        node: &str,
        url: &str,
        output: &Path,
        events: Sender<PeerEvent>,
    ) -> PeerProcess {
        let exe = std::env::current_exe().expect("this executable");
        let mut cmd = command_in(&host.namespace, exe);
        cmd.env(PEER_ROLE_ENV, "1").arg(PEER_ROLE_ARG);
        cmd.args(["--node", node, "--url", url, "--ip", &host.ip.to_string(), "--allow-net", SUBNET]);
        cmd.arg("--output").arg(output).arg("--serve-until-stdin-closes");
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting peer {index}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let seen = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let done =
                    ["dfget-sim: download finished", "dfget-sim: download FAIL"].iter().any(|l| line.starts_with(l));
                seen.lock().unwrap().push_str(&format!("{line}\n"));
                if done {
                    let _ = events.send(PeerEvent::Done { peer: index });
                }
            }
            let _ = events.send(PeerEvent::Exited { peer: index });
        });
        let mut stdout = child.stdout.take().expect("piped stdout");
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        let stdin = child.stdin.take();
        PeerProcess { child, stdin, stdout: Some(stdout), log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A peer that ended its run: its report (JSON from stdout) and stderr.
pub(crate) struct PeerOutcome {
    pub(crate) index: usize,
    pub(crate) report: Result<dfget_sim::Report, String>,
    pub(crate) log: String,
    /// CPU seconds the process used up to the end of every download (it idles afterwards).
    pub(crate) cpu_secs: f64,
}

/// Runs one peer process on each of `hosts` at once, all downloading `url` from the supernode
/// at `node` into `dir`; returns when every one has reported, in host order, or panics with the
/// peers' logs when `deadline` passes first.
pub(crate) fn run_peers(hosts: &[Host], node: &str, url: &str, dir: &Path, deadline: Duration) -> Vec<PeerOutcome> {
    let (tx, rx) = channel();
    let give_up = Instant::now() + deadline;
    let mut peers: Vec<PeerProcess> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| PeerProcess::start(i, h, node, url, &dir.join(format!("peer{i}.out")), tx.clone()))
        .collect();
    drop(tx);
    let mut done = vec![false; peers.len()];
    let mut exited = vec![false; peers.len()];
    let all_done = wait_for(&rx, give_up, &mut done, &mut exited, |d, _| d.iter().all(|x| *x));
    if !all_done {
        panic_with_logs(&peers, &done, &format!("not every peer finished within {deadline:?}"));
    }
    let cpu: Vec<f64> = peers.iter().map(|p| process_cpu_secs(p.child.id())).collect();
    for p in &mut peers {
        drop(p.stdin.take());
    }
    let give_up = Instant::now() + Duration::from_secs(30);
    if !wait_for(&rx, give_up, &mut done, &mut exited, |_, e| e.iter().all(|x| *x)) {
        panic_with_logs(&peers, &done, "peers did not exit within 30 s of their stdin closing");
    }
    peers
        .iter_mut()
        .enumerate()
        .map(|(index, p)| {
            let status = p.child.wait().expect("wait for a peer");
            let stdout = p.stdout.take().map(|t| t.join().unwrap_or_default()).unwrap_or_default();
            let report = match status.success() {
                true => serde_json::from_str(&stdout).map_err(|e| format!("report not readable ({e}): {stdout}")),
                false => Err(format!("exited with {status}: {stdout}")),
            };
            PeerOutcome { index, report, log: p.log(), cpu_secs: cpu[index] }
        })
        .collect()
}

/// Takes events until `enough` holds for the (done, exited) flags; false when `give_up` passes.
fn wait_for(
    rx: &Receiver<PeerEvent>,
    give_up: Instant,
    done: &mut [bool],
    exited: &mut [bool],
    enough: impl Fn(&[bool], &[bool]) -> bool,
) -> bool {
    while !enough(done, exited) {
        let left = give_up.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(PeerEvent::Done { peer }) => done[peer] = true,
            Ok(PeerEvent::Exited { peer }) => {
                // a process that exits without its done line has failed: it is done as well
                done[peer] = true;
                exited[peer] = true;
            }
            Err(_) => return false,
        }
    }
    true
}

fn panic_with_logs(peers: &[PeerProcess], done: &[bool], why: &str) -> ! {
    let mut text = format!("{why}; peers not done: ");
    let pending: Vec<String> = done.iter().enumerate().filter(|(_, d)| !**d).map(|(i, _)| i.to_string()).collect();
    text.push_str(&pending.join(", "));
    for (i, p) in peers.iter().enumerate() {
        text.push_str(&format!("\n--- peer {i} stderr:\n{}", p.log()));
    }
    panic!("{text}");
}
