//! Workflow runs in SQLite: each run's state and when it is next due, its journal, its steps' failed attempts, and
//! signals kept for a wait that has not begun. Every change a resume makes is one transaction ([`WorkflowDb::apply`]),
//! checked against the journal length the resume started from, so two resumes of one run can never both commit.
//!
//! Every change is a [`Command`] (see `commands`): alone, a node runs it on its SQLite at once; on a cluster it goes
//! through the cluster's log first, and every node runs every command in the log's order on its own copy, so all
//! copies agree and a change two nodes make at once is decided once, the same way everywhere.

use super::{Database, StorageError};
use edgefn_manifest::workflow::{ChildEnd, Entry, Retry, StepError};
use rusqlite::{OptionalExtension as _, params};
use serde_json::Value;
use std::sync::Arc;

/// The most entries one run's journal may hold.
pub const MAX_JOURNAL_ENTRIES: usize = 10_000;
/// The most bytes one run's journal may hold.
pub const MAX_JOURNAL_BYTES: usize = 16 << 20;
/// The most bytes of a run's input, or of a signal's payload.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Due to be resumed now.
    Ready,
    /// A step's attempt failed; due again at its backoff.
    Retrying,
    Sleeping,
    /// Waiting for an event (due when it times out).
    Waiting,
    Done,
    Failed,
    /// Cancelled, and due to run the compensations its code registered.
    Cancelling,
    Cancelled,
}

impl RunState {
    pub const NAMES: &[&str] =
        &["ready", "retrying", "sleeping", "waiting", "done", "failed", "cancelling", "cancelled"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Retrying => "retrying",
            Self::Sleeping => "sleeping",
            Self::Waiting => "waiting",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "ready" => Self::Ready,
            "retrying" => Self::Retrying,
            "sleeping" => Self::Sleeping,
            "waiting" => Self::Waiting,
            "done" => Self::Done,
            "failed" => Self::Failed,
            "cancelling" => Self::Cancelling,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    /// Whether the run has ended (nothing resumes it again).
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }
}

/// A run, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: String,
    pub component: String,
    pub function: String,
    pub input: Value,
    pub state: RunState,
    /// When it is next resumed (for a wait: when it times out); `None` once finished.
    pub due_at: Option<i64>,
    pub waiting_for: Option<String>,
    pub retry: Option<Retry>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The version of its component it runs on; `None` for a run started before runs kept theirs (it runs on the
    /// live version).
    pub version: Option<u32>,
    /// A failed run that failed outside its own code (a crash, a non-deterministic replay, an unreadable answer):
    /// its journal is not final, and `edgefn workflows retry` may resume it.
    pub retryable: bool,
    /// How many entries its journal holds, and their bytes (as stored).
    pub journal_entries: usize,
    pub journal_bytes: usize,
    /// The run that started this one as its child (`wf.child`).
    pub parent: Option<String>,
}

/// A failed attempt of a step, for the run's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRow {
    pub step: String,
    pub attempt: u32,
    pub error: StepError,
    pub at: i64,
}

/// One journal entry with when it was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalRow {
    pub seq: u64,
    pub entry: Entry,
    pub at: i64,
}

/// What [`WorkflowDb::prepare_resume`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// Nothing to resume: no such run, it ended, or it is not due.
    NotDue,
    /// It was past its age limit: it failed, saying so.
    Expired,
    /// Resume it from this journal.
    Resume(Box<RunRow>, Vec<JournalRow>),
}

