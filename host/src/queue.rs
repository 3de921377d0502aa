//! Durable queues and topics on SQLite: at-least-once delivery to one consumer function per queue, with leases,
//! per-message outcomes, exponential backoff, dead letters and re-drive.
//!
//! A topic is fan-out over queues: each subscriber function consumes its own queue, named `<topic>@<function>`,
//! and publishing stores one copy in each (one transaction), so every subscriber retries and dead-letters on its
//! own.
//!
//! Each consumer runs one loop ([`run_consumer`]): it waits until a batch is due (`batch_size` messages ready, or
//! the oldest ready one has waited `max_wait_ms`), leases it (the lease outlives the invocation deadline, so only
//! a dead host lets one expire), invokes the function and applies the outcome of each message in one
//! transaction. At most `concurrency` deliveries of a consumer run at once.

mod store;

pub use store::{DeadLetter, LeasedMessage, NewMessage, Outcome, QueueStats, QueueStore};

use crate::deploy::Deployed;
use crate::platform::{Platform, now_ms};
use crate::runtime::SlotWait;
use crate::runtime::guest::{CallContext, Delivery, GuestCall, Message, Settlement};
use edgefn_manifest::record::Delivery as DeliveryPolicy;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

/// How long an idle consumer sleeps before it looks again without being woken (a send wakes it at once).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Retry backoff never waits longer than this.
const MAX_BACKOFF_MS: u64 = 15 * 60 * 1000;

/// A function that consumes a queue (its own, for a topic subscriber).
#[derive(Debug)]
pub struct Consumer {
    pub component: Arc<Deployed>,
    pub function: String,
    /// `component/function`, as logs show it.
    pub label: String,
    /// The queue or topic named in the trigger, as the function sees it.
    pub source: String,
    /// The queue its messages are stored in: `source` for a queue, `<topic>@<function>` for a subscriber.
    pub queue: String,
    pub delivery: DeliveryPolicy,
    pub dead_letter_queue: String,
    /// Woken by sends to `queue`.
    pub wakeup: Notify,
}

impl Consumer {
    /// The wait before retry number `attempts` (1 after the first delivery failed): `backoff_ms`, doubling.
    fn backoff_ms(&self, attempts: u32) -> u64 {
        let doublings = attempts.saturating_sub(1).min(30);
        self.delivery.backoff_ms.saturating_mul(1 << doublings).min(MAX_BACKOFF_MS)
    }

    /// What to do with a message that failed this delivery.
    fn retry_or_dead_letter(&self, message: &LeasedMessage, delay_ms: Option<u64>, error: String, now: i64) -> Outcome {
        if message.attempts > self.delivery.max_retries {
            return Outcome::DeadLetter {
                queue: self.dead_letter_queue.clone(),
                reason: format!(
                    "failed {} deliveries (max_retries = {}); last error: {error}",
                    message.attempts, self.delivery.max_retries
                ),
            };
        }
        let delay = delay_ms.filter(|d| *d > 0).unwrap_or_else(|| self.backoff_ms(message.attempts));
        Outcome::Retry { at: now.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX)), error }
    }
}

