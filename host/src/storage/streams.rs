//! The SQL of ordered streams. Every method is one transaction, run off the async threads.
//!
//! A stream is split into shards; a record's partition key picks its shard by a fixed hash ([`shard_of`]), so the
//! records of one key keep their put order. A shard hands out sequence numbers from its own counter, which only
//! grows: a sequence is never reused, even after its record expired. A stream's shard count is fixed when it is
//! first used (moving keys between shards would break their order); a configuration that later says otherwise is
//! logged and ignored.
//!
//! Retention: a record older than the stream's `retention_hours` is swept ([`StreamDb::sweep`]); a put that takes a
//! shard past its share of `max_mb` drops that shard's oldest records in the same transaction. A consumer behind
//! them reads on from the oldest record left (the gap is logged by the trigger).
//!
//! A consumer's checkpoint per shard is the last sequence it handled. A replay moves it back and bumps its epoch, so
//! a delivery that was running across the replay cannot move it forward again ([`StreamDb::advance_and_read`]).

use super::{Database, StorageError, now_ms};
use edgefn_manifest::record::StreamStart;
use rusqlite::{Connection, OptionalExtension as _, params};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a stream keeps and how it is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSettings {
    pub shards: u32,
    /// Records older than this are swept.
    pub retention_ms: i64,
    /// The most bytes (keys and bodies) the stream keeps, shared evenly by its shards.
    pub max_bytes: u64,
}

/// The settings of every stream: the `[streams.NAME]` tables, and the defaults for the others.
#[derive(Debug, Clone)]
pub struct StreamCatalog {
    pub default: StreamSettings,
    pub named: BTreeMap<String, StreamSettings>,
    /// The largest record (key and body).
    pub max_record_bytes: usize,
}

impl StreamCatalog {
    pub fn settings(&self, stream: &str) -> StreamSettings {
        self.named.get(stream).copied().unwrap_or(self.default)
    }
}

/// Where a record was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub shard: u32,
    pub seq: u64,
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub seq: u64,
    pub key: String,
    pub body: Vec<u8>,
    /// When it was put, in ms since the epoch.
    pub at: i64,
    pub correlation_id: Option<String>,
}

/// A consumer's place in a shard: the last sequence it handled, and the replay epoch it was set in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub epoch: u64,
}

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// At this sequence number (in every shard replayed).
    Sequence(u64),
    /// At the first record put at or after this time (ms since the epoch).
    Time(i64),
}

/// Why a put was refused (nothing was stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamRefusal {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "a record of {len} bytes for stream `{stream}` is over the limit of {limit} bytes (limits.max_message_bytes, \
         or the shard's share of the stream's max_mb); nothing was stored"
    )]
    TooLarge { stream: String, len: usize, limit: u64 },
}

/// One shard as `describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShardInfo {
    pub shard: u32,
    /// The oldest sequence still kept (0 when empty).
    pub first_seq: u64,
    /// The newest sequence handed out (0 when none was).
    pub last_seq: u64,
    pub records: u64,
    pub bytes: u64,
}

/// A consumer's place in one shard.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConsumerShard {
    pub consumer: String,
    pub shard: u32,
    pub checkpoint: u64,
    /// Records kept after the checkpoint.
    pub behind: u64,
    /// How long the oldest record it has not handled has waited (0 when it is caught up): Kinesis' iterator age.
    pub iterator_age_ms: i64,
    /// On a cluster, the node that delivers this shard now (none while no node holds it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A stream, its shards and its consumers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StreamInfo {
    pub name: String,
    pub shards: Vec<ShardInfo>,
    pub consumers: Vec<ConsumerShard>,
}

/// The shard of `key` in a stream of `shards` shards: FNV-1a (64 bits) of its bytes, modulo the count. Fixed
/// forever: records already stored depend on it.
pub fn shard_of(key: &str, shards: u32) -> u32 {
    (fnv1a(key) % u64::from(shards.max(1))) as u32
}

/// Checks a put before anything is stored: the stream's name, each partition key, and each record's size against
/// `max_message_bytes` and the shard's share of the stream's `max_mb`.
pub(crate) fn check_put(
    catalog: &StreamCatalog,
    stream: &str,
    records: &[(String, Vec<u8>)],
) -> Result<(), StreamRefusal> {
    edgefn_manifest::record::validate_queue_name("stream", stream).map_err(StreamRefusal::Invalid)?;
    let settings = catalog.settings(stream);
    let share = settings.max_bytes / u64::from(settings.shards.max(1));
    let limit = (catalog.max_record_bytes as u64).min(share);
    for (key, body) in records {
        if let Err(error) = edgefn_manifest::record::validate_partition_key(key) {
            return Err(StreamRefusal::Invalid(format!("stream `{stream}`: {error}")));
        }
        let len = key.len() + body.len();
        if len as u64 > limit {
            return Err(StreamRefusal::TooLarge { stream: stream.to_owned(), len, limit });
        }
    }
    Ok(())
}

