//! Ordered streams on a cluster: the records in JetStream, the checkpoints in a KV bucket, so a record put on any
//! node is read by whichever node delivers its shard, from the checkpoint every node sees.
//!
//! - stream `EDGEFN_S_<name>`, one per edgefn stream (the name as [`consumer_name`] writes it), subjects
//!   `edgefn.s.<token>.<shard>`: each record is one message, its partition key and correlation id in headers. Its
//!   description says the shard count it was made with, which it keeps for good (as on SQLite). Retention is
//!   JetStream's, oldest first: `max_age` from `retention_hours`, and `max_bytes` from `max_mb` for the whole stream
//!   (JetStream counts the bytes of a stream, not of a subject, so a shard has no share of its own here).
//! - A record's sequence is the JetStream stream's: it grows within a shard, with gaps where the other shards'
//!   records went. A replay `--from SEQ` means the same number in every shard, as on SQLite.
//! - bucket `edgefn_stream_checkpoints`: key `<stream>.<consumer>.<shard>`, value the last sequence handled, as
//!   text. The entry's revision is the checkpoint's epoch: a write names the revision it read, so after a replay,
//!   or after another node took the shard over and moved the checkpoint, a stale write fails and changes nothing.
//! - core subject `edgefn.swake.<token>`: an empty message after each put and replay, so idle consumers on every
//!   node read at once.
//!
//! Which node delivers which shard is [`super::stream_leases`]'s.

use super::stream_leases::ShardLeases;
use super::{Cluster, cluster_error, consumer_name, from_consumer_name, subject_token};
use crate::storage::StorageError;
use crate::storage::streams::{
    Checkpoint, ConsumerShard, Position, ReplayFrom, ShardInfo, StoredRecord, StreamCatalog, StreamInfo, StreamRefusal,
    check_put, shard_of,
};
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use async_nats::jetstream::stream::{self, DirectGetErrorKind, DiscardPolicy, StorageType};
use edgefn_manifest::record::StreamStart;
use futures_util::StreamExt as _;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

const STREAM_PREFIX: &str = "EDGEFN_S_";
const CHECKPOINTS: &str = "edgefn_stream_checkpoints";
const KEY_HEADER: &str = "Edgefn-Partition-Key";
const CORRELATION_HEADER: &str = "Edgefn-Correlation-Id";
/// How a stream's description says its shard count.
const SHARDS_SAID: &str = " shards";

/// The subject of `shard` of `stream`.
fn shard_subject(stream: &str, shard: u32) -> String {
    format!("edgefn.s.{}.{shard}", subject_token(stream))
}

fn wake_subject(stream: &str) -> String {
    format!("edgefn.swake.{}", subject_token(stream))
}

fn checkpoint_key(stream: &str, consumer: &str, shard: u32) -> String {
    format!("{}.{}.{shard}", consumer_name(stream), consumer_name(consumer))
}

/// What a JetStream timestamp is in ms since the epoch.
fn millis(at: async_nats::datetime::DateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// A consumer's reads of one shard, kept between its batches: an ephemeral pull consumer on the shard's subject
/// and what it fetched that was not handled yet. Every record of the shard after `base` up to `fetched_to` is in
/// `buffer`, in order; the JetStream consumer hands out what comes after `fetched_to`.
struct Reader {
    consumer: PullConsumer,
    base: u64,
    fetched_to: u64,
    buffer: VecDeque<StoredRecord>,
}

impl Reader {
    /// A reader of `subject` from the first record after `after`.
    async fn start(stream: &stream::Stream, subject: String, after: u64) -> Result<Self, StorageError> {
        let consumer = ephemeral(stream, subject, DeliverPolicy::ByStartSequence { start_sequence: after + 1 }).await?;
        Ok(Self { consumer, base: after, fetched_to: after, buffer: VecDeque::new() })
    }

    /// Fetches what the shard holds now, up to `wanted` records.
    async fn fetch(&mut self, wanted: usize) -> Result<(), StorageError> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(wanted)
            .messages()
            .await
            .map_err(|error| cluster_error("read a stream shard", error))?;
        let mut last = None;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|error| cluster_error("read a stream shard", error))?;
            let record = record_of(&message)?;
            // Anything at or before `fetched_to` is a redelivery (an ack that did not arrive): kept already.
            if record.seq > self.fetched_to {
                self.fetched_to = record.seq;
                self.buffer.push_back(record);
            }
            last = Some(message);
        }
        // The consumer acks all up to a message at once: one ack per fetch keeps nothing pending.
        if let Some(last) = last {
            last.ack().await.map_err(|error| cluster_error("ack a stream read", error))?;
        }
        Ok(())
    }
}

