//! The queue backend seam: what the messaging capability and the queue trigger need from a durable queue, with
//! two implementations behind it.
//!
//! - [`sqlite::SqliteQueues`], the default: one node, the queues in the data dir's SQLite file.
//! - [`jetstream::JetStreamQueues`]: several nodes sharing work through a NATS JetStream server (`[cluster] nats`).
//!
//! Both keep the same promises: at-least-once delivery, per-message ack / retry with a delay / dead letter,
//! attempts counted per delivery, `max_retries` then the dead-letter queue (a message never vanishes when its
//! deliveries run out), delayed messages, priorities, topics fanned out to one queue per subscriber, re-drive and
//! capacity refusals that store nothing. Message ids and lease tokens are the backend's own strings: the trigger
//! hands them back untouched.
//!
//! A consumer loop asks in two steps, [`QueueBackend::wait_until_due`] then [`QueueBackend::lease_if_due`], so it can
//! reserve an instance slot in between: SQLite leases nothing until the second step; JetStream pulls in the first
//! (a pulled message is leased until the consumer's ack wait) and renews those leases while the loop waits.

pub mod cron;
pub mod jetstream;
pub mod objects;
pub mod sqlite;
pub mod streams;

use super::StorageError;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// A message to enqueue.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub body: Vec<u8>,
    pub delay_ms: u64,
    pub priority: i32,
    /// The work that sent it (see `telemetry::correlation`); its delivery continues that work.
    pub correlation_id: Option<String>,
    /// The span that sent it (see `telemetry::otel`), 0 for none: its delivery's span is a child of it.
    pub parent_span: u64,
}

/// A message handed to a consumer.
#[derive(Debug, Clone)]
pub struct LeasedMessage {
    /// The backend's id of the message: stable across its deliveries.
    pub id: String,
    /// What settles this delivery: a settle with an older token changes nothing.
    pub token: String,
    pub body: Vec<u8>,
    /// Deliveries so far, this one included.
    pub attempts: u32,
    pub priority: i32,
    pub enqueued_at: i64,
    /// The work that sent it, if it said.
    pub correlation_id: Option<String>,
    /// The span that sent it, 0 for none.
    pub parent_span: u64,
}

/// What to do with one leased message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ack,
    /// Deliver it again at `at` (ms since the epoch).
    Retry {
        at: i64,
        error: String,
    },
    DeadLetter {
        queue: String,
        reason: String,
    },
}

/// One message's outcome, with the token of the delivery it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settle {
    pub id: String,
    pub token: String,
    pub outcome: Outcome,
}

/// Counts of one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    pub queue: String,
    /// Ready to deliver now.
    pub ready: u64,
    /// Leased by a running invocation.
    pub in_flight: u64,
    /// Waiting for a delay or a retry backoff.
    pub delayed: u64,
    /// Messages of this queue that were dead-lettered and not re-driven yet.
    pub dead: u64,
    /// When the oldest message it holds was sent (ms since the epoch).
    pub oldest_enqueued_at: Option<i64>,
}

/// A dead-lettered message.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub id: String,
    /// The dead-letter queue it sits in.
    pub queue: String,
    pub origin_queue: String,
    /// The body as UTF-8 text when it is, else `null` (see `body_len`).
    pub body: Option<String>,
    pub body_len: usize,
    pub attempts: u32,
    pub priority: i32,
    pub enqueued_at: i64,
    pub error: Option<String>,
}

/// A page of dead letters.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetterPage {
    pub dead_letters: Vec<DeadLetter>,
    /// Pass as `after` for the next page; `None` when this is the last one.
    pub next_after: Option<String>,
}

/// How much one queue may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCapacity {
    pub max_messages: u64,
    pub max_bytes: u64,
}

/// A send refused because a queue is at its capacity; nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueFull {
    pub queue: String,
    /// What it holds now (as far as the backend can tell: JetStream counts per priority level).
    pub messages: u64,
    pub bytes: u64,
}

