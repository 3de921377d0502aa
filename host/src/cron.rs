//! The cron trigger: one scheduler task per cron function, its state and run history in SQLite.
//!
//! - Ticks come from [`Schedule`] (time zones, daylight-saving rules). The scheduler sleeps until the next tick
//!   (on a precise clock thread, [`clock`]) and fires it. A tick is recorded as handled in SQLite once its run
//!   ended (retries included) or was skipped: a run cut short by a dying host counts as missed at the next start.
//! - At start, ticks missed while the host was down follow the function's `catch_up` policy: `one` (default)
//!   runs the latest missed tick once, `skip` runs none, `all` runs them oldest first, at most `catch_up_limit`.
//! - `overlap = "skip"` (default): a tick that arrives while a run (its retries included) is going is recorded
//!   as `skipped`, not started.
//! - A failed attempt (an `Err`, a trap, a timeout) is retried after `backoff_ms`, doubling, up to `retries`
//!   times; then the run is recorded as `failed` and logged as an error. Every attempt is a row in the history.

mod clock;
mod history;

pub use history::{CronStore, RunRecord};

use crate::deploy::Deployed;
use crate::platform::{Platform, now_ms};
use crate::runtime::SlotWait;
use crate::runtime::guest::{CallContext, CronEvent, GuestCall};
use chrono::{DateTime, Utc};
use edgefn_manifest::record::{CatchUp, CronPolicy, Overlap};
use edgefn_manifest::schedule::Schedule;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A deployed cron function.
#[derive(Debug)]
pub struct CronJob {
    pub component: Arc<Deployed>,
    pub function: String,
    /// `component/function`: the key of its state and history.
    pub label: String,
    pub expression: String,
    pub timezone: String,
    pub schedule: Schedule,
    pub policy: CronPolicy,
    /// Runs going now (retries included).
    running: AtomicU32,
    progress: std::sync::Mutex<Progress>,
}

/// Which ticks are handled: everything up to `done`, except the ticks still running. The stored `last_tick` never
/// passes a tick that is still running, so a run cut short by a dying host is caught up even when a later tick
/// finished (or was skipped) first.
#[derive(Debug, Default)]
struct Progress {
    in_flight: std::collections::BTreeSet<i64>,
    done: i64,
}

impl Progress {
    /// Marks `tick` as ended; returns the tick through which everything is handled.
    fn end(&mut self, tick: i64) -> i64 {
        self.in_flight.remove(&tick);
        self.done = self.done.max(tick);
        match self.in_flight.first() {
            Some(running) => self.done.min(running - 1),
            None => self.done,
        }
    }
}

impl CronJob {
    /// Checks the expression and zone (a component built without the macro may carry anything).
    pub fn new(
        component: Arc<Deployed>,
        function: &str,
        expression: &str,
        timezone: &str,
        policy: &CronPolicy,
    ) -> Result<Self, String> {
        let schedule = Schedule::parse(expression, timezone)?;
        Ok(Self {
            label: format!("{}/{function}", component.name),
            component,
            function: function.to_owned(),
            expression: expression.to_owned(),
            timezone: timezone.to_owned(),
            schedule,
            policy: policy.clone(),
            running: AtomicU32::new(0),
            progress: std::sync::Mutex::new(Progress::default()),
        })
    }
}

