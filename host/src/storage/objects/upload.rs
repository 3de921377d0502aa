//! An object being written: its temporary file, the hash of what came so far, and its size bound.

use super::{ObjectRefusal, PutOptions, io_error};
use crate::storage::StorageError;
use sha2::{Digest as _, Sha256};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::mpsc;

/// Past this many bytes an upload hashes on a thread of its own, next to the writes: SHA-256 and the write to the
/// page cache then take turns on two cores instead of one after the other (a large put runs at about the speed of
/// the slower of the two, not their sum). Below it, a thread costs more than it saves.
const HASH_ON_A_THREAD_PAST: u64 = 1 << 20;
/// Chunks waiting for the hashing thread: bounds the memory a fast writer can run ahead by.
const HASH_QUEUE: usize = 4;

/// The running SHA-256 of an upload's bytes: inline for small objects, on a thread for large ones. Dropped, it
/// closes the thread's channel, and the thread ends once it has hashed what was queued.
#[derive(Debug)]
pub(super) enum Hasher {
    Inline(Sha256),
    Thread {
        chunks: Option<mpsc::SyncSender<Vec<u8>>>,
        done: Option<std::thread::JoinHandle<Sha256>>,
    },
    /// Taken (finished), or the hashing thread could not start or died.
    Gone,
}

impl Hasher {
    pub(super) fn new() -> Self {
        Hasher::Inline(Sha256::new())
    }

    fn update(&mut self, chunk: &[u8], written: u64) {
        if let Hasher::Inline(sha) = self
            && written + chunk.len() as u64 > HASH_ON_A_THREAD_PAST
        {
            let mut sha = std::mem::take(sha);
            let (chunks, receive) = mpsc::sync_channel::<Vec<u8>>(HASH_QUEUE);
            let started = std::thread::Builder::new().name("edgefn-etag".into()).spawn(move || {
                for chunk in receive {
                    sha.update(&chunk);
                }
                sha
            });
            *self = match started {
                Ok(done) => Hasher::Thread { chunks: Some(chunks), done: Some(done) },
                Err(_) => Hasher::Gone,
            };
        }
        match self {
            Hasher::Inline(sha) => sha.update(chunk),
            Hasher::Thread { chunks: Some(chunks), .. } => {
                if chunks.send(chunk.to_vec()).is_err() {
                    *self = Hasher::Gone;
                }
            }
            Hasher::Thread { .. } | Hasher::Gone => {}
        }
    }

    /// The hex SHA-256 of every byte given; `None` if the hashing thread failed (the upload must not be stored).
    pub(super) fn finish(&mut self) -> Option<String> {
        let sha = match std::mem::replace(self, Hasher::Gone) {
            Hasher::Inline(sha) => sha,
            Hasher::Thread { chunks, done } => {
                drop(chunks);
                done?.join().ok()?
            }
            Hasher::Gone => return None,
        };
        Some(hex::encode(sha.finalize()))
    }
}

/// An object being written: bytes go to a temporary file, hashed as they come. Dropped without
/// [`ObjectDb::finish`], it removes its file and stores nothing.
#[derive(Debug)]
pub struct Upload {
    pub(super) bucket: String,
    pub(super) key: String,
    pub(super) options: PutOptions,
    pub(super) file: Option<std::fs::File>,
    pub(super) temp: PathBuf,
    pub(super) hasher: Hasher,
    pub(super) written: u64,
    /// The lower of the object limit and the upload's own bound, and which one it is.
    pub(super) limit: (u64, &'static str),
}

impl Upload {
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends `chunk`. Refused past the object's limit (the upload is then spoilt: finishing it fails too). The
    /// write lands in the page cache; [`ObjectDb::finish`] syncs it off the async threads.
    pub fn write(&mut self, chunk: &[u8]) -> Result<Result<(), ObjectRefusal>, StorageError> {
        let (limit, why) = self.limit;
        if self.written + chunk.len() as u64 > limit {
            self.written = limit.saturating_add(1);
            return Ok(Err(ObjectRefusal::ObjectTooLarge { key: self.key.clone(), limit, why }));
        }
        let Some(file) = self.file.as_mut() else {
            return Err(StorageError::Corrupt(format!("upload of `{}` was already finished", self.key)));
        };
        file.write_all(chunk).map_err(|source| io_error(&self.temp, source))?;
        self.hasher.update(chunk, self.written);
        self.written += chunk.len() as u64;
        Ok(Ok(()))
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}
