//! Object storage on one node: each object's bytes in a file of its own under `<data dir>/objects/blobs`, its
//! metadata (size, ETag, content type, user metadata) in SQLite, and the changes functions subscribe to in an
//! outbox table written in the same transaction.
//!
//! A write is atomic, with no torn object after a crash at any point:
//!
//! 1. the bytes stream into `objects/tmp/<uuid>` while their SHA-256 (the ETag) is computed;
//! 2. the file is synced and renamed to `objects/blobs/<uuid>` (a name no row uses yet);
//! 3. one transaction points the object's row at the new file, checks the bucket's limits, and records the change
//!    in `object_events`;
//! 4. the file the row pointed at before is removed.
//!
//! A crash before 3 commits leaves the old row (the old object, whole) and a file no row names; a crash after it
//! leaves the new object and an old file no row names. [`ObjectDb::open`] removes both kinds of leftover at
//! start-up, before anything can write. A reader opens the file a row names; on Linux a file removed while open
//! stays readable to the end, so a read never sees half of a replace either.
//!
//! The outbox makes change triggers at-least-once: an event is committed with the change it reports and removed
//! only after it was handed to its subscribers' queues (`capabilities::objects::events`).

use super::{Database, StorageError};
use rusqlite::{Connection, OptionalExtension as _, Row, params};
use std::path::{Path, PathBuf};

mod upload;

pub use upload::Upload;

/// See [`ObjectDb::temporary_file`]. The name goes when this is dropped; the open file stays readable.
#[derive(Debug)]
pub struct TemporaryFile {
    pub path: PathBuf,
    pub file: std::fs::File,
}

impl Drop for TemporaryFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The bounds of every bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLimits {
    pub max_object_bytes: u64,
    pub max_bucket_bytes: u64,
    pub max_objects: u64,
}

impl ObjectLimits {
    /// Whether a bucket holding `held` (objects, bytes), `current` among them, has room for `info` in its place.
    pub fn check_room(
        &self,
        info: &ObjectInfo,
        current: Option<&ObjectInfo>,
        held: (u64, u64),
    ) -> Result<(), ObjectRefusal> {
        let (objects, bytes) = held;
        let new_objects = objects + u64::from(current.is_none());
        let new_bytes = bytes - current.map_or(0, |c| c.size) + info.size;
        if new_objects > self.max_objects || new_bytes > self.max_bucket_bytes {
            return Err(ObjectRefusal::BucketFull {
                bucket: info.bucket.clone(),
                objects,
                bytes,
                max_objects: self.max_objects,
                max_bytes: self.max_bucket_bytes,
            });
        }
        Ok(())
    }
}

/// Longest key, in bytes (S3's).
pub const MAX_KEY_BYTES: usize = 1024;
/// Most bytes of user metadata (names and values together) on one object (S3's).
pub const MAX_METADATA_BYTES: usize = 2048;

/// Why an operation was refused (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectRefusal {
    #[error("the object key is empty")]
    EmptyKey,
    #[error("object key is {len} bytes; the limit is {MAX_KEY_BYTES}")]
    KeyTooLong { len: usize },
    #[error("object key `{0}` holds a control character")]
    ControlInKey(String),
    #[error("object key `{0}` has a `.` or `..` segment, which URLs would resolve away")]
    DotSegment(String),
    #[error("the user metadata of `{key}` is {len} bytes; the limit is {MAX_METADATA_BYTES}")]
    MetadataTooLarge { key: String, len: usize },
    #[error("invalid metadata name `{0}`: use letters, digits, `-` and `_`")]
    MetadataName(String),
    #[error("invalid content type `{0}`: expected `type/subtype`")]
    ContentType(String),
    #[error("object `{key}` is over {limit} bytes, its limit ({why}): nothing was stored")]
    ObjectTooLarge { key: String, limit: u64, why: &'static str },
    #[error(
        "bucket `{bucket}` is full: it holds {objects} objects, {bytes} bytes; the limits are {max_objects} objects and {max_bytes} bytes (limits.objects_max_bucket_mb, limits.objects_max_objects)"
    )]
    BucketFull { bucket: String, objects: u64, bytes: u64, max_objects: u64, max_bytes: u64 },
    #[error("object `{key}` does not exist in bucket `{bucket}`")]
    NotFound { bucket: String, key: String },
}

/// What a store operation did.
pub type ObjectResult<T> = Result<Result<T, ObjectRefusal>, StorageError>;

