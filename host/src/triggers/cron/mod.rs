//! The cron trigger: one schedule per cron function of a live component, its state and run history in SQLite.
//!
//! - Ticks come from [`Schedule`] (time zones, daylight-saving rules). A schedule sleeps until the next tick (on a
//!   precise clock thread, [`clock`]) and fires it. A tick is recorded as handled once its run ended (retries
//!   included) or was skipped: a run cut short by a dying host counts as missed at the next start.
//! - When a schedule starts (host start, or a deploy that switched versions), ticks missed meanwhile follow the
//!   function's `catch_up` policy: `one` (default) runs the latest missed tick once, `skip` runs none, `all` runs
//!   them oldest first, at most `catch_up_limit`.
//! - `overlap = "skip"` (default): a tick that arrives while a run (its retries included) is going is recorded as
//!   `skipped`, not started.
//! - A failed attempt (an `Err`, a trap, a timeout) is retried after `backoff_ms`, doubling, up to `retries`
//!   times; then the run is recorded as `failed` and logged as an error. Every attempt is a row in the history.
//!
//! What a job has run (the ticks in flight, the last handled) lives in a [`JobState`] keyed by
//! `component/function`, which outlives versions: a deploy drains the old version's schedule (it fires no more
//! ticks, and the runs it started finish) and starts the new one from the same state, so no tick runs twice.

mod clock;
mod run;

use run::{Attempt, now_us, run_claimed, run_once};

use super::{Runner, Trigger};
use crate::capabilities::BoxFuture;
use crate::live::{LiveComponent, LiveHandle, LiveSet, LookupError};
use crate::storage::backends::cron::CronBackend;
use crate::storage::cron::RunRecord;
use crate::storage::{StorageError, now_ms};
use chrono::{DateTime, Utc};
use edgefn_manifest::record::{CatchUp, CronPolicy, Overlap, Trigger as TriggerKind};
use edgefn_manifest::schedule::Schedule;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{Notify, watch};

fn is_cron(trigger: &TriggerKind) -> bool {
    matches!(trigger, TriggerKind::Cron { .. })
}

/// Why a manual fire or a history read failed.
#[derive(Debug, thiserror::Error)]
pub enum CronError {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("failed to read the run history: {0}")]
    Storage(#[from] StorageError),
}

/// What a cron job has run, across the versions of its component.
#[derive(Debug)]
struct JobState {
    /// Runs going now (retries included).
    running: AtomicU32,
    /// Notified whenever `running` drops to zero.
    idle: Notify,
    progress: Mutex<Progress>,
}

/// Which ticks are handled: everything up to `done`, except the ticks still running. The stored `last_tick` never
/// passes a tick that is still running, so a run cut short by a dying host is caught up even when a later tick
/// finished (or was skipped) first.
#[derive(Debug, Default)]
struct Progress {
    in_flight: BTreeSet<i64>,
    done: i64,
}

impl Progress {
    /// Every tick up to this one is handled.
    fn handled_through(&self) -> i64 {
        match self.in_flight.first() {
            Some(running) => self.done.min(running - 1),
            None => self.done,
        }
    }

    /// Marks `tick` as ended; returns the tick through which everything is handled.
    fn end(&mut self, tick: i64) -> i64 {
        self.in_flight.remove(&tick);
        self.done = self.done.max(tick);
        self.handled_through()
    }
}

impl JobState {
    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a run as going until the guard drops, whatever ends it (its end, a panic, a cancelled request).
    fn run_started(self: &Arc<Self>) -> RunGuard {
        let already = self.running.fetch_add(1, Ordering::SeqCst);
        RunGuard { state: self.clone(), already }
    }
}

/// A run going: see [`JobState::run_started`].
#[derive(Debug)]
struct RunGuard {
    state: Arc<JobState>,
    /// Runs that were going when this one started.
    already: u32,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if self.state.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.state.idle.notify_waiters();
        }
    }
}

