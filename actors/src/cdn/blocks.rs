//! Source bytes gathered into blocks before they go to the writer and the hasher.
//!
//! The HTTP client hands the body over in chunks of a few KiB (what one socket read gave).
//! Everything done per chunk downstream (two channel sends, waking two threads, a write
//! call) then costs more than the bytes themselves. A block gathers chunks, without copying
//! them, until it holds [`BLOCK`] bytes: the writer writes it with one `writev` and the threads wake
//! once per block. A block also ends where a piece's payload ends, so a finished piece never
//! waits for the next block's bytes to be announced.

use bytes::Bytes;

/// A block ends with the chunk that makes it this long (or with a piece's payload).
pub const BLOCK: usize = 256 << 10;

/// Chunks in order, sliced where a piece's payload ends.
pub type Block = Vec<Bytes>;

pub struct Blocks {
    parts: Block,
    len: usize,
    payload_size: u64,
    /// Payload bytes until the current piece's payload ends.
    left_in_piece: u64,
}

impl Blocks {
    /// Blocks for pieces of `payload_size` payload bytes, starting at a piece boundary.
    pub fn new(payload_size: u64) -> Blocks {
        let payload_size = payload_size.max(1);
        Blocks { parts: Vec::new(), len: 0, payload_size, left_in_piece: payload_size }
    }

    /// Adds a chunk; every block it completes is pushed onto `ready`, in order.
    pub fn add(&mut self, mut chunk: Bytes, ready: &mut Vec<Block>) {
        while !chunk.is_empty() {
            let take = (self.left_in_piece as usize).min(chunk.len());
            let part = chunk.split_to(take);
            self.len += part.len();
            self.parts.push(part);
            self.left_in_piece -= take as u64;
            if self.left_in_piece == 0 {
                self.left_in_piece = self.payload_size;
                ready.push(self.take());
            } else if self.len >= BLOCK {
                ready.push(self.take());
            }
        }
    }

    /// What is left at the end of the body, if anything.
    pub fn rest(mut self) -> Option<Block> {
        (!self.parts.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> Block {
        self.len = 0;
        std::mem::take(&mut self.parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(payload: u64, chunks: &[usize]) -> Vec<usize> {
        let mut blocks = Blocks::new(payload);
        let mut ready = Vec::new();
        let mut all = Vec::new();
        let mut sent = 0usize;
        for len in chunks {
            let chunk: Vec<u8> = (sent + 1..=sent + len).map(|i| i as u8).collect();
            sent += len;
            blocks.add(Bytes::from(chunk), &mut ready);
        }
        ready.extend(blocks.rest());
        for part in ready.iter().flatten() {
            all.extend_from_slice(part);
        }
        let expected: Vec<u8> = (1..=chunks.iter().sum::<usize>()).map(|i| i as u8).collect();
        assert_eq!(all, expected, "the bytes come out in order, none lost or doubled");
        ready.iter().map(|b| b.iter().map(Bytes::len).sum()).collect()
    }

    #[test]
    fn small_chunks_become_whole_blocks() {
        assert_eq!(run(4 << 20, &[8192; 96]), vec![BLOCK, BLOCK, BLOCK]);
        assert_eq!(run(4 << 20, &[8192; 33]), vec![BLOCK, 8192]);
    }

    #[test]
    fn a_block_ends_where_a_piece_ends() {
        let payload = BLOCK as u64 + 1000;
        assert_eq!(run(payload, &[BLOCK + 3000]), vec![BLOCK + 1000, 2000]);
        assert_eq!(run(payload, &[BLOCK - 10, 3000]), vec![BLOCK + 1000, 1990]);
        assert_eq!(run(10, &[25]), vec![10, 10, 5]);
    }

    #[test]
    fn an_empty_body_gives_nothing() {
        assert_eq!(run(4 << 20, &[]), Vec::<usize>::new());
        assert_eq!(run(4 << 20, &[0, 0]), Vec::<usize>::new());
    }
}
