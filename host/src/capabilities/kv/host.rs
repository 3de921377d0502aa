//! The `wasi:keyvalue` (draft) and `edgefn:function/kv` imports of a component, forwarded to the invocation's
//! [`KeyValue`] capability. A bucket is a granted store's name in the resource table; opening one that the function
//! was not granted is `access-denied`.
//!
//! The imports act on a [`KvView`]: what one invocation's store lends them (its resource table, its key-value
//! capability, the stores it was granted). `runtime` links them with [`add_to_linker`].

use super::bucket::KvBucket;
use super::{KeyValue, KvError, Put, validate_store_name};
use crate::capabilities::bindings::p2::edgefn::function::kv as edgefn_kv;
use crate::capabilities::bindings::p2::wasi::keyvalue::{atomics, batch, store};
use crate::capabilities::unavailable;
use crate::telemetry::otel;
use opentelemetry::KeyValue as Attribute;
use opentelemetry::trace::SpanKind;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

/// What the key-value imports of one invocation act on, borrowed from its store.
pub struct KvView<'a> {
    pub table: &'a mut ResourceTable,
    /// The key-value stores; `None` where there are none yet (a component's init at deploy).
    pub kv: Option<&'a Arc<dyn KeyValue>>,
    /// The stores the function was granted (`key_value_stores`).
    pub granted: &'a [String],
    /// The function, for the host's log.
    pub function: Option<&'a str>,
    /// The work it does, and its span: each operation is a child span of it (see `telemetry::otel`).
    pub correlation_id: &'a Arc<str>,
    pub span: u64,
}

impl std::fmt::Debug for KvView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvView")
            .field("granted", &self.granted)
            .field("function", &self.function)
            .finish_non_exhaustive()
    }
}

/// The [`HasData`] of the key-value imports: a store's data lends them a [`KvView`].
#[derive(Debug)]
pub struct KvHost;

impl HasData for KvHost {
    type Data<'a> = KvView<'a>;
}

/// Links the key-value imports (`wasi:keyvalue` store, atomics and batch, and `edgefn:function/kv`), each call
/// getting its view of the store's data from `view`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, KvHost>(linker, view)?;
    atomics::add_to_linker::<T, KvHost>(linker, view)?;
    batch::add_to_linker::<T, KvHost>(linker, view)?;
    edgefn_kv::add_to_linker::<T, KvHost>(linker, view)
}

fn other(error: impl std::fmt::Display) -> store::Error {
    store::Error::Other(error.to_string())
}

fn kv_error(error: KvError) -> store::Error {
    match error {
        KvError::NotGranted(_) => store::Error::AccessDenied,
        other => store::Error::Other(other.to_string()),
    }
}

/// The store the empty name opens.
const DEFAULT_STORE: &str = "default";

impl KvView<'_> {
    fn kv(&self) -> Result<Arc<dyn KeyValue>, store::Error> {
        self.kv.cloned().ok_or_else(|| other(unavailable("a key-value store")))
    }

    fn bucket_store(&self, bucket: &Resource<KvBucket>) -> Result<String, store::Error> {
        Ok(self.table.get(bucket).map_err(other)?.store.clone())
    }

    /// Begins the operation `operation` on `store`: a child span of the invocation's (see `telemetry::otel`).
    fn begin(&self, operation: &'static str, store: &str) -> Operation {
        let span = otel::start(self.correlation_id, self.span, SpanKind::Client, format!("kv {operation} {store}"));
        let attributes = vec![
            Attribute::new("db.system.name", "edgefn-kv"),
            Attribute::new("db.operation.name", operation),
            Attribute::new("db.namespace", store.to_owned()),
        ];
        Operation { span, attributes }
    }
}

/// A key-value operation begun, as its span will say.
struct Operation {
    span: otel::Started,
    attributes: Vec<Attribute>,
}

