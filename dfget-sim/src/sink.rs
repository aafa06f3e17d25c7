//! A streaming output, for files larger than the disk: a peer still writes every piece at its
//! place in its output file, which its uploader serves as usual, but hashes the payload in
//! order as it arrives and gives the piece's blocks back to the disk (a punched hole) once
//! every peer of its [`SinkGroup`] has hashed it, since then none of them is asked for it again.
//! On the wire nothing changes; the run's md5 is the streamed one instead of a read of the file.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use md5::{Digest, Md5};

/// The peers that download one file together into sinks.
pub struct SinkGroup {
    members: usize,
    state: Mutex<GroupState>,
}

#[derive(Default)]
struct GroupState {
    files: Vec<Arc<File>>,
    /// Piece number → members that hashed it, until all have.
    hashed: HashMap<u64, usize>,
    punched: u64,
}

impl fmt::Debug for SinkGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkGroup").field("members", &self.members).field("punched", &self.punched_bytes()).finish()
    }
}

impl SinkGroup {
    /// A group of `members` peers (every one of them must download into it).
    pub fn new(members: usize) -> Arc<SinkGroup> {
        Arc::new(SinkGroup { members: members.max(1), state: Mutex::new(GroupState::default()) })
    }

    /// Payload bytes given back to the disk so far, over all members.
    pub fn punched_bytes(&self) -> u64 {
        self.state.lock().map_or(0, |s| s.punched)
    }

    fn join(&self, file: Arc<File>) {
        if let Ok(mut s) = self.state.lock() {
            s.files.push(file);
        }
    }

    /// A member hashed the payload at `offset..offset+len` of piece `n`.
    fn hashed(&self, n: u64, offset: u64, len: u64) -> std::io::Result<()> {
        let Ok(mut s) = self.state.lock() else { return Ok(()) };
        let count = s.hashed.entry(n).or_default();
        *count += 1;
        if *count < self.members {
            return Ok(());
        }
        s.hashed.remove(&n);
        for f in &s.files {
            punch(f, offset, len)?;
        }
        s.punched += len * s.files.len() as u64;
        Ok(())
    }
}

/// Frees the blocks of `offset..offset+len` (reads give zeros), keeping the file's length.
fn punch(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: a valid open descriptor; fallocate only changes the file's blocks.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset as libc::off_t, len as libc::off_t) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One peer's sink.
pub(crate) struct Sink {
    group: Arc<SinkGroup>,
    file: Arc<File>,
    state: Mutex<Stream>,
}

/// Where the in-order hash is, and what arrived ahead of it.
struct Stream {
    next: u64,
    md5: Md5,
    /// Piece number → (offset, length) of payloads written but not hashed yet.
    ahead: BTreeMap<u64, (u64, u64)>,
}

impl Sink {
    /// The sink of the output `file`, in `group`.
    pub(crate) fn join(group: Arc<SinkGroup>, file: Arc<File>) -> Sink {
        group.join(file.clone());
        Sink { group, file, state: Mutex::new(Stream { next: 0, md5: Md5::new(), ahead: BTreeMap::new() }) }
    }

    /// Piece `n`'s `payload`, just written at `offset`: hashed now if it is next, with whatever
    /// waited for it (read back from the file), else when its turn comes.
    pub(crate) fn written(&self, n: u64, offset: u64, payload: &[u8]) -> std::io::Result<()> {
        let mut s = self.state.lock().map_err(|_| std::io::Error::other("sink lock poisoned"))?;
        if n < s.next || s.ahead.contains_key(&n) {
            return Ok(());
        }
        if n > s.next {
            s.ahead.insert(n, (offset, payload.len() as u64));
            return Ok(());
        }
        s.md5.update(payload);
        s.next += 1;
        self.group.hashed(n, offset, payload.len() as u64)?;
        let mut buf = Vec::new();
        loop {
            let n = s.next;
            let Some((off, len)) = s.ahead.remove(&n) else { break };
            buf.resize(len as usize, 0);
            self.file.read_exact_at(&mut buf, off)?;
            s.md5.update(&buf);
            s.next += 1;
            self.group.hashed(n, off, len)?;
        }
        Ok(())
    }

    /// The md5 of the `pieces` pieces, all hashed; `None` while some are not.
    pub(crate) fn md5(&self, pieces: u64) -> Option<String> {
        let s = self.state.lock().ok()?;
        (s.next >= pieces && s.ahead.is_empty()).then(|| hex::encode(s.md5.clone().finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn pieces_out_of_order_hash_in_order_and_go_once_every_member_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let group = SinkGroup::new(2);
        let open = |name: &str| {
            Arc::new(
                File::options().read(true).write(true).create(true).truncate(true).open(dir.path().join(name)).unwrap(),
            )
        };
        let (fa, fb) = (open("a"), open("b"));
        let (a, b) = (Sink::join(group.clone(), fa.clone()), Sink::join(group.clone(), fb.clone()));
        const LEN: usize = 1 << 20;
        let piece = |n: u8| vec![n; LEN];
        for (sink, file, order) in [(&a, &fa, [1u8, 0, 2]), (&b, &fb, [2, 1, 0])] {
            for n in order {
                let off = n as u64 * LEN as u64;
                file.write_all_at(&piece(n), off).unwrap();
                sink.written(n as u64, off, &piece(n)).unwrap();
            }
        }
        let whole: Vec<u8> = (0..3).flat_map(piece).collect();
        let md5 = hex::encode(Md5::digest(&whole));
        assert_eq!((a.md5(3), b.md5(3)), (Some(md5.clone()), Some(md5)));
        assert_eq!(a.md5(4), None, "a piece is missing");
        assert_eq!(group.punched_bytes(), 6 * LEN as u64);
        for f in [&fa, &fb] {
            let m = f.metadata().unwrap();
            assert_eq!(m.len(), 3 * LEN as u64, "the length stays");
            assert!(m.blocks() * 512 < LEN as u64, "the blocks are given back: {}", m.blocks());
        }
    }
}
