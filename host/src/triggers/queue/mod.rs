//! The queue trigger: at-least-once delivery of durable queues (and topic subscriptions) to one consumer function
//! per queue, with leases, per-message outcomes, exponential backoff and dead letters.
//!
//! Each consumer runs one loop ([`run_consumer`]): it waits until a batch is due (`batch_size` messages ready, or
//! the oldest ready one has waited `max_wait_ms`), reserves what the delivery needs (a concurrency permit, an
//! instance slot, the loaded component), and only then leases the batch: a lease outlives the invocation deadline,
//! so only a dead host lets one expire, and a delivery that waits for a slot holds no lease meanwhile. It invokes
//! the function and applies the outcome of each message in one transaction. At most `concurrency` deliveries of
//! a consumer run at once.
//!
//! A deploy drains a component's consumers (they lease nothing more; the deliveries they started finish and
//! settle) before the new version's consumers start: a message is never lost, and never handled by both versions
//! at once. Topic subscriptions stay in place across the switch, so nothing published meanwhile is dropped.

mod delivery;
mod settle;

use delivery::deliver;

use super::{Prepared, Runner, Trigger, Work};
use crate::capabilities::BoxFuture;
use crate::capabilities::messaging::{ObjectFollower, Queues};
use crate::live::{ComponentVersion, LiveComponent, LiveSet, consumed_queue};
use crate::runtime::SlotKind;
use crate::storage::backends::{BatchPolicy, LeasedMessage, QueueBackend};
use crate::telemetry::correlation;
use edgefn_manifest::record::{Delivery as DeliveryPolicy, Trigger as TriggerKind};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

/// A lease outlives the invocation's hard deadline by this much, so it only expires if the host died.
const LEASE_MARGIN_MS: u64 = 30_000;

/// A function that consumes a queue (its own, for a topic subscriber), as one consumer loop runs it.
#[derive(Debug)]
struct Consumer {
    component: Arc<LiveComponent>,
    function: String,
    /// `component/function`, as logs show it.
    label: String,
    /// The queue or topic named in the trigger, as the function sees it.
    source: String,
    /// The queue its messages are stored in: `source` for a queue, `<topic>@<function>` for a subscriber,
    /// `objects.<bucket>@<component>.<function>` for an object trigger.
    queue: String,
    /// `queue`, `topic` or `object`.
    kind: &'static str,
    /// For an object trigger: which changes it follows.
    follows: Option<ObjectFollower>,
    delivery: DeliveryPolicy,
    dead_letter_queue: String,
}

impl Consumer {
    /// `queue`, `topic` or `object`, for the log.
    fn trigger_kind(&self) -> &'static str {
        self.kind
    }

    /// How its failed messages are retried and dead-lettered.
    fn retry_policy(&self) -> settle::RetryPolicy<'_> {
        settle::RetryPolicy { delivery: &self.delivery, dead_letter_queue: &self.dead_letter_queue }
    }

    fn consumes(&self, trigger: &TriggerKind) -> bool {
        matches!(trigger, TriggerKind::Queue { .. } | TriggerKind::Topic { .. } | TriggerKind::Object { .. })
    }
}

/// A running consumer loop, to stop when its component is drained.
#[derive(Debug)]
struct Running {
    queue: String,
    stop: watch::Sender<bool>,
    /// One permit per delivery that may run: all of them free means none is running.
    permits: Arc<Semaphore>,
    concurrency: u32,
    task: tokio::task::JoinHandle<()>,
}

/// Counts since start, per queue.
#[derive(Debug, Default)]
struct Counters {
    acked: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
}

/// See the module docs.
#[derive(Debug)]
pub struct QueueTrigger {
    queues: Arc<Queues>,
    runner: Runner,
    /// The consumer loops running now, by component.
    running: Mutex<HashMap<String, Vec<Running>>>,
    /// The `(topic, queue)` subscriptions each component holds.
    subscriptions: Mutex<HashMap<String, BTreeSet<(String, String)>>>,
    /// The queues consumed now.
    consumed: Mutex<BTreeSet<String>>,
    counters: Mutex<HashMap<String, Arc<Counters>>>,
    /// Deliveries finished since start, every consumer.
    deliveries: Arc<AtomicU64>,
}

impl QueueTrigger {
    pub fn new(queues: Arc<Queues>, runner: Runner) -> Arc<Self> {
        Arc::new(Self {
            queues,
            runner,
            running: Mutex::default(),
            subscriptions: Mutex::default(),
            consumed: Mutex::default(),
            counters: Mutex::default(),
            deliveries: Arc::default(),
        })
    }

