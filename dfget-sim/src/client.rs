//! The HTTP client side of the control plane: how dfget's requests to the supernode are sent.
//!
//! dfget's control calls go through fasthttp: `User-Agent: fasthttp`, no compression, a 5 s
//! timeout, and one silent retry when a kept-alive connection turns out to be closed. The
//! registration, the poll loop and the piece reports all send their requests the same way.

use std::time::Duration;

use awc::http::Method;
use bytes::Bytes;

use crate::error::SimError;

/// The supernode's control address and one keep-alive client for it.
#[derive(Clone)]
pub(crate) struct Control {
    pub(crate) client: awc::Client,
    /// `host:port`.
    pub(crate) node: String,
    pub(crate) timeout: Duration,
}

impl Control {
    pub(crate) fn new(node: &str, timeout: Duration) -> Self {
        let client = awc::Client::builder()
            .no_default_headers()
            .timeout(timeout)
            .connector(awc::Connector::new().timeout(Duration::from_secs(2)).conn_keep_alive(Duration::from_secs(1)))
            .finish();
        Control { client, node: node.to_string(), timeout }
    }

    /// A request for `target` (path and query) with the headers every dfget control call has.
    fn request(&self, method: Method, target: &str) -> awc::ClientRequest {
        let url = format!("http://{}{target}", self.node);
        self.client.request(method, url).no_decompress().insert_header(("User-Agent", "fasthttp")).timeout(self.timeout)
    }

    /// `GET <target>`; transport errors name the target.
    pub(crate) async fn get(&self, target: &str) -> Result<(u16, Bytes), SimError> {
        let send = || self.request(Method::GET, target).send();
        read_reply(send, self.timeout).await.map_err(|e| match e {
            SimError::Transport(m) => SimError::Transport(format!("GET {target}: {m}")),
            other => other,
        })
    }

    /// `POST <target>` with a JSON body, as dfget posts it.
    pub(crate) async fn post_json(&self, target: &str, body: &str) -> Result<(u16, Bytes), SimError> {
        let send = || {
            self.request(Method::POST, target)
                .insert_header(("Content-Type", "application/json;charset=utf-8"))
                .send_body(body.to_string())
        };
        read_reply(send, self.timeout).await
    }
}

/// Whether a send failed the way a stale keep-alive connection fails (the server closed it
/// while it was idle): fasthttp and Go's net/http retry such requests once on a new connection.
pub(crate) fn stale_connection(e: &awc::error::SendRequestError) -> bool {
    use awc::error::{ConnectError, SendRequestError as E};
    matches!(e, E::Connect(ConnectError::Disconnected) | E::Send(_) | E::Response(_))
}

/// Sends a request (built by `make`, at most twice: see [`stale_connection`]) and reads the
/// whole (small) reply.
async fn read_reply(make: impl Fn() -> awc::SendClientRequest, timeout: Duration) -> Result<(u16, Bytes), SimError> {
    let fut = async {
        let mut attempt = 0;
        let mut res = loop {
            match make().await {
                Ok(r) => break r,
                Err(e) if attempt == 0 && stale_connection(&e) => attempt += 1,
                Err(e) => return Err(SimError::Transport(e.to_string())),
            }
        };
        let status = res.status().as_u16();
        let body = res.body().limit(16 * 1024 * 1024).await.map_err(|e| SimError::Transport(e.to_string()))?;
        Ok::<_, SimError>((status, body))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(SimError::Transport(format!("no answer within {:.1}s", timeout.as_secs_f64()))),
    }
}

/// A reply body for an error message: lossy UTF-8, cut after 300 bytes.
pub(crate) fn lossy(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s.into_owned()
    }
}
