//! The SQL of the telemetry database, `<data dir>/telemetry.db`: the log (guest output, one record per invocation,
//! host events) and usage per function, version, trigger and minute.
//!
//! A file of its own, not a table of `edgefn.db`: logs are written all the time and deleted by retention, and
//! SQLite has one writer per file, so a burst of logs must never make a queue send or a deploy wait.

use super::{Database, StorageError};
use rusqlite::{Connection, params};
use std::path::Path;

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

/// A failed invocation, kept to be replayed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    /// Assigned when stored.
    pub id: i64,
    pub at: i64,
    pub correlation_id: String,
    pub component: String,
    /// The function's name in its component.
    pub function: String,
    pub version: u32,
    pub trigger: String,
    pub error: String,
    /// What it was called with; `None` when that was over the cap (see `input_bytes`), or when it was a request
    /// body the function read as a stream (then `input_bytes` is 0: the host never held it whole).
    pub input: Option<FailedInput>,
    /// The size of the input's bodies, kept or not; 0 for a streamed request body.
    pub input_bytes: u64,
}

impl Failure {
    /// Whether its input was a request body streamed to the function, and so never kept.
    pub fn input_was_streamed(&self) -> bool {
        self.input.is_none() && self.input_bytes == 0
    }
}

/// What a failed invocation was called with. Bodies are base64 in the JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailedInput {
    /// The request as the function got it, credentials left out.
    Http {
        method: String,
        /// Path and query.
        uri: String,
        headers: Vec<(String, String)>,
        #[serde(with = "base64_bytes")]
        body: Vec<u8>,
    },
    Messages {
        source: String,
        messages: Vec<FailedMessage>,
    },
    Cron {
        expression: String,
        timezone: String,
        scheduled_at: i64,
        attempt: u32,
        reason: String,
    },
    Invoke {
        #[serde(with = "base64_bytes")]
        payload: Vec<u8>,
    },
}

/// One message of a failed delivery.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailedMessage {
    pub id: String,
    #[serde(with = "base64_bytes")]
    pub body: Vec<u8>,
    pub attempts: u32,
    pub priority: i32,
    pub enqueued_at: i64,
    pub correlation_id: String,
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    pub(super) fn serialize<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text: String = serde::Deserialize::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// Stores `failure` (its `id` is ignored); returns its id.
pub fn insert_failure(conn: &mut Connection, failure: &Failure) -> Result<i64, StorageError> {
    let input = match &failure.input {
        Some(input) => Some(serde_json::to_string(input).map_err(|e| StorageError::Corrupt(e.to_string()))?),
        None => None,
    };
    conn.prepare_cached(
        "INSERT INTO failures (at, correlation_id, component, function, version, trigger, error, input, input_bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        failure.at,
        failure.correlation_id,
        failure.component,
        failure.function,
        failure.version,
        failure.trigger,
        failure.error,
        input,
        failure.input_bytes as i64,
    ])?;
    Ok(conn.last_insert_rowid())
}

/// The failure `id`, or the newest failure of correlation id `id`.
pub fn find_failure(conn: &mut Connection, id: &str) -> Result<Option<Failure>, StorageError> {
    let mut statement = conn.prepare_cached(
        "SELECT id, at, correlation_id, component, function, version, trigger, error, input, input_bytes
         FROM failures WHERE id = ?1 OR correlation_id = ?2 ORDER BY (id = ?1) DESC, id DESC LIMIT 1",
    )?;
    let numeric = id.parse::<i64>().ok();
    let mut rows = statement.query(params![numeric, id])?;
    let Some(row) = rows.next()? else { return Ok(None) };
    let input: Option<String> = row.get(8)?;
    let input = match input {
        Some(json) => Some(serde_json::from_str(&json).map_err(|e| StorageError::Corrupt(e.to_string()))?),
        None => None,
    };
    Ok(Some(Failure {
        id: row.get(0)?,
        at: row.get(1)?,
        correlation_id: row.get(2)?,
        component: row.get(3)?,
        function: row.get(4)?,
        version: row.get(5)?,
        trigger: row.get(6)?,
        error: row.get(7)?,
        input,
        input_bytes: row.get::<_, i64>(9)?.max(0) as u64,
    }))
}

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
fn function_condition(param: &str) -> String {
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

/// The counts of one function, version and trigger over some time: one minute, as stored, or a sum of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UsageCounts {
    /// Every invocation, whatever its outcome: the sum of the outcome counts below (and cancelled ones).
    pub invocations: u64,
    pub ok: u64,
    /// HTTP answers 4xx.
    #[serde(default)]
    pub client_errors: u64,
    pub errors: u64,
    pub traps: u64,
    pub timeouts: u64,
    pub throttled: u64,
    /// Refused by the route's authorizer, before the function ran.
    #[serde(default)]
    pub unauthorized: u64,
    pub cold_starts: u64,
    /// Wall time, in microseconds.
    pub wall_us: u64,
    /// Time spent running the function (its instance being polled), in microseconds.
    pub guest_cpu_us: u64,
    /// Configured memory (MB) times billed duration (ms, each invocation rounded up to 1 ms): GB-s is this over
    /// 1024 x 1000.
    pub mb_ms: u64,
    /// The largest linear memory one invocation reached.
    pub peak_memory_bytes: u64,
}

