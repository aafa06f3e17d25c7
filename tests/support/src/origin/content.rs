//! What an origin file holds: stored bytes, or bytes generated from a seed so that a 200 MiB
//! source costs 1 MiB of memory and every read is a copy.

use std::sync::Arc;

use md5::{Digest, Md5};

/// Size of the pseudo-random table generated content repeats.
const TABLE: u64 = 1 << 20;

/// A file's bytes: stored, or generated from a seed (random access, never materialised).
///
/// Generated content is a 1 MiB pseudo-random table (from the seed) repeated, each 1 MiB block
/// rotated by its own pseudo-random amount: every read is a memcpy, which keeps 200 MiB cheap
/// even in debug builds, and no two pieces of a file look alike.
#[derive(Clone, Debug)]
pub enum Content {
    Bytes(Arc<Vec<u8>>),
    Generated { seed: u64, len: u64, table: Arc<Vec<u8>> },
}

/// splitmix64's finaliser: a cheap, well-mixed hash of `z`.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Content {
    pub fn generated(seed: u64, len: u64) -> Content {
        let mut table = Vec::with_capacity(TABLE as usize);
        for i in 0..TABLE / 8 {
            table.extend_from_slice(&mix(seed ^ mix(i)).to_le_bytes());
        }
        Content::Generated { seed, len, table: Arc::new(table) }
    }

    pub fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::Generated { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes at `offset..offset+buf.len()` (must lie inside the file).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) {
        assert!(offset + buf.len() as u64 <= self.len(), "read past the end of the content");
        match self {
            Content::Bytes(b) => {
                let start = offset as usize;
                buf.copy_from_slice(&b[start..start + buf.len()]);
            }
            Content::Generated { seed, table, .. } => {
                let mut pos = offset;
                let mut out = 0usize;
                while out < buf.len() {
                    let (block, within) = (pos / TABLE, pos % TABLE);
                    let shift = mix(seed.wrapping_add(block.wrapping_mul(0xD6E8_FEB8_6659_FD93))) % TABLE;
                    let idx = (within + shift) % TABLE;
                    let n = (TABLE - idx).min(TABLE - within).min((buf.len() - out) as u64) as usize;
                    buf[out..out + n].copy_from_slice(&table[idx as usize..idx as usize + n]);
                    out += n;
                    pos += n as u64;
                }
            }
        }
    }

    /// `len` bytes from `offset`.
    pub fn slice(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.read_at(offset, &mut v);
        v
    }

    /// The whole content (use for small files only).
    pub fn to_vec(&self) -> Vec<u8> {
        self.slice(0, self.len() as usize)
    }

    /// Lowercase hex md5 of the whole content.
    pub fn md5_hex(&self) -> String {
        let mut h = Md5::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = 0;
        while pos < self.len() {
            let n = (self.len() - pos).min(buf.len() as u64) as usize;
            self.read_at(pos, &mut buf[..n]);
            h.update(&buf[..n]);
            pos += n as u64;
        }
        hex(&h.finalize())
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `len` bytes of a fixed pattern, different for each `salt`: small sources whose bytes the
/// test can also compute.
pub fn salted_bytes(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 8) as u8).collect()
}
