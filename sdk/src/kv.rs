//! A key-value store: state that outlives an invocation, kept by the host (in SQLite on the edgefn host).
//!
//! ```no_run
//! use edgefn::kv::Store;
//! # fn run() -> edgefn::Result<()> {
//! let store = Store::open("default")?;
//! store.set_json("user:ada", &serde_json::json!({ "name": "Ada" }))?;
//! let visits = store.increment("visits:ada", 1)?;
//! store.set_with_ttl("session:42", b"ada", std::time::Duration::from_secs(3600))?;
//! let page = store.list("user:", None, 100)?;
//! # Ok(()) }
//! ```
//!
//! A component opens only the stores its host configuration grants it (`key_value_stores = ["default"]`), and
//! sees another component's keys only when both were granted the same store.
//!
//! **Portability.** `open_default`, `get`, `set`, `delete`, `exists`, `keys` and `increment` speak the standard
//! `wasi:keyvalue` draft: a component that uses only those runs on any host that offers it (`wasmtime serve -S
//! keyvalue`). Expiry (`set_with_ttl`), `list` by prefix, versions (`get_versioned`, `compare_and_swap`) and `add`
//! (a signed increment) are edgefn's extension. (Spin's `wasi:keyvalue@0.2.0-draft2` has a compare-and-swap of its
//! own; edgefn does not speak draft2 yet.)
//!
//! Natively (unit tests), a store is an in-memory map per thread: `edgefn::testing::kv_clear` empties it.

use crate::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// The version of a key's value: every write gives the key a new one, never reused, even after a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u64);

/// One page of keys, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<String>,
    /// Pass to [`Store::list`] for the next page; `None` on the last one.
    pub cursor: Option<String>,
}

/// An open key-value store.
#[derive(Debug)]
pub struct Store {
    name: String,
    inner: imp::Bucket,
}

impl Store {
    /// Opens the store `name`. Fails when this component was not granted it.
    pub fn open(name: &str) -> Result<Store> {
        Ok(Store { name: name.to_owned(), inner: imp::open(name)? })
    }

    /// The host's default store: `default` on edgefn (it must be granted, like any other), and the one store of
    /// `wasmtime serve -S keyvalue` (which names it ""). Use it in a component meant to run on both.
    pub fn open_default() -> Result<Store> {
        Ok(Store { name: String::new(), inner: imp::open("")? })
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value of `key`, if it exists (and has not expired).
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }

    /// The value of `key` parsed as JSON into `T`.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.get(key)? {
            Some(bytes) => crate::error::from_json(&bytes).map(Some).map_err(|e| {
                Error::internal(format!("the value of `{key}` in store `{}` is not this JSON: {e}", self.name))
            }),
            None => Ok(None),
        }
    }

    /// Sets `key` to `value`.
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<()> {
        self.inner.set(key, value.as_ref())
    }

    /// Sets `key` to `value` as JSON.
    pub fn set_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        self.set(key, to_json(value)?)
    }

    /// Sets `key` to `value`, to disappear after `ttl` (it is invisible at once when it expires).
    pub fn set_with_ttl(&self, key: &str, value: impl AsRef<[u8]>, ttl: Duration) -> Result<()> {
        self.inner.set_with_ttl(key, value.as_ref(), ttl_ms(ttl))
    }

    /// Sets `key` to `value` as JSON, to disappear after `ttl`.
    pub fn set_json_with_ttl<T: Serialize + ?Sized>(&self, key: &str, value: &T, ttl: Duration) -> Result<()> {
        self.set_with_ttl(key, to_json(value)?, ttl)
    }

    /// Deletes `key` (nothing happens if it does not exist).
    pub fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key)
    }

    /// Whether `key` exists (and has not expired).
    pub fn exists(&self, key: &str) -> Result<bool> {
        self.inner.exists(key)
    }

    /// Keys that start with `prefix`, in order, after `cursor` (from a previous page), at most `limit`.
    pub fn list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<KeyPage> {
        self.inner.list(prefix, cursor, limit)
    }

    /// Every key of the store, through the portable `wasi:keyvalue` listing.
    pub fn keys(&self) -> Result<Vec<String>> {
        self.inner.keys()
    }

    // ANCHOR: increment
    /// Adds `delta` to the integer at `key` (0 when it does not exist) and returns the result. Atomic: concurrent
    /// increments from any number of instances all count. Portable (`wasi:keyvalue/atomics`).
    ///
    /// The counter is stored as its decimal text (`b"42"`), which is also valid JSON: read it back with
    /// `store.get_json::<u64>(key)`, or with `edgefn kv get STORE KEY` from the CLI. A value that is not a decimal
    /// integer makes the increment fail with an error naming the key, and leaves the value as it was.
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64> {
        self.inner.increment(key, delta)
    }
    // ANCHOR_END: increment

    /// Like [`Store::increment`], with a delta that may be negative (edgefn's extension).
    pub fn add(&self, key: &str, delta: i64) -> Result<i64> {
        self.inner.add(key, delta)
    }

    /// The value of `key` and its version, for a later [`Store::compare_and_swap`].
    pub fn get_versioned(&self, key: &str) -> Result<Option<(Vec<u8>, Version)>> {
        self.inner.get_versioned(key)
    }

    /// Writes `value` only if `key` is still at `expected` (`None`: only if it does not exist). Returns the new
    /// version, or `None` when someone else wrote first (nothing was written: read again and retry).
    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Version>,
        value: impl AsRef<[u8]>,
    ) -> Result<Option<Version>> {
        self.inner.compare_and_swap(key, expected, value.as_ref(), 0)
    }

    /// [`Store::compare_and_swap`], and the value expires after `ttl` (e.g. claiming an idempotency key once).
    pub fn compare_and_swap_with_ttl(
        &self,
        key: &str,
        expected: Option<Version>,
        value: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Result<Option<Version>> {
        self.inner.compare_and_swap(key, expected, value.as_ref(), ttl_ms(ttl))
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::internal(format!("the value does not serialize as JSON: {e}")))
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(target_family = "wasm")]
mod imp {
    use super::{KeyPage, Version};
    use crate::abi::bindings::edgefn::function::kv;
    use crate::abi::bindings::wasi::keyvalue::{atomics, store};
    use crate::{Error, Result};

