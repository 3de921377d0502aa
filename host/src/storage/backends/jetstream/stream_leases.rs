//! Which node delivers which shard of a stream consumer on a cluster: leases in KV bucket `edgefn_stream_leases`,
//! whose entries expire a lease period after their last write (the bucket's `max_age`, the cluster's
//! `ack_wait_ms`).
//!
//! - `s.<stream>.<consumer>.<shard>` names the node that delivers the shard. A node takes a free shard by creating
//!   the key (the server lets one node win), keeps it by rewriting it with the revision it holds, and gives it
//!   back by deleting it with that revision. A node that dies stops rewriting: its shards are free a lease period
//!   later.
//! - `n.<stream>.<consumer>.<node>` says that the node consumes it, rewritten with its leases: how many nodes
//!   share the consumer's shards, so each takes its share (see `triggers::stream::balance`).
//!
//! Names are written as [`consumer_name`] writes them, so every key is safe whatever the names hold.

use super::{Cluster, KvLease, cluster_error, consumer_name, from_consumer_name};
use crate::storage::StorageError;
use async_nats::jetstream::kv;
use std::collections::HashMap;
use std::time::Duration;

const LEASES: &str = "edgefn_stream_leases";

/// See the module docs.
pub struct ShardLeases {
    bucket: kv::Store,
    node: String,
    /// How long an entry lives after its last write.
    period: Duration,
}

impl std::fmt::Debug for ShardLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardLeases").field("node", &self.node).field("period", &self.period).finish_non_exhaustive()
    }
}

fn shard_key(stream: &str, consumer: &str, shard: u32) -> String {
    format!("s.{}.{}.{shard}", consumer_name(stream), consumer_name(consumer))
}

fn node_prefix(stream: &str, consumer: &str) -> String {
    format!("n.{}.{}.", consumer_name(stream), consumer_name(consumer))
}

impl ShardLeases {
    /// Opens the bucket, made with `period` as its entries' life if it is new (a bucket made by another node keeps
    /// the period it was made with).
    pub async fn open(cluster: &Cluster, period: Duration) -> Result<Self, StorageError> {
        let bucket = super::bucket(cluster, LEASES, period).await?;
        Ok(Self { bucket, node: cluster.node.clone(), period })
    }

    /// How long a lease lives without being renewed.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Says that this node consumes `consumer` of `stream`; gone a period after the last time it said so.
    pub async fn announce(&self, stream: &str, consumer: &str) -> Result<(), StorageError> {
        let key = format!("{}{}", node_prefix(stream, consumer), consumer_name(&self.node));
        self.bucket
            .put(&key, self.node.clone().into())
            .await
            .map_err(|error| cluster_error("announce a stream consumer", error))?;
        Ok(())
    }

    /// Says that this node no longer consumes it.
    pub async fn withdraw(&self, stream: &str, consumer: &str) {
        let key = format!("{}{}", node_prefix(stream, consumer), consumer_name(&self.node));
        if let Err(error) = self.bucket.delete(&key).await {
            tracing::debug!(%stream, %consumer, %error, "could not withdraw from a stream consumer; it lapses by itself");
        }
    }

    /// How many nodes consume `consumer` of `stream` now (at least this one).
    pub async fn consuming_nodes(&self, stream: &str, consumer: &str) -> Result<usize, StorageError> {
        let prefix = node_prefix(stream, consumer);
        let keys = self.keys().await?;
        Ok(keys.iter().filter(|key| key.starts_with(&prefix)).count().max(1))
    }

    async fn keys(&self) -> Result<Vec<String>, StorageError> {
        super::bucket_keys(&self.bucket, "shard leases").await
    }

    /// Takes `shard` if no node holds it: the lease's revision, `None` when another node holds it.
    pub async fn claim(&self, stream: &str, consumer: &str, shard: u32) -> Result<Option<u64>, StorageError> {
        self.lease(stream, consumer, shard).take().await
    }

    /// Keeps the lease held at `revision`: its new revision, `None` when it was lost (it lapsed and another node
    /// took it, or it was deleted).
    pub async fn renew(
        &self,
        stream: &str,
        consumer: &str,
        shard: u32,
        revision: u64,
    ) -> Result<Option<u64>, StorageError> {
        self.lease(stream, consumer, shard).renew(revision).await
    }

    /// Gives the lease held at `revision` back, so another node may take the shard at once.
    pub async fn release(&self, stream: &str, consumer: &str, shard: u32, revision: u64) {
        self.lease(stream, consumer, shard).release(revision).await;
    }

    fn lease(&self, stream: &str, consumer: &str, shard: u32) -> KvLease<'_> {
        KvLease {
            bucket: &self.bucket,
            key: shard_key(stream, consumer, shard),
            node: &self.node,
            what: "a stream shard",
        }
    }

    /// Who delivers each shard of each consumer of `stream` now: (consumer, shard) to node.
    pub async fn owners(&self, stream: &str) -> Result<HashMap<(String, u32), String>, StorageError> {
        let prefix = format!("s.{}.", consumer_name(stream));
        let mut owners = HashMap::new();
        for key in self.keys().await?.into_iter().filter(|key| key.starts_with(&prefix)) {
            let Some((consumer, shard)) = key[prefix.len()..].rsplit_once('.') else { continue };
            let Ok(shard) = shard.parse::<u32>() else { continue };
            let entry = self.bucket.get(&key).await.map_err(|error| cluster_error("read a shard lease", error))?;
            if let Some(node) = entry {
                owners.insert((from_consumer_name(consumer), shard), String::from_utf8_lossy(&node).into_owned());
            }
        }
        Ok(owners)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_keys_keep_shards_and_nodes_apart_whatever_the_names_hold() {
        assert_eq!(shard_key("eu.clicks", "probe/ordered", 3), "s.eu=2Eclicks.probe=2Fordered.3");
        assert_eq!(node_prefix("eu.clicks", "probe/ordered"), "n.eu=2Eclicks.probe=2Fordered.");
        assert!(!shard_key("a", "b", 0).starts_with(&node_prefix("a", "b")));
    }
}
