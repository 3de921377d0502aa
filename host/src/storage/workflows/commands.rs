//! Every change to the workflow runs, as a value: what a node runs on its SQLite when it is alone, and what a
//! cluster's log carries (`storage::backends::jetstream::workflows`) for every node to run in the log's order.
//!
//! A command is deterministic: what it does depends only on it and on the runs as stored, never on the node that
//! runs it (its time, a new run's id and the age limit travel in it). So every node's copy, having run the same
//! commands in the same order, holds the same runs, and a command two resumes raced to make (the same step
//! journaled by an old owner and a new one) is refused by the same check everywhere: no step result is journaled
//! twice.

use super::{
    Applied, NewRun, Prepared, Retried, RetryRefused, RunRow, SignalError, Signalled, StartRefused, deliver, encode,
    fail, load_run,
};
use super::{operations, resume};
use crate::storage::StorageError;
use edgefn_manifest::workflow::Outcome;
use futures_util::future::BoxFuture;
use rusqlite::params;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// A change to the workflow runs: see the module docs. Each names the [`super::WorkflowDb`] method that makes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    Start {
        new: NewRun,
        now: i64,
    },
    Fail {
        id: String,
        error: String,
        now: i64,
    },
    Postpone {
        id: String,
        at: i64,
    },
    Signal {
        id: String,
        event: String,
        payload: Value,
        now: i64,
    },
    PrepareResume {
        id: String,
        now: i64,
        max_age_ms: i64,
    },
    Apply {
        id: String,
        journal_len: usize,
        outcome: Outcome,
        now: i64,
        resume_cancelling: Option<bool>,
        max_age_ms: i64,
    },
    Cancel {
        id: String,
        now: i64,
    },
    Retry {
        id: String,
        version: Option<u32>,
        now: i64,
    },
    CancelComponent {
        component: String,
        why: String,
        now: i64,
    },
}

/// What a [`Command`] came to, for the node that asked for it.
#[derive(Debug)]
pub enum Answer {
    Started(Result<(Box<RunRow>, bool), StartRefused>),
    Failed(bool),
    Postponed,
    Signalled(Result<Signalled, SignalError>),
    Prepared(Prepared),
    Applied(Applied),
    Cancelled(Option<bool>),
    Retried(Result<Retried, RetryRefused>),
    CancelledComponent(u64),
}

impl Answer {
    /// The error for an answer that is not the one `wanted` (a log that mixed up whose answer is whose).
    pub(super) fn unexpected(&self, wanted: &str) -> StorageError {
        StorageError::Corrupt(format!("the answer to a workflow {wanted} was another change's: {self:?}"))
    }
}

impl Command {
    /// Makes the change in `tx`, a transaction the caller commits.
    pub(super) fn run(self, tx: &rusqlite::Connection) -> Result<Answer, StorageError> {
        Ok(match self {
            Self::Start { new, now } => {
                Answer::Started(start_in(tx, new, now)?.map(|(run, made)| (Box::new(run), made)))
            }
            Self::Fail { id, error, now } => Answer::Failed(fail_in(tx, &id, &error, now)?),
            Self::Postpone { id, at } => {
                postpone_in(tx, &id, at)?;
                Answer::Postponed
            }
            Self::Signal { id, event, payload, now } => {
                Answer::Signalled(deliver(tx, &id, &event, &encode(&payload), now)?)
            }
            Self::PrepareResume { id, now, max_age_ms } => {
                Answer::Prepared(resume::prepare_resume_in(tx, &id, now, max_age_ms)?)
            }
            Self::Apply { id, journal_len, outcome, now, resume_cancelling, max_age_ms } => {
                Answer::Applied(resume::apply_in(tx, &id, journal_len, outcome, now, resume_cancelling, max_age_ms)?)
            }
            Self::Cancel { id, now } => Answer::Cancelled(operations::cancel_in(tx, &id, now)?),
            Self::Retry { id, version, now } => Answer::Retried(operations::retry_in(tx, &id, version, now)?),
            Self::CancelComponent { component, why, now } => {
                Answer::CancelledComponent(operations::cancel_component_in(tx, &component, &why, now)?)
            }
        })
    }
}

/// [`super::WorkflowDb::start`] in `tx`: the run, and whether this made it.
fn start_in(
    tx: &rusqlite::Connection,
    new: NewRun,
    now: i64,
) -> Result<Result<(RunRow, bool), StartRefused>, StorageError> {
    let NewRun { id, component, function, version, input } = new;
    // `WorkflowDb::start` names every run before the change is made: an id drawn here would differ on each node.
    let Some(id) = id else { return Err(StorageError::Corrupt("a workflow start without a run id".to_owned())) };
    let input = encode(&input);
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO workflow_runs (id, component, function, input, state, due_at, created_at, updated_at,
             version) VALUES (?1, ?2, ?3, ?4, 'ready', ?5, ?5, ?5, ?6)",
        params![id, component, function, input, now, version],
    )?;
    let run = load_run(tx, &id)?.ok_or_else(|| StorageError::Corrupt(format!("run `{id}` vanished")))?;
    if run.component != component || run.function != function {
        return Ok(Err(StartRefused::IdTaken { id }));
    }
    Ok(Ok((run, inserted == 1)))
}

/// [`super::WorkflowDb::fail`] in `tx`.
fn fail_in(tx: &rusqlite::Connection, id: &str, error: &str, now: i64) -> Result<bool, StorageError> {
    let Some(run) = load_run(tx, id)? else { return Ok(false) };
    if run.state.is_finished() {
        return Ok(false);
    }
    fail(tx, id, error, true, now)?;
    Ok(true)
}

/// [`super::WorkflowDb::postpone`] in `tx`.
fn postpone_in(tx: &rusqlite::Connection, id: &str, at: i64) -> Result<(), StorageError> {
    tx.execute("UPDATE workflow_runs SET due_at = ?2 WHERE id = ?1 AND due_at IS NOT NULL", params![id, at])?;
    Ok(())
}

/// A cluster's log of [`Command`]s, which every node runs in its order.
pub trait CommandLog: Send + Sync + std::fmt::Debug {
    /// Appends `command` to the log, and answers what it came to once this node has run it.
    fn propose(&self, command: Command) -> BoxFuture<'_, Result<Answer, StorageError>>;

    /// Whether this node resumes the runs now (it holds their lease, and has run the whole log).
    fn leading(&self) -> bool;

    /// Notified after another node's command runs here, and when this node takes or loses the runs' lease.
    fn changes(&self) -> Arc<tokio::sync::Notify>;

    /// This node is stopping: it resumes no more runs, and lets another node take them at once.
    fn step_down(&self) -> BoxFuture<'_, ()>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgefn_manifest::workflow::Next;

    #[test]
    fn commands_travel_unchanged() {
        let new = NewRun {
            id: Some("order-1".into()),
            component: "shop".into(),
            function: "checkout".into(),
            version: Some(3),
            input: serde_json::json!({"n": 1}),
        };
        let outcome = Outcome { entries: vec![], next: Next::Sleep { until_ms: 99 } };
        for command in [
            Command::Start { new, now: 1 },
            Command::Apply {
                id: "order-1".into(),
                journal_len: 4,
                outcome,
                now: 2,
                resume_cancelling: Some(false),
                max_age_ms: 10,
            },
            Command::Signal {
                id: "order-1".into(),
                event: "approved".into(),
                payload: serde_json::json!(true),
                now: 3,
            },
        ] {
            let text = serde_json::to_string(&command).expect("encode");
            assert_eq!(serde_json::from_str::<Command>(&text).expect("decode"), command, "{text}");
        }
    }
}