/// One cron function of a live component, as its schedule runs it.
#[derive(Debug)]
struct Job {
    component: Arc<LiveComponent>,
    function: String,
    /// `component/function`: the key of its state and history.
    label: String,
    expression: String,
    timezone: String,
    schedule: Schedule,
    policy: CronPolicy,
    state: Arc<JobState>,
}

/// A running schedule, to stop when its component is drained.
#[derive(Debug)]
struct Running {
    stop: watch::Sender<bool>,
    state: Arc<JobState>,
    task: tokio::task::JoinHandle<()>,
}

/// See the module docs.
#[derive(Debug)]
pub struct CronTrigger {
    db: CronBackend,
    runner: Runner,
    live: LiveHandle,
    /// By `component/function`; never removed, so a redeployed job continues where the old one was.
    states: Mutex<HashMap<String, Arc<JobState>>>,
    /// The schedules running now, by component.
    running: Mutex<HashMap<String, Vec<Running>>>,
}

impl CronTrigger {
    pub fn new(db: CronBackend, runner: Runner, live: LiveHandle) -> Arc<Self> {
        Arc::new(Self { db, runner, live, states: Mutex::default(), running: Mutex::default() })
    }

    /// The state of `label`, created the first time this process sees the job.
    fn state(&self, label: &str) -> Arc<JobState> {
        let mut states = self.states.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        states
            .entry(label.to_owned())
            .or_insert_with(|| {
                Arc::new(JobState {
                    running: AtomicU32::new(0),
                    idle: Notify::new(),
                    progress: Mutex::new(Progress::default()),
                })
            })
            .clone()
    }

    fn job(&self, component: &Arc<LiveComponent>, function: &str) -> Option<Job> {
        let record = component.versions().flat_map(|v| v.functions.iter()).find(|f| f.name == function)?;
        let TriggerKind::Cron { expression, timezone, policy } = &record.trigger else { return None };
        let schedule = match Schedule::parse(expression, timezone) {
            Ok(schedule) => schedule,
            Err(error) => {
                // Deployments refuse such a component; this is a component restored from a database written by a
                // host that did not check.
                tracing::error!(component = %component.name(), %function, %error, "cron schedule does not parse; not scheduled");
                return None;
            }
        };
        let label = format!("{}/{function}", component.name());
        let state = self.state(&label);
        Some(Job {
            component: component.clone(),
            function: function.to_owned(),
            label,
            expression: expression.clone(),
            timezone: timezone.clone(),
            schedule,
            policy: policy.clone(),
            state,
        })
    }

    /// Fires the cron function `name` (or `component/name`) now, once, by hand (admin API, `edgefn invoke FN
    /// --cron`): no retries, recorded as `manual`.
    pub async fn fire_now(&self, name: &str) -> Result<RunRecord, CronError> {
        let live = self.live.load();
        let (component, function) = live.find(name, "cron", is_cron)?;
        let job = self.job(&component, &function).ok_or_else(|| LookupError::NotFound {
            kind: "cron",
            name: name.to_owned(),
            known: Vec::new(),
        })?;
        drop(live);
        let _running = job.state.run_started();
        let now = now_ms();
        let attempt = Attempt { tick: now, reason: "manual", attempt: 1, last: true, fired_us: None };
        Ok(run_once(&self.db, &self.runner, &job, attempt).await)
    }

    /// The run history of cron function `name` (or `component/name`), newest first.
    pub async fn runs(&self, name: &str, limit: u32) -> Result<Vec<RunRecord>, CronError> {
        let live = self.live.load();
        let (component, function) = live.find(name, "cron", is_cron)?;
        let label = format!("{}/{function}", component.name());
        drop(live);
        Ok(self.db.runs(&label, limit).await?)
    }
}

