//! The SQL of the key-value stores. Every method is one transaction, run off the async threads.
//!
//! One table holds every store. A write stamps its key with a version from one counter that only grows (a
//! versionstamp, as denokv has), so compare-and-swap by version is safe even across a delete and a re-create. An
//! expired key is invisible at once (every read filters on `expires_at`) and swept later. How much each store
//! holds is kept by triggers, so a write can be refused at a store's limits without counting its rows.

use super::{Database, StorageError};
use rusqlite::{Connection, OptionalExtension as _, params};

/// The bounds of every store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLimits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub max_keys: u64,
    pub max_bytes: u64,
}

/// Why a write was refused (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvRefusal {
    #[error("key is {len} bytes; the limit is {limit} (limits.kv_max_key_bytes)")]
    KeyTooLong { len: usize, limit: usize },
    #[error("the key is empty")]
    EmptyKey,
    #[error("value of `{key}` is {len} bytes; the limit is {limit} (limits.kv_max_value_bytes)")]
    ValueTooLarge { key: String, len: usize, limit: usize },
    #[error(
        "store `{store}` is full: it holds {keys} keys, {bytes} bytes; the limits are {max_keys} keys and {max_bytes} bytes"
    )]
    StoreFull { store: String, keys: u64, bytes: u64, max_keys: u64, max_bytes: u64 },
    #[error("`{key}` holds {found}, not an integer")]
    NotAnInteger { key: String, found: String },
    #[error("`{key}` would overflow")]
    Overflow { key: String },
}

/// A key's value and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    pub version: u64,
}

/// What a write did.
pub type KvResult<T> = Result<Result<T, KvRefusal>, StorageError>;

/// The key-value tables, behind one connection.
#[derive(Debug, Clone)]
pub struct KvDb {
    db: Database,
    limits: KvLimits,
}

const LIVE: &str = "(expires_at IS NULL OR expires_at > ?)";

/// The least string greater than every string that starts with `prefix` (`None` for the empty prefix, or one
/// made only of `char::MAX`): `prefix` with its last raisable character raised. SQLite compares text byte-wise,
/// and UTF-8 byte order is code-point order, so `prefix <= key < bound` is exactly "starts with `prefix`".
pub(super) fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        // The next scalar value: surrogates are not chars, so skip over them.
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

impl KvDb {
    pub fn new(db: Database, limits: KvLimits) -> Self {
        Self { db, limits }
    }

    pub fn limits(&self) -> KvLimits {
        self.limits
    }

    fn check_key(&self, key: &str) -> Result<(), KvRefusal> {
        if key.is_empty() {
            return Err(KvRefusal::EmptyKey);
        }
        if key.len() > self.limits.max_key_bytes {
            return Err(KvRefusal::KeyTooLong { len: key.len(), limit: self.limits.max_key_bytes });
        }
        Ok(())
    }

    /// [`Self::check_key`], and the value's size.
    fn check_entry(&self, key: &str, value: &[u8]) -> Result<(), KvRefusal> {
        self.check_key(key)?;
        if value.len() > self.limits.max_value_bytes {
            return Err(KvRefusal::ValueTooLarge {
                key: key.to_owned(),
                len: value.len(),
                limit: self.limits.max_value_bytes,
            });
        }
        Ok(())
    }

    pub async fn get(&self, store: &str, key: &str, now: i64) -> Result<Option<Versioned>, StorageError> {
        let (store, key) = (store.to_owned(), key.to_owned());
        self.db.call(move |conn| get(conn, &store, &key, now)).await
    }