/// An object's metadata.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObjectInfo {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// The SHA-256 of the bytes, hex.
    pub etag: String,
    pub content_type: String,
    pub metadata: Vec<(String, String)>,
    pub updated_at: i64,
    /// The file under `objects/blobs` holding the bytes.
    #[serde(skip)]
    pub blob: String,
}

/// What a write carries besides the bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// Empty: `application/octet-stream`.
    pub content_type: String,
    pub metadata: Vec<(String, String)>,
    /// At most this many bytes (besides the object limit): a signed upload's bound.
    pub max_bytes: Option<u64>,
    /// The work that wrote it, carried by the change event.
    pub correlation_id: String,
}

/// One change, as the outbox holds it until it is delivered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectEvent {
    /// The outbox row; 0 once delivered.
    #[serde(skip)]
    pub id: i64,
    /// `created` or `deleted`.
    pub event: String,
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub content_type: String,
    pub at: i64,
    pub correlation_id: String,
}

/// How much one bucket holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BucketUsage {
    pub bucket: String,
    pub objects: u64,
    pub bytes: u64,
}

/// Checks a key: 1 to [`MAX_KEY_BYTES`] bytes, no control characters (they would break listings and URLs).
pub fn check_key(key: &str) -> Result<(), ObjectRefusal> {
    if key.is_empty() {
        return Err(ObjectRefusal::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ObjectRefusal::KeyTooLong { len: key.len() });
    }
    if key.chars().any(char::is_control) {
        return Err(ObjectRefusal::ControlInKey(key.escape_debug().to_string()));
    }
    // URLs normalise `.` and `..` segments away: such a key would name another object over HTTP.
    if key.split('/').any(|segment| segment == "." || segment == "..") {
        return Err(ObjectRefusal::DotSegment(key.to_owned()));
    }
    Ok(())
}

fn check_options(key: &str, options: &PutOptions) -> Result<(), ObjectRefusal> {
    check_key(key)?;
    let content_type = options.content_type.as_str();
    if !content_type.is_empty() {
        let valid = content_type.len() <= 255
            && content_type.split_once('/').is_some_and(|(kind, sub)| !kind.is_empty() && !sub.is_empty())
            && content_type.chars().all(|c| c.is_ascii_graphic() || c == ' ');
        if !valid {
            return Err(ObjectRefusal::ContentType(content_type.escape_debug().to_string()));
        }
    }
    let mut len = 0;
    for (name, value) in &options.metadata {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(ObjectRefusal::MetadataName(name.escape_debug().to_string()));
        }
        len += name.len() + value.len();
    }
    if len > MAX_METADATA_BYTES {
        return Err(ObjectRefusal::MetadataTooLarge { key: key.to_owned(), len });
    }
    Ok(())
}

/// The object tables and the folder of their bytes.
#[derive(Debug, Clone)]
pub struct ObjectDb {
    db: Database,
    dir: PathBuf,
    limits: ObjectLimits,
}

pub(super) fn io_error(path: &Path, source: std::io::Error) -> StorageError {
    if matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
        return StorageError::DiskFull { path: path.to_owned() };
    }
    StorageError::Corrupt(format!("{}: {source}", path.display()))
}

fn info_from_row(row: &Row<'_>) -> rusqlite::Result<ObjectInfo> {
    let metadata: String = row.get(6)?;
    Ok(ObjectInfo {
        bucket: row.get(0)?,
        key: row.get(1)?,
        blob: row.get(2)?,
        size: row.get::<_, i64>(3)? as u64,
        etag: row.get(4)?,
        content_type: row.get(5)?,
        metadata: serde_json::from_str(&metadata).unwrap_or_default(),
        updated_at: row.get(7)?,
    })
}

const COLUMNS: &str = "bucket, key, blob, size, etag, content_type, metadata, updated_at";

fn get(conn: &Connection, bucket: &str, key: &str) -> rusqlite::Result<Option<ObjectInfo>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM objects WHERE bucket = ?1 AND key = ?2"))?
        .query_row(params![bucket, key], info_from_row)
        .optional()
}

fn record_event(conn: &Connection, event: &ObjectEvent) -> Result<(), StorageError> {
    let body = serde_json::to_string(event).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    conn.prepare_cached("INSERT INTO object_events (body) VALUES (?1)")?.execute([body])?;
    Ok(())
}

