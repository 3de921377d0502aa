//! What the host keeps about what runs: the log (guest output, one record per invocation, host events) and the
//! usage that bills it, both in `<data dir>/telemetry.db` (see [`crate::storage::telemetry`]).
//!
//! Nothing on a request's path waits for them. A record goes through a bounded queue to one writer thread, which
//! stores records in batches (one transaction for everything queued) and sums usage per function, version,
//! trigger and minute in memory, adding it to the database every second. When the queue is full (the disk cannot
//! keep up), records are dropped and counted, and the log says how many. Followers (`edgefn logs --follow`) get
//! each record as it is stored.
//!
//! Invocations also update the host's Prometheus [`metrics`] as they end, on the thread that ends them.
//!
//! [`Telemetry::disabled`] keeps nothing, for hosts configured with `[logs] enabled = false` and
//! `[metrics] enabled = false`; either can be on without the other.

pub mod alarms;
pub mod billing;
pub mod correlation;
pub mod metrics;
pub mod otel;
mod writer;

use writer::Event;

use crate::storage::telemetry::{self, Failure, Level, LogKind, LogQuery, LogRecord, StoredLog, UsageCounts, UsageRow};
use crate::storage::{Database, StorageError, now_ms};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

/// Records that may wait for the writer; past this they are dropped and counted.
const QUEUE_RECORDS: usize = 64 * 1024;
/// Records a slow follower may fall behind before it is told it missed some.
const FOLLOW_BUFFER: usize = 4096;
/// The longest message one record keeps; longer ones are cut, and say so.
pub const MAX_MESSAGE_BYTES: usize = 16 << 10;

/// How long and how much is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: Duration,
    pub max_bytes: u64,
    pub usage_max_age: Duration,
    /// The largest input a failure keeps for replay (its bodies, in bytes).
    pub replay_input_max_bytes: u64,
}

/// What one invocation is part of, and who runs it: set by the trigger, carried by the invocation.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub correlation_id: Arc<str>,
    /// `http`, `cron`, `queue`, `topic` or `invoke`.
    pub trigger: &'static str,
    /// `component/function`.
    pub function: String,
    pub version: u32,
    /// What the trigger ran it for: `GET /orders/42`, `3 messages from orders`, `tick 12:05:00 (schedule)`.
    pub detail: String,
    /// This invocation's span (see [`otel`]); 0 for none (the record of a host event).
    pub span_id: u64,
    /// The span it continues.
    pub parent: otel::Parent,
    /// Other spans it continues (a batch whose messages were sent from several): their work ids and span ids.
    pub links: Vec<(Arc<str>, u64)>,
}

/// How an invocation ended. The same names in the log, `/metrics`, `usage`, the dashboard and alarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It ran to its end (for HTTP: answered 1xx, 2xx or 3xx).
    Ok,
    /// An HTTP function answered 4xx: it ran as written, the request was at fault.
    ClientError,
    /// The function returned an error (or answered 5xx).
    Error,
    Trap,
    Timeout,
    /// Refused before it ran: the function's `max_concurrency`, the instance pool or the memory budget was full.
    Throttled,
    /// Refused before it ran by the route's authorizer: no valid token (401) or not the scope (403).
    Unauthorized,
    /// Stopped because its caller went away (an HTTP client that hung up before the response was complete).
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ClientError => "client_error",
            Self::Error => "error",
            Self::Trap => "trap",
            Self::Timeout => "timeout",
            Self::Throttled => "throttled",
            Self::Unauthorized => "unauthorized",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the function failed (what error alarms count): not for a client's error, a refusal before it ran,
    /// or a caller that left.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Error | Self::Trap | Self::Timeout)
    }

    /// Whether the function never ran (nothing to bill).
    pub fn never_ran(self) -> bool {
        matches!(self, Self::Throttled | Self::Unauthorized)
    }
}

