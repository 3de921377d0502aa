//! The running host's triggers that are not HTTP, and what functions reach through the `edgefn:function/host`
//! import: queues, topics, cron jobs and `invoke`. Built once from the deployed components, shared by the
//! triggers, the guests' host calls and the admin API.

use crate::config::Limits;
use crate::cron::{self, CronJob, CronStore, RunRecord};
use crate::deploy::Deployed;
use crate::queue::{self, Consumer, DeadLetter, NewMessage, QueueStats, QueueStore};
use crate::registry::Registry;
use crate::runtime::guest::{CallContext, GuestCall, MAX_INVOKE_DEPTH};
use crate::runtime::{Runtime, SlotWait};
use anyhow::bail;
use edgefn_manifest::record::{Trigger, validate_queue_name};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The most messages one send may carry.
pub const MAX_MESSAGES_PER_SEND: usize = 10_000;

/// Milliseconds since the Unix epoch: the unit of every time in the queue and cron tables.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A deployed function, for listing and for `invoke`.
#[derive(Debug, Clone)]
pub struct FunctionEntry {
    pub component: Arc<Deployed>,
    pub name: String,
    pub trigger: Trigger,
}

impl FunctionEntry {
    pub fn label(&self) -> String {
        format!("{}/{}", self.component.name, self.name)
    }
}

/// Counts since start, per queue.
#[derive(Debug, Default)]
pub struct Counters {
    pub acked: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
}

/// See the module docs.
pub struct Platform {
    registry: Arc<Registry>,
    queues: QueueStore,
    cron: CronStore,
    limits: Limits,
    functions: Vec<FunctionEntry>,
    /// Consumers by the queue they consume.
    consumers: HashMap<String, Arc<Consumer>>,
    /// Subscriber queues by topic.
    topics: HashMap<String, Vec<String>>,
    /// Cron jobs by label.
    crons: BTreeMap<String, Arc<CronJob>>,
    counters: HashMap<String, Counters>,
    deliveries: AtomicU64,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform").field("functions", &self.functions.len()).finish_non_exhaustive()
    }
}

impl Platform {
    /// Wires the deployed components' cron, queue and topic triggers. A trigger the host cannot run (a bad
    /// schedule, a second consumer of one queue) is an error naming the function.
    pub fn new(registry: Arc<Registry>, data_dir: &Path, components: &[Arc<Deployed>]) -> anyhow::Result<Self> {
        let limits = registry.runtime().limits().clone();
        let mut functions = Vec::new();
        let mut consumers: HashMap<String, Arc<Consumer>> = HashMap::new();
        let mut topics: HashMap<String, Vec<String>> = HashMap::new();
        let mut crons = BTreeMap::new();
        for component in components.iter().filter(|c| !c.mounted) {
            for record in &component.inspection.functions {
                let entry = FunctionEntry {
                    component: component.clone(),
                    name: record.name.clone(),
                    trigger: record.trigger.clone(),
                };
                let label = entry.label();
                match &record.trigger {
                    Trigger::Cron { expression, timezone, policy } => {
                        let job = CronJob::new(component.clone(), &record.name, expression, timezone, policy)
                            .map_err(|e| anyhow::anyhow!("cron function `{label}`: {e}"))?;
                        crons.insert(label.clone(), Arc::new(job));
                    }
                    Trigger::Queue { queue, delivery } | Trigger::Topic { topic: queue, delivery } => {
                        let is_topic = matches!(record.trigger, Trigger::Topic { .. });
                        let kind = if is_topic { "topic" } else { "queue" };
                        validate_queue_name(kind, queue).map_err(|e| anyhow::anyhow!("function `{label}`: {e}"))?;
                        delivery.validate(queue).map_err(|e| anyhow::anyhow!("function `{label}`: {e}"))?;
                        let stored = if is_topic { format!("{queue}@{}", record.name) } else { queue.clone() };
                        if let Some(existing) = consumers.get(&stored) {
                            bail!(
                                "{kind} `{queue}` is consumed by both `{}` and `{label}`: a queue has one consumer \
                                 (use a topic to give several functions a copy of each message)",
                                existing.label
                            );
                        }
                        if is_topic {
                            topics.entry(queue.clone()).or_default().push(stored.clone());
                        }
                        let consumer = Consumer {
                            component: component.clone(),
                            function: record.name.clone(),
                            label: label.clone(),
                            source: queue.clone(),
                            dead_letter_queue: delivery.dead_letter_queue(&stored),
                            queue: stored.clone(),
                            delivery: delivery.clone(),
                            wakeup: tokio::sync::Notify::new(),
                        };
                        consumers.insert(stored, Arc::new(consumer));
                    }
                    Trigger::Http { .. } | Trigger::Init | Trigger::Invoke => {}
                }
                functions.push(entry);
            }
        }
        let mut counters = HashMap::new();
        for consumer in consumers.values() {
            counters.insert(consumer.queue.clone(), Counters::default());
        }
        Ok(Self {
            registry,
            queues: QueueStore::new(crate::storage::SharedConnection::open(data_dir)?),
            cron: CronStore::new(crate::storage::SharedConnection::open(data_dir)?),
            limits,
            functions,
            consumers,
            topics,
            crons,
            counters,
            deliveries: AtomicU64::new(0),
        })
    }