/// Why a signal was not taken.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("no workflow run `{0}`")]
    NotFound(String),
    #[error("workflow run `{run}` is {state}: it takes no more signals")]
    Finished { run: String, state: &'static str },
    #[error("the payload is {size} bytes; a signal's payload is at most {max}")]
    TooLarge { size: usize, max: usize },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A run to start: see [`WorkflowDb::start`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NewRun {
    pub id: Option<String>,
    pub component: String,
    pub function: String,
    pub version: Option<u32>,
    pub input: Value,
}

/// Why a run was not started.
#[derive(Debug, thiserror::Error)]
pub enum StartRefused {
    /// (Which workflow holds it is not said: the id may be another tenant's.)
    #[error("run id `{id}` is taken by a run of another workflow")]
    IdTaken { id: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What [`WorkflowDb::apply_as`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Nothing: the run had moved on (finished, cancelled, or another resume committed first).
    Stale,
    /// Recorded; `cancelling`: the run was being cancelled.
    Applied { cancelling: bool },
}

/// What became of a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signalled {
    /// The run was waiting for it: it resumes now.
    Delivered,
    /// The run is not waiting for it yet: kept until it does.
    Kept,
}

const RUN_COLUMNS: &str = "id, component, function, input, state, due_at, waiting_for, retry_step, retry_attempts, \
                           result, error, created_at, updated_at, version, retryable, journal_entries, \
                           journal_bytes, parent";

fn run_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    let text = |index: usize| -> rusqlite::Result<Option<String>> { row.get(index) };
    let json = |index: usize| -> rusqlite::Result<Option<Value>> {
        Ok(text(index)?.and_then(|text| serde_json::from_str(&text).ok()))
    };
    let state: String = row.get(4)?;
    let retry_step: Option<String> = row.get(7)?;
    let retry_attempts: u32 = row.get(8)?;
    Ok(RunRow {
        id: row.get(0)?,
        component: row.get(1)?,
        function: row.get(2)?,
        input: json(3)?.unwrap_or(Value::Null),
        state: RunState::parse(&state).unwrap_or(RunState::Failed),
        due_at: row.get(5)?,
        waiting_for: row.get(6)?,
        retry: retry_step.map(|name| Retry { name, attempts: retry_attempts }),
        result: json(9)?,
        error: text(10)?,
        created_at: row.get(11)?,
        updated_at: row.get(12)?,
        version: row.get(13)?,
        retryable: row.get(14)?,
        journal_entries: row.get::<_, i64>(15)?.max(0) as usize,
        journal_bytes: row.get::<_, i64>(16)?.max(0) as usize,
        parent: row.get(17)?,
    })
}

fn load_run(conn: &rusqlite::Connection, id: &str) -> Result<Option<RunRow>, StorageError> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM workflow_runs WHERE id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row(params![id], run_row).optional()?)
}