    fn counters(&self, queue: &str) -> Arc<Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner()).entry(queue.to_owned()).or_default().clone()
    }

    /// Deliveries finished since start (every consumer), for benchmarks and tests.
    pub fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Relaxed)
    }

    /// Messages of `queue` acked since start.
    pub fn acked(&self, queue: &str) -> u64 {
        self.counters(queue).acked.load(Ordering::Relaxed)
    }

    /// The queues that have a consumer now.
    pub fn consumed_queues(&self) -> Vec<String> {
        self.consumed.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    /// The consumers of `live`: one per queue, with the active version's delivery policy where it has the function.
    fn consumers_of(live: &Arc<LiveComponent>) -> Vec<Consumer> {
        let mut consumers: Vec<Consumer> = Vec::new();
        for version in live.versions() {
            for function in &version.functions {
                let Some((queue, kind)) = consumed_queue(&version.component, function) else { continue };
                if consumers.iter().any(|c| c.queue == queue) {
                    continue;
                }
                let (source, delivery, follows) = match &function.trigger {
                    TriggerKind::Queue { queue: source, delivery } | TriggerKind::Topic { topic: source, delivery } => {
                        (source, delivery, None)
                    }
                    TriggerKind::Object { bucket, events, prefix, delivery } => {
                        let follower = ObjectFollower {
                            bucket: bucket.clone(),
                            events: events.clone(),
                            prefix: prefix.clone(),
                            queue: queue.clone(),
                        };
                        (bucket, delivery, Some(follower))
                    }
                    _ => continue,
                };
                consumers.push(Consumer {
                    component: live.clone(),
                    function: function.name.clone(),
                    label: version.label(&function.name),
                    source: source.clone(),
                    dead_letter_queue: delivery.dead_letter_queue(&queue),
                    queue,
                    kind,
                    follows,
                    delivery: delivery.clone(),
                });
            }
        }
        consumers
    }
}

impl Trigger for QueueTrigger {
    fn kind(&self) -> &'static str {
        "queue"
    }

    fn start(&self, component: &str, live: &Arc<LiveSet>) {
        let consumers = live.component(component).map(Self::consumers_of).unwrap_or_default();
        // Subscriptions: add the new ones first, then drop those no live version has any more.
        let wanted: BTreeSet<(String, String)> =
            consumers.iter().filter(|c| c.kind == "topic").map(|c| (c.source.clone(), c.queue.clone())).collect();
        // Object triggers: the changes each follows (replacing what the component followed before).
        self.queues.follow_objects(component, consumers.iter().filter_map(|c| c.follows.clone()).collect());
        for (topic, queue) in &wanted {
            self.queues.subscribe(topic, queue);
        }
        let previous = {
            let mut subscriptions = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
            subscriptions.insert(component.to_owned(), wanted.clone()).unwrap_or_default()
        };
        for (topic, queue) in previous.difference(&wanted) {
            self.queues.unsubscribe(topic, queue);
        }
        let mut started = Vec::new();
        for consumer in consumers {
            let queue = consumer.queue.clone();
            self.consumed.lock().unwrap_or_else(|p| p.into_inner()).insert(queue.clone());
            let concurrency = consumer.delivery.concurrency;
            let permits = Arc::new(Semaphore::new(concurrency as usize));
            let (stop, stopped) = watch::channel(false);
            let context = DeliveryContext {
                queues: self.queues.clone(),
                runner: self.runner.clone(),
                counters: self.counters(&consumer.queue),
                deliveries: self.deliveries.clone(),
            };
            let task = tokio::spawn(run_consumer(context, Arc::new(consumer), permits.clone(), stopped));
            started.push(Running { queue, stop, permits, concurrency, task });
        }
        if !started.is_empty() {
            self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(component.to_owned(), started);
        }
    }

    fn drain(&self, component: &str, deadline: Instant) -> BoxFuture<'_, ()> {
        let consumers = self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(component).unwrap_or_default();
        let component = component.to_owned();
        {
            let mut consumed = self.consumed.lock().unwrap_or_else(|p| p.into_inner());
            for consumer in &consumers {
                let _ = consumer.stop.send(true);
                consumed.remove(&consumer.queue);
            }
        }
        Box::pin(async move {
            for consumer in consumers {
                // The loop leases nothing more once stopped; then every delivery it started gives its permit back.
                let _ = tokio::time::timeout_at(deadline.into(), consumer.task).await;
                let all = consumer.permits.acquire_many(consumer.concurrency);
                if tokio::time::timeout_at(deadline.into(), all).await.is_err() {
                    tracing::warn!(%component, "deliveries still going at the drain deadline; they finish and settle on the old version");
                }
            }
        })
    }
}

/// What a consumer loop and its deliveries share.
#[derive(Debug, Clone)]
struct DeliveryContext {
    queues: Arc<Queues>,
    runner: Runner,
    counters: Arc<Counters>,
    deliveries: Arc<AtomicU64>,
}

