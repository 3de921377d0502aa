//! An object being written: its temporary file, the hash of what came so far, and its size bound.

use super::{ObjectInfo, ObjectRefusal, PutOptions, io_error};
use crate::storage::StorageError;
use sha2::{Digest as _, Sha256};
use std::io::Write as _;
use std::path::PathBuf;

/// The running SHA-256 of an upload's bytes (its ETag). Inline, next to each write: hashing on a thread of its own
/// was tried and measured slower on two cores (bench/objects.rs: 0.58x raw I/O against 0.63x inline), the copy
/// each chunk needs to cross over costing more than the overlap saves.
#[derive(Debug, Default)]
pub(super) struct Hasher(Option<Sha256>);

impl Hasher {
    pub(super) fn new() -> Self {
        Hasher(Some(Sha256::new()))
    }

    fn update(&mut self, chunk: &[u8]) {
        if let Some(sha) = &mut self.0 {
            sha.update(chunk);
        }
    }

    /// The hex SHA-256 of every byte given; `None` once taken.
    pub(super) fn finish(&mut self) -> Option<String> {
        self.0.take().map(|sha| hex::encode(sha.finalize()))
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
    /// How far the kernel was asked to start writing the file back (see [`WRITEBACK_STEP`]).
    pub(super) writeback_from: u64,
    /// The lower of the object limit and the upload's own bound, and which one it is.
    pub(super) limit: (u64, &'static str),
    /// Why a write failed part-way (the file may hold part of a chunk the hash never saw): finishing is refused.
    pub(super) failed: Option<String>,
}

impl Upload {
    /// Checks the upload can be stored (within its limit, every write whole), then syncs its file: its ETag.
    /// Blocks: call it off the async threads.
    pub fn seal(&mut self) -> Result<Result<String, ObjectRefusal>, StorageError> {
        let (limit, why) = self.limit;
        if self.written > limit {
            return Ok(Err(ObjectRefusal::ObjectTooLarge { key: self.key.clone(), limit, why }));
        }
        if let Some(failed) = &self.failed {
            return Err(StorageError::Corrupt(format!(
                "an earlier write of `{}` failed ({failed}): nothing was stored",
                self.key
            )));
        }
        let Some(etag) = self.hasher.finish() else {
            return Err(StorageError::Task(format!("hashing `{}` failed: nothing was stored", self.key)));
        };
        if let Some(file) = &self.file {
            file.sync_all().map_err(|e| io_error(&self.temp, e))?;
        }
        Ok(Ok(etag))
    }

    /// The object this upload makes, once sealed with `etag`, its bytes in `blob`, stored at `now`.
    pub fn info(&self, etag: String, blob: String, now: i64) -> ObjectInfo {
        let content_type = if self.options.content_type.is_empty() {
            "application/octet-stream".to_owned()
        } else {
            self.options.content_type.clone()
        };
        ObjectInfo {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            size: self.written,
            etag,
            content_type,
            metadata: self.options.metadata.clone(),
            updated_at: now,
            blob,
        }
    }

    /// Where its bytes are until it is finished.
    pub fn temp_path(&self) -> &std::path::Path {
        &self.temp
    }

    pub fn correlation_id(&self) -> &str {
        &self.options.correlation_id
    }

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
    /// write lands in the page cache (every [`WRITEBACK_STEP`] bytes the kernel is asked to start writing it out);
    /// [`ObjectDb::finish`] syncs it off the async threads.
    pub fn write(&mut self, chunk: &[u8]) -> Result<Result<(), ObjectRefusal>, StorageError> {
        let (limit, why) = self.limit;
        if self.written + chunk.len() as u64 > limit {
            self.written = limit.saturating_add(1);
            return Ok(Err(ObjectRefusal::ObjectTooLarge { key: self.key.clone(), limit, why }));
        }
        let Some(file) = self.file.as_mut() else {
            return Err(StorageError::Corrupt(format!("upload of `{}` was already finished", self.key)));
        };
        if let Err(source) = file.write_all(chunk) {
            self.failed = Some(source.to_string());
            return Err(io_error(&self.temp, source));
        }
        self.written += chunk.len() as u64;
        if self.written - self.writeback_from >= WRITEBACK_STEP {
            start_writeback(file, self.writeback_from, self.written - self.writeback_from);
            self.writeback_from = self.written;
        }
        self.hasher.update(chunk);
        Ok(Ok(()))
    }
}

/// Every this many bytes an upload asks the kernel to start writing them to disk. Left alone, the kernel holds a
/// large object's pages dirty until the sync in [`super::ObjectDb::finish`] and writes them all then, while this
/// thread waits; started early, the disk writes while this thread hashes the next chunks, and the final sync has
/// little left to do (bench/objects.rs measures the put).
const WRITEBACK_STEP: u64 = 2 << 20;

/// Starts writing `len` bytes of `file` from `offset` back to disk without waiting for it. Only a hint: the sync
/// before the commit is what makes the object durable, and it reports any write error, so a failure here is
/// ignored.
#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd as _;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else { return };
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is `file`'s, open for the whole call
    // because `file` is borrowed across it.
    let _ = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File, _offset: u64, _len: u64) {}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}