/// Delivers `consumer`'s queue until the host stops.
pub async fn run_consumer(platform: Arc<Platform>, consumer: Arc<Consumer>) {
    let permits = Arc::new(Semaphore::new(consumer.delivery.concurrency as usize));
    let batch_size = consumer.delivery.batch_size;
    let max_wait = i64::try_from(consumer.delivery.max_wait_ms).unwrap_or(i64::MAX);
    // The lease outlives the invocation's hard deadline, so it only expires if the host died.
    let lease_ms = platform.runtime().limits().timeout().as_millis() as i64 + 30_000;
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let leased = loop {
            let now = now_ms();
            let (count, oldest) = match platform.queues().ready(&consumer.queue, now, batch_size) {
                Ok(ready) => ready,
                Err(error) => {
                    tracing::error!(queue = %consumer.queue, %error, "failed to read the queue; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let due = count >= batch_size || oldest.is_some_and(|oldest| oldest.saturating_add(max_wait) <= now);
            if count > 0 && due {
                match platform.queues().lease(&consumer.queue, now, batch_size, now + lease_ms) {
                    Ok(leased) if !leased.is_empty() => break leased,
                    Ok(_) => continue,
                    Err(error) => {
                        tracing::error!(queue = %consumer.queue, %error, "failed to lease messages; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            let wake_at = match oldest {
                Some(oldest) => oldest.saturating_add(max_wait),
                None => platform.queues().next_visible(&consumer.queue, now).ok().flatten().unwrap_or(i64::MAX),
            };
            let sleep = Duration::from_millis(wake_at.saturating_sub(now).max(0) as u64).min(IDLE_POLL);
            tokio::select! {
                () = consumer.wakeup.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        };
        let platform = platform.clone();
        let consumer = consumer.clone();
        tokio::spawn(async move {
            deliver(&platform, &consumer, leased).await;
            drop(permit);
        });
    }
}

/// Invokes the consumer with one leased batch and settles every message of it.
async fn deliver(platform: &Arc<Platform>, consumer: &Arc<Consumer>, leased: Vec<LeasedMessage>) {
    let started = Instant::now();
    let delivery = Delivery {
        function: consumer.function.clone(),
        source: consumer.source.clone(),
        messages: leased
            .iter()
            .map(|m| Message {
                id: m.id.to_string(),
                body: m.body.clone(),
                attempts: m.attempts,
                priority: m.priority,
                enqueued_at: m.enqueued_at,
            })
            .collect(),
    };
    let (outcome, settlements) = match platform.registry().get(&consumer.component) {
        Ok((prepared, _start)) => {
            let call = CallContext::new(Some(platform.clone()), vec![consumer.label.clone()]);
            platform
                .runtime()
                .call_guest(
                    &prepared,
                    &consumer.component.env,
                    call,
                    GuestCall::Messages(delivery),
                    SlotWait::Unbounded,
                )
                .await
        }
        Err(error) => (Err(crate::runtime::InvokeError::Host(format!("{error:#}"))), Vec::new()),
    };
    let now = now_ms();
    let failure = match &outcome {
        Ok(Ok(_)) => None,
        Ok(Err(message)) => Some(message.clone()),
        Err(error) => Some(error.to_string()),
    };
    let mut settled: HashMap<String, Settlement> = HashMap::with_capacity(settlements.len());
    for (id, settlement) in settlements {
        // The first settlement of a message counts; later ones are ignored, like a second ack.
        settled.entry(id).or_insert(settlement);
    }
    let (mut acked, mut retried, mut dead) = (0u32, 0u32, 0u32);
    let outcomes: Vec<(i64, i64, Outcome)> = leased
        .iter()
        .map(|message| {
            let outcome = match settled.remove(&message.id.to_string()) {
                Some(Settlement::Ack) => Outcome::Ack,
                Some(Settlement::Retry(delay)) => {
                    consumer.retry_or_dead_letter(message, Some(delay), "the function asked for a retry".into(), now)
                }
                Some(Settlement::DeadLetter(reason)) => {
                    Outcome::DeadLetter { queue: consumer.dead_letter_queue.clone(), reason }
                }
                None => match &failure {
                    None => Outcome::Ack,
                    Some(error) => consumer.retry_or_dead_letter(message, None, error.clone(), now),
                },
            };
            match outcome {
                Outcome::Ack => acked += 1,
                Outcome::Retry { .. } => retried += 1,
                Outcome::DeadLetter { .. } => dead += 1,
            }
            (message.id, message.lease_until, outcome)
        })
        .collect();
    if !settled.is_empty() {
        tracing::warn!(function = %consumer.label, ids = ?settled.keys().collect::<Vec<_>>(),
            "the function settled messages that are not in its batch; ignored");
    }
    match platform.queues().settle(&outcomes, now) {
        Ok(0) => {}
        // The lease expired while the delivery waited or ran (the messages were handed out again) or they were
        // re-driven meanwhile: whoever holds them now settles them.
        Ok(stale) => tracing::warn!(function = %consumer.label, messages = stale,
            "outcomes ignored: the messages' lease had expired or they were re-driven"),
        // The leases stay: the messages come back when they expire. Nothing is lost, some may be delivered twice.
        Err(error) => tracing::error!(function = %consumer.label, %error, "failed to record the outcome of a delivery"),
    }
    platform.record_delivery(&consumer.queue, acked, retried, dead);
    let duration_ms = started.elapsed().as_millis() as u64;
    match &failure {
        None => tracing::info!(function = %consumer.label, queue = %consumer.queue, messages = leased.len(), acked,
            retried, dead, duration_ms, "delivery ok"),
        Some(error) => tracing::warn!(function = %consumer.label, queue = %consumer.queue, messages = leased.len(),
            acked, retried, dead, duration_ms, %error, "delivery failed"),
    }
    if retried > 0 {
        // Our own loop may be asleep until its idle poll; the retries have their own times.
        consumer.wakeup.notify_one();
    }
    if dead > 0 {
        platform.wake(&consumer.dead_letter_queue);
    }
}
