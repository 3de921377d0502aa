//! Prometheus metrics of one host, in a registry of its own (never a global one: two hosts in one process, as in
//! the tests and benchmarks, stay apart). Invocation metrics are updated as each invocation ends; the gauges that
//! describe a state (instances in use, queues) are set when the metrics are read ([`Snapshot`]).

use super::InvocationReport;
use crate::storage::backends::QueueStats;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvocationLabels {
    function: String,
    trigger: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    function: String,
    trigger: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ColdLabels {
    function: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BucketLabels {
    bucket: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamConsumerLabels {
    stream: String,
    consumer: String,
    shard: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueStateLabels {
    queue: String,
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CronLabels {
    function: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Durations from 0.1 ms to about 3.3 s (and +Inf).
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

/// Cron lag from 0.1 ms to about 6.5 s (and +Inf).
fn lag_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 17))
}

/// The state gauges, as read at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub instances_in_use: u64,
    pub instances_max: u64,
    pub queues: Vec<QueueStats>,
    /// What each object bucket holds.
    pub buckets: Vec<crate::storage::objects::BucketUsage>,
    /// Every stream, its shards and its consumers' places.
    pub streams: Vec<crate::storage::streams::StreamInfo>,
    /// The HTTP response cache's counts.
    pub cache: CacheCounts,
    /// Workflow runs by state, failed step attempts, and the oldest wait.
    pub workflows: crate::storage::workflows::RunStats,
    /// Now, in ms since the epoch, for the age of the oldest messages.
    pub now: i64,
}

/// What the HTTP response cache holds and has answered (counts since the host started).
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheCounts {
    pub entries: u64,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub stale: u64,
}

/// `state` of workflow runs.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunStateLabels {
    state: String,
}

/// `status` of a cache answer: hit, miss or stale.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    status: String,
}

