//! Reading a CDN file back: piece digests and whole-source hashes, for the start-up scan,
//! for a 304 that confirms a copy without an index, for piece-error checks and for layer
//! digests of image preheats. Blocking: callers run these on the blocking pool.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use md5::{Digest, Md5};
use sha2::Sha256;

use crate::piece::{unwrap_piece, PieceDigest, PieceLayout};

fn bad_piece(n: u64, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("piece {n}: {e}"))
}

/// Calls `each(n, wrapped, payload)` for every piece of the file at `path`, in order.
fn for_each_piece(path: &Path, layout: &PieceLayout, mut each: impl FnMut(u64, &[u8], &[u8])) -> io::Result<()> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; layout.piece_size as usize];
    for n in 0..layout.piece_count() {
        let len = layout.wrapped_len(n) as usize;
        file.read_exact(&mut buf[..len])?;
        let piece = &buf[..len];
        let payload = unwrap_piece(piece, layout.piece_size).map_err(|e| bad_piece(n, e))?;
        each(n, piece, payload);
    }
    Ok(())
}

/// Each wrapped piece's digest and the md5 of the source bytes (the payloads).
pub fn rehash(path: &Path, layout: &PieceLayout) -> io::Result<(Vec<PieceDigest>, String)> {
    let mut whole = Md5::new();
    let mut list = Vec::with_capacity(layout.piece_count() as usize);
    for_each_piece(path, layout, |_, piece, payload| {
        list.push(PieceDigest::new(Md5::digest(piece).into(), piece.len() as u64));
        whole.update(payload);
    })?;
    Ok((list, hex::encode(whole.finalize())))
}

/// What an interrupted run left that can be kept: its whole, well-framed pieces before the
/// last one, their digests, and the md5 of their payloads so far.
pub struct Prefix {
    pub pieces: Vec<PieceDigest>,
    pub md5: Md5,
    /// Source bytes the pieces hold.
    pub payload: u64,
}

/// Reads the pieces of a partial CDN file of `layout` from the start, stopping at the first
/// one that is cut off or not framed right; the last piece of the file is never kept, so
/// what remains always needs the source.
pub fn rehash_prefix(path: &Path, layout: &PieceLayout) -> io::Result<Prefix> {
    let mut file = File::open(path)?;
    let mut md5 = Md5::new();
    let mut pieces = Vec::new();
    let mut payload = 0;
    let mut buf = vec![0u8; layout.piece_size as usize];
    for n in 0..layout.piece_count().saturating_sub(1) {
        let len = layout.wrapped_len(n) as usize;
        if file.read_exact(&mut buf[..len]).is_err() {
            break;
        }
        let piece = &buf[..len];
        let Ok(data) = unwrap_piece(piece, layout.piece_size) else { break };
        pieces.push(PieceDigest::new(Md5::digest(piece).into(), len as u64));
        md5.update(data);
        payload += data.len() as u64;
    }
    Ok(Prefix { pieces, md5, payload })
}

/// sha256 (hex) of the source bytes, e.g. to check a layer digest.
pub fn source_sha256(path: &Path, layout: &PieceLayout) -> io::Result<String> {
    let mut sha = Sha256::new();
    for_each_piece(path, layout, |_, _, payload| sha.update(payload))?;
    Ok(hex::encode(sha.finalize()))
}

/// md5 (hex) of the `len` bytes at `offset`, clamped to the end of the file: a last piece
/// is handed out as a whole slot but is shorter on disk.
pub fn md5_at(file: &File, offset: u64, len: u64) -> io::Result<String> {
    let size = file.metadata()?.len();
    if offset >= size {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "piece starts past the end of the file"));
    }
    let mut buf = vec![0u8; len.min(size - offset) as usize];
    file.read_exact_at(&mut buf, offset)?;
    Ok(hex::encode(Md5::digest(&buf)))
}

/// A CDN file of `payload` cut into pieces of `piece_size`, for tests.
#[cfg(test)]
pub(crate) fn wrapped_file(payload: &[u8], piece_size: u64) -> Vec<u8> {
    use crate::piece::{piece_header, PIECE_TRAILER};
    let layout = PieceLayout::new(payload.len() as u64, piece_size);
    let mut out = Vec::new();
    for n in 0..layout.piece_count() {
        let start = (n * layout.payload_size()) as usize;
        let part = &payload[start..start + layout.payload_len(n) as usize];
        out.extend_from_slice(&piece_header(part.len() as u64, piece_size));
        out.extend_from_slice(part);
        out.push(PIECE_TRAILER);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rehash_gives_piece_digests_and_the_source_md5() {
        let dir = tempfile::tempdir().unwrap();
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let file = wrapped_file(&payload, 1 << 20);
        let path = dir.path().join("f");
        std::fs::write(&path, &file).unwrap();
        let layout = PieceLayout::new(payload.len() as u64, 1 << 20);
        let (pieces, md5) = rehash(&path, &layout).unwrap();
        assert_eq!(pieces.len(), 3);
        assert_eq!(md5, hex::encode(Md5::digest(&payload)));
        assert_eq!(pieces[0].md5, <[u8; 16]>::from(Md5::digest(&file[..1 << 20])));
        assert_eq!(pieces[2].len, file.len() as u64 - 2 * (1 << 20));
        assert_eq!(source_sha256(&path, &layout).unwrap(), hex::encode(Sha256::digest(&payload)));
        let f = File::open(&path).unwrap();
        assert_eq!(md5_at(&f, 2 << 20, 1 << 20).unwrap(), pieces[2].md5_hex(), "clamped to the end");
        assert!(md5_at(&f, 10 << 20, 1).is_err());
    }

    #[test]
    fn a_prefix_keeps_whole_pieces_before_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let payload: Vec<u8> = (0..3_500_000u32).map(|i| (i % 241) as u8).collect();
        let file = wrapped_file(&payload, 1 << 20);
        let layout = PieceLayout::new(payload.len() as u64, 1 << 20);
        let path = dir.path().join("f");
        std::fs::write(&path, &file[..(2 << 20) + 100]).unwrap();
        let p = rehash_prefix(&path, &layout).unwrap();
        assert_eq!((p.pieces.len(), p.payload), (2, 2 * ((1 << 20) - 5)), "a cut-off third piece is not kept");
        let mut whole = p.md5.clone();
        whole.update(&payload[p.payload as usize..]);
        assert_eq!(hex::encode(whole.finalize()), hex::encode(Md5::digest(&payload)));
        std::fs::write(&path, &file).unwrap();
        assert_eq!(rehash_prefix(&path, &layout).unwrap().pieces.len(), 3, "never the last of four");
    }

    #[test]
    fn a_broken_frame_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = wrapped_file(&[7u8; 100], 1 << 20);
        *file.last_mut().unwrap() = 0;
        let path = dir.path().join("f");
        std::fs::write(&path, &file).unwrap();
        let err = rehash(&path, &PieceLayout::new(100, 1 << 20)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
