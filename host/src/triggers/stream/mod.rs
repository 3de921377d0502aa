//! The stream trigger: each stream consumer function reads every shard of its stream in order, one batch in flight
//! per shard, and the shard's checkpoint moves only past records that were handled (or handed to the on-failure
//! queue). Several functions may consume one stream; each has its own checkpoints (`component/function`).
//!
//! One loop per (consumer, shard) ([`run_shard`]): it reads up to `batch_size` records after the checkpoint, waits
//! for a fuller batch until the oldest of them has waited `max_wait_ms` (a put wakes it), reserves a slot, invokes
//! the function and then decides ([`outcome::decide`]) how far the checkpoint moves: past every record on success;
//! up to the first record the function asked to retry, or that was in flight when the call failed. What follows is
//! retried: split in halves first when `bisect` is on, then the lone failing record with exponential backoff; after
//! `max_retries` (or `max_record_age_ms`) it goes to the on-failure queue and the shard moves on. A record the
//! function dead-letters goes there at once. Nothing is skipped silently: if the on-failure queue refuses a
//! record, the shard waits and tries again.
//!
//! A deploy drains the component's loops (each finishes the batch it is delivering) before the new version's
//! loops start, so two batches of one shard never run at once; the checkpoints carry over.
//!
//! On a cluster every node that runs the consumer has these loops, but a loop delivers only while its node holds
//! the shard's lease ([`balance`]): the shards are spread over the nodes and move when one dies or leaves.

mod balance;
mod outcome;

use super::{Runner, Trigger, Work};
use crate::capabilities::BoxFuture;
use crate::capabilities::messaging::Queues;
use crate::capabilities::streams::Streams;
use crate::live::{LiveComponent, LiveSet};
use crate::runtime::{Delivery, GuestCall, InvokeError, Message, SlotKind};
use crate::storage::backends::NewMessage;
use crate::storage::now_ms;
use crate::storage::streams::{Checkpoint, StoredRecord};
use crate::storage::telemetry::{FailedInput, Level};
use crate::telemetry::{Trace, correlation};
use edgefn_manifest::record::{StreamDelivery, Trigger as TriggerKind};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The most bytes of bodies one batch carries (a batch always has at least one record).
const MAX_BATCH_BYTES: usize = 6 << 20;
/// How often an idle shard loop looks again, in case a wake-up was missed.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// How long a loop waits after the store or the on-failure queue failed.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// A function that consumes a stream.
#[derive(Debug)]
struct StreamConsumer {
    component: Arc<LiveComponent>,
    function: String,
    /// `component/function`: its name in logs and the owner of its checkpoints.
    label: String,
    stream: String,
    delivery: StreamDelivery,
    on_failure: String,
}

/// A running consumer: its shard loops, to stop when its component is drained.
#[derive(Debug)]
struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// What the loops share.
#[derive(Debug)]
struct Shared {
    streams: Arc<Streams>,
    queues: Arc<Queues>,
    runner: Runner,
    /// Records handled (checkpointed) since start, every consumer.
    handled: AtomicU64,
    /// Records sent to an on-failure queue since start.
    failed: AtomicU64,
}

/// See the module docs.
#[derive(Debug)]
pub struct StreamTrigger {
    shared: Arc<Shared>,
    running: Mutex<HashMap<String, Vec<Running>>>,
}

impl StreamTrigger {
    pub fn new(streams: Arc<Streams>, queues: Arc<Queues>, runner: Runner) -> Arc<Self> {
        let shared = Shared { streams, queues, runner, handled: AtomicU64::new(0), failed: AtomicU64::new(0) };
        Arc::new(Self { shared: Arc::new(shared), running: Mutex::default() })
    }

    /// Records handled since start (every consumer), and records sent to on-failure queues.
    pub fn counts(&self) -> (u64, u64) {
        (self.shared.handled.load(Ordering::Relaxed), self.shared.failed.load(Ordering::Relaxed))
    }

