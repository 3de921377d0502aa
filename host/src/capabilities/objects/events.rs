//! Delivering object changes to their triggers: a task moves each change from the store's outbox
//! (`storage::objects`, written in the change's own transaction) into the queue of every live `object` trigger
//! that follows it, then removes it from the outbox. A crash between the two sends it again: at least once, as the
//! queue's consumer then is too.

use super::Objects;
use crate::capabilities::messaging::Queues;
use crate::storage::backends::NewMessage;
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
        loop {
            let delivered = dispatch_once(&objects, &queues).await;
            if delivered < BATCH as usize {
                let _ = tokio::time::timeout(POLL, objects.changed.notified()).await;
            }
        }
    });
}

/// Moves one batch of changes; returns how many it moved (0 when a send failed: the rest waits for the next round).
async fn dispatch_once(objects: &Objects, queues: &Queues) -> usize {
    let events = match objects.db.pending_events(BATCH).await {
        Ok(events) => events,
        Err(error) => {
            tracing::warn!(%error, "failed to read the object changes to deliver; trying again");
            return 0;
        }
    };
    let mut done = Vec::new();
    for event in &events {
        let targets = queues.object_event_queues(&event.bucket, &event.event, &event.key);
        let body = match serde_json::to_vec(event) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, "an object change does not serialize; dropping it");
                done.push(event.id);
                continue;
            }
        };
        let mut sent = true;
        for queue in targets {
            let message = NewMessage {
                body: body.clone(),
                delay_ms: 0,
                priority: 0,
                correlation_id: (!event.correlation_id.is_empty()).then(|| event.correlation_id.clone()),
                parent_span: 0,
            };
            if let Err(error) = queues.send_many(&queue, vec![message]).await {
                tracing::warn!(%error, bucket = %event.bucket, key = %event.key, %queue,
                    "an object change could not be queued for its trigger; it is kept and tried again");
                sent = false;
                break;
            }
        }
        if !sent {
            break;
        }
        done.push(event.id);
    }
    let moved = done.len();
    if !done.is_empty()
        && let Err(error) = objects.db.remove_events(done).await
    {
        tracing::warn!(%error, "failed to remove delivered object changes; they will be delivered again");
    }
    moved
}