fn event(kind: &str, info: &ObjectInfo, at: i64, correlation_id: &str) -> ObjectEvent {
    ObjectEvent {
        id: 0,
        event: kind.to_owned(),
        bucket: info.bucket.clone(),
        key: info.key.clone(),
        size: info.size,
        etag: info.etag.clone(),
        content_type: info.content_type.clone(),
        at,
        correlation_id: correlation_id.to_owned(),
    }
}

impl ObjectDb {
    /// The object store of `data_dir` over `db` (already migrated). Removes what a crash left (temporary files,
    /// files no object names): call it at start-up, before anything writes.
    pub fn open(data_dir: &Path, db: Database, limits: ObjectLimits) -> Result<Self, StorageError> {
        let dir = data_dir.join("objects");
        for sub in ["tmp", "blobs"] {
            super::create_private_dir(&dir.join(sub))?;
        }
        // A commit must be on disk before the file it replaced is removed: a power cut after the removal but
        // before a WAL commit reached the disk would leave a row naming a file that is gone. This connection is
        // the object store's own, so the queues and key-value stores keep `NORMAL`.
        db.with_blocking(|conn| Ok(conn.pragma_update(None, "synchronous", "FULL")?))?;
        let store = Self { db, dir, limits };
        store.remove_leftovers()?;
        Ok(store)
    }

    pub fn limits(&self) -> ObjectLimits {
        self.limits
    }

    fn remove_leftovers(&self) -> Result<(), StorageError> {
        let listing = |dir: &Path| -> Result<Vec<std::fs::DirEntry>, StorageError> {
            let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
            Ok(entries.filter_map(Result::ok).collect())
        };
        for entry in listing(&self.dir.join("tmp"))? {
            let _ = std::fs::remove_file(entry.path());
        }
        let named: std::collections::HashSet<String> = self.db.with_blocking(|conn| {
            let mut select = conn.prepare("SELECT blob FROM objects")?;
            let blobs = select.query_map([], |row| row.get(0))?.collect::<rusqlite::Result<_>>()?;
            Ok(blobs)
        })?;
        for entry in listing(&self.dir.join("blobs"))? {
            if !named.contains(entry.file_name().to_string_lossy().as_ref()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    fn blob_path(&self, blob: &str) -> PathBuf {
        self.dir.join("blobs").join(blob)
    }

    /// Starts writing `bucket`/`key`: checks the key and options, and opens the temporary file.
    pub fn begin(&self, bucket: &str, key: &str, options: PutOptions) -> ObjectResult<Upload> {
        if let Err(refusal) = check_options(key, &options) {
            return Ok(Err(refusal));
        }
        let limit = match options.max_bytes {
            Some(max) if max < self.limits.max_object_bytes => (max, "the signed upload's max bytes"),
            _ => (self.limits.max_object_bytes, "limits.objects_max_object_mb"),
        };
        let temp = self.dir.join("tmp").join(uuid::Uuid::new_v4().simple().to_string());
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| io_error(&temp, e))?;
        Ok(Ok(Upload {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            options,
            file: Some(file),
            temp,
            hasher: upload::Hasher::new(),
            failed: None,
            written: 0,
            writeback_from: 0,
            limit,
        }))
    }

    /// Stores what `upload` holds as its object (replacing any before it), atomically; see the module docs.
    pub async fn finish(&self, upload: Upload, now: i64) -> ObjectResult<ObjectInfo> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut upload = upload;
            // The upload's Drop removes its temporary file on every early return; once renamed, there is none.
            let etag = match upload.seal()? {
                Ok(etag) => etag,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let blob = uuid::Uuid::new_v4().simple().to_string();
            let info = upload.info(etag, blob.clone(), now);
            let path = store.blob_path(&blob);
            std::fs::rename(&upload.temp, &path).map_err(|e| io_error(&path, e))?;
            upload.file = None;
            store.commit_new_blob(info, now, &upload.options.correlation_id)
        })
        .await
        .map_err(|join| StorageError::Task(join.to_string()))?
    }

    /// Records a change made elsewhere (on a cluster, in JetStream) in this node's outbox, for its triggers.
    pub async fn record_change(&self, kind: &str, info: &ObjectInfo, correlation_id: &str) -> Result<(), StorageError> {
        let event = event(kind, info, info.updated_at, correlation_id);
        self.db.call(move |conn| record_event(conn, &event)).await
    }

    /// A temporary file of its own under `objects/tmp`, removed when dropped: what a cluster node downloads an
    /// object into before serving it.
    pub fn temporary_file(&self) -> Result<TemporaryFile, StorageError> {
        let path = self.dir.join("tmp").join(uuid::Uuid::new_v4().simple().to_string());
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        Ok(TemporaryFile { path, file })
    }

