//! The SQL of the telemetry database, `<data dir>/telemetry.db`: the log (guest output, one record per invocation,
//! host events, here), usage per function, version, trigger and minute (`usage.rs`), and failed invocations kept
//! for replay (`failures.rs`).
//!
//! A file of its own, not a table of `edgefn.db`: logs are written all the time and deleted by retention, and
//! SQLite has one writer per file, so a burst of logs must never make a queue send or a deploy wait.

use super::{Database, StorageError};
use rusqlite::{Connection, params};
use std::path::Path;

mod failures;
mod usage;

pub use failures::{FailedInput, FailedMessage, Failure, find_failure, insert_failure};
pub use usage::{UsageCounts, UsageKey, UsageRow, add_usage, delete_usage_before, query_usage};

/// The telemetry database file in a data dir.
pub const TELEMETRY_FILE: &str = "telemetry.db";

/// The schema, one entry per version. Never edit a released entry: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1. The log, and usage per minute. `level` is a severity number (1 error .. 4 debug) so that `--level warn`
    // is `level <= 2`. `function` is `component/function`; host events that concern no function have none.
    "CREATE TABLE logs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        level INTEGER NOT NULL,
        kind TEXT NOT NULL,
        correlation_id TEXT,
        function TEXT,
        version INTEGER,
        trigger TEXT,
        message TEXT NOT NULL
    );
    CREATE INDEX logs_by_correlation ON logs (correlation_id) WHERE correlation_id IS NOT NULL;
    CREATE INDEX logs_by_function ON logs (function) WHERE function IS NOT NULL;
    CREATE INDEX logs_by_time ON logs (at);
    CREATE TABLE usage (
        minute INTEGER NOT NULL,
        function TEXT NOT NULL,
        version INTEGER NOT NULL,
        trigger TEXT NOT NULL,
        invocations INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        traps INTEGER NOT NULL,
        timeouts INTEGER NOT NULL,
        throttled INTEGER NOT NULL,
        cold_starts INTEGER NOT NULL,
        wall_us INTEGER NOT NULL,
        guest_cpu_us INTEGER NOT NULL,
        mb_ms INTEGER NOT NULL,
        peak_memory_bytes INTEGER NOT NULL,
        PRIMARY KEY (minute, function, version, trigger)
    ) WITHOUT ROWID;",
    // 2. Failed invocations of components that record them, with their input (JSON of `FailedInput`; NULL when
    // it was over the cap), for `edgefn replay`.
    "CREATE TABLE failures (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        correlation_id TEXT NOT NULL,
        component TEXT NOT NULL,
        function TEXT NOT NULL,
        version INTEGER NOT NULL,
        trigger TEXT NOT NULL,
        error TEXT NOT NULL,
        input TEXT,
        input_bytes INTEGER NOT NULL
    );
    CREATE INDEX failures_by_correlation ON failures (correlation_id);
    CREATE INDEX failures_by_time ON failures (at);",
    // 3. The wall time of an invocation record, for percentiles (the dashboard).
    "ALTER TABLE logs ADD COLUMN duration_us INTEGER;",
    // 4. No index by time: records are stored in time order, so the sequence number is one (see
    // `first_seq_since`), and every record stored paid for the index.
    "DROP INDEX logs_by_time;",
    // 5. Outcomes counted apart: an HTTP function's 4xx, and requests its route's authorizer refused.
    "ALTER TABLE usage ADD COLUMN client_errors INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage ADD COLUMN unauthorized INTEGER NOT NULL DEFAULT 0;",
];

/// How severe a log record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
        }
    }

    /// `error`, `warn` (or `warning`), `info`, `debug`, in any case.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "error" | "err" => Some(Self::Error),
            "warn" | "warning" => Some(Self::Warn),
            "info" => Some(Self::Info),
            "debug" | "trace" => Some(Self::Debug),
            _ => None,
        }
    }

    fn from_number(number: i64) -> Self {
        match number {
            ..=1 => Self::Error,
            2 => Self::Warn,
            3 => Self::Info,
            _ => Self::Debug,
        }
    }
}