impl Trigger for CronTrigger {
    fn kind(&self) -> &'static str {
        "cron"
    }

    fn start(&self, component: &str, live: &Arc<LiveSet>) {
        let Some(live_component) = live.component(component) else { return };
        let mut functions: Vec<&str> = live_component
            .versions()
            .flat_map(|v| v.functions.iter())
            .filter(|f| is_cron(&f.trigger))
            .map(|f| f.name.as_str())
            .collect();
        functions.sort_unstable();
        functions.dedup();
        let mut started = Vec::new();
        for function in functions {
            let Some(job) = self.job(live_component, function) else { continue };
            let (stop, stopped) = watch::channel(false);
            let state = job.state.clone();
            let (db, runner) = (self.db.clone(), self.runner.clone());
            let task = tokio::spawn(async move { run_schedule(db, runner, Arc::new(job), stopped).await });
            started.push(Running { stop, state, task });
        }
        if !started.is_empty() {
            self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(component.to_owned(), started);
        }
    }

    fn drain(&self, component: &str, deadline: Instant) -> BoxFuture<'_, ()> {
        let schedules = self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(component).unwrap_or_default();
        let component = component.to_owned();
        Box::pin(async move {
            for schedule in &schedules {
                let _ = schedule.stop.send(true);
            }
            let mut states = Vec::new();
            for schedule in schedules {
                // The schedule itself first: once it has returned it fires nothing more, and every run it started
                // is counted in its job's `running`.
                let _ = tokio::time::timeout_at(deadline.into(), schedule.task).await;
                states.push(schedule.state);
            }
            for state in &states {
                loop {
                    let idle = state.idle.notified();
                    if state.running.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    if tokio::time::timeout_at(deadline.into(), idle).await.is_err() {
                        tracing::warn!(%component, "cron runs still going at the drain deadline; they finish on the old version");
                        return;
                    }
                }
            }
        })
    }
}

/// Runs `job`'s schedule until `stopped` says so.
async fn run_schedule(db: CronBackend, runner: Runner, job: Arc<Job>, mut stopped: watch::Receiver<bool>) {
    let now = Utc::now();
    let in_memory = {
        let progress = job.state.progress();
        (progress.done != 0).then(|| progress.handled_through())
    };
    // This process scheduled the job before (a redeploy): its own progress is the truth, the database may lag
    // behind it. Otherwise the database says where the previous process stopped.
    let last_handled = match in_memory {
        Some(last) => Some(last),
        None => match db.last_tick(&job.label).await {
            Ok(last) => last,
            Err(error) => {
                tracing::error!(function = %job.label, %error, "failed to read the cron state; no catch-up");
                None
            }
        },
    };
    // Every tick up to this one is handled: run to the end, skipped, or dropped by the catch-up policy.
    let mut handled_through = now.timestamp_millis();
    if let Some(last) = last_handled {
        let last = DateTime::from_timestamp_millis(last).unwrap_or(now);
        let in_flight = job.state.progress().in_flight.clone();
        let limit = match job.policy.catch_up {
            CatchUp::Skip => 0,
            CatchUp::One => 1,
            CatchUp::All => job.policy.catch_up_limit as usize,
        };
        // Ticks an older version is still running are not missed.
        let missed: Vec<i64> = job
            .schedule
            .ticks_between(last, now, limit + in_flight.len())
            .iter()
            .map(DateTime::timestamp_millis)
            .filter(|tick| !in_flight.contains(tick))
            .collect();
        let missed: Vec<i64> = missed[missed.len().saturating_sub(limit)..].to_vec();
        if *stopped.borrow() {
            // Drained while reading the state: the schedule that replaces this one catches up instead.
            return;
        }
        if let Some(first) = missed.first() {
            // Ticks older than the ones caught up are dropped by the policy; the caught-up ones count as handled
            // only once they ran, so a host that dies during catch-up catches up again.
            handled_through = first - 1;
            job.state.progress().in_flight.extend(missed.iter().copied());
            let running = job.state.run_started();
            if running.already > 0 && job.policy.overlap == Overlap::Skip {
                // An older version's run is still going (past the drain deadline): these ticks overlap it.
                drop(running);
                for tick in missed {
                    record_skipped(&db, &job, tick, now_us());
                }
            } else {
                tracing::info!(function = %job.label, missed = missed.len(), policy = ?job.policy.catch_up,
                    "catching up on missed ticks");
                let (db, runner, job) = (db.clone(), runner.clone(), job.clone());
                // In order, one after the other, as one long run: ticks arriving meanwhile follow the overlap
                // policy.
                tokio::spawn(async move {
                    let _running = running;
                    for tick in missed {
                        if db.claim(&job.label, tick).await {
                            run_claimed(&db, &runner, &job, tick, "catch-up", None).await;
                        }
                        record_handled(&db, &job, tick);
                    }
                });
            }
        }
    }
    // Never past a tick still running (an older version's, or a catch-up's): a host that dies now must run it.
    let handled_through = {
        let mut progress = job.state.progress();
        progress.done = progress.done.max(handled_through);
        progress.handled_through()
    };
    if let Err(error) = db.set_last_tick(&job.label, handled_through).await {
        tracing::error!(function = %job.label, %error, "failed to record the cron state");
    }
    let mut cursor = now;
    loop {
        let Some(next) = job.schedule.next_after(cursor) else {
            tracing::warn!(function = %job.label, expression = %job.expression, "the schedule never fires again");
            return;
        };
        tokio::select! {
            biased;
            _ = stopped.wait_for(|stop| *stop) => return,
            () = clock::sleep_until(next.into()) => {}
        }
        if *stopped.borrow() {
            return;
        }
        // The fire time is taken as the timer wakes, and the run is started before any SQLite write, so the
        // writes (ten jobs on one tick queue on one connection) do not delay the function.
        let fired_us = now_us();
        cursor = next;
        fire(&db, &runner, &job, next.timestamp_millis(), fired_us);
    }
}

