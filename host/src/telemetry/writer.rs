//! The telemetry writer: one thread, niced below the request threads, that stores log records in batches, adds
//! usage up per minute, keeps failures for replay, applies retention, and hands each stored record to followers.

use super::{InvocationReport, Retention, host_record};
use crate::storage::telemetry::{self, Failure, Level, LogRecord, StoredLog, UsageCounts, UsageKey};
use crate::storage::{Database, StorageError, now_ms};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// The most records one transaction stores.
const MAX_BATCH: usize = 8192;
/// The log writer's nice value: about a third of a core that a request thread competes for.
const WRITER_NICE: libc::c_int = 5;
/// How long the writer gathers records before it writes them.
const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// How often usage summed in memory is added to the database.
const USAGE_FLUSH: Duration = Duration::from_secs(1);
/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(30);
pub(super) enum Event {
    Log(LogRecord),
    Invocation(InvocationReport),
    /// A failed invocation to keep for replay.
    Failure(Box<Failure>),
    /// Store everything queued before this, usage included, then answer.
    Flush(mpsc::Sender<()>),
}

/// Starts the writer thread on `db`, taking `events` until every sender is gone.
pub(super) fn spawn(
    db: Database,
    follow: tokio::sync::broadcast::Sender<Arc<StoredLog>>,
    dropped: Arc<AtomicU64>,
    retention: Retention,
    events: mpsc::Receiver<Event>,
) -> Result<(), StorageError> {
    let writer = Writer {
        db,
        follow,
        dropped,
        retention,
        usage: HashMap::new(),
        last_usage_flush: Instant::now(),
        lost_to_full_disk: 0,
        last_retention: None,
    };
    std::thread::Builder::new()
        .name("edgefn-telemetry".into())
        .spawn(move || {
            // Serving comes first: under full load the writer takes what the request threads leave, and its
            // queue holds the records meanwhile.
            crate::priority::lower_this_thread(WRITER_NICE, "the log writer");
            writer.run(events)
        })
        .map_err(|error| StorageError::Task(format!("failed to start the telemetry writer: {error}")))?;
    Ok(())
}

/// Stores `failure`; returns the host record that says where it is (or that it could not be kept).
fn store_failure(db: &Database, failure: &Failure) -> LogRecord {
    let message = match db.with_blocking(|conn| telemetry::insert_failure(conn, failure)) {
        Ok(id) if failure.input.is_some() => {
            format!("failure #{id} recorded with its input: replay it with `edgefn replay {id}`")
        }
        Ok(id) if failure.input_was_streamed() => format!(
            "failure #{id} recorded without its input: the function read the request body as a stream, so the \
             host never held it whole"
        ),
        Ok(id) => format!(
            "failure #{id} recorded without its input: it was {} bytes, over logs.replay_input_max_kb",
            failure.input_bytes
        ),
        Err(error) => format!("failed to record this failure for replay: {error}"),
    };
    LogRecord {
        correlation_id: Some(failure.correlation_id.clone()),
        function: Some(format!("{}/{}", failure.component, failure.function)),
        version: Some(failure.version),
        trigger: Some(failure.trigger.clone()),
        ..host_record(Level::Info, message)
    }
}

struct Writer {
    db: Database,
    follow: tokio::sync::broadcast::Sender<Arc<StoredLog>>,
    dropped: Arc<AtomicU64>,
    retention: Retention,
    usage: HashMap<UsageKey, UsageCounts>,
    last_usage_flush: Instant,
    last_retention: Option<Instant>,
    /// Log records lost since the disk holding the log store filled up (said once when it fills and once when it
    /// has room again, instead of an error per batch).
    lost_to_full_disk: u64,
}

