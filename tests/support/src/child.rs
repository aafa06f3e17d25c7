//! The supernode binary as a child process, for what only a real process shows: flags,
//! environment and config file, signals, SIGKILL mid-run, memory and CPU use.
//!
//! Servers are started on port 0 and report where they listen: the addresses are read from
//! the `supernode listening control_addr=… download_addr=…` line of their log, so no port is
//! picked up front that another process could take before the server binds it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::process::{field, strip_ansi, LoggedChild};

/// How long a server may take to start listening.
const STARTUP: Duration = Duration::from_secs(20);

/// The binary at `exe` (a test passes `env!("CARGO_BIN_EXE_supernode")`) with none of the
/// test's `SUPERNODE_*` variables, loopback-only addresses, and a default configuration file
/// that does not exist (so no test reads the host's `/etc/dragonfly/supernode.yml`); ports
/// and home are the caller's.
pub fn supernode_command(exe: &str) -> Command {
    let mut cmd = Command::new(exe);
    without_supernode_env(&mut cmd);
    cmd.env("SUPERNODE_DEFAULT_CONFIG", absent_default_config());
    cmd.args(["--advertise-ip", "127.0.0.1", "--listen-host", "127.0.0.1"]);
    cmd
}

/// Removes the test's `SUPERNODE_*` variables from what `cmd` will see.
pub(crate) fn without_supernode_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SUPERNODE_") {
            cmd.env_remove(key);
        }
    }
}

/// A path whose directory does not exist: a default configuration file that is not there.
pub fn absent_default_config() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("supernode-tests-{}-absent", std::process::id())).join("supernode.yml")
}

/// A supernode child process with its output in a log; killed when dropped.
pub struct ChildServer {
    process: LoggedChild,
    listening: Option<(SocketAddr, SocketAddr)>,
    /// Holds the configuration file given at start, if any.
    _config: Option<tempfile::TempDir>,
}

impl ChildServer {
    /// Runs the binary at `exe` on ephemeral loopback ports with `home`; returns once it
    /// listens (blocking the calling thread meanwhile, well under a second).
    pub fn start(exe: &str, home: &Path) -> ChildServer {
        let mut server = ChildServer::spawn(Self::command(exe, home));
        server.wait_listening();
        server
    }

    /// [`ChildServer::start`] with `config` (TOML) as its `--config` file.
    pub fn start_with_config(exe: &str, home: &Path, config: &str) -> ChildServer {
        let dir = tempfile::tempdir().expect("config dir");
        let file = dir.path().join("supernode.toml");
        std::fs::write(&file, config).expect("config file");
        let mut cmd = Self::command(exe, home);
        cmd.arg("--config").arg(&file);
        let mut server = ChildServer { _config: Some(dir), ..ChildServer::spawn(cmd) };
        server.wait_listening();
        server
    }

    fn command(exe: &str, home: &Path) -> Command {
        let mut cmd = supernode_command(exe);
        cmd.args(["--port", "0", "--download-port", "0"]).arg("--home-dir").arg(home);
        cmd
    }

    /// Starts `cmd` (e.g. from [`supernode_command`]) without waiting for anything.
    pub fn spawn(cmd: Command) -> ChildServer {
        ChildServer { process: LoggedChild::spawn(cmd), listening: None, _config: None }
    }

    /// Waits (blocking) until the server logs that it listens; returns the control and the
    /// download address. Panics with the log if it exits first or takes over 20 s.
    pub fn wait_listening(&mut self) -> (SocketAddr, SocketAddr) {
        let addrs = self.process.wait_for_line(STARTUP, "supernode listening", |line| {
            if !line.contains("supernode listening") {
                return None;
            }
            let addr = |key| field(line, key).and_then(|v| v.parse::<SocketAddr>().ok());
            Some((addr("control_addr")?, addr("download_addr")?))
        });
        self.listening = Some(addrs);
        addrs
    }

    /// Waits (blocking) for the process to exit on its own; `None` if it still runs after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        self.process.wait_exit(within)
    }

    /// The control API's address (the server must be listening).
    pub fn control(&self) -> SocketAddr {
        self.addrs().0
    }

    /// The download port's address (the server must be listening).
    pub fn download(&self) -> SocketAddr {
        self.addrs().1
    }

    fn addrs(&self) -> (SocketAddr, SocketAddr) {
        self.listening.expect("the server is listening (call wait_listening first)")
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// [`ChildServer::log`] without terminal colour codes, one line per log line.
    pub fn plain_log(&self) -> String {
        self.process.log().lines().map(|l| strip_ansi(l) + "\n").collect()
    }

    /// SIGKILL, then reap: the exit status.
    pub fn kill(&mut self) -> ExitStatus {
        self.process.kill()
    }
}
