//! Durable queues and topics on JetStream (layout in the parent module's docs).
//!
//! - **Ids and tokens.** A message's id is its stream sequence; a delivery's token is the reply subject JetStream
//!   gave it, which is what acks, naks (retry with a delay) and in-progress renewals are published to.
//! - **Attempts** are JetStream's delivery count: a pull is a delivery, including one whose node died before it
//!   settled.
//! - **Priority** is three levels (JetStream has no per-message priority): above zero, zero, below zero, each with
//!   its own consumer, pulled highest first. Within a batch, messages are ordered by their exact priority.
//! - **Dead letters** are copied to the dead-letter queue's subject (with their origin, attempts and error in
//!   headers) before the original is acked, so none is lost between the two; a crash between them may leave two.
//! - **Capacity** is the stream's per-subject message limit (one subject per queue and level), refusing a send
//!   that would pass it; a send of many is one publish each, so a refusal part-way keeps the ones before it.
//! - **Concurrency** is per node: each node runs up to `concurrency` deliveries of a consumer at once.

use super::lease::{self, ReadyTimes};
use super::wire::{
    self, ATTEMPTS, CORRELATION_ID, ENQUEUED_AT, ERROR, LATER, LEVELS, MSG_ID, NOT_BEFORE, ORIGIN, PARENT_SPAN,
    PRIORITY, header, header_text, level, queue_subject, wake_subject, without,
};
use super::{Cluster, cluster_error, consumer_name, from_subject_token, publish_stored, subject_token};
use crate::storage::backends::{
    BatchPolicy, DeadLetterPage, LeasedMessage, NewMessage, Outcome, QueueBackend, QueueCapacity, QueueFull,
    QueueStats, Sent, Settle,
};
use crate::storage::{StorageError, now_ms};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, context::PublishErrorKind};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt as _, StreamExt as _};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const QUEUE_STREAM: &str = "EDGEFN_QUEUES";
const TOPIC_STREAM: &str = "EDGEFN_TOPICS";
/// How long an idle consumer sleeps before it pulls again without being woken.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// The longest a pull may go unanswered (the server died or stalled with it in flight) before it counts as failed.
const PULL_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages one consumer may have pulled and not settled, over every node.
const MAX_ACK_PENDING: i64 = 100_000;

/// The subscriber queues of each topic.
type SubscribersByTopic = HashMap<String, Vec<String>>;

/// A message this node pulled and has not settled.
#[derive(Debug)]
struct Pulled {
    message: jetstream::Message,
    pulled_at: Instant,
}

/// What this node keeps of one queue it consumes.
#[derive(Debug, Default)]
struct Local {
    /// The consumers to pull from, highest priority first (one, for a topic subscriber).
    consumers: Vec<PullConsumer>,
    /// A plain queue's `later` consumer.
    later: Option<PullConsumer>,
    /// Wake-ups from senders on any node.
    wake: Option<async_nats::Subscriber>,
    /// Pulled for the next batch.
    buffer: Vec<Pulled>,
}

/// See the module docs.
#[derive(Debug)]
pub struct JetStreamQueues {
    pub(super) cluster: Cluster,
    pub(super) queues: stream::Stream,
    pub(super) topics: stream::Stream,
    ack_wait: Duration,
    /// The queues this node consumes.
    local: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Local>>>>,
    /// Topic of each subscriber queue this node knows.
    pub(super) subscribers: Mutex<HashMap<String, String>>,
    /// Deliveries pulled and not settled yet, by token: a dead letter needs the original to copy.
    in_flight: Mutex<HashMap<String, jetstream::Message>>,
    /// Subscriber counts by topic, refreshed at most once a second.
    topic_counts: Mutex<Option<(Instant, SubscribersByTopic)>>,
    /// When this node next expects a message of each queue to become ready: a retry it asked for, or a delayed
    /// message. Apart from `local`, which a waiting consumer holds: a settle never waits for it.
    next_ready: Mutex<ReadyTimes>,
}