    /// Makes the file `info.blob` (just renamed or linked into `blobs/`) the object: syncs the folder so the name is
    /// on disk before the row that names it, commits, then removes the file it replaced; on a refusal or an error,
    /// removes the new file instead.
    fn commit_new_blob(&self, info: ObjectInfo, now: i64, correlation_id: &str) -> ObjectResult<ObjectInfo> {
        let path = self.blob_path(&info.blob);
        let blobs = self.dir.join("blobs");
        let synced = std::fs::File::open(&blobs).and_then(|dir| dir.sync_all()).map_err(|e| io_error(&blobs, e));
        let stored = synced.and_then(|()| self.commit_put(&info, now, correlation_id));
        match stored {
            Ok(Ok(old_blob)) => {
                if let Some(old) = old_blob {
                    let _ = std::fs::remove_file(self.blob_path(&old));
                }
                Ok(Ok(info))
            }
            other => {
                let _ = std::fs::remove_file(&path);
                other.map(|refused| refused.map(|_| info))
            }
        }
    }

    /// Points `info.key`'s row at `info.blob`, if the bucket has room; returns the blob it replaced.
    fn commit_put(&self, info: &ObjectInfo, now: i64, correlation_id: &str) -> ObjectResult<Option<String>> {
        let limits = self.limits;
        self.db.with_blocking(|conn| {
            let tx = conn.transaction()?;
            let current = get(&tx, &info.bucket, &info.key)?;
            let (objects, bytes): (i64, i64) = tx
                .query_row("SELECT objects, bytes FROM object_sizes WHERE bucket = ?1", [&info.bucket], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?
                .unwrap_or((0, 0));
            if let Err(full) = limits.check_room(info, current.as_ref(), (objects as u64, bytes as u64)) {
                return Ok(Err(full));
            }
            let metadata = serde_json::to_string(&info.metadata).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            tx.prepare_cached(&format!(
                "INSERT INTO objects ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (bucket, key) DO UPDATE SET blob = excluded.blob, size = excluded.size,
                 etag = excluded.etag, content_type = excluded.content_type, metadata = excluded.metadata,
                 updated_at = excluded.updated_at"
            ))?
            .execute(params![
                info.bucket,
                info.key,
                info.blob,
                info.size as i64,
                info.etag,
                info.content_type,
                metadata,
                now
            ])?;
            record_event(&tx, &event("created", info, now, correlation_id))?;
            tx.commit()?;
            Ok(Ok(current.map(|c| c.blob)))
        })
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
        self.finish(upload, super::now_ms()).await
    }

    pub async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.db.call(move |conn| Ok(get(conn, &bucket, &key)?)).await
    }

    /// The object and its bytes, open for reading; `None` when there is no such object. The file stays readable
    /// even if the object is replaced or deleted while it is read.
    pub async fn open_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(ObjectInfo, std::fs::File)>, StorageError> {
        // A replace can remove the file between the lookup and the open: look again (the new row names a file
        // that exists), a few times, before calling it gone.
        for _ in 0..3 {
            let Some(info) = self.head(bucket, key).await? else { return Ok(None) };
            match std::fs::File::open(self.blob_path(&info.blob)) {
                Ok(file) => return Ok(Some((info, file))),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(io_error(&self.blob_path(&info.blob), error)),
            }
        }
        Ok(None)
    }

