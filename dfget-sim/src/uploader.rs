//! The uploader: the HTTP server through which this peer serves its pieces to other peers.
//!
//! The supernode hands this peer's registered `ip`, `port` and `path` to other peers as a piece
//! source, so the uploader must answer like dfget's. dfget keeps only the payload on disk and
//! rebuilds each wrapped piece on request (payload offset = range start − `pieceNum·5`, header
//! and trailer regenerated), so the bytes and their md5 equal the supernode's copy. Source-mode
//! pieces (`cdnSource: source`) go out unwrapped.

use std::collections::HashMap;
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::body::SizedStream;
use actix_web::dev::ServerHandle;
use actix_web::web::Bytes;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use rand::Rng;
use tokio::task::JoinHandle;

use crate::error::{io_err, SimError};
use crate::stats::Stats;
use crate::wire::{go_atoi, DFGET_VERSION, PIECE_META, PIECE_TAIL};

/// What the uploader serves, and how.
pub(crate) struct UploaderState {
    pub(crate) task_file_name: String,
    pub(crate) data_file: PathBuf,
    /// Flip one payload byte of every piece served (fault injection).
    pub(crate) corrupt: bool,
    /// Send pieces at this many bytes per second; 0: never answer (fault injection).
    pub(crate) rate: Option<u64>,
    pub(crate) stats: Arc<Stats>,
}

/// A running uploader.
pub(crate) struct Uploader {
    handle: ServerHandle,
    port: u16,
    join: Option<JoinHandle<std::io::Result<()>>>,
}

impl Uploader {
    /// Binds `ip:port` (port 0: a free one in dfget's range) and starts serving on the current
    /// actix system.
    pub(crate) fn start(ip: Ipv4Addr, port: u16, state: UploaderState) -> Result<Uploader, SimError> {
        let listener = bind_uploader(ip, port)?;
        listener.set_nonblocking(true).map_err(|e| io_err("uploader socket", e))?;
        let port = listener.local_addr().map_err(|e| io_err("uploader address", e))?.port();
        let state = web::Data::new(state);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/peer/file/{name}", web::get().to(upload))
                .route("/server/ping", web::get().to(server_ping))
                .route("/check/{name}", web::get().to(check))
                .route("/rate/{name}", web::get().to(rate))
                .route("/client/finish", web::get().to(client_finish))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .map_err(|e| io_err("uploader listen", e))?
        .run();
        let handle = server.handle();
        let join = actix_rt::spawn(server);
        Ok(Uploader { handle, port, join: Some(join) })
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server at once (open connections are dropped) and waits up to 5 s for it to end.
    pub(crate) async fn stop(mut self) {
        self.handle.stop(false).await;
        if let Some(j) = self.join.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), j).await;
        }
    }

    /// Sends the stop command without waiting for the server to end (for `Drop`).
    pub(crate) fn stop_in_background(self) {
        drop(self.handle.stop(false));
    }
}

fn text(status: actix_web::http::StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status).content_type("text/plain; charset=utf-8").body(body)
}

fn header_str<'a>(req: &'a HttpRequest, name: &str) -> &'a str {
    req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Parses dfget's uploader parameters: `(pieceNum, pieceSize, start, length)`.
fn upload_params(req: &HttpRequest) -> Result<(i64, i64, i64, i64), String> {
    let piece_num = go_atoi(header_str(req, "pieceNum"))?;
    let piece_size = go_atoi(header_str(req, "pieceSize"))?;
    let range = header_str(req, "Range");
    let parts: Vec<&str> = range.split('=').collect();
    if parts.len() != 2 {
        return Err(format!("invalid range: {range}"));
    }
    let r = parts[1];
    let ends: Vec<&str> = r.split('-').collect();
    if ends.len() != 2 {
        return Err(format!("invalid range: {r}"));
    }
    let start = go_atoi(ends[0])?;
    let end = go_atoi(ends[1])?;
    if end <= start {
        return Err(format!("invalid range: {r}"));
    }
    let length = end.checked_sub(start).and_then(|l| l.checked_add(1)).ok_or_else(|| format!("invalid range: {r}"))?;
    Ok((piece_num, piece_size, start, length))
}