impl CronJob {
    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Runs `job`'s schedule until the host stops.
pub async fn run_schedule(platform: Arc<Platform>, job: Arc<CronJob>) {
    let store = platform.cron();
    let now = Utc::now();
    // Every tick up to this one is handled: run to the end, skipped, or dropped by the catch-up policy.
    let mut handled_through = now.timestamp_millis();
    match store.last_tick(&job.label) {
        Ok(Some(last)) => {
            let last = DateTime::from_timestamp_millis(last).unwrap_or(now);
            let missed = match job.policy.catch_up {
                CatchUp::Skip => Vec::new(),
                CatchUp::One => job.schedule.ticks_between(last, now, 1),
                CatchUp::All => job.schedule.ticks_between(last, now, job.policy.catch_up_limit as usize),
            };
            if let Some(first) = missed.first() {
                tracing::info!(function = %job.label, missed = missed.len(), policy = ?job.policy.catch_up,
                    "catching up on ticks missed while the host was down");
                // Ticks older than the ones caught up are dropped by the policy; the caught-up ones count as
                // handled only once they ran, so a host that dies during catch-up catches up again.
                handled_through = first.timestamp_millis() - 1;
                job.progress().in_flight.extend(missed.iter().map(DateTime::timestamp_millis));
                let (platform, job) = (platform.clone(), job.clone());
                // In order, one after the other, as one long run: ticks arriving meanwhile follow the overlap policy.
                job.running.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    for tick in missed {
                        let tick = tick.timestamp_millis();
                        run_with_retries(&platform, &job, tick, "catch-up", None).await;
                        record_handled(&platform, &job, tick);
                    }
                    job.running.fetch_sub(1, Ordering::SeqCst);
                });
            }
        }
        Ok(None) => {}
        Err(error) => tracing::error!(function = %job.label, %error, "failed to read the cron state; no catch-up"),
    }
    {
        let mut progress = job.progress();
        progress.done = progress.done.max(handled_through);
    }
    if let Err(error) = store.set_last_tick(&job.label, handled_through) {
        tracing::error!(function = %job.label, %error, "failed to record the cron state");
    }
    let mut cursor = now;
    loop {
        let Some(next) = job.schedule.next_after(cursor) else {
            tracing::warn!(function = %job.label, expression = %job.expression, "the schedule never fires again");
            return;
        };
        clock::sleep_until(next.into()).await;
        // The fire time is taken as the timer wakes, and the run is started before any SQLite write, so the
        // writes (ten jobs on one tick queue on one connection) do not delay the function.
        let fired_us = now_us();
        cursor = next;
        let tick = next.timestamp_millis();
        fire(&platform, &job, tick, fired_us);
    }
}

/// Records that every tick up to `tick` is handled, off the async threads: the other schedules due on the same
/// tick should not wait for the write. A tick counts as handled once its run ended (retries included) or was
/// skipped, so a run cut short by a dying host is caught up at the next start.
fn record_handled(platform: &Arc<Platform>, job: &CronJob, tick: i64) {
    let through = job.progress().end(tick);
    let (platform, label) = (platform.clone(), job.label.clone());
    tokio::task::spawn_blocking(move || {
        if let Err(error) = platform.cron().set_last_tick(&label, through) {
            tracing::error!(function = %label, %error, "failed to record the cron state");
        }
    });
}

/// Starts the run of one scheduled tick, unless the overlap policy says to skip it.
fn fire(platform: &Arc<Platform>, job: &Arc<CronJob>, tick: i64, fired_us: i64) {
    let already_running = job.running.fetch_add(1, Ordering::SeqCst) > 0;
    if already_running && job.policy.overlap == Overlap::Skip {
        job.running.fetch_sub(1, Ordering::SeqCst);
        let now = now_ms();
        let run = RunRecord {
            id: 0,
            function: job.label.clone(),
            scheduled_at: tick,
            started_at: now,
            finished_at: Some(now),
            outcome: "skipped".into(),
            attempt: 0,
            reason: "schedule".into(),
            error: Some("the previous run was still going (overlap = \"skip\")".into()),
            delay_us: fired_us - tick * 1000,
        };
        tracing::warn!(function = %job.label, scheduled_at = tick, "cron tick skipped: the previous run is still going");
        let (store, label) = (platform.clone(), job.label.clone());
        tokio::task::spawn_blocking(move || {
            if let Err(error) = store.cron().start_run(&run) {
                tracing::error!(function = %label, %error, "failed to record a skipped cron run");
            }
        });
        record_handled(platform, job, tick);
        return;
    }
    job.progress().in_flight.insert(tick);
    let (platform, job) = (platform.clone(), job.clone());
    tokio::spawn(async move {
        run_with_retries(&platform, &job, tick, "schedule", Some(fired_us)).await;
        record_handled(&platform, &job, tick);
        job.running.fetch_sub(1, Ordering::SeqCst);
    });
}

