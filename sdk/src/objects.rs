//! Object storage: files of any size in buckets, streamed in and out, with content types, user metadata and an
//! ETag (the SHA-256 of the bytes); signed URLs that let a browser upload or download straight from the host; and
//! change events that trigger functions.
//!
//! ```no_run
//! use edgefn::objects::Bucket;
//! # fn run() -> edgefn::Result<()> {
//! let photos = Bucket::open("photos");
//! photos.put("uploads/cat.png", b"...", "image/png")?;
//! let (info, bytes) = photos.get("uploads/cat.png")?.expect("just stored");
//! let mut writer = photos.writer("big.bin", "application/octet-stream", &[])?;
//! writer.write(&[0; 65536])?;
//! let info = writer.finish()?;
//! let url = photos.sign_upload("uploads/next.png", std::time::Duration::from_secs(300), 10 << 20, "image/png")?;
//! # Ok(()) }
//! ```
//!
//! A change triggers functions declared with `#[function(trigger = object("photos", events = ["created"], prefix =
//! "uploads/"))]`, which take a `Batch<ObjectEvent>`: each change is delivered at least once, retried and
//! dead-lettered like a queue's messages.
//!
//! A component reaches only the buckets its host configuration grants it (`object_buckets = ["photos"]`).
//! Natively (unit tests), a bucket is an in-memory map per thread: `edgefn::testing::objects_clear` empties it.

use crate::Result;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The most bytes one host call reads: [`Bucket::get`] and [`Bucket::read_range`] read in pieces of this size.
pub const READ_CHUNK: u64 = 4 << 20;

/// An object's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// The SHA-256 of the bytes, hex.
    pub etag: String,
    pub content_type: String,
    pub metadata: Vec<(String, String)>,
    pub updated_at_ms: i64,
}

/// One page of a listing, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPage {
    pub objects: Vec<ObjectInfo>,
    /// Pass to [`Bucket::list`] for the next page; `None` on the last one.
    pub cursor: Option<String>,
}

/// A change to an object, as an `object` trigger receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEvent {
    /// `created` (a new object, or a new version of one) or `deleted`.
    pub event: String,
    pub bucket: String,
    pub key: String,
    /// For `deleted`: the size the object had.
    pub size: u64,
    pub etag: String,
    pub content_type: String,
    /// When it changed, milliseconds since the Unix epoch.
    pub at: i64,
    /// The id of the work that made the change.
    pub correlation_id: String,
}

/// A bucket of objects. Opening checks nothing; each call fails with the reason when the bucket is not granted.
#[derive(Debug, Clone)]
pub struct Bucket {
    name: String,
}