impl JetStreamQueues {
    /// Creates (or finds) the streams. `capacity` bounds each queue level; `max_message_bytes` each message.
    pub async fn open(
        cluster: Cluster,
        ack_wait: Duration,
        capacity: QueueCapacity,
        max_message_bytes: usize,
    ) -> Result<Self, StorageError> {
        let queues = cluster
            .jetstream
            .get_or_create_stream(stream::Config {
                name: QUEUE_STREAM.into(),
                subjects: vec!["edgefn.q.>".into()],
                retention: RetentionPolicy::WorkQueue,
                storage: StorageType::File,
                num_replicas: cluster.replicas,
                max_messages_per_subject: i64::try_from(capacity.max_messages).unwrap_or(i64::MAX),
                discard: DiscardPolicy::New,
                discard_new_per_subject: true,
                max_message_size: i32::try_from(max_message_bytes.saturating_add(4096)).unwrap_or(i32::MAX),
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(|error| cluster_error(format!("create stream {QUEUE_STREAM}"), error))?;
        let topics = cluster
            .jetstream
            .get_or_create_stream(stream::Config {
                name: TOPIC_STREAM.into(),
                subjects: vec!["edgefn.t.>".into()],
                retention: RetentionPolicy::Interest,
                storage: StorageType::File,
                num_replicas: cluster.replicas,
                max_message_size: i32::try_from(max_message_bytes.saturating_add(4096)).unwrap_or(i32::MAX),
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(|error| cluster_error(format!("create stream {TOPIC_STREAM}"), error))?;
        Ok(Self {
            cluster,
            queues,
            topics,
            ack_wait,
            local: Mutex::default(),
            subscribers: Mutex::default(),
            in_flight: Mutex::default(),
            topic_counts: Mutex::default(),
            next_ready: Mutex::default(),
        })
    }

    fn local(&self, queue: &str) -> Arc<tokio::sync::Mutex<Local>> {
        self.local.lock().unwrap_or_else(|p| p.into_inner()).entry(queue.to_owned()).or_default().clone()
    }

    /// Remembers that a message of `queue` becomes ready at `at`.
    fn expect_ready(&self, queue: &str, at: i64) {
        self.next_ready.lock().unwrap_or_else(|p| p.into_inner()).expect(queue, at);
    }

    /// When a message of `queue` is next expected to become ready; forgotten once that time has come.
    fn next_ready_at(&self, queue: &str) -> Option<i64> {
        self.next_ready.lock().unwrap_or_else(|p| p.into_inner()).next(queue, now_ms())
    }

    fn topic_of(&self, queue: &str) -> Option<String> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner()).get(queue).cloned()
    }

    fn pull_config(&self, durable: String, filter: String, description: &str) -> pull::Config {
        pull::Config {
            durable_name: Some(durable),
            description: Some(description.to_owned()),
            filter_subject: filter,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            // Dead letters are ours to decide (`max_retries`): JetStream never gives up on a message by itself.
            max_deliver: -1,
            max_ack_pending: MAX_ACK_PENDING,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        }
    }

    /// The durable consumer of `topic`'s subscriber `queue`.
    async fn subscriber_consumer(&self, topic: &str, queue: &str) -> Result<PullConsumer, StorageError> {
        let durable = format!("sub_{}", consumer_name(queue));
        let mut config = self.pull_config(durable.clone(), format!("edgefn.t.{}", subject_token(topic)), queue);
        // A subscriber gets what is published once it exists, as with SNS.
        config.deliver_policy = DeliverPolicy::New;
        self.topics
            .get_or_create_consumer(&durable, config)
            .await
            .map_err(|error| cluster_error(format!("subscribe queue `{queue}` to topic `{topic}`"), error))
    }

    /// Finds or creates the consumers and the wake-up subscription of `queue`, once.
    async fn ensure_consumers(&self, queue: &str, local: &mut Local) -> Result<(), StorageError> {
        if !local.consumers.is_empty() {
            return Ok(());
        }
        if let Some(topic) = self.topic_of(queue) {
            local.consumers = vec![self.subscriber_consumer(&topic, queue).await?];
        } else {
            let name = consumer_name(queue);
            let mut consumers = Vec::new();
            for level in LEVELS.iter().chain([&LATER]) {
                let durable = format!("q_{name}_{level}");
                let filter = format!("edgefn.q.{}.{level}.*", subject_token(queue));
                let consumer = self
                    .queues
                    .get_or_create_consumer(&durable, self.pull_config(durable.clone(), filter, queue))
                    .await
                    .map_err(|error| cluster_error(format!("create the consumer of queue `{queue}`"), error))?;
                consumers.push(consumer);
            }
            local.later = consumers.pop();
            local.consumers = consumers;
        }
        let wake = self.cluster.client.subscribe(wake_subject(queue)).await;
        local.wake = Some(wake.map_err(|error| cluster_error(format!("listen for sends to `{queue}`"), error))?);
        Ok(())
    }

    /// Pulls what is ready now, up to `limit`, from `consumer` (without waiting for more). Bounded by
    /// [`PULL_TIMEOUT`]: a pull in flight when the server died or stalled is never answered, and waiting for it
    /// would stop this queue's consumer for good (it holds the queue's lock); failing lets the trigger log it and
    /// pull again once the server is back.
    async fn pull_now(consumer: &PullConsumer, limit: usize) -> Result<Vec<jetstream::Message>, StorageError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let pull = async {
            let mut batch = consumer
                .fetch()
                .max_messages(limit)
                .messages()
                .await
                .map_err(|error| cluster_error("pull messages", error))?;
            let mut pulled = Vec::new();
            while let Some(message) = batch.next().await {
                pulled.push(message.map_err(|error| cluster_error("pull messages", error))?);
            }
            Ok(pulled)
        };
        tokio::time::timeout(PULL_TIMEOUT, pull).await.unwrap_or_else(|_elapsed| {
            Err(cluster_error("pull messages", format!("no answer within {PULL_TIMEOUT:?}")))
        })
    }

    /// Moves the due messages of `queue`'s `later` level to their real level and puts the others back until they
    /// are due.
    async fn move_due(&self, queue: &str, local: &mut Local) -> Result<(), StorageError> {
        let Some(later) = &local.later else { return Ok(()) };
        let pulled = Self::pull_now(later, 1_000).await?;
        let now = now_ms();
        for message in pulled {
            let headers = message.message.headers.as_ref();
            let due_at: i64 = header(headers, NOT_BEFORE).unwrap_or(now);
            if due_at > now {
                let wait = Duration::from_millis((due_at - now) as u64);
                self.expect_ready(queue, due_at);
                message
                    .ack_with(jetstream::AckKind::Nak(Some(wait)))
                    .await
                    .map_err(|error| cluster_error(format!("put back a delayed message of `{queue}`"), error))?;
                continue;
            }
            let priority: i32 = header(headers, PRIORITY).unwrap_or(0);
            let mut moved_headers = without(headers, &[NOT_BEFORE]);
            // Moving twice (a crash between the publish and the ack) stores it once.
            let sequence = message.info().map(|info| info.stream_sequence).unwrap_or_default();
            moved_headers.insert(MSG_ID, format!("edgefn-later-{sequence}").as_str());
            let subject = queue_subject(queue, level(priority), None);
            publish_stored(&self.cluster.jetstream, subject, moved_headers, message.message.payload.clone())
                .await
                .map_err(|error| cluster_error(format!("move a delayed message of `{queue}`"), error))?;
            message.ack().await.map_err(|error| cluster_error(format!("ack a moved message of `{queue}`"), error))?;
        }
        Ok(())
    }

    /// The subscriber queues of every topic, from the topic stream's consumers (their description is the queue).
    async fn subscribers_by_topic(&self, fresh: bool) -> Result<SubscribersByTopic, StorageError> {
        if !fresh {
            let counts = self.topic_counts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, counts)) = &*counts
                && at.elapsed() < Duration::from_secs(1)
            {
                return Ok(counts.clone());
            }
        }
        let mut by_topic = SubscribersByTopic::new();
        let mut consumers = self.topics.consumers();
        while let Some(info) = consumers.next().await {
            let info = info.map_err(|error| cluster_error("list topic subscribers", error))?;
            let Some(topic) = info.config.filter_subject.strip_prefix("edgefn.t.") else { continue };
            let queue = info.config.description.clone().unwrap_or_default();
            by_topic.entry(from_subject_token(topic)).or_default().push(queue);
        }
        *self.topic_counts.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), by_topic.clone()));
        Ok(by_topic)
    }

    pub(super) async fn wake(&self, queue: &str) {
        if let Err(error) = self.cluster.client.publish(wake_subject(queue), bytes::Bytes::new()).await {
            tracing::debug!(%queue, %error, "failed to wake the consumers of a queue; they pull at their next poll");
        }
    }
}