/// What produced a log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogKind {
    /// A line the function printed on stdout.
    Stdout,
    /// A line the function printed on stderr.
    Stderr,
    /// The end of one invocation: what ran, how it ended, how long it took.
    Invocation,
    /// Something the host did: a deploy, a retry, a dead letter.
    Host,
}

impl LogKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
            Self::Invocation => "invocation",
            Self::Host => "host",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "stdout" => Self::Stdout,
            "stderr" => Self::Stderr,
            "invocation" => Self::Invocation,
            _ => Self::Host,
        }
    }
}

/// One log record, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogRecord {
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub level: Level,
    pub kind: LogKind,
    pub correlation_id: Option<String>,
    /// `component/function`.
    pub function: Option<String>,
    pub version: Option<u32>,
    /// `http`, `cron`, `queue`, `topic` or `invoke`.
    pub trigger: Option<String>,
    pub message: String,
    /// The wall time of the invocation an `invocation` record reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
}

/// A stored log record: its sequence number orders the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredLog {
    pub seq: i64,
    #[serde(flatten)]
    pub record: LogRecord,
}

/// Which records a query wants. Every filter that is set must match.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LogQuery {
    /// `component/function`, a component (all its functions) or a function name (in any component).
    pub function: Option<String>,
    pub correlation_id: Option<String>,
    /// Records at or after this time (ms since the epoch).
    pub since: Option<i64>,
    /// Records this severe or more.
    pub level: Option<Level>,
    /// Records after this sequence number (for paging and following).
    pub after: Option<i64>,
    /// At most this many: the newest ones, unless `after` is set (then the oldest after it).
    pub limit: u32,
}

/// Whether `label` (`component/function`) is what `wanted` names: the label itself, its component, or its function
/// name. [`function_condition`] is the same rule in SQL.
pub fn names_function(wanted: &str, label: &str) -> bool {
    label == wanted
        || label.strip_prefix(wanted).is_some_and(|rest| rest.starts_with('/'))
        || label.strip_suffix(wanted).is_some_and(|rest| rest.ends_with('/'))
}

/// [`names_function`] as an SQL condition on the `function` column, `wanted` being the parameter `param` (`?2`).
pub(super) fn function_condition(param: &str) -> String {
    format!(
        "(function = {param} OR substr(function, 1, length({param}) + 1) = {param} || '/' \
         OR substr(function, -length({param}) - 1) = '/' || {param})"
    )
}

impl LogQuery {
    /// Whether `record` passes the filters (all but `after` and `limit`): what [`query_logs`] asks SQLite, for a
    /// record already in hand (one being followed).
    pub fn matches(&self, record: &LogRecord) -> bool {
        self.function
            .as_deref()
            .is_none_or(|wanted| record.function.as_deref().is_some_and(|label| names_function(wanted, label)))
            && self.correlation_id.as_deref().is_none_or(|id| record.correlation_id.as_deref() == Some(id))
            && self.since.is_none_or(|since| record.at >= since)
            && self.level.is_none_or(|level| record.level <= level)
    }
}

/// Opens (creating and migrating) the telemetry database of `data_dir`.
pub fn open(data_dir: &Path) -> Result<Database, StorageError> {
    let db = Database::open_file(&data_dir.join(TELEMETRY_FILE), MIGRATIONS)?;
    // Telemetry, not state: a power cut may lose the last records (never corrupt the file, in WAL mode), and no
    // checkpoint waits for the disk.
    db.with_blocking(|conn| Ok(conn.pragma_update(None, "synchronous", "OFF")?))?;
    Ok(db)
}

