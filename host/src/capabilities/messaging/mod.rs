//! `send` and `publish`: durable queues and topics, on whichever queue backend the node runs (SQLite, or NATS
//! JetStream in a cluster; see `storage::backends`).
//!
//! [`Queues`] is the one place where messages enter the queues, whoever sends them (a guest through
//! [`Messaging`], the admin API, a topic's fan-out), so names, sizes and counts are checked the same way
//! everywhere. A topic is fan-out over queues: each subscriber consumes its own queue, `<topic>@<function>`, and
//! publishing gives one copy to each. The queue trigger tells [`Queues`] who subscribes and listens on its
//! wake-ups; nothing here knows the trigger.
//!
//! One folder: the capability (this file) and the imports a component calls (`host.rs`).

mod host;

pub use host::{MessagingView, SendAllowance};

use super::BoxFuture;
use crate::storage::StorageError;
use crate::storage::backends::{DeadLetterPage, NewMessage, QueueBackend, QueueCapacity, QueueFull, QueueStats};
use edgefn_manifest::record::validate_queue_name;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The most messages one send may carry.
pub const MAX_MESSAGES_PER_SEND: usize = 10_000;

/// The most dead letters one listing returns.
pub const MAX_DEAD_LETTERS_PER_LISTING: u32 = 1_000;

/// The bodies of one page of dead letters stop adding up past this: a listing answers in bounded memory, however
/// large the messages.
pub const MAX_DEAD_LETTER_PAGE_BYTES: usize = 4 << 20;

/// Why a message was not stored, or a queue not read.
#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    /// A queue or topic name that is empty, too long or has characters outside `A-Z a-z 0-9 . _ - @ /`.
    #[error("{0}")]
    InvalidName(String),
    #[error("message to {kind} `{name}` is {len} bytes; the limit is {limit} bytes (limits.max_message_bytes)")]
    TooLarge { kind: &'static str, name: String, len: usize, limit: usize },
    #[error("{count} messages in one send; the limit is {MAX_MESSAGES_PER_SEND}")]
    TooMany { count: usize },
    #[error(
        "queue `{}` is full: it holds {} messages ({} bytes), the limits are {} messages and {} bytes \
         (limits.max_queue_messages, limits.max_queue_mb); nothing was sent",
        .full.queue, .full.messages, .full.bytes, .capacity.max_messages, .capacity.max_bytes
    )]
    QueueFull { full: QueueFull, capacity: QueueCapacity },
    #[error("`{sender}` sends more than {limit} messages per second (limits.max_sends_per_second); nothing was sent")]
    RateLimited { sender: String, limit: u32 },
    #[error("failed to {action} {kind} `{name}`: {source}")]
    Storage {
        action: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: Box<StorageError>,
    },
}

/// What a guest reaches through `send` and `publish`. `sender` is the function sending (`component/function`):
/// its sends are rate-limited together.
pub trait Messaging: Send + Sync + 'static {
    /// Stores one message in `queue`; returns its id.
    fn send(&self, sender: String, queue: String, message: NewMessage)
    -> BoxFuture<'_, Result<String, MessagingError>>;
    /// Stores a copy of `body` for every subscriber of `topic`, each carrying `correlation_id` and `parent_span`
    /// (the span that published it, 0 for none); returns how many there are.
    fn publish(
        &self,
        sender: String,
        topic: String,
        body: Vec<u8>,
        correlation_id: Option<String>,
        parent_span: u64,
    ) -> BoxFuture<'_, Result<u32, MessagingError>>;
}

/// Sends per second of each function: a token bucket per sender, `rate` tokens a second, as many at most.
#[derive(Debug)]
struct SendRate {
    rate: u32,
    buckets: Mutex<HashMap<String, (f64, std::time::Instant)>>,
}