async fn upload(req: HttpRequest, name: web::Path<String>, st: web::Data<UploaderState>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let (piece_num, piece_size, start, length) = match upload_params(&req) {
        Ok(p) => p,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    if name.as_str() != st.task_file_name {
        return text(StatusCode::INTERNAL_SERVER_ERROR, format!("failed to get taskPath: {name}\n"));
    }
    if st.rate == Some(0) {
        Stats::inc(&st.stats.uploads_served);
        return std::future::pending().await;
    }
    let need_pad = header_str(&req, "cdnSource") != "source";
    let pad: i64 = if need_pad { PIECE_META as i64 } else { 0 };
    let path = st.data_file.clone();
    let read = web::block(move || -> std::io::Result<Option<(i64, Vec<u8>)>> {
        let f = File::open(&path)?;
        let size = f.metadata()?.len() as i64;
        let start = start.saturating_sub(piece_num.saturating_mul(pad));
        if length < pad || start < 0 || (start >= size && !need_pad) {
            return Ok(None);
        }
        let mut length = length;
        if start.saturating_add(length - pad) > size {
            length = size - start + pad;
            if size == 0 {
                length = pad;
            }
        }
        let read_len = length - pad;
        if read_len <= 0 {
            return Ok(Some((read_len, Vec::new())));
        }
        let mut data = vec![0u8; read_len as usize];
        let mut got = 0usize;
        while got < data.len() {
            let n = f.read_at(&mut data[got..], (start as u64) + got as u64)?;
            if n == 0 {
                break; // short file: the rest stays zero, like dfget's padding
            }
            got += n;
        }
        Ok(Some((read_len, data)))
    })
    .await;
    let (read_len, mut data) = match read {
        Ok(Ok(Some(x))) => x,
        Ok(Ok(None)) => return text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n".into()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return text(StatusCode::NOT_FOUND, format!("{e}\n")),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return text(StatusCode::FORBIDDEN, format!("{e}\n"))
        }
        Ok(Err(e)) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    };
    if st.corrupt && !data.is_empty() {
        let i = data.len() / 2;
        data[i] ^= 0xFF;
    }
    let body = if need_pad {
        let header = ((read_len | (piece_size << 4)) & 0xFFFF_FFFF) as u32;
        let mut b = Vec::with_capacity(data.len() + PIECE_META as usize);
        b.extend_from_slice(&header.to_be_bytes());
        b.extend_from_slice(&data);
        b.push(PIECE_TAIL);
        b
    } else {
        data
    };
    Stats::inc(&st.stats.uploads_served);
    st.stats.upload_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    st.stats.last_upload_ms.store(now, Ordering::Relaxed);
    let mut res = HttpResponse::PartialContent();
    res.content_type("application/octet-stream");
    match st.rate {
        Some(rate) => res.body(SizedStream::new(body.len() as u64, trickle(body, rate as usize))),
        None => res.body(body),
    }
}

/// `body`, `rate` bytes a second.
fn trickle(body: Vec<u8>, rate: usize) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold((body, 0), move |(body, at)| async move {
        if at >= body.len() {
            return None;
        }
        if at > 0 {
            actix_web::rt::time::sleep(Duration::from_secs(1)).await;
        }
        let end = (at + rate).min(body.len());
        Some((Ok(Bytes::copy_from_slice(&body[at..end])), (body, end)))
    })
}

async fn server_ping() -> HttpResponse {
    HttpResponse::Ok().body("success")
}

async fn check(name: web::Path<String>) -> HttpResponse {
    HttpResponse::Ok().body(format!("{name}@{DFGET_VERSION}"))
}

async fn rate(req: HttpRequest) -> HttpResponse {
    let rl = header_str(&req, "rateLimit").to_string();
    match go_atoi(&rl) {
        Ok(_) => HttpResponse::Ok().body(rl),
        Err(e) => text(actix_web::http::StatusCode::BAD_REQUEST, e),
    }
}

async fn client_finish(req: HttpRequest) -> HttpResponse {
    let q: HashMap<String, String> = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let ok = ["taskFileName", "taskID", "cid"].iter().all(|k| q.get(*k).is_some_and(|v| !v.is_empty()));
    if ok {
        HttpResponse::Ok().body("success")
    } else {
        HttpResponse::BadRequest().body("invalid params")
    }
}

/// Binds `ip:port`, or for port 0 a free port within dfget's 15000–65000.
fn bind_uploader(ip: Ipv4Addr, port: u16) -> Result<TcpListener, SimError> {
    if port != 0 {
        return TcpListener::bind((ip, port)).map_err(|e| io_err(&format!("uploader bind {ip}:{port}"), e));
    }
    let mut last = String::new();
    for attempt in 0..64 {
        let try_port = if attempt == 0 { 0 } else { rand::thread_rng().gen_range(15000..=65000) };
        match TcpListener::bind((ip, try_port)) {
            Ok(l) => {
                let p = l.local_addr().map(|a| a.port()).unwrap_or(0);
                if (15000..=65000).contains(&p) {
                    return Ok(l);
                }
                last = format!("port {p} outside 15000-65000");
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(SimError::Io(format!("uploader: no free port in 15000-65000 on {ip}: {last}")))
}