    /// The stream consumers of `live`, one per function, with the active version's settings where it has it.
    fn consumers_of(live: &Arc<LiveComponent>) -> Vec<StreamConsumer> {
        let mut consumers: Vec<StreamConsumer> = Vec::new();
        for version in live.versions() {
            for function in &version.functions {
                let TriggerKind::Stream { stream, delivery } = &function.trigger else { continue };
                if consumers.iter().any(|c| c.function == function.name) {
                    continue;
                }
                consumers.push(StreamConsumer {
                    component: live.clone(),
                    function: function.name.clone(),
                    label: format!("{}/{}", version.component, function.name),
                    stream: stream.clone(),
                    on_failure: delivery.on_failure_queue(stream),
                    delivery: delivery.clone(),
                });
            }
        }
        consumers
    }
}

impl Trigger for StreamTrigger {
    fn kind(&self) -> &'static str {
        "stream"
    }

    fn start(&self, component: &str, live: &Arc<LiveSet>) {
        let consumers = live.component(component).map(Self::consumers_of).unwrap_or_default();
        let started: Vec<Running> = consumers
            .into_iter()
            .map(|consumer| {
                let (stop, stopped) = watch::channel(false);
                let task = tokio::spawn(run_consumer(self.shared.clone(), Arc::new(consumer), stopped));
                Running { stop, task }
            })
            .collect();
        if !started.is_empty() {
            self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(component.to_owned(), started);
        }
    }

    fn drain(&self, component: &str, deadline: Instant) -> BoxFuture<'_, ()> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(component).unwrap_or_default();
        for consumer in &running {
            let _ = consumer.stop.send(true);
        }
        let component = component.to_owned();
        Box::pin(async move {
            for consumer in running {
                if tokio::time::timeout_at(deadline.into(), consumer.task).await.is_err() {
                    tracing::warn!(%component, "a stream batch is still running at the drain deadline; it finishes on the old version");
                }
            }
        })
    }
}

/// Runs one loop per shard of `consumer`'s stream until `stopped`.
async fn run_consumer(shared: Arc<Shared>, consumer: Arc<StreamConsumer>, stopped: watch::Receiver<bool>) {
    let shards = loop {
        match shared.streams.db.shards(&consumer.stream).await {
            Ok(shards) => break shards,
            Err(error) => {
                tracing::error!(stream = %consumer.stream, %error, "cannot read the stream's shards; retrying");
                if pause(&mut stopped.clone(), ERROR_PAUSE).await.is_none() {
                    return;
                }
            }
        }
    };
    // On a cluster, a shard is delivered by the node that holds its lease (see `balance`).
    let leased = shared.streams.db.leases().map(|leases| {
        let shards = balance::Shards::new(leases, &consumer.stream, &consumer.label, shards);
        let (stop_balancer, balancer_stopped) = watch::channel(false);
        (shards.clone(), stop_balancer, tokio::spawn(balance::balance(shards, balancer_stopped)))
    });
    let mut loops = tokio::task::JoinSet::new();
    for shard in 0..shards {
        let leases = leased.as_ref().map(|(shards, _, _)| shards.clone());
        loops.spawn(run_shard(shared.clone(), consumer.clone(), shard, leases, stopped.clone()));
    }
    while loops.join_next().await.is_some() {}
    // Every batch has finished: the leases go back now, not when they lapse.
    if let Some((_, stop_balancer, balancer)) = leased {
        let _ = stop_balancer.send(true);
        let _ = balancer.await;
    }
}

/// Sleeps `duration` unless stopped first (`None`).
async fn pause(stopped: &mut watch::Receiver<bool>, duration: Duration) -> Option<()> {
    tokio::select! {
        biased;
        _ = stopped.wait_for(|stop| *stop) => None,
        () = tokio::time::sleep(duration) => Some(()),
    }
}

/// Where a shard loop is: how many records it asks for, and how often the record at the head has failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ShardState {
    limit: u32,
    attempts: u32,
}

