//! The SQL of cron: the last tick each schedule handled, and the run history.

use crate::storage::SharedConnection;
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
}

#[derive(Debug)]
pub struct CronStore {
    conn: SharedConnection,
}

impl CronStore {
    pub fn new(conn: SharedConnection) -> Self {
        Self { conn }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.conn.lock()
    }

    pub fn last_tick(&self, function: &str) -> rusqlite::Result<Option<i64>> {
        self.conn()
            .query_row("SELECT last_tick FROM cron_state WHERE function = ?1", params![function], |row| row.get(0))
            .optional()
    }

    pub fn set_last_tick(&self, function: &str, tick: i64) -> rusqlite::Result<()> {
        self.conn().execute(
            "INSERT INTO cron_state (function, last_tick) VALUES (?1, ?2)
             ON CONFLICT (function) DO UPDATE SET last_tick = MAX(last_tick, ?2)",
            params![function, tick],
        )?;
        Ok(())
    }

    /// Records the start of an attempt (or a skipped tick, `finished` at once); returns the run's id.
    pub fn start_run(&self, run: &RunRecord) -> rusqlite::Result<i64> {
        let conn = self.conn();
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

    pub fn finish_run(&self, id: i64, finished_at: i64, outcome: &str, error: Option<&str>) -> rusqlite::Result<()> {
        self.conn()
            .prepare_cached("UPDATE cron_runs SET finished_at = ?2, outcome = ?3, error = ?4 WHERE id = ?1")?
            .execute(params![id, finished_at, outcome, error])?;
        Ok(())
    }

    /// The latest runs of `function`, newest first.
    pub fn runs(&self, function: &str, limit: u32) -> rusqlite::Result<Vec<RunRecord>> {
        let conn = self.conn();
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
            })
        })?;
        rows.collect()
    }
}