/// An ephemeral consumer of `subject` from `from`, gone a minute after its last use.
async fn ephemeral(
    stream: &stream::Stream,
    subject: String,
    deliver_policy: DeliverPolicy,
) -> Result<PullConsumer, StorageError> {
    stream
        .create_consumer(pull::Config {
            filter_subject: subject,
            deliver_policy,
            ack_policy: AckPolicy::All,
            max_ack_pending: 100_000,
            inactive_threshold: Duration::from_secs(60),
            memory_storage: true,
            ..Default::default()
        })
        .await
        .map_err(|error| cluster_error("create a stream reader", error))
}

/// Deletes a consumer no longer needed, in the background (the server drops it by itself after a minute anyway).
fn forget(stream: &stream::Stream, consumer: &PullConsumer) {
    let (stream, name) = (stream.clone(), consumer.cached_info().name.clone());
    tokio::spawn(async move {
        let _ = stream.delete_consumer(&name).await;
    });
}

fn record_of(message: &async_nats::jetstream::Message) -> Result<StoredRecord, StorageError> {
    let info = message.info().map_err(|error| cluster_error("read a stream record", error))?;
    let header = |name: &str| message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
    Ok(StoredRecord {
        seq: info.stream_sequence,
        key: header(KEY_HEADER).unwrap_or_default(),
        body: message.payload.to_vec(),
        at: millis(info.published),
        correlation_id: header(CORRELATION_HEADER),
    })
}

/// Up to `limit` of `records` from the front, stopping once `max_bytes` of bodies are taken (always one).
fn take_batch(records: &VecDeque<StoredRecord>, limit: u32, max_bytes: usize) -> Vec<StoredRecord> {
    let (mut taken, mut bytes) = (Vec::new(), 0usize);
    for record in records.iter().take(limit as usize) {
        bytes += record.body.len();
        if !taken.is_empty() && bytes > max_bytes {
            break;
        }
        taken.push(record.clone());
    }
    taken
}

/// See the module docs.
pub struct JetStreamStreams {
    cluster: Cluster,
    catalog: Arc<StreamCatalog>,
    checkpoints: kv::Store,
    leases: Arc<ShardLeases>,
    /// The JetStream streams opened so far, with their shard counts.
    opened: Mutex<HashMap<String, (stream::Stream, u32)>>,
    /// Per (stream, consumer, shard): see [`Reader`]. Taken out while in use (one loop reads a shard on a node).
    readers: Mutex<HashMap<(String, String, u32), Reader>>,
}

impl std::fmt::Debug for JetStreamStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamStreams").field("node", &self.cluster.node).finish_non_exhaustive()
    }
}

impl JetStreamStreams {
    /// Opens the buckets; a shard whose node stopped renewing its lease goes to another node after `lease`.
    pub async fn open(cluster: Cluster, catalog: StreamCatalog, lease: Duration) -> Result<Self, StorageError> {
        let checkpoints = super::bucket(&cluster, CHECKPOINTS, Duration::ZERO).await?;
        let leases = Arc::new(ShardLeases::open(&cluster, lease).await?);
        Ok(Self {
            cluster,
            catalog: Arc::new(catalog),
            checkpoints,
            leases,
            opened: Mutex::default(),
            readers: Mutex::default(),
        })
    }

    pub fn catalog(&self) -> &StreamCatalog {
        &self.catalog
    }

    pub fn leases(&self) -> Arc<ShardLeases> {
        self.leases.clone()
    }

