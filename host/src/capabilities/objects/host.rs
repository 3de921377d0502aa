//! The `edgefn:function/objects` imports of a component, over the node's [`Objects`]. Every call names its bucket,
//! checked against the function's grants first; an upload is a resource in the invocation's table, at most
//! [`super::MAX_OPEN_UPLOADS`] open at once.

use super::signing::Grant;
use super::{MAX_OPEN_UPLOADS, MAX_READ_BYTES, MAX_SIGNED_MS, ObjectError, ObjectUpload, Objects};
use crate::capabilities::bindings::p2::edgefn::function::objects as wit;
use crate::capabilities::unavailable;
use crate::storage::objects::{ObjectInfo, PutOptions};
use crate::storage::{now_ms, objects::check_key};
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

/// What the object imports of one invocation act on, borrowed from its store.
pub struct ObjectsView<'a> {
    pub table: &'a mut ResourceTable,
    /// The store; `None` where there is none yet (a component's init at deploy).
    pub objects: Option<&'a Arc<Objects>>,
    /// The buckets the function was granted (`object_buckets`).
    pub granted: &'a [String],
    /// Uploads this invocation holds open.
    pub open_uploads: &'a mut usize,
    pub function: Option<&'a str>,
    pub correlation_id: &'a Arc<str>,
}

impl std::fmt::Debug for ObjectsView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectsView").field("granted", &self.granted).finish_non_exhaustive()
    }
}

/// The [`HasData`] of the object imports.
#[derive(Debug)]
pub struct ObjectsHost;

impl HasData for ObjectsHost {
    type Data<'a> = ObjectsView<'a>;
}

/// Links `edgefn:function/objects`, each call getting its view of the store's data from `view`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> ObjectsView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, ObjectsHost>(linker, view)
}

fn info(info: ObjectInfo) -> wit::ObjectInfo {
    wit::ObjectInfo {
        key: info.key,
        size: info.size,
        etag: info.etag,
        content_type: info.content_type,
        metadata: info.metadata,
        updated_at: info.updated_at,
    }
}

impl ObjectsView<'_> {
    /// The store, if `bucket` is granted.
    fn store(&self, bucket: &str) -> Result<Arc<Objects>, ObjectError> {
        let objects = self.objects.cloned().ok_or_else(|| ObjectError::Invalid(unavailable("object storage")))?;
        edgefn_manifest::record::validate_bucket_name(bucket).map_err(ObjectError::Invalid)?;
        if !self.granted.iter().any(|granted| granted == bucket) {
            tracing::warn!(bucket, function = ?self.function, "a function used an object bucket it was not granted");
            return Err(ObjectError::NotGranted(bucket.to_owned()));
        }
        Ok(objects)
    }

    fn sign(&self, grant: Grant, expires_in_ms: u64) -> Result<String, ObjectError> {
        let objects = self.store(&grant.bucket)?;
        check_key(&grant.key)?;
        if expires_in_ms == 0 || expires_in_ms > MAX_SIGNED_MS {
            return Err(ObjectError::Invalid(format!(
                "a signed URL must expire within 1 ms to {MAX_SIGNED_MS} ms (a week); asked for {expires_in_ms} ms"
            )));
        }
        Ok(objects.signer.sign(&grant))
    }
}