    /// Up to `length` bytes of `bucket`/`key` from `offset`; `None` when there is no such object.
    pub async fn read(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
        length: u64,
    ) -> Result<Option<(ObjectInfo, Vec<u8>)>, StorageError> {
        let Some((info, file)) = self.open_object(bucket, key).await? else { return Ok(None) };
        let blob = self.blob_path(&info.blob);
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt as _;
            let end = info.size.min(offset.saturating_add(length));
            let mut bytes = vec![0; end.saturating_sub(offset) as usize];
            file.read_exact_at(&mut bytes, offset).map_err(|e| io_error(&blob, e))?;
            Ok(Some((info, bytes)))
        })
        .await
        .map_err(|join| StorageError::Task(join.to_string()))?
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
        let (bucket, prefix) = (bucket.to_owned(), prefix.to_owned());
        let bound = super::kv::prefix_upper_bound(&prefix);
        self.db
            .call(move |conn| {
                let after = after.unwrap_or_default();
                let mut select = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM objects WHERE bucket = ?1 AND key >= ?2 AND key > ?3
                     AND (?4 IS NULL OR key < ?4) ORDER BY key LIMIT ?5"
                ))?;
                let mut objects = select
                    .query_map(params![bucket, prefix, after, bound, i64::from(limit) + 1], info_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let more = objects.len() > limit as usize;
                objects.truncate(limit as usize);
                Ok((objects, more))
            })
            .await
    }

    /// Deletes `bucket`/`key`; returns whether it existed.
    pub async fn delete(&self, bucket: &str, key: &str, correlation_id: &str) -> Result<bool, StorageError> {
        let (bucket, key, correlation_id) = (bucket.to_owned(), key.to_owned(), correlation_id.to_owned());
        let store = self.clone();
        let removed = self
            .db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let Some(current) = get(&tx, &bucket, &key)? else { return Ok(None) };
                tx.prepare_cached("DELETE FROM objects WHERE bucket = ?1 AND key = ?2")?
                    .execute(params![bucket, key])?;
                record_event(&tx, &event("deleted", &current, super::now_ms(), &correlation_id))?;
                tx.commit()?;
                Ok(Some(current.blob))
            })
            .await?;
        if let Some(blob) = &removed {
            let _ = std::fs::remove_file(store.blob_path(blob));
        }
        Ok(removed.is_some())
    }

    /// Copies `from` to `to` (a hard link to the same bytes: no copy, and the source may change afterwards
    /// without touching the copy, since every write makes a new file).
    pub async fn copy(&self, from: (&str, &str), to: (&str, &str), correlation_id: &str) -> ObjectResult<ObjectInfo> {
        if let Err(refusal) = check_key(to.1) {
            return Ok(Err(refusal));
        }
        let Some((source, _file)) = self.open_object(from.0, from.1).await? else {
            return Ok(Err(ObjectRefusal::NotFound { bucket: from.0.to_owned(), key: from.1.to_owned() }));
        };
        let blob = uuid::Uuid::new_v4().simple().to_string();
        let now = super::now_ms();
        let info = ObjectInfo {
            bucket: to.0.to_owned(),
            key: to.1.to_owned(),
            blob: blob.clone(),
            updated_at: now,
            ..source.clone()
        };
        let (store, correlation_id) = (self.clone(), correlation_id.to_owned());
        let (from_bucket, from_key) = (from.0.to_owned(), from.1.to_owned());
        tokio::task::spawn_blocking(move || {
            let path = store.blob_path(&blob);
            match std::fs::hard_link(store.blob_path(&source.blob), &path) {
                Ok(()) => {}
                // Replaced or deleted since it was looked up.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(Err(ObjectRefusal::NotFound { bucket: from_bucket, key: from_key }));
                }
                Err(error) => return Err(io_error(&path, error)),
            }
            store.commit_new_blob(info, now, &correlation_id)
        })
        .await
        .map_err(|join| StorageError::Task(join.to_string()))?
    }

    /// How much each bucket holds.
    pub async fn usage(&self) -> Result<Vec<BucketUsage>, StorageError> {
        self.db
            .call(|conn| {
                let mut select =
                    conn.prepare("SELECT bucket, objects, bytes FROM object_sizes WHERE objects > 0 ORDER BY bucket")?;
                let rows = select
                    .query_map([], |row| {
                        Ok(BucketUsage {
                            bucket: row.get(0)?,
                            objects: row.get::<_, i64>(1)? as u64,
                            bytes: row.get::<_, i64>(2)? as u64,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await
    }

    /// The oldest undelivered change events, at most `limit`.
    pub async fn pending_events(&self, limit: u32) -> Result<Vec<ObjectEvent>, StorageError> {
        self.db
            .call(move |conn| {
                let mut select = conn.prepare_cached("SELECT id, body FROM object_events ORDER BY id LIMIT ?1")?;
                let rows = select
                    .query_map([limit], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                rows.into_iter()
                    .map(|(id, body)| {
                        let event: ObjectEvent = serde_json::from_str(&body)
                            .map_err(|e| StorageError::Corrupt(format!("object event {id}: {e}")))?;
                        Ok(ObjectEvent { id, ..event })
                    })
                    .collect()
            })
            .await
    }

    /// Removes delivered events.
    pub async fn remove_events(&self, ids: Vec<i64>) -> Result<(), StorageError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                {
                    let mut delete = tx.prepare_cached("DELETE FROM object_events WHERE id = ?1")?;
                    for id in ids {
                        delete.execute([id])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }
}

#[cfg(test)]
mod tests;