    /// JetStream stream of `name` and its shard count, made on first use with the configured settings.
    async fn stream(&self, name: &str) -> Result<(stream::Stream, u32), StorageError> {
        if let Some(found) = self.opened.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned() {
            return Ok(found);
        }
        let settings = self.catalog.settings(name);
        let js_name = format!("{STREAM_PREFIX}{}", consumer_name(name));
        let stream = self
            .cluster
            .jetstream
            .get_or_create_stream(stream::Config {
                name: js_name.clone(),
                description: Some(format!("{name}:{}{SHARDS_SAID}", settings.shards)),
                subjects: vec![format!("edgefn.s.{}.*", subject_token(name))],
                storage: StorageType::File,
                num_replicas: self.cluster.replicas,
                max_age: Duration::from_millis(settings.retention_ms.max(1) as u64),
                max_bytes: i64::try_from(settings.max_bytes).unwrap_or(i64::MAX),
                discard: DiscardPolicy::Old,
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(|error| cluster_error(format!("create stream {js_name}"), error))?;
        let shards =
            stream.cached_info().config.description.as_deref().and_then(shards_said).unwrap_or(settings.shards);
        if shards != settings.shards {
            tracing::warn!(stream = %name, stored = shards, configured = settings.shards,
                "the stream keeps the shard count it was created with: changing it would break per-key order");
        }
        self.opened.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_owned(), (stream.clone(), shards));
        Ok((stream, shards))
    }

    /// Appends `records` to `stream` in order; each carries `correlation_id`. Published one after the other and
    /// then each acknowledged: unlike SQLite's one transaction, a server failing midway may have stored the first
    /// ones (the put then fails, naming it).
    pub async fn put(
        &self,
        stream: &str,
        records: Vec<(String, Vec<u8>)>,
        correlation_id: Option<String>,
    ) -> Result<Result<Vec<Position>, StreamRefusal>, StorageError> {
        if let Err(refusal) = check_put(&self.catalog, stream, &records) {
            return Ok(Err(refusal));
        }
        let (_, shards) = self.stream(stream).await?;
        let mut pending = Vec::with_capacity(records.len());
        for (key, body) in records {
            let shard = shard_of(&key, shards);
            let mut headers = HeaderMap::new();
            headers.insert(KEY_HEADER, key.as_str());
            if let Some(id) = &correlation_id {
                headers.insert(CORRELATION_HEADER, id.as_str());
            }
            let ack = self
                .cluster
                .jetstream
                .publish_with_headers(shard_subject(stream, shard), headers, body.into())
                .await
                .map_err(|error| cluster_error(format!("put to stream `{stream}`"), error))?;
            pending.push((shard, ack));
        }
        let mut positions = Vec::with_capacity(pending.len());
        for (shard, ack) in pending {
            let ack = ack.await.map_err(|error| cluster_error(format!("put to stream `{stream}`"), error))?;
            positions.push(Position { shard, seq: ack.sequence });
        }
        self.wake(stream).await;
        Ok(Ok(positions))
    }

    /// Tells the consumers of `stream` on every node to read now.
    pub async fn wake(&self, stream: &str) {
        if let Err(error) = self.cluster.client.publish(wake_subject(stream), bytes::Bytes::new()).await {
            tracing::debug!(%stream, %error, "could not ring the stream's wake-up subject; consumers read at their next poll");
        }
    }

    /// Notifies `notify` whenever a node puts to `stream` or replays it, for as long as the process runs.
    pub fn forward_wakes(&self, stream: &str, notify: Arc<Notify>) {
        let (client, subject) = (self.cluster.client.clone(), wake_subject(stream));
        tokio::spawn(async move {
            match client.subscribe(subject.clone()).await {
                Ok(mut wakes) => {
                    while wakes.next().await.is_some() {
                        notify.notify_waiters();
                    }
                }
                Err(error) => tracing::warn!(%subject, %error,
                    "cannot follow the stream's wake-ups; its consumers read at their next poll"),
            }
        });
    }

    pub async fn shards(&self, stream: &str) -> Result<u32, StorageError> {
        Ok(self.stream(stream).await?.1)
    }

    async fn checkpoint(&self, key: &str) -> Result<Option<Checkpoint>, StorageError> {
        let entry = self.checkpoints.entry(key).await.map_err(|error| cluster_error("read a checkpoint", error))?;
        let Some(entry) = entry.filter(|entry| entry.operation == Operation::Put) else { return Ok(None) };
        let seq = std::str::from_utf8(&entry.value)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| StorageError::Corrupt(format!("checkpoint `{key}` is not a sequence number")))?;
        Ok(Some(Checkpoint { seq, epoch: entry.revision }))
    }

