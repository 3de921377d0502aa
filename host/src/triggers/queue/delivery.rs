//! One delivery of a leased batch: the trace it runs under, the call (renewing leases as the backend needs), each
//! message's outcome applied in one settlement, the log and counters, and the failure kept for replay.

use super::{Consumer, DeliveryContext, settle};
use crate::live::ComponentVersion;
use crate::runtime::{Delivery, GuestCall, InvokeError, Message};
use crate::storage::backends::{LeasedMessage, Outcome, QueueBackend, Settle};
use crate::storage::now_ms;
use crate::storage::telemetry::{FailedInput, Level};
use crate::telemetry::Trace;
use crate::triggers::{Prepared, replay};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The trace a delivery of `leased` runs under: `prepared` (from before the lease) with the messages' correlation
/// id when they all share one, else a new one; then each message's own id gets a host record that points to it.
fn delivery_trace(
    context: &DeliveryContext,
    consumer: &Consumer,
    prepared: &Arc<Trace>,
    leased: &[LeasedMessage],
) -> Arc<Trace> {
    let first = leased.first().and_then(|m| m.correlation_id.as_deref());
    let shared = first.filter(|id| leased.iter().all(|m| m.correlation_id.as_deref() == Some(id)));
    let detail = match leased {
        [one] => format!("message {} from {} (attempt {})", one.id, consumer.source, one.attempts),
        _ => format!("{} messages from {}", leased.len(), consumer.source),
    };
    // Its span continues the span that sent the messages, when they share one (a batch of one, or messages one
    // span sent); otherwise it is in a trace of its own, as its correlation id is, linked to every span that sent
    // one of its messages (OpenTelemetry's way for a batch).
    let parent = leased.first().map_or(0, |m| m.parent_span);
    let parent = if shared.is_some() && leased.iter().all(|m| m.parent_span == parent) { parent } else { 0 };
    let links = if parent == 0 {
        let mut links: Vec<(Arc<str>, u64)> = leased
            .iter()
            .filter(|m| m.parent_span != 0)
            .map(|m| {
                (m.correlation_id.as_deref().map_or_else(|| prepared.correlation_id.clone(), Arc::from), m.parent_span)
            })
            .collect();
        links.dedup();
        links
    } else {
        Vec::new()
    };
    let trace = Arc::new(Trace {
        correlation_id: shared.map_or_else(|| prepared.correlation_id.clone(), Arc::from),
        detail,
        parent: crate::telemetry::otel::Parent::local(parent),
        links,
        ..(**prepared).clone()
    });
    let telemetry = context.runner.runtime().telemetry();
    if shared.is_none() && telemetry.logs_enabled() {
        for message in leased {
            let Some(id) = &message.correlation_id else { continue };
            let own = Trace { correlation_id: Arc::from(id.as_str()), ..(*trace).clone() };
            let batch = &trace.correlation_id;
            telemetry.host_event(
                Level::Info,
                Some(&own),
                format!("message {} is delivered in a batch of {}, logged under id {batch}", message.id, leased.len()),
            );
        }
    }
    trace
}

/// Logs a message's retry or dead letter as a host event under the work that sent it.
fn log_settlement(
    context: &DeliveryContext,
    consumer: &Consumer,
    trace: &Trace,
    message: &LeasedMessage,
    outcome: &Outcome,
    now: i64,
) {
    let telemetry = context.runner.runtime().telemetry();
    if !telemetry.logs_enabled() || matches!(outcome, Outcome::Ack) {
        return;
    }
    let own = Trace {
        correlation_id: message.correlation_id.as_deref().map_or_else(|| trace.correlation_id.clone(), Arc::from),
        ..trace.clone()
    };
    let (level, text) = match outcome {
        Outcome::Retry { at, error } => (
            Level::Warn,
            format!(
                "message {} from {} will be retried in {} ms (attempt {} of {} failed): {error}",
                message.id,
                consumer.source,
                (at - now).max(0),
                message.attempts,
                consumer.delivery.max_retries + 1
            ),
        ),
        Outcome::DeadLetter { queue, reason } => (
            Level::Error,
            format!(
                "message {} from {} was dead-lettered to {queue} after {} attempts: {reason}",
                message.id, consumer.source, message.attempts
            ),
        ),
        Outcome::Ack => return,
    };
    telemetry.host_event(level, Some(&own), text);
}

/// Runs `call` (a delivery of `leased`), renewing the messages' leases as often as the backend needs.
async fn renewing_leases<T>(
    backend: &Arc<dyn QueueBackend>,
    leased: &[LeasedMessage],
    call: impl Future<Output = T>,
) -> T {
    let Some(every) = backend.renew_every() else { return call.await };
    let tokens: Vec<String> = leased.iter().map(|m| m.token.clone()).collect();
    let mut call = std::pin::pin!(call);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            result = &mut call => return result,
            _ = ticks.tick() => {
                if let Err(error) = backend.renew(tokens.clone()).await {
                    tracing::warn!(%error, "failed to renew the leases of a running delivery");
                }
            }
        }
    }
}

