//! A request head on the download port, parsed with `httparse`, and its `Range`.

/// The largest request head read; dfget's are a few hundred bytes.
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other,
}

/// What the connection does after the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    KeepAlive,
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path without its query string, as sent (not percent-decoded).
    pub path: String,
    pub range: Option<String>,
    pub after: After,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("malformed request head: {0}")]
    Malformed(String),
    #[error("request head larger than {MAX_HEAD} bytes")]
    TooLarge,
}

/// Parses the head at the start of `buf`: the request and the bytes it took, or `None`
/// while it is incomplete.
pub fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => Method::Other,
    };
    let target = req.path.unwrap_or("");
    let path = target.split_once('?').map_or(target, |(p, _)| p).to_string();
    let header = |name: &str| {
        req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let range = header("range").map(str::to_string);
    let connection = header("connection").unwrap_or("").to_ascii_lowercase();
    // A request body is never read: the connection ends after the answer instead.
    let has_body = header("transfer-encoding").is_some() || header("content-length").is_some_and(|v| v.trim() != "0");
    let keep = match req.version {
        Some(1) => !connection.contains("close"),
        _ => connection.contains("keep-alive"),
    };
    let after = if keep && !has_body { After::KeepAlive } else { After::Close };
    Ok(Some((Request { method, path, range, after }, used)))
}

/// A parsed `Range` header against a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    Whole,
    /// Inclusive, already clamped to the file.
    Part(u64, u64),
    Unsatisfiable,
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n`; an end past the file is clamped (dfget asks for
/// whole piece slots, and the last piece is shorter).
pub fn parse_range(value: Option<&str>, len: u64) -> RangeRequest {
    let Some(value) = value else { return RangeRequest::Whole };
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return RangeRequest::Unsatisfiable };
    if spec.contains(',') {
        return RangeRequest::Unsatisfiable;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeRequest::Unsatisfiable };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (a.is_empty(), b.is_empty()) {
        (false, _) => {
            let Some(start) = parse(a) else { return RangeRequest::Unsatisfiable };
            let end = if b.is_empty() { Some(u64::MAX) } else { parse(b) };
            match end {
                Some(end) if end >= start && start < len => RangeRequest::Part(start, end.min(len - 1)),
                _ => RangeRequest::Unsatisfiable,
            }
        }
        (true, false) => match parse(b) {
            Some(n) if n > 0 && len > 0 => RangeRequest::Part(len.saturating_sub(n), len - 1),
            _ => RangeRequest::Unsatisfiable,
        },
        (true, true) => RangeRequest::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::*;
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Whole);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Part(0, 4));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), Part(5, 9));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Part(5, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Part(7, 9));
        assert_eq!(parse_range(Some("bytes=10-20"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=4-3"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("items=0-1"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), Unsatisfiable);
    }

    #[test]
    fn heads() {
        let head = b"GET /download/abc/x?q=1 HTTP/1.1\r\nHost: h\r\nRange: bytes=0-9\r\n\r\nGET";
        let (req, used) = parse(head).unwrap().unwrap();
        assert_eq!(used, head.len() - 3, "pipelined bytes stay for the next request");
        assert_eq!(
            (req.method, req.path.as_str(), req.range.as_deref()),
            (Method::Get, "/download/abc/x", Some("bytes=0-9"))
        );
        assert_eq!(req.after, After::KeepAlive);
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: h\r\n").unwrap(), None, "incomplete");
        let close = parse(b"HEAD / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap().unwrap().0;
        assert_eq!((close.method, close.after), (Method::Head, After::Close));
        let old = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().0;
        assert_eq!(old.after, After::Close, "HTTP/1.0 closes unless asked to keep alive");
        let body = parse(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd").unwrap().unwrap().0;
        assert_eq!((body.method, body.after), (Method::Other, After::Close));
        assert!(matches!(parse(b"GET / HTTP/9\r\n\r\n"), Err(HeadError::Malformed(_))));
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.resize(MAX_HEAD + 1, b'a');
        assert_eq!(parse(&huge), Err(HeadError::TooLarge));
    }
}
