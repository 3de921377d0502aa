//! What operators do to runs (`edgefn workflows cancel|retry|list|show`, undeploys) and what metrics read: the
//! other half of [`WorkflowDb`], beside what resumes do.

use super::{Answer, AttemptRow, Command, RUN_COLUMNS, RunRow, RunState, WorkflowDb, load_run, run_row};
use crate::storage::StorageError;
use edgefn_manifest::workflow::StepError;
use rusqlite::{OptionalExtension as _, params};

/// What `retry` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retried {
    /// A failed run resumes now from its journal.
    Resumed,
    /// An unfinished run resumes on the named version from its next resume on.
    Moved,
}

/// Why `retry` did nothing.
#[derive(Debug, thiserror::Error)]
pub enum RetryRefused {
    #[error("no workflow run `{0}`")]
    NotFound(String),
    #[error("workflow run `{run}` is {state}: {why}")]
    Final { run: String, state: &'static str, why: &'static str },
    /// The version it was to move to cannot run it.
    #[error("{0}")]
    NoVersion(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Runs by state, and the oldest wait, for the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    /// How many runs are in each state, by [`RunState::as_str`].
    pub by_state: Vec<(String, u64)>,
    /// Failed attempts of steps, in all (each one retried or the step's last).
    pub step_failures: u64,
    /// When the run that has waited longest for an event began to wait (ms since the epoch).
    pub oldest_wait_since: Option<i64>,
}

/// `tree`: run `?1` and its child runs, theirs, and so on.
const RUN_AND_DESCENDANTS: &str = "WITH RECURSIVE tree(id) AS (
    SELECT ?1 UNION SELECT runs.id FROM workflow_runs runs JOIN tree ON runs.parent = tree.id)";

impl WorkflowDb {
    /// Cancels run `id`: it is due at once to run its compensations (`cancelling`), then ends `cancelled`. `false`
    /// when it had finished or is being cancelled already.
    pub async fn cancel(&self, id: &str, now: i64) -> Result<Option<bool>, StorageError> {
        match self.execute(Command::Cancel { id: id.to_owned(), now }).await? {
            Answer::Cancelled(cancelled) => Ok(cancelled),
            other => Err(other.unexpected("cancel")),
        }
    }