/// The metrics; see the module docs.
pub struct Metrics {
    registry: Registry,
    invocations: Family<InvocationLabels, Counter>,
    duration: HistogramFamily<FunctionLabels>,
    cold_starts: Family<ColdLabels, Counter>,
    instances_in_use: Gauge,
    instances_max: Gauge,
    queue_messages: Family<QueueStateLabels, Gauge>,
    queue_dead_letters: Family<QueueLabels, Gauge>,
    queue_oldest_age: Family<QueueLabels, Gauge<f64, AtomicU64>>,
    bucket_objects: Family<BucketLabels, Gauge>,
    bucket_bytes: Family<BucketLabels, Gauge>,
    stream_records: Family<StreamLabels, Gauge>,
    stream_bytes: Family<StreamLabels, Gauge>,
    stream_iterator_age: Family<StreamConsumerLabels, Gauge<f64, AtomicU64>>,
    stream_behind: Family<StreamConsumerLabels, Gauge>,
    cron_lag: HistogramFamily<CronLabels>,
    cache_responses: Family<CacheLabels, Counter>,
    workflow_runs: Family<RunStateLabels, Gauge>,
    workflow_step_failures: Counter,
    workflow_oldest_wait: Gauge<f64, AtomicU64>,
    cache_entries: Gauge,
    cache_bytes: Gauge,
    cron_failures: Family<CronLabels, Counter>,
    log_records_dropped: Counter,
    /// One scrape at a time: each clears the queue gauges and sets them again, and two at once would each see the
    /// other's half-done state.
    scraping: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("edgefn");
        let invocations = Family::<InvocationLabels, Counter>::default();
        registry.register(
            "invocations",
            "Invocations that ended, by function, trigger and outcome (ok, client_error, error, trap, timeout, throttled, \
             unauthorized, cancelled)",
            invocations.clone(),
        );
        let duration = HistogramFamily::<FunctionLabels>::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "invocation_duration",
            "Wall time of invocations that ran, by function and trigger",
            Unit::Seconds,
            duration.clone(),
        );
        let cold_starts = Family::<ColdLabels, Counter>::default();
        registry.register("cold_starts", "Invocations that had to load their component first", cold_starts.clone());
        let instances_in_use = Gauge::default();
        registry.register("instances_in_use", "Instance slots held by running invocations", instances_in_use.clone());
        let instances_max = Gauge::default();
        registry.register("instances_max", "Instance slots in all (limits.max_instances)", instances_max.clone());
        let queue_messages = Family::<QueueStateLabels, Gauge>::default();
        registry.register(
            "queue_messages",
            "Messages a queue holds, by state (ready, in_flight, delayed)",
            queue_messages.clone(),
        );
        let queue_dead_letters = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "queue_dead_letters",
            "Messages of a queue that were dead-lettered and not re-driven",
            queue_dead_letters.clone(),
        );
        let queue_oldest_age = Family::<QueueLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "queue_oldest_message_age",
            "How long ago the oldest message a queue holds was sent",
            Unit::Seconds,
            queue_oldest_age.clone(),
        );
        let bucket_objects = Family::<BucketLabels, Gauge>::default();
        registry.register("object_bucket_objects", "Objects a bucket holds", bucket_objects.clone());
        let bucket_bytes = Family::<BucketLabels, Gauge>::default();
        registry.register_with_unit(
            "object_bucket",
            "Bytes of the objects a bucket holds",
            prometheus_client::registry::Unit::Bytes,
            bucket_bytes.clone(),
        );
        let stream_records = Family::<StreamLabels, Gauge>::default();
        registry.register("stream_records", "Records a stream keeps", stream_records.clone());
        let stream_bytes = Family::<StreamLabels, Gauge>::default();
        registry.register_with_unit(
            "stream",
            "Bytes of the records a stream keeps",
            prometheus_client::registry::Unit::Bytes,
            stream_bytes.clone(),
        );
        let stream_iterator_age = Family::<StreamConsumerLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "stream_iterator_age",
            "How long the oldest record a stream consumer has not handled has waited, per shard (0: caught up)",
            Unit::Seconds,
            stream_iterator_age.clone(),
        );
        let stream_behind = Family::<StreamConsumerLabels, Gauge>::default();
        registry.register(
            "stream_records_behind",
            "Records of a shard after a stream consumer's checkpoint",
            stream_behind.clone(),
        );
        let cache_responses = Family::<CacheLabels, Counter>::default();
        registry.register(
            "http_cache_responses",
            "GET and HEAD requests to functions the response cache saw, by how it answered (hit, miss, stale)",
            cache_responses.clone(),
        );
        let workflow_runs = Family::<RunStateLabels, Gauge>::default();
        registry.register("workflow_runs", "Workflow runs, by state", workflow_runs.clone());
        let workflow_step_failures = Counter::default();
        registry.register(
            "workflow_step_failures",
            "Failed attempts of workflow steps (each one retried, or its step's last)",
            workflow_step_failures.clone(),
        );
        let workflow_oldest_wait = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "workflow_oldest_wait",
            "How long the workflow run waiting longest for an event has waited (0: none waits)",
            Unit::Seconds,
            workflow_oldest_wait.clone(),
        );
        let cache_entries = Gauge::default();
        registry.register("http_cache_entries", "Responses the response cache holds", cache_entries.clone());
        let cache_bytes = Gauge::default();
        registry.register_with_unit(
            "http_cache",
            "Memory the response cache's entries take",
            prometheus_client::registry::Unit::Bytes,
            cache_bytes.clone(),
        );
        let cron_lag = HistogramFamily::<CronLabels>::new_with_constructor(lag_histogram);
        registry.register_with_unit(
            "cron_lag",
            "How late after its tick a cron run started",
            Unit::Seconds,
            cron_lag.clone(),
        );
        let cron_failures = Family::<CronLabels, Counter>::default();
        registry.register("cron_failures", "Cron runs that failed (each failed attempt)", cron_failures.clone());
        let log_records_dropped = Counter::default();
        registry.register(
            "log_records_dropped",
            "Log records dropped because the log store could not keep up",
            log_records_dropped.clone(),
        );
        Self {
            registry,
            invocations,
            duration,
            cold_starts,
            instances_in_use,
            instances_max,
            queue_messages,
            queue_dead_letters,
            queue_oldest_age,
            bucket_objects,
            bucket_bytes,
            stream_records,
            stream_bytes,
            stream_iterator_age,
            stream_behind,
            workflow_runs,
            workflow_step_failures,
            workflow_oldest_wait,
            cron_lag,
            cache_responses,
            cache_entries,
            cache_bytes,
            cron_failures,
            log_records_dropped,
            scraping: std::sync::Mutex::new(()),
        }
    }

    /// Counts an invocation that ended.
    pub fn invocation(&self, report: &InvocationReport) {
        let trace = &report.trace;
        let labels = InvocationLabels {
            function: trace.function.clone(),
            trigger: trace.trigger,
            outcome: report.outcome.as_str(),
        };
        self.invocations.get_or_create(&labels).inc();
        if !report.outcome.never_ran() {
            let labels = FunctionLabels { function: labels.function, trigger: labels.trigger };
            self.duration.get_or_create(&labels).observe(report.wall.as_secs_f64());
        }
        if report.cold_start {
            self.cold_starts.get_or_create(&ColdLabels { function: trace.function.clone() }).inc();
        }
    }

    /// Records a cron run's lag behind its tick and whether it failed.
    pub fn cron_run(&self, function: &str, lag: std::time::Duration, failed: bool) {
        let labels = CronLabels { function: function.to_owned() };
        self.cron_lag.get_or_create(&labels).observe(lag.as_secs_f64());
        if failed {
            self.cron_failures.get_or_create(&labels).inc();
        }
    }

    /// Counts log records the store dropped.
    pub fn log_records_dropped(&self, count: u64) {
        self.log_records_dropped.inc_by(count);
    }

    /// The metrics in the Prometheus text format, with the state gauges set from `snapshot`.
    pub fn encode(&self, snapshot: &Snapshot) -> String {
        let _one_at_a_time = self.scraping.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.instances_in_use.set(i64::try_from(snapshot.instances_in_use).unwrap_or(i64::MAX));
        self.instances_max.set(i64::try_from(snapshot.instances_max).unwrap_or(i64::MAX));
        // A queue that is gone (emptied, its consumer undeployed) disappears from the gauges too.
        self.queue_messages.clear();
        self.queue_dead_letters.clear();
        self.queue_oldest_age.clear();
        for stats in &snapshot.queues {
            let count = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
            for (state, value) in [("ready", stats.ready), ("in_flight", stats.in_flight), ("delayed", stats.delayed)] {
                let labels = QueueStateLabels { queue: stats.queue.clone(), state: state.to_owned() };
                self.queue_messages.get_or_create(&labels).set(count(value));
            }
            let labels = QueueLabels { queue: stats.queue.clone() };
            self.queue_dead_letters.get_or_create(&labels).set(count(stats.dead));
            let age = stats.oldest_enqueued_at.map_or(0.0, |at| (snapshot.now - at).max(0) as f64 / 1000.0);
            self.queue_oldest_age.get_or_create(&labels).set(age);
        }
        self.bucket_objects.clear();
        self.bucket_bytes.clear();
        for usage in &snapshot.buckets {
            let labels = BucketLabels { bucket: usage.bucket.clone() };
            self.bucket_objects.get_or_create(&labels).set(i64::try_from(usage.objects).unwrap_or(i64::MAX));
            self.bucket_bytes.get_or_create(&labels).set(i64::try_from(usage.bytes).unwrap_or(i64::MAX));
        }
        self.stream_records.clear();
        self.stream_bytes.clear();
        self.stream_iterator_age.clear();
        self.stream_behind.clear();
        for stream in &snapshot.streams {
            let labels = StreamLabels { stream: stream.name.clone() };
            let (records, bytes) = stream.shards.iter().fold((0u64, 0u64), |(r, b), s| (r + s.records, b + s.bytes));
            self.stream_records.get_or_create(&labels).set(i64::try_from(records).unwrap_or(i64::MAX));
            self.stream_bytes.get_or_create(&labels).set(i64::try_from(bytes).unwrap_or(i64::MAX));
            for place in &stream.consumers {
                let labels = StreamConsumerLabels {
                    stream: stream.name.clone(),
                    consumer: place.consumer.clone(),
                    shard: place.shard.to_string(),
                };
                self.stream_iterator_age.get_or_create(&labels).set(place.iterator_age_ms as f64 / 1000.0);
                self.stream_behind.get_or_create(&labels).set(i64::try_from(place.behind).unwrap_or(i64::MAX));
            }
        }
        let workflows = &snapshot.workflows;
        for state in crate::storage::workflows::RunState::NAMES {
            let count = workflows.by_state.iter().find(|(name, _)| name == state).map_or(0, |(_, count)| *count);
            let labels = RunStateLabels { state: (*state).to_owned() };
            self.workflow_runs.get_or_create(&labels).set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        // The store counts; the counter catches up with it.
        self.workflow_step_failures.inc_by(workflows.step_failures.saturating_sub(self.workflow_step_failures.get()));
        let oldest = workflows.oldest_wait_since.map_or(0.0, |since| (snapshot.now - since).max(0) as f64 / 1000.0);
        self.workflow_oldest_wait.set(oldest);
        let cache = &snapshot.cache;
        for (status, count) in [("hit", cache.hits), ("miss", cache.misses), ("stale", cache.stale)] {
            // The cache counts; the counter catches up with it.
            let counter = self.cache_responses.get_or_create(&CacheLabels { status: status.to_owned() });
            counter.inc_by(count.saturating_sub(counter.get()));
        }
        self.cache_entries.set(i64::try_from(cache.entries).unwrap_or(i64::MAX));
        self.cache_bytes.set(i64::try_from(cache.bytes).unwrap_or(i64::MAX));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
