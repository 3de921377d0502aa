//! The object storage seam: what the objects capability, the HTTP trigger's signed URLs, the admin API and the
//! change dispatcher need from a store of objects, with two implementations behind it.
//!
//! - [`ObjectDb`], the default: one node, the bytes in files under the data directory, metadata in SQLite.
//! - [`JetStreamObjects`]: several nodes through a NATS JetStream server (`[cluster] nats`), each bucket an object
//!   store, so every node sees every object.
//!
//! Both keep the same promises: uploads stream through a temporary file of the node that takes them (limits
//! checked, ETag computed as the bytes come), a write is atomic (the old object or the new one, never a torn one),
//! change events go through the node's outbox to the triggers' queues at least once, and refusals store nothing.

use super::jetstream::JetStreamObjects;
use crate::storage::StorageError;
use crate::storage::objects::{
    BucketUsage, ObjectDb, ObjectEvent, ObjectInfo, ObjectLimits, ObjectResult, PutOptions, Upload,
};

/// See the module docs.
#[derive(Debug, Clone)]
pub enum ObjectStore {
    Local(ObjectDb),
    Cluster(Box<JetStreamObjects>),
}

impl ObjectStore {
    /// This node's part: temporary files and the outbox.
    fn local(&self) -> &ObjectDb {
        match self {
            Self::Local(db) => db,
            Self::Cluster(cluster) => cluster.local(),
        }
    }

    pub fn limits(&self) -> ObjectLimits {
        self.local().limits()
    }

    /// Starts writing `bucket`/`key`: checks the key and options, and opens the temporary file.
    pub fn begin(&self, bucket: &str, key: &str, options: PutOptions) -> ObjectResult<Upload> {
        self.local().begin(bucket, key, options)
    }

    /// Stores what `upload` holds as its object, replacing any before it.
    pub async fn finish(&self, upload: Upload, now: i64) -> ObjectResult<ObjectInfo> {
        match self {
            Self::Local(db) => db.finish(upload, now).await,
            Self::Cluster(cluster) => cluster.finish(upload, now).await,
        }
    }

    /// Writes a whole object held in memory (small objects, the CLI, tests).
    pub async fn put_bytes(
        &self,
        bucket: &str,
        key: &str,
        bytes: &[u8],
        options: PutOptions,
    ) -> ObjectResult<ObjectInfo> {
        let mut upload = match self.begin(bucket, key, options)? {
            Ok(upload) => upload,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if let Err(refusal) = upload.write(bytes)? {
            return Ok(Err(refusal));
        }
        self.finish(upload, crate::storage::now_ms()).await
    }

    pub async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        match self {
            Self::Local(db) => db.head(bucket, key).await,
            Self::Cluster(cluster) => cluster.head(bucket, key).await,
        }
    }

    /// The object and its bytes, open for reading (readable to the end whatever happens to the object meanwhile);
    /// `None` when there is no such object.
    pub async fn open_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(ObjectInfo, std::fs::File)>, StorageError> {
        match self {
            Self::Local(db) => db.open_object(bucket, key).await,
            Self::Cluster(cluster) => cluster.open_object(bucket, key).await,
        }
    }

    /// Up to `length` bytes of `bucket`/`key` from `offset`; `None` when there is no such object.
    pub async fn read(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
        length: u64,
    ) -> Result<Option<(ObjectInfo, Vec<u8>)>, StorageError> {
        match self {
            Self::Local(db) => db.read(bucket, key, offset, length).await,
            Self::Cluster(cluster) => cluster.read(bucket, key, offset, length).await,
        }
    }

    /// Objects of `bucket` whose keys start with `prefix`, in key order, after `after`, at most `limit`; and
    /// whether there are more.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<String>,
        limit: u32,
    ) -> Result<(Vec<ObjectInfo>, bool), StorageError> {
        match self {
            Self::Local(db) => db.list(bucket, prefix, after, limit).await,
            Self::Cluster(cluster) => cluster.list(bucket, prefix, after, limit).await,
        }
    }

    /// Deletes `bucket`/`key`; returns whether it existed.
    pub async fn delete(&self, bucket: &str, key: &str, correlation_id: &str) -> Result<bool, StorageError> {
        match self {
            Self::Local(db) => db.delete(bucket, key, correlation_id).await,
            Self::Cluster(cluster) => cluster.delete(bucket, key, correlation_id).await,
        }
    }

    /// Copies `from` to `to`; the copy does not change when its source does.
    pub async fn copy(&self, from: (&str, &str), to: (&str, &str), correlation_id: &str) -> ObjectResult<ObjectInfo> {
        match self {
            Self::Local(db) => db.copy(from, to, correlation_id).await,
            Self::Cluster(cluster) => cluster.copy(from, to, correlation_id).await,
        }
    }

    /// How much each bucket holds.
    pub async fn usage(&self) -> Result<Vec<BucketUsage>, StorageError> {
        match self {
            Self::Local(db) => db.usage().await,
            Self::Cluster(cluster) => cluster.usage().await,
        }
    }

    /// The oldest changes this node has not handed to their triggers yet, at most `limit`.
    pub async fn pending_events(&self, limit: u32) -> Result<Vec<ObjectEvent>, StorageError> {
        self.local().pending_events(limit).await
    }

    /// Removes changes handed to their triggers.
    pub async fn remove_events(&self, ids: Vec<i64>) -> Result<(), StorageError> {
        self.local().remove_events(ids).await
    }
}
