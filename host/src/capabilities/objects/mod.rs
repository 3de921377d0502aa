//! Object storage: the host side of `edgefn:function/objects` (buckets of streamed objects, signed URLs) over the
//! node's store ([`ObjectStore`]: files under the data directory and SQLite alone, JetStream on a cluster). One folder: the
//! capability (this file), the imports a component calls (`host.rs`), the resource they hand out (`upload.rs`) and
//! the signed URLs (`signing.rs`).
//!
//! A component reaches only the buckets its configuration grants it (`object_buckets`); two components share
//! objects only when both were granted the same bucket. The limits (object size, bytes and objects per bucket)
//! refuse a write with a clear error and store nothing.

pub mod events;
mod host;
pub mod signing;
pub mod transfer;
mod upload;

pub use host::{ObjectsHost, ObjectsView, add_to_linker};
pub use signing::UrlSigner;
pub use upload::ObjectUpload;

use crate::storage::StorageError;
use crate::storage::backends::objects::ObjectStore;
use crate::storage::objects::ObjectRefusal;
use std::sync::Arc;

/// How many uploads one invocation may hold open at once (each holds a file open on the host).
pub const MAX_OPEN_UPLOADS: usize = 16;
/// The most bytes one `read` returns.
pub const MAX_READ_BYTES: u64 = 4 << 20;
/// The longest a signed URL may stay valid: a week (S3's bound).
pub const MAX_SIGNED_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Why an object call failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("this component may not use object bucket `{0}`: add it to its `object_buckets`")]
    NotGranted(String),
    #[error("{0}")]
    Refused(#[from] ObjectRefusal),
    #[error("{0}")]
    Invalid(String),
    #[error("the object store failed: {0}")]
    Storage(#[from] Box<StorageError>),
}

impl From<StorageError> for ObjectError {
    fn from(error: StorageError) -> Self {
        ObjectError::Storage(Box::new(error))
    }
}

/// The node's object store and URL signer: what functions, the admin API and the HTTP trigger share.
#[derive(Debug, Clone)]
pub struct Objects {
    pub db: ObjectStore,
    pub signer: UrlSigner,
    /// Woken after each change, so the change's events reach their triggers at once.
    pub changed: Arc<tokio::sync::Notify>,
}

impl Objects {
    pub fn new(db: ObjectStore, signer: UrlSigner) -> Self {
        Self { db, signer, changed: Arc::new(tokio::sync::Notify::new()) }
    }
}
