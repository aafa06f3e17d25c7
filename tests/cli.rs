//! The real binary: configuration precedence and errors, the home dir, and SIGTERM.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const STARTUP: Duration = Duration::from_secs(10);

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral port");
    l.local_addr().unwrap().port()
}

/// The binary with a clean `SUPERNODE_*` environment and loopback-only addresses.
fn supernode() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_supernode"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SUPERNODE_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(["--advertise-ip", "127.0.0.1", "--listen-host", "127.0.0.1"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    cmd
}

/// `GET /_ping` over HTTP/1.0; true on `200` with body `OK`.
fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET /_ping HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    let status_ok =
        reply.lines().next().is_some_and(|l| l.starts_with("HTTP/1.") && l.split(' ').nth(1) == Some("200"));
    status_ok && reply.ends_with("\r\n\r\nOK")
}

/// A running supernode; killed when dropped.
struct Running {
    child: Child,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Starts `cmd` (stderr to a file in a temp dir) without waiting for it to listen.
    fn spawn(mut cmd: Command) -> Running {
        let dir = tempfile::tempdir().expect("temp dir");
        let stderr = dir.path().join("stderr.log");
        cmd.stderr(std::fs::File::create(&stderr).expect("stderr file"));
        let child = cmd.spawn().expect("spawn supernode");
        Running { child, stderr, _dir: dir }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until `port` answers `/_ping`; panics (with the log) if it exits or times out.
    fn wait_ready(&mut self, port: u16) {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("supernode exited with {status} before answering on {port}:\n{}", self.stderr());
            }
            if ping(port) {
                return;
            }
            if Instant::now() > deadline {
                panic!("supernode did not answer /_ping on {port} within {STARTUP:?}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit on its own.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a supernode that is expected to fail at start; returns its status and stderr.
fn run_failing(cmd: Command) -> (ExitStatus, String) {
    let mut r = Running::spawn(cmd);
    let status = r.wait_exit(STARTUP).unwrap_or_else(|| panic!("supernode did not exit:\n{}", r.stderr()));
    let stderr = r.stderr();
    (status, stderr)
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("supernode.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn arg(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

// ---------------------------------------------------------------------------------------
// precedence: flags > environment > file > defaults
// ---------------------------------------------------------------------------------------

#[test]
fn config_file_sets_the_port() {
    let home = tempfile::tempdir().unwrap();
    let (a, dl) = (free_port(), free_port());
    let config = write_config(home.path(), &format!("[server]\nport = {a}\n"));
    let mut cmd = supernode();
    cmd.args(["--config", arg(&config), "--home-dir", arg(home.path()), "--download-port", &dl.to_string()]);
    let mut r = Running::spawn(cmd);
    r.wait_ready(a);
}

#[test]
fn env_overrides_config_file() {
    let home = tempfile::tempdir().unwrap();
    let (a, b, dl) = (free_port(), free_port(), free_port());
    let config = write_config(home.path(), &format!("[server]\nport = {a}\n"));
    let mut cmd = supernode();
    cmd.env("SUPERNODE_PORT", b.to_string());
    cmd.args(["--config", arg(&config), "--home-dir", arg(home.path()), "--download-port", &dl.to_string()]);
    let mut r = Running::spawn(cmd);
    r.wait_ready(b);
    assert!(!ping(a), "the file's port {a} answers although SUPERNODE_PORT={b}");
}

#[test]
fn flag_overrides_env_and_config_file() {
    let home = tempfile::tempdir().unwrap();
    let (a, b, c, dl) = (free_port(), free_port(), free_port(), free_port());
    let config = write_config(home.path(), &format!("[server]\nport = {a}\n"));
    let mut cmd = supernode();
    cmd.env("SUPERNODE_PORT", b.to_string());
    cmd.args(["--config", arg(&config), "--home-dir", arg(home.path()), "--download-port", &dl.to_string()]);
    cmd.args(["--port", &c.to_string()]);
    let mut r = Running::spawn(cmd);
    r.wait_ready(c);
    assert!(!ping(a), "the file's port {a} answers although --port {c}");
    assert!(!ping(b), "the env port {b} answers although --port {c}");
}

#[test]
fn config_file_via_env() {
    let home = tempfile::tempdir().unwrap();
    let (a, dl) = (free_port(), free_port());
    let config = write_config(home.path(), &format!("[server]\nport = {a}\n"));
    let mut cmd = supernode();
    cmd.env("SUPERNODE_CONFIG", arg(&config));
    cmd.args(["--home-dir", arg(home.path()), "--download-port", &dl.to_string()]);
    let mut r = Running::spawn(cmd);
    r.wait_ready(a);
}

// ---------------------------------------------------------------------------------------
// configuration errors
// ---------------------------------------------------------------------------------------

#[test]
fn missing_config_file_is_an_error() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("does-not-exist.toml");
    let mut cmd = supernode();
    cmd.args(["--config", arg(&missing), "--home-dir", arg(home.path()), "--port", &free_port().to_string()]);
    let (status, stderr) = run_failing(cmd);
    assert!(!status.success() && status.code().is_some(), "status {status}, stderr:\n{stderr}");
    assert!(stderr.contains(arg(&missing)), "stderr does not name {}:\n{stderr}", missing.display());
}

#[test]
fn bad_type_in_config_names_file_and_key() {
    let home = tempfile::tempdir().unwrap();
    let config = write_config(home.path(), "[server]\nport = \"x\"\n");
    let mut cmd = supernode();
    cmd.args(["--config", arg(&config), "--home-dir", arg(home.path())]);
    let (status, stderr) = run_failing(cmd);
    assert!(!status.success() && status.code().is_some(), "status {status}, stderr:\n{stderr}");
    assert!(stderr.contains(arg(&config)), "stderr does not name {}:\n{stderr}", config.display());
    assert!(stderr.contains("server.port"), "stderr does not name server.port:\n{stderr}");
}

#[test]
fn unknown_key_in_config_is_an_error() {
    let home = tempfile::tempdir().unwrap();
    let config = write_config(home.path(), "[server]\nprot = 8002\n");
    let mut cmd = supernode();
    cmd.args(["--config", arg(&config), "--home-dir", arg(home.path()), "--port", &free_port().to_string()]);
    let (status, stderr) = run_failing(cmd);
    assert!(!status.success() && status.code().is_some(), "status {status}, stderr:\n{stderr}");
    assert!(stderr.contains("prot"), "stderr does not name the unknown key:\n{stderr}");
    assert!(stderr.contains(arg(&config)), "stderr does not name {}:\n{stderr}", config.display());
}

#[test]
fn unknown_section_in_config_is_an_error() {
    let home = tempfile::tempdir().unwrap();
    let config = write_config(home.path(), "[sever]\nport = 8002\n");
    let mut cmd = supernode();
    cmd.args(["--config", arg(&config), "--home-dir", arg(home.path()), "--port", &free_port().to_string()]);
    let (status, stderr) = run_failing(cmd);
    assert!(!status.success() && status.code().is_some(), "status {status}, stderr:\n{stderr}");
    assert!(stderr.contains("sever"), "stderr does not name the unknown section:\n{stderr}");
}

#[test]
fn malformed_toml_is_an_error() {
    let home = tempfile::tempdir().unwrap();
    let config = write_config(home.path(), "[server\nport = \n");
    let mut cmd = supernode();
    cmd.args(["--config", arg(&config), "--home-dir", arg(home.path()), "--port", &free_port().to_string()]);
    let (status, stderr) = run_failing(cmd);
    assert!(!status.success() && status.code().is_some(), "status {status}, stderr:\n{stderr}");
    assert!(stderr.contains(arg(&config)), "stderr does not name {}:\n{stderr}", config.display());
}

#[test]
fn shipped_config_starts() {
    // The repository's documented config.toml, with only the ports changed.
    let home = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).expect("config.toml");
    let config = write_config(home.path(), &shipped);
    let (port, dl) = (free_port(), free_port());
    let mut cmd = supernode();
    cmd.args(["--config", arg(&config), "--home-dir", arg(home.path())]);
    cmd.args(["--port", &port.to_string(), "--download-port", &dl.to_string()]);
    let mut r = Running::spawn(cmd);
    r.wait_ready(port);
}

// ---------------------------------------------------------------------------------------
// home dir and signals
// ---------------------------------------------------------------------------------------

#[test]
fn home_dir_is_created() {
    let base = tempfile::tempdir().unwrap();
    let home = base.path().join("a").join("b").join("home");
    assert!(!home.exists());
    let (port, dl) = (free_port(), free_port());
    let mut cmd = supernode();
    cmd.args(["--home-dir", arg(&home), "--port", &port.to_string(), "--download-port", &dl.to_string()]);
    let mut r = Running::spawn(cmd);
    r.wait_ready(port);
    assert!(home.is_dir(), "{} was not created", home.display());
}

#[test]
fn sigterm_exits_cleanly() {
    let home = tempfile::tempdir().unwrap();
    let (port, dl) = (free_port(), free_port());
    let mut cmd = supernode();
    cmd.args(["--home-dir", arg(home.path()), "--port", &port.to_string(), "--download-port", &dl.to_string()]);
    let mut r = Running::spawn(cmd);
    r.wait_ready(port);
    let sent = Command::new("kill").args(["-TERM", &r.child.id().to_string()]).status().expect("run kill");
    assert!(sent.success(), "kill -TERM failed");
    let status =
        r.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| panic!("no exit within 5 s of SIGTERM:\n{}", r.stderr()));
    assert_eq!(status.code(), Some(0), "exit status {status} after SIGTERM:\n{}", r.stderr());
    assert!(!ping(port), "still answering after exit");
}