/// Stores `records` in one transaction; returns them with their sequence numbers.
pub fn insert_logs(conn: &mut Connection, records: Vec<LogRecord>) -> Result<Vec<StoredLog>, StorageError> {
    let tx = conn.transaction()?;
    let mut stored = Vec::with_capacity(records.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO logs (at, level, kind, correlation_id, function, version, trigger, message, duration_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for record in records {
            insert.execute(params![
                record.at,
                record.level as i64,
                record.kind.as_str(),
                record.correlation_id,
                record.function,
                record.version,
                record.trigger,
                record.message,
                record.duration_us.map(|us| us as i64),
            ])?;
            stored.push(StoredLog { seq: tx.last_insert_rowid(), record });
        }
    }
    tx.commit()?;
    Ok(stored)
}

/// The first sequence number of a record at or after `at` (ms since the epoch), found by binary search: records
/// are stored in the order they are logged, so `at` grows with `seq` (to within one write batch). `None` when
/// every record is older.
pub fn first_seq_since(conn: &Connection, at: i64) -> Result<Option<i64>, StorageError> {
    let mut at_or_after = conn.prepare_cached("SELECT seq, at FROM logs WHERE seq >= ?1 ORDER BY seq LIMIT 1")?;
    let mut probe = |seq: i64| -> Result<Option<(i64, i64)>, StorageError> {
        let mut rows = at_or_after.query([seq])?;
        Ok(match rows.next()? {
            Some(row) => Some((row.get(0)?, row.get(1)?)),
            None => None,
        })
    };
    let Some((first, first_at)) = probe(i64::MIN)? else { return Ok(None) };
    if first_at >= at {
        return Ok(Some(first));
    }
    let last: i64 = conn.query_row("SELECT MAX(seq) FROM logs", [], |row| row.get(0))?;
    let last_at: i64 = conn.query_row("SELECT at FROM logs WHERE seq = ?1", [last], |row| row.get(0))?;
    if last_at < at {
        return Ok(None);
    }
    // The smallest `x` whose first record at or after it is recent enough; the answer is that record. The
    // record at `high` is (invariant), the one at `first` is not.
    let (mut low, mut high) = (first + 1, last);
    while low < high {
        let middle = low + (high - low) / 2;
        match probe(middle)? {
            Some((_, record_at)) if record_at >= at => high = middle,
            _ => low = middle + 1,
        }
    }
    Ok(probe(high)?.map(|(seq, _)| seq))
}

/// The records `query` asks for, oldest first.
pub fn query_logs(conn: &mut Connection, query: &LogQuery) -> Result<Vec<StoredLog>, StorageError> {
    // `--since` starts from the first record that recent (found without an index); `at` is still checked.
    let since_seq = match query.since {
        Some(since) => match first_seq_since(conn, since)? {
            Some(seq) => Some(seq),
            None => return Ok(Vec::new()),
        },
        None => None,
    };
    // Every filter is in the SQL, so the planner picks the index of the most selective one (the correlation id,
    // the function); a filter that is not set is `?N IS NULL` and costs nothing.
    // Only the filters that are set go into the SQL, so that the planner can use the index of the most selective
    // one (an `x IS NULL OR` in front of a condition would keep it from any index).
    let mut conditions: Vec<String> = Vec::new();
    let mut values: Vec<rusqlite::types::Value> = Vec::new();
    let mut bind = |value: rusqlite::types::Value| {
        values.push(value);
        format!("?{}", values.len())
    };
    if let Some(function) = &query.function {
        let wanted = bind(function.clone().into());
        conditions.push(function_condition(&wanted));
    }
    if let Some(id) = &query.correlation_id {
        conditions.push(format!("correlation_id = {}", bind(id.clone().into())));
    }
    if let (Some(since), Some(since_seq)) = (query.since, since_seq) {
        conditions.push(format!("at >= {} AND seq >= {}", bind(since.into()), bind(since_seq.into())));
    }
    if let Some(level) = query.level {
        conditions.push(format!("level <= {}", bind((level as i64).into())));
    }
    if let Some(after) = query.after {
        conditions.push(format!("seq > {}", bind(after.into())));
    }
    let limit = bind(i64::from(query.limit).into());
    let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    let order = if query.after.is_some() { "ASC" } else { "DESC" };
    let sql = format!(
        "SELECT seq, at, level, kind, correlation_id, function, version, trigger, message, duration_us FROM logs
         {filter} ORDER BY seq {order} LIMIT {limit}"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(rusqlite::params_from_iter(values), |row| {
        Ok(StoredLog {
            seq: row.get(0)?,
            record: LogRecord {
                at: row.get(1)?,
                level: Level::from_number(row.get(2)?),
                kind: LogKind::parse(&row.get::<_, String>(3)?),
                correlation_id: row.get(4)?,
                function: row.get(5)?,
                version: row.get(6)?,
                trigger: row.get(7)?,
                message: row.get(8)?,
                duration_us: row.get::<_, Option<i64>>(9)?.map(|us| us.max(0) as u64),
            },
        })
    })?;
    let mut logs = rows.collect::<Result<Vec<_>, _>>()?;
    if query.after.is_none() {
        logs.reverse();
    }
    Ok(logs)
}

