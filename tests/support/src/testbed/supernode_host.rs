//! The supernode host: the supernode binary as a child process inside the supernode namespace,
//! on dfget's default ports, and its control API as seen from its own host.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use super::namespace_exec::{command_in, thread_in};
use crate::child::without_supernode_env;
use crate::ChildServer;

/// dfget's default control port and the download port beside it.
pub const CONTROL_PORT: u16 = 8002;
pub const DOWNLOAD_PORT: u16 = 8001;

/// A supernode running on its host; killed when dropped.
pub struct SupernodeHost {
    server: ChildServer,
    namespace: String,
    control: SocketAddr,
    _home: tempfile::TempDir,
}

impl SupernodeHost {
    /// Runs the binary at `exe` with a fresh home under `scratch` and `extra_args` (e.g.
    /// `--config <file>`); returns once it listens.
    pub(crate) fn start(
        namespace: &str,
        ip: Ipv4Addr,
        exe: &str,
        scratch: &Path,
        extra_args: &[&str],
    ) -> SupernodeHost {
        let home = tempfile::tempdir_in(scratch).expect("a supernode home");
        let mut cmd = command_in(namespace, exe);
        without_supernode_env(&mut cmd);
        let ip_text = ip.to_string();
        cmd.args(["--advertise-ip", &ip_text, "--listen-host", &ip_text]);
        cmd.args(["--port", &CONTROL_PORT.to_string(), "--download-port", &DOWNLOAD_PORT.to_string()]);
        cmd.arg("--home-dir").arg(home.path()).args(extra_args);
        let mut server = ChildServer::spawn(cmd);
        server.wait_listening();
        SupernodeHost {
            server,
            namespace: namespace.to_string(),
            control: SocketAddr::from((ip, CONTROL_PORT)),
            _home: home,
        }
    }

    /// `ip:port` of the control API (reachable from the testbed's hosts only).
    pub fn control(&self) -> SocketAddr {
        self.control
    }

    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// Everything the supernode logged so far.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// `GET path` on the control API from the supernode's own host (e.g. `/metrics`): the
    /// status and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let (addr, target) = (self.control, path.to_string());
        thread_in(&self.namespace, "testbed-control", move || http_get(addr, &target))
            .join()
            .unwrap_or_else(|_| panic!("GET {path} on the supernode"))
    }
}

/// One `GET` on a fresh connection, read to its close.
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("a read timeout");
    // HTTP/1.0: the body comes whole (never chunked) and ends with the connection
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status = reply.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}
