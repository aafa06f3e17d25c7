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

fn write_all(
    spec: WriterSpec,
    mut rx: tokio::sync::mpsc::Receiver<Input>,
    on_piece: impl Fn(u64, String, u64),
) -> Result<WrittenFile, WriteError> {
    let tmp = spec.store.temp_path(&spec.task_id);
    let result = (|| {
        std::fs::create_dir_all(spec.store.dir(&spec.task_id)).map_err(disk)?;
        let mut file = File::create(&tmp).map_err(disk)?;
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

        let layout = PieceLayout::new(0, spec.piece_size);
        let payload_size = layout.payload_size() as usize;
        let mut piece = Vec::with_capacity(spec.piece_size as usize);
        piece.extend_from_slice(&[0; 4]);
        let mut piece_md5s = Vec::new();
        let mut received: u64 = 0;
        let mut written: u64 = 0;
        let mut flush_piece =
            |piece: &mut Vec<u8>, file: &mut File, piece_md5s: &mut Vec<String>| -> Result<(), WriteError> {
                let data_len = piece.len() as u64 - 4;
                piece[..4].copy_from_slice(&piece_header(data_len, spec.piece_size));
                piece.push(PIECE_TRAILER);
                if let Some(max) = spec.max_file_bytes {
                    if written + piece.len() as u64 > max {
                        return Err(WriteError::Quota(max));
                    }
                }
                file.write_all(piece).map_err(disk)?;
                written += piece.len() as u64;
                let md5 = piece_md5_string(&Md5::digest(&piece[..]), piece.len() as u64);
                let n = piece_md5s.len() as u64;
                piece_md5s.push(md5.clone());
                on_piece(n, md5, written);
                piece.clear();
                piece.extend_from_slice(&[0; 4]);
                Ok(())
            };

        loop {
            let chunk = match rx.blocking_recv() {
                Some(Input::Chunk(c)) => c,
                Some(Input::End) => break,
                None => return Err(WriteError::Aborted),
            };
            received += chunk.len() as u64;
            let _ = hash_tx.send(chunk.clone());
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let room = payload_size - (piece.len() - 4);
                let take = room.min(rest.len());
                piece.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if piece.len() - 4 == payload_size {
                    flush_piece(&mut piece, &mut file, &mut piece_md5s)?;
                }
            }
        }
        if piece.len() > 4 || piece_md5s.is_empty() {
            flush_piece(&mut piece, &mut file, &mut piece_md5s)?;
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
        file.sync_data().map_err(disk)?;
        drop(file);
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