/// What one invocation cost, and how it ended.
#[derive(Debug, Clone)]
pub struct InvocationReport {
    pub trace: Arc<Trace>,
    pub outcome: Outcome,
    /// The HTTP status it answered with.
    pub status: Option<u16>,
    /// Why it failed, already masked and bounded.
    pub error: Option<String>,
    pub wall: Duration,
    /// Time its instance was being run (polled): the guest's code and the host calls it made synchronously.
    pub guest_cpu: Duration,
    /// The memory it was configured with, in MiB: what GB-seconds bill.
    pub memory_mb: u64,
    pub peak_memory_bytes: u64,
    pub cold_start: bool,
}

impl InvocationReport {
    /// A report for an invocation refused or failed before its instance ran.
    pub fn refused(trace: Arc<Trace>, outcome: Outcome, error: String, wall: Duration) -> Self {
        Self {
            trace,
            outcome,
            status: None,
            error: Some(error),
            wall,
            guest_cpu: Duration::ZERO,
            memory_mb: 0,
            peak_memory_bytes: 0,
            cold_start: false,
        }
    }

    /// Billed milliseconds: the wall time rounded up to the next millisecond (at least 1 for a run).
    pub fn billed_ms(&self) -> u64 {
        if self.outcome.never_ran() {
            return 0;
        }
        let micros = self.wall.as_micros() as u64;
        micros.div_ceil(1000).max(1)
    }

    fn counts(&self) -> UsageCounts {
        let one = |outcome| u64::from(self.outcome == outcome);
        UsageCounts {
            invocations: 1,
            ok: one(Outcome::Ok),
            client_errors: one(Outcome::ClientError),
            errors: one(Outcome::Error),
            traps: one(Outcome::Trap),
            timeouts: one(Outcome::Timeout),
            throttled: one(Outcome::Throttled),
            unauthorized: one(Outcome::Unauthorized),
            cold_starts: u64::from(self.cold_start),
            wall_us: self.wall.as_micros() as u64,
            guest_cpu_us: self.guest_cpu.as_micros() as u64,
            mb_ms: self.memory_mb * self.billed_ms(),
            peak_memory_bytes: self.peak_memory_bytes,
        }
    }

    fn record(&self, at: i64) -> LogRecord {
        use std::fmt::Write as _;
        let trace = &self.trace;
        // Written with integer arithmetic: this runs for every invocation, and float formatting costs more.
        let mut message = String::with_capacity(160);
        let _ = write!(message, "{} {}: {}", trace.trigger, trace.detail, self.outcome.as_str());
        if let Some(status) = self.status {
            let _ = write!(message, " {status}");
        }
        let _ = write!(message, " in {} ms", Millis(self.wall));
        if !self.outcome.never_ran() {
            let _ = write!(
                message,
                " (billed {} ms at {} MB, cpu {} ms, peak memory {} KiB{})",
                self.billed_ms(),
                self.memory_mb,
                Millis(self.guest_cpu),
                self.peak_memory_bytes >> 10,
                if self.cold_start { ", cold start" } else { "" }
            );
        }
        if let Some(error) = &self.error {
            message.push_str(": ");
            message.push_str(error);
        }
        let level = match self.outcome {
            Outcome::Ok | Outcome::ClientError => Level::Info,
            Outcome::Throttled | Outcome::Unauthorized | Outcome::Cancelled => Level::Warn,
            Outcome::Error | Outcome::Trap | Outcome::Timeout => Level::Error,
        };
        LogRecord {
            at,
            level,
            kind: LogKind::Invocation,
            correlation_id: Some(trace.correlation_id.to_string()),
            function: Some(trace.function.clone()),
            version: Some(trace.version),
            trigger: Some(trace.trigger.to_owned()),
            message: bounded(message),
            duration_us: Some(self.wall.as_micros() as u64),
        }
    }
}

/// A duration as milliseconds with two decimals (`1.25`), formatted without floating point.
struct Millis(Duration);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let micros = self.0.as_micros();
        write!(f, "{}.{:02}", micros / 1000, (micros % 1000) / 10)
    }
}

