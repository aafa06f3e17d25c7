//! The CDN write path: cuts the source stream into pieces, frames each one (§5.4),
//! hashes it (§5.5) and writes it to the temporary file, on threads of its own so the
//! network side never waits for the disk or for md5.
//!
//! Two threads per run: the writer (framing, piece md5, disk) and a hasher for the
//! md5 of the whole source, fed with cheap `Bytes` clones. Each piece is announced
//! through `on_piece` right after its bytes are written; the file is verified,
//! synced and renamed only at the end.

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use bytes::Bytes;
use md5::{Digest, Md5};

use super::store::{CacheStore, FileMeta};
use crate::ids::TaskId;
use crate::piece::{piece_header, piece_md5_string, PieceLayout, PIECE_TRAILER};

/// Why a run's data could not become a cached file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    #[error("cache not writable: {0}")]
    Disk(String),
    #[error("source sent {got} bytes, expected {expected}")]
    Length { expected: u64, got: u64 },
    #[error("md5 mismatch: expected {expected}, source bytes have {got}")]
    Md5 { expected: String, got: String },
    #[error("run abandoned before the end of the source")]
    Aborted,
    #[error("cache quota exceeded: the file needs more than the {0} bytes allowed")]
    Quota(u64),
}

/// The finished, verified file.
#[derive(Debug, Clone)]
pub struct WrittenFile {
    pub piece_md5s: Vec<String>,
    pub real_md5: String,
    pub http_len: u64,
    pub file_length: u64,
}

pub struct WriterSpec {
    pub store: CacheStore,
    pub task_id: TaskId,
    pub piece_size: u64,
    /// Known source length (Content-Length), checked at the end.
    pub expected_len: Option<u64>,
    /// md5 the client gave, checked at the end.
    pub expected_md5: Option<String>,
    /// Metadata to persist on success; lengths and md5 are filled in here.
    pub meta: FileMeta,
    /// Largest CDN file allowed (cache quota), if any.
    pub max_file_bytes: Option<u64>,
}

/// Handle to a running writer: send chunks, then `finish`.
/// What the network side sends; a channel closed without `End` means the run was abandoned.
enum Input {
    Chunk(Bytes),
    End,
}

pub struct Writer {
    tx: Option<tokio::sync::mpsc::Sender<Input>>,
    join: Option<JoinHandle<Result<WrittenFile, WriteError>>>,
}

impl Writer {
    pub fn spawn(spec: WriterSpec, on_piece: impl Fn(u64, String, u64) + Send + 'static) -> Writer {
        let (tx, rx) = tokio::sync::mpsc::channel::<Input>(64);
        let join = thread::Builder::new()
            .name(format!("cdn-writer-{}", &spec.task_id.as_str()[..8]))
            .spawn(move || write_all(spec, rx, on_piece))
            .ok();
        Writer { tx: Some(tx), join }
    }

    /// Queues a chunk; errors when the writer stopped (disk error), so the caller stops reading.
    pub async fn send(&mut self, chunk: Bytes) -> Result<(), ()> {
        match &self.tx {
            Some(tx) => tx.send(Input::Chunk(chunk)).await.map_err(|_| ()),
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
            _ => Err(WriteError::Disk("writer thread failed".into())),
        }
    }
}

impl Drop for Writer {
    /// An abandoned run: closing the channel makes the writer stop; it removes its temp file.
    fn drop(&mut self) {
        self.tx.take();
    }
}