/// Runs a tick, retrying failed attempts per the policy. `fired_us`: when the scheduler fired it (µs since the
/// epoch), if it did. Returns the last attempt's record.
async fn run_with_retries(
    platform: &Arc<Platform>,
    job: &CronJob,
    tick: i64,
    reason: &str,
    fired_us: Option<i64>,
) -> RunRecord {
    let attempts = job.policy.retries.saturating_add(1);
    let mut attempt = 1;
    loop {
        let last = attempt == attempts;
        let fired = if attempt == 1 { fired_us } else { None };
        let record = run_once(platform, job, Attempt { tick, reason, attempt, last, fired_us: fired }).await;
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
struct Attempt<'a> {
    tick: i64,
    reason: &'a str,
    attempt: u32,
    /// A failure is final (`failed`), not `retrying`.
    last: bool,
    /// When the scheduler fired it (µs since the epoch); now when not given.
    fired_us: Option<i64>,
}

/// One attempt, recorded in the history.
async fn run_once(platform: &Arc<Platform>, job: &CronJob, attempt: Attempt<'_>) -> RunRecord {
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
    };
    // SQLite writes go to the blocking pool: the schedules due on the same tick should not queue behind them.
    let (store, row) = (platform.clone(), record.clone());
    match tokio::task::spawn_blocking(move || store.cron().start_run(&row)).await {
        Ok(Ok(id)) => record.id = id,
        Ok(Err(error)) => tracing::error!(function = %job.label, %error, "failed to record a cron run"),
        Err(error) => tracing::error!(function = %job.label, %error, "failed to record a cron run"),
    }
    let event = CronEvent {
        function: job.function.clone(),
        expression: job.expression.clone(),
        timezone: job.timezone.clone(),
        scheduled_at: tick,
        fired_at: started_at,
        attempt,
        reason: reason.to_owned(),
    };
    let error = match platform.registry().get(&job.component) {
        Ok((prepared, _start)) => {
            let call = CallContext::new(Some(platform.clone()), vec![job.label.clone()]);
            let (outcome, _) = platform
                .runtime()
                .call_guest(&prepared, &job.component.env, call, GuestCall::Cron(event), SlotWait::Unbounded)
                .await;
            match outcome {
                Ok(Ok(_)) => None,
                Ok(Err(message)) => Some(message),
                Err(error) => Some(error.to_string()),
            }
        }
        Err(error) => Some(format!("{error:#}")),
    };
    record.finished_at = Some(now_ms());
    record.outcome = match (&error, last) {
        (None, _) => "succeeded",
        (Some(_), false) => "retrying",
        (Some(_), true) => "failed",
    }
    .into();
    record.error = error;
    if record.id != 0 {
        let (store, row) = (platform.clone(), record.clone());
        let finished = tokio::task::spawn_blocking(move || {
            store.cron().finish_run(row.id, row.finished_at.unwrap_or_default(), &row.outcome, row.error.as_deref())
        })
        .await;
        if !matches!(finished, Ok(Ok(()))) {
            tracing::error!(function = %job.label, ?finished, "failed to record the end of a cron run");
        }
    }
    let duration_ms = started.elapsed().as_millis() as u64;
    match &record.error {
        None => tracing::info!(function = %job.label, scheduled_at = tick, attempt, reason, duration_ms, "cron run ok"),
        Some(error) => tracing::warn!(function = %job.label, scheduled_at = tick, attempt, reason, duration_ms,
            outcome = %record.outcome, %error, "cron run failed"),
    }
    record
}

/// Fires `job` now, once, by hand (admin API, `edgefn invoke FN --cron`): no retries, recorded as `manual`.
pub async fn fire_manually(platform: &Arc<Platform>, job: &CronJob) -> RunRecord {
    job.running.fetch_add(1, Ordering::SeqCst);
    let now = now_ms();
    let record =
        run_once(platform, job, Attempt { tick: now, reason: "manual", attempt: 1, last: true, fired_us: None }).await;
    job.running.fetch_sub(1, Ordering::SeqCst);
    record
}

/// Microseconds since the Unix epoch.
fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::Progress;

    #[test]
    fn handled_never_passes_a_tick_still_running() {
        let mut progress = Progress { done: 0, ..Progress::default() };
        progress.in_flight.insert(1_000);
        // 2,000 was skipped (or finished first) while 1,000 still runs: only up to 999 is handled.
        assert_eq!(progress.end(2_000), 999);
        // 1,000 ends: everything through 2,000 is handled.
        assert_eq!(progress.end(1_000), 2_000);
        assert_eq!(progress.end(3_000), 3_000);
    }
}
