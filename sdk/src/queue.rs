//! Durable queues: consume with `#[function(trigger = queue("orders"))] fn process(batch: Batch<Order>)`, produce
//! with [`send`].
//!
//! Delivery is at least once. Each message can be settled on its own: [`Message::ack`], [`Message::retry_after`],
//! [`Message::dead_letter`]. When the function returns `Ok`, every message not settled otherwise is acked; when it
//! returns `Err`, traps or times out, only those are retried, with exponential backoff, and a message that used up
//! its `max_retries` goes to the dead-letter queue. A message whose body does not decode as `T` is dead-lettered
//! with the decode error before the function sees the batch: it would fail the same way on every retry.

use crate::Error;
use crate::host::{self, Settlement};

/// How a message was settled (see [`crate::testing::settlements`]).
pub use crate::host::Settlement as Settled;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How a message body is encoded: JSON for any serde type, as-is for [`Raw`].
pub trait MessageBody: Sized {
    /// Decodes a body; the error is the dead-letter reason.
    fn decode(bytes: Vec<u8>) -> Result<Self, String>;
}

impl<T: DeserializeOwned> MessageBody for T {
    fn decode(bytes: Vec<u8>) -> Result<Self, String> {
        crate::error::from_json(&bytes)
            .map_err(|e| format!("the body is not a valid {}: {e}", std::any::type_name::<T>()))
    }
}

/// A message body taken as raw bytes: `Batch<Raw>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw(pub Vec<u8>);

impl MessageBody for Raw {
    fn decode(bytes: Vec<u8>) -> Result<Self, String> {
        Ok(Raw(bytes))
    }
}

impl std::ops::Deref for Raw {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// A message as it arrives from the host, before its body is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub id: String,
    pub body: Vec<u8>,
    pub attempts: u32,
    pub priority: i32,
    pub enqueued_at_ms: i64,
    pub correlation_id: String,
}

/// A stream record's id, as the host writes it: `stream:SHARD:SEQUENCE:PARTITION_KEY`.
fn stream_position(id: &str) -> Option<(u32, u64, &str)> {
    let mut parts = id.strip_prefix("stream:")?.splitn(3, ':');
    let shard = parts.next()?.parse().ok()?;
    let sequence = parts.next()?.parse().ok()?;
    Some((shard, sequence, parts.next()?))
}

/// One delivered message.
#[derive(Debug)]
pub struct Message<T> {
    id: String,
    body: T,
    attempts: u32,
    priority: i32,
    enqueued_at_ms: i64,
    correlation_id: String,
    settled: Cell<bool>,
}

impl<T> Message<T> {
    /// The message's id, stable across redeliveries.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// For a stream record: its partition key (`None` for a queue or topic message).
    pub fn partition_key(&self) -> Option<&str> {
        stream_position(&self.id).map(|(_, _, key)| key)
    }

    /// For a stream record: its shard and its sequence number in the shard (`None` for a queue or topic message).
    pub fn stream_position(&self) -> Option<crate::stream::Position> {
        stream_position(&self.id).map(|(shard, sequence, _)| crate::stream::Position { shard, sequence })
    }

    /// The correlation id of the work that sent it (the HTTP request, cron run or delivery), empty if it had none:
    /// `edgefn logs --id` shows everything that work did.
    pub fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// The decoded body.
    pub fn body(&self) -> &T {
        &self.body
    }

    /// How many times it has been delivered, this delivery included (1 the first time).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn priority(&self) -> i32 {
        self.priority
    }

    /// When it was sent.
    pub fn enqueued_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.enqueued_at_ms.max(0) as u64)
    }

    /// Done with it: it is deleted, whatever the function does next.
    pub fn ack(&self) {
        self.settle(Settlement::Ack);
    }

    /// Deliver it again after the consumer's backoff. Counts as a failed attempt.
    pub fn retry(&self) {
        self.settle(Settlement::Retry(0));
    }

    /// Deliver it again no earlier than `delay` from now. Counts as a failed attempt.
    pub fn retry_after(&self, delay: Duration) {
        self.settle(Settlement::Retry((delay.as_millis() as u64).max(1)));
    }

    /// Move it to the dead-letter queue now; `reason` is kept with it.
    pub fn dead_letter(&self, reason: impl Into<String>) {
        self.settle(Settlement::DeadLetter(reason.into()));
    }

    /// Whether it was acked, retried or dead-lettered in this delivery.
    pub fn is_settled(&self) -> bool {
        self.settled.get()
    }

    fn settle(&self, settlement: Settlement) {
        self.settled.set(true);
        host::settle(&self.id, settlement);
    }
}

/// The messages of one delivery, in priority order (higher first, then oldest first).
#[derive(Debug)]
pub struct Batch<T> {
    source: String,
    messages: Vec<Message<T>>,
}

impl<T: MessageBody> Batch<T> {
    /// Decodes a delivery. Messages whose body does not decode are dead-lettered here, with the reason.
    pub fn decode(source: String, raw: Vec<RawMessage>) -> Self {
        let mut messages = Vec::with_capacity(raw.len());
        for message in raw {
            match T::decode(message.body) {
                Ok(body) => messages.push(Message {
                    id: message.id,
                    body,
                    attempts: message.attempts,
                    priority: message.priority,
                    enqueued_at_ms: message.enqueued_at_ms,
                    correlation_id: message.correlation_id,
                    settled: Cell::new(false),
                }),
                Err(reason) => host::settle(&message.id, Settlement::DeadLetter(reason)),
            }
        }
        Self { source, messages }
    }
}

impl<T> Batch<T> {
    /// The queue (or topic) the messages came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Message<T>> {
        self.messages.iter()
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

impl<'a, T> IntoIterator for &'a Batch<T> {
    type Item = &'a Message<T>;
    type IntoIter = std::slice::Iter<'a, Message<T>>;
    fn into_iter(self) -> Self::IntoIter {
        self.messages.iter()
    }
}

/// Delivery options of [`send_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOptions {
    delay: Duration,
    priority: i32,
}

impl SendOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Deliver no earlier than `delay` from now.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Higher priorities are delivered first (default 0).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
}

/// Sends `value` as JSON to `queue`; returns the message id once it is stored durably.
pub fn send<T: Serialize + ?Sized>(queue: &str, value: &T) -> Result<String, Error> {
    send_with(queue, value, SendOptions::default())
}

/// [`send`] with a delay or a priority.
pub fn send_with<T: Serialize + ?Sized>(queue: &str, value: &T, options: SendOptions) -> Result<String, Error> {
    let body = serde_json::to_vec(value).map_err(|e| Error::internal(format!("failed to encode the message: {e}")))?;
    send_bytes(queue, &body, options)
}

/// Sends raw bytes to `queue` (consume them with `Batch<Raw>`).
pub fn send_bytes(queue: &str, body: &[u8], options: SendOptions) -> Result<String, Error> {
    host::send(queue, body, options.delay.as_millis() as u64, options.priority).map_err(Error::internal)
}
