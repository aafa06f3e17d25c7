//! Writing answers: the head as text, the body straight from the file with `sendfile(2)`, so
//! the bytes go from the page cache to the socket without passing through this process.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use supernode_actors::throttle::Throttle;

/// Bytes handed to one `sendfile` call: a throttle and other connections get a turn between.
const CHUNK: u64 = 1 << 20;

/// A response head; `headers` are complete lines without their CRLF.
pub async fn head(stream: &mut TcpStream, status: u16, reason: &str, headers: &[String]) -> io::Result<()> {
    let mut text = format!("HTTP/1.1 {status} {reason}\r\n");
    text.push_str(&format!("Date: {}\r\n", httpdate::fmt_http_date(std::time::SystemTime::now())));
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).await
}

/// A short text answer with its body.
pub async fn text(stream: &mut TcpStream, status: u16, reason: &str, body: &str, extra: &[String]) -> io::Result<()> {
    let mut headers =
        vec!["Content-Type: text/plain; charset=utf-8".to_string(), format!("Content-Length: {}", body.len())];
    headers.extend_from_slice(extra);
    head(stream, status, reason, &headers).await?;
    stream.write_all(body.as_bytes()).await
}

/// Sends bytes `[start, end)` of `file`.
pub async fn file_range(
    stream: &TcpStream,
    file: &File,
    (start, end): (u64, u64),
    throttle: Option<&Throttle>,
) -> io::Result<()> {
    let mut offset = start as libc::off_t;
    let end = end as libc::off_t;
    while offset < end {
        let chunk = (end - offset).min(CHUNK as libc::off_t);
        if let Some(throttle) = throttle {
            throttle.pass(chunk as usize).await;
        }
        let chunk_end = offset + chunk;
        while offset < chunk_end {
            stream.writable().await?;
            let want = (chunk_end - offset) as usize;
            let sent = stream.try_io(Interest::WRITABLE, || {
                // SAFETY: both descriptors are open for the call (the stream and the file are
                // borrowed), and `offset` is a valid pointer the kernel advances.
                let n = unsafe { libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut offset, want) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match sent {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shorter than its length")),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
