//! The one error type of the crate.
//!
//! Tests assert on *how* a run failed (refused registration, a poll code dfget gives up on, an md5
//! mismatch, a timeout), so the variants follow dfget's failure points rather than the library
//! that raised them.

use std::fmt;
use std::time::Duration;

/// Why a run (or one call) failed.
#[derive(Debug, Clone, PartialEq)]
pub enum SimError {
    /// Bad configuration (an address outside the allowed ones, empty url, ...).
    Config(String),
    /// Local file or socket trouble.
    Io(String),
    /// The registration was refused: HTTP status, ResultInfo code (if any), message.
    Register { http_status: u16, code: Option<i64>, msg: String },
    /// A control request failed on the wire (connect, timeout, non-200 HTTP, not JSON).
    Transport(String),
    /// `/peer/task` answered a code dfget does not continue on (dfget migrates, then fails).
    Poll { code: i64, msg: String },
    /// The server broke the protocol in a way dfget cannot go on with.
    Protocol(String),
    /// The whole file's md5 differs from the expected one.
    Md5Mismatch { real: String, expected: String },
    /// The download did not finish in time.
    Timeout(Duration),
    /// `download`/`service_down` before a registration.
    NotRegistered,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Config(m) => write!(f, "config: {m}"),
            SimError::Io(m) => write!(f, "io: {m}"),
            SimError::Register { http_status, code, msg } => {
                write!(f, "registration refused: HTTP {http_status}, code {code:?}: {msg}")
            }
            SimError::Transport(m) => write!(f, "transport: {m}"),
            SimError::Poll { code, msg } => write!(f, "/peer/task answered {code}: {msg}"),
            SimError::Protocol(m) => write!(f, "protocol: {m}"),
            SimError::Md5Mismatch { real, expected } => {
                write!(f, "Md5NotMatch, real:{real} expect:{expected}")
            }
            SimError::Timeout(d) => write!(f, "download timeout ({:.3}s)", d.as_secs_f64()),
            SimError::NotRegistered => write!(f, "not registered"),
        }
    }
}

impl std::error::Error for SimError {}

pub(crate) fn io_err(what: &str, e: impl fmt::Display) -> SimError {
    SimError::Io(format!("{what}: {e}"))
}
