//! The cluster backend: NATS JetStream, reached with `async-nats`, shared by every node of a cluster.
//!
//! What lives there, and under which names:
//! - stream `EDGEFN_QUEUES` (work-queue retention: an acked message is gone): subject
//!   `edgefn.q.<queue>.<level>.<origin>`, where `<level>` is `hi`, `mid` or `lo` (priority above, at or below
//!   zero) or `later` (a delayed message, not ready yet), and `<origin>` is `-`, or for a dead letter the queue
//!   it died in. One durable pull consumer per queue and level, shared by every node that consumes the queue, so
//!   work spreads over them and a dead node's messages go to the others after the ack wait.
//! - stream `EDGEFN_TOPICS` (interest retention: a message stays until every subscriber acked it): subject
//!   `edgefn.t.<topic>`, one durable consumer per subscriber queue.
//! - core subject `edgefn.wake.<queue>`: an empty message after every send, so idle consumers on any node pull at
//!   once instead of at their next poll.
//!
//! - object storage: one object store per bucket (see [`objects`]);
//! - ordered streams: one JetStream stream per edgefn stream, their checkpoints and shard leases in KV buckets
//!   (see [`streams`] and [`stream_leases`]);
//! - workflow runs: stream `EDGEFN_WORKFLOWS`, the log of every change to them, and the lease of the node that
//!   resumes them (see [`workflows`]).
//!
//! Names become subject tokens by [`subject_token`] and consumer names by [`consumer_name`].
//!
//! The server needs nothing newer than 2.9 (Debian's nats-server): pull consumers, ack / nak with a delay / in
//! progress, direct get and per-subject limits. Delays are done here, not with 2.12's scheduled messages: a
//! delayed message waits on its `later` level and is moved to its real level once due.

pub mod cron;
pub mod deployments;
mod lease;
pub mod objects;
mod queue_inspection;
pub mod queues;
pub mod stream_leases;
pub mod streams;
mod wire;
pub mod workflows;

pub use cron::JetStreamCron;
pub use deployments::JetStreamDeployments;
pub use objects::JetStreamObjects;
pub use queues::JetStreamQueues;
pub use stream_leases::ShardLeases;
pub use streams::JetStreamStreams;
pub use workflows::JetStreamWorkflowLog;

use crate::storage::StorageError;
use async_nats::jetstream;
use async_nats::jetstream::kv;
use async_nats::jetstream::object_store::ObjectStore;
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use std::time::Duration;

/// A connection to the cluster's NATS server, with its JetStream context.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
    /// This node's name.
    pub(crate) node: String,
    /// Stream and bucket replicas.
    pub replicas: usize,
}

impl Cluster {
    /// Connects to `url` as node `node`. Fails (naming the URL) when the server cannot be reached or has no
    /// JetStream.
    pub async fn connect(url: &str, node: &str, replicas: usize) -> Result<Self, StorageError> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("edgefn {node}"))
            .connection_timeout(Duration::from_secs(5))
            // A server that cannot be reached at start is an error that names it; once connected, a restarting
            // server must not take the node down: reconnect for ever.
            .max_reconnects(None)
            .connect(url);
        let client = tokio::time::timeout(Duration::from_secs(10), client)
            .await
            .map_err(|_| cluster_error(format!("connect to {url}"), "no answer in 10 s"))?
            .map_err(|error| cluster_error(format!("connect to {url}"), error))?;
        let jetstream = jetstream::new(client.clone());
        Ok(Self { client, jetstream, node: node.to_owned(), replicas })
    }
}

/// Publishes one message to `subject` and waits until the stream stored it; its sequence.
pub(crate) async fn publish_stored(
    context: &jetstream::Context,
    subject: String,
    headers: async_nats::HeaderMap,
    body: bytes::Bytes,
) -> Result<u64, jetstream::context::PublishError> {
    Ok(context.publish_with_headers(subject, headers, body).await?.await?.sequence)
}

/// KV bucket `name` (one value per key; `max_age` zero keeps them for ever).
pub(crate) async fn bucket(cluster: &Cluster, name: &str, max_age: Duration) -> Result<kv::Store, StorageError> {
    let stream_name = format!("KV_{name}");
    cluster
        .jetstream
        .get_or_create_stream(stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("$KV.{name}.>")],
            storage: StorageType::File,
            num_replicas: cluster.replicas,
            max_messages_per_subject: 1,
            max_age,
            discard: DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .map_err(|error| cluster_error(format!("create stream {stream_name}"), error))?;
    cluster.jetstream.get_key_value(name).await.map_err(|error| cluster_error(format!("open bucket {name}"), error))
}

/// Every key in `bucket` now; `what` names its entries in an error ("shard leases").
pub(crate) async fn bucket_keys(bucket: &kv::Store, what: &str) -> Result<Vec<String>, StorageError> {
    use futures_util::StreamExt as _;
    let action = || format!("list the {what}");
    let mut listed = bucket.keys().await.map_err(|error| cluster_error(action(), error))?;
    let mut keys = Vec::new();
    while let Some(key) = listed.next().await {
        keys.push(key.map_err(|error| cluster_error(action(), error))?);
    }
    Ok(keys)
}