    /// A `wasi:keyvalue` bucket.
    #[derive(Debug)]
    pub(super) struct Bucket(store::Bucket);

    fn error(store_error: store::Error) -> Error {
        match store_error {
            store::Error::NoSuchStore => Error::internal("no such key-value store"),
            store::Error::AccessDenied => Error::internal(
                "this component may not open that key-value store: grant it in the host's `key_value_stores`",
            ),
            store::Error::Other(message) => Error::internal(message),
        }
    }

    pub(super) fn open(name: &str) -> Result<Bucket> {
        store::open(name).map(Bucket).map_err(|e| match e {
            store::Error::AccessDenied => Error::internal(format!(
                "this component may not open key-value store `{name}`: grant it in the host's `key_value_stores`"
            )),
            other => error(other),
        })
    }

    impl Bucket {
        pub(super) fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
            self.0.get(key).map_err(error)
        }

        pub(super) fn set(&self, key: &str, value: &[u8]) -> Result<()> {
            self.0.set(key, value).map_err(error)
        }

        pub(super) fn set_with_ttl(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<()> {
            kv::set_with_ttl(&self.0, key, value, ttl_ms).map_err(error)
        }

        pub(super) fn delete(&self, key: &str) -> Result<()> {
            self.0.delete(key).map_err(error)
        }

        pub(super) fn exists(&self, key: &str) -> Result<bool> {
            self.0.exists(key).map_err(error)
        }

        pub(super) fn list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<KeyPage> {
            let page = kv::list_prefix(&self.0, prefix, cursor, limit).map_err(error)?;
            Ok(KeyPage { keys: page.keys, cursor: page.cursor })
        }

        pub(super) fn keys(&self) -> Result<Vec<String>> {
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                let page = self.0.list_keys(cursor).map_err(error)?;
                keys.extend(page.keys);
                match page.cursor {
                    Some(next) => cursor = Some(next),
                    None => return Ok(keys),
                }
            }
        }

        // Two functions, not one that picks: a component that only increments must not import `kv::add`, or it
        // would no longer run on hosts that only have the portable interfaces.
        pub(super) fn increment(&self, key: &str, delta: u64) -> Result<u64> {
            atomics::increment(&self.0, key, delta).map_err(error)
        }

        pub(super) fn add(&self, key: &str, delta: i64) -> Result<i64> {
            kv::add(&self.0, key, delta).map_err(error)
        }

        pub(super) fn get_versioned(&self, key: &str) -> Result<Option<(Vec<u8>, Version)>> {
            let found = kv::get_versioned(&self.0, key).map_err(error)?;
            Ok(found.map(|v| (v.value, Version(v.version))))
        }

        pub(super) fn compare_and_swap(
            &self,
            key: &str,
            expected: Option<Version>,
            value: &[u8],
            ttl_ms: u64,
        ) -> Result<Option<Version>> {
            let swapped = kv::compare_and_swap(&self.0, key, expected.map(|v| v.0), value, ttl_ms).map_err(error)?;
            Ok(swapped.map(Version))
        }
    }
}

