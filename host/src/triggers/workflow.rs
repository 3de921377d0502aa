//! Durable workflows: starts runs, and resumes each when it is due, in a fresh instance of its function that
//! replays the run's journal (`edgefn_manifest::workflow` has the protocol, `storage::workflows` the runs).
//!
//! One driver task per node: it picks the runs that are due (ready now, a retry's backoff over, a sleep over, a
//! wait timed out), at most [`MAX_RESUMING`] at once and never one run twice at once, and calls the function with a
//! lease: each step the function ends is journaled through it at once (one transaction each), and the function goes
//! on to its next step for up to [`RESUME_SHARE`]; what it answers at the end is committed in one transaction. A run holds no instance while it sleeps or waits. A crash of the host between
//! the call and the commit loses that call's work, which the next resume does again (at least once for a step's
//! side effects, exactly once for its journaled result). Every log record of a resume carries the run's id as its
//! correlation id.
//!
//! A run resumes on the version of its component it started on (the live one, or the canary's, when it started):
//! a deploy or a rollback starts new runs on the new version and leaves old runs on theirs, loaded from their kept
//! artifact once they are no longer live. `edgefn workflows retry RUN --version N` moves a run to another version;
//! one whose steps differ from the run's journal fails it with the "non-deterministic" error, which a retry on the
//! old version undoes.

mod resume;

use super::Runner;
use crate::capabilities::BoxFuture;
use crate::live::{ComponentVersion, LiveHandle};
use crate::storage::now_ms;
use crate::storage::workflows::{
    Applied, MAX_PAYLOAD_BYTES, NewRun, Retried, RetryRefused, RunRow, SignalError, Signalled, StartRefused, WorkflowDb,
};
use edgefn_manifest::record::Trigger as TriggerKind;
use edgefn_manifest::workflow::{Entry, Journaled, Next, Outcome};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// How many runs resume at once on a node.
pub const MAX_RESUMING: usize = 16;
/// How many times in a row a resume may crash (trap, time out) before its run fails.
pub const MAX_CRASHES: u32 = 5;
/// How long a run waits when its function is busy, or not deployed, before it is tried again.
const BUSY_RETRY: Duration = Duration::from_secs(1);
const MISSING_RETRY: Duration = Duration::from_secs(10);
/// How long one resume may go on from step to step (journaling each through its lease) before it ends and the run
/// resumes again in a fresh instance: long runs take turns, and a resume stays well inside an invocation's timeout.
const RESUME_SHARE: Duration = Duration::from_secs(1);
/// The most steps one resume journals before it ends, for the same reason.
const STEPS_PER_RESUME: u32 = 1_000;
/// Versions that are no longer live kept loaded for the runs still on them; past it, all are let go (and loaded
/// again when next needed).
const MAX_PINNED_LOADED: usize = 32;

/// Loads a stored version of a component that is no longer live, for the runs that still run on it (implemented
/// by the deployments, which keep every version's artifact).
pub trait StoredVersions: std::fmt::Debug + Send + Sync + 'static {
    fn load(&self, component: &str, version: u32) -> BoxFuture<'static, Result<Arc<ComponentVersion>, String>>;
}

fn is_workflow(trigger: &TriggerKind) -> bool {
    matches!(trigger, TriggerKind::Workflow)
}

/// Why a run was not started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

impl From<StartRefused> for StartError {
    fn from(refused: StartRefused) -> Self {
        match refused {
            StartRefused::IdTaken { .. } => Self::Invalid(refused.to_string()),
            StartRefused::Storage(error) => Self::Storage(error),
        }
    }
}

/// The longest run id a caller names (a function's is then scoped: `COMPONENT:ID`, at most 64 + 1 + 128).
const MAX_RUN_ID: usize = 128;

