//! One connection: requests one after the other (keep-alive), each answered from the cache.
//!
//! The path is never joined onto the file system: the ID must be a task ID and the
//! directory its prefix, and the file comes from the `CdnManager`, so nothing outside the
//! cache can be named.

use std::fs::File;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::head::{self, After, HeadError, Method, RangeRequest, Request};
use super::send;
use super::{DownloadState, Mode};
use supernode_actors::cdn::{LookupServable, ServableFile};
use supernode_actors::TaskId;

/// How long a connection may sit idle between requests.
const IDLE: Duration = Duration::from_secs(600);
/// How long a started request head may take to arrive.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `stream` until the client closes it, an answer ends it, or the server stops (an
/// idle connection closes at once; one sending a body finishes that body first).
pub(super) async fn serve(mut stream: TcpStream, state: Arc<DownloadState>, mut modes: watch::Receiver<Mode>) {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let read = tokio::select! {
            read = read_head(&mut stream, &mut buf) => read,
            _ = modes.wait_for(|m| *m != Mode::Serving) => return,
        };
        let req = match read {
            Ok(Some(req)) => req,
            Ok(None) => return,
            Err(ReadError::Head(e)) => {
                let _ = send::text(&mut stream, 400, "Bad Request", &format!("{e}\n"), &close()).await;
                return;
            }
            Err(ReadError::Io(e)) => {
                tracing::debug!(error = %e, "download connection ended");
                return;
            }
        };
        let span = tracing::debug_span!("download", path = %req.path, range = req.range.as_deref().unwrap_or(""));
        let answered = tracing::Instrument::instrument(answer(&mut stream, &req, &state), span).await;
        match answered {
            Err(e) => {
                tracing::debug!(error = %e, "download connection ended");
                return;
            }
            Ok(()) if req.after == After::Close => return,
            Ok(()) => {}
        }
    }
}

enum ReadError {
    Head(HeadError),
    Io(io::Error),
}

/// The next request head; `None` when the client closed or went quiet for too long.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Option<Request>, ReadError> {
    let mut waited = IDLE;
    loop {
        if !buf.is_empty() {
            if let Some((req, used)) = head::parse(buf).map_err(ReadError::Head)? {
                buf.drain(..used);
                return Ok(Some(req));
            }
            waited = HEAD_TIMEOUT;
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(waited, stream.read(&mut chunk)).await {
            Err(_) | Ok(Ok(0)) => return Ok(None),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Err(ReadError::Io(e)),
        }
    }
}

fn close() -> Vec<String> {
    vec!["Connection: close".to_string()]
}

async fn not_found(stream: &mut TcpStream, req: &Request) -> io::Result<()> {
    let extra = if req.after == After::Close { close() } else { Vec::new() };
    send::text(stream, 404, "Not Found", "404 page not found\n", &extra).await
}

/// The task named by `/download/<id[0:3]>/<id>`.
fn task_of(path: &str) -> Option<TaskId> {
    let rest = path.strip_prefix("/download/")?;
    let (prefix, id) = rest.split_once('/')?;
    TaskId::parse(id).filter(|id| id.prefix() == prefix)
}

async fn answer(stream: &mut TcpStream, req: &Request, state: &DownloadState) -> io::Result<()> {
    if req.method == Method::Other {
        let mut extra = vec!["Allow: GET, HEAD".to_string()];
        extra.extend(close());
        send::text(stream, 405, "Method Not Allowed", "405 method not allowed\n", &extra).await?;
        return Err(io::Error::other("method not allowed"));
    }
    let Some(id) = task_of(&req.path) else { return not_found(stream, req).await };
    let Ok(Some(servable)) = state.cdn.send(LookupServable(id)).await else { return not_found(stream, req).await };
    let file = match servable.file {
        ServableFile::Writing(file) => file,
        ServableFile::Cached(path) => match tokio::task::spawn_blocking(move || File::open(path)).await {
            Ok(Ok(f)) => Arc::new(f),
            _ => return not_found(stream, req).await,
        },
    };
    let len = servable.len;
    let mut headers = vec!["Content-Type: application/octet-stream".to_string(), "Accept-Ranges: bytes".to_string()];
    if req.after == After::Close {
        headers.extend(close());
    }
    let (start, end) = match head::parse_range(req.range.as_deref(), len) {
        RangeRequest::Whole => {
            headers.push(format!("Content-Length: {len}"));
            send::head(stream, 200, "OK", &headers).await?;
            (0, len)
        }
        RangeRequest::Part(a, b) => {
            headers.push(format!("Content-Range: bytes {a}-{b}/{len}"));
            headers.push(format!("Content-Length: {}", b + 1 - a));
            send::head(stream, 206, "Partial Content", &headers).await?;
            (a, b + 1)
        }
        RangeRequest::Unsatisfiable => {
            let extra = [format!("Content-Range: bytes */{len}"), "Content-Length: 0".to_string()];
            return send::head(stream, 416, "Range Not Satisfiable", &extra).await;
        }
    };
    if req.method == Method::Head {
        return Ok(());
    }
    // The guard lives until the body is sent: disk GC keeps the file while it is read.
    let _reading = servable.guard;
    send::file_range(stream, &file, (start, end), state.throttle.as_ref()).await
}