/// FNV-1a, 64 bits: a fixed, well-specified hash (no seed, unlike std's), so a key's shard never changes.
fn fnv1a(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The stream tables, behind two connections: puts (and the rare calls) on one, the consumers' reads and
/// checkpoints on the other, so a producer and the consumers never queue on one mutex (SQLite's WAL lets them
/// read while the other writes; their writes take turns at SQLite's write lock).
#[derive(Debug, Clone)]
pub struct StreamDb {
    db: Database,
    readers: Database,
    catalog: Arc<StreamCatalog>,
    /// Whose turn it is to write: puts and checkpoints take turns here, first come first served, before they ask
    /// SQLite for its write lock. Taken on the blocking pool's thread that writes (`blocking_lock`), so a turn lasts
    /// as long as the SQL, not the hop to that thread. Without it, a checkpoint that found the lock taken waited in
    /// SQLite's busy handler, which sleeps 1, 2, 5, 10 ms between tries; back-to-back puts took the lock each time
    /// in between, and the consumers starved while a producer ran (bench/streams.rs: 7,000 of 100,000 records
    /// handled in the half second the puts took).
    write_turns: Arc<tokio::sync::Mutex<()>>,
}

/// The shard count of `stream`, creating the stream (with the configured count) on first use.
fn shard_count(conn: &Connection, stream: &str, settings: StreamSettings) -> Result<u32, StorageError> {
    let stored: Option<u32> =
        conn.query_row("SELECT shards FROM streams WHERE name = ?", [stream], |row| row.get(0)).optional()?;
    if let Some(stored) = stored {
        return Ok(stored);
    }
    conn.execute(
        "INSERT INTO streams (name, shards, created_at) VALUES (?, ?, ?)",
        params![stream, settings.shards, now_ms()],
    )?;
    for shard in 0..settings.shards {
        conn.execute("INSERT INTO stream_shards (stream, shard, next_seq) VALUES (?, ?, 1)", params![stream, shard])?;
    }
    Ok(settings.shards)
}

impl StreamDb {
    /// `db` (the writers') and `readers` are two connections to the same (migrated) database.
    pub fn new(db: Database, readers: Database, catalog: StreamCatalog) -> Self {
        Self { db, readers, catalog: Arc::new(catalog), write_turns: Arc::default() }
    }

    pub fn catalog(&self) -> &StreamCatalog {
        &self.catalog
    }

    /// Appends `records` (partition key, body) to `stream` in one transaction, all or none, in order; each carries
    /// `correlation_id`.
    pub async fn put(
        &self,
        stream: &str,
        records: Vec<(String, Vec<u8>)>,
        correlation_id: Option<String>,
    ) -> Result<Result<Vec<Position>, StreamRefusal>, StorageError> {
        if let Err(refusal) = check_put(&self.catalog, stream, &records) {
            return Ok(Err(refusal));
        }
        let settings = self.catalog.settings(stream);
        let stream = stream.to_owned();
        let turns = self.write_turns.clone();
        self.db
            .call(move |conn| {
                let _turn = turns.blocking_lock();
                let tx = conn.transaction()?;
                let shards = shard_count(&tx, &stream, settings)?;
                let share = settings.max_bytes / u64::from(shards.max(1));
                let now = now_ms();
                // Each shard's next sequence and what this put adds to it, read once and written once.
                let mut touched: BTreeMap<u32, (u64, u64, u64)> = BTreeMap::new();
                let mut positions = Vec::with_capacity(records.len());
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO stream_records (stream, shard, seq, key, body, at, correlation_id)
                         VALUES (?, ?, ?, ?, ?, ?, ?)",
                    )?;
                    for (key, body) in &records {
                        let shard = shard_of(key, shards);
                        let entry = match touched.get_mut(&shard) {
                            Some(entry) => entry,
                            None => {
                                let next: u64 = tx.query_row(
                                    "SELECT next_seq FROM stream_shards WHERE stream = ? AND shard = ?",
                                    params![stream, shard],
                                    |row| row.get(0),
                                )?;
                                touched.entry(shard).or_insert((next, 0, 0))
                            }
                        };
                        let seq = entry.0;
                        insert.execute(params![stream, shard, seq, key, body, now, correlation_id])?;
                        entry.0 += 1;
                        entry.1 += 1;
                        entry.2 += (key.len() + body.len()) as u64;
                        positions.push(Position { shard, seq });
                    }
                }
                for (shard, (next, added, bytes)) in touched {
                    let held: u64 = tx
                        .prepare_cached(
                            "UPDATE stream_shards SET next_seq = ?, records = records + ?, bytes = bytes + ?
                             WHERE stream = ? AND shard = ? RETURNING bytes",
                        )?
                        .query_row(params![next, added, bytes, stream, shard], |row| row.get(0))?;
                    if held > share {
                        drop_oldest(&tx, &stream, shard, held - share)?;
                    }
                }
                tx.commit()?;
                Ok(Ok(positions))
            })
            .await
    }

    /// The shard count of `stream` (creating it, with its configured count, on first use).
    pub async fn shards(&self, stream: &str) -> Result<u32, StorageError> {
        let settings = self.catalog.settings(stream);
        let stream = stream.to_owned();
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let shards = shard_count(&tx, &stream, settings)?;
                tx.commit()?;
                if shards != settings.shards {
                    tracing::warn!(%stream, stored = shards, configured = settings.shards,
                        "the stream keeps the shard count it was created with: changing it would break per-key order");
                }
                Ok(shards)
            })
            .await
    }

    /// `consumer`'s checkpoint in `shard` of `stream` (created where `start` says when it has none) and up to
    /// `limit` records after it, at most `max_bytes` of bodies (always at least one record, if there is one). Reads
    /// on the readers' connection; only a missing checkpoint is written, on the writers'.
    pub async fn read_from_checkpoint(
        &self,
        stream: &str,
        consumer: &str,
        shard: u32,
        start: StreamStart,
        limit: u32,
        max_bytes: usize,
    ) -> Result<(Checkpoint, Vec<StoredRecord>), StorageError> {
        let (stream, consumer) = (Arc::<str>::from(stream), Arc::<str>::from(consumer));
        let (s, c) = (stream.clone(), consumer.clone());
        let found = self
            .readers
            .call(move |conn| {
                let Some(checkpoint) = checkpoint(conn, &s, &c, shard)? else { return Ok(None) };
                Ok(Some((checkpoint, read_after(conn, &s, shard, checkpoint.seq, limit, max_bytes)?)))
            })
            .await?;
        if let Some(found) = found {
            return Ok(found);
        }
        let (s, c) = (stream.clone(), consumer.clone());
        let created = self
            .db
            .call(move |conn| {
                let seq: u64 = match start {
                    StreamStart::Oldest => 0,
                    StreamStart::Latest => conn
                        .query_row(
                            "SELECT next_seq - 1 FROM stream_shards WHERE stream = ? AND shard = ?",
                            params![&*s, shard],
                            |row| row.get(0),
                        )
                        .optional()?
                        .unwrap_or(0),
                };
                conn.execute(
                    "INSERT OR IGNORE INTO stream_checkpoints (stream, consumer, shard, seq) VALUES (?, ?, ?, ?)",
                    params![&*s, &*c, shard, seq],
                )?;
                checkpoint(conn, &s, &c, shard)?.ok_or_else(|| StorageError::Corrupt("a checkpoint vanished".into()))
            })
            .await?;
        let records =
            self.readers.call(move |conn| read_after(conn, &stream, shard, created.seq, limit, max_bytes)).await?;
        Ok((created, records))
    }

    /// Moves `consumer`'s checkpoint in `shard` to `to.seq`, unless a replay changed its epoch since `to.epoch` was
    /// read (then nothing changes and this answers `None`); then, in the same trip to the blocking pool, reads the
    /// next `limit` records after it (at most `max_bytes` of bodies, always one if there is one): what a consumer
    /// that keeps up reads next.
    pub async fn advance_and_read(
        &self,
        stream: &str,
        consumer: &str,
        shard: u32,
        to: Checkpoint,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Option<Vec<StoredRecord>>, StorageError> {
        let (stream, consumer) = (stream.to_owned(), consumer.to_owned());
        let turns = self.write_turns.clone();
        self.readers
            .call(move |conn| {
                let turn = turns.blocking_lock();
                let changed = conn
                    .prepare_cached(
                        "UPDATE stream_checkpoints SET seq = ? WHERE stream = ? AND consumer = ? AND shard = ? AND epoch = ?",
                    )?
                    .execute(params![to.seq, stream, consumer, shard, to.epoch])?;
                // Written: the puts waiting for their turn go on while this reads.
                drop(turn);
                if changed != 1 {
                    return Ok(None);
                }
                read_after(conn, &stream, shard, to.seq, limit, max_bytes).map(Some)
            })
            .await
    }

    /// Moves `consumer`'s checkpoints back (or forward) so its next delivery starts at `from`, in `shard` or in
    /// every shard; returns each shard's new checkpoint. The consumer need not have started yet.
    pub async fn replay(
        &self,
        stream: &str,
        consumer: &str,
        shard: Option<u32>,
        from: ReplayFrom,
    ) -> Result<Vec<(u32, u64)>, StorageError> {
        let settings = self.catalog.settings(stream);
        let (stream, consumer) = (stream.to_owned(), consumer.to_owned());
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let shards = shard_count(&tx, &stream, settings)?;
                let mut moved = Vec::new();
                for each in (0..shards).filter(|s| shard.is_none_or(|only| only == *s)) {
                    let seq = match from {
                        ReplayFrom::Sequence(seq) => seq.saturating_sub(1),
                        ReplayFrom::Time(at) => {
                            let first: Option<u64> = tx.query_row(
                                "SELECT MIN(seq) FROM stream_records WHERE stream = ? AND shard = ? AND at >= ?",
                                params![stream, each, at],
                                |row| row.get(0),
                            )?;
                            match first {
                                Some(first) => first - 1,
                                None => tx.query_row(
                                    "SELECT next_seq - 1 FROM stream_shards WHERE stream = ? AND shard = ?",
                                    params![stream, each],
                                    |row| row.get(0),
                                )?,
                            }
                        }
                    };
                    tx.execute(
                        "INSERT INTO stream_checkpoints (stream, consumer, shard, seq, epoch) VALUES (?, ?, ?, ?, 1)
                         ON CONFLICT (stream, consumer, shard) DO UPDATE SET seq = excluded.seq, epoch = epoch + 1",
                        params![stream, consumer, each, seq],
                    )?;
                    moved.push((each, seq));
                }
                if moved.is_empty() {
                    return Err(StorageError::Corrupt(format!("stream `{stream}` has no shard {shard:?}")));
                }
                tx.commit()?;
                Ok(moved)
            })
            .await
    }

    /// Removes the records past each stream's retention age; returns how many.
    pub async fn sweep(&self) -> Result<u64, StorageError> {
        let catalog = self.catalog.clone();
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let names: Vec<String> = {
                    let mut statement = tx.prepare("SELECT name FROM streams")?;
                    statement.query_map([], |row| row.get(0))?.collect::<Result<_, _>>()?
                };
                let now = now_ms();
                let mut removed = 0;
                for name in names {
                    let cutoff = now.saturating_sub(catalog.settings(&name).retention_ms);
                    let mut statement = tx.prepare(
                        "SELECT shard, COUNT(*), COALESCE(SUM(length(key) + length(body)), 0) FROM stream_records
                         WHERE stream = ? AND at < ? GROUP BY shard",
                    )?;
                    let expired: Vec<(u32, u64, u64)> = statement
                        .query_map(params![name, cutoff], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                        .collect::<Result<_, _>>()?;
                    for (shard, records, bytes) in expired {
                        tx.execute(
                            "DELETE FROM stream_records WHERE stream = ? AND shard = ? AND at < ?",
                            params![name, shard, cutoff],
                        )?;
                        tx.execute(
                            "UPDATE stream_shards SET records = records - ?, bytes = bytes - ? WHERE stream = ? AND shard = ?",
                            params![records, bytes, name, shard],
                        )?;
                        removed += records;
                    }
                }
                tx.commit()?;
                Ok(removed)
            })
            .await
    }

    /// Every stream (or the one named), with its shards and its consumers' places.
    pub async fn describe(&self, only: Option<&str>) -> Result<Vec<StreamInfo>, StorageError> {
        let only = only.map(str::to_owned);
        self.readers.call(move |conn| describe(conn, only.as_deref(), now_ms())).await
    }
}