/// Delivers `consumer`'s queue until `stopped` says so.
async fn run_consumer(
    context: DeliveryContext,
    consumer: Arc<Consumer>,
    permits: Arc<Semaphore>,
    mut stopped: watch::Receiver<bool>,
) {
    let waker = context.queues.waker(&consumer.queue);
    let backend = context.queues.backend().clone();
    // After a batch was leased, another is likely due: try to lease straight away instead of asking first.
    let mut probably_due = false;
    loop {
        // `biased`: once stopped, a loop never takes another turn, whatever else is ready.
        let permit = tokio::select! {
            biased;
            _ = stopped.wait_for(|stop| *stop) => return,
            permit = permits.clone().acquire_owned() => match permit { Ok(permit) => permit, Err(_) => return },
        };
        let Some((version, prepared, leased)) =
            next_batch(&context, &consumer, &backend, &waker, &mut stopped, &mut probably_due).await
        else {
            // Whatever the backend pulled for a delivery that will not run goes back now, not after a lease.
            if let Err(error) = backend.release(&consumer.queue).await {
                tracing::warn!(queue = %consumer.queue, %error, "failed to give back pulled messages; they return after their lease");
            }
            return;
        };
        let (context, consumer) = (context.clone(), consumer.clone());
        tokio::spawn(async move {
            deliver(&context, &consumer, &version, prepared, leased).await;
            drop(permit);
        });
    }
}

/// Waits until a batch is due, reserves what its delivery needs (a slot and the loaded component: a batch never
/// waits for a slot while leased), and leases it. `None` once `stopped`.
async fn next_batch(
    context: &DeliveryContext,
    consumer: &Consumer,
    backend: &Arc<dyn QueueBackend>,
    waker: &Arc<tokio::sync::Notify>,
    stopped: &mut watch::Receiver<bool>,
    probably_due: &mut bool,
) -> Option<(Arc<ComponentVersion>, Prepared, Vec<LeasedMessage>)> {
    let mut policy = BatchPolicy {
        batch_size: consumer.delivery.batch_size,
        max_wait_ms: consumer.delivery.max_wait_ms,
        lease_ms: LEASE_MARGIN_MS,
    };
    loop {
        if !*probably_due {
            wait_until_due(consumer, backend, policy, waker, stopped).await?;
        }
        let Some(version) = consumer.component.pick(|v| v.has(&consumer.function, |t| consumer.consumes(t))).cloned()
        else {
            tracing::error!(function = %consumer.label, "no live version consumes this queue; stopping its consumer");
            return None;
        };
        // The delivery's correlation id comes from the messages it will lease; until then, a new one.
        let work = Work {
            correlation_id: correlation::new_id().into(),
            trigger: consumer.trigger_kind(),
            detail: format!("delivery from {}", consumer.source),
            parent: Default::default(),
        };
        let prepare = context.runner.prepare(
            &version,
            &consumer.function,
            SlotKind::Background,
            vec![consumer.label.clone()],
            work,
        );
        let prepared = tokio::select! {
            biased;
            _ = stopped.wait_for(|stop| *stop) => return None,
            prepared = prepare => prepared,
        };
        let prepared = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                tracing::error!(function = %consumer.label, %error, "cannot deliver; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if *stopped.borrow() {
            return None;
        }
        let timeout_ms = u64::try_from(prepared.invocation.limits.timeout.as_millis()).unwrap_or(u64::MAX);
        policy.lease_ms = timeout_ms.saturating_add(LEASE_MARGIN_MS);
        match backend.lease_if_due(&consumer.queue, policy).await {
            Ok(Some(leased)) if !leased.is_empty() => {
                *probably_due = true;
                return Some((version, prepared, leased));
            }
            Ok(_) => *probably_due = false,
            Err(error) => {
                tracing::error!(queue = %consumer.queue, %error, "failed to lease messages; retrying in 1 s");
                *probably_due = false;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Waits until a batch of `consumer`'s queue is due: `batch_size` messages ready, or the oldest ready one has
/// waited `max_wait_ms`. A send wakes it at once. `None` once `stopped`.
async fn wait_until_due(
    consumer: &Consumer,
    backend: &Arc<dyn QueueBackend>,
    policy: BatchPolicy,
    waker: &Arc<tokio::sync::Notify>,
    stopped: &mut watch::Receiver<bool>,
) -> Option<()> {
    loop {
        let due = tokio::select! {
            biased;
            _ = stopped.wait_for(|stop| *stop) => return None,
            due = backend.wait_until_due(&consumer.queue, policy, waker.clone()) => due,
        };
        match due {
            Ok(true) => return Some(()),
            Ok(false) => {}
            Err(error) => {
                tracing::error!(queue = %consumer.queue, %error, "failed to read the queue; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