/// Run `id`'s journal, in order.
fn read_journal(conn: &rusqlite::Connection, id: &str) -> Result<Vec<JournalRow>, StorageError> {
    let mut statement =
        conn.prepare_cached("SELECT seq, entry, at FROM workflow_journal WHERE run = ?1 ORDER BY seq")?;
    let rows = statement
        .query_map(params![id], |row| Ok((row.get::<_, u64>(0)?, row.get::<_, String>(1)?, row.get(2)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(|(seq, text, at)| Ok(JournalRow { seq, entry: decode_entry(&text)?, at })).collect()
}

fn decode_entry(text: &str) -> Result<Entry, StorageError> {
    serde_json::from_str(text).map_err(|error| StorageError::Corrupt(format!("a workflow journal entry: {error}")))
}

fn encode<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// Sets the run's state and when it is due (`None`: not due again), clearing a retry and a wait.
fn set_state(
    conn: &rusqlite::Connection,
    id: &str,
    state: RunState,
    due_at: Option<i64>,
    now: i64,
) -> Result<(), StorageError> {
    conn.prepare_cached(
        "UPDATE workflow_runs SET state = ?2, due_at = ?3, waiting_for = NULL, retry_step = NULL, retry_attempts = 0,
             updated_at = ?4 WHERE id = ?1",
    )?
    .execute(params![id, state.as_str(), due_at, now])?;
    Ok(())
}

/// Resolves the wait that ends the journal with `value` (absent: it timed out).
fn resolve_wait(conn: &rusqlite::Connection, id: &str, value: Option<Value>) -> Result<(), StorageError> {
    let last: Option<(u64, String)> = conn
        .query_row(
            "SELECT seq, entry FROM workflow_journal WHERE run = ?1 ORDER BY seq DESC LIMIT 1",
            params![id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let Some((seq, text)) = last else {
        return Err(StorageError::Corrupt(format!("run `{id}` waits with no journal")));
    };
    let Entry::Event { name, until_ms, .. } = decode_entry(&text)? else {
        return Err(StorageError::Corrupt(format!("run `{id}` waits, but its journal does not end with a wait")));
    };
    let resolved = encode(&Entry::Event { name, until_ms, resolved: true, value });
    conn.execute("UPDATE workflow_journal SET entry = ?3 WHERE run = ?1 AND seq = ?2", params![id, seq, resolved])?;
    conn.execute(
        "UPDATE workflow_runs SET journal_bytes = journal_bytes + ?2 WHERE id = ?1",
        params![id, resolved.len() as i64 - text.len() as i64],
    )?;
    Ok(())
}

fn error_text(error: &StepError) -> String {
    format!("{} ({})", error.message, error.status)
}

/// How old a run may get by default (`[workflows] max_run_age_s`).
pub const DEFAULT_MAX_RUN_AGE_MS: i64 = 365 * 86_400_000;

/// The workflow runs of this node.
#[derive(Debug, Clone)]
pub struct WorkflowDb {
    db: Database,
    /// A run older than this fails: see [`WorkflowDb::prepare_resume`].
    max_age_ms: i64,
    /// On a cluster: the log every change goes through before it is made here.
    log: Option<Arc<dyn CommandLog>>,
}

impl WorkflowDb {
    pub fn new(db: Database) -> Self {
        Self { db, max_age_ms: DEFAULT_MAX_RUN_AGE_MS, log: None }
    }

    /// With runs older than `max_age_ms` failing.
    pub fn with_max_age(mut self, max_age_ms: i64) -> Self {
        self.max_age_ms = max_age_ms.max(1);
        self
    }

    /// With every change going through a cluster's `log` (which applies it here with [`WorkflowDb::apply_logged`]).
    pub fn with_log(mut self, log: Arc<dyn CommandLog>) -> Self {
        self.log = Some(log);
        self
    }

    /// The node is stopping: on a cluster, it resumes no more runs and gives their lease back, so another node
    /// takes them at once (alone, nothing to do: the runs wait for the next start).
    pub async fn step_down(&self) {
        if let Some(log) = &self.log {
            log.step_down().await;
        }
    }

    /// Whether this node resumes runs now: always alone; on a cluster, while it holds the runs' lease.
    pub fn resumes_here(&self) -> bool {
        self.log.as_ref().is_none_or(|log| log.leading())
    }

    /// On a cluster: notified when another node's change, or this node taking or losing the runs' lease, may have
    /// made a run due here.
    pub fn cluster_changes(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.log.as_ref().map(|log| log.changes())
    }

    /// Makes `command`'s change: here, or on a cluster through its log.
    async fn execute(&self, command: Command) -> Result<Answer, StorageError> {
        match &self.log {
            Some(log) => log.propose(command).await,
            None => self.execute_here(command).await,
        }
    }

    /// Makes `command`'s change on this node's SQLite, in a transaction of its own.
    async fn execute_here(&self, command: Command) -> Result<Answer, StorageError> {
        if matches!(command, Command::Apply { .. }) {
            // In place: one of these per step of a run, where a hand-off to the blocking pool would cost more than
            // it. (The closure runs again when SQLite's write lock was taken the first time: the command is kept.)
            return self.db.call_in_place(move |conn| in_transaction(conn, |tx| command.clone().run(tx))).await;
        }
        self.db.call(move |conn| in_transaction(conn, |tx| command.run(tx))).await
    }

    /// Applies command `seq` of a cluster's log here, and records `seq` with it in one transaction: `None` when it
    /// was applied before (a node that stopped part-way through the log goes on after the last one it applied).
    pub async fn apply_logged(&self, seq: u64, command: Command) -> Result<Option<Answer>, StorageError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                if seq <= applied_seq(&tx)? {
                    return Ok(None);
                }
                let answer = command.run(&tx)?;
                tx.execute("INSERT OR REPLACE INTO workflow_log (id, seq) VALUES (1, ?1)", params![seq as i64])?;
                tx.commit()?;
                Ok(Some(answer))
            })
            .await
    }

    /// Records that command `seq` of a cluster's log was skipped here: every node skips it alike (it is unreadable,
    /// or the same stored state refuses it everywhere).
    pub async fn skip_logged(&self, seq: u64) -> Result<(), StorageError> {
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT INTO workflow_log (id, seq) VALUES (1, ?1)
                         ON CONFLICT (id) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                    params![seq as i64],
                )?;
                Ok(())
            })
            .await
    }

    /// The last command of a cluster's log applied here (0: none).
    pub async fn logged_until(&self) -> Result<u64, StorageError> {
        self.db.call(|conn| applied_seq(conn)).await
    }

    /// Starts a run of `component/function` (on `version` of the component) with `input`, due now, named `id`
    /// (else a new id). A run of the same workflow by that id, already started, is answered instead, unchanged
    /// (`false`): the same id twice starts one run. An id a run of another workflow holds is refused.
    pub async fn start(&self, new: NewRun, now: i64) -> Result<(RunRow, bool), StartRefused> {
        // Named before the change is made: on a cluster every node makes the same run.
        let id = new.id.clone().unwrap_or_else(|| format!("run-{}", uuid::Uuid::new_v4().simple()));
        match self.execute(Command::Start { new: NewRun { id: Some(id), ..new }, now }).await? {
            Answer::Started(started) => started.map(|(run, made)| (*run, made)),
            other => Err(other.unexpected("start").into()),
        }
    }

    /// The runs due at `now`, soonest first, at most `limit`, but none of `busy` (being resumed already).
    pub async fn due(&self, now: i64, limit: usize, busy: Vec<String>) -> Result<Vec<String>, StorageError> {
        self.db
            .call(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT id FROM workflow_runs WHERE due_at IS NOT NULL AND due_at <= ?1 ORDER BY due_at LIMIT ?2",
                )?;
                let wanted = (limit + busy.len()) as i64;
                let ids = statement.query_map(params![now, wanted], |row| row.get::<_, String>(0))?;
                let ids = ids.collect::<rusqlite::Result<Vec<String>>>()?;
                Ok(ids.into_iter().filter(|id| !busy.contains(id)).take(limit).collect())
            })
            .await
    }

    /// When the next run is due, if any is, leaving out `busy` ones (being resumed already).
    pub async fn next_due(&self, busy: Vec<String>) -> Result<Option<i64>, StorageError> {
        self.db
            .call(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT id, due_at FROM workflow_runs WHERE due_at IS NOT NULL ORDER BY due_at LIMIT ?1",
                )?;
                let rows = statement.query_map(params![(busy.len() + 1) as i64], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })?;
                let rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows.into_iter().find(|(id, _)| !busy.contains(id)).map(|(_, due)| due))
            })
            .await
    }

    /// A run, without its journal.
    pub async fn run(&self, id: &str) -> Result<Option<RunRow>, StorageError> {
        let id = id.to_owned();
        self.db.call(move |conn| load_run(conn, &id)).await
    }

    /// A run and its journal.
    pub async fn load(&self, id: &str) -> Result<Option<(RunRow, Vec<JournalRow>)>, StorageError> {
        let id = id.to_owned();
        self.db
            .call(move |conn| {
                let Some(run) = load_run(conn, &id)? else { return Ok(None) };
                Ok(Some((run, read_journal(conn, &id)?)))
            })
            .await
    }

    /// Fails run `id` with `error` unless it has finished: a failure outside the workflow's code (it crashed, its
    /// answer was unreadable), which `edgefn workflows retry` may resume.
    pub async fn fail(&self, id: &str, error: &str, now: i64) -> Result<bool, StorageError> {
        match self.execute(Command::Fail { id: id.to_owned(), error: error.to_owned(), now }).await? {
            Answer::Failed(failed) => Ok(failed),
            other => Err(other.unexpected("fail")),
        }
    }

    /// Puts a resume off until `at` (its function is busy or the host could not run it), keeping the run's state.
    pub async fn postpone(&self, id: &str, at: i64) -> Result<(), StorageError> {
        match self.execute(Command::Postpone { id: id.to_owned(), at }).await? {
            Answer::Postponed => Ok(()),
            other => Err(other.unexpected("postpone")),
        }
    }

    /// Sends event `event` with `payload` to run `id`.
    pub async fn signal(&self, id: &str, event: &str, payload: &Value, now: i64) -> Result<Signalled, SignalError> {
        let command = Command::Signal { id: id.to_owned(), event: event.to_owned(), payload: payload.clone(), now };
        match self.execute(command).await? {
            Answer::Signalled(signalled) => signalled,
            other => Err(other.unexpected("signal").into()),
        }
    }
}

