//! Key-value stores: the host side of `wasi:keyvalue` (the portable draft) and of edgefn's `kv` extension, over
//! SQLite ([`crate::storage::kv`]) or whatever implements [`KeyValue`]. One folder: the capability (this file),
//! the imports a component calls (`host.rs`), and the resource they hand out (`bucket.rs`).
//!
//! Stores are named; a component opens only those its configuration grants it (`key_value_stores`), and two
//! components see each other's keys only when both were granted the same store. The limits (key and value size,
//! keys and bytes per store) refuse a write with a clear error and write nothing.

mod bucket;
mod host;

pub use bucket::KvBucket;
pub use host::{KvHost, KvView, add_to_linker};

use super::BoxFuture;
use crate::storage::kv::{KvDb, KvRefusal, Versioned};
use crate::storage::{StorageError, now_ms};

/// How many keys one page of the portable listing holds.
pub const KEYS_PER_PAGE: u32 = 1_000;

/// Why a key-value call failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("this component may not open key-value store `{0}`: add it to its `key_value_stores`")]
    NotGranted(String),
    #[error("{0}")]
    Refused(#[from] KvRefusal),
    #[error("the key-value store failed: {0}")]
    Storage(#[from] Box<StorageError>),
}

impl From<StorageError> for KvError {
    fn from(error: StorageError) -> Self {
        KvError::Storage(Box::new(error))
    }
}

/// A write: a value, and optionally an expiry and the version the key must be at.
#[derive(Debug, Clone)]
pub struct Put {
    pub value: Vec<u8>,
    /// Milliseconds until the key expires; `None` for never.
    pub ttl_ms: Option<u64>,
    /// `Some(None)`: only if the key does not exist; `Some(Some(v))`: only if it is at version `v`.
    pub expected: Option<Option<u64>>,
}

/// What functions reach. `store` is a granted store's name (the runtime checks grants when a bucket is opened).
pub trait KeyValue: Send + Sync + 'static {
    fn get(&self, store: String, key: String) -> BoxFuture<'_, Result<Option<Versioned>, KvError>>;
    fn get_many(&self, store: String, keys: Vec<String>) -> BoxFuture<'_, Result<Vec<Option<Vec<u8>>>, KvError>>;
    /// Returns the new version, or `None` when the key was not at the expected version.
    fn put(&self, store: String, key: String, put: Put) -> BoxFuture<'_, Result<Option<u64>, KvError>>;
    fn put_many(&self, store: String, entries: Vec<(String, Vec<u8>)>) -> BoxFuture<'_, Result<(), KvError>>;
    fn delete(&self, store: String, keys: Vec<String>) -> BoxFuture<'_, Result<(), KvError>>;
    fn add(&self, store: String, key: String, delta: i128) -> BoxFuture<'_, Result<i128, KvError>>;
    /// Keys with `prefix` after `after`, at most `limit`, and whether there are more.
    fn list(
        &self,
        store: String,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> BoxFuture<'_, Result<(Vec<String>, bool), KvError>>;
    /// The portable listing: keys from the `offset`-th.
    fn keys_from(&self, store: String, offset: u64) -> BoxFuture<'_, Result<(Vec<String>, bool), KvError>>;
}

/// The SQLite stores.
#[derive(Debug, Clone)]
pub struct KvStores {
    db: KvDb,
}

impl KvStores {
    pub fn new(db: KvDb) -> Self {
        Self { db }
    }

    /// The SQL underneath, for the admin API and the expiry sweep.
    pub fn db(&self) -> &KvDb {
        &self.db
    }
}

fn refused<T>(result: Result<Result<T, KvRefusal>, StorageError>) -> Result<T, KvError> {
    Ok(result??)
}

impl KeyValue for KvStores {
    fn get(&self, store: String, key: String) -> BoxFuture<'_, Result<Option<Versioned>, KvError>> {
        Box::pin(async move { Ok(self.db.get(&store, &key, now_ms()).await?) })
    }

    fn get_many(&self, store: String, keys: Vec<String>) -> BoxFuture<'_, Result<Vec<Option<Vec<u8>>>, KvError>> {
        Box::pin(async move { Ok(self.db.get_many(&store, keys, now_ms()).await?) })
    }

    fn put(&self, store: String, key: String, put: Put) -> BoxFuture<'_, Result<Option<u64>, KvError>> {
        Box::pin(async move {
            let now = now_ms();
            let expires_at = put.ttl_ms.map(|ttl| now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)));
            refused(self.db.put(&store, &key, put.value, expires_at, put.expected, now).await)
        })
    }

    fn put_many(&self, store: String, entries: Vec<(String, Vec<u8>)>) -> BoxFuture<'_, Result<(), KvError>> {
        Box::pin(async move { refused(self.db.put_many(&store, entries, now_ms()).await) })
    }

    fn delete(&self, store: String, keys: Vec<String>) -> BoxFuture<'_, Result<(), KvError>> {
        Box::pin(async move { Ok(self.db.delete(&store, keys).await?) })
    }

    fn add(&self, store: String, key: String, delta: i128) -> BoxFuture<'_, Result<i128, KvError>> {
        Box::pin(async move { refused(self.db.add(&store, &key, delta, now_ms()).await) })
    }

    fn list(
        &self,
        store: String,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> BoxFuture<'_, Result<(Vec<String>, bool), KvError>> {
        Box::pin(
            async move { Ok(self.db.list(&store, &prefix, after, limit.clamp(1, KEYS_PER_PAGE), now_ms()).await?) },
        )
    }

    fn keys_from(&self, store: String, offset: u64) -> BoxFuture<'_, Result<(Vec<String>, bool), KvError>> {
        Box::pin(async move { Ok(self.db.keys_from(&store, offset, KEYS_PER_PAGE, now_ms()).await?) })
    }
}

/// Checks a store name: 1 to 64 letters, digits, `-`, `_` and `.`, starting with a letter or a digit.
pub fn validate_store_name(name: &str) -> Result<(), String> {
    edgefn_manifest::record::validate_store_name("key-value store", name)
}