/// The handle every part of the host logs and meters through. Cheap to clone.
#[derive(Clone, Default)]
pub struct Telemetry {
    /// The log and usage store, when `[logs]` is on.
    store: Option<Arc<Inner>>,
    /// The Prometheus metrics, when `[metrics]` is on.
    metrics: Option<Arc<metrics::Metrics>>,
    /// The `[[alarms]]` windows, when there are rules.
    alarms: Option<Arc<alarms::Alarms>>,
}

struct Inner {
    queue: mpsc::SyncSender<Event>,
    dropped: Arc<AtomicU64>,
    follow: tokio::sync::broadcast::Sender<Arc<StoredLog>>,
    /// A connection of its own for queries, so a query never waits behind a batch being written.
    reader: Database,
    replay_input_max_bytes: u64,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("logs", &self.store.is_some())
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

/// Why telemetry could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("logs and metering are off on this host ([logs] enabled = false)")]
    Disabled,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Telemetry {
    /// Keeps nothing.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// This telemetry, also counting into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// This telemetry, also counting into the windows of `alarms`.
    pub fn with_alarms(mut self, alarms: Arc<alarms::Alarms>) -> Self {
        self.alarms = Some(alarms);
        self
    }

    /// The metrics, when they are on.
    pub fn metrics(&self) -> Option<&Arc<metrics::Metrics>> {
        self.metrics.as_ref()
    }

    /// Opens `<data_dir>/telemetry.db` and starts the writer thread, which ends when the last handle is dropped
    /// (after storing what is queued).
    pub fn open(data_dir: &Path, retention: Retention) -> Result<Self, StorageError> {
        let writer_db = telemetry::open(data_dir)?;
        let reader = Database::connect_file(&data_dir.join(telemetry::TELEMETRY_FILE))?;
        let (queue, events) = mpsc::sync_channel(QUEUE_RECORDS);
        let (follow, _) = tokio::sync::broadcast::channel(FOLLOW_BUFFER);
        let dropped = Arc::new(AtomicU64::new(0));
        writer::spawn(writer_db, follow.clone(), dropped.clone(), retention, events)?;
        let replay_input_max_bytes = retention.replay_input_max_bytes;
        let inner = Inner { queue, dropped, follow, reader, replay_input_max_bytes };
        Ok(Self { store: Some(Arc::new(inner)), metrics: None, alarms: None })
    }

    /// Whether invocation reports are wanted (by the log, or the metrics).
    pub fn is_enabled(&self) -> bool {
        self.store.is_some() || self.metrics.is_some() || self.alarms.is_some() || otel::enabled()
    }

    /// Whether log records are kept: guest output and host events are worth building.
    pub fn logs_enabled(&self) -> bool {
        self.store.is_some()
    }

    fn send(&self, event: Event) {
        if let Some(inner) = &self.store
            && inner.queue.try_send(event).is_err()
        {
            inner.dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(metrics) = &self.metrics {
                metrics.log_records_dropped(1);
            }
        }
    }

    /// Logs a record (never waits: see the module docs).
    pub fn log(&self, record: LogRecord) {
        self.send(Event::Log(record));
    }

    /// Logs a host event about `function` (or the host as a whole).
    pub fn host_event(&self, level: Level, trace: Option<&Trace>, message: String) {
        if !self.logs_enabled() {
            return;
        }
        self.log(LogRecord {
            correlation_id: trace.map(|t| t.correlation_id.to_string()),
            function: trace.map(|t| t.function.clone()),
            version: trace.map(|t| t.version),
            trigger: trace.map(|t| t.trigger.to_owned()),
            ..host_record(level, message)
        });
    }

    /// Logs a host event about a component as a whole (a deploy, a rollback, a load): `edgefn logs COMPONENT` shows it.
    pub fn component_event(&self, level: Level, component: &str, version: Option<u32>, message: String) {
        if !self.logs_enabled() {
            return;
        }
        self.log(LogRecord { function: Some(component.to_owned()), version, ..host_record(level, message) });
    }

    /// Logs the end of an invocation, meters it and counts it.
    pub fn invocation(&self, report: InvocationReport) {
        otel::invocation(&report);
        if let Some(metrics) = &self.metrics {
            metrics.invocation(&report);
        }
        if let Some(alarms) = &self.alarms {
            alarms.observe(&report, now_ms().div_euclid(1000) as u64);
        }
        if self.store.is_some() {
            self.send(Event::Invocation(report));
        }
    }

    /// Logs one line (or piece of a long line) that a function printed, at the level it starts with (`ERROR`,
    /// `[warn]`, `info:` ...), else `info` on stdout and `error` on stderr.
    pub fn guest_output(&self, trace: &Trace, stderr: bool, piece: &[u8]) {
        if !self.logs_enabled() {
            return;
        }
        let at = now_ms();
        let text = String::from_utf8_lossy(piece);
        for line in text.split_terminator('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let kind = if stderr { LogKind::Stderr } else { LogKind::Stdout };
            let level = leading_level(line).unwrap_or(if stderr { Level::Error } else { Level::Info });
            self.log(LogRecord {
                at,
                level,
                kind,
                correlation_id: Some(trace.correlation_id.to_string()),
                function: Some(trace.function.clone()),
                version: Some(trace.version),
                trigger: Some(trace.trigger.to_owned()),
                message: bounded(line.to_owned()),
                duration_us: None,
            });
        }
    }

    /// The largest input a failure keeps for replay, in bytes; `None` when logs are off (nothing is kept).
    pub fn replay_input_cap(&self) -> Option<u64> {
        self.store.as_ref().map(|inner| inner.replay_input_max_bytes)
    }

    /// Keeps a failed invocation for `edgefn replay`, and logs where it is.
    pub fn failure(&self, failure: Failure) {
        self.send(Event::Failure(Box::new(failure)));
    }

    /// The failure `id` (its number, or the newest failure of a correlation id).
    pub async fn find_failure(&self, id: String) -> Result<Option<Failure>, TelemetryError> {
        let inner = self.store.as_ref().ok_or(TelemetryError::Disabled)?;
        self.flush().await;
        Ok(inner.reader.call(move |conn| telemetry::find_failure(conn, &id)).await?)
    }

    /// Waits (off the async threads) until everything logged before this call is stored, usage included.
    pub async fn flush(&self) {
        let Some(inner) = &self.store else { return };
        let (done, stored) = mpsc::channel();
        // A full queue: wait for room rather than skip the flush; the writer empties it.
        let queue = inner.queue.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if queue.send(Event::Flush(done)).is_ok() {
                let _ = stored.recv_timeout(Duration::from_secs(10));
            }
        })
        .await;
    }

    /// The records `query` asks for, after storing everything logged so far.
    pub async fn query(&self, query: LogQuery) -> Result<Vec<StoredLog>, TelemetryError> {
        let inner = self.store.as_ref().ok_or(TelemetryError::Disabled)?;
        self.flush().await;
        Ok(inner.reader.call(move |conn| telemetry::query_logs(conn, &query)).await?)
    }

    /// Usage from `since` (ms since the epoch) on, of `function` if set, after adding in what is summed so far.
    pub async fn usage(&self, since: i64, function: Option<String>) -> Result<Vec<UsageRow>, TelemetryError> {
        let inner = self.store.as_ref().ok_or(TelemetryError::Disabled)?;
        self.flush().await;
        let since_minute = since.div_euclid(60_000);
        Ok(inner.reader.call(move |conn| telemetry::query_usage(conn, since_minute, function.as_deref())).await?)
    }

    /// The wall times (µs, sorted) of `function`'s newest invocations since `since`, at most `limit`.
    pub async fn recent_durations(&self, function: String, since: i64, limit: u32) -> Result<Vec<u64>, TelemetryError> {
        let inner = self.store.as_ref().ok_or(TelemetryError::Disabled)?;
        Ok(inner.reader.call(move |conn| telemetry::recent_durations(conn, &function, since, limit)).await?)
    }

    /// Every record stored from now on.
    pub fn follow(&self) -> Result<tokio::sync::broadcast::Receiver<Arc<StoredLog>>, TelemetryError> {
        Ok(self.store.as_ref().ok_or(TelemetryError::Disabled)?.follow.subscribe())
    }
}