impl UsageCounts {
    /// Adds `other` in: sums, except the peak, which is the larger.
    pub fn add(&mut self, other: &Self) {
        self.invocations += other.invocations;
        self.ok += other.ok;
        self.client_errors += other.client_errors;
        self.unauthorized += other.unauthorized;
        self.errors += other.errors;
        self.traps += other.traps;
        self.timeouts += other.timeouts;
        self.throttled += other.throttled;
        self.cold_starts += other.cold_starts;
        self.wall_us += other.wall_us;
        self.guest_cpu_us += other.guest_cpu_us;
        self.mb_ms += other.mb_ms;
        self.peak_memory_bytes = self.peak_memory_bytes.max(other.peak_memory_bytes);
    }
}

/// Where a minute of usage is counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct UsageKey {
    /// Minutes since the Unix epoch.
    pub minute: i64,
    pub function: String,
    pub version: u32,
    pub trigger: String,
}

/// One stored row of usage.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UsageRow {
    #[serde(flatten)]
    pub key: UsageKey,
    #[serde(flatten)]
    pub counts: UsageCounts,
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

/// Adds `minutes` into the stored usage (one transaction).
pub fn add_usage(conn: &mut Connection, minutes: Vec<(UsageKey, UsageCounts)>) -> Result<(), StorageError> {
    let tx = conn.transaction()?;
    {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO usage (minute, function, version, trigger, invocations, ok, errors, traps, timeouts,
                                throttled, cold_starts, wall_us, guest_cpu_us, mb_ms, peak_memory_bytes,
                                client_errors, unauthorized)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
             ON CONFLICT (minute, function, version, trigger) DO UPDATE SET
                invocations = invocations + excluded.invocations, ok = ok + excluded.ok,
                client_errors = client_errors + excluded.client_errors,
                unauthorized = unauthorized + excluded.unauthorized,
                errors = errors + excluded.errors, traps = traps + excluded.traps,
                timeouts = timeouts + excluded.timeouts, throttled = throttled + excluded.throttled,
                cold_starts = cold_starts + excluded.cold_starts, wall_us = wall_us + excluded.wall_us,
                guest_cpu_us = guest_cpu_us + excluded.guest_cpu_us, mb_ms = mb_ms + excluded.mb_ms,
                peak_memory_bytes = MAX(peak_memory_bytes, excluded.peak_memory_bytes)",
        )?;
        for (key, counts) in minutes {
            upsert.execute(params![
                key.minute,
                key.function,
                key.version,
                key.trigger,
                counts.invocations as i64,
                counts.ok as i64,
                counts.errors as i64,
                counts.traps as i64,
                counts.timeouts as i64,
                counts.throttled as i64,
                counts.cold_starts as i64,
                counts.wall_us as i64,
                counts.guest_cpu_us as i64,
                counts.mb_ms as i64,
                counts.peak_memory_bytes as i64,
                counts.client_errors as i64,
                counts.unauthorized as i64,
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The usage rows from minute `since` on, of `function` (matched as in [`LogQuery::function`]) if set.
pub fn query_usage(conn: &mut Connection, since: i64, function: Option<&str>) -> Result<Vec<UsageRow>, StorageError> {
    let sql = format!(
        "SELECT minute, function, version, trigger, invocations, ok, errors, traps, timeouts, throttled, cold_starts,
                wall_us, guest_cpu_us, mb_ms, peak_memory_bytes, client_errors, unauthorized
         FROM usage
         WHERE minute >= ?1 AND (?2 IS NULL OR {})
         ORDER BY minute, function, version, trigger",
        function_condition("?2")
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(params![since, function], |row| {
        let count = |index: usize| row.get::<_, i64>(index).map(|value| value.max(0) as u64);
        Ok(UsageRow {
            key: UsageKey { minute: row.get(0)?, function: row.get(1)?, version: row.get(2)?, trigger: row.get(3)? },
            counts: UsageCounts {
                invocations: count(4)?,
                ok: count(5)?,
                errors: count(6)?,
                traps: count(7)?,
                timeouts: count(8)?,
                throttled: count(9)?,
                cold_starts: count(10)?,
                wall_us: count(11)?,
                guest_cpu_us: count(12)?,
                mb_ms: count(13)?,
                peak_memory_bytes: count(14)?,
                client_errors: count(15)?,
                unauthorized: count(16)?,
            },
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Deletes usage before minute `cutoff`.
pub fn delete_usage_before(conn: &mut Connection, cutoff: i64) -> Result<u64, StorageError> {
    Ok(conn.execute("DELETE FROM usage WHERE minute < ?1", [cutoff])? as u64)
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

    #[test]
    fn usage_adds_up_per_minute_and_keeps_the_larger_peak() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path()).expect("open");
        let key = UsageKey { minute: 7, function: "a/b".into(), version: 2, trigger: "http".into() };
        let one = UsageCounts {
            invocations: 1,
            ok: 1,
            wall_us: 1_500,
            mb_ms: 256,
            peak_memory_bytes: 100,
            ..UsageCounts::default()
        };
        let two = UsageCounts {
            invocations: 2,
            errors: 2,
            wall_us: 500,
            mb_ms: 512,
            peak_memory_bytes: 50,
            ..UsageCounts::default()
        };
        db.with_blocking(|conn| add_usage(conn, vec![(key.clone(), one)])).expect("add");
        db.with_blocking(|conn| add_usage(conn, vec![(key.clone(), two)])).expect("add");
        let rows = db.with_blocking(|conn| query_usage(conn, 0, Some("b"))).expect("query");
        let mut expected = one;
        expected.add(&two);
        assert_eq!(rows, vec![UsageRow { key, counts: expected }]);
        assert_eq!((expected.invocations, expected.mb_ms, expected.peak_memory_bytes), (3, 768, 100));
        assert!(db.with_blocking(|conn| query_usage(conn, 8, None)).expect("query").is_empty());
    }
}
