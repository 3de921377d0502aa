//! An object being written: its temporary file, the hash of what came so far, and its size bound.

use super::{ObjectRefusal, PutOptions, io_error};
use crate::storage::StorageError;
use sha2::{Digest as _, Sha256};
use std::io::Write as _;
use std::path::PathBuf;

/// An object being written: bytes go to a temporary file, hashed as they come. Dropped without
/// [`ObjectDb::finish`], it removes its file and stores nothing.
#[derive(Debug)]
pub struct Upload {
    pub(super) bucket: String,
    pub(super) key: String,
    pub(super) options: PutOptions,
    pub(super) file: Option<std::fs::File>,
    pub(super) temp: PathBuf,
    pub(super) hasher: Sha256,
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
        self.hasher.update(chunk);
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