/// Delivers one shard of `consumer`'s stream, in order, until `stopped`.
async fn run_shard(
    shared: Arc<Shared>,
    consumer: Arc<StreamConsumer>,
    shard: u32,
    leases: Option<Arc<balance::Shards>>,
    mut stopped: watch::Receiver<bool>,
) {
    let waker = shared.streams.waker(&consumer.stream);
    let policy = &consumer.delivery;
    let mut state = ShardState { limit: policy.batch_size, attempts: 0 };
    // The batch read with the last checkpoint's write (see below), while nothing said to wait.
    let mut read_ahead: Option<(Checkpoint, Vec<StoredRecord>)> = None;
    loop {
        if *stopped.borrow() {
            return;
        }
        if let Some(leases) = &leases {
            match leases.hold(shard, &mut stopped).await {
                None => return,
                // Newly this node's: another node may have moved the checkpoint meanwhile.
                Some(true) => {
                    read_ahead = None;
                    state = ShardState { limit: policy.batch_size, attempts: 0 };
                }
                Some(false) => {}
            }
        }
        // Registered before the read: a put between the read and the wait still wakes us.
        let notified = waker.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        // A batch read ahead is delivered only if it is ready as it is; one that would wait is read again, after
        // the registration above, so a put in between cannot be missed.
        let ready = read_ahead.take().filter(|(_, records)| {
            !records.is_empty() && batch_wait(records, state.limit, policy.max_wait_ms).is_none()
        });
        let read = match ready {
            Some(ready) => Ok(ready),
            None => {
                shared
                    .streams
                    .db
                    .read_from_checkpoint(
                        &consumer.stream,
                        &consumer.label,
                        shard,
                        policy.start,
                        state.limit,
                        MAX_BATCH_BYTES,
                    )
                    .await
            }
        };
        let (checkpoint, records) = match read {
            Ok(read) => read,
            Err(error) => {
                tracing::error!(stream = %consumer.stream, shard, %error, "failed to read the stream; retrying");
                if pause(&mut stopped, ERROR_PAUSE).await.is_none() {
                    return;
                }
                continue;
            }
        };
        if let Some(wait) = batch_wait(&records, state.limit, policy.max_wait_ms) {
            let asked_to_give_back = async {
                match &leases {
                    Some(leases) => leases.asked_to_give_back(shard).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = stopped.wait_for(|stop| *stop) => return,
                () = &mut notified => {}
                () = asked_to_give_back => {}
                () = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        if records[0].seq > checkpoint.seq + 1 {
            tracing::warn!(stream = %consumer.stream, shard, consumer = %consumer.label,
                from = checkpoint.seq + 1, to = records[0].seq - 1,
                "records expired (retention) before this consumer read them");
        }
        let Some(outcome) = deliver(&shared, &consumer, shard, &records, state.attempts, &mut stopped).await else {
            return;
        };
        let decided = outcome::decide(policy, &records, outcome.settled, outcome.failure.as_deref(), state, now_ms());
        // Records the function dead-lettered (among those now done, or failing for good) go to the on-failure
        // queue before the checkpoint moves past them: if the queue refuses them, the batch runs again.
        if !decided.to_on_failure.is_empty() {
            let failed: Vec<&StoredRecord> = decided.to_on_failure.iter().map(|(i, _)| &records[*i]).collect();
            if let Err(error) =
                send_to_on_failure(&shared, &consumer, shard, &decided.to_on_failure, &failed, &outcome.trace).await
            {
                tracing::error!(stream = %consumer.stream, shard, queue = %consumer.on_failure, %error,
                    "cannot hand failed records to the on-failure queue; the shard waits and tries again");
                if pause(&mut stopped, ERROR_PAUSE).await.is_none() {
                    return;
                }
                continue;
            }
        }
        if let Some(done) = decided.checkpoint_to {
            // The checkpoint's write also reads the next batch: one trip to the blocking pool, not two.
            let to = Checkpoint { seq: done, epoch: checkpoint.epoch };
            let advanced = shared
                .streams
                .db
                .advance_and_read(&consumer.stream, &consumer.label, shard, to, decided.next.limit, MAX_BATCH_BYTES)
                .await;
            match advanced {
                Ok(Some(next)) => {
                    let handled = records.iter().take_while(|r| r.seq <= done).count() as u64;
                    shared.handled.fetch_add(handled, Ordering::Relaxed);
                    read_ahead = Some(next);
                }
                Ok(None) => {
                    tracing::info!(stream = %consumer.stream, shard, consumer = %consumer.label,
                        "a replay (or, on a cluster, another node) moved the checkpoint while a batch ran; reading on from there");
                    state = ShardState { limit: policy.batch_size, attempts: 0 };
                    continue;
                }
                Err(error) => {
                    tracing::error!(stream = %consumer.stream, shard, %error,
                        "failed to record the checkpoint; the batch will be delivered again");
                    if pause(&mut stopped, ERROR_PAUSE).await.is_none() {
                        return;
                    }
                    continue;
                }
            }
        }
        shared.failed.fetch_add(decided.to_on_failure.len() as u64, Ordering::Relaxed);
        state = decided.next;
        if let Some(backoff) = decided.backoff
            && pause(&mut stopped, backoff).await.is_none()
        {
            return;
        }
    }
}

/// How long a batch read now waits for more records before it is delivered: `None` to deliver it at once (it is
/// full, or its oldest record has waited `max_wait_ms`), [`IDLE_POLL`] when there is none.
fn batch_wait(records: &[StoredRecord], limit: u32, max_wait_ms: u64) -> Option<Duration> {
    match records.first() {
        None => Some(IDLE_POLL),
        // A partial batch waits for more until its oldest record has waited `max_wait_ms`.
        Some(oldest) if records.len() < limit as usize => {
            let due = oldest.at.saturating_add(i64::try_from(max_wait_ms).unwrap_or(i64::MAX));
            let now = now_ms();
            (now < due).then(|| Duration::from_millis((due - now) as u64))
        }
        Some(_) => None,
    }
}

/// What one delivery of a batch came to.
struct Delivered {
    /// How the call ended: `None` for success, else why it failed.
    failure: Option<String>,
    /// What the function settled, by record index (the first settlement of each counts).
    settled: HashMap<usize, crate::runtime::Settlement>,
    trace: Arc<Trace>,
}

/// The id a record has in a delivery: `stream:SHARD:SEQ:KEY` (the SDK reads the position and key back from it).
fn record_id(shard: u32, record: &StoredRecord) -> String {
    format!("stream:{shard}:{}:{}", record.seq, record.key)
}

/// Invokes `consumer` with `records`. `None` when stopped before the call started.
async fn deliver(
    shared: &Shared,
    consumer: &StreamConsumer,
    shard: u32,
    records: &[StoredRecord],
    attempts: u32,
    stopped: &mut watch::Receiver<bool>,
) -> Option<Delivered> {
    let started = Instant::now();
    loop {
        let is_stream = |t: &TriggerKind| matches!(t, TriggerKind::Stream { .. });
        let Some(version) = consumer.component.pick(|v| v.has(&consumer.function, is_stream)).cloned() else {
            tracing::error!(function = %consumer.label, "no live version consumes this stream; stopping its loops");
            return None;
        };
        let first = records[0].correlation_id.as_deref();
        let shared_id = first.filter(|id| records.iter().all(|r| r.correlation_id.as_deref() == Some(id)));
        let work = Work {
            correlation_id: shared_id.map_or_else(|| correlation::new_id().into(), Arc::from),
            trigger: "stream",
            detail: format!(
                "{} records of {} shard {shard} ({}..={}, attempt {})",
                records.len(),
                consumer.stream,
                records[0].seq,
                records[records.len() - 1].seq,
                attempts + 1
            ),
            parent: Default::default(),
        };
        let prepare = shared.runner.prepare(
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
                tracing::error!(function = %consumer.label, %error, "cannot deliver stream records; retrying in 1 s");
                pause(stopped, ERROR_PAUSE).await?;
                continue;
            }
        };
        let trace = prepared.invocation.trace.clone();
        let ids: Vec<String> = records.iter().map(|r| record_id(shard, r)).collect();
        let delivery = Delivery {
            function: consumer.function.clone(),
            source: consumer.stream.clone(),
            messages: records
                .iter()
                .zip(&ids)
                .map(|(record, id)| Message {
                    id: id.clone(),
                    body: record.body.clone(),
                    attempts: attempts + 1,
                    priority: 0,
                    enqueued_at: record.at,
                    correlation_id: record.correlation_id.clone().unwrap_or_default(),
                })
                .collect(),
            correlation_id: trace.correlation_id.to_string(),
        };
        let kept = version.env.record_failures.then(|| {
            let bytes: usize = delivery.messages.iter().map(|m| m.body.len()).sum();
            (bytes as u64, super::replay::kept_messages(&delivery.messages, &version.env.secrets))
        });
        let runtime = shared.runner.runtime();
        let (outcome, settlements) = runtime
            .call_guest(&prepared.component, &prepared.invocation, prepared.slot, GuestCall::Messages(delivery))
            .await;
        let failure = match &outcome {
            Ok(Ok(_)) => None,
            Ok(Err(message)) => Some(message.clone()),
            Err(error) => Some(error.to_string()),
        };
        if let Err(InvokeError::Host(error)) = &outcome {
            tracing::error!(function = %consumer.label, %error, "the host failed to run a stream delivery");
        }
        let mut settled = HashMap::new();
        for (id, settlement) in settlements {
            if let Some(index) = ids.iter().position(|known| *known == id) {
                settled.entry(index).or_insert(settlement);
            }
        }
        let duration_ms = started.elapsed().as_millis() as u64;
        match &failure {
            None => tracing::info!(function = %consumer.label, stream = %consumer.stream, shard,
                records = records.len(), duration_ms, "stream delivery ok"),
            Some(error) => {
                tracing::warn!(function = %consumer.label, stream = %consumer.stream, shard,
                    records = records.len(), duration_ms, %error, "stream delivery failed");
                if let Some((bytes, messages)) = kept {
                    let source = consumer.stream.clone();
                    shared.runner.record_failure(
                        &version,
                        &consumer.function,
                        &trace.correlation_id,
                        "stream",
                        error,
                        bytes,
                        || Some(FailedInput::Messages { source, messages }),
                    );
                }
            }
        }
        return Some(Delivered { failure, settled, trace });
    }
}

/// Sends the records that failed for good to `consumer`'s on-failure queue, their bodies as they were put, and
/// logs each under the work that put it.
async fn send_to_on_failure(
    shared: &Shared,
    consumer: &StreamConsumer,
    shard: u32,
    failed: &[(usize, String)],
    records: &[&StoredRecord],
    trace: &Trace,
) -> Result<(), crate::capabilities::messaging::MessagingError> {
    let messages = records
        .iter()
        .map(|record| NewMessage {
            body: record.body.clone(),
            delay_ms: 0,
            priority: 0,
            correlation_id: record.correlation_id.clone(),
            parent_span: 0,
        })
        .collect();
    shared.queues.send_many(&consumer.on_failure, messages).await?;
    let telemetry = shared.runner.runtime().telemetry();
    for ((_, reason), record) in failed.iter().zip(records) {
        tracing::warn!(stream = %consumer.stream, shard, seq = record.seq, key = %record.key,
            queue = %consumer.on_failure, %reason, "a stream record went to the on-failure queue");
        if telemetry.logs_enabled() {
            let own = Trace {
                correlation_id: record
                    .correlation_id
                    .as_deref()
                    .map_or_else(|| trace.correlation_id.clone(), Arc::from),
                ..trace.clone()
            };
            let text = format!(
                "record {} (key {}) of {} shard {shard} went to the on-failure queue {}: {reason}",
                record.seq, record.key, consumer.stream, consumer.on_failure
            );
            telemetry.host_event(Level::Error, Some(&own), text);
        }
    }
    Ok(())
}
