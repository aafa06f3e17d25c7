//! Small HTTP servers of the fixtures (on 127.0.0.1 unless a testbed host needs another
//! address), and a port there that refuses connections.

use std::net::{Ipv4Addr, SocketAddr};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};

/// Runs an actix server on 127.0.0.1:0 inside the current actix system; its app is what
/// `configure` sets up. Returns the bound address and the handle that stops it.
pub(crate) fn serve_on_loopback(
    workers: usize,
    configure: impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
) -> (SocketAddr, ServerHandle) {
    serve_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), workers, configure)
}

/// [`serve_on_loopback`] on `addr`.
pub(crate) fn serve_on(
    addr: SocketAddr,
    workers: usize,
    configure: impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
) -> (SocketAddr, ServerHandle) {
    let server = HttpServer::new(move || App::new().configure(configure.clone()))
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(addr)
        .unwrap_or_else(|e| panic!("a test server binds {addr}: {e}"));
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (addr, handle)
}

/// A 127.0.0.1 port nothing listens on, for sources that must be unreachable: the port stays
/// bound (without listening) for as long as this value lives, so no other process can take it
/// and connections to it are refused.
pub struct ClosedPort {
    socket: tokio::net::TcpSocket,
}

impl ClosedPort {
    pub fn bind() -> ClosedPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("bind 127.0.0.1:0");
        ClosedPort { socket }
    }

    pub fn port(&self) -> u16 {
        self.socket.local_addr().expect("bound").port()
    }
}