/// Whether a refused publish means the queue level is full.
fn is_full(error: &async_nats::jetstream::context::PublishError) -> bool {
    matches!(error.kind(), PublishErrorKind::Other) && error.to_string().contains("maximum messages")
}

impl QueueBackend for JetStreamQueues {
    fn send(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
        capacity: QueueCapacity,
    ) -> BoxFuture<'_, Result<Sent<Vec<String>>, StorageError>> {
        let queue = queue.to_owned();
        Box::pin(async move {
            let now = now_ms();
            // Publish them all, then wait for the stream's acks: one round trip for the lot, not one each.
            let mut pending = Vec::with_capacity(messages.len());
            for message in messages {
                let mut headers =
                    wire::headers_of(message.priority, message.correlation_id.as_deref(), message.parent_span, now);
                let subject = if message.delay_ms > 0 {
                    let due = now.saturating_add(i64::try_from(message.delay_ms).unwrap_or(i64::MAX));
                    headers.insert(NOT_BEFORE, due.to_string().as_str());
                    queue_subject(&queue, LATER, None)
                } else {
                    queue_subject(&queue, level(message.priority), None)
                };
                let sent = self.cluster.jetstream.publish_with_headers(subject, headers, message.body.into()).await;
                pending.push(sent.map_err(|error| cluster_error(format!("send to queue `{queue}`"), error))?);
            }
            let mut ids = Vec::with_capacity(pending.len());
            let mut full = false;
            for ack in pending {
                match ack.await {
                    Ok(ack) => ids.push(ack.sequence.to_string()),
                    Err(error) if is_full(&error) => full = true,
                    Err(error) => return Err(cluster_error(format!("send to queue `{queue}`"), error)),
                }
            }
            if !ids.is_empty() {
                self.wake(&queue).await;
            }
            if full {
                return Ok(Err(QueueFull { queue, messages: capacity.max_messages, bytes: 0 }));
            }
            Ok(Ok(ids))
        })
    }

    fn publish(
        &self,
        topic: &str,
        body: Vec<u8>,
        correlation_id: Option<String>,
        parent_span: u64,
        _capacity: QueueCapacity,
    ) -> BoxFuture<'_, Result<Sent<Vec<String>>, StorageError>> {
        let topic = topic.to_owned();
        Box::pin(async move {
            // Published whatever the count says: with no subscriber the stream keeps nothing (interest retention),
            // and a subscriber newer than the cached count still gets it.
            let headers = wire::headers_of(0, correlation_id.as_deref(), parent_span, now_ms());
            let subject = format!("edgefn.t.{}", subject_token(&topic));
            publish_stored(&self.cluster.jetstream, subject, headers, body.into())
                .await
                .map_err(|error| cluster_error(format!("publish to topic `{topic}`"), error))?;
            let mut subscribers = self.subscribers_by_topic(false).await?.remove(&topic).unwrap_or_default();
            if subscribers.is_empty() {
                subscribers = self.subscribers_by_topic(true).await?.remove(&topic).unwrap_or_default();
            }
            for queue in &subscribers {
                self.wake(queue).await;
            }
            Ok(Ok(subscribers))
        })
    }

    fn subscribe(&self, topic: &str, queue: &str) {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner()).insert(queue.to_owned(), topic.to_owned());
    }

    fn unsubscribe(&self, _topic: &str, _queue: &str) {
        // The durable subscription is the cluster's: another node may still consume it, and what was published to
        // it waits there for whichever node deploys the subscriber next.
    }

    fn wait_until_due(
        &self,
        queue: &str,
        policy: BatchPolicy,
        waker: Arc<Notify>,
    ) -> BoxFuture<'_, Result<bool, StorageError>> {
        let queue = queue.to_owned();
        Box::pin(async move {
            let local = self.local(&queue);
            let mut local = local.lock().await;
            self.ensure_consumers(&queue, &mut local).await?;
            let next_ready_at = self.next_ready_at(&queue);
            self.move_due(&queue, &mut local).await?;
            let mut want = (policy.batch_size as usize).saturating_sub(local.buffer.len());
            let mut pulled_any = false;
            for consumer in local.consumers.clone() {
                if want == 0 {
                    break;
                }
                let pulled = Self::pull_now(&consumer, want).await?;
                want -= pulled.len();
                pulled_any |= !pulled.is_empty();
                let pulled_at = Instant::now();
                local.buffer.extend(pulled.into_iter().map(|message| Pulled { message, pulled_at }));
            }
            let oldest_waited = local.buffer.first().map(|first| first.pulled_at.elapsed());
            if lease::batch_is_due(local.buffer.len(), oldest_waited, policy) {
                return Ok(true);
            }
            if pulled_any {
                return Ok(false);
            }
            // Nothing new: sleep until the partial batch is due, a retry or delay this node knows of is, a send
            // wakes us, or the idle poll.
            let next_ready_in_ms = next_ready_at.map(|at| at.saturating_sub(now_ms()));
            let sleep = lease::idle_sleep(IDLE_POLL, oldest_waited, next_ready_in_ms, policy);
            let Some(wake) = local.wake.as_mut() else { return Ok(false) };
            tokio::select! {
                _ = wake.next() => {
                    // Many sends, one pull: take the wake-ups already here too.
                    while let Some(Some(_)) = wake.next().now_or_never() {}
                }
                () = waker.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
            Ok(false)
        })
    }

    fn lease_if_due(
        &self,
        queue: &str,
        policy: BatchPolicy,
    ) -> BoxFuture<'_, Result<Option<Vec<LeasedMessage>>, StorageError>> {
        let queue = queue.to_owned();
        Box::pin(async move {
            let local = self.local(&queue);
            let mut local = local.lock().await;
            if local.buffer.is_empty() {
                return Ok(None);
            }
            let take = local.buffer.len().min(policy.batch_size as usize);
            let mut batch: Vec<Pulled> = local.buffer.drain(..take).collect();
            drop(local);
            // The wait for an instance slot counted against the ack wait: renew what waited long.
            for pulled in &batch {
                if lease::needs_renewal(pulled.pulled_at.elapsed(), self.ack_wait) {
                    let _ = pulled.message.ack_with(jetstream::AckKind::Progress).await;
                }
            }
            let mut leased = Vec::with_capacity(batch.len());
            let mut in_flight = Vec::with_capacity(batch.len());
            for Pulled { message, .. } in batch.drain(..) {
                let Some(token) = message.message.reply.as_ref().map(|reply| reply.to_string()) else { continue };
                let (id, attempts) = match message.info() {
                    Ok(info) => (info.stream_sequence.to_string(), u32::try_from(info.delivered).unwrap_or(u32::MAX)),
                    Err(_) => continue,
                };
                let headers = message.message.headers.as_ref();
                leased.push(LeasedMessage {
                    id,
                    token: token.clone(),
                    body: message.message.payload.to_vec(),
                    attempts,
                    priority: header(headers, PRIORITY).unwrap_or(0),
                    enqueued_at: header(headers, ENQUEUED_AT).unwrap_or(0),
                    correlation_id: header_text(headers, CORRELATION_ID),
                    parent_span: header_text(headers, PARENT_SPAN)
                        .and_then(|span| u64::from_str_radix(&span, 16).ok())
                        .unwrap_or(0),
                });
                in_flight.push((token, message));
            }
            self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).extend(in_flight);
            lease::order_batch(&mut leased);
            Ok(Some(leased))
        })
    }

    fn renew_every(&self) -> Option<Duration> {
        Some(self.ack_wait / 3)
    }

    fn renew(&self, tokens: Vec<String>) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            for token in tokens {
                self.cluster
                    .client
                    .publish(token, "+WPI".into())
                    .await
                    .map_err(|error| cluster_error("renew a lease", error))?;
            }
            Ok(())
        })
    }

    fn settle(&self, queue: &str, outcomes: Vec<Settle>) -> BoxFuture<'_, Result<usize, StorageError>> {
        let queue = queue.to_owned();
        Box::pin(async move {
            let mut stale = 0;
            for Settle { token, outcome, .. } in outcomes {
                let original = self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&token);
                let Some(original) = original else {
                    stale += 1;
                    continue;
                };
                let reply = match outcome {
                    Outcome::Ack => "+ACK".to_owned(),
                    Outcome::Retry { at, .. } => {
                        self.expect_ready(&queue, at);
                        lease::retry_reply(at, now_ms())
                    }
                    Outcome::DeadLetter { queue: dead_letter_queue, reason } => {
                        // Not the id it was stored under (a re-drive's): the copy would be taken for a duplicate
                        // of it and dropped.
                        let mut headers = without(original.message.headers.as_ref(), &[MSG_ID]);
                        // A dead letter keeps the queue it first died in.
                        let origin = header_text(Some(&headers), ORIGIN).unwrap_or_else(|| queue.clone());
                        let (sequence, attempts) =
                            original.info().map(|info| (info.stream_sequence, info.delivered)).unwrap_or_default();
                        // Dead-lettering twice (a crash between the copy and the ack) stores one copy.
                        headers.insert(MSG_ID, format!("edgefn-dead-{sequence}").as_str());
                        let priority: i32 = header(Some(&headers), PRIORITY).unwrap_or(0);
                        headers.insert(ORIGIN, origin.as_str());
                        headers.insert(ERROR, reason.as_str());
                        headers.insert(ATTEMPTS, attempts.to_string().as_str());
                        let subject = queue_subject(&dead_letter_queue, level(priority), Some(&origin));
                        publish_stored(&self.cluster.jetstream, subject, headers, original.message.payload.clone())
                            .await
                            .map_err(|error| cluster_error(format!("dead-letter to `{dead_letter_queue}`"), error))?;
                        self.wake(&dead_letter_queue).await;
                        "+ACK".to_owned()
                    }
                };
                self.cluster
                    .client
                    .publish(token, reply.into())
                    .await
                    .map_err(|error| cluster_error(format!("settle a message of `{queue}`"), error))?;
            }
            // The outcomes are on the wire before the delivery counts as settled.
            self.cluster.client.flush().await.map_err(|error| cluster_error("settle messages", error))?;
            Ok(stale)
        })
    }

    fn release(&self, queue: &str) -> BoxFuture<'_, Result<(), StorageError>> {
        let queue = queue.to_owned();
        Box::pin(async move {
            let local = self.local(&queue);
            let buffered: Vec<Pulled> = local.lock().await.buffer.drain(..).collect();
            for pulled in buffered {
                pulled
                    .message
                    .ack_with(jetstream::AckKind::Nak(None))
                    .await
                    .map_err(|error| cluster_error(format!("give back a message of `{queue}`"), error))?;
            }
            Ok(())
        })
    }

    fn stats(&self, also: Vec<String>) -> BoxFuture<'_, Result<Vec<QueueStats>, StorageError>> {
        Box::pin(self.stats_now(also))
    }

    fn dead_letters(
        &self,
        origin_queue: &str,
        limit: u32,
        after: Option<String>,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<DeadLetterPage, StorageError>> {
        let origin_queue = origin_queue.to_owned();
        Box::pin(async move { self.dead_letter_page(&origin_queue, limit, after, max_bytes).await })
    }

    fn redrive(&self, origin_queue: &str, ids: Option<Vec<String>>) -> BoxFuture<'_, Result<usize, StorageError>> {
        let origin_queue = origin_queue.to_owned();
        Box::pin(async move { self.redrive_now(&origin_queue, ids).await })
    }
}
