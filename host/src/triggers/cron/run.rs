//! Running one claimed tick: the attempts with their retries and backoff, each attempt's invocation, and the run
//! history row it leaves.

use super::{Job, is_cron};
use crate::runtime::{CronEvent, GuestCall, SlotKind};
use crate::storage::backends::cron::CronBackend;
use crate::storage::cron::RunRecord;
use crate::storage::now_ms;
use crate::storage::telemetry::FailedInput;
use crate::telemetry::correlation;
use crate::triggers::{Runner, Work};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs a tick this node claimed, telling the cluster (if any) while it runs. A tick whose node died in the middle
/// of its run is run again first, here, if this node claims it.
pub(super) async fn run_claimed(
    db: &CronBackend,
    runner: &Runner,
    job: &Job,
    tick: i64,
    reason: &str,
    fired_us: Option<i64>,
) {
    if let Some(lost) = db.take_over_stale(&job.label).await {
        tracing::warn!(function = %job.label, scheduled_at = lost, "the node running this tick died; running it again here");
        let running = db.begin_run(&job.label, lost).await;
        run_with_retries(db, runner, job, lost, "catch-up", None).await;
        running.finish(&job.label).await;
    }
    let running = db.begin_run(&job.label, tick).await;
    run_with_retries(db, runner, job, tick, reason, fired_us).await;
    running.finish(&job.label).await;
}

/// Runs a tick, retrying failed attempts per the policy. `fired_us`: when the scheduler fired it (µs since the
/// epoch), if it did. Returns the last attempt's record.
async fn run_with_retries(
    db: &CronBackend,
    runner: &Runner,
    job: &Job,
    tick: i64,
    reason: &str,
    fired_us: Option<i64>,
) -> RunRecord {
    let attempts = job.policy.retries.saturating_add(1);
    let mut attempt = 1;
    loop {
        let last = attempt == attempts;
        let fired = if attempt == 1 { fired_us } else { None };
        let record = run_once(db, runner, job, Attempt { tick, reason, attempt, last, fired_us: fired }).await;
        if record.outcome == "succeeded" || last {
            if record.outcome == "failed" {
                tracing::error!(function = %job.label, scheduled_at = tick, attempts,
                    error = record.error.as_deref().unwrap_or_default(), "cron run failed after its last retry");
            }
            return record;
        }
        let backoff = job.policy.backoff_ms.saturating_mul(1 << (attempt - 1).min(20));
        tokio::time::sleep(Duration::from_millis(backoff)).await;
        attempt += 1;
    }
}

/// Which attempt [`run_once`] makes.
pub(super) struct Attempt<'a> {
    pub(super) tick: i64,
    pub(super) reason: &'a str,
    pub(super) attempt: u32,
    /// A failure is final (`failed`), not `retrying`.
    pub(super) last: bool,
    /// When the scheduler fired it (µs since the epoch); now when not given.
    pub(super) fired_us: Option<i64>,
}

/// One attempt, on the version the component's canary split picks, recorded in the history.
pub(super) async fn run_once(db: &CronBackend, runner: &Runner, job: &Job, attempt: Attempt<'_>) -> RunRecord {
    let Attempt { tick, reason, attempt, last, fired_us } = attempt;
    let started = Instant::now();
    let fired_us = fired_us.unwrap_or_else(now_us);
    let started_at = fired_us / 1000;
    let mut record = RunRecord {
        id: 0,
        function: job.label.clone(),
        scheduled_at: tick,
        started_at,
        finished_at: None,
        outcome: "running".into(),
        attempt,
        reason: reason.to_owned(),
        error: None,
        delay_us: fired_us - tick * 1000,
        node: None,
    };
    // The history row is written while the function starts, not before it: a slow commit (a WAL checkpoint, the
    // other jobs of the same tick writing theirs) never delays the run itself.
    let start_row = db.start_run(record.clone());
    // Each run is new work, with an id of its own.
    let correlation_id: Arc<str> = correlation::new_id().into();
    let event = CronEvent {
        function: job.function.clone(),
        expression: job.expression.clone(),
        timezone: job.timezone.clone(),
        scheduled_at: tick,
        fired_at: started_at,
        attempt,
        reason: reason.to_owned(),
        correlation_id: correlation_id.to_string(),
    };
    let work = Work {
        correlation_id,
        trigger: "cron",
        parent: Default::default(),
        detail: format!(
            "{} tick {} (attempt {attempt})",
            reason,
            DateTime::<Utc>::from_timestamp_millis(tick).map_or_else(|| tick.to_string(), |t| t.to_rfc3339())
        ),
    };
    let version = job.component.pick(|v| v.has(&job.function, is_cron)).cloned();
    // The run's error, if it failed.
    let run = async {
        let Some(version) = &version else {
            return Some("no live version has this cron function".to_owned());
        };
        let prepared =
            match runner.prepare(version, &job.function, SlotKind::Background, vec![job.label.clone()], work).await {
                Ok(prepared) => prepared,
                Err(error) => return Some(error.to_string()),
            };
        // What a failure keeps for replay, when the version records failures.
        let kept = version.env.record_failures.then(|| FailedInput::Cron {
            expression: event.expression.clone(),
            timezone: event.timezone.clone(),
            scheduled_at: event.scheduled_at,
            attempt: event.attempt,
            reason: event.reason.clone(),
        });
        let correlation_id = event.correlation_id.clone();
        let call = GuestCall::Cron(event);
        let error =
            match runner.runtime().call_guest(&prepared.component, &prepared.invocation, prepared.slot, call).await.0 {
                Ok(Ok(_)) => None,
                Ok(Err(message)) => Some(message),
                Err(error) => Some(error.to_string()),
            };
        if let (Some(error), Some(kept)) = (&error, kept) {
            runner.record_failure(version, &job.function, &correlation_id, "cron", error, 0, || Some(kept));
        }
        error
    };
    let (recorded, error) = tokio::join!(start_row, run);
    match recorded {
        Ok(id) => record.id = id,
        Err(error) => tracing::error!(function = %job.label, %error, "failed to record a cron run"),
    }
    record.finished_at = Some(now_ms());
    record.outcome = match (&error, last) {
        (None, _) => "succeeded",
        (Some(_), false) => "retrying",
        (Some(_), true) => "failed",
    }
    .into();
    record.error = error;
    if let Some(metrics) = runner.runtime().telemetry().metrics() {
        let lag = Duration::from_micros(record.delay_us.max(0) as u64);
        metrics.cron_run(&job.label, lag, record.error.is_some());
    }
    if record.id != 0
        && let Err(error) = db.finish_run(&record).await
    {
        tracing::error!(function = %job.label, %error, "failed to record the end of a cron run");
    }
    let duration_ms = started.elapsed().as_millis() as u64;
    let version = version.map_or(0, |v| v.version);
    match &record.error {
        None => tracing::info!(function = %job.label, version, scheduled_at = tick, attempt, reason, duration_ms,
            "cron run ok"),
        Some(error) => tracing::warn!(function = %job.label, version, scheduled_at = tick, attempt, reason,
            duration_ms, outcome = %record.outcome, %error, "cron run failed"),
    }
    record
}

/// Microseconds since the Unix epoch.
pub(super) fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}
