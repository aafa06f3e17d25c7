//! The CDN write path: cuts the source stream into pieces, frames each one (4-byte header,
//! payload, 0x7f), hashes it (md5 of the whole wrapped piece) and writes it to the
//! temporary file, on threads of its own so the network side never waits for the disk or
//! for md5.
//!
//! Two threads per run: the writer (framing, piece md5, disk) and a hasher for the md5 of
//! the whole source, fed with cheap `Bytes` clones. Each piece is announced through
//! `on_piece` right after its bytes are written. At the end the file is verified and
//! synced, and its index and metadata are written; renaming it to its final name is the
//! `CdnManager`'s, which changes its entry at the same moment.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use bytes::Bytes;
use md5::{Digest, Md5};

use super::blocks::Block;
use super::readback::Prefix;
use super::store::{CacheStore, FileMeta};
use crate::failure::WriteError;
use crate::ids::TaskId;
use crate::piece::{piece_header, PieceDigest, PieceLayout, PIECE_TRAILER};

/// The finished, verified file, still under its temporary name.
#[derive(Debug, Clone)]
pub struct WrittenFile {
    pub pieces: Vec<PieceDigest>,
    pub real_md5: String,
    pub http_len: u64,
    pub file_length: u64,
}

pub struct WriterSpec {
    pub store: CacheStore,
    pub task_id: TaskId,
    /// The temporary file, created empty, opened for reading and writing.
    pub file: File,
    pub piece_size: u64,
    /// Known source length (Content-Length), checked at the end.
    pub expected_len: Option<u64>,
    /// md5 the client gave, checked at the end.
    pub expected_md5: Option<String>,
    /// Metadata to persist on success; lengths and md5 are filled in here.
    pub meta: FileMeta,
    /// Largest CDN file allowed (cache quota), if any.
    pub max_file_bytes: Option<u64>,
    /// The whole pieces an interrupted run left at the start of `file`: writing goes on
    /// after them, with the source sending only the rest.
    pub resume: Option<Prefix>,
}

/// Handle to a running writer: send chunks, then `finish`.
/// What the network side sends; a channel closed without `End` means the run was abandoned.
enum Input {
    Block(Block),
    End,
}

pub struct Writer {
    tx: Option<tokio::sync::mpsc::Sender<Input>>,
    join: Option<JoinHandle<Result<WrittenFile, WriteError>>>,
}

impl Writer {
    pub fn spawn(spec: WriterSpec, on_piece: impl Fn(u64, PieceDigest, u64) + Send + 'static) -> Writer {
        let (tx, rx) = tokio::sync::mpsc::channel::<Input>(64);
        let join = thread::Builder::new()
            .name(format!("cdn-writer-{}", &spec.task_id.as_str()[..8]))
            .spawn(move || write_all(spec, rx, on_piece))
            .ok();
        Writer { tx: Some(tx), join }
    }

    /// Queues a block; errors when the writer stopped (disk error), so the caller stops reading.
    pub async fn send(&mut self, block: Block) -> Result<(), ()> {
        match &self.tx {
            Some(tx) => tx.send(Input::Block(block)).await.map_err(|_| ()),
            None => Err(()),
        }
    }

    /// Ends the stream and waits (off the async thread) for the verified file.
    pub async fn finish(mut self) -> Result<WrittenFile, WriteError> {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Input::End).await;
        }
        let join = self.join.take();
        let joined = tokio::task::spawn_blocking(move || join.map(|j| j.join())).await;
        match joined {
            Ok(Some(Ok(result))) => result,
            _ => Err(io::Error::other("writer thread failed").into()),
        }
    }
}

impl Drop for Writer {
    /// An abandoned run: closing the channel makes the writer stop; it removes its temp file.
    fn drop(&mut self) {
        self.tx.take();
    }
}

