//! The Go supernode 1.0.6 swapped for this one: its command line, its `supernode.yml`, its
//! subcommands and its profiler work unchanged.
//!
//! * `command_line`: Go's flags in Go's syntax on the real binary;
//! * `go_yaml`: `supernode.yml` files, the default path, wrong types and warnings;
//! * `subcommands`: `version`, and `config default` whose output is accepted back;
//! * `profiler`: `/debug/pprof/profile` with `--profiler`, and its token;
//! * `effects`: what the flags and keys change, seen through scheduling, registration and
//!   garbage collection on the server's manual clock.

mod command_line;
mod effects;
mod go_yaml;
mod profiler;
mod subcommands;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use serde_json::Value;
use testkit::ChildServer;

/// The control port a server uses when nothing sets one.
const DEFAULT_PORT: u16 = 8002;

/// The binary with a clean `SUPERNODE_*` environment, loopback-only addresses and no default
/// configuration file.
fn supernode() -> Command {
    testkit::supernode_command(env!("CARGO_BIN_EXE_supernode"))
}

/// Starts `cmd` and waits until it listens and answers `/_ping`.
async fn start_serving(cmd: Command) -> ChildServer {
    let mut server = ChildServer::spawn(cmd);
    server.wait_listening();
    let (status, body) = testkit::get(&server, "/_ping").await;
    assert_eq!((status, body.as_str()), (200, "OK"), "/_ping:\n{}", server.log());
    server
}

/// Runs a supernode that is expected to stop at start; its status and output.
fn run_failing(cmd: Command) -> (ExitStatus, String) {
    let mut server = ChildServer::spawn(cmd);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("supernode did not stop:\n{}", server.log()));
    (status, server.log())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

fn arg(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The supernode's own entry in `GET /api/v1/peers`.
async fn super_peer(s: &impl testkit::Control) -> Value {
    let (status, peers) = testkit::get_json(s, "/api/v1/peers?pageNum=0&pageSize=10").await;
    assert_eq!(status, 200, "GET /api/v1/peers?pageNum=0&pageSize=10 → {peers}");
    let peers = peers.as_array().cloned().unwrap_or_default();
    assert_eq!(peers.len(), 1, "only the supernode is registered: {peers:?}");
    peers[0].clone()
}

/// The lines of a child's log at `level` (`WARN`, `DEBUG`…).
fn lines_at<'a>(log: &'a str, level: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.split_whitespace().nth(1) == Some(level)).collect()
}