    /// See [`crate::storage::streams::StreamDb::read_from_checkpoint`].
    pub async fn read_from_checkpoint(
        &self,
        stream: &str,
        consumer: &str,
        shard: u32,
        start: StreamStart,
        limit: u32,
        max_bytes: usize,
    ) -> Result<(Checkpoint, Vec<StoredRecord>), StorageError> {
        let (js, _) = self.stream(stream).await?;
        let key = checkpoint_key(stream, consumer, shard);
        let checkpoint = match self.checkpoint(&key).await? {
            Some(found) => found,
            None => {
                let seq = match start {
                    StreamStart::Oldest => 0,
                    StreamStart::Latest => last_seq(&js, &shard_subject(stream, shard)).await?,
                };
                match self.checkpoints.create(&key, seq.to_string().into()).await {
                    Ok(revision) => Checkpoint { seq, epoch: revision },
                    Err(error) if error.kind() == CreateErrorKind::AlreadyExists => self
                        .checkpoint(&key)
                        .await?
                        .ok_or_else(|| StorageError::Corrupt(format!("checkpoint `{key}` vanished")))?,
                    Err(error) => return Err(cluster_error("create a checkpoint", error)),
                }
            }
        };
        let records = self.read_after(&js, stream, consumer, shard, checkpoint.seq, limit, max_bytes).await?;
        Ok((checkpoint, records))
    }

