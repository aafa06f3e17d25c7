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
        let path = path.to_string();
        self.on_host(move |control| control.get(&path))
    }

    /// Runs `f` on a thread inside the supernode's host, with a client of its control API.
    pub fn on_host<T: Send + 'static>(&self, f: impl FnOnce(&ControlClient) -> T + Send + 'static) -> T {
        let control = ControlClient::new(self.control);
        thread_in(&self.namespace, "testbed-control", move || f(&control))
            .join()
            .unwrap_or_else(|_| panic!("a request to the supernode's control API failed"))
    }
}

/// Blocking requests to a control API, each on a fresh connection, read whole however large
/// (e.g. `/metrics` with many peers). In the testbed, usable only on a thread inside the
/// supernode's host ([`SupernodeHost::on_host`]).
pub struct ControlClient {
    addr: SocketAddr,
}

impl ControlClient {
    /// A client of the control API at `addr` (a loopback server, or one in the thread's own
    /// network namespace).
    pub fn new(addr: SocketAddr) -> ControlClient {
        ControlClient { addr }
    }

    /// `GET path`: the status and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.request("GET", path, None)
    }

    /// `POST path` with a JSON body (dfget's content type): the status and the body.
    pub fn post_json(&self, path: &str, body: &str) -> (u16, String) {
        self.request("POST", path, Some(("application/json;charset=utf-8", body)))
    }

    /// One request, read to the connection's close.
    fn request(&self, method: &str, path: &str, body: Option<(&str, &str)>) -> (u16, String) {
        let addr = self.addr;
        let mut stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("a read timeout");
        // HTTP/1.0: the body comes whole (never chunked) and ends with the connection
        let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
        if let Some((content_type, body)) = body {
            request.push_str(&format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
        } else {
            request.push_str("\r\n");
        }
        stream.write_all(request.as_bytes()).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        parse_reply(&reply)
    }
}

/// The status and the body of an HTTP/1.0 reply.
fn parse_reply(reply: &[u8]) -> (u16, String) {
    let reply = String::from_utf8_lossy(reply).into_owned();
    let status = reply.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}
