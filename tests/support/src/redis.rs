//! A real Redis (Debian's `redis-server`) on loopback, for the cluster tests: started by the
//! test, killed with SIGKILL to test an outage, and started again on the same port.
//!
//! Redis cannot bind port 0 (that turns TCP off), so a random port is tried and another
//! one when it is taken; nothing is bound and released up front.

use std::process::Command;
use std::time::Duration;

use crate::process::LoggedChild;

/// How long Redis may take to be ready.
const STARTUP: Duration = Duration::from_secs(10);

pub struct RedisServer {
    process: Option<LoggedChild>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port; panics, naming the package, when it
    /// is not installed (`.ci/run` installs it).
    pub fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("redis dir");
        for attempt in 0..20u16 {
            let port = 20000 + (std::process::id() as u16 % 20000) + attempt * 997 % 20000;
            if let Some(process) = spawn(port, &dir) {
                return RedisServer { process: Some(process), port, dir };
            }
        }
        panic!("redis-server did not start on any of 20 ports");
    }

    /// `redis://127.0.0.1:<port>/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// SIGKILL: Redis is gone, and with it (no persistence) everything it held.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.process = Some(spawn(self.port, &self.dir).expect("redis-server restarts on its port"));
    }
}

/// `redis-server` on `port`, once it accepts connections; `None` when the port is taken.
fn spawn(port: u16, dir: &tempfile::TempDir) -> Option<LoggedChild> {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"]);
    cmd.arg("--dir").arg(dir.path());
    let mut child = LoggedChild::try_spawn(cmd).unwrap_or_else(|e| {
        panic!("cannot run redis-server ({e}): install Debian's redis-server package");
    });
    let ready = child.wait_for_line_or_exit(STARTUP, |line| line.contains("Ready to accept connections").then_some(()));
    ready.map(|()| child)
}