    /// Releases the leases a previous process left, then starts every consumer and schedule.
    pub fn start(self: &Arc<Self>) -> anyhow::Result<()> {
        let released = self.queues.release_all_leases(now_ms())?;
        if released > 0 {
            tracing::warn!(messages = released, "redelivering messages that were in flight when the host stopped");
        }
        for consumer in self.consumers.values() {
            tokio::spawn(queue::run_consumer(self.clone(), consumer.clone()));
        }
        for job in self.crons.values() {
            tokio::spawn(cron::run_schedule(self.clone(), job.clone()));
        }
        Ok(())
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn runtime(&self) -> &Runtime {
        self.registry.runtime()
    }

    pub fn queues(&self) -> &QueueStore {
        &self.queues
    }

    pub fn cron(&self) -> &CronStore {
        &self.cron
    }

    pub fn functions(&self) -> &[FunctionEntry] {
        &self.functions
    }

    /// The consumer of each queue, by queue.
    pub fn consumers(&self) -> impl Iterator<Item = &Consumer> {
        self.consumers.values().map(|c| &**c)
    }

    /// Deliveries finished since start (every consumer), for benchmarks and tests.
    pub fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Relaxed)
    }

    /// Acked messages of `queue` since start.
    pub fn acked(&self, queue: &str) -> u64 {
        self.counters.get(queue).map(|c| c.acked.load(Ordering::Relaxed)).unwrap_or(0)
    }

    pub(crate) fn record_delivery(&self, queue: &str, acked: u32, retried: u32, dead: u32) {
        if let Some(counters) = self.counters.get(queue) {
            counters.acked.fetch_add(acked.into(), Ordering::Relaxed);
            counters.retried.fetch_add(retried.into(), Ordering::Relaxed);
            counters.dead_lettered.fetch_add(dead.into(), Ordering::Relaxed);
        }
        self.deliveries.fetch_add(1, Ordering::Relaxed);
    }

    /// Wakes the consumer of `queue`, if it has one.
    pub fn wake(&self, queue: &str) {
        if let Some(consumer) = self.consumers.get(queue) {
            consumer.wakeup.notify_one();
        }
    }

    fn check_size(&self, kind: &str, name: &str, len: usize) -> Result<(), String> {
        let limit = self.limits.max_message_bytes;
        if len > limit {
            return Err(format!(
                "message to {kind} `{name}` is {len} bytes; the limit is {limit} bytes (limits.max_message_bytes)"
            ));
        }
        Ok(())
    }

    /// Stores `messages` in `queue` (all or none) and wakes its consumer. Errors name the queue and the reason.
    pub fn send(&self, queue: &str, messages: Vec<NewMessage>) -> Result<Vec<i64>, String> {
        validate_queue_name("queue", queue)?;
        if messages.len() > MAX_MESSAGES_PER_SEND {
            return Err(format!("{} messages in one send; the limit is {MAX_MESSAGES_PER_SEND}", messages.len()));
        }
        for message in &messages {
            self.check_size("queue", queue, message.body.len())?;
        }
        let ids = self
            .queues
            .send(queue, &messages, now_ms())
            .map_err(|e| format!("failed to store the message in queue `{queue}`: {e}"))?;
        self.wake(queue);
        Ok(ids)
    }

    /// Gives every subscriber of `topic` its own copy of `body`; returns how many subscribers there are.
    pub fn publish(&self, topic: &str, body: Vec<u8>) -> Result<u32, String> {
        validate_queue_name("topic", topic)?;
        self.check_size("topic", topic, body.len())?;
        let Some(queues) = self.topics.get(topic) else {
            tracing::debug!(%topic, "published to a topic with no subscribers");
            return Ok(0);
        };
        self.queues
            .fan_out(queues, &body, now_ms())
            .map_err(|e| format!("failed to store the message for topic `{topic}`: {e}"))?;
        for queue in queues {
            self.wake(queue);
        }
        Ok(queues.len() as u32)
    }

    /// Finds a function by `name` or `component/name` among those with one of `kinds`.
    pub fn find(&self, name: &str, what: &str, matches: impl Fn(&Trigger) -> bool) -> Result<&FunctionEntry, String> {
        let candidates: Vec<&FunctionEntry> =
            self.functions.iter().filter(|f| matches(&f.trigger) && (f.name == name || f.label() == name)).collect();
        match candidates.as_slice() {
            [one] => Ok(one),
            [] => {
                let known: Vec<String> =
                    self.functions.iter().filter(|f| matches(&f.trigger)).map(|f| f.label()).collect();
                Err(format!(
                    "no {what} function `{name}` is deployed{}",
                    if known.is_empty() { String::new() } else { format!(" (there are: {})", known.join(", ")) }
                ))
            }
            many => Err(format!(
                "`{name}` is ambiguous: {}; call it as `component/function`",
                many.iter().map(|f| format!("`{}`", f.label())).collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// Calls an `invoke` function. `chain` is who is calling (outermost first); past [`MAX_INVOKE_DEPTH`] the
    /// call fails, naming the chain, instead of running.
    pub async fn invoke(self: &Arc<Self>, chain: &[String], name: &str, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        let entry = self.find(name, "invoke", |t| matches!(t, Trigger::Invoke))?;
        let label = entry.label();
        if chain.len() >= MAX_INVOKE_DEPTH {
            let error = format!(
                "invoke depth limit ({MAX_INVOKE_DEPTH}) reached: {} -> {label}; is there a cycle?",
                chain.join(" -> ")
            );
            tracing::warn!(function = %label, "{error}");
            return Err(error);
        }
        let started = Instant::now();
        let (prepared, _start) = self.registry.get(&entry.component).map_err(|e| format!("{e:#}"))?;
        let mut chain = chain.to_vec();
        chain.push(label.clone());
        let depth = chain.len();
        let call = CallContext::new(Some(self.clone()), chain);
        let guest_call = GuestCall::Invoke { function: entry.name.clone(), payload };
        let (outcome, _) =
            self.runtime().call_guest(&prepared, &entry.component.env, call, guest_call, SlotWait::Bounded).await;
        let result = match outcome {
            Ok(result) => result,
            Err(error) => Err(format!("`{label}` {error}")),
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(_) => tracing::info!(function = %label, depth, duration_ms, "invoke ok"),
            Err(error) => tracing::warn!(function = %label, depth, duration_ms, %error, "invoke failed"),
        }
        result
    }

    /// Fires the cron function `name` now, once.
    pub async fn fire_cron(self: &Arc<Self>, name: &str) -> Result<RunRecord, String> {
        let entry = self.find(name, "cron", |t| matches!(t, Trigger::Cron { .. }))?;
        let job = self.crons.get(&entry.label()).ok_or_else(|| format!("cron function `{name}` is not scheduled"))?;
        Ok(cron::fire_manually(self, job).await)
    }

    /// The run history of cron function `name`, newest first.
    pub fn cron_runs(&self, name: &str, limit: u32) -> Result<Vec<RunRecord>, String> {
        let entry = self.find(name, "cron", |t| matches!(t, Trigger::Cron { .. }))?;
        self.cron.runs(&entry.label(), limit).map_err(|e| format!("failed to read the run history: {e}"))
    }

    /// The counts of every queue.
    pub fn queue_stats(&self) -> Result<Vec<QueueStats>, String> {
        let deployed: Vec<String> = self.consumers.keys().cloned().collect();
        self.queues.stats(now_ms(), &deployed).map_err(|e| format!("failed to read the queues: {e}"))
    }

    pub fn dead_letters(&self, queue: &str, limit: u32) -> Result<Vec<DeadLetter>, String> {
        // Bodies can be 1 MiB each: one request reads at most 1,000 of them.
        self.queues.dead_letters(queue, limit.min(1_000)).map_err(|e| format!("failed to read the dead letters: {e}"))
    }

    /// Moves dead letters of `queue` back into it.
    pub fn redrive(&self, queue: &str, ids: Option<&[i64]>) -> Result<usize, String> {
        let moved = self
            .queues
            .redrive(queue, ids, now_ms())
            .map_err(|e| format!("failed to re-drive queue `{queue}`: {e}"))?;
        tracing::info!(%queue, messages = moved, "re-drove dead letters");
        self.wake(queue);
        Ok(moved)
    }
}