fn disk(e: io::Error) -> WriteError {
    WriteError::Disk(e.to_string())
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
/// Nothing is buffered beyond the file's write buffer, and each piece's md5 is computed
/// while its bytes are still in cache.
struct PieceWriter<F: Fn(u64, String, u64)> {
    out: io::BufWriter<File>,
    layout: PieceLayout,
    /// Source length when the source said it; decides the last piece's header up front.
    expected_len: Option<u64>,
    max_file_bytes: Option<u64>,
    open: Option<OpenPiece>,
    piece_md5s: Vec<String>,
    written: u64,
    on_piece: F,
}

impl<F: Fn(u64, String, u64)> PieceWriter<F> {
    fn header_len(&self, num: u64) -> u64 {
        match self.expected_len {
            Some(len) => PieceLayout::new(len, self.layout.piece_size).payload_len(num),
            None => self.layout.payload_size(),
        }
    }

    fn start(&mut self, num: u64) -> Result<(), WriteError> {
        let header_len = self.header_len(num);
        let header = piece_header(header_len, self.layout.piece_size);
        self.out.write_all(&header).map_err(disk)?;
        let mut md5 = Md5::new();
        md5.update(header);
        self.open = Some(OpenPiece { num, header_len, received: 0, md5 });
        Ok(())
    }

    fn push(&mut self, mut data: &[u8]) -> Result<(), WriteError> {
        let payload_size = self.layout.payload_size();
        while !data.is_empty() {
            if self.open.is_none() {
                self.start(self.piece_md5s.len() as u64)?;
            }
            let Some(piece) = self.open.as_mut() else { return Err(WriteError::Disk("no open piece".into())) };
            let take = ((payload_size - piece.received) as usize).min(data.len());
            let (now, rest) = data.split_at(take);
            if let Some(max) = self.max_file_bytes {
                if self.written + 4 + piece.received + take as u64 + 1 > max {
                    return Err(WriteError::Quota(max));
                }
            }
            self.out.write_all(now).map_err(disk)?;
            piece.md5.update(now);
            piece.received += take as u64;
            data = rest;
            if piece.received == payload_size {
                self.close()?;
            }
        }
        Ok(())
    }

    /// Ends the open piece (or writes the one empty piece of an empty source).
    fn close(&mut self) -> Result<(), WriteError> {
        let piece = match self.open.take() {
            Some(p) => p,
            None => {
                self.start(0)?;
                self.open.take().ok_or_else(|| WriteError::Disk("no open piece".into()))?
            }
        };
        self.out.write_all(&[PIECE_TRAILER]).map_err(disk)?;
        self.out.flush().map_err(disk)?;
        let wrapped = piece.received + 5;
        let md5 = if piece.received == piece.header_len {
            let mut md5 = piece.md5;
            md5.update([PIECE_TRAILER]);
            md5.finalize()
        } else {
            // A source of unknown length ended inside this piece: fix its header and hash it again.
            self.rewrite_header(piece.num, piece.received)?
        };
        let md5 = piece_md5_string(&md5, wrapped);
        self.written += wrapped;
        self.piece_md5s.push(md5.clone());
        (self.on_piece)(piece.num, md5, self.written);
        Ok(())
    }

    fn rewrite_header(&mut self, num: u64, data_len: u64) -> Result<md5::digest::Output<Md5>, WriteError> {
        use std::os::unix::fs::FileExt;
        let offset = num * self.layout.piece_size;
        let file = self.out.get_ref();
        file.write_all_at(&piece_header(data_len, self.layout.piece_size), offset).map_err(disk)?;
        let mut bytes = vec![0u8; (data_len + 5) as usize];
        file.read_exact_at(&mut bytes, offset).map_err(disk)?;
        Ok(Md5::digest(&bytes))
    }
}

fn write_all(
    spec: WriterSpec,
    mut rx: tokio::sync::mpsc::Receiver<Input>,
    on_piece: impl Fn(u64, String, u64),
) -> Result<WrittenFile, WriteError> {
    let tmp = spec.store.temp_path(&spec.task_id);
    let result = (|| {
        std::fs::create_dir_all(spec.store.dir(&spec.task_id)).map_err(disk)?;
        // Readable too: a last piece of a source of unknown length is re-read to fix its header.
        let file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&tmp).map_err(disk)?;
        let (hash_tx, hash_rx) = mpsc::sync_channel::<Bytes>(64);
        let hasher = thread::Builder::new()
            .name("cdn-md5".into())
            .spawn(move || {
                let mut h = Md5::new();
                for chunk in hash_rx {
                    h.update(&chunk);
                }
                hex::encode(h.finalize())
            })
            .map_err(disk)?;

        let mut pieces = PieceWriter {
            out: io::BufWriter::with_capacity(1 << 20, file),
            layout: PieceLayout::new(0, spec.piece_size),
            expected_len: spec.expected_len,
            max_file_bytes: spec.max_file_bytes,
            open: None,
            piece_md5s: Vec::new(),
            written: 0,
            on_piece,
        };
        let mut received: u64 = 0;
        loop {
            let chunk = match rx.blocking_recv() {
                Some(Input::Chunk(c)) => c,
                Some(Input::End) => break,
                None => return Err(WriteError::Aborted),
            };
            received += chunk.len() as u64;
            let _ = hash_tx.send(chunk.clone());
            pieces.push(&chunk)?;
        }
        if pieces.open.is_some() || pieces.piece_md5s.is_empty() {
            pieces.close()?;
        }
        drop(hash_tx);
        let real_md5 = hasher.join().map_err(|_| WriteError::Disk("md5 thread failed".into()))?;

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
        let file = pieces.out.into_inner().map_err(|e| disk(e.into_error()))?;
        file.sync_data().map_err(disk)?;
        drop(file);
        let (piece_md5s, written) = (pieces.piece_md5s, pieces.written);
        let mut meta = spec.meta;
        meta.http_file_len = received as i64;
        meta.file_length = written as i64;
        meta.real_md5 = real_md5.clone();
        meta.piece_size = spec.piece_size;
        meta.finish = true;
        meta.success = true;
        std::fs::rename(&tmp, spec.store.data_path(&spec.task_id)).map_err(disk)?;
        spec.store.write_md5_list(&spec.task_id, &piece_md5s, &real_md5).map_err(disk)?;
        spec.store.write_meta(&spec.task_id, &meta).map_err(disk)?;
        Ok(WrittenFile { piece_md5s, real_md5, http_len: received, file_length: written })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
