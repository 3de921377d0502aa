//! The default queue backend: the queue tables of the data dir's SQLite file (`storage::queue`), for one node.
//!
//! Ids are row ids and a lease's token is its end (`lease_until`), both as decimal text. Topics fan out in the
//! publishing transaction to the subscriber queues this node knows, so subscriptions live in memory here: the queue
//! trigger renews them at every start.

use super::{
    BatchPolicy, DeadLetterPage, LeasedMessage, NewMessage, QueueBackend, QueueCapacity, QueueStats, Sent, Settle,
};
use crate::storage::queue::{LeasedRow, QueueDb, SettleRow};
use crate::storage::{StorageError, now_ms};
use futures_util::future::BoxFuture;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Notify;

/// How long an idle consumer sleeps before it looks again without being woken (a send wakes it at once).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// See the module docs.
#[derive(Debug)]
pub struct SqliteQueues {
    db: QueueDb,
    /// Subscriber queues by topic.
    subscriptions: RwLock<HashMap<String, BTreeSet<String>>>,
}

impl SqliteQueues {
    /// The queues of `db`. The data dir is locked to this process, so a lease left in it belongs to an invocation
    /// that died with the previous one: those messages are made ready again here.
    pub async fn open(db: QueueDb) -> Result<Self, StorageError> {
        let released = db.release_all_leases(now_ms()).await?;
        if released > 0 {
            tracing::warn!(messages = released, "redelivering messages that were in flight when the host stopped");
        }
        Ok(Self { db, subscriptions: RwLock::default() })
    }

    fn subscribers(&self, topic: &str) -> Vec<String> {
        let subscriptions = self.subscriptions.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        subscriptions.get(topic).map(|queues| queues.iter().cloned().collect()).unwrap_or_default()
    }
}

fn leased(row: LeasedRow) -> LeasedMessage {
    LeasedMessage {
        id: row.id.to_string(),
        token: row.lease_until.to_string(),
        body: row.body,
        attempts: row.attempts,
        priority: row.priority,
        enqueued_at: row.enqueued_at,
        correlation_id: row.correlation_id,
        parent_span: row.parent_span,
    }
}

impl QueueBackend for SqliteQueues {
    fn send(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
        capacity: QueueCapacity,
    ) -> BoxFuture<'_, Result<Sent<Vec<String>>, StorageError>> {
        let queue = queue.to_owned();
        Box::pin(async move {
            let ids = self.db.send(&queue, messages, now_ms(), capacity).await?;
            Ok(ids.map(|ids| ids.into_iter().map(|id| id.to_string()).collect()))
        })
    }

    fn publish(
        &self,
        topic: &str,
        body: Vec<u8>,
        correlation_id: Option<String>,
        parent_span: u64,
        capacity: QueueCapacity,
    ) -> BoxFuture<'_, Result<Sent<Vec<String>>, StorageError>> {
        let queues = self.subscribers(topic);
        Box::pin(async move {
            if queues.is_empty() {
                return Ok(Ok(queues));
            }
            let stored = self.db.fan_out(queues.clone(), body, correlation_id, parent_span, now_ms(), capacity).await?;
            Ok(stored.map(|()| queues))
        })
    }

    fn subscribe(&self, topic: &str, queue: &str) {
        let mut subscriptions = self.subscriptions.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        subscriptions.entry(topic.to_owned()).or_default().insert(queue.to_owned());
    }

    fn unsubscribe(&self, topic: &str, queue: &str) {
        let mut subscriptions = self.subscriptions.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(subscribers) = subscriptions.get_mut(topic) {
            subscribers.remove(queue);
            if subscribers.is_empty() {
                subscriptions.remove(topic);
            }
        }
    }

    fn wait_until_due(
        &self,
        queue: &str,
        policy: BatchPolicy,
        waker: Arc<Notify>,
    ) -> BoxFuture<'_, Result<bool, StorageError>> {
        let queue = queue.to_owned();
        Box::pin(async move {
            let max_wait = i64::try_from(policy.max_wait_ms).unwrap_or(i64::MAX);
            let now = now_ms();
            let readiness = self.db.readiness(&queue, now, policy.batch_size).await?;
            let due = readiness.ready >= policy.batch_size
                || readiness.oldest_ready.is_some_and(|oldest| oldest.saturating_add(max_wait) <= now);
            if readiness.ready > 0 && due {
                return Ok(true);
            }
            let wake_at = match readiness.oldest_ready {
                Some(oldest) => oldest.saturating_add(max_wait),
                None => readiness.next_visible.unwrap_or(i64::MAX),
            };
            let sleep = Duration::from_millis(wake_at.saturating_sub(now).max(0) as u64).min(IDLE_POLL);
            tokio::select! {
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
            let now = now_ms();
            let max_wait = i64::try_from(policy.max_wait_ms).unwrap_or(i64::MAX);
            let lease_until = now.saturating_add(i64::try_from(policy.lease_ms).unwrap_or(i64::MAX));
            let rows = self.db.lease_if_due(&queue, now, policy.batch_size, max_wait, lease_until).await?;
            Ok(rows.map(|rows| rows.into_iter().map(leased).collect()))
        })
    }

    fn renew_every(&self) -> Option<Duration> {
        // A lease outlives the invocation's deadline: it only expires when the host died.
        None
    }

    fn renew(&self, _tokens: Vec<String>) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async { Ok(()) })
    }

    fn settle(&self, _queue: &str, outcomes: Vec<Settle>) -> BoxFuture<'_, Result<usize, StorageError>> {
        Box::pin(async move {
            // A token that is not ours cannot match a lease: it counts as stale, like an expired one.
            let mut unreadable = 0;
            let rows: Vec<SettleRow> = outcomes
                .into_iter()
                .filter_map(|settle| match (settle.id.parse(), settle.token.parse()) {
                    (Ok(id), Ok(lease_until)) => Some(SettleRow { id, lease_until, outcome: settle.outcome }),
                    _ => {
                        unreadable += 1;
                        None
                    }
                })
                .collect();
            Ok(self.db.settle(rows, now_ms()).await? + unreadable)
        })
    }

    fn release(&self, _queue: &str) -> BoxFuture<'_, Result<(), StorageError>> {
        // Nothing is leased before `lease_if_due`.
        Box::pin(async { Ok(()) })
    }

    fn stats(&self, also: Vec<String>) -> BoxFuture<'_, Result<Vec<QueueStats>, StorageError>> {
        Box::pin(self.db.stats(now_ms(), also))
    }

    fn dead_letters(
        &self,
        origin_queue: &str,
        limit: u32,
        after: Option<String>,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<DeadLetterPage, StorageError>> {
        let origin_queue = origin_queue.to_owned();
        Box::pin(async move {
            // Ids are row ids: anything else starts from the beginning.
            let after = after.and_then(|after| after.parse().ok()).unwrap_or(0);
            self.db.dead_letters(&origin_queue, limit, after, max_bytes).await
        })
    }

    fn redrive(&self, origin_queue: &str, ids: Option<Vec<String>>) -> BoxFuture<'_, Result<usize, StorageError>> {
        let origin_queue = origin_queue.to_owned();
        Box::pin(async move {
            // An id that is not a row id names no dead letter here.
            let ids = ids.map(|ids| ids.iter().filter_map(|id| id.parse().ok()).collect());
            self.db.redrive(&origin_queue, ids, now_ms()).await
        })
    }
}
