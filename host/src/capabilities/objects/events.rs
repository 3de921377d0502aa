//! Delivering object changes to their triggers: a task moves each change from the store's outbox
//! (`storage::objects`, written in the change's own transaction) into the queue of every live `object` trigger
//! that follows it, then removes it from the outbox. A crash between the two sends it again: at least once, as the
//! queue's consumer then is too.

use super::Objects;
use crate::capabilities::messaging::{MessagingError, Queues};
use crate::storage::backends::NewMessage;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Changes moved per round.
const BATCH: u32 = 256;
/// How long the task waits for a wake-up before looking anyway (a change written by another connection, such as
/// the CLI's, wakes nothing).
const POLL: Duration = Duration::from_secs(1);

/// Starts the task that delivers `objects`' changes through `queues`.
pub fn spawn_dispatcher(objects: Arc<Objects>, queues: Arc<Queues>) {
    tokio::spawn(async move {
        let mut delivered = Delivered::default();
        loop {
            let moved = dispatch_once(&objects, &queues, &mut delivered).await;
            if moved < BATCH as usize {
                let _ = tokio::time::timeout(POLL, objects.changed.notified()).await;
            }
        }
    });
}

/// The queues each event still in the outbox has already been given: a retry sends it only to the others, so a
/// change is delivered twice only when the host died in between.
type Delivered = HashMap<i64, HashSet<String>>;

/// Moves one batch of changes; returns how many left the outbox. An event whose queue refuses it for now (full, or
/// the store failed) stays, and is retried next round, without holding back the events after it.
async fn dispatch_once(objects: &Objects, queues: &Queues, delivered: &mut Delivered) -> usize {
    let events = match objects.db.pending_events(BATCH).await {
        Ok(events) => events,
        Err(error) => {
            tracing::warn!(%error, "failed to read the object changes to deliver; trying again");
            return 0;
        }
    };
    let mut done = Vec::new();
    for event in &events {
        let body = match serde_json::to_vec(event) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, "an object change does not serialize; dropping it");
                done.push(event.id);
                continue;
            }
        };
        let given = delivered.entry(event.id).or_default();
        let mut pending = false;
        for queue in queues.object_event_queues(&event.bucket, &event.event, &event.key) {
            if given.contains(&queue) {
                continue;
            }
            let message = NewMessage {
                body: body.clone(),
                delay_ms: 0,
                priority: 0,
                correlation_id: (!event.correlation_id.is_empty()).then(|| event.correlation_id.clone()),
                parent_span: 0,
            };
            match queues.send_many(&queue, vec![message]).await {
                Ok(_) => {
                    given.insert(queue);
                }
                // Never accepted, however long it waits: say so and move on.
                Err(error @ (MessagingError::InvalidName(_) | MessagingError::TooLarge { .. })) => {
                    tracing::error!(%error, bucket = %event.bucket, key = %event.key, %queue,
                        "an object change cannot be queued for its trigger; that trigger misses it");
                    given.insert(queue);
                }
                Err(error) => {
                    tracing::warn!(%error, bucket = %event.bucket, key = %event.key, %queue,
                        "an object change could not be queued for its trigger yet; it is kept and tried again");
                    pending = true;
                }
            }
        }
        if !pending {
            done.push(event.id);
        }
    }
    let moved = done.len();
    if !done.is_empty() {
        match objects.db.remove_events(done.clone()).await {
            Ok(()) => {
                for id in done {
                    delivered.remove(&id);
                }
            }
            Err(error) => tracing::warn!(%error, "failed to remove delivered object changes; trying again"),
        }
    }
    moved
}