/// The wall times (µs) of `function`'s newest invocations since `since` (at most `limit`), sorted: for percentiles.
pub fn recent_durations(
    conn: &mut Connection,
    function: &str,
    since: i64,
    limit: u32,
) -> Result<Vec<u64>, StorageError> {
    let mut statement = conn.prepare_cached(
        "SELECT duration_us FROM logs WHERE function = ?1 AND kind = 'invocation' AND duration_us IS NOT NULL
           AND at >= ?2 ORDER BY seq DESC LIMIT ?3",
    )?;
    let rows = statement.query_map(params![function, since, limit], |row| row.get::<_, i64>(0))?;
    let mut durations = rows.map(|row| row.map(|us| us.max(0) as u64)).collect::<Result<Vec<_>, _>>()?;
    durations.sort_unstable();
    Ok(durations)
}

/// Deletes records older than `cutoff` (ms since the epoch), then the oldest tenth at a time while the log takes
/// more than `max_bytes` of the file. Returns how many records went.
pub fn apply_retention(conn: &mut Connection, cutoff: i64, max_bytes: u64) -> Result<u64, StorageError> {
    // Failures (with their inputs) are kept as long as the log.
    conn.execute("DELETE FROM failures WHERE at < ?1", [cutoff])?;
    let mut deleted = match first_seq_since(conn, cutoff)? {
        Some(first_kept) => conn.execute("DELETE FROM logs WHERE seq < ?1", [first_kept])? as u64,
        None => conn.execute("DELETE FROM logs", [])? as u64,
    };
    loop {
        let used: i64 = conn.query_row(
            "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count, pragma_freelist_count, \
             pragma_page_size",
            [],
            |row| row.get(0),
        )?;
        if (used.max(0) as u64) <= max_bytes {
            break;
        }
        let gone = conn.execute(
            "DELETE FROM logs WHERE seq <= (SELECT seq FROM logs ORDER BY seq LIMIT 1 OFFSET \
             (SELECT MAX(COUNT(*) / 10, 1) - 1 FROM logs))",
            [],
        )? as u64;
        if gone == 0 {
            break;
        }
        deleted += gone;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at: i64, function: &str, id: &str, level: Level, message: &str) -> LogRecord {
        LogRecord {
            at,
            level,
            kind: LogKind::Stdout,
            correlation_id: Some(id.into()),
            function: Some(function.into()),
            version: Some(1),
            trigger: Some("http".into()),
            message: message.into(),
            duration_us: None,
        }
    }

    #[test]
    fn queries_filter_by_function_id_level_and_time_and_page_forward() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path()).expect("open");
        db.with_blocking(|conn| {
            insert_logs(
                conn,
                vec![
                    record(1_000, "shop/order", "a", Level::Info, "one"),
                    record(2_000, "shop/tax", "a", Level::Error, "two"),
                    record(3_000, "mail/send", "b", Level::Warn, "three"),
                    record(4_000, "shop/order", "b", Level::Debug, "four"),
                ],
            )
        })
        .expect("insert");
        let all = db.with_blocking(|conn| query_logs(conn, &LogQuery { limit: 100, ..LogQuery::default() }));
        let all = all.expect("query");
        let messages = |query: LogQuery| {
            let limit = if query.limit == 0 { 100 } else { query.limit };
            let query = LogQuery { limit, ..query };
            let logs = db.with_blocking(|conn| query_logs(conn, &query)).expect("query");
            let found: Vec<String> = logs.into_iter().map(|log| log.record.message).collect();
            // A followed record is filtered in Rust by the same rules: both must agree.
            if query.after.is_none() {
                let by_rule: Vec<&str> = all
                    .iter()
                    .filter(|log| query.matches(&log.record))
                    .map(|log| log.record.message.as_str())
                    .collect();
                assert_eq!(found, by_rule, "SQL and LogQuery::matches disagree on {query:?}");
            }
            found
        };
        assert_eq!(messages(LogQuery::default()), ["one", "two", "three", "four"]);
        assert_eq!(messages(LogQuery { function: Some("shop".into()), ..LogQuery::default() }), ["one", "two", "four"]);
        assert_eq!(messages(LogQuery { function: Some("order".into()), ..LogQuery::default() }), ["one", "four"]);
        assert_eq!(messages(LogQuery { function: Some("shop/tax".into()), ..LogQuery::default() }), ["two"]);
        assert_eq!(messages(LogQuery { function: Some("sho".into()), ..LogQuery::default() }), Vec::<String>::new());
        assert_eq!(messages(LogQuery { correlation_id: Some("b".into()), ..LogQuery::default() }), ["three", "four"]);
        assert_eq!(messages(LogQuery { level: Some(Level::Warn), ..LogQuery::default() }), ["two", "three"]);
        assert_eq!(messages(LogQuery { since: Some(2_500), ..LogQuery::default() }), ["three", "four"]);
        assert_eq!(messages(LogQuery { after: Some(2), limit: 1, ..LogQuery::default() }), ["three"]);
        // Without `after`, a limit keeps the newest, still oldest first.
        let newest = db.with_blocking(|conn| query_logs(conn, &LogQuery { limit: 2, ..LogQuery::default() }));
        let newest: Vec<_> = newest.expect("query").into_iter().map(|log| log.record.message).collect();
        assert_eq!(newest, ["three", "four"]);
    }

    #[test]
    fn the_first_record_since_a_time_is_found_by_binary_search() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path()).expect("open");
        assert_eq!(db.with_blocking(|conn| first_seq_since(conn, 0)).expect("empty"), None);
        // Times 0, 10, 20, ... 990, some seqs missing (deleted), to exercise gaps.
        let records: Vec<_> = (0..100).map(|i| record(i * 10, "a/b", "id", Level::Info, "x")).collect();
        db.with_blocking(|conn| insert_logs(conn, records)).expect("insert");
        db.with_blocking(|conn| Ok(conn.execute("DELETE FROM logs WHERE seq % 7 = 0", [])?)).expect("gaps");
        for at in [0, 1, 5, 10, 333, 500, 985, 990] {
            let expected = db
                .with_blocking(|conn| {
                    Ok(conn.query_row("SELECT MIN(seq) FROM logs WHERE at >= ?1", [at], |row| {
                        row.get::<_, Option<i64>>(0)
                    })?)
                })
                .expect("scan");
            assert_eq!(db.with_blocking(|conn| first_seq_since(conn, at)).expect("search"), expected, "at {at}");
        }
        assert_eq!(db.with_blocking(|conn| first_seq_since(conn, 991)).expect("search"), None);
    }

    #[test]
    fn retention_deletes_by_age_then_by_size_oldest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path()).expect("open");
        let line = "x".repeat(1000);
        let records: Vec<_> = (0..2_000).map(|i| record(i, "a/b", "id", Level::Info, &line)).collect();
        db.with_blocking(|conn| insert_logs(conn, records)).expect("insert");
        let count = || {
            db.with_blocking(|conn| {
                Ok(conn.query_row("SELECT COUNT(*), MIN(at) FROM logs", [], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
                })?)
            })
        };
        assert_eq!(db.with_blocking(|conn| apply_retention(conn, 500, u64::MAX)).expect("retention"), 500);
        assert_eq!(count().expect("count"), (1_500, 500));
        // About 1.5 MB of lines; keep at most 512 KiB: the oldest go, the newest stay.
        let deleted = db.with_blocking(|conn| apply_retention(conn, 0, 512 << 10)).expect("retention");
        let (left, oldest) = count().expect("count");
        assert_eq!(deleted as i64 + left, 1_500);
        assert!(left > 0 && left < 600, "{left} records left");
        assert_eq!(oldest, 2_000 - left, "the newest records are the ones kept");
    }
}