impl Bucket {
    pub fn open(name: &str) -> Bucket {
        Bucket { name: name.to_owned() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stores `bytes` at `key` (replacing any object there) with a content type (empty: application/octet-stream).
    pub fn put(&self, key: &str, bytes: &[u8], content_type: &str) -> Result<ObjectInfo> {
        let mut writer = self.writer(key, content_type, &[])?;
        for chunk in bytes.chunks(READ_CHUNK as usize) {
            writer.write(chunk)?;
        }
        writer.finish()
    }

    /// Starts streaming an object to `key`: nothing is stored until [`Writer::finish`].
    pub fn writer(&self, key: &str, content_type: &str, metadata: &[(&str, &str)]) -> Result<Writer> {
        let metadata = metadata.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Ok(Writer { inner: imp::put(&self.name, key, content_type, metadata)? })
    }

    /// The whole object, or `None` if there is none at `key`.
    pub fn get(&self, key: &str) -> Result<Option<(ObjectInfo, Vec<u8>)>> {
        let Some((info, mut bytes)) = imp::read(&self.name, key, 0, READ_CHUNK)? else { return Ok(None) };
        while (bytes.len() as u64) < info.size {
            match imp::read(&self.name, key, bytes.len() as u64, READ_CHUNK)? {
                // Replaced while being read: start over, so the bytes are all of one version.
                Some((now, _)) if now.etag != info.etag => return self.get(key),
                Some((_, more)) if !more.is_empty() => bytes.extend(more),
                _ => return Ok(None),
            }
        }
        Ok(Some((info, bytes)))
    }

    /// Up to `length` bytes from `offset` (at most [`READ_CHUNK`] per call), and the object's metadata.
    pub fn read_range(&self, key: &str, offset: u64, length: u64) -> Result<Option<(ObjectInfo, Vec<u8>)>> {
        imp::read(&self.name, key, offset, length.min(READ_CHUNK))
    }

    pub fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        imp::head(&self.name, key)
    }

    /// Objects whose keys start with `prefix`, after `cursor`, at most `limit` (1 to 1000).
    pub fn list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<ObjectPage> {
        imp::list(&self.name, prefix, cursor, limit)
    }

    /// Deletes `key`; returns whether it existed.
    pub fn delete(&self, key: &str) -> Result<bool> {
        imp::delete(&self.name, key)
    }

    /// Copies `key` to `to_key` in bucket `to` (which must be granted too).
    pub fn copy(&self, key: &str, to: &Bucket, to_key: &str) -> Result<ObjectInfo> {
        imp::copy(&self.name, key, &to.name, to_key)
    }

    /// A URL (path and query, on the host's HTTP listener) with which a client may `PUT` one object of at most
    /// `max_bytes` at `key`, with this content type (empty: any), until `expires` from now.
    pub fn sign_upload(&self, key: &str, expires: Duration, max_bytes: u64, content_type: &str) -> Result<String> {
        imp::sign_upload(&self.name, key, millis(expires), max_bytes, content_type)
    }

    /// A URL with which a client may `GET` the object at `key` (ranges too) until `expires` from now.
    pub fn sign_download(&self, key: &str, expires: Duration) -> Result<String> {
        imp::sign_download(&self.name, key, millis(expires))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// An object being streamed to its bucket; dropped without [`Writer::finish`], it stores nothing.
#[derive(Debug)]
pub struct Writer {
    inner: imp::Upload,
}

impl Writer {
    /// Appends bytes. Fails past the host's object size limit (and the object is then not stored).
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.inner.write(chunk)
    }

    /// Stores the object atomically (replacing any before it) and returns its metadata.
    pub fn finish(self) -> Result<ObjectInfo> {
        self.inner.finish()
    }
}

#[cfg(target_family = "wasm")]
mod imp {
    use super::{ObjectInfo, ObjectPage};
    use crate::abi::bindings::edgefn::function::objects;
    use crate::{Error, Result};

    pub(super) type Upload = UploadHandle;

    #[derive(Debug)]
    pub(super) struct UploadHandle(objects::Upload);

    fn info(info: objects::ObjectInfo) -> ObjectInfo {
        ObjectInfo {
            key: info.key,
            size: info.size,
            etag: info.etag,
            content_type: info.content_type,
            metadata: info.metadata,
            updated_at_ms: info.updated_at,
        }
    }

    pub(super) fn put(bucket: &str, key: &str, content_type: &str, metadata: Vec<(String, String)>) -> Result<Upload> {
        objects::put(bucket, key, content_type, &metadata).map(UploadHandle).map_err(Error::internal)
    }

    impl UploadHandle {
        pub(super) fn write(&mut self, chunk: &[u8]) -> Result<()> {
            self.0.write(chunk).map_err(Error::internal)
        }

        pub(super) fn finish(self) -> Result<ObjectInfo> {
            objects::Upload::finish(self.0).map(info).map_err(Error::internal)
        }
    }

    pub(super) fn read(bucket: &str, key: &str, offset: u64, length: u64) -> Result<Option<(ObjectInfo, Vec<u8>)>> {
        let found = objects::read(bucket, key, offset, length).map_err(Error::internal)?;
        Ok(found.map(|(i, bytes)| (info(i), bytes)))
    }

    pub(super) fn head(bucket: &str, key: &str) -> Result<Option<ObjectInfo>> {
        Ok(objects::head(bucket, key).map_err(Error::internal)?.map(info))
    }

    pub(super) fn list(bucket: &str, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<ObjectPage> {
        let page = objects::list(bucket, prefix, cursor, limit).map_err(Error::internal)?;
        Ok(ObjectPage { objects: page.objects.into_iter().map(info).collect(), cursor: page.cursor })
    }

    pub(super) fn delete(bucket: &str, key: &str) -> Result<bool> {
        objects::delete(bucket, key).map_err(Error::internal)
    }

    pub(super) fn copy(bucket: &str, key: &str, to_bucket: &str, to_key: &str) -> Result<ObjectInfo> {
        objects::copy(bucket, key, to_bucket, to_key).map(info).map_err(Error::internal)
    }

    pub(super) fn sign_upload(
        bucket: &str,
        key: &str,
        expires_ms: u64,
        max_bytes: u64,
        content_type: &str,
    ) -> Result<String> {
        objects::sign_upload(bucket, key, expires_ms, max_bytes, content_type).map_err(Error::internal)
    }

    pub(super) fn sign_download(bucket: &str, key: &str, expires_ms: u64) -> Result<String> {
        objects::sign_download(bucket, key, expires_ms).map_err(Error::internal)
    }
}

/// Natively: one in-memory map per thread, so unit tests of handlers run without a host.
#[cfg(not(target_family = "wasm"))]
pub(crate) mod imp {
    use super::{ObjectInfo, ObjectPage};
    use crate::{Error, Result};
    use sha2::{Digest as _, Sha256};
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// Objects by bucket and key: their metadata and bytes.
    type Buckets = BTreeMap<(String, String), (ObjectInfo, Vec<u8>)>;

    thread_local! {
        static OBJECTS: RefCell<Buckets> = const { RefCell::new(BTreeMap::new()) };
    }

    /// Empties every bucket of this thread.
    pub(crate) fn clear() {
        OBJECTS.with(|objects| objects.borrow_mut().clear());
    }

    pub(super) type Upload = NativeUpload;

    #[derive(Debug)]
    pub(super) struct NativeUpload {
        bucket: String,
        info: ObjectInfo,
        bytes: Vec<u8>,
    }

    pub(super) fn put(bucket: &str, key: &str, content_type: &str, metadata: Vec<(String, String)>) -> Result<Upload> {
        if key.is_empty() {
            return Err(Error::internal("the object key is empty"));
        }
        let content_type = if content_type.is_empty() { "application/octet-stream" } else { content_type };
        let info = ObjectInfo {
            key: key.to_owned(),
            size: 0,
            etag: String::new(),
            content_type: content_type.to_owned(),
            metadata,
            updated_at_ms: 0,
        };
        Ok(NativeUpload { bucket: bucket.to_owned(), info, bytes: Vec::new() })
    }

    impl NativeUpload {
        pub(super) fn write(&mut self, chunk: &[u8]) -> Result<()> {
            self.bytes.extend_from_slice(chunk);
            Ok(())
        }

        pub(super) fn finish(self) -> Result<ObjectInfo> {
            let NativeUpload { bucket, mut info, bytes } = self;
            info.size = bytes.len() as u64;
            info.etag = hex::encode(Sha256::digest(&bytes));
            info.updated_at_ms =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            OBJECTS.with(|objects| objects.borrow_mut().insert((bucket, info.key.clone()), (info.clone(), bytes)));
            Ok(info)
        }
    }

    pub(super) fn read(bucket: &str, key: &str, offset: u64, length: u64) -> Result<Option<(ObjectInfo, Vec<u8>)>> {
        Ok(OBJECTS.with(|objects| {
            objects.borrow().get(&(bucket.to_owned(), key.to_owned())).map(|(info, bytes)| {
                let start = (offset as usize).min(bytes.len());
                let end = (offset.saturating_add(length) as usize).min(bytes.len());
                (info.clone(), bytes[start..end].to_vec())
            })
        }))
    }

    pub(super) fn head(bucket: &str, key: &str) -> Result<Option<ObjectInfo>> {
        Ok(read(bucket, key, 0, 0)?.map(|(info, _)| info))
    }

    pub(super) fn list(bucket: &str, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<ObjectPage> {
        OBJECTS.with(|objects| {
            let objects = objects.borrow();
            let mut page: Vec<ObjectInfo> = objects
                .iter()
                .filter(|((b, k), _)| b == bucket && k.starts_with(prefix) && cursor.is_none_or(|c| k.as_str() > c))
                .map(|(_, (info, _))| info.clone())
                .take(limit as usize + 1)
                .collect();
            let more = page.len() > limit as usize;
            page.truncate(limit as usize);
            let cursor = if more { page.last().map(|info| info.key.clone()) } else { None };
            Ok(ObjectPage { objects: page, cursor })
        })
    }

    pub(super) fn delete(bucket: &str, key: &str) -> Result<bool> {
        Ok(OBJECTS.with(|objects| objects.borrow_mut().remove(&(bucket.to_owned(), key.to_owned())).is_some()))
    }

    pub(super) fn copy(bucket: &str, key: &str, to_bucket: &str, to_key: &str) -> Result<ObjectInfo> {
        let Some((info, bytes)) = read(bucket, key, 0, u64::MAX)? else {
            return Err(Error::internal(format!("object `{key}` does not exist in bucket `{bucket}`")));
        };
        let mut upload = put(to_bucket, to_key, &info.content_type, info.metadata)?;
        upload.write(&bytes)?;
        upload.finish()
    }

    pub(super) fn sign_upload(bucket: &str, key: &str, _: u64, _: u64, _: &str) -> Result<String> {
        Err(Error::internal(format!(
            "signing a URL for `{bucket}/{key}` needs the edgefn host: natively there is none"
        )))
    }

    pub(super) fn sign_download(bucket: &str, key: &str, _: u64) -> Result<String> {
        Err(Error::internal(format!(
            "signing a URL for `{bucket}/{key}` needs the edgefn host: natively there is none"
        )))
    }
}