/// Whether `id` may name a run: 1 to 200 letters, digits and `-_.:` (a function's own ids are at most
/// [`MAX_RUN_ID`] before they are scoped).
fn valid_run_id(id: &str) -> bool {
    (1..=200).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// A resume under way: the run, its component, how long its journal is now, and how far the resume has gone.
#[derive(Debug)]
struct Lease {
    run: String,
    component: String,
    /// The resume was called to run the run's compensations.
    cancelling: bool,
    journal_len: usize,
    began: std::time::Instant,
    steps: u32,
}

/// See the module docs.
#[derive(Debug)]
pub struct WorkflowEngine {
    db: WorkflowDb,
    live: LiveHandle,
    runner: Runner,
    wake: Notify,
    resuming: Mutex<HashSet<String>>,
    permits: Arc<Semaphore>,
    /// Crashes in a row, by run.
    crashes: Mutex<HashMap<String, u32>>,
    /// Where versions that are no longer live come from; set once the deployments exist.
    stored: OnceLock<Arc<dyn StoredVersions>>,
    /// Versions that are no longer live, loaded for the runs on them.
    pinned: Mutex<HashMap<(String, u32), Arc<ComponentVersion>>>,
    /// The resumes under way, by lease: what their function's `journal` calls name.
    leases: Mutex<HashMap<String, Lease>>,
    /// This engine, for the futures its capability answers (which outlive a borrow of it).
    me: std::sync::Weak<Self>,
}

impl WorkflowEngine {
    pub fn new(db: WorkflowDb, live: LiveHandle, runner: Runner) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            db,
            live,
            runner,
            wake: Notify::new(),
            resuming: Mutex::default(),
            permits: Arc::new(Semaphore::new(MAX_RESUMING)),
            crashes: Mutex::default(),
            stored: OnceLock::new(),
            pinned: Mutex::default(),
            leases: Mutex::default(),
            me: me.clone(),
        })
    }

    fn me(&self) -> Result<Arc<Self>, String> {
        self.me.upgrade().ok_or_else(|| "workflows are not available: the host is stopping".to_owned())
    }

    /// Plugs in where versions that are no longer live come from (the deployments, built after this engine).
    pub fn set_stored_versions(&self, stored: Arc<dyn StoredVersions>) {
        let _ = self.stored.set(stored);
    }

    pub fn db(&self) -> &WorkflowDb {
        &self.db
    }

    /// Starts the driver; it runs for the life of the process.
    pub fn spawn(self: &Arc<Self>) {
        tokio::spawn(self.clone().drive());
    }

    /// Starts a run of the workflow `name` (`function` or `component/function`) with `input`, named `id` if given:
    /// the same id twice starts one run (the second answers the first, `false`). The run stays on the version that
    /// starts it (the live one, or the canary's share).
    pub async fn start(&self, name: &str, input: Value, id: Option<String>) -> Result<(RunRow, bool), StartError> {
        if let Some(id) = &id
            && !valid_run_id(id)
        {
            return Err(StartError::Invalid(format!(
                "run id `{id}` is not 1 to 200 letters, digits, `-`, `_`, `.` or `:`"
            )));
        }
        if let Some(why) = oversize_input(&input) {
            return Err(StartError::Invalid(format!("the input is {why}")));
        }
        let (component, function, version) = {
            let live = self.live.load();
            let (component, function) =
                live.find(name, "workflow", is_workflow).map_err(|error| StartError::NotFound(error.to_string()))?;
            let version = component.pick(|v| v.has(&function, is_workflow)).map(|v| v.version);
            (component.name().to_owned(), function, version)
        };
        let new = NewRun { id, component: component.clone(), function: function.clone(), version, input };
        let started = self.db.start(new, now_ms()).await?;
        if started.1 {
            tracing::info!(correlation_id = %started.0.id, workflow = %format!("{component}/{function}"),
                version, "workflow run started");
            self.wake.notify_one();
        }
        Ok(started)
    }

    /// Resumes run `run` from its journal (one that failed outside its own code), or moves an unfinished one to
    /// `version`, checked to exist and to have the run's workflow.
    pub async fn retry(&self, run: &str, version: Option<u32>) -> Result<Retried, RetryRefused> {
        if let Some(wanted) = version {
            let Some((row, _)) = self.db.load(run).await? else { return Err(RetryRefused::NotFound(run.to_owned())) };
            let loaded = self.version_of(&row.component, wanted).await.map_err(RetryRefused::NoVersion)?;
            if !loaded.has(&row.function, is_workflow) {
                return Err(RetryRefused::NoVersion(format!(
                    "version {wanted} of `{}` has no workflow `{}`",
                    row.component, row.function
                )));
            }
        }
        let retried = self.db.retry(run, version, now_ms()).await?;
        tracing::info!(correlation_id = %run, ?retried, version, "workflow run retried");
        self.lock_crashes().remove(run);
        self.wake.notify_one();
        Ok(retried)
    }

    /// How many runs of `component` have not finished: an undeploy is refused while there are any, unless forced.
    pub async fn unfinished(&self, component: &str) -> Result<u64, crate::storage::StorageError> {
        self.db.unfinished(component).await
    }

    /// Cancels every unfinished run of `component`: it was undeployed by force.
    pub async fn cancel_component(&self, component: &str) -> Result<u64, crate::storage::StorageError> {
        let cancelled =
            self.db.cancel_component(component, "cancelled: its component was undeployed", now_ms()).await?;
        if cancelled > 0 {
            tracing::warn!(component, cancelled, "workflow runs cancelled: their component was undeployed");
        }
        Ok(cancelled)
    }

    fn lock_leases(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lease>> {
        self.leases.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Journals `entries` for the resume holding `lease` (of a run of `component`), in one transaction, and says
    /// whether it may go on to its next step.
    async fn journal(&self, component: &str, lease: &str, entries: Vec<Entry>) -> Result<Journaled, String> {
        let (run, journal_len, knows_cancel) = {
            let leases = self.lock_leases();
            let held = leases.get(lease).filter(|held| held.component == component);
            let held = held.ok_or_else(|| "this is not a workflow resume under way".to_owned())?;
            (held.run.clone(), held.journal_len, held.cancelling)
        };
        let added = entries.len();
        let outcome = Outcome { entries, next: Next::Continue };
        let now = now_ms();
        let applied =
            self.db.apply_as(&run, journal_len, outcome, now, Some(knows_cancel)).await.map_err(|e| e.to_string())?;
        let mut leases = self.lock_leases();
        match (applied, leases.get_mut(lease)) {
            (Applied::Applied { cancelling }, Some(held)) => {
                held.journal_len += added;
                held.steps += 1;
                // Cancelled since this resume began: it stops here, and the next resume runs the compensations.
                let cancelled_meanwhile = cancelling && !knows_cancel;
                let go_on =
                    !cancelled_meanwhile && held.began.elapsed() < RESUME_SHARE && held.steps < STEPS_PER_RESUME;
                Ok(Journaled { now_ms: now, go_on })
            }
            _ => {
                leases.remove(lease);
                Err(format!("run `{run}` moved on without this resume (cancelled, or its journal changed)"))
            }
        }
    }

    /// Sends event `event` with `payload` to run `run`.
    pub async fn signal(&self, run: &str, event: &str, payload: Value) -> Result<Signalled, SignalError> {
        let size = serde_json::to_vec(&payload).map_or(0, |bytes| bytes.len());
        if size > MAX_PAYLOAD_BYTES {
            return Err(SignalError::TooLarge { size, max: MAX_PAYLOAD_BYTES });
        }
        let signalled = self.db.signal(run, event, &payload, now_ms()).await?;
        tracing::info!(correlation_id = %run, event, ?signalled, "workflow signal");
        if signalled == Signalled::Delivered {
            self.wake.notify_one();
        }
        Ok(signalled)
    }

    /// Cancels run `run` (it runs its compensations, then ends cancelled): `None` when there is none, `Some(false)`
    /// when it had ended or is being cancelled.
    pub async fn cancel(&self, run: &str) -> Result<Option<bool>, crate::storage::StorageError> {
        let cancelled = self.db.cancel(run, now_ms()).await?;
        if cancelled == Some(true) {
            tracing::info!(correlation_id = %run, "workflow run cancelled: its compensation runs");
            self.wake.notify_one();
        }
        Ok(cancelled)
    }

    async fn drive(self: Arc<Self>) {
        let cluster_changes = self.db.cluster_changes();
        loop {
            if !self.db.resumes_here() {
                // On a cluster, another node resumes the runs: wait until this one takes them over.
                tokio::select! {
                    () = changed(cluster_changes.as_deref()) => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let now = now_ms();
            let busy: Vec<String> = self.lock_resuming().iter().cloned().collect();
            match self.db.due(now, MAX_RESUMING * 4, busy).await {
                Ok(due) => {
                    for id in due {
                        if !self.lock_resuming().insert(id.clone()) {
                            continue;
                        }
                        let Ok(permit) = self.permits.clone().acquire_owned().await else { return };
                        let engine = self.clone();
                        tokio::spawn(async move {
                            engine.resume(&id).await;
                            engine.lock_resuming().remove(&id);
                            drop(permit);
                            engine.wake.notify_one();
                        });
                    }
                }
                Err(error) => tracing::error!(%error, "failed to read the due workflow runs; trying again"),
            }
            let busy: Vec<String> = self.lock_resuming().iter().cloned().collect();
            let next = self.db.next_due(busy).await.unwrap_or(Some(now_ms() + 1_000));
            let wait = next.map_or(Duration::from_secs(60), |at| {
                Duration::from_millis(u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0).min(60_000))
            });
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                () = self.wake.notified() => {}
                // A change another node made (a start, a signal) may make a run due here.
                () = changed(cluster_changes.as_deref()) => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn lock_resuming(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.resuming.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Why `input` cannot start a run (`N bytes; a workflow's input is at most M`), if it is too large.
fn oversize_input(input: &Value) -> Option<String> {
    let size = serde_json::to_vec(input).map_or(0, |bytes| bytes.len());
    (size > MAX_PAYLOAD_BYTES).then(|| format!("{size} bytes; a workflow's input is at most {MAX_PAYLOAD_BYTES}"))
}

/// What functions reach through `edgefn:function/workflows`: runs of their own component only.
impl crate::capabilities::workflows::Workflows for WorkflowEngine {
    fn journal(
        &self,
        component: String,
        lease: String,
        entries: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let engine = self.me();
        Box::pin(async move {
            let engine = engine?;
            let entries: Vec<Entry> =
                serde_json::from_slice(&entries).map_err(|e| format!("the journal entries do not decode: {e}"))?;
            let journaled = engine.journal(&component, &lease, entries).await?;
            serde_json::to_vec(&journaled).map_err(|e| e.to_string())
        })
    }

    fn start(
        &self,
        component: String,
        workflow: String,
        input: Vec<u8>,
        id: Option<String>,
    ) -> BoxFuture<'static, Result<String, String>> {
        let engine = self.me();
        Box::pin(async move {
            let engine = engine?;
            let input: Value =
                serde_json::from_slice(&input).map_err(|e| format!("the workflow's input is not JSON: {e}"))?;
            // A function's ids are its component's: stored as `COMPONENT:ID`, so that no tenant can take, or learn
            // of, another's.
            let id = match id {
                Some(id) if id.len() > MAX_RUN_ID || !valid_run_id(&id) => {
                    return Err(format!(
                        "run id `{id}` is not 1 to {MAX_RUN_ID} letters, digits, `-`, `_`, `.` or `:`"
                    ));
                }
                Some(id) => Some(format!("{component}:{id}")),
                None => None,
            };
            let name = format!("{component}/{workflow}");
            let (run, _) = engine.start(&name, input, id).await.map_err(|e| e.to_string())?;
            Ok(run.id)
        })
    }

    fn signal(
        &self,
        component: String,
        run: String,
        event: String,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<bool, String>> {
        let engine = self.me();
        Box::pin(async move {
            let engine = engine?;
            let payload: Value =
                serde_json::from_slice(&payload).map_err(|e| format!("the signal's payload is not JSON: {e}"))?;
            // The run as named, or as the component's own id names it (`COMPONENT:ID`); another component's run
            // is answered as none at all.
            let mut found = None;
            for candidate in [run.clone(), format!("{component}:{run}")] {
                if engine.db.owner(&candidate).await.map_err(|e| e.to_string())?.as_deref() == Some(component.as_str())
                {
                    found = Some(candidate);
                    break;
                }
            }
            let Some(owned) = found else { return Err(SignalError::NotFound(run).to_string()) };
            let signalled = engine.signal(&owned, &event, payload).await.map_err(|e| e.to_string())?;
            Ok(signalled == Signalled::Delivered)
        })
    }
}

/// Once `changes` is notified; never when there is none (a node alone).
async fn changed(changes: Option<&tokio::sync::Notify>) {
    match changes {
        Some(changes) => changes.notified().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::valid_run_id;

    #[test]
    fn a_run_id_is_short_and_plain() {
        assert!(valid_run_id("order-42:retry.1_a"));
        assert!(!valid_run_id(""));
        assert!(!valid_run_id("has space"));
        assert!(!valid_run_id("slash/y"));
        assert!(valid_run_id(&"x".repeat(200)));
        assert!(!valid_run_id(&"x".repeat(201)));
    }
}
