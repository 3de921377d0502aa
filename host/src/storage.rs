//! Persistent state in SQLite (`<data dir>/edgefn.db`): what is deployed, the queues, the cron schedules and
//! their run history (the last two through their own connections, see [`SharedConnection`]).
//!
//! rusqlite is blocking: callers on the async runtime go through `spawn_blocking`. Schema changes are numbered
//! migrations applied in order at open, tracked with `PRAGMA user_version`.

use anyhow::Context as _;
use rusqlite::{Connection, params};
use std::path::Path;

/// The schema, one entry per version. Never edit a released entry: append a new one.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE deployments (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        hash TEXT NOT NULL,
        source TEXT NOT NULL,
        triggers TEXT NOT NULL,
        first_deployed_at INTEGER NOT NULL,
        last_deployed_at INTEGER NOT NULL,
        UNIQUE (name, hash)
    );",
    // Compiled artifacts, keyed by the component's sha256 and the engine's compatibility hash. The artifact's own
    // sha256 is what lets a restarted host tell a good artifact from a corrupt or half-written one.
    "CREATE TABLE artifacts (
        component_hash TEXT NOT NULL,
        engine_hash TEXT NOT NULL,
        artifact_sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (component_hash, engine_hash)
    );",
    // Durable queues (queue.rs). One table for every queue, dead-letter queues included: a message is ready when
    // `visible_at` has passed; a lease pushes `visible_at` to the lease's end, so a lease that is never settled
    // (the host died) makes the message visible again by itself. AUTOINCREMENT: a message id is never reused.
    "CREATE TABLE queue_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        body BLOB NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        enqueued_at INTEGER NOT NULL,
        visible_at INTEGER NOT NULL,
        leased INTEGER NOT NULL DEFAULT 0,
        origin_queue TEXT,
        last_error TEXT
    );
    CREATE INDEX queue_messages_by_priority ON queue_messages (queue, priority DESC, id);
    CREATE INDEX queue_messages_by_origin ON queue_messages (origin_queue) WHERE origin_queue IS NOT NULL;",
    // Cron (cron.rs): the last tick each schedule handled, and the history of runs.
    "CREATE TABLE cron_state (
        function TEXT PRIMARY KEY,
        last_tick INTEGER NOT NULL
    );
    CREATE TABLE cron_runs (
        id INTEGER PRIMARY KEY,
        function TEXT NOT NULL,
        scheduled_at INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        outcome TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        reason TEXT NOT NULL,
        error TEXT,
        delay_us INTEGER NOT NULL
    );
    CREATE INDEX cron_runs_by_function ON cron_runs (function, id);",
];

/// Another connection to the database of `data_dir` (already migrated by [`Db::open`]), shared by the tasks of one
/// store (queues, cron) behind a mutex; statements are short and each method holds it for one transaction.
#[derive(Debug)]
pub struct SharedConnection(std::sync::Mutex<Connection>);

impl SharedConnection {
    /// Opens it with the same settings as [`Db::open`]: WAL, so readers never block the writer;
    /// `synchronous = NORMAL`, so a commit survives the process being killed (not a power cut: see the README); a
    /// busy timeout instead of instant `SQLITE_BUSY`.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("edgefn.db");
        let conn = Connection::open(&path).with_context(|| format!("failed to open {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(Self(std::sync::Mutex::new(conn)))
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A deployment as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub name: String,
    pub hash: String,
    pub source: String,
    /// JSON array of the component's function records.
    pub triggers: String,
    pub last_deployed_at: i64,
}

/// The database.
#[derive(Debug)]
pub struct Db {
    conn: Connection,
}

impl Db {
    /// Opens (creating if needed) the database in `data_dir` and brings its schema up to date.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("failed to create data dir {}", data_dir.display()))?;
        let path = data_dir.join("edgefn.db");
        let conn = Connection::open(&path).with_context(|| format!("failed to open {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut db = Self { conn };
        db.migrate().with_context(|| format!("failed to migrate {}", path.display()))?;
        Ok(db)
    }

    fn migrate(&mut self) -> anyhow::Result<()> {
        let version: usize = self.conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > MIGRATIONS.len() {
            anyhow::bail!("the database has schema version {version}, newer than this host knows; upgrade edgefn");
        }
        let tx = self.conn.transaction()?;
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version) {
            tx.execute_batch(migration)?;
            tx.pragma_update(None, "user_version", index + 1)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Records that `name` is deployed at `hash`.
    pub fn record_deployment(&self, name: &str, hash: &str, source: &str, triggers: &str) -> anyhow::Result<()> {
        let now = unix_now()?;
        self.conn.execute(
            "INSERT INTO deployments (name, hash, source, triggers, first_deployed_at, last_deployed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (name, hash) DO UPDATE SET source = ?3, triggers = ?4, last_deployed_at = ?5",
            params![name, hash, source, triggers, now],
        )?;
        Ok(())
    }

    /// Records the checksum of a compiled artifact (replacing an older record for the same key).
    pub fn record_artifact(
        &self,
        component_hash: &str,
        engine_hash: &str,
        artifact_sha256: &str,
        size: u64,
    ) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO artifacts (component_hash, engine_hash, artifact_sha256, size, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![component_hash, engine_hash, artifact_sha256, size as i64, unix_now()?],
        )?;
        Ok(())
    }

    /// The recorded checksum of an artifact, if one was recorded.
    pub fn artifact_sha256(&self, component_hash: &str, engine_hash: &str) -> anyhow::Result<Option<String>> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT artifact_sha256 FROM artifacts WHERE component_hash = ?1 AND engine_hash = ?2")?;
        let mut rows = statement.query(params![component_hash, engine_hash])?;
        Ok(match rows.next()? {
            Some(row) => Some(row.get(0)?),
            None => None,
        })
    }

    /// Every deployment, most recent first.
    pub fn deployments(&self) -> anyhow::Result<Vec<Deployment>> {
        let mut statement = self.conn.prepare(
            "SELECT name, hash, source, triggers, last_deployed_at FROM deployments
             ORDER BY last_deployed_at DESC, id DESC",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(Deployment {
                name: row.get(0)?,
                hash: row.get(1)?,
                source: row.get(2)?,
                triggers: row.get(3)?,
                last_deployed_at: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn unix_now() -> anyhow::Result<i64> {
    Ok(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_persist_across_reopen_and_redeploys_do_not_duplicate() {
        let dir = tempfile_dir();
        {
            let db = Db::open(&dir).unwrap();
            db.record_deployment("hello", "abc", "hello.wasm", "[]").unwrap();
            db.record_deployment("hello", "abc", "hello.wasm", "[]").unwrap();
            db.record_deployment("hello", "def", "hello.wasm", "[]").unwrap();
        }
        let db = Db::open(&dir).unwrap();
        let hashes: Vec<_> = db.deployments().unwrap().into_iter().map(|d| d.hash).collect();
        assert_eq!(hashes.len(), 2);
        assert!(hashes.contains(&"abc".to_owned()) && hashes.contains(&"def".to_owned()));
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("edgefn-storage-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }
}