/// The piece being written: its header went out first, its md5 grows with every slice.
struct OpenPiece {
    num: u64,
    /// Payload length announced in the header already written.
    header_len: u64,
    received: u64,
    md5: Md5,
}

/// Streams payload bytes into framed pieces: header, payload slices as they arrive, trailer.
/// Nothing is buffered, and each piece's md5 is computed while its bytes are still in cache.
struct PieceWriter<F: Fn(u64, PieceDigest, u64)> {
    /// Written to directly: blocks arrive whole (see `blocks`), so a buffer would only copy them.
    out: File,
    layout: PieceLayout,
    /// Source length when the source said it; decides the last piece's header up front.
    expected_len: Option<u64>,
    max_file_bytes: Option<u64>,
    open: Option<OpenPiece>,
    pieces: Vec<PieceDigest>,
    written: u64,
    on_piece: F,
}

impl<F: Fn(u64, PieceDigest, u64)> PieceWriter<F> {
    fn header_len(&self, num: u64) -> u64 {
        match self.expected_len {
            Some(len) => PieceLayout::new(len, self.layout.piece_size).payload_len(num),
            None => self.layout.payload_size(),
        }
    }

    fn start(&mut self, num: u64) -> Result<(), WriteError> {
        let header_len = self.header_len(num);
        let header = piece_header(header_len, self.layout.piece_size);
        self.out.write_all(&header)?;
        let mut md5 = Md5::new();
        md5.update(header);
        self.open = Some(OpenPiece { num, header_len, received: 0, md5 });
        Ok(())
    }

    /// Writes a block's payload bytes with one `writev` per piece they fall in.
    fn push(&mut self, block: &[Bytes]) -> Result<(), WriteError> {
        let payload_size = self.layout.payload_size();
        let mut batch: Vec<IoSlice<'_>> = Vec::with_capacity(block.len());
        for part in block {
            let mut data: &[u8] = part;
            while !data.is_empty() {
                if self.open.is_none() {
                    self.start(self.pieces.len() as u64)?;
                }
                let Some(piece) = self.open.as_mut() else { return Err(io::Error::other("no open piece").into()) };
                let take = ((payload_size - piece.received) as usize).min(data.len());
                let (now, rest) = data.split_at(take);
                if let Some(max) = self.max_file_bytes {
                    if self.written + 4 + piece.received + take as u64 + 1 > max {
                        return Err(WriteError::Quota(max));
                    }
                }
                batch.push(IoSlice::new(now));
                piece.md5.update(now);
                piece.received += take as u64;
                data = rest;
                if piece.received == payload_size {
                    write_all_vectored(&mut self.out, &mut batch)?;
                    self.close()?;
                }
            }
        }
        write_all_vectored(&mut self.out, &mut batch)?;
        Ok(())
    }

    /// Ends the open piece (or writes the one empty piece of an empty source).
    fn close(&mut self) -> Result<(), WriteError> {
        let piece = match self.open.take() {
            Some(p) => p,
            None => {
                self.start(0)?;
                self.open.take().ok_or_else(|| io::Error::other("no open piece"))?
            }
        };
        self.out.write_all(&[PIECE_TRAILER])?;
        let wrapped = piece.received + 5;
        let md5 = if piece.received == piece.header_len {
            let mut md5 = piece.md5;
            md5.update([PIECE_TRAILER]);
            md5.finalize()
        } else {
            // A source of unknown length ended inside this piece: fix its header and hash it again.
            self.rewrite_header(piece.num, piece.received)?
        };
        let digest = PieceDigest::new(md5.into(), wrapped);
        self.written += wrapped;
        self.pieces.push(digest);
        (self.on_piece)(piece.num, digest, self.written);
        Ok(())
    }

