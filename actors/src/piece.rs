//! Piece geometry, the wrapped piece format and piece digests. Part of the vocabulary:
//! imports nothing of the crate.
//!
//! A task's source is cut into pieces of `pieceSize` bytes in the CDN file; each holds
//! `pieceSize - 5` payload bytes framed by a 4-byte header and a 1-byte trailer, the format
//! dfget checks on every piece it fetches.

use std::fmt;
use std::str::FromStr;

pub const MIB: u64 = 1024 * 1024;
/// 4-byte header + 1-byte trailer around every piece payload.
pub const PIECE_OVERHEAD: u64 = 5;
pub const PIECE_TRAILER: u8 = 0x7f;
pub const DEFAULT_PIECE_SIZE: u64 = 4 * MIB;
pub const MAX_PIECE_SIZE: u64 = 15 * MIB;

/// Piece size for a source of `http_len` bytes: 4 MiB up to 200 MiB (or an unknown length),
/// then one more MiB per 100 MiB, at most 15 MiB (Go's rule).
pub fn piece_size_for(http_len: i64) -> u64 {
    if http_len <= 200 * MIB as i64 {
        return DEFAULT_PIECE_SIZE;
    }
    let len = http_len as u64;
    ((len / (100 * MIB) + 2) * MIB).min(MAX_PIECE_SIZE)
}

/// Pieces of a source of `http_len` bytes served unwrapped, without header or trailer (the
/// source CDN pattern): each covers a whole piece size of the source.
pub fn unwrapped_piece_count(http_len: u64) -> u64 {
    http_len.div_ceil(piece_size_for(http_len as i64))
}

/// Geometry of one task's CDN file, derived from source length and piece size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PieceLayout {
    pub http_len: u64,
    pub piece_size: u64,
}

impl PieceLayout {
    pub fn new(http_len: u64, piece_size: u64) -> Self {
        PieceLayout { http_len, piece_size }
    }

    pub fn payload_size(&self) -> u64 {
        self.piece_size - PIECE_OVERHEAD
    }

    /// Number of pieces; an empty source still has one (a 5-byte piece with no payload).
    pub fn piece_count(&self) -> u64 {
        self.http_len.div_ceil(self.payload_size()).max(1)
    }

    /// Length of the CDN (wrapped) file.
    pub fn file_length(&self) -> u64 {
        self.http_len + PIECE_OVERHEAD * self.piece_count()
    }

    /// Payload bytes of piece `n`.
    pub fn payload_len(&self, n: u64) -> u64 {
        let start = n * self.payload_size();
        self.http_len.saturating_sub(start).min(self.payload_size())
    }

    /// Bytes of piece `n` in the CDN file.
    pub fn wrapped_len(&self, n: u64) -> u64 {
        self.payload_len(n) + PIECE_OVERHEAD
    }

    /// The range handed out for piece `n`: always a whole slot of `piece_size` bytes, also for
    /// the last piece (clients clamp it to the file).
    pub fn slot(&self, n: u64) -> PieceRange {
        PieceRange { start: n * self.piece_size, end: n * self.piece_size + self.piece_size - 1 }
    }
}

/// The 4-byte big-endian header: `dataLen | pieceSize << 4`.
pub fn piece_header(data_len: u64, piece_size: u64) -> [u8; 4] {
    ((data_len as u32) | ((piece_size as u32) << 4)).to_be_bytes()
}

/// The digest of one wrapped piece as clients check it: md5 of the whole wrapped piece and
/// its length, written `md5hex:wrappedLen` on the wire (`pieceMd5`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PieceDigest {
    pub md5: [u8; 16],
    pub len: u64,
}

impl PieceDigest {
    pub fn new(md5: [u8; 16], len: u64) -> PieceDigest {
        PieceDigest { md5, len }
    }

    /// The md5 part alone, lowercase hex: what is compared when the piece is read back from disk.
    pub fn md5_hex(&self) -> String {
        hex::encode(self.md5)
    }
}

impl fmt::Display for PieceDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", hex::encode(self.md5), self.len)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid piece digest {0:?}: expected <32 hex digits>:<length>")]
pub struct PieceDigestError(pub String);

impl FromStr for PieceDigest {
    type Err = PieceDigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PieceDigestError(s.to_string());
        let (md5, len) = s.split_once(':').ok_or_else(err)?;
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(md5, &mut bytes).map_err(|_| err())?;
        if md5.bytes().any(|b| b.is_ascii_uppercase()) || len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        Ok(PieceDigest { md5: bytes, len: len.parse().map_err(|_| err())? })
    }
}

/// Why bytes are not one wrapped piece.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PieceFormatError {
    #[error("a wrapped piece has at least 5 bytes, got {0}")]
    TooShort(usize),
    #[error("header says {header} payload bytes, the piece carries {actual}")]
    LengthMismatch { header: u64, actual: u64 },
    #[error("header says piece size {header}, expected {expected}")]
    SizeMismatch { header: u64, expected: u64 },
    #[error("trailer byte is {0:#04x}, expected 0x7f")]
    BadTrailer(u8),
}

/// Checks the framing of one wrapped piece and returns its payload.
pub fn unwrap_piece(bytes: &[u8], piece_size: u64) -> Result<&[u8], PieceFormatError> {
    if bytes.len() < PIECE_OVERHEAD as usize {
        return Err(PieceFormatError::TooShort(bytes.len()));
    }
    let header = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as u64;
    let data_len = header & 0x00FF_FFFF;
    let actual = (bytes.len() - PIECE_OVERHEAD as usize) as u64;
    if data_len != actual {
        return Err(PieceFormatError::LengthMismatch { header: data_len, actual });
    }
    // Piece sizes are whole MiB, so `pieceSize << 4` sits above the 24 data-length bits.
    let size_bits = header & !0x00FF_FFFF;
    if size_bits != (piece_size << 4) & 0xFF00_0000 {
        return Err(PieceFormatError::SizeMismatch { header: size_bits >> 4, expected: piece_size });
    }
    let trailer = bytes[bytes.len() - 1];
    if trailer != PIECE_TRAILER {
        return Err(PieceFormatError::BadTrailer(trailer));
    }
    Ok(&bytes[4..bytes.len() - 1])
}