/// `consumer`'s checkpoint in a shard, if it has one.
fn checkpoint(conn: &Connection, stream: &str, consumer: &str, shard: u32) -> Result<Option<Checkpoint>, StorageError> {
    let found = conn
        .prepare_cached("SELECT seq, epoch FROM stream_checkpoints WHERE stream = ? AND consumer = ? AND shard = ?")?
        .query_row(params![stream, consumer, shard], |row| Ok(Checkpoint { seq: row.get(0)?, epoch: row.get(1)? }))
        .optional()?;
    Ok(found)
}

/// Up to `limit` records of a shard after `after`, stopping once `max_bytes` of bodies are read.
fn read_after(
    conn: &Connection,
    stream: &str,
    shard: u32,
    after: u64,
    limit: u32,
    max_bytes: usize,
) -> Result<Vec<StoredRecord>, StorageError> {
    let mut statement = conn.prepare_cached(
        "SELECT seq, key, body, at, correlation_id FROM stream_records
         WHERE stream = ? AND shard = ? AND seq > ? ORDER BY seq LIMIT ?",
    )?;
    let mut rows = statement.query(params![stream, shard, after, limit])?;
    let (mut records, mut bytes) = (Vec::new(), 0usize);
    while let Some(row) = rows.next()? {
        let record = StoredRecord {
            seq: row.get(0)?,
            key: row.get(1)?,
            body: row.get(2)?,
            at: row.get(3)?,
            correlation_id: row.get(4)?,
        };
        bytes += record.body.len();
        if !records.is_empty() && bytes > max_bytes {
            break;
        }
        records.push(record);
    }
    Ok(records)
}

