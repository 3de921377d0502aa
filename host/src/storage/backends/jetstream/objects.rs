//! Object storage on a cluster: each bucket a JetStream object store (`edgefn_o_<bucket, hex>`), so an object put
//! on one node is read, listed, copied and deleted on any other.
//!
//! - An object is the store's object of the same name; its ETag (the hex SHA-256, as on SQLite), content type and
//!   user metadata ride in the store's metadata map.
//! - A write is atomic as the object store's are: the bytes go in as chunks under a new id, then one metadata
//!   message (a roll-up) makes them the object, then the old chunks are purged. A crash before the metadata leaves
//!   the old object, whole (and chunks nothing names, which the store's purge of that id removes on the next
//!   replace); after it, the new one.
//! - An upload streams into a temporary file on the node that takes it (as on SQLite: the limits are checked and
//!   the ETag computed while it comes), then from that file into the store.
//! - A read downloads the object into a temporary file of the node and serves it from there (a range is read from
//!   that file), so a replace during a read cannot mix two versions; memory stays bounded. A ranged read from a
//!   function streams from the object's start up to its end.
//! - Change events go to the outbox of the node that made the change (its SQLite, as alone) and from there to the
//!   cluster's queues: a change made on a node that dies before its outbox is drained is delivered when the node
//!   comes back.
//! - Bucket limits are checked against the bucket as listed just before the write: two nodes writing to one
//!   nearly full bucket at the same moment can both pass (by one object each).

use super::{Cluster, cluster_error};
use crate::storage::StorageError;
use crate::storage::objects::{
    BucketUsage, ObjectDb, ObjectInfo, ObjectLimits, ObjectRefusal, ObjectResult, TemporaryFile, Upload, check_key,
};
use async_nats::jetstream::object_store::{self, GetErrorKind, InfoErrorKind, ObjectMetadata, ObjectStore};
use futures_util::StreamExt as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const STORE_PREFIX: &str = "edgefn_o_";
/// Chunks of 256 KiB: a quarter of NATS' default largest message, twice the object store's default (fewer acks).
const CHUNK_BYTES: usize = 256 << 10;
const ETAG: &str = "edgefn-etag";
const CONTENT_TYPE: &str = "edgefn-content-type";
const USER_METADATA: &str = "edgefn-metadata";

/// The object store of edgefn bucket `bucket`: bucket names allow characters store names do not, so it is hex.
fn store_name(bucket: &str) -> String {
    format!("{STORE_PREFIX}{}", hex::encode(bucket))
}

fn bucket_of(store: &str) -> Option<String> {
    let hex = store.strip_prefix(STORE_PREFIX)?;
    String::from_utf8(hex::decode(hex).ok()?).ok()
}

/// An object of the store as edgefn describes it.
fn info_of(bucket: &str, found: &object_store::ObjectInfo) -> ObjectInfo {
    let meta = |name: &str| found.metadata.get(name).cloned().unwrap_or_default();
    ObjectInfo {
        bucket: bucket.to_owned(),
        key: found.name.clone(),
        size: found.size as u64,
        etag: meta(ETAG),
        content_type: meta(CONTENT_TYPE),
        metadata: serde_json::from_str(&meta(USER_METADATA)).unwrap_or_default(),
        updated_at: found.modified.map_or(0, |at| (at.unix_timestamp_nanos() / 1_000_000) as i64),
        blob: found.nuid.clone(),
    }
}

fn metadata_of(info: &ObjectInfo) -> ObjectMetadata {
    let user = serde_json::to_string(&info.metadata).unwrap_or_else(|_| "[]".into());
    ObjectMetadata {
        name: info.key.clone(),
        chunk_size: Some(CHUNK_BYTES),
        metadata: HashMap::from([
            (ETAG.to_owned(), info.etag.clone()),
            (CONTENT_TYPE.to_owned(), info.content_type.clone()),
            (USER_METADATA.to_owned(), user),
        ]),
        ..Default::default()
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct JetStreamObjects {
    cluster: Cluster,
    /// This node's part: temporary files (uploads, downloads) and the outbox of change events.
    local: ObjectDb,
    stores: Arc<Mutex<HashMap<String, ObjectStore>>>,
}

impl std::fmt::Debug for JetStreamObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamObjects").field("node", &self.cluster.node).finish_non_exhaustive()
    }
}

impl JetStreamObjects {
    pub fn new(cluster: Cluster, local: ObjectDb) -> Self {
        Self { cluster, local, stores: Arc::default() }
    }

    pub fn local(&self) -> &ObjectDb {
        &self.local
    }

    pub fn limits(&self) -> ObjectLimits {
        self.local.limits()
    }

    async fn store(&self, bucket: &str) -> Result<ObjectStore, StorageError> {
        if let Some(store) = self.stores.lock().unwrap_or_else(|p| p.into_inner()).get(bucket).cloned() {
            return Ok(store);
        }
        let store = super::object_store(&self.cluster, &store_name(bucket)).await?;
        self.stores.lock().unwrap_or_else(|p| p.into_inner()).insert(bucket.to_owned(), store.clone());
        Ok(store)
    }

