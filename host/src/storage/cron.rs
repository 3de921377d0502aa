//! The SQL of cron: the last tick each schedule handled, and the run history.

use super::{Database, StorageError};
use rusqlite::{OptionalExtension as _, params};

/// Runs kept per function; older ones are pruned.
const HISTORY_PER_FUNCTION: i64 = 1_000;

/// One attempt of a cron run, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    pub id: i64,
    pub function: String,
    /// The tick this run is for (ms since the Unix epoch).
    pub scheduled_at: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// `running`, `succeeded`, `retrying` (failed, will be retried), `failed` (failed, no retries left) or
    /// `skipped` (the previous run was still going).
    pub outcome: String,
    pub attempt: u32,
    /// `schedule`, `catch-up` or `manual`.
    pub reason: String,
    pub error: Option<String>,
    /// How late the host started the attempt, after the tick (µs).
    pub delay_us: i64,
    /// The node that ran it, in a cluster's history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// The cron tables, behind one connection.
#[derive(Debug, Clone)]
pub struct CronDb {
    db: Database,
}

impl CronDb {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The last tick of `function` that is handled (ran to its end, was skipped, or was dropped by catch-up).
    pub async fn last_tick(&self, function: &str) -> Result<Option<i64>, StorageError> {
        let function = function.to_owned();
        self.db
            .call(move |conn| {
                Ok(conn
                    .query_row("SELECT last_tick FROM cron_state WHERE function = ?1", params![function], |row| {
                        row.get(0)
                    })
                    .optional()?)
            })
            .await
    }

    /// Records that every tick of `function` up to `tick` is handled; never moves backwards.
    pub async fn set_last_tick(&self, function: &str, tick: i64) -> Result<(), StorageError> {
        let function = function.to_owned();
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT INTO cron_state (function, last_tick) VALUES (?1, ?2)
                     ON CONFLICT (function) DO UPDATE SET last_tick = MAX(last_tick, ?2)",
                    params![function, tick],
                )?;
                Ok(())
            })
            .await
    }

    /// Records the start of an attempt (or a skipped tick, `finished` at once); returns the run's id.
    pub async fn start_run(&self, run: RunRecord) -> Result<i64, StorageError> {
        self.db.call(move |conn| start_run(conn, &run)).await
    }

    pub async fn finish_run(
        &self,
        id: i64,
        finished_at: i64,
        outcome: String,
        error: Option<String>,
    ) -> Result<(), StorageError> {
        self.db
            .call(move |conn| {
                conn.prepare_cached("UPDATE cron_runs SET finished_at = ?2, outcome = ?3, error = ?4 WHERE id = ?1")?
                    .execute(params![id, finished_at, outcome, error])?;
                Ok(())
            })
            .await
    }

    /// The latest runs of `function`, newest first.
    pub async fn runs(&self, function: &str, limit: u32) -> Result<Vec<RunRecord>, StorageError> {
        let function = function.to_owned();
        self.db.call(move |conn| runs(conn, &function, limit)).await
    }
}

fn start_run(conn: &mut rusqlite::Connection, run: &RunRecord) -> Result<i64, StorageError> {
    conn.prepare_cached(
        "INSERT INTO cron_runs (function, scheduled_at, started_at, finished_at, outcome, attempt, reason, error,
             delay_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        run.function,
        run.scheduled_at,
        run.started_at,
        run.finished_at,
        run.outcome,
        run.attempt,
        run.reason,
        run.error,
        run.delay_us
    ])?;
    let id = conn.last_insert_rowid();
    conn.prepare_cached(
        "DELETE FROM cron_runs WHERE function = ?1 AND id <= (SELECT id FROM cron_runs WHERE function = ?1
             ORDER BY id DESC LIMIT 1 OFFSET ?2)",
    )?
    .execute(params![run.function, HISTORY_PER_FUNCTION])?;
    Ok(id)
}

fn runs(conn: &mut rusqlite::Connection, function: &str, limit: u32) -> Result<Vec<RunRecord>, StorageError> {
    let mut statement = conn.prepare_cached(
        "SELECT id, function, scheduled_at, started_at, finished_at, outcome, attempt, reason, error, delay_us
             FROM cron_runs WHERE function = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = statement.query_map(params![function, limit], |row| {
        Ok(RunRecord {
            id: row.get(0)?,
            function: row.get(1)?,
            scheduled_at: row.get(2)?,
            started_at: row.get(3)?,
            finished_at: row.get(4)?,
            outcome: row.get(5)?,
            attempt: row.get(6)?,
            reason: row.get(7)?,
            error: row.get(8)?,
            delay_us: row.get(9)?,
            node: None,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