/// Invokes the consumer with one leased batch and settles every message of it.
pub(super) async fn deliver(
    context: &DeliveryContext,
    consumer: &Consumer,
    component_version: &ComponentVersion,
    mut prepared: Prepared,
    leased: Vec<LeasedMessage>,
) {
    let started = Instant::now();
    let trace = delivery_trace(context, consumer, &prepared.invocation.trace, &leased);
    prepared.invocation.trace = trace.clone();
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
                correlation_id: m.correlation_id.clone().unwrap_or_default(),
            })
            .collect(),
        correlation_id: trace.correlation_id.to_string(),
    };
    let version = component_version.version;
    let secrets = component_version.env.secrets.clone();
    // What a failure keeps for replay, when the version records failures.
    let kept = component_version.env.record_failures.then(|| {
        let bytes: usize = delivery.messages.iter().map(|m| m.body.len()).sum();
        (bytes as u64, replay::kept_messages(&delivery.messages, &secrets))
    });
    let runtime = context.runner.runtime();
    let call =
        runtime.call_guest(&prepared.component, &prepared.invocation, prepared.slot, GuestCall::Messages(delivery));
    let (outcome, settlements) = renewing_leases(context.queues.backend(), &leased, call).await;
    let now = now_ms();
    let failure = match &outcome {
        Ok(Ok(_)) => None,
        Ok(Err(message)) => Some(message.clone()),
        Err(error) => Some(error.to_string()),
    };
    let decided = settle::decide(consumer.retry_policy(), &leased, settlements, failure.as_deref(), now);
    let (mut acked, mut retried, mut dead) = (0u32, 0u32, 0u32);
    let outcomes: Vec<Settle> = leased
        .iter()
        .zip(decided.outcomes)
        .map(|(message, outcome)| {
            match &outcome {
                Outcome::Ack => acked += 1,
                Outcome::Retry { .. } => retried += 1,
                Outcome::DeadLetter { .. } => dead += 1,
            }
            log_settlement(context, consumer, &trace, message, &outcome, now);
            Settle { id: message.id.clone(), token: message.token.clone(), outcome }
        })
        .collect();
    if !decided.strangers.is_empty() {
        tracing::warn!(function = %consumer.label, ids = ?decided.strangers,
            "the function settled messages that are not in its batch; ignored");
    }
    match context.queues.backend().settle(&consumer.queue, outcomes).await {
        Ok(0) => {}
        // The lease expired while the delivery ran (the messages were handed out again) or they were re-driven
        // meanwhile: whoever holds them now settles them.
        Ok(stale) => tracing::warn!(function = %consumer.label, messages = stale,
            "outcomes ignored: the messages' lease had expired or they were re-driven"),
        // The leases stay: the messages come back when they expire. Nothing is lost, some may be delivered twice.
        Err(error) => tracing::error!(function = %consumer.label, %error, "failed to record the outcome of a delivery"),
    }
    let counters = &context.counters;
    counters.acked.fetch_add(acked.into(), Ordering::Relaxed);
    counters.retried.fetch_add(retried.into(), Ordering::Relaxed);
    counters.dead_lettered.fetch_add(dead.into(), Ordering::Relaxed);
    context.deliveries.fetch_add(1, Ordering::Relaxed);
    let duration_ms = started.elapsed().as_millis() as u64;
    match &failure {
        None => tracing::info!(function = %consumer.label, version, queue = %consumer.queue, messages = leased.len(),
            acked, retried, dead, duration_ms, "delivery ok"),
        Some(error) => tracing::warn!(function = %consumer.label, version, queue = %consumer.queue,
            messages = leased.len(), acked, retried, dead, duration_ms, %error, "delivery failed"),
    }
    if let Some((bytes, messages)) = kept
        && (failure.is_some() || retried > 0 || dead > 0)
    {
        let error = failure.clone().unwrap_or_else(|| format!("{retried} messages retried, {dead} dead-lettered"));
        let source = consumer.source.clone();
        context.runner.record_failure(
            component_version,
            &consumer.function,
            &trace.correlation_id,
            consumer.trigger_kind(),
            &error,
            bytes,
            || Some(FailedInput::Messages { source, messages }),
        );
    }
    if retried > 0 {
        // Our own loop may be asleep until its idle poll; the retries have their own times.
        context.queues.wake(&consumer.queue);
    }
    if dead > 0 {
        context.queues.wake(&consumer.dead_letter_queue);
    }
    if let Err(InvokeError::Host(error)) = &outcome {
        tracing::error!(function = %consumer.label, %error, "the host failed to run a delivery");
    }
}
