//! The download port: serves `/download/<id[0:3]>/<id>` with single-range semantics straight
//! from the cache, which is what dfget asks the super peer's port for (Go needed an nginx
//! beside the supernode for it). While a run is still writing, only the whole pieces
//! already written are served: the only ones handed out.
//!
//! It is a small HTTP/1.1 server of its own (heads parsed by `httparse`) rather than an
//! actix-web app, because the body goes out with `sendfile(2)`, which needs the socket: the
//! bytes never pass through this process. It runs on its own runtime and threads, so a
//! file read that waits for the disk never holds up the actors or the control API.
//!
//! | file | what |
//! |---|---|
//! | `head.rs` | a request head and its `Range` |
//! | `connection.rs` | one keep-alive connection: route, look up, answer |
//! | `send.rs` | response heads, and bodies with `sendfile` |

mod connection;
mod head;
mod send;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use tokio::sync::{mpsc, watch};

use supernode_actors::cdn::CdnManager;
use supernode_actors::throttle::Throttle;

pub struct DownloadState {
    pub cdn: Addr<CdnManager>,
    /// `[server] upload_rate_limit`, shared by every connection.
    pub throttle: Option<Throttle>,
}

/// Whether the port runs, and how it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Serving,
    /// Idle connections close; bodies being sent finish within the shutdown timeout.
    Draining,
    /// Every connection is dropped now.
    Stopping,
}

/// The running download port.
pub struct DownloadServer {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    done: tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

/// Threads serving the download port.
const THREADS: usize = 2;

impl DownloadServer {
    /// Serves `listener` (already bound) until [`DownloadServer::stop`]; connections get
    /// `shutdown_timeout` to finish the body they are sending.
    pub fn start(
        listener: std::net::TcpListener,
        state: DownloadState,
        shutdown_timeout: Duration,
    ) -> std::io::Result<DownloadServer> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(THREADS)
            .thread_name("download-port")
            .enable_all()
            .build()?;
        let (mode, modes) = watch::channel(Mode::Serving);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let state = Arc::new(state);
        std::thread::Builder::new().name("download-port".into()).spawn(move || {
            runtime.block_on(accept(listener, state, modes, shutdown_timeout));
            runtime.shutdown_background();
            let _ = done_tx.send(());
        })?;
        Ok(DownloadServer { addr, mode, done: tokio::sync::Mutex::new(Some(done_rx)) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting; `graceful` lets bodies being sent finish (within the shutdown
    /// timeout), otherwise every connection is dropped now. Returns once it has stopped.
    pub async fn stop(&self, graceful: bool) {
        self.mode.send_replace(if graceful { Mode::Draining } else { Mode::Stopping });
        if let Some(done) = self.done.lock().await.take() {
            let _ = done.await;
        }
    }
}

async fn accept(
    listener: std::net::TcpListener,
    state: Arc<DownloadState>,
    modes: watch::Receiver<Mode>,
    shutdown_timeout: Duration,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "download port cannot listen");
            return;
        }
    };
    // Every connection holds a sender: when all are gone, the channel closes.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    let mut mode = modes.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let (state, modes, open) = (state.clone(), modes.clone(), open_tx.clone());
                    tokio::spawn(async move {
                        connection::serve(stream, state, modes).await;
                        drop(open);
                    });
                }
                Err(e) => {
                    // Out of descriptors and the like: back off, the next accept may work.
                    tracing::warn!(error = %e, "download port accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = mode.wait_for(|m| *m != Mode::Serving) => break,
        }
    }
    drop(listener);
    drop(open_tx);
    if *modes.borrow() == Mode::Draining {
        let _ = tokio::time::timeout(shutdown_timeout, open_rx.recv()).await;
    }
}