/// Drops the oldest records of a shard, at least `excess` bytes of them (what it holds beyond its share).
fn drop_oldest(conn: &Connection, stream: &str, shard: u32, excess: u64) -> Result<(), StorageError> {
    let (mut freed, mut count, mut cutoff) = (0u64, 0u64, 0u64);
    {
        let mut statement = conn.prepare_cached(
            "SELECT seq, length(key) + length(body) FROM stream_records WHERE stream = ? AND shard = ? ORDER BY seq",
        )?;
        let mut rows = statement.query(params![stream, shard])?;
        while freed < excess {
            let Some(row) = rows.next()? else { break };
            cutoff = row.get(0)?;
            freed += row.get::<_, u64>(1)?;
            count += 1;
        }
    }
    conn.execute(
        "DELETE FROM stream_records WHERE stream = ? AND shard = ? AND seq <= ?",
        params![stream, shard, cutoff],
    )?;
    conn.execute(
        "UPDATE stream_shards SET records = records - ?, bytes = bytes - ? WHERE stream = ? AND shard = ?",
        params![count, freed, stream, shard],
    )?;
    tracing::warn!(%stream, shard, records = count, bytes = freed, "the shard passed its share of max_mb: its oldest records were dropped");
    Ok(())
}

fn describe(conn: &Connection, only: Option<&str>, now: i64) -> Result<Vec<StreamInfo>, StorageError> {
    let mut streams: Vec<StreamInfo> = Vec::new();
    let mut statement = conn.prepare(
        "SELECT s.stream, s.shard, s.next_seq - 1, s.records, s.bytes,
                (SELECT MIN(seq) FROM stream_records r WHERE r.stream = s.stream AND r.shard = s.shard)
         FROM stream_shards s WHERE ?1 IS NULL OR s.stream = ?1 ORDER BY s.stream, s.shard",
    )?;
    let mut rows = statement.query(params![only])?;
    while let Some(row) = rows.next()? {
        let name: String = row.get(0)?;
        let shard = ShardInfo {
            shard: row.get(1)?,
            last_seq: row.get(2)?,
            records: row.get(3)?,
            bytes: row.get(4)?,
            first_seq: row.get::<_, Option<u64>>(5)?.unwrap_or(0),
        };
        match streams.last_mut() {
            Some(last) if last.name == name => last.shards.push(shard),
            _ => streams.push(StreamInfo { name, shards: vec![shard], consumers: Vec::new() }),
        }
    }
    let mut statement = conn.prepare(
        "SELECT c.stream, c.consumer, c.shard, c.seq,
                (SELECT COUNT(*) FROM stream_records r WHERE r.stream = c.stream AND r.shard = c.shard AND r.seq > c.seq),
                (SELECT at FROM stream_records r WHERE r.stream = c.stream AND r.shard = c.shard AND r.seq > c.seq
                 ORDER BY r.seq LIMIT 1)
         FROM stream_checkpoints c WHERE ?1 IS NULL OR c.stream = ?1 ORDER BY c.stream, c.consumer, c.shard",
    )?;
    let mut rows = statement.query(params![only])?;
    while let Some(row) = rows.next()? {
        let name: String = row.get(0)?;
        let oldest: Option<i64> = row.get(5)?;
        let place = ConsumerShard {
            consumer: row.get(1)?,
            shard: row.get(2)?,
            checkpoint: row.get(3)?,
            behind: row.get(4)?,
            iterator_age_ms: oldest.map_or(0, |at| (now - at).max(0)),
            owner: None,
        };
        if let Some(stream) = streams.iter_mut().find(|s| s.name == name) {
            stream.consumers.push(place);
        }
    }
    Ok(streams)
}

#[cfg(test)]
mod tests;