    fn rewrite_header(&mut self, num: u64, data_len: u64) -> Result<md5::digest::Output<Md5>, WriteError> {
        use std::os::unix::fs::FileExt;
        let offset = num * self.layout.piece_size;
        let file = &self.out;
        file.write_all_at(&piece_header(data_len, self.layout.piece_size), offset)?;
        let mut bytes = vec![0u8; (data_len + 5) as usize];
        file.read_exact_at(&mut bytes, offset)?;
        Ok(Md5::digest(&bytes))
    }
}

/// Writes every slice of `batch` in order, then empties it.
fn write_all_vectored(out: &mut File, batch: &mut Vec<IoSlice<'_>>) -> io::Result<()> {
    let mut bufs: &mut [IoSlice<'_>] = batch;
    while !bufs.is_empty() {
        match out.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    batch.clear();
    Ok(())
}

fn write_all(
    spec: WriterSpec,
    mut rx: tokio::sync::mpsc::Receiver<Input>,
    on_piece: impl Fn(u64, PieceDigest, u64),
) -> Result<WrittenFile, WriteError> {
    let tmp: PathBuf = spec.store.temp_path(&spec.task_id);
    let result = write_verified(spec, &mut rx, on_piece);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_verified(
    spec: WriterSpec,
    rx: &mut tokio::sync::mpsc::Receiver<Input>,
    on_piece: impl Fn(u64, PieceDigest, u64),
) -> Result<WrittenFile, WriteError> {
    let Prefix { pieces: kept, md5: mut h, payload: mut received } =
        spec.resume.unwrap_or(Prefix { pieces: Vec::new(), md5: Md5::new(), payload: 0 });
    let written = kept.len() as u64 * spec.piece_size;
    // Whatever followed the kept pieces (a cut-off piece) is dropped and written again.
    let mut file = spec.file;
    file.set_len(written)?;
    io::Seek::seek(&mut file, io::SeekFrom::Start(written))?;
    let (hash_tx, hash_rx) = mpsc::sync_channel::<Block>(64);
    let hasher = thread::Builder::new().name("cdn-md5".into()).spawn(move || {
        for part in hash_rx.iter().flatten() {
            h.update(&part);
        }
        hex::encode(h.finalize())
    })?;
    let mut pieces = PieceWriter {
        out: file,
        layout: PieceLayout::new(0, spec.piece_size),
        expected_len: spec.expected_len,
        max_file_bytes: spec.max_file_bytes,
        open: None,
        pieces: kept,
        written,
        on_piece,
    };
    loop {
        let block = match rx.blocking_recv() {
            Some(Input::Block(b)) => b,
            Some(Input::End) => break,
            None => return Err(WriteError::Aborted),
        };
        received += block.iter().map(|part| part.len() as u64).sum::<u64>();
        let _ = hash_tx.send(block.clone());
        pieces.push(&block)?;
    }
    if pieces.open.is_some() || pieces.pieces.is_empty() {
        pieces.close()?;
    }
    drop(hash_tx);
    let real_md5 = hasher.join().map_err(|_| io::Error::other("md5 thread failed"))?;

    if let Some(expected) = spec.expected_len {
        if expected != received {
            return Err(WriteError::Length { expected, got: received });
        }
    }
    if let Some(expected) = &spec.expected_md5 {
        if *expected != real_md5 {
            return Err(WriteError::Md5 { expected: expected.clone(), got: real_md5 });
        }
    }
    let file = pieces.out;
    file.sync_data()?;
    drop(file);
    let (digests, written) = (pieces.pieces, pieces.written);
    let mut meta = spec.meta;
    meta.http_file_len = received as i64;
    meta.file_length = written as i64;
    meta.real_md5 = real_md5.clone();
    meta.piece_size = spec.piece_size;
    meta.finish = true;
    meta.success = true;
    spec.store.write_md5_list(&spec.task_id, &digests, &real_md5)?;
    spec.store.write_meta(&spec.task_id, &meta)?;
    Ok(WrittenFile { pieces: digests, real_md5, http_len: received, file_length: written })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdn::readback;
    use std::sync::{Arc, Mutex};

    const PIECE: u64 = 1 << 20;

    struct Run {
        _home: tempfile::TempDir,
        store: CacheStore,
        id: TaskId,
        writer: Writer,
        announced: Arc<Mutex<Vec<(u64, PieceDigest, u64)>>>,
    }

    fn start(expected_len: Option<u64>, expected_md5: Option<String>, max_file_bytes: Option<u64>) -> Run {
        start_with(expected_len, expected_md5, max_file_bytes, None, None)
    }

    /// A run in `home` (a fresh one when `None`), resuming after `resume` when given.
    fn start_with(
        expected_len: Option<u64>,
        expected_md5: Option<String>,
        max_file_bytes: Option<u64>,
        home: Option<tempfile::TempDir>,
        resume: Option<Prefix>,
    ) -> Run {
        let home = home.unwrap_or_else(|| tempfile::tempdir().unwrap());
        let store = CacheStore::open(home.path()).unwrap();
        let id = TaskId::compute("http://h/f", "", "", None);
        std::fs::create_dir_all(store.dir(&id)).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(resume.is_none())
            .open(store.temp_path(&id))
            .unwrap();
        let announced = Arc::new(Mutex::new(Vec::new()));
        let seen = announced.clone();
        let spec = WriterSpec {
            store: store.clone(),
            task_id: id.clone(),
            file,
            piece_size: PIECE,
            expected_len,
            expected_md5,
            meta: FileMeta { task_id: id.to_string(), ..FileMeta::default() },
            max_file_bytes,
            resume,
        };
        let writer = Writer::spawn(spec, move |n, d, w| seen.lock().unwrap().push((n, d, w)));
        Run { _home: home, store, id, writer, announced }
    }

    fn source(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 253) as u8).collect()
    }

    async fn feed(run: &mut Run, data: &[u8]) {
        for chunk in data.chunks(100_000) {
            run.writer.send(vec![Bytes::copy_from_slice(chunk)]).await.unwrap();
        }
    }

    #[tokio::test]
    async fn known_length_is_framed_hashed_and_left_for_the_manager_to_rename() {
        let data = source(2_500_000);
        let md5 = hex::encode(Md5::digest(&data));
        let mut run = start(Some(data.len() as u64), Some(md5.clone()), None);
        feed(&mut run, &data).await;
        let Run { store, id, writer, announced, _home } = run;
        let out = writer.finish().await.unwrap();
        assert_eq!((out.http_len, out.real_md5.as_str()), (data.len() as u64, md5.as_str()));
        let layout = PieceLayout::new(data.len() as u64, PIECE);
        assert_eq!(out.file_length, layout.file_length());
        let (on_disk, file_md5) = readback::rehash(&store.temp_path(&id), &layout).unwrap();
        assert_eq!((on_disk.clone(), file_md5), (out.pieces.clone(), md5.clone()));
        let seen = announced.lock().unwrap().clone();
        assert_eq!(seen.iter().map(|(n, _, _)| *n).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(seen.last().map(|(_, _, w)| *w), Some(out.file_length));
        assert!(!store.data_path(&id).exists(), "the writer does not rename");
        let meta = store.read_meta(&id).unwrap();
        assert!(meta.is_complete() && meta.real_md5 == md5 && meta.file_length == out.file_length as i64);
        assert_eq!(store.read_md5_list(&id, &md5, 3), Some(out.pieces));
    }

    #[tokio::test]
    async fn unknown_length_fixes_the_last_header() {
        let data = source(PIECE as usize + 12_345);
        let mut run = start(None, None, None);
        feed(&mut run, &data).await;
        let out = run.writer.finish().await.unwrap();
        let layout = PieceLayout::new(data.len() as u64, PIECE);
        let (on_disk, _) = readback::rehash(&run.store.temp_path(&run.id), &layout).unwrap();
        assert_eq!(on_disk, out.pieces, "the last piece's header says its real length");
    }

    #[tokio::test]
    async fn an_empty_source_is_one_empty_piece() {
        let run = start(Some(0), None, None);
        let out = run.writer.finish().await.unwrap();
        assert_eq!((out.pieces.len(), out.file_length), (1, 5));
        assert_eq!(std::fs::read(run.store.temp_path(&run.id)).unwrap(), [1, 0, 0, 0, 0x7f]);
    }

    #[tokio::test]
    async fn short_bodies_wrong_md5s_and_quotas_fail_and_leave_nothing() {
        let data = source(300_000);
        let mut short = start(Some(400_000), None, None);
        feed(&mut short, &data).await;
        let (store, id) = (short.store.clone(), short.id.clone());
        assert!(matches!(short.writer.finish().await, Err(WriteError::Length { expected: 400_000, got: 300_000 })));
        assert!(!store.temp_path(&id).exists());

        let mut md5 = start(None, Some("0".repeat(32)), None);
        feed(&mut md5, &data).await;
        assert!(matches!(md5.writer.finish().await, Err(WriteError::Md5 { .. })));

        let mut quota = start(None, None, Some(100_000));
        let (store, id) = (quota.store.clone(), quota.id.clone());
        for chunk in data.chunks(50_000) {
            if quota.writer.send(vec![Bytes::copy_from_slice(chunk)]).await.is_err() {
                break;
            }
        }
        assert!(matches!(quota.writer.finish().await, Err(WriteError::Quota(100_000))));
        assert!(!store.temp_path(&id).exists());
    }

    #[tokio::test]
    async fn a_resumed_run_writes_the_same_file_as_one_that_was_never_interrupted() {
        let data = source(3_300_000);
        let md5 = hex::encode(Md5::digest(&data));
        let layout = PieceLayout::new(data.len() as u64, PIECE);
        let (whole, whole_file) = {
            let mut run = start(Some(data.len() as u64), None, None);
            feed(&mut run, &data).await;
            let path = run.store.temp_path(&run.id);
            let out = run.writer.finish().await.unwrap();
            (out, std::fs::read(path).unwrap())
        };
        // A killed run leaves the same bytes cut short: two pieces and part of a third.
        let home = tempfile::tempdir().unwrap();
        let store = CacheStore::open(home.path()).unwrap();
        let id = TaskId::compute("http://h/f", "", "", None);
        std::fs::create_dir_all(store.dir(&id)).unwrap();
        std::fs::write(store.temp_path(&id), &whole_file[..2_500_000]).unwrap();
        let prefix = readback::rehash_prefix(&store.temp_path(&id), &layout).unwrap();
        assert_eq!(prefix.pieces.len(), 2);
        let from = prefix.payload as usize;
        let mut second = start_with(Some(data.len() as u64), Some(md5.clone()), None, Some(home), Some(prefix));
        feed(&mut second, &data[from..]).await;
        let out = second.writer.finish().await.unwrap();
        assert_eq!((out.pieces, out.real_md5, out.http_len), (whole.pieces, md5, data.len() as u64));
        let (on_disk, _) = readback::rehash(&second.store.temp_path(&second.id), &layout).unwrap();
        assert_eq!(on_disk.len(), 4);
        assert_eq!(second.announced.lock().unwrap().iter().map(|(n, _, _)| *n).collect::<Vec<_>>(), [2, 3]);
    }

    #[tokio::test]
    async fn an_abandoned_run_removes_its_file() {
        let mut run = start(None, None, None);
        feed(&mut run, &source(10_000)).await;
        let (store, id) = (run.store.clone(), run.id.clone());
        let Writer { tx, join } = &mut run.writer;
        tx.take();
        let result = join.take().unwrap().join().unwrap();
        assert!(matches!(result, Err(WriteError::Aborted)));
        assert!(!store.temp_path(&id).exists());
    }
}