/// Runs `work` in a transaction of `conn`, committed when it succeeds.
fn in_transaction<R>(
    conn: &mut rusqlite::Connection,
    work: impl FnOnce(&rusqlite::Connection) -> Result<R, StorageError>,
) -> Result<R, StorageError> {
    let tx = conn.transaction()?;
    let result = work(&tx)?;
    tx.commit()?;
    Ok(result)
}

fn applied_seq(conn: &rusqlite::Connection) -> Result<u64, StorageError> {
    let seq: Option<i64> =
        conn.query_row("SELECT seq FROM workflow_log WHERE id = 1", [], |row| row.get(0)).optional()?;
    Ok(seq.unwrap_or(0).max(0) as u64)
}

/// Sends event `event` with `payload` (JSON) to run `id`, in `conn`'s transaction: it resumes now if it waits for
/// it, else the signal is kept until it does.
fn deliver(
    conn: &rusqlite::Connection,
    id: &str,
    event: &str,
    payload: &str,
    now: i64,
) -> Result<Result<Signalled, SignalError>, StorageError> {
    let Some(run) = load_run(conn, id)? else { return Ok(Err(SignalError::NotFound(id.to_owned()))) };
    if run.state.is_finished() || run.state == RunState::Cancelling {
        return Ok(Err(SignalError::Finished { run: id.to_owned(), state: run.state.as_str() }));
    }
    if run.state == RunState::Waiting && run.waiting_for.as_deref() == Some(event) {
        resolve_wait(conn, id, serde_json::from_str(payload).ok())?;
        set_state(conn, id, RunState::Ready, Some(now), now)?;
        return Ok(Ok(Signalled::Delivered));
    }
    conn.execute(
        "INSERT INTO workflow_signals (run, event, payload, at) VALUES (?1, ?2, ?3, ?4)",
        params![id, event, payload, now],
    )?;
    Ok(Ok(Signalled::Kept))
}