/// How a consumer takes its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// At most this many messages per batch.
    pub batch_size: u32,
    /// A partial batch is due once its oldest message has waited this long.
    pub max_wait_ms: u64,
    /// How long a lease must last: the invocation's deadline plus a margin.
    pub lease_ms: u64,
}

/// Sends refused whole, or stored.
pub type Sent<T> = Result<T, QueueFull>;

/// See the module docs. Every method names its queue; errors are [`StorageError`]s the caller wraps with it.
pub trait QueueBackend: Send + Sync + std::fmt::Debug + 'static {
    /// Stores `messages` in `queue`, all or none, and returns their ids; `Err(QueueFull)` when `queue` would go past
    /// `capacity`.
    fn send(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
        capacity: QueueCapacity,
    ) -> BoxFuture<'_, Result<Sent<Vec<String>>, StorageError>>;

    /// Gives every subscriber of `topic` its own copy of `body` and returns their queues (none: dropped, as SNS
    /// does with a topic nobody subscribes to).
    fn publish(
        &self,
        topic: &str,
        body: Vec<u8>,
        correlation_id: Option<String>,
        parent_span: u64,
        capacity: QueueCapacity,
    ) -> BoxFuture<'_, Result<Sent<Vec<String>>, StorageError>>;

    /// Makes `queue` a subscriber of `topic`: on this node at once; a cluster backend also makes it durable there
    /// (and `wait_until_due` of `queue` waits until it is).
    fn subscribe(&self, topic: &str, queue: &str);

    /// Stops giving `queue` copies of `topic`'s messages, as far as this node decides: a cluster keeps a
    /// subscription that other nodes may still consume.
    fn unsubscribe(&self, topic: &str, queue: &str);

    /// Waits until a batch of `queue` is due (`batch_size` messages ready, or the oldest has waited
    /// `max_wait_ms`). Returns `false` when it gave up for now (after an idle poll, or woken by `waker`), so the
    /// caller can look at whether it should stop before it asks again.
    fn wait_until_due(
        &self,
        queue: &str,
        policy: BatchPolicy,
        waker: Arc<Notify>,
    ) -> BoxFuture<'_, Result<bool, StorageError>>;

    /// Leases a batch of `queue` if one is due, highest priority first, then oldest first. `None` when none is.
    fn lease_if_due(
        &self,
        queue: &str,
        policy: BatchPolicy,
    ) -> BoxFuture<'_, Result<Option<Vec<LeasedMessage>>, StorageError>>;

    /// How often a running delivery must call [`QueueBackend::renew`] to keep its leases; `None` when a lease
    /// already lasts as long as `BatchPolicy::lease_ms` says.
    fn renew_every(&self) -> Option<Duration>;

    /// Keeps the leases of the deliveries with these tokens (a delivery still running).
    fn renew(&self, tokens: Vec<String>) -> BoxFuture<'_, Result<(), StorageError>>;

    /// Applies the outcomes of one delivery. Returns how many no longer matched their lease and were ignored.
    fn settle(&self, queue: &str, outcomes: Vec<Settle>) -> BoxFuture<'_, Result<usize, StorageError>>;

    /// Gives back messages that were pulled for a delivery that will not run (its consumer is stopping): ready
    /// again at once, this delivery not counted against their retries where the backend can tell.
    fn release(&self, queue: &str) -> BoxFuture<'_, Result<(), StorageError>>;

    /// The counts of every queue that has messages, plus `also` (deployed queues), by name.
    fn stats(&self, also: Vec<String>) -> BoxFuture<'_, Result<Vec<QueueStats>, StorageError>>;

    /// Dead letters of `origin_queue`, oldest first, after `after`: at most `limit`, and no more once their bodies
    /// add up to `max_bytes` (always at least one).
    fn dead_letters(
        &self,
        origin_queue: &str,
        limit: u32,
        after: Option<String>,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<DeadLetterPage, StorageError>>;

    /// Moves dead letters of `origin_queue` (all, or those in `ids`) back to it, ready now, attempts reset.
    fn redrive(&self, origin_queue: &str, ids: Option<Vec<String>>) -> BoxFuture<'_, Result<usize, StorageError>>;
}