/// A byte range `start-end` (inclusive) in CDN-file coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PieceRange {
    pub start: u64,
    pub end: u64,
}

impl PieceRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid piece range {0:?}: expected <start>-<end> with end >= start")]
pub struct PieceRangeError(pub String);

impl FromStr for PieceRange {
    type Err = PieceRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PieceRangeError(s.to_string());
        let (a, b) = s.split_once('-').ok_or_else(err)?;
        let digits = |x: &str| !x.is_empty() && x.len() <= 19 && x.bytes().all(|c| c.is_ascii_digit());
        if !digits(a) || !digits(b) {
            return Err(err());
        }
        let start: u64 = a.parse().map_err(|_| err())?;
        let end: u64 = b.parse().map_err(|_| err())?;
        if end < start {
            return Err(err());
        }
        Ok(PieceRange { start, end })
    }
}

impl fmt::Display for PieceRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_sizes() {
        assert_eq!(piece_size_for(-1), 4 * MIB);
        assert_eq!(piece_size_for(0), 4 * MIB);
        assert_eq!(piece_size_for(200 * MIB as i64), 4 * MIB);
        assert_eq!(piece_size_for(201 * MIB as i64), 4 * MIB);
        assert_eq!(piece_size_for(300 * MIB as i64), 5 * MIB);
        assert_eq!(piece_size_for(1024 * MIB as i64), 12 * MIB);
        assert_eq!(piece_size_for(1299 * MIB as i64), 14 * MIB);
        assert_eq!(piece_size_for(1300 * MIB as i64), 15 * MIB);
        assert_eq!(piece_size_for(5000 * MIB as i64), 15 * MIB);
        assert_eq!(piece_size_for(20 * 1024 * MIB as i64), 15 * MIB, "a 20 GiB file");
    }

    #[test]
    fn lengths() {
        let l = PieceLayout::new(64 * MIB, 4 * MIB);
        assert_eq!(l.piece_count(), 17);
        assert_eq!(l.file_length(), 67_108_949);
        let l = PieceLayout::new(10 * MIB, 4 * MIB);
        assert_eq!(l.piece_count(), 3);
        assert_eq!(l.file_length(), 10_485_775);
        assert_eq!(l.wrapped_len(2), 2_097_167);
        let l = PieceLayout::new(0, 4 * MIB);
        assert_eq!(l.piece_count(), 1);
        assert_eq!(l.file_length(), 5);
        assert_eq!(l.slot(16).to_string(), "67108864-71303167");
    }

    #[test]
    fn headers() {
        assert_eq!(piece_header(4 * MIB - 5, 4 * MIB), 0x043F_FFFBu32.to_be_bytes());
        assert_eq!(piece_header(2_097_162, 4 * MIB), 0x0420_000Au32.to_be_bytes());
        assert_eq!(piece_header(0, 4 * MIB), [4, 0, 0, 0]);
    }

    #[test]
    fn unwraps() {
        let payload = b"hello";
        let mut wrapped = piece_header(5, 4 * MIB).to_vec();
        wrapped.extend_from_slice(payload);
        wrapped.push(PIECE_TRAILER);
        assert_eq!(unwrap_piece(&wrapped, 4 * MIB).unwrap(), payload);
        assert_eq!(unwrap_piece(&[4, 0, 0, 0, 0x7f], 4 * MIB).unwrap(), b"");
        assert!(matches!(unwrap_piece(&wrapped[..6], 4 * MIB), Err(PieceFormatError::LengthMismatch { .. })));
        assert!(matches!(unwrap_piece(&wrapped, 5 * MIB), Err(PieceFormatError::SizeMismatch { .. })));
        let mut bad = wrapped.clone();
        *bad.last_mut().unwrap() = 0;
        assert_eq!(unwrap_piece(&bad, 4 * MIB), Err(PieceFormatError::BadTrailer(0)));
        assert_eq!(unwrap_piece(&[1, 2], 4 * MIB), Err(PieceFormatError::TooShort(2)));
    }

    #[test]
    fn digests() {
        let d: PieceDigest = "0123456789abcdef0123456789abcdef:4194304".parse().unwrap();
        assert_eq!(d.len, 4194304);
        assert_eq!(d.md5_hex(), "0123456789abcdef0123456789abcdef");
        assert_eq!(d.to_string(), "0123456789abcdef0123456789abcdef:4194304");
        for bad in [
            "",
            "abc:1",
            "0123456789abcdef0123456789abcdef",
            "0123456789ABCDEF0123456789abcdef:1",
            "0123456789abcdef0123456789abcdef:-1",
        ] {
            assert!(bad.parse::<PieceDigest>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges() {
        let r: PieceRange = "4194304-8388607".parse().unwrap();
        assert_eq!((r.start, r.len()), (4194304, 4194304));
        assert!("".parse::<PieceRange>().is_err());
        assert!("5-4".parse::<PieceRange>().is_err());
        assert!("-1-4".parse::<PieceRange>().is_err());
        assert!("1-2-3".parse::<PieceRange>().is_err());
        assert!("+1-4".parse::<PieceRange>().is_err());
        assert!("99999999999999999999-1".parse::<PieceRange>().is_err());
    }
}
