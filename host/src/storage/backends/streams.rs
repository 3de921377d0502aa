//! The stream backend seam: what the streams capability, the stream trigger, the admin API and the alarms need
//! from the store of ordered streams, with two implementations behind it.
//!
//! - [`StreamDb`], the default: one node, the records and checkpoints in the data dir's SQLite file.
//! - [`JetStreamStreams`]: several nodes through a NATS JetStream server (`[cluster] nats`): any node puts, and each
//!   shard of a consumer is delivered by one node at a time ([`ShardLeases`]), from the checkpoint all share.
//!
//! Both keep the same promises: per-key order (a key's shard is fixed by [`crate::storage::streams::shard_of`]),
//! a checkpoint per consumer and shard that a replay or a stale writer cannot be moved past by a batch that ran
//! across it (its epoch), retention by age and bytes, and refusals that store nothing. What differs is written in
//! the book's streams chapter: on a cluster a sequence number is the stream's (it grows within a shard, with gaps),
//! a batch put is not one transaction, and shard bytes are not counted.

use super::jetstream::{JetStreamStreams, ShardLeases};
use crate::storage::StorageError;
use crate::storage::streams::{
    Checkpoint, Position, ReplayFrom, StoredRecord, StreamCatalog, StreamDb, StreamInfo, StreamRefusal,
};
use edgefn_manifest::record::StreamStart;
use std::sync::Arc;
use tokio::sync::Notify;

/// See the module docs.
#[derive(Debug)]
pub enum StreamStore {
    Local(StreamDb),
    Cluster(Box<JetStreamStreams>),
}

impl StreamStore {
    pub fn catalog(&self) -> &StreamCatalog {
        match self {
            Self::Local(db) => db.catalog(),
            Self::Cluster(cluster) => cluster.catalog(),
        }
    }

    /// On a cluster, who delivers which shard; `None` alone (this node delivers every shard).
    pub fn leases(&self) -> Option<Arc<ShardLeases>> {
        match self {
            Self::Local(_) => None,
            Self::Cluster(cluster) => Some(cluster.leases()),
        }
    }

    /// Has `notify` notified when another node puts to `stream` or replays it (alone there is no other node).
    pub fn forward_wakes(&self, stream: &str, notify: Arc<Notify>) {
        if let Self::Cluster(cluster) = self {
            cluster.forward_wakes(stream, notify);
        }
    }

    /// Appends `records` (partition key, body) to `stream`, in order; each carries `correlation_id`.
    pub async fn put(
        &self,
        stream: &str,
        records: Vec<(String, Vec<u8>)>,
        correlation_id: Option<String>,
    ) -> Result<Result<Vec<Position>, StreamRefusal>, StorageError> {
        match self {
            Self::Local(db) => db.put(stream, records, correlation_id).await,
            Self::Cluster(cluster) => cluster.put(stream, records, correlation_id).await,
        }
    }

    /// The shard count of `stream` (made, with its configured count, on first use).
    pub async fn shards(&self, stream: &str) -> Result<u32, StorageError> {
        match self {
            Self::Local(db) => db.shards(stream).await,
            Self::Cluster(cluster) => cluster.shards(stream).await,
        }
    }

    /// `consumer`'s checkpoint in `shard` of `stream` (made where `start` says when it has none), and up to `limit`
    /// records after it, at most `max_bytes` of bodies (always one, if there is one).
    pub async fn read_from_checkpoint(
        &self,
        stream: &str,
        consumer: &str,
        shard: u32,
        start: StreamStart,
        limit: u32,
        max_bytes: usize,
    ) -> Result<(Checkpoint, Vec<StoredRecord>), StorageError> {
        match self {
            Self::Local(db) => db.read_from_checkpoint(stream, consumer, shard, start, limit, max_bytes).await,
            Self::Cluster(cluster) => {
                cluster.read_from_checkpoint(stream, consumer, shard, start, limit, max_bytes).await
            }
        }
    }

    /// Moves the checkpoint to `to` unless it moved since `to.epoch` was read (then `None`), and reads the next
    /// batch after it: the checkpoint as it now is, and the records.
    pub async fn advance_and_read(
        &self,
        stream: &str,
        consumer: &str,
        shard: u32,
        to: Checkpoint,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Option<(Checkpoint, Vec<StoredRecord>)>, StorageError> {
        match self {
            Self::Local(db) => Ok(db
                .advance_and_read(stream, consumer, shard, to, limit, max_bytes)
                .await?
                .map(|records| (to, records))),
            Self::Cluster(cluster) => cluster.advance_and_read(stream, consumer, shard, to, limit, max_bytes).await,
        }
    }

    /// Moves `consumer`'s checkpoints so its next delivery starts at `from`, in `shard` or in every shard.
    pub async fn replay(
        &self,
        stream: &str,
        consumer: &str,
        shard: Option<u32>,
        from: ReplayFrom,
    ) -> Result<Vec<(u32, u64)>, StorageError> {
        match self {
            Self::Local(db) => db.replay(stream, consumer, shard, from).await,
            Self::Cluster(cluster) => cluster.replay(stream, consumer, shard, from).await,
        }
    }

    /// Removes records past their retention; JetStream does that itself on a cluster (0 here).
    pub async fn sweep(&self) -> Result<u64, StorageError> {
        match self {
            Self::Local(db) => db.sweep().await,
            Self::Cluster(_) => Ok(0),
        }
    }

    /// Every stream (or the one named), with its shards and its consumers' places.
    pub async fn describe(&self, only: Option<&str>) -> Result<Vec<StreamInfo>, StorageError> {
        match self {
            Self::Local(db) => db.describe(only).await,
            Self::Cluster(cluster) => cluster.describe(only).await,
        }
    }
}
