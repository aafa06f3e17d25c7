//! The protocol's constants and the Go encodings dfget's wire format inherits.
//!
//! dfget and the supernode are Go programs: their JSON is read and written by `encoding/json`
//! and their numbers by `strconv`. A peer that should look like dfget on the wire has to copy
//! those quirks, and the supernode under test must cope with them; they are collected here.

use std::fs::File;
use std::path::Path;

use md5::{Digest, Md5};
use serde::Serialize;
use serde_json::Value;

use crate::error::SimError;

/// The client version this peer claims to be.
pub const DFGET_VERSION: &str = "1.0.6";
/// The framing around every piece payload: a 4-byte big-endian header (`dataLen | pieceSize << 4`)
/// in front and a 1-byte trailer behind.
pub const PIECE_META: u64 = 5;
/// The trailer byte of a wrapped piece.
pub const PIECE_TAIL: u8 = 0x7F;
/// Prefix of the uploader path a peer registers (`/peer/file/<taskFileName>`).
pub const PEER_PATH_PREFIX: &str = "/peer/file/";
/// Prefix of the supernode's client id (`cdnnode:<ip>~<taskID>`); a piece whose source cid has it
/// came from the supernode.
pub const SUPER_CID_PREFIX: &str = "cdnnode:";
/// dfget's minimum rate in bytes per second: a piece may take `pieceSize / rate + 10 s`, a whole
/// download `fileLength / rate + 10 s`.
pub const DEFAULT_MIN_RATE: u64 = 64 * 1024;

// Codes the supernode answers in `{"code": …}` replies.
pub(crate) const CODE_SUCCESS: i64 = 200;
pub(crate) const PEER_FINISH: i64 = 600;
pub(crate) const PEER_CONTINUE: i64 = 601;
pub(crate) const PEER_WAIT: i64 = 602;
pub(crate) const PEER_LIMITED: i64 = 603;
pub(crate) const PIECE_REPORT_OK: i64 = 611;
/// Registration: the source cannot be fetched.
pub(crate) const CODE_URL_NOT_REACHABLE: i64 = 607;
/// Registration: the source needs authorisation.
pub(crate) const CODE_NEED_AUTH: i64 = 608;
/// Registration: the authorisation is being checked; ask again.
pub(crate) const CODE_WAIT_AUTH: i64 = 609;
/// `/peer/service/down` success code.
pub const PEER_DOWN_OK: i64 = 612;

// Piece results (`result`) and task statuses (`status`) dfget sends on `/peer/task`.
pub(crate) const RESULT_FAIL: u32 = 500;
pub(crate) const RESULT_SUC: u32 = 501;
pub(crate) const RESULT_INVALID: u32 = 502;
pub(crate) const RESULT_SEMISUC: u32 = 503;
pub(crate) const STATUS_START: u32 = 700;
pub(crate) const STATUS_RUNNING: u32 = 701;

/// Go's `encoding/json` escapes `<`, `>`, `&`, U+2028 and U+2029 (HTML-safe); these characters
/// only occur inside strings, so replacing them in the encoded text is exact.
pub(crate) fn go_json<T: Serialize>(v: &T) -> Result<String, SimError> {
    let s = serde_json::to_string(v).map_err(|e| SimError::Config(format!("json: {e}")))?;
    Ok(s.replace('&', "\\u0026")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029"))
}

/// Key lookup like Go's `encoding/json`: exact spelling first, then case-insensitive.
pub(crate) fn get_ci<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    if let Some(v) = map.get(key) {
        return Some(v);
    }
    map.iter().filter(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v).next_back()
}

/// A string field as Go decodes it: missing or `null` is `""`, another type is an error (`None`).
pub(crate) fn get_str(obj: &Value, key: &str) -> Option<String> {
    match get_ci(obj, key) {
        None | Some(Value::Null) => Some(String::new()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => None,
    }
}

/// An integer field as Go decodes it: missing or `null` is 0, another type is an error (`None`).
pub(crate) fn get_int(obj: &Value, key: &str) -> Option<i64> {
    match get_ci(obj, key) {
        None | Some(Value::Null) => Some(0),
        Some(v) => v.as_i64(),
    }
}

/// `code` of a ResultInfo reply body, if it is JSON with an integer code.
pub(crate) fn reply_code(body: &[u8]) -> Option<i64> {
    serde_json::from_slice::<Value>(body).ok().and_then(|v| get_ci(&v, "code").and_then(Value::as_i64))
}

/// Go's `strconv.Atoi` for the uploader's parameters (optional sign, decimal digits).
pub(crate) fn go_atoi(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.ParseInt: parsing {s:?}: invalid syntax"));
    }
    s.parse::<i64>().map_err(|_| format!("strconv.ParseInt: parsing {s:?}: value out of range"))
}

/// Number of pieces of a source of `len` bytes; `None` when the length is unknown. Each piece
/// carries `piece_size - 5` payload bytes, and an empty source still has one (empty) piece.
pub fn piece_count(len: i64, piece_size: u64) -> Option<u64> {
    if len < 0 || piece_size <= PIECE_META {
        return None;
    }
    if len == 0 {
        return Some(1);
    }
    Some((len as u64).div_ceil(piece_size - PIECE_META))
}

/// Lowercase hex md5 of `data`.
pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// md5 of a whole file, read in 1 MiB blocks.
pub fn md5_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = File::open(path)?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_escaping() {
        let s = go_json(&serde_json::json!({"u": "http://a/b?x=1&y=<2>"})).unwrap();
        assert_eq!(s, r#"{"u":"http://a/b?x=1\u0026y=\u003c2\u003e"}"#);
    }

    #[test]
    fn atoi_like_go() {
        assert_eq!(go_atoi("12"), Ok(12));
        assert_eq!(go_atoi("+3"), Ok(3));
        assert!(go_atoi("").is_err());
        assert!(go_atoi("1a").is_err());
        assert!(go_atoi("-").is_err());
    }

    #[test]
    fn counts() {
        assert_eq!(piece_count(64 << 20, 4 << 20), Some(17));
        assert_eq!(piece_count(0, 4 << 20), Some(1));
        assert_eq!(piece_count(-1, 4 << 20), None);
        assert_eq!(piece_count(10 << 20, 4 << 20), Some(3));
    }
}