/// `message`, cut to [`MAX_MESSAGE_BYTES`] (at a character boundary), saying so.
fn bounded(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let mut cut = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        let total = message.len();
        message.truncate(cut);
        message.push_str(&format!(" [edgefn: cut from {total} bytes]"));
    }
    message
}

/// The level a printed line starts with: `ERROR ...`, `[warn] ...`, `Info: ...`; the word must end there.
fn leading_level(line: &str) -> Option<Level> {
    let head = line.trim_start().trim_start_matches('[').as_bytes();
    for word in ["error", "warning", "warn", "info", "debug", "trace"] {
        if head.len() >= word.len()
            && head[..word.len()].eq_ignore_ascii_case(word.as_bytes())
            && head.get(word.len()).is_none_or(|next| !next.is_ascii_alphanumeric())
        {
            return Level::parse(word);
        }
    }
    None
}

/// A host event of the host as a whole, now; the callers add what it is about.
fn host_record(level: Level, message: String) -> LogRecord {
    LogRecord {
        at: now_ms(),
        level,
        kind: LogKind::Host,
        correlation_id: None,
        function: None,
        version: None,
        trigger: None,
        message: bounded(message),
        duration_us: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_printed_line_says_its_level_or_takes_its_stream_s() {
        assert_eq!(leading_level("ERROR something broke"), Some(Level::Error));
        assert_eq!(leading_level("[warn] careful"), Some(Level::Warn));
        assert_eq!(leading_level("  Warning: careful"), Some(Level::Warn));
        assert_eq!(leading_level("info: hello"), Some(Level::Info));
        assert_eq!(leading_level("DEBUG x=1"), Some(Level::Debug));
        assert_eq!(leading_level("information wants to be free"), None);
        assert_eq!(leading_level("errors are values"), None);
        assert_eq!(leading_level("é"), None);
    }

    #[test]
    fn billing_rounds_each_invocation_up_to_the_millisecond() {
        let trace = Arc::new(Trace::default());
        let report = |micros: u64, outcome| InvocationReport {
            trace: trace.clone(),
            outcome,
            status: None,
            error: None,
            wall: Duration::from_micros(micros),
            guest_cpu: Duration::ZERO,
            memory_mb: 128,
            peak_memory_bytes: 0,
            cold_start: false,
        };
        assert_eq!(report(1, Outcome::Ok).billed_ms(), 1);
        assert_eq!(report(1_000, Outcome::Ok).billed_ms(), 1);
        assert_eq!(report(1_001, Outcome::Ok).billed_ms(), 2);
        assert_eq!(report(20_400, Outcome::Error).counts().mb_ms, 21 * 128);
        assert_eq!(report(20_400, Outcome::Throttled).counts().mb_ms, 0);
    }

    #[test]
    fn milliseconds_print_with_two_decimals() {
        let shown = |micros| Millis(Duration::from_micros(micros)).to_string();
        assert_eq!(
            (shown(0), shown(1_234), shown(1_005), shown(2_500_999)),
            ("0.00".into(), "1.23".into(), "1.00".into(), "2500.99".into())
        );
    }

    #[test]
    fn a_long_message_is_cut_at_a_character_and_says_so() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = bounded(long);
        assert!(cut.len() < MAX_MESSAGE_BYTES + 64);
        assert!(
            cut.ends_with(&format!("[edgefn: cut from {} bytes]", MAX_MESSAGE_BYTES * 2)),
            "{}",
            &cut[cut.len() - 50..]
        );
    }
}