    pub async fn get_many(
        &self,
        store: &str,
        keys: Vec<String>,
        now: i64,
    ) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        let store = store.to_owned();
        self.db
            .call(move |conn| keys.iter().map(|key| Ok(get(conn, &store, key, now)?.map(|v| v.value))).collect())
            .await
    }

    /// Writes `key` (expiring at `expires_at`, if given), unless `expected` says another version must be there
    /// (`Some(None)`: none at all); returns the new version, or `None` when the key was not at `expected`.
    pub async fn put(
        &self,
        store: &str,
        key: &str,
        value: Vec<u8>,
        expires_at: Option<i64>,
        expected: Option<Option<u64>>,
        now: i64,
    ) -> KvResult<Option<u64>> {
        if let Err(refusal) = self.check_entry(key, &value) {
            return Ok(Err(refusal));
        }
        let (store, key, limits) = (store.to_owned(), key.to_owned(), self.limits);
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let current = get(&tx, &store, &key, now)?;
                if let Some(expected) = expected
                    && current.as_ref().map(|v| v.version) != expected
                {
                    return Ok(Ok(None));
                }
                let old_len = current.as_ref().map_or(0, |v| v.value.len() as u64);
                if let Err(refusal) =
                    room(&tx, &store, u64::from(current.is_none()), value.len() as u64, old_len, limits)?
                {
                    return Ok(Err(refusal));
                }
                let version = write(&tx, &store, &key, &value, expires_at)?;
                tx.commit()?;
                Ok(Ok(Some(version)))
            })
            .await
    }

    /// Writes several keys in one transaction (all or none).
    pub async fn put_many(&self, store: &str, entries: Vec<(String, Vec<u8>)>, now: i64) -> KvResult<()> {
        for (key, value) in &entries {
            if let Err(refusal) = self.check_entry(key, value) {
                return Ok(Err(refusal));
            }
        }
        let (store, limits) = (store.to_owned(), self.limits);
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                for (key, value) in &entries {
                    let current = get(&tx, &store, key, now)?;
                    let old_len = current.as_ref().map_or(0, |v| v.value.len() as u64);
                    if let Err(refusal) =
                        room(&tx, &store, u64::from(current.is_none()), value.len() as u64, old_len, limits)?
                    {
                        return Ok(Err(refusal));
                    }
                    write(&tx, &store, key, value, None)?;
                }
                tx.commit()?;
                Ok(Ok(()))
            })
            .await
    }

    pub async fn delete(&self, store: &str, keys: Vec<String>) -> Result<(), StorageError> {
        let store = store.to_owned();
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                {
                    let mut delete = tx.prepare_cached("DELETE FROM kv WHERE store = ?1 AND key = ?2")?;
                    for key in &keys {
                        delete.execute(params![store, key])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    /// Adds `delta` to the decimal integer at `key` (0 when absent); returns the new value.
    pub async fn add(&self, store: &str, key: &str, delta: i128, now: i64) -> KvResult<i128> {
        if let Err(refusal) = self.check_key(key) {
            return Ok(Err(refusal));
        }
        let (store, key, limits) = (store.to_owned(), key.to_owned(), self.limits);
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let current = get(&tx, &store, &key, now)?;
                let value = match &current {
                    None => 0,
                    Some(found) => match std::str::from_utf8(&found.value).ok().and_then(|t| t.parse::<i128>().ok()) {
                        Some(value) => value,
                        None => {
                            let found = String::from_utf8_lossy(&found.value).chars().take(40).collect();
                            return Ok(Err(KvRefusal::NotAnInteger { key, found }));
                        }
                    },
                };
                let Some(next) =
                    value.checked_add(delta).filter(|n| i64::try_from(*n).is_ok() || u64::try_from(*n).is_ok())
                else {
                    return Ok(Err(KvRefusal::Overflow { key }));
                };
                let text = next.to_string().into_bytes();
                let old_len = current.as_ref().map_or(0, |v| v.value.len() as u64);
                if let Err(refusal) =
                    room(&tx, &store, u64::from(current.is_none()), text.len() as u64, old_len, limits)?
                {
                    return Ok(Err(refusal));
                }
                write(&tx, &store, &key, &text, None)?;
                tx.commit()?;
                Ok(Ok(next))
            })
            .await
    }

    /// Keys of `store` starting with `prefix`, in order, after `after`, at most `limit`; and whether there are more.
    pub async fn list(
        &self,
        store: &str,
        prefix: &str,
        after: Option<String>,
        limit: u32,
        now: i64,
    ) -> Result<(Vec<String>, bool), StorageError> {
        let (store, prefix) = (store.to_owned(), prefix.to_owned());
        self.db
            .call(move |conn| {
                // A range on the primary key: from `prefix` (or just past `after`) up to the first string that no
                // longer starts with `prefix`, so a page reads only the keys it returns.
                let (from, from_op) = match after {
                    Some(after) if after.as_str() >= prefix.as_str() => (after, ">"),
                    _ => (prefix.clone(), ">="),
                };
                let upper = prefix_upper_bound(&prefix);
                // Two statements rather than `(?3 IS NULL OR key < ?3)`, which would hide the range's end from the
                // query planner.
                let to = if upper.is_some() { "key < ?3" } else { "?3 IS NULL" };
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT key FROM kv WHERE store = ?1 AND key {from_op} ?2 AND {to} AND {} ORDER BY key LIMIT ?5",
                    LIVE.replace('?', "?4")
                ))?;
                let mut keys: Vec<String> = statement
                    .query_map(params![store, from, upper, now, i64::from(limit) + 1], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let more = keys.len() > limit as usize;
                keys.truncate(limit as usize);
                Ok((keys, more))
            })
            .await
    }

    /// Keys of `store`, in order, from the `offset`-th, at most `limit`: the portable listing, whose cursor is a
    /// number.
    pub async fn keys_from(
        &self,
        store: &str,
        offset: u64,
        limit: u32,
        now: i64,
    ) -> Result<(Vec<String>, bool), StorageError> {
        let store = store.to_owned();
        self.db
            .call(move |conn| {
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT key FROM kv WHERE store = ?1 AND {} ORDER BY key LIMIT ?3 OFFSET ?4",
                    LIVE.replace('?', "?2")
                ))?;
                let offset = i64::try_from(offset).unwrap_or(i64::MAX);
                let mut keys: Vec<String> = statement
                    .query_map(params![store, now, i64::from(limit) + 1, offset], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let more = keys.len() > limit as usize;
                keys.truncate(limit as usize);
                Ok((keys, more))
            })
            .await
    }

    /// Deletes up to `batch` expired keys; returns how many.
    pub async fn sweep(&self, now: i64, batch: u32) -> Result<usize, StorageError> {
        self.db
            .call(move |conn| {
                Ok(conn.execute(
                    "DELETE FROM kv WHERE rowid IN (SELECT rowid FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?1
                     LIMIT ?2)",
                    params![now, batch],
                )?)
            })
            .await
    }

    /// Keys and bytes held by `store` (expired keys not yet swept included).
    pub async fn size(&self, store: &str) -> Result<(u64, u64), StorageError> {
        let store = store.to_owned();
        self.db.call(move |conn| size(conn, &store)).await
    }
}