/// Runs `work`, then ends the span of `operation` with its outcome.
async fn traced<T>(operation: Operation, work: impl Future<Output = Result<T, KvError>>) -> Result<T, store::Error> {
    let result = work.await;
    operation.span.end(operation.attributes, result.as_ref().err().map(ToString::to_string));
    result.map_err(kv_error)
}

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<KvBucket>, store::Error> {
        self.kv()?;
        // `wasmtime serve -S keyvalue` has one store, named "": here that is the store `default`, so a portable
        // component that opens "" finds its data under either host.
        let identifier = if identifier.is_empty() { DEFAULT_STORE.to_owned() } else { identifier };
        validate_store_name(&identifier).map_err(store::Error::Other)?;
        if !self.granted.contains(&identifier) {
            tracing::warn!(store = %identifier, function = ?self.function,
                "a function opened a key-value store it was not granted");
            return Err(kv_error(KvError::NotGranted(identifier)));
        }
        self.table.push(KvBucket { store: identifier }).map_err(other)
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(&mut self, bucket: Resource<KvBucket>, key: String) -> Result<Option<Vec<u8>>, store::Error> {
        let store = self.bucket_store(&bucket)?;
        Ok(traced(self.begin("get", &store), self.kv()?.get(store.clone(), key)).await?.map(|v| v.value))
    }

    async fn set(&mut self, bucket: Resource<KvBucket>, key: String, value: Vec<u8>) -> Result<(), store::Error> {
        let store = self.bucket_store(&bucket)?;
        let put = Put { value, ttl_ms: None, expected: None };
        traced(self.begin("set", &store), self.kv()?.put(store.clone(), key, put)).await.map(|_| ())
    }

    async fn delete(&mut self, bucket: Resource<KvBucket>, key: String) -> Result<(), store::Error> {
        let store = self.bucket_store(&bucket)?;
        traced(self.begin("delete", &store), self.kv()?.delete(store.clone(), vec![key])).await
    }

    async fn exists(&mut self, bucket: Resource<KvBucket>, key: String) -> Result<bool, store::Error> {
        let store = self.bucket_store(&bucket)?;
        Ok(traced(self.begin("get", &store), self.kv()?.get(store.clone(), key)).await?.is_some())
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<KvBucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, store::Error> {
        let store = self.bucket_store(&bucket)?;
        let offset = cursor.unwrap_or(0);
        let (keys, more) = traced(self.begin("list", &store), self.kv()?.keys_from(store.clone(), offset)).await?;
        let cursor = more.then(|| offset + keys.len() as u64);
        Ok(store::KeyResponse { keys, cursor })
    }

    async fn drop(&mut self, bucket: Resource<KvBucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(&mut self, bucket: Resource<KvBucket>, key: String, delta: u64) -> Result<u64, store::Error> {
        let store = self.bucket_store(&bucket)?;
        let value =
            traced(self.begin("add", &store), self.kv()?.add(store.clone(), key.clone(), i128::from(delta))).await?;
        u64::try_from(value).map_err(|_| other(format!("`{key}` holds a negative number: use the edgefn `add`")))
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<KvBucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, store::Error> {
        let store = self.bucket_store(&bucket)?;
        let values = traced(self.begin("get_many", &store), self.kv()?.get_many(store.clone(), keys.clone())).await?;
        Ok(keys.into_iter().zip(values).map(|(key, value)| value.map(|value| (key, value))).collect())
    }

    async fn set_many(
        &mut self,
        bucket: Resource<KvBucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), store::Error> {
        let store = self.bucket_store(&bucket)?;
        traced(self.begin("set_many", &store), self.kv()?.put_many(store.clone(), key_values)).await
    }

    async fn delete_many(&mut self, bucket: Resource<KvBucket>, keys: Vec<String>) -> Result<(), store::Error> {
        let store = self.bucket_store(&bucket)?;
        traced(self.begin("delete", &store), self.kv()?.delete(store.clone(), keys)).await
    }
}

impl edgefn_kv::Host for KvView<'_> {
    async fn set_with_ttl(
        &mut self,
        bucket: Resource<KvBucket>,
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> Result<(), store::Error> {
        let store = self.bucket_store(&bucket)?;
        let put = Put { value, ttl_ms: (ttl_ms > 0).then_some(ttl_ms), expected: None };
        traced(self.begin("set", &store), self.kv()?.put(store.clone(), key, put)).await.map(|_| ())
    }

    async fn get_versioned(
        &mut self,
        bucket: Resource<KvBucket>,
        key: String,
    ) -> Result<Option<edgefn_kv::Versioned>, store::Error> {
        let store = self.bucket_store(&bucket)?;
        let found = traced(self.begin("get", &store), self.kv()?.get(store.clone(), key)).await?;
        Ok(found.map(|v| edgefn_kv::Versioned { value: v.value, version: v.version }))
    }

    async fn compare_and_swap(
        &mut self,
        bucket: Resource<KvBucket>,
        key: String,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> Result<Option<u64>, store::Error> {
        let store = self.bucket_store(&bucket)?;
        let put = Put { value, ttl_ms: (ttl_ms > 0).then_some(ttl_ms), expected: Some(expected) };
        traced(self.begin("set", &store), self.kv()?.put(store.clone(), key, put)).await
    }

    async fn list_prefix(
        &mut self,
        bucket: Resource<KvBucket>,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<edgefn_kv::KeyPage, store::Error> {
        let store = self.bucket_store(&bucket)?;
        let (keys, more) =
            traced(self.begin("list", &store), self.kv()?.list(store.clone(), prefix, cursor, limit)).await?;
        let cursor = if more { keys.last().cloned() } else { None };
        Ok(edgefn_kv::KeyPage { keys, cursor })
    }

    async fn add(&mut self, bucket: Resource<KvBucket>, key: String, delta: i64) -> Result<i64, store::Error> {
        let store = self.bucket_store(&bucket)?;
        let value =
            traced(self.begin("add", &store), self.kv()?.add(store.clone(), key.clone(), i128::from(delta))).await?;
        i64::try_from(value).map_err(|_| other(format!("`{key}` is past the largest i64")))
    }
}