impl SendRate {
    fn try_take(&self, sender: &str) -> bool {
        let now = std::time::Instant::now();
        let rate = f64::from(self.rate);
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Forget senders that have been idle long enough to be full again: the map stays as small as the senders.
        if buckets.len() > 4096 {
            buckets.retain(|_, (_, at)| now.duration_since(*at).as_secs_f64() < 1.0);
        }
        let (tokens, at) = buckets.entry(sender.to_owned()).or_insert((rate, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(rate);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How much a queue may hold and a function may send.
#[derive(Debug, Clone, Copy)]
pub struct MessagingLimits {
    pub max_message_bytes: usize,
    pub capacity: QueueCapacity,
    pub max_sends_per_second: u32,
}

impl MessagingLimits {
    pub fn from_host(limits: &crate::config::QueueLimits) -> Self {
        Self {
            max_message_bytes: limits.max_message_bytes,
            capacity: QueueCapacity {
                max_messages: limits.max_queue_messages,
                max_bytes: limits.max_queue_mb.saturating_mul(1 << 20),
            },
            max_sends_per_second: limits.max_sends_per_second,
        }
    }
}

/// The queues and topics of this host. See the module docs.
#[derive(Debug)]
pub struct Queues {
    backend: Arc<dyn QueueBackend>,
    max_message_bytes: usize,
    capacity: QueueCapacity,
    rate: SendRate,
    /// Wake-ups by queue: a consumer sleeps on its queue's, a send wakes it.
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    /// The live `object` triggers, by component: which changes go to which queue.
    object_followers: Mutex<HashMap<String, Vec<ObjectFollower>>>,
}

/// A function that follows changes to a bucket (an `object` trigger), and the queue it consumes them from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectFollower {
    pub bucket: String,
    /// The kinds of change it wants; empty: every kind.
    pub events: Vec<String>,
    pub prefix: String,
    pub queue: String,
}

impl ObjectFollower {
    fn wants(&self, bucket: &str, event: &str, key: &str) -> bool {
        self.bucket == bucket
            && key.starts_with(&self.prefix)
            && (self.events.is_empty() || self.events.iter().any(|e| e == event))
    }
}

impl Queues {
    pub fn new(backend: Arc<dyn QueueBackend>, limits: MessagingLimits) -> Self {
        Self {
            backend,
            max_message_bytes: limits.max_message_bytes,
            capacity: limits.capacity,
            rate: SendRate { rate: limits.max_sends_per_second, buckets: Mutex::default() },
            wakers: Mutex::default(),
            object_followers: Mutex::default(),
        }
    }

    /// Sets the `object` triggers of `component` (none: it has none any more).
    pub fn follow_objects(&self, component: &str, followers: Vec<ObjectFollower>) {
        let mut all = self.object_followers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if followers.is_empty() {
            all.remove(component);
        } else {
            all.insert(component.to_owned(), followers);
        }
    }

    /// The queues that must get a change of kind `event` to `bucket`/`key`.
    pub fn object_event_queues(&self, bucket: &str, event: &str, key: &str) -> Vec<String> {
        let all = self.object_followers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        all.values().flatten().filter(|f| f.wants(bucket, event, key)).map(|f| f.queue.clone()).collect()
    }

    /// The backend underneath, for the queue trigger's leases and settlements.
    pub fn backend(&self) -> &Arc<dyn QueueBackend> {
        &self.backend
    }

    fn check_size(&self, kind: &'static str, name: &str, len: usize) -> Result<(), MessagingError> {
        if len > self.max_message_bytes {
            return Err(MessagingError::TooLarge { kind, name: name.to_owned(), len, limit: self.max_message_bytes });
        }
        Ok(())
    }

    /// Stores `messages` in `queue` (all or none) and wakes its consumer. Errors name the queue and the reason.
    pub async fn send_many(&self, queue: &str, messages: Vec<NewMessage>) -> Result<Vec<String>, MessagingError> {
        validate_queue_name("queue", queue).map_err(MessagingError::InvalidName)?;
        if messages.len() > MAX_MESSAGES_PER_SEND {
            return Err(MessagingError::TooMany { count: messages.len() });
        }
        for message in &messages {
            self.check_size("queue", queue, message.body.len())?;
        }
        let stored =
            self.backend.send(queue, messages, self.capacity).await.map_err(|source| MessagingError::Storage {
                action: "store the message in",
                kind: "queue",
                name: queue.to_owned(),
                source: Box::new(source),
            })?;
        let ids = stored.map_err(|full| MessagingError::QueueFull { full, capacity: self.capacity })?;
        self.wake(queue);
        Ok(ids)
    }

    /// Gives every subscriber of `topic` its own copy of `body`; returns how many subscribers there are. A topic
    /// with no subscribers drops the message, as SNS does.
    pub async fn publish_to_subscribers(
        &self,
        topic: &str,
        body: Vec<u8>,
        correlation_id: Option<String>,
        parent_span: u64,
    ) -> Result<u32, MessagingError> {
        validate_queue_name("topic", topic).map_err(MessagingError::InvalidName)?;
        self.check_size("topic", topic, body.len())?;
        let stored =
            self.backend.publish(topic, body, correlation_id, parent_span, self.capacity).await.map_err(|source| {
                MessagingError::Storage {
                    action: "store the message for",
                    kind: "topic",
                    name: topic.to_owned(),
                    source: Box::new(source),
                }
            })?;
        let subscribers = stored.map_err(|full| MessagingError::QueueFull { full, capacity: self.capacity })?;
        if subscribers.is_empty() {
            tracing::debug!(%topic, "published to a topic with no subscribers");
        }
        for queue in &subscribers {
            self.wake(queue);
        }
        Ok(subscribers.len() as u32)
    }

    /// Makes `queue` a subscriber of `topic`.
    pub fn subscribe(&self, topic: &str, queue: &str) {
        self.backend.subscribe(topic, queue);
    }

    /// Stops giving `queue` copies of `topic`'s messages.
    pub fn unsubscribe(&self, topic: &str, queue: &str) {
        self.backend.unsubscribe(topic, queue);
    }

    /// The wake-up of `queue`, notified whenever a message may have become ready in it.
    pub fn waker(&self, queue: &str) -> Arc<Notify> {
        self.wakers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).entry(queue.to_owned()).or_default().clone()
    }

    /// Wakes the consumer of `queue`, if one listens.
    pub fn wake(&self, queue: &str) {
        let wakers = self.wakers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(waker) = wakers.get(queue) {
            waker.notify_one();
        }
    }

    /// The counts of every queue that has messages, plus `deployed` (the queues consumed now).
    pub async fn stats(&self, deployed: Vec<String>) -> Result<Vec<QueueStats>, MessagingError> {
        self.backend.stats(deployed).await.map_err(|source| MessagingError::Storage {
            action: "read",
            kind: "queues",
            name: "*".into(),
            source: Box::new(source),
        })
    }

    /// A page of dead letters of `queue`, oldest first, after id `after`: up to `limit` (at most
    /// [`MAX_DEAD_LETTERS_PER_LISTING`]) and [`MAX_DEAD_LETTER_PAGE_BYTES`] of bodies.
    pub async fn dead_letters(
        &self,
        queue: &str,
        limit: u32,
        after: Option<String>,
    ) -> Result<DeadLetterPage, MessagingError> {
        validate_queue_name("queue", queue).map_err(MessagingError::InvalidName)?;
        let limit = limit.clamp(1, MAX_DEAD_LETTERS_PER_LISTING);
        let page = self.backend.dead_letters(queue, limit, after, MAX_DEAD_LETTER_PAGE_BYTES).await;
        page.map_err(|source| MessagingError::Storage {
            action: "read the dead letters of",
            kind: "queue",
            name: queue.to_owned(),
            source: Box::new(source),
        })
    }

    /// Moves dead letters of `queue` (all, or those in `ids`) back into it.
    pub async fn redrive(&self, queue: &str, ids: Option<Vec<String>>) -> Result<usize, MessagingError> {
        validate_queue_name("queue", queue).map_err(MessagingError::InvalidName)?;
        let moved = self.backend.redrive(queue, ids).await.map_err(|source| MessagingError::Storage {
            action: "re-drive",
            kind: "queue",
            name: queue.to_owned(),
            source: Box::new(source),
        })?;
        tracing::info!(%queue, messages = moved, "re-drove dead letters");
        self.wake(queue);
        Ok(moved)
    }
}

impl Queues {
    /// Counts one send of `sender` against its rate.
    fn rate_limit(&self, sender: &str) -> Result<(), MessagingError> {
        if self.rate.try_take(sender) {
            return Ok(());
        }
        tracing::warn!(function = %sender, limit = self.rate.rate, "a function's sends were refused: over its rate");
        Err(MessagingError::RateLimited { sender: sender.to_owned(), limit: self.rate.rate })
    }
}

/// Refuses the host's own queues (object triggers'): a function forging a change event there is refused.
fn reserved(kind: &str, name: &str) -> Result<(), MessagingError> {
    let prefix = edgefn_manifest::record::RESERVED_QUEUE_PREFIX;
    if name.starts_with(prefix) {
        return Err(MessagingError::InvalidName(format!(
            "{kind} `{name}` is the host's own (names starting with `{prefix}` carry object changes)"
        )));
    }
    Ok(())
}

impl Messaging for Queues {
    fn send(
        &self,
        sender: String,
        queue: String,
        message: NewMessage,
    ) -> BoxFuture<'_, Result<String, MessagingError>> {
        Box::pin(async move {
            reserved("queue", &queue)?;
            self.rate_limit(&sender)?;
            let ids = self.send_many(&queue, vec![message]).await?;
            Ok(ids.into_iter().next().unwrap_or_default())
        })
    }

    fn publish(
        &self,
        sender: String,
        topic: String,
        body: Vec<u8>,
        correlation_id: Option<String>,
        parent_span: u64,
    ) -> BoxFuture<'_, Result<u32, MessagingError>> {
        Box::pin(async move {
            reserved("topic", &topic)?;
            self.rate_limit(&sender)?;
            self.publish_to_subscribers(&topic, body, correlation_id, parent_span).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_senders_rate_refills_over_time_and_senders_are_apart() {
        let rate = SendRate { rate: 3, buckets: Mutex::default() };
        assert!((0..3).all(|_| rate.try_take("a/f")));
        assert!(!rate.try_take("a/f"), "a fourth send in the same second");
        assert!(rate.try_take("b/g"), "another function has its own rate");
        std::thread::sleep(std::time::Duration::from_millis(400));
        assert!(rate.try_take("a/f"), "a third of a second refills one send");
    }
}
