//! One resume of a workflow run: load the version it is pinned to, call its function with the run's journal and a
//! lease, and record what it answered (or why it could not run: put off, crashed, failed).

use super::{
    BUSY_RETRY, Lease, MAX_CRASHES, MAX_PINNED_LOADED, MISSING_RETRY, WorkflowEngine, is_workflow, oversize_input,
};
use crate::live::ComponentVersion;
use crate::runtime::{GuestCall, InvokeError, SlotKind};
use crate::storage::now_ms;
use crate::storage::workflows::{Applied, Prepared, RunState};
use crate::telemetry::otel;
use crate::triggers::Work;
use edgefn_manifest::workflow::{Call, Entry, Next, Outcome, StepError};
use std::collections::HashMap;
use std::sync::Arc;

impl WorkflowEngine {
    /// Version `version` of `component`: a live one as it is, another loaded from its kept artifact (and kept
    /// loaded while there is room).
    pub(super) async fn version_of(&self, component: &str, version: u32) -> Result<Arc<ComponentVersion>, String> {
        let live =
            self.live.load().component(component).and_then(|c| c.versions().find(|v| v.version == version).cloned());
        if let Some(live) = live {
            return Ok(live);
        }
        let key = (component.to_owned(), version);
        if let Some(loaded) = self.lock_pinned().get(&key) {
            return Ok(loaded.clone());
        }
        let stored = self.stored.get().ok_or_else(|| "stored versions are not loaded yet".to_owned())?;
        let loaded = stored.load(component, version).await?;
        let mut pinned = self.lock_pinned();
        if pinned.len() >= MAX_PINNED_LOADED {
            pinned.clear();
        }
        pinned.insert(key, loaded.clone());
        Ok(loaded)
    }