fn get(conn: &Connection, store: &str, key: &str, now: i64) -> Result<Option<Versioned>, StorageError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT value, version FROM kv WHERE store = ?1 AND key = ?2 AND {}",
            LIVE.replace('?', "?3")
        ))?
        .query_row(params![store, key, now], |row| Ok(Versioned { value: row.get(0)?, version: row.get(1)? }))
        .optional()?)
}

fn size(conn: &Connection, store: &str) -> Result<(u64, u64), StorageError> {
    Ok(conn
        .prepare_cached("SELECT keys, bytes FROM kv_sizes WHERE store = ?1")?
        .query_row(params![store], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?
        .unwrap_or((0, 0)))
}

/// Whether `store` has room for `new_keys` more keys and a value of `new_len` bytes replacing one of `old_len`.
fn room(
    conn: &Connection,
    store: &str,
    new_keys: u64,
    new_len: u64,
    old_len: u64,
    limits: KvLimits,
) -> Result<Result<(), KvRefusal>, StorageError> {
    let (keys, bytes) = size(conn, store)?;
    let after_bytes = (bytes + new_len).saturating_sub(old_len);
    if keys + new_keys > limits.max_keys || (new_len > old_len && after_bytes > limits.max_bytes) {
        return Ok(Err(KvRefusal::StoreFull {
            store: store.to_owned(),
            keys,
            bytes,
            max_keys: limits.max_keys,
            max_bytes: limits.max_bytes,
        }));
    }
    Ok(Ok(()))
}

/// Writes a key with the next version; an expired row for it is simply replaced.
fn write(
    conn: &Connection,
    store: &str,
    key: &str,
    value: &[u8],
    expires_at: Option<i64>,
) -> Result<u64, StorageError> {
    let version: u64 =
        conn.query_row("UPDATE kv_clock SET version = version + 1 RETURNING version", [], |row| row.get(0))?;
    conn.prepare_cached(
        "INSERT INTO kv (store, key, value, version, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (store, key) DO UPDATE SET value = ?3, version = ?4, expires_at = ?5",
    )?
    .execute(params![store, key, value, version, expires_at])?;
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: KvLimits = KvLimits { max_key_bytes: 16, max_value_bytes: 8, max_keys: 3, max_bytes: 20 };

    async fn db() -> (tempfile::TempDir, KvDb) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = KvDb::new(Database::open(dir.path()).expect("db"), LIMITS);
        (dir, db)
    }

    #[test]
    fn the_prefix_bound_is_the_least_string_past_the_prefix() {
        assert_eq!(prefix_upper_bound("user:"), Some("user;".into()));
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("a\u{10FFFF}"), Some("b".into()));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        // Past the surrogate gap.
        assert_eq!(prefix_upper_bound("\u{D7FF}"), Some("\u{E000}".into()));
        for key in ["user:", "user:ada", "user:\u{10FFFF}"] {
            assert!(key < "user;");
        }
    }

    #[tokio::test]
    async fn versions_only_grow_and_compare_and_swap_sees_a_delete_and_recreate() {
        let (_dir, kv) = db().await;
        let first = kv.put("s", "k", b"a".to_vec(), None, None, 1).await.unwrap().unwrap().unwrap();
        kv.delete("s", vec!["k".into()]).await.unwrap();
        let second = kv.put("s", "k", b"a".to_vec(), None, None, 1).await.unwrap().unwrap().unwrap();
        assert!(second > first);
        // The same value again, but a CAS from the first version must fail: the key changed in between.
        assert_eq!(kv.put("s", "k", b"b".to_vec(), None, Some(Some(first)), 1).await.unwrap(), Ok(None));
        assert!(kv.put("s", "k", b"b".to_vec(), None, Some(Some(second)), 1).await.unwrap().unwrap().is_some());
        assert_eq!(
            kv.put("s", "new", b"x".to_vec(), None, Some(None), 1).await.unwrap().unwrap().map(|_| ()),
            Some(())
        );
        assert_eq!(kv.put("s", "new", b"y".to_vec(), None, Some(None), 1).await.unwrap(), Ok(None));
    }

    #[tokio::test]
    async fn expired_keys_are_invisible_at_once_and_swept_later() {
        let (_dir, kv) = db().await;
        kv.put("s", "short", b"v".to_vec(), Some(100), None, 1).await.unwrap().unwrap();
        assert!(kv.get("s", "short", 99).await.unwrap().is_some());
        assert!(kv.get("s", "short", 100).await.unwrap().is_none());
        assert_eq!(kv.list("s", "", None, 10, 100).await.unwrap().0, Vec::<String>::new());
        // An increment of an expired counter starts again from zero.
        assert_eq!(kv.add("s", "short", 5, 100).await.unwrap(), Ok(5));
        kv.put("s", "gone", b"v".to_vec(), Some(100), None, 1).await.unwrap().unwrap();
        assert_eq!(kv.sweep(200, 10).await.unwrap(), 1);
        assert_eq!(kv.size("s").await.unwrap(), (1, 1));
    }

    #[tokio::test]
    async fn keys_values_and_stores_are_bounded_and_a_refusal_writes_nothing() {
        let (_dir, kv) = db().await;
        assert!(matches!(
            kv.put("s", &"k".repeat(17), vec![], None, None, 1).await.unwrap(),
            Err(KvRefusal::KeyTooLong { .. })
        ));
        assert!(matches!(
            kv.put("s", "k", vec![0; 9], None, None, 1).await.unwrap(),
            Err(KvRefusal::ValueTooLarge { .. })
        ));
        for key in ["a", "b", "c"] {
            kv.put("s", key, vec![0; 6], None, None, 1).await.unwrap().unwrap();
        }
        assert!(matches!(kv.put("s", "d", vec![0], None, None, 1).await.unwrap(), Err(KvRefusal::StoreFull { .. })));
        // Another store has its own room; overwriting within the bounds is fine.
        kv.put("t", "d", vec![0], None, None, 1).await.unwrap().unwrap();
        kv.put("s", "a", vec![0; 2], None, None, 1).await.unwrap().unwrap();
        assert_eq!(kv.size("s").await.unwrap(), (3, 14));
        assert!(matches!(kv.add("s", "a", 1, 1).await.unwrap(), Err(KvRefusal::NotAnInteger { .. })));
    }

    #[tokio::test]
    async fn listing_pages_through_a_prefix_in_order() {
        let (_dir, kv) = db().await;
        let roomy = KvDb::new(kv.db.clone(), KvLimits { max_keys: 100, max_bytes: 1000, ..LIMITS });
        for key in ["user:b", "user:a", "user:c", "team:x", "users"] {
            roomy.put("s", key, b"v".to_vec(), None, None, 1).await.unwrap().unwrap();
        }
        let (first, more) = roomy.list("s", "user:", None, 2, 1).await.unwrap();
        assert_eq!((first.clone(), more), (vec!["user:a".to_owned(), "user:b".to_owned()], true));
        let (rest, more) = roomy.list("s", "user:", first.last().cloned(), 2, 1).await.unwrap();
        assert_eq!((rest, more), (vec!["user:c".to_owned()], false));
        assert_eq!(roomy.list("s", "", None, 10, 1).await.unwrap().0.len(), 5);
    }
}