impl wit::Host for ObjectsView<'_> {
    async fn put(
        &mut self,
        bucket: String,
        key: String,
        content_type: String,
        metadata: Vec<(String, String)>,
    ) -> Result<Resource<ObjectUpload>, String> {
        let objects = self.store(&bucket).map_err(|e| e.to_string())?;
        if *self.open_uploads >= MAX_OPEN_UPLOADS {
            return Err(format!(
                "this invocation already holds {MAX_OPEN_UPLOADS} uploads open: finish or drop one first"
            ));
        }
        let options =
            PutOptions { content_type, metadata, max_bytes: None, correlation_id: self.correlation_id.to_string() };
        let upload = objects.db.begin(&bucket, &key, options).map_err(|e| ObjectError::from(e).to_string())?;
        let upload = upload.map_err(|refusal| refusal.to_string())?;
        let resource = self.table.push(ObjectUpload { upload }).map_err(|e| e.to_string())?;
        *self.open_uploads += 1;
        Ok(resource)
    }

    async fn read(
        &mut self,
        bucket: String,
        key: String,
        offset: u64,
        length: u64,
    ) -> Result<Option<(wit::ObjectInfo, Vec<u8>)>, String> {
        let objects = self.store(&bucket).map_err(|e| e.to_string())?;
        let found = objects.db.read(&bucket, &key, offset, length.min(MAX_READ_BYTES)).await;
        let found = found.map_err(|e| ObjectError::from(e).to_string())?;
        Ok(found.map(|(i, bytes)| (info(i), bytes)))
    }

    async fn head(&mut self, bucket: String, key: String) -> Result<Option<wit::ObjectInfo>, String> {
        let objects = self.store(&bucket).map_err(|e| e.to_string())?;
        let found = objects.db.head(&bucket, &key).await.map_err(|e| ObjectError::from(e).to_string())?;
        Ok(found.map(info))
    }

    async fn list(
        &mut self,
        bucket: String,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<wit::ObjectPage, String> {
        let objects = self.store(&bucket).map_err(|e| e.to_string())?;
        let (page, more) = objects
            .db
            .list(&bucket, &prefix, cursor, limit.clamp(1, 1000))
            .await
            .map_err(|e| ObjectError::from(e).to_string())?;
        let cursor = if more { page.last().map(|i| i.key.clone()) } else { None };
        Ok(wit::ObjectPage { objects: page.into_iter().map(info).collect(), cursor })
    }

    async fn delete(&mut self, bucket: String, key: String) -> Result<bool, String> {
        let objects = self.store(&bucket).map_err(|e| e.to_string())?;
        let deleted = objects.db.delete(&bucket, &key, self.correlation_id).await;
        let deleted = deleted.map_err(|e| ObjectError::from(e).to_string())?;
        objects.changed.notify_one();
        Ok(deleted)
    }

    async fn copy(
        &mut self,
        from_bucket: String,
        from_key: String,
        to_bucket: String,
        to_key: String,
    ) -> Result<wit::ObjectInfo, String> {
        let objects = self.store(&from_bucket).map_err(|e| e.to_string())?;
        self.store(&to_bucket).map_err(|e| e.to_string())?;
        let copied = objects.db.copy((&from_bucket, &from_key), (&to_bucket, &to_key), self.correlation_id).await;
        let copied = copied.map_err(|e| ObjectError::from(e).to_string())?.map_err(|r| r.to_string())?;
        objects.changed.notify_one();
        Ok(info(copied))
    }

    async fn sign_upload(
        &mut self,
        bucket: String,
        key: String,
        expires_in_ms: u64,
        max_bytes: u64,
        content_type: String,
    ) -> Result<String, String> {
        let expires = now_ms().saturating_add(i64::try_from(expires_in_ms).unwrap_or(i64::MAX));
        let grant = Grant { op: "put".into(), bucket, key, expires, max_bytes, content_type };
        self.sign(grant, expires_in_ms).map_err(|e| e.to_string())
    }

    async fn sign_download(&mut self, bucket: String, key: String, expires_in_ms: u64) -> Result<String, String> {
        let expires = now_ms().saturating_add(i64::try_from(expires_in_ms).unwrap_or(i64::MAX));
        let grant = Grant { op: "get".into(), bucket, key, expires, max_bytes: 0, content_type: String::new() };
        self.sign(grant, expires_in_ms).map_err(|e| e.to_string())
    }
}

impl wit::HostUpload for ObjectsView<'_> {
    async fn write(&mut self, upload: Resource<ObjectUpload>, chunk: Vec<u8>) -> Result<(), String> {
        let upload = &mut self.table.get_mut(&upload).map_err(|e| e.to_string())?.upload;
        let written = upload.write(&chunk).map_err(|e| ObjectError::from(e).to_string())?;
        written.map_err(|refusal| refusal.to_string())
    }

    async fn finish(&mut self, upload: Resource<ObjectUpload>) -> Result<wit::ObjectInfo, String> {
        let ObjectUpload { upload } = self.table.delete(upload).map_err(|e| e.to_string())?;
        *self.open_uploads = self.open_uploads.saturating_sub(1);
        let objects = self.store(upload.bucket()).map_err(|e| e.to_string())?;
        let stored = objects.db.finish(upload, now_ms()).await;
        let stored = stored.map_err(|e| ObjectError::from(e).to_string())?.map_err(|r| r.to_string())?;
        objects.changed.notify_one();
        Ok(info(stored))
    }

    async fn drop(&mut self, upload: Resource<ObjectUpload>) -> wasmtime::Result<()> {
        // Dropping the upload removes its temporary file: nothing is stored.
        self.table.delete(upload)?;
        *self.open_uploads = self.open_uploads.saturating_sub(1);
        Ok(())
    }
}
