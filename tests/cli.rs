//! The real binary: configuration precedence and errors, the home dir, and SIGTERM.
//!
//! Every server here listens on ports it picked itself (port 0, read back from its log), so no
//! other process can take a port between choosing it and binding it. Where a test needs a
//! port that must *not* be used, it holds that port bound itself: a server picking it could
//! not start.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use testkit::ChildServer;

/// The control port a server uses when nothing sets one.
const DEFAULT_PORT: u16 = 8002;

/// The binary with a clean `SUPERNODE_*` environment and loopback-only addresses.
fn supernode() -> Command {
    testkit::supernode_command(env!("CARGO_BIN_EXE_supernode"))
}

/// `GET /_ping` over HTTP/1.0; true on `200` with body `OK`.
fn ping(addr: SocketAddr) -> bool {
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

/// Starts `cmd` and waits until it listens and answers `/_ping`; the control address.
fn start_serving(cmd: Command) -> (ChildServer, SocketAddr) {
    let mut server = ChildServer::spawn(cmd);
    let (control, _) = server.wait_listening();
    assert!(ping(control), "no /_ping answer on {control}:\n{}", server.log());
    (server, control)
}

/// A port of 127.0.0.1 that stays taken while the listener lives: a server told to use it
/// cannot start.
fn held_port() -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral port")
}

fn port_of(l: &TcpListener) -> u16 {
    l.local_addr().expect("bound").port()
}

/// Runs a supernode that is expected to fail at start; returns its status and log.
fn run_failing(cmd: Command) -> (ExitStatus, String) {
    let mut server = ChildServer::spawn(cmd);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("supernode did not exit:\n{}", server.log()));
    (status, server.log())
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
// precedence: flags > environment > file > defaults. The source that must win sets port 0
// (the server picks one and logs it, never the default 8002); every source that must lose
// names a port the test holds, which the server could not bind.
// ---------------------------------------------------------------------------------------

#[test]
fn config_file_sets_the_port() {
    let home = tempfile::tempdir().unwrap();
    let config = write_config(home.path(), "[server]\nport = 0\n");
    let mut cmd = supernode();
    cmd.args(["--config", arg(&config), "--home-dir", arg(home.path()), "--download-port", "0"]);
    let (_server, control) = start_serving(cmd);
    assert_ne!(control.port(), DEFAULT_PORT, "the file's port 0 was not used");
}

#[test]
fn env_overrides_config_file() {
    let home = tempfile::tempdir().unwrap();
    let file_port = held_port();
    let a = port_of(&file_port);
    let config = write_config(home.path(), &format!("[server]\nport = {a}\n"));
    let mut cmd = supernode();
    cmd.env("SUPERNODE_PORT", "0");
    cmd.args(["--config", arg(&config), "--home-dir", arg(home.path()), "--download-port", "0"]);
    let (_server, control) = start_serving(cmd);
    assert_ne!(control.port(), a, "the file's port {a} is used although SUPERNODE_PORT=0");
    assert_ne!(control.port(), DEFAULT_PORT, "SUPERNODE_PORT=0 was not used");
}

#[test]
fn flag_overrides_env_and_config_file() {
    let home = tempfile::tempdir().unwrap();
    let (file_port, env_port) = (held_port(), held_port());
    let (a, b) = (port_of(&file_port), port_of(&env_port));
    let config = write_config(home.path(), &format!("[server]\nport = {a}\n"));
    let mut cmd = supernode();
    cmd.env("SUPERNODE_PORT", b.to_string());
    cmd.args(["--config", arg(&config), "--home-dir", arg(home.path()), "--download-port", "0"]);
    cmd.args(["--port", "0"]);
    let (_server, control) = start_serving(cmd);
    assert_ne!(control.port(), a, "the file's port {a} is used although --port 0");
    assert_ne!(control.port(), b, "the env port {b} is used although --port 0");
    assert_ne!(control.port(), DEFAULT_PORT, "--port 0 was not used");
}

#[test]
fn config_file_via_env() {
    let home = tempfile::tempdir().unwrap();
    let config = write_config(home.path(), "[server]\nport = 0\n");
    let mut cmd = supernode();
    cmd.env("SUPERNODE_CONFIG", arg(&config));
    cmd.args(["--home-dir", arg(home.path()), "--download-port", "0"]);
    let (_server, control) = start_serving(cmd);
    assert_ne!(control.port(), DEFAULT_PORT, "the port 0 of SUPERNODE_CONFIG's file was not used");
}

// ---------------------------------------------------------------------------------------
// configuration errors
// ---------------------------------------------------------------------------------------

#[test]
fn missing_config_file_is_an_error() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("does-not-exist.toml");
    let mut cmd = supernode();
    cmd.args(["--config", arg(&missing), "--home-dir", arg(home.path()), "--port", "0"]);
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
    cmd.args(["--config", arg(&config), "--home-dir", arg(home.path()), "--port", "0"]);
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
    cmd.args(["--config", arg(&config), "--home-dir", arg(home.path()), "--port", "0"]);
    let (status, stderr) = run_failing(cmd);
    assert!(!status.success() && status.code().is_some(), "status {status}, stderr:\n{stderr}");
    assert!(stderr.contains("sever"), "stderr does not name the unknown section:\n{stderr}");
}

#[test]
fn malformed_toml_is_an_error() {
    let home = tempfile::tempdir().unwrap();
    let config = write_config(home.path(), "[server\nport = \n");
    let mut cmd = supernode();
    cmd.args(["--config", arg(&config), "--home-dir", arg(home.path()), "--port", "0"]);
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
    let mut cmd = supernode();
    cmd.args(["--config", arg(&config), "--home-dir", arg(home.path())]);
    cmd.args(["--port", "0", "--download-port", "0"]);
    start_serving(cmd);
}

// ---------------------------------------------------------------------------------------
// home dir and signals
// ---------------------------------------------------------------------------------------

#[test]
fn home_dir_is_created() {
    let base = tempfile::tempdir().unwrap();
    let home = base.path().join("a").join("b").join("home");
    assert!(!home.exists());
    let mut cmd = supernode();
    cmd.args(["--home-dir", arg(&home), "--port", "0", "--download-port", "0"]);
    start_serving(cmd);
    assert!(home.is_dir(), "{} was not created", home.display());
}

#[test]
fn sigterm_exits_cleanly() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = supernode();
    cmd.args(["--home-dir", arg(home.path()), "--port", "0", "--download-port", "0"]);
    let (mut server, control) = start_serving(cmd);
    let sent = Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().expect("run kill");
    assert!(sent.success(), "kill -TERM failed");
    let status = server
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no exit within 5 s of SIGTERM:\n{}", server.log()));
    assert_eq!(status.code(), Some(0), "exit status {status} after SIGTERM:\n{}", server.log());
    assert!(!ping(control), "still answering after exit");
}