    /// Moves the checkpoint to `to.seq` if it is still at revision `to.epoch`, then reads the next batch: the new
    /// checkpoint (its new revision) and the records; `None` when a replay or another node moved it first.
    pub async fn advance_and_read(
        &self,
        stream: &str,
        consumer: &str,
        shard: u32,
        to: Checkpoint,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Option<(Checkpoint, Vec<StoredRecord>)>, StorageError> {
        let key = checkpoint_key(stream, consumer, shard);
        let revision = match self.checkpoints.update(&key, to.seq.to_string().into(), to.epoch).await {
            Ok(revision) => revision,
            Err(error) if error.kind() == UpdateErrorKind::WrongLastRevision => return Ok(None),
            Err(error) => return Err(cluster_error("write a checkpoint", error)),
        };
        let (js, _) = self.stream(stream).await?;
        let records = self.read_after(&js, stream, consumer, shard, to.seq, limit, max_bytes).await?;
        Ok(Some((Checkpoint { seq: to.seq, epoch: revision }, records)))
    }

    /// Up to `limit` records of a shard after `after` (see [`Reader`]).
    #[allow(clippy::too_many_arguments)]
    async fn read_after(
        &self,
        js: &stream::Stream,
        stream: &str,
        consumer: &str,
        shard: u32,
        after: u64,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Vec<StoredRecord>, StorageError> {
        let id = (stream.to_owned(), consumer.to_owned(), shard);
        let kept = self.readers.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        let mut reader = match kept {
            Some(reader) if reader.base <= after && after <= reader.fetched_to => reader,
            stale => {
                if let Some(stale) = stale {
                    forget(js, &stale.consumer);
                }
                Reader::start(js, shard_subject(stream, shard), after).await?
            }
        };
        while reader.buffer.front().is_some_and(|record| record.seq <= after) {
            reader.buffer.pop_front();
        }
        reader.base = after;
        if reader.buffer.len() < limit as usize
            && let Err(error) = reader.fetch(limit as usize - reader.buffer.len()).await
        {
            // A reader kept while this node did not hold the shard may have been dropped by the server (idle for a
            // minute): start a fresh one from `after` once. On a second error the reader is dropped, and the next
            // read starts afresh too.
            tracing::debug!(%stream, shard, %error, "a stream reader failed; starting a fresh one");
            forget(js, &reader.consumer);
            reader = Reader::start(js, shard_subject(stream, shard), after).await?;
            reader.fetch(limit as usize).await?;
        }
        let records = take_batch(&reader.buffer, limit, max_bytes);
        self.readers.lock().unwrap_or_else(|p| p.into_inner()).insert(id, reader);
        Ok(records)
    }

    /// See [`crate::storage::streams::StreamDb::replay`].
    pub async fn replay(
        &self,
        stream: &str,
        consumer: &str,
        shard: Option<u32>,
        from: ReplayFrom,
    ) -> Result<Vec<(u32, u64)>, StorageError> {
        let (js, shards) = self.stream(stream).await?;
        let mut moved = Vec::new();
        for each in (0..shards).filter(|s| shard.is_none_or(|only| only == *s)) {
            let subject = shard_subject(stream, each);
            let seq = match from {
                ReplayFrom::Sequence(seq) => seq.saturating_sub(1),
                ReplayFrom::Time(at) => match first_at_or_after(&js, &subject, at).await? {
                    Some(first) => first - 1,
                    None => last_seq(&js, &subject).await?,
                },
            };
            let key = checkpoint_key(stream, consumer, each);
            self.checkpoints
                .put(&key, seq.to_string().into())
                .await
                .map_err(|error| cluster_error("write a checkpoint", error))?;
            moved.push((each, seq));
        }
        if moved.is_empty() {
            return Err(StorageError::Corrupt(format!("stream `{stream}` has no shard {shard:?}")));
        }
        self.wake(stream).await;
        Ok(moved)
    }

    /// Every stream (or the one named) with its shards, its consumers' places and which node delivers each shard.
    /// Shard bytes are 0: JetStream counts a stream's bytes, not a subject's.
    pub async fn describe(&self, only: Option<&str>) -> Result<Vec<StreamInfo>, StorageError> {
        let names: Vec<String> = match only {
            Some(name) => vec![name.to_owned()],
            None => {
                let mut names = Vec::new();
                let mut listed = self.cluster.jetstream.stream_names();
                while let Some(name) = listed.next().await {
                    let name = name.map_err(|error| cluster_error("list streams", error))?;
                    if let Some(encoded) = name.strip_prefix(STREAM_PREFIX) {
                        names.push(from_consumer_name(encoded));
                    }
                }
                names.sort();
                names
            }
        };
        let keys = super::bucket_keys(&self.checkpoints, "checkpoints").await?;
        let mut described = Vec::new();
        for name in names {
            let js_name = format!("{STREAM_PREFIX}{}", consumer_name(&name));
            let js = match self.cluster.jetstream.get_stream(&js_name).await {
                Ok(js) => js,
                Err(error) if matches!(error.kind(), GetStreamErrorKind::JetStream(found) if found.code() == 404) => {
                    continue;
                }
                Err(error) => return Err(cluster_error(format!("read stream {js_name}"), error)),
            };
            let shards = js.cached_info().config.description.as_deref().and_then(shards_said).unwrap_or(1);
            let mut info = StreamInfo { name: name.clone(), shards: Vec::new(), consumers: Vec::new() };
            for shard in 0..shards {
                let subject = shard_subject(&name, shard);
                let first = first_record(&js, &subject, 0).await?;
                let reader = ephemeral(&js, subject.clone(), DeliverPolicy::All).await?;
                let records = reader.cached_info().num_pending;
                forget(&js, &reader);
                info.shards.push(ShardInfo {
                    shard,
                    first_seq: first.as_ref().map_or(0, |(seq, _)| *seq),
                    last_seq: last_seq(&js, &subject).await?,
                    records,
                    bytes: 0,
                });
            }
            let owners = self.leases.owners(&name).await?;
            let prefix = format!("{}.", consumer_name(&name));
            for key in keys.iter().filter(|key| key.starts_with(&prefix)) {
                let Some((consumer, shard)) = key[prefix.len()..].rsplit_once('.') else { continue };
                let (consumer, Ok(shard)) = (from_consumer_name(consumer), shard.parse::<u32>()) else { continue };
                let Some(checkpoint) = self.checkpoint(key).await? else { continue };
                let subject = shard_subject(&name, shard);
                let reader = ephemeral(
                    &js,
                    subject.clone(),
                    DeliverPolicy::ByStartSequence { start_sequence: checkpoint.seq + 1 },
                )
                .await?;
                let behind = reader.cached_info().num_pending;
                forget(&js, &reader);
                let oldest = first_record(&js, &subject, checkpoint.seq + 1).await?;
                let now = crate::storage::now_ms();
                info.consumers.push(ConsumerShard {
                    owner: owners.get(&(consumer.clone(), shard)).cloned(),
                    consumer,
                    shard,
                    checkpoint: checkpoint.seq,
                    behind,
                    iterator_age_ms: oldest.map_or(0, |(_, at)| (now - at).max(0)),
                });
            }
            info.consumers.sort_by(|a, b| (&a.consumer, a.shard).cmp(&(&b.consumer, b.shard)));
            described.push(info);
        }
        Ok(described)
    }
}

/// The shard count a stream's description says (see [`JetStreamStreams::stream`]).
fn shards_said(description: &str) -> Option<u32> {
    let said = description.strip_suffix(SHARDS_SAID)?;
    said.rsplit_once(':')?.1.parse().ok().filter(|shards| *shards > 0)
}

/// The sequence and time of the first record of `subject` at or after sequence `from` (0: the first kept).
async fn first_record(js: &stream::Stream, subject: &str, from: u64) -> Result<Option<(u64, i64)>, StorageError> {
    match js.direct_get_next_for_subject(subject, (from > 0).then_some(from)).await {
        Ok(message) => Ok(Some((message.sequence, millis(message.time)))),
        Err(error) if error.kind() == DirectGetErrorKind::NotFound => Ok(None),
        Err(error) => Err(cluster_error("read a stream shard", error)),
    }
}

/// The sequence of the last record of `subject`, 0 when it has none.
async fn last_seq(js: &stream::Stream, subject: &str) -> Result<u64, StorageError> {
    match js.direct_get_last_for_subject(subject).await {
        Ok(message) => Ok(message.sequence),
        Err(error) if error.kind() == DirectGetErrorKind::NotFound => Ok(0),
        Err(error) => Err(cluster_error("read a stream shard", error)),
    }
}

/// The sequence of the first record of `subject` put at or after `at` (ms since the epoch).
async fn first_at_or_after(js: &stream::Stream, subject: &str, at: i64) -> Result<Option<u64>, StorageError> {
    let start_time = async_nats::datetime::from_nanos(i128::from(at) * 1_000_000)
        .map_err(|error| StorageError::Corrupt(format!("time {at}: {error}")))?;
    let mut reader = Reader {
        consumer: ephemeral(js, subject.to_owned(), DeliverPolicy::ByStartTime { start_time }).await?,
        base: 0,
        fetched_to: 0,
        buffer: VecDeque::new(),
    };
    let fetched = reader.fetch(1).await;
    forget(js, &reader.consumer);
    fetched?;
    Ok(reader.buffer.front().map(|record| record.seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_says_the_shard_count_the_stream_was_made_with() {
        assert_eq!(shards_said("clicks:4 shards"), Some(4));
        assert_eq!(shards_said("a:b:16 shards"), Some(16), "the last colon counts");
        assert_eq!(shards_said("clicks:0 shards"), None);
        assert_eq!(shards_said("made by hand"), None);
    }

    #[test]
    fn subjects_and_keys_name_stream_shard_and_consumer_without_stray_dots() {
        assert_eq!(shard_subject("eu.clicks", 3), "edgefn.s.eu~clicks.3");
        assert_eq!(wake_subject("eu.clicks"), "edgefn.swake.eu~clicks");
        assert_eq!(checkpoint_key("eu.clicks", "probe/ordered", 2), "eu=2Eclicks.probe=2Fordered.2");
    }

    #[test]
    fn a_batch_stops_at_its_byte_budget_but_always_holds_one_record() {
        let record = |seq: u64, len: usize| StoredRecord {
            seq,
            key: "k".into(),
            body: vec![0; len],
            at: 0,
            correlation_id: None,
        };
        let records: VecDeque<StoredRecord> = [record(1, 10), record(3, 10), record(7, 10)].into();
        assert_eq!(take_batch(&records, 2, 100).iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(take_batch(&records, 10, 25).len(), 2);
        assert_eq!(take_batch(&records, 10, 5).len(), 1, "one record even past the budget");
    }
}