    fn lock_pinned(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), Arc<ComponentVersion>>> {
        self.pinned.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn lock_crashes(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.crashes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One resume of run `id`; every failure is logged, and the run is left due again or failed with the reason.
    pub(super) async fn resume(&self, id: &str) {
        match self.try_resume(id).await {
            Ok(()) => {}
            // The same resume would make the same change, refused the same way, for ever: the run fails, naming
            // why (on a cluster, a step whose result does not fit one NATS message).
            Err(error @ crate::storage::StorageError::TooLargeForCluster { .. }) => {
                tracing::warn!(correlation_id = %id, %error, "a workflow run failed: its next change cannot be recorded");
                let message = format!("the run's next change cannot be recorded: {error}");
                if let Err(error) = self.db.fail(id, &message, now_ms()).await {
                    tracing::error!(correlation_id = %id, %error, "a workflow run could not be failed; it runs again");
                    let _ = self.db.postpone(id, now_ms() + BUSY_RETRY.as_millis() as i64).await;
                }
            }
            Err(error) => {
                tracing::error!(correlation_id = %id, %error, "a workflow resume failed to record; it runs again");
                let _ = self.db.postpone(id, now_ms() + BUSY_RETRY.as_millis() as i64).await;
            }
        }
    }

    async fn try_resume(&self, id: &str) -> Result<(), crate::storage::StorageError> {
        let now = now_ms();
        let (run, journal) = match self.db.prepare_resume(id, now).await? {
            Prepared::Resume(run, journal) => (run, journal),
            Prepared::NotDue => return Ok(()),
            Prepared::Expired => {
                tracing::warn!(correlation_id = %id, "a workflow run failed: it is older than its limit");
                return Ok(());
            }
        };
        let label = format!("{}/{}", run.component, run.function);
        let found = match run.version {
            Some(pinned) => match self.version_of(&run.component, pinned).await {
                Ok(version) if version.has(&run.function, is_workflow) => Some((version, run.function.clone())),
                Ok(_) => {
                    let message = format!("version {pinned} of `{}` has no workflow `{}`", run.component, run.function);
                    self.db.fail(id, &message, now_ms()).await?;
                    return Ok(());
                }
                Err(error) => {
                    tracing::warn!(correlation_id = %id, workflow = %label, version = pinned, %error,
                        "the run's version cannot be loaded; it waits");
                    return self.db.postpone(id, now + MISSING_RETRY.as_millis() as i64).await;
                }
            },
            None => {
                let live = self.live.load();
                live.find(&label, "workflow", is_workflow).ok().and_then(|(component, function)| {
                    component.pick(|version| version.has(&function, is_workflow)).cloned().map(|v| (v, function))
                })
            }
        };
        let Some((version, function)) = found else {
            tracing::warn!(correlation_id = %id, workflow = %label, "the run's workflow is not deployed; it waits");
            return self.db.postpone(id, now + MISSING_RETRY.as_millis() as i64).await;
        };
        let journal_len = journal.len();
        let retry =
            if matches!(run.state, RunState::Retrying | RunState::Cancelling) { run.retry.clone() } else { None };
        let entries: Vec<Entry> = journal.into_iter().map(|row| row.entry).collect();
        let lease = uuid::Uuid::new_v4().simple().to_string();
        let cancelling = run.state == RunState::Cancelling;
        let held = Lease {
            run: id.to_owned(),
            component: run.component.clone(),
            cancelling,
            journal_len,
            began: std::time::Instant::now(),
            steps: 0,
        };
        self.lock_leases().insert(lease.clone(), held);
        let call = Call {
            run: id.to_owned(),
            input: run.input,
            journal: entries,
            retry,
            now_ms: now,
            cancelling,
            lease: Some(lease.clone()),
        };
        let payload = serde_json::to_vec(&call).unwrap_or_default();
        let work = Work {
            correlation_id: Arc::from(id),
            trigger: "workflow",
            detail: format!("run {id} at entry {journal_len}"),
            parent: otel::Parent::default(),
        };
        let answer =
            match self.runner.prepare(&version, &function, SlotKind::Background, vec![label.clone()], work).await {
                Ok(prepared) => {
                    let call = GuestCall::Invoke { function: function.clone(), payload, correlation_id: id.to_owned() };
                    let runtime = self.runner.runtime();
                    runtime.call_guest(&prepared.component, &prepared.invocation, prepared.slot, call).await.0
                }
                Err(error) => Err(error),
            };
        // What the resume journaled as it went is committed; the rest of its work is answered after it.
        let journal_len = self.lock_leases().remove(&lease).map_or(journal_len, |held| held.journal_len);
        match answer {
            Ok(Ok(bytes)) => {
                self.lock_crashes().remove(id);
                let outcome: Outcome = match serde_json::from_slice(&bytes) {
                    Ok(outcome) => child_checked(outcome, &version),
                    Err(error) => {
                        let message = format!("the function's answer is not a workflow outcome: {error}");
                        self.db.fail(id, &message, now_ms()).await?;
                        return Ok(());
                    }
                };
                let next = format!("{:?}", outcome.next);
                if self.db.apply_as(id, journal_len, outcome, now_ms(), Some(cancelling)).await? != Applied::Stale {
                    tracing::info!(correlation_id = %id, workflow = %label, version = version.version, next = %next,
                        "workflow resumed");
                }
            }
            Ok(Err(message)) => {
                self.lock_crashes().remove(id);
                self.db.fail(id, &format!("the function failed outside its steps: {message}"), now_ms()).await?;
            }
            Err(error @ (InvokeError::Busy(_) | InvokeError::Throttled(_) | InvokeError::MemoryBudget(_))) => {
                tracing::info!(correlation_id = %id, workflow = %label, %error, "workflow resume put off: busy");
                self.db.postpone(id, now_ms() + BUSY_RETRY.as_millis() as i64).await?;
            }
            Err(error) => {
                let crashes = {
                    let mut crashes = self.lock_crashes();
                    let count = crashes.entry(id.to_owned()).or_default();
                    *count += 1;
                    *count
                };
                tracing::warn!(correlation_id = %id, workflow = %label, %error, crashes, "a workflow resume crashed");
                if crashes >= MAX_CRASHES {
                    self.lock_crashes().remove(id);
                    let message =
                        format!("the function crashed {crashes} times in a row at entry {journal_len}: {error}");
                    self.db.fail(id, &message, now_ms()).await?;
                } else {
                    let backoff = BUSY_RETRY.as_millis() as i64 * (1 << crashes.min(6));
                    self.db.postpone(id, now_ms() + backoff).await?;
                }
            }
        }
        Ok(())
    }
}

/// `outcome`, or, when it starts a child run that cannot be (a workflow its version does not have, an input past
/// the limit), the same outcome failing the run, saying why.
fn child_checked(outcome: Outcome, version: &ComponentVersion) -> Outcome {
    let Next::Child { name, workflow, input } = &outcome.next else { return outcome };
    let problem = if !version.has(workflow, is_workflow) {
        format!("child `{name}`: version {} of this component has no workflow `{workflow}`", version.version)
    } else if let Some(why) = oversize_input(input) {
        format!("child `{name}`: its input is {why}")
    } else {
        return outcome;
    };
    Outcome { next: Next::Failed { error: StepError { status: 400, message: problem } }, ..outcome }
}