    /// The runs in `state` (any), newest first, at most `limit`.
    pub async fn list(&self, state: Option<RunState>, limit: usize) -> Result<Vec<RunRow>, StorageError> {
        self.db
            .call(move |conn| {
                let sql = format!(
                    "SELECT {RUN_COLUMNS} FROM workflow_runs WHERE ?1 IS NULL OR state = ?1
                         ORDER BY created_at DESC, id LIMIT ?2"
                );
                let mut statement = conn.prepare_cached(&sql)?;
                let rows = statement.query_map(params![state.map(RunState::as_str), limit as i64], run_row)?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    /// The failed attempts of run `id`'s steps, in order.
    pub async fn attempts(&self, id: &str) -> Result<Vec<AttemptRow>, StorageError> {
        let id = id.to_owned();
        self.db
            .call(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT step, attempt, status, error, at FROM workflow_attempts WHERE run = ?1 ORDER BY rowid",
                )?;
                let rows = statement.query_map(params![id], |row| {
                    Ok(AttemptRow {
                        step: row.get(0)?,
                        attempt: row.get(1)?,
                        error: StepError { status: row.get(2)?, message: row.get(3)? },
                        at: row.get(4)?,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    /// Resumes run `id` from its journal now, on `version` if given: a run that failed outside its own code (see
    /// [`RunRow::retryable`]) runs again; an unfinished run only moves to `version` (which its next resume runs).
    pub async fn retry(&self, id: &str, version: Option<u32>, now: i64) -> Result<Retried, RetryRefused> {
        match self.execute(Command::Retry { id: id.to_owned(), version, now }).await? {
            Answer::Retried(retried) => retried,
            other => Err(other.unexpected("retry").into()),
        }
    }

    /// The component run `id` belongs to, if there is such a run.
    pub async fn owner(&self, id: &str) -> Result<Option<String>, StorageError> {
        let id = id.to_owned();
        self.db
            .call(move |conn| {
                Ok(conn
                    .query_row("SELECT component FROM workflow_runs WHERE id = ?1", params![id], |row| row.get(0))
                    .optional()?)
            })
            .await
    }

    /// How many runs of `component` have not finished.
    pub async fn unfinished(&self, component: &str) -> Result<u64, StorageError> {
        let component = component.to_owned();
        self.db
            .call(move |conn| {
                Ok(conn.query_row(
                    "SELECT COUNT(*) FROM workflow_runs WHERE component = ?1 AND due_at IS NOT NULL",
                    params![component],
                    |row| row.get(0),
                )?)
            })
            .await
    }

    /// Cancels every unfinished run of `component`, saying `why`; returns how many.
    pub async fn cancel_component(&self, component: &str, why: &str, now: i64) -> Result<u64, StorageError> {
        let command = Command::CancelComponent { component: component.to_owned(), why: why.to_owned(), now };
        match self.execute(command).await? {
            Answer::CancelledComponent(cancelled) => Ok(cancelled),
            other => Err(other.unexpected("cancel of a component's runs")),
        }
    }

    /// Runs by state, failed step attempts and the oldest wait: what the metrics show.
    pub async fn stats(&self) -> Result<RunStats, StorageError> {
        self.db
            .call(move |conn| {
                let mut statement = conn.prepare_cached("SELECT state, COUNT(*) FROM workflow_runs GROUP BY state")?;
                let by_state = statement
                    .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?.max(0) as u64)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let step_failures: i64 =
                    conn.query_row("SELECT COUNT(*) FROM workflow_attempts", [], |row| row.get(0))?;
                let oldest_wait_since: Option<i64> = conn
                    .query_row(
                        // A wait begins with the journal entry it ends the journal with.
                        "SELECT MIN(j.at) FROM workflow_runs r JOIN workflow_journal j ON j.run = r.id
                             AND j.seq = (SELECT MAX(seq) FROM workflow_journal WHERE run = r.id)
                             WHERE r.state = 'waiting'",
                        [],
                        |row| row.get(0),
                    )
                    .optional()?
                    .flatten();
                Ok(RunStats { by_state, step_failures: step_failures.max(0) as u64, oldest_wait_since })
            })
            .await
    }
}

/// [`WorkflowDb::cancel`] in `tx`.
pub(super) fn cancel_in(tx: &rusqlite::Connection, id: &str, now: i64) -> Result<Option<bool>, StorageError> {
    let Some(run) = load_run(tx, id)? else { return Ok(None) };
    if run.state.is_finished() || run.state == RunState::Cancelling {
        return Ok(Some(false));
    }
    // Due at once, to run the compensations its code registered; then it ends cancelled. So do its children that
    // have not ended, and theirs.
    tx.execute(
        &format!(
            "{RUN_AND_DESCENDANTS} UPDATE workflow_runs SET state = 'cancelling', due_at = ?2,
                 waiting_for = NULL, retry_step = NULL, retry_attempts = 0, error = NULL,
                 cancel_requested = 1, updated_at = ?2
             WHERE id IN tree AND state NOT IN ('done', 'failed', 'cancelled', 'cancelling')"
        ),
        params![id, now],
    )?;
    tx.execute(&format!("{RUN_AND_DESCENDANTS} DELETE FROM workflow_signals WHERE run IN tree"), params![id])?;
    Ok(Some(true))
}

/// [`WorkflowDb::retry`] in `tx`.
pub(super) fn retry_in(
    tx: &rusqlite::Connection,
    id: &str,
    version: Option<u32>,
    now: i64,
) -> Result<Result<Retried, RetryRefused>, StorageError> {
    let Some(run) = load_run(tx, id)? else { return Ok(Err(RetryRefused::NotFound(id.to_owned()))) };
    let refused = |why| Ok(Err(RetryRefused::Final { run: id.to_owned(), state: run.state.as_str(), why }));
    let retried = match run.state {
        RunState::Done => return refused("it succeeded"),
        RunState::Cancelled => return refused("cancelled runs stay cancelled"),
        RunState::Failed if !run.retryable => {
            return refused("it failed in its own code, so its journal is final; start a new run");
        }
        RunState::Failed => {
            tx.execute(
                // A run that failed while cancelling goes on cancelling, never forward.
                "UPDATE workflow_runs SET due_at = ?2, error = NULL, retryable = 0, updated_at = ?2,
                     state = CASE cancel_requested WHEN 1 THEN 'cancelling' ELSE 'ready' END,
                     version = COALESCE(?3, version) WHERE id = ?1",
                params![id, now, version],
            )?;
            Retried::Resumed
        }
        _ if version.is_none() => {
            return refused("it has not failed; name a version (--version) to move it to one");
        }
        _ => {
            tx.execute(
                "UPDATE workflow_runs SET version = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, version, now],
            )?;
            Retried::Moved
        }
    };
    Ok(Ok(retried))
}

/// [`WorkflowDb::cancel_component`] in `tx`.
pub(super) fn cancel_component_in(
    tx: &rusqlite::Connection,
    component: &str,
    why: &str,
    now: i64,
) -> Result<u64, StorageError> {
    tx.execute(
        "DELETE FROM workflow_signals WHERE run IN
             (SELECT id FROM workflow_runs WHERE component = ?1 AND due_at IS NOT NULL)",
        params![component],
    )?;
    let cancelled = tx.execute(
        "UPDATE workflow_runs SET state = 'cancelled', due_at = NULL, waiting_for = NULL, retry_step = NULL,
             error = ?2, retryable = 0, updated_at = ?3 WHERE component = ?1 AND due_at IS NOT NULL",
        params![component, why, now],
    )?;
    Ok(cancelled as u64)
}