impl Writer {
    fn run(mut self, events: mpsc::Receiver<Event>) {
        loop {
            let first = match events.recv_timeout(USAGE_FLUSH) {
                Ok(event) => Some(event),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.store_usage();
                    return;
                }
            };
            let mut records = Vec::new();
            let mut flushes = Vec::new();
            let db = self.db.clone();
            let handle = |event: Event,
                          records: &mut Vec<LogRecord>,
                          flushes: &mut Vec<mpsc::Sender<()>>,
                          usage: &mut HashMap<_, _>| match event {
                Event::Log(record) => records.push(record),
                Event::Invocation(report) => {
                    let at = now_ms();
                    let key = UsageKey {
                        minute: at.div_euclid(60_000),
                        function: report.trace.function.clone(),
                        version: report.trace.version,
                        trigger: report.trace.trigger.to_owned(),
                    };
                    usage.entry(key).or_insert_with(UsageCounts::default).add(&report.counts());
                    records.push(report.record(at));
                }
                Event::Failure(failure) => records.push(store_failure(&db, &failure)),
                Event::Flush(done) => flushes.push(done),
            };
            if let Some(event) = first {
                handle(event, &mut records, &mut flushes, &mut self.usage);
                // Gather for a moment before writing: one transaction (and one write of each page it touches) for
                // everything that arrives meanwhile. The thread sleeps rather than waits on the queue, so that the
                // threads that log do not each have to wake it. A flush asked for meanwhile waits the moment out.
                if flushes.is_empty() {
                    std::thread::sleep(BATCH_WINDOW);
                }
                while records.len() < MAX_BATCH
                    && let Ok(event) = events.try_recv()
                {
                    handle(event, &mut records, &mut flushes, &mut self.usage);
                }
            }
            let dropped = self.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                let message = format!("{dropped} log records were dropped: the log store could not keep up");
                records.push(host_record(Level::Warn, message));
            }
            self.store(records);
            if !flushes.is_empty() || self.last_usage_flush.elapsed() >= USAGE_FLUSH {
                self.store_usage();
            }
            for done in flushes {
                let _ = done.send(());
            }
            if self.last_retention.is_none_or(|at| at.elapsed() >= RETENTION_EVERY) {
                self.apply_retention();
            }
        }
    }

    fn store(&mut self, records: Vec<LogRecord>) {
        if records.is_empty() {
            return;
        }
        let count = records.len();
        match self.db.with_blocking(|conn| telemetry::insert_logs(conn, records)) {
            Ok(stored) => {
                if self.follow.receiver_count() > 0 {
                    for log in stored {
                        let _ = self.follow.send(Arc::new(log));
                    }
                }
                if self.lost_to_full_disk > 0 {
                    let lost = std::mem::take(&mut self.lost_to_full_disk);
                    let message =
                        format!("the log store has room again: {lost} log records were lost while its disk was full");
                    tracing::warn!(lost, "{message}");
                    self.store(vec![host_record(Level::Warn, message)]);
                }
            }
            Err(error) if error.is_disk_full() => {
                if self.lost_to_full_disk == 0 {
                    tracing::error!(%error, "log records are lost until the log store's disk has room again");
                }
                self.lost_to_full_disk += count as u64;
            }
            Err(error) => tracing::error!(%error, records = count, "failed to store log records"),
        }
    }

    /// Adds the usage counted since the last flush to the store. On a full disk the counts stay here, added to
    /// what comes next, until they can be stored: metering is what a tenant is billed by.
    fn store_usage(&mut self) {
        self.last_usage_flush = Instant::now();
        if self.usage.is_empty() {
            return;
        }
        let minutes: Vec<_> = self.usage.drain().collect();
        let kept = minutes.clone();
        match self.db.with_blocking(|conn| telemetry::add_usage(conn, minutes)) {
            Ok(()) => {}
            Err(error) if error.is_disk_full() => {
                for (key, counts) in kept {
                    self.usage.entry(key).or_default().add(&counts);
                }
            }
            Err(error) => tracing::error!(%error, "failed to store usage"),
        }
    }

    fn apply_retention(&mut self) {
        self.last_retention = Some(Instant::now());
        let now = now_ms();
        let cutoff = now - self.retention.max_age.as_millis() as i64;
        let usage_cutoff = (now - self.retention.usage_max_age.as_millis() as i64).div_euclid(60_000);
        let max_bytes = self.retention.max_bytes;
        let applied = self.db.with_blocking(|conn| {
            let logs = telemetry::apply_retention(conn, cutoff, max_bytes)?;
            let usage = telemetry::delete_usage_before(conn, usage_cutoff)?;
            Ok((logs, usage))
        });
        match applied {
            Ok((0, 0)) => {}
            Ok((logs, usage)) => tracing::debug!(logs, usage, "retention deleted old telemetry"),
            Err(error) => tracing::error!(%error, "failed to apply log retention"),
        }
    }
}