/// Makes run `id` wait for `event` until `until_ms`, or resumes it at once with a signal kept for that event.
fn wait_for(conn: &rusqlite::Connection, id: &str, event: &str, until_ms: i64, now: i64) -> Result<(), StorageError> {
    let kept: Option<(i64, String)> = conn
        .query_row(
            "SELECT id, payload FROM workflow_signals WHERE run = ?1 AND event = ?2 ORDER BY id LIMIT 1",
            params![id, event],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    match kept {
        Some((signal, payload)) => {
            conn.execute("DELETE FROM workflow_signals WHERE id = ?1", params![signal])?;
            resolve_wait(conn, id, serde_json::from_str(&payload).ok())?;
            set_state(conn, id, RunState::Ready, Some(now), now)?;
        }
        None => {
            conn.execute(
                "UPDATE workflow_runs SET state = 'waiting', due_at = ?2, waiting_for = ?3, retry_step = NULL,
                     retry_attempts = 0, updated_at = ?4 WHERE id = ?1",
                params![id, until_ms, event, now],
            )?;
        }
    }
    Ok(())
}

/// What follows every end of run `id` (done, failed, cancelled): its kept signals go, and the run that started it
/// as its child, if one did, is told how it ended.
fn ended(conn: &rusqlite::Connection, id: &str, now: i64) -> Result<(), StorageError> {
    conn.execute("DELETE FROM workflow_signals WHERE run = ?1", params![id])?;
    tell_parent(conn, id, now)
}

/// Tells the run that started run `id` as its child (if one did) how `id` ended: it has just finished.
fn tell_parent(conn: &rusqlite::Connection, id: &str, now: i64) -> Result<(), StorageError> {
    let row = conn
        .prepare_cached(
            "SELECT parent, parent_event, state, result, error FROM workflow_runs
             WHERE id = ?1 AND parent IS NOT NULL AND parent_event IS NOT NULL",
        )?
        .query_row(params![id], |row| {
            let result: Option<String> = row.get(3)?;
            let end = ChildEnd {
                run: id.to_owned(),
                state: row.get(2)?,
                result: result.and_then(|text| serde_json::from_str(&text).ok()),
                error: row.get(4)?,
            };
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, end))
        })
        .optional()?;
    let Some((parent, event, end)) = row else { return Ok(()) };
    // A parent that ended, or is being cancelled, waits for nothing: it is not told.
    let _ = deliver(conn, &parent, &event, &encode(&end), now)?;
    Ok(())
}