/// Records that every tick up to `tick` is handled, off the async threads: the other schedules due on the same
/// tick should not wait for the write.
fn record_handled(db: &CronBackend, job: &Job, tick: i64) {
    let through = job.state.progress().end(tick);
    let (db, label) = (db.clone(), job.label.clone());
    tokio::spawn(async move {
        if let Err(error) = db.set_last_tick(&label, through).await {
            tracing::error!(function = %label, %error, "failed to record the cron state");
        }
    });
}

/// Starts the run of one scheduled tick, unless the overlap policy says to skip it.
fn fire(db: &CronBackend, runner: &Runner, job: &Arc<Job>, tick: i64, fired_us: i64) {
    let running = job.state.run_started();
    if running.already > 0 && job.policy.overlap == Overlap::Skip {
        drop(running);
        let (db, job) = (db.clone(), job.clone());
        tokio::spawn(async move {
            // On a cluster, the node that claims the tick says what became of it.
            if db.claim(&job.label, tick).await {
                record_skipped(&db, &job, tick, fired_us);
            } else {
                record_handled(&db, &job, tick);
            }
        });
        return;
    }
    job.state.progress().in_flight.insert(tick);
    let (db, runner, job) = (db.clone(), runner.clone(), job.clone());
    tokio::spawn(async move {
        let _running = running;
        // On a cluster, another node may have claimed this tick: then it is handled there.
        if db.claim(&job.label, tick).await {
            if job.policy.overlap == Overlap::Skip && db.running_elsewhere(&job.label).await {
                // Another node's run of this job is still going.
                record_skipped(&db, &job, tick, fired_us);
                return;
            }
            run_claimed(&db, &runner, &job, tick, "schedule", Some(fired_us)).await;
        }
        record_handled(&db, &job, tick);
    });
}

/// Records `tick` as skipped (a run was still going, `overlap = "skip"`) and handled.
fn record_skipped(db: &CronBackend, job: &Job, tick: i64, fired_us: i64) {
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
        node: None,
    };
    tracing::warn!(function = %job.label, scheduled_at = tick, "cron tick skipped: the previous run is still going");
    let (writer, label) = (db.clone(), job.label.clone());
    tokio::spawn(async move {
        if let Err(error) = writer.start_run(run).await {
            tracing::error!(function = %label, %error, "failed to record a skipped cron run");
        }
    });
    record_handled(db, job, tick);
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