#[cfg(not(target_family = "wasm"))]
pub(crate) mod imp {
    //! The native store of unit tests: a map per thread, with the host's semantics (versions, expiry, prefixes).

    use super::{KeyPage, Version};
    use crate::{Error, Result};
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    struct Entry {
        value: Vec<u8>,
        version: u64,
        expires: Option<Instant>,
    }

    #[derive(Default)]
    pub(crate) struct Stores {
        entries: BTreeMap<(String, String), Entry>,
        clock: u64,
    }

    thread_local! {
        pub(crate) static STORES: RefCell<Stores> = RefCell::new(Stores::default());
    }

    #[derive(Debug)]
    pub(crate) struct Bucket {
        store: String,
    }

    pub(super) fn open(name: &str) -> Result<Bucket> {
        // As on the edgefn host: the empty name is the store `default`.
        let name = if name.is_empty() { "default" } else { name };
        Ok(Bucket { store: name.to_owned() })
    }

    impl Bucket {
        fn with<R>(&self, work: impl FnOnce(&mut Stores, (String, String)) -> R, key: &str) -> R {
            STORES.with(|stores| {
                let mut stores = stores.borrow_mut();
                let now = Instant::now();
                stores.entries.retain(|_, entry| entry.expires.is_none_or(|at| at > now));
                work(&mut stores, (self.store.clone(), key.to_owned()))
            })
        }

        fn write(&self, key: &str, value: &[u8], ttl_ms: u64) -> Version {
            self.with(
                |stores, id| {
                    stores.clock += 1;
                    let expires = (ttl_ms > 0).then(|| Instant::now() + Duration::from_millis(ttl_ms));
                    stores.entries.insert(id, Entry { value: value.to_vec(), version: stores.clock, expires });
                    Version(stores.clock)
                },
                key,
            )
        }

        pub(super) fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
            Ok(self.get_versioned(key)?.map(|(value, _)| value))
        }

        pub(super) fn set(&self, key: &str, value: &[u8]) -> Result<()> {
            self.write(key, value, 0);
            Ok(())
        }

        pub(super) fn set_with_ttl(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<()> {
            self.write(key, value, ttl_ms);
            Ok(())
        }

        pub(super) fn delete(&self, key: &str) -> Result<()> {
            self.with(|stores, id| stores.entries.remove(&id), key);
            Ok(())
        }

        pub(super) fn exists(&self, key: &str) -> Result<bool> {
            Ok(self.get(key)?.is_some())
        }

        pub(super) fn list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<KeyPage> {
            let mut keys: Vec<String> = self.with(
                |stores, _| {
                    stores
                        .entries
                        .keys()
                        .filter(|(store, key)| *store == self.store && key.starts_with(prefix))
                        .filter(|(_, key)| cursor.is_none_or(|after| key.as_str() > after))
                        .map(|(_, key)| key.clone())
                        .collect()
                },
                "",
            );
            let more = keys.len() > limit as usize;
            keys.truncate(limit as usize);
            let cursor = if more { keys.last().cloned() } else { None };
            Ok(KeyPage { keys, cursor })
        }

        pub(super) fn keys(&self) -> Result<Vec<String>> {
            Ok(self.list("", None, u32::MAX)?.keys)
        }

        pub(super) fn increment(&self, key: &str, delta: u64) -> Result<u64> {
            let delta = i64::try_from(delta).map_err(|_| Error::internal(format!("`{key}` would overflow")))?;
            let value = self.add(key, delta)?;
            u64::try_from(value).map_err(|_| Error::internal(format!("`{key}` holds {value}: negative, use `add`")))
        }

        pub(super) fn add(&self, key: &str, delta: i64) -> Result<i64> {
            let current = match self.get(key)? {
                Some(bytes) => std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|text| text.parse::<i64>().ok())
                    .ok_or_else(|| Error::internal(format!("`{key}` does not hold an integer")))?,
                None => 0,
            };
            let next = current.checked_add(delta).ok_or_else(|| Error::internal(format!("`{key}` would overflow")))?;
            self.set(key, next.to_string().as_bytes())?;
            Ok(next)
        }

        pub(super) fn get_versioned(&self, key: &str) -> Result<Option<(Vec<u8>, Version)>> {
            Ok(self.with(|stores, id| stores.entries.get(&id).map(|e| (e.value.clone(), Version(e.version))), key))
        }

        pub(super) fn compare_and_swap(
            &self,
            key: &str,
            expected: Option<Version>,
            value: &[u8],
            ttl_ms: u64,
        ) -> Result<Option<Version>> {
            let current = self.get_versioned(key)?.map(|(_, version)| version);
            if current != expected {
                return Ok(None);
            }
            Ok(Some(self.write(key, value, ttl_ms)))
        }
    }
}