/// Keeps the failed attempt (`step`, its number, its error) for the timeline and makes run `id` due again at `at_ms`
/// in `state`, to retry that step.
fn retry_later(
    conn: &rusqlite::Connection,
    id: &str,
    state: RunState,
    (step, attempt, error): (&str, u32, &StepError),
    at_ms: i64,
    now: i64,
) -> Result<(), StorageError> {
    conn.execute(
        "INSERT INTO workflow_attempts (run, step, attempt, status, error, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![id, step, attempt, error.status, error.message, now],
    )?;
    conn.execute(
        "UPDATE workflow_runs SET state = ?2, due_at = ?3, waiting_for = NULL, retry_step = ?4, retry_attempts = ?5,
             updated_at = ?6 WHERE id = ?1",
        params![id, state.as_str(), at_ms, step, attempt, now],
    )?;
    Ok(())
}

/// Ends run `id` cancelled, saying `why`.
fn cancel_now(conn: &rusqlite::Connection, id: &str, why: &str, now: i64) -> Result<(), StorageError> {
    conn.execute(
        "UPDATE workflow_runs SET state = 'cancelled', due_at = NULL, waiting_for = NULL, retry_step = NULL,
             error = ?2, retryable = 0, updated_at = ?3 WHERE id = ?1",
        params![id, why, now],
    )?;
    ended(conn, id, now)
}

/// Fails run `id`; `retryable` when it failed outside its own code (its journal is not final).
fn fail(conn: &rusqlite::Connection, id: &str, error: &str, retryable: bool, now: i64) -> Result<(), StorageError> {
    conn.execute(
        "UPDATE workflow_runs SET state = 'failed', due_at = NULL, waiting_for = NULL, retry_step = NULL,
             error = ?2, updated_at = ?3, retryable = ?4 WHERE id = ?1",
        params![id, error, now, retryable],
    )?;
    ended(conn, id, now)
}

mod commands;
mod operations;
mod resume;
#[cfg(test)]
mod tests;

pub use commands::{Answer, Command, CommandLog};
pub use operations::{Retried, RetryRefused, RunStats};