    /// Every object of `bucket`, in key order.
    async fn all(&self, bucket: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let store = self.store(bucket).await?;
        let mut listed = store.list().await.map_err(|error| cluster_error(format!("list bucket `{bucket}`"), error))?;
        let mut objects = Vec::new();
        while let Some(found) = listed.next().await {
            let found = found.map_err(|error| cluster_error(format!("list bucket `{bucket}`"), error))?;
            if !found.deleted {
                objects.push(info_of(bucket, &found));
            }
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Stores what `upload` holds as its object (replacing any before it); see the module docs.
    pub async fn finish(&self, upload: Upload, now: i64) -> ObjectResult<ObjectInfo> {
        let sealed = tokio::task::spawn_blocking(move || {
            let mut upload = upload;
            upload.seal().map(|sealed| sealed.map(|etag| (upload, etag)))
        })
        .await
        .map_err(|join| StorageError::Task(join.to_string()))??;
        let (upload, etag) = match sealed {
            Ok(sealed) => sealed,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let info = upload.info(etag, String::new(), now);
        let mut file = tokio::fs::File::open(upload.temp_path())
            .await
            .map_err(|error| StorageError::Corrupt(format!("{}: {error}", upload.temp_path().display())))?;
        let stored = self.put_from(info, &mut file, upload.correlation_id()).await;
        // Dropped only now: its temporary file goes with it.
        drop(upload);
        stored
    }

    /// Puts `info`'s object with the bytes `data` gives, if the bucket has room, and records the change.
    async fn put_from(
        &self,
        info: ObjectInfo,
        data: &mut (impl tokio::io::AsyncRead + Unpin),
        correlation_id: &str,
    ) -> ObjectResult<ObjectInfo> {
        let present = self.all(&info.bucket).await?;
        let current = present.iter().find(|o| o.key == info.key);
        let held = (present.len() as u64, present.iter().map(|o| o.size).sum::<u64>());
        if let Err(full) = self.limits().check_room(&info, current, held) {
            return Ok(Err(full));
        }
        let store = self.store(&info.bucket).await?;
        let stored = store
            .put(metadata_of(&info), data)
            .await
            .map_err(|error| cluster_error(format!("put object `{}` in bucket `{}`", info.key, info.bucket), error))?;
        let info = ObjectInfo { blob: stored.nuid, ..info };
        self.local.record_change("created", &info, correlation_id).await?;
        Ok(Ok(info))
    }

    pub async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let store = self.store(bucket).await?;
        match store.info(key).await {
            Ok(found) if !found.deleted => Ok(Some(info_of(bucket, &found))),
            Ok(_) => Ok(None),
            Err(error) if matches!(error.kind(), InfoErrorKind::NotFound | InfoErrorKind::InvalidName) => Ok(None),
            Err(error) => Err(cluster_error(format!("read object `{key}` of bucket `{bucket}`"), error)),
        }
    }

    /// Opens the object's bytes as they are now: `None` when there is no such object.
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<object_store::Object>, StorageError> {
        let store = self.store(bucket).await?;
        match store.get(key).await {
            Ok(object) => Ok(Some(object)),
            Err(error) if matches!(error.kind(), GetErrorKind::NotFound | GetErrorKind::InvalidName) => Ok(None),
            Err(error) => Err(cluster_error(format!("read object `{key}` of bucket `{bucket}`"), error)),
        }
    }

    /// The object and its bytes, downloaded into a temporary file of this node (its name already gone); `None`
    /// when there is no such object. A replace that purges the chunks being read is met by reading again.
    pub async fn open_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(ObjectInfo, std::fs::File)>, StorageError> {
        let mut last_error = None;
        for _ in 0..3 {
            let Some(mut object) = self.get(bucket, key).await? else { return Ok(None) };
            let info = info_of(bucket, object.info());
            let temporary = self.local.temporary_file()?;
            let file = temporary.file.try_clone().map_err(|e| StorageError::Corrupt(e.to_string()))?;
            let mut writer = tokio::fs::File::from_std(file);
            let copied = tokio::io::copy(&mut object, &mut writer).await;
            let flushed = writer.flush().await;
            match (copied, flushed) {
                (Ok(copied), Ok(())) if copied == info.size => {
                    let TemporaryFile { file, .. } = &temporary;
                    let file = file.try_clone().map_err(|e| StorageError::Corrupt(e.to_string()))?;
                    return Ok(Some((info, file)));
                }
                (Ok(copied), Ok(())) => {
                    last_error = Some(format!("read {copied} of its {} bytes", info.size));
                }
                (Err(error), _) | (_, Err(error)) => last_error = Some(error.to_string()),
            }
        }
        Err(cluster_error(
            format!("read object `{key}` of bucket `{bucket}`"),
            last_error.unwrap_or_else(|| "no answer".into()),
        ))
    }

    /// Up to `length` bytes of the object from `offset`, streamed from its start; `None` when there is none.
    pub async fn read(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
        length: u64,
    ) -> Result<Option<(ObjectInfo, Vec<u8>)>, StorageError> {
        let Some(object) = self.get(bucket, key).await? else { return Ok(None) };
        let info = info_of(bucket, object.info());
        let end = info.size.min(offset.saturating_add(length));
        let mut bytes = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut reader = object.take(end);
        let failed = |error: std::io::Error| cluster_error(format!("read object `{key}` of bucket `{bucket}`"), error);
        tokio::io::copy(&mut (&mut reader).take(offset), &mut tokio::io::sink()).await.map_err(failed)?;
        reader.read_to_end(&mut bytes).await.map_err(failed)?;
        Ok(Some((info, bytes)))
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
        let after = after.unwrap_or_default();
        let mut page: Vec<ObjectInfo> = self
            .all(bucket)
            .await?
            .into_iter()
            .filter(|o| o.key.starts_with(prefix) && o.key.as_str() > after.as_str())
            .take(limit as usize + 1)
            .collect();
        let more = page.len() > limit as usize;
        page.truncate(limit as usize);
        Ok((page, more))
    }

    /// Deletes `bucket`/`key`; returns whether it existed.
    pub async fn delete(&self, bucket: &str, key: &str, correlation_id: &str) -> Result<bool, StorageError> {
        let Some(current) = self.head(bucket, key).await? else { return Ok(false) };
        let store = self.store(bucket).await?;
        match store.delete(key).await {
            Ok(()) => {}
            Err(error) if error.kind() == object_store::DeleteErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(cluster_error(format!("delete object `{key}` of bucket `{bucket}`"), error)),
        }
        let current = ObjectInfo { updated_at: crate::storage::now_ms(), ..current };
        self.local.record_change("deleted", &current, correlation_id).await?;
        Ok(true)
    }

    /// Copies `from` to `to`: the bytes are read and written again (a copy does not change with its source).
    pub async fn copy(&self, from: (&str, &str), to: (&str, &str), correlation_id: &str) -> ObjectResult<ObjectInfo> {
        if let Err(refusal) = check_key(to.1) {
            return Ok(Err(refusal));
        }
        let Some(mut source) = self.get(from.0, from.1).await? else {
            return Ok(Err(ObjectRefusal::NotFound { bucket: from.0.to_owned(), key: from.1.to_owned() }));
        };
        let now = crate::storage::now_ms();
        let info = ObjectInfo {
            bucket: to.0.to_owned(),
            key: to.1.to_owned(),
            updated_at: now,
            ..info_of(from.0, source.info())
        };
        self.put_from(info, &mut source, correlation_id).await
    }

    /// How much each bucket holds.
    pub async fn usage(&self) -> Result<Vec<BucketUsage>, StorageError> {
        let mut buckets = Vec::new();
        let mut names = self.cluster.jetstream.stream_names();
        while let Some(name) = names.next().await {
            let name = name.map_err(|error| cluster_error("list streams", error))?;
            if let Some(bucket) = name.strip_prefix("OBJ_").and_then(bucket_of) {
                buckets.push(bucket);
            }
        }
        buckets.sort();
        let mut usage = Vec::new();
        for bucket in buckets {
            let objects = self.all(&bucket).await?;
            if !objects.is_empty() {
                let bytes = objects.iter().map(|o| o.size).sum();
                usage.push(BucketUsage { bucket, objects: objects.len() as u64, bytes });
            }
        }
        Ok(usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_name_becomes_a_store_name_and_back() {
        assert_eq!(store_name("photos"), "edgefn_o_70686f746f73");
        assert_eq!(bucket_of(&store_name("my.photos-2")).as_deref(), Some("my.photos-2"));
        assert_eq!(bucket_of("edgefn_components"), None);
    }

    #[test]
    fn etag_content_type_and_user_metadata_ride_in_the_store_metadata() {
        let info = ObjectInfo {
            bucket: "photos".into(),
            key: "a/b.png".into(),
            size: 3,
            etag: "abc".into(),
            content_type: "image/png".into(),
            metadata: vec![("owner".into(), "ada".into())],
            updated_at: 0,
            blob: String::new(),
        };
        let meta = metadata_of(&info);
        let found = object_store::ObjectInfo {
            name: meta.name.clone(),
            description: None,
            metadata: meta.metadata.clone(),
            headers: None,
            options: None,
            bucket: "x".into(),
            nuid: "n1".into(),
            size: 3,
            chunks: 1,
            modified: None,
            digest: None,
            deleted: false,
        };
        assert_eq!(info_of("photos", &found), ObjectInfo { blob: "n1".into(), ..info });
    }
}
