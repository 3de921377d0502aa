//! Usage per function, version, trigger and minute: what metering adds up and `edgefn usage` reads.

use super::function_condition;
use crate::storage::StorageError;
use rusqlite::{Connection, params};

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
    use crate::storage::telemetry::open;

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