/// A lease on `key` of `bucket` (a bucket made by [`bucket`], whose entries live its `max_age`), held by `node`:
/// taken with `create` when no node holds it, kept by updating the key at the revision held (which fails once it
/// lapsed and another node took it), given back with a delete at that revision. `what` names it in errors ("a
/// stream shard"). The shard leases and the workflow runs' lease are these.
pub(crate) struct KvLease<'a> {
    pub(crate) bucket: &'a kv::Store,
    pub(crate) key: String,
    pub(crate) node: &'a str,
    pub(crate) what: &'a str,
}

impl KvLease<'_> {
    /// Takes the lease if no node holds it: its revision, `None` when another node holds it.
    pub(crate) async fn take(&self) -> Result<Option<u64>, StorageError> {
        match self.bucket.create(&self.key, self.node.to_owned().into()).await {
            Ok(revision) => Ok(Some(revision)),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(error) => Err(cluster_error(format!("claim {}", self.what), error)),
        }
    }

    /// Keeps the lease held at `revision`: its new revision, `None` when it was lost (it lapsed and another node
    /// took it, or it was deleted).
    pub(crate) async fn renew(&self, revision: u64) -> Result<Option<u64>, StorageError> {
        match self.bucket.update(&self.key, self.node.to_owned().into(), revision).await {
            Ok(revision) => Ok(Some(revision)),
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(error) => Err(cluster_error(format!("renew the lease of {}", self.what), error)),
        }
    }

    /// Gives the lease held at `revision` back, so another node may take it at once (else it lapses by itself).
    pub(crate) async fn release(&self, revision: u64) {
        if let Err(error) = self.bucket.delete_expect_revision(&self.key, Some(revision)).await {
            tracing::debug!(key = %self.key, %error, "could not give the lease of {} back; it lapses by itself", self.what);
        }
    }
}

/// Object store `name`, its stream made here as the NATS object store convention lays it out (ADR-20), because
/// async-nats makes it only on servers newer than Debian's 2.9.
pub(crate) async fn object_store(cluster: &Cluster, name: &str) -> Result<ObjectStore, StorageError> {
    let stream_name = format!("OBJ_{name}");
    cluster
        .jetstream
        .get_or_create_stream(stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("$O.{name}.C.>"), format!("$O.{name}.M.>")],
            storage: StorageType::File,
            num_replicas: cluster.replicas,
            discard: DiscardPolicy::New,
            allow_rollup: true,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .map_err(|error| cluster_error(format!("create stream {stream_name}"), error))?;
    cluster
        .jetstream
        .get_object_store(name)
        .await
        .map_err(|error| cluster_error(format!("open object store {name}"), error))
}

/// A [`StorageError`] for a failed request.
pub(crate) fn cluster_error(action: impl Into<String>, reason: impl std::fmt::Display) -> StorageError {
    StorageError::Cluster { action: action.into(), reason: reason.to_string() }
}

/// `name` (a queue or topic name: `A-Z a-z 0-9 . _ - @ /`) as one subject token: `.` separates tokens, so it
/// becomes `~`, which names never contain.
pub fn subject_token(name: &str) -> String {
    name.replace('.', "~")
}

/// The name back from [`subject_token`].
pub fn from_subject_token(token: &str) -> String {
    token.replace('~', ".")
}

/// `name` as a JetStream consumer or bucket key name: `A-Z a-z 0-9 - _` as they are, every other byte as `=XX`.
pub fn consumer_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("={byte:02X}"));
        }
    }
    out
}

/// The name back from [`consumer_name`] (an `=` not followed by two hex digits stays as it is).
pub fn from_consumer_name(encoded: &str) -> String {
    let bytes = encoded.as_bytes();
    let (mut out, mut at) = (Vec::with_capacity(bytes.len()), 0);
    while at < bytes.len() {
        let escaped = (bytes[at] == b'=')
            .then(|| encoded.get(at + 1..at + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok()))
            .flatten();
        match escaped {
            Some(byte) => {
                out.push(byte);
                at += 3;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_tokens_and_consumer_names_one_to_one() {
        assert_eq!(subject_token("orders.eu"), "orders~eu");
        assert_eq!(from_subject_token(&subject_token("a.b@c/d")), "a.b@c/d");
        assert_eq!(consumer_name("orders.eu@f/x_y-z"), "orders=2Eeu=40f=2Fx_y-z");
        assert_ne!(consumer_name("a.b"), consumer_name("a_b"));
        for name in ["orders.eu@f/x_y-z", "probe/ordered", "plain", "é/ü"] {
            assert_eq!(from_consumer_name(&consumer_name(name)), name);
        }
    }
}
