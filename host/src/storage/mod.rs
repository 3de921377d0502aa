//! Persistent state in SQLite (`<data dir>/edgefn.db`): deployed versions and what is live, compiled artifacts,
//! the queues, the cron schedules and their run history, key-value stores, object metadata, streams and workflow
//! runs.
//!
//! One connection policy for all of it ([`Database`]): WAL (readers never block the writer), `synchronous =
//! NORMAL` (a commit survives the process being killed, not a power cut), a busy timeout instead of instant
//! `SQLITE_BUSY`, transactions that take the write lock as they begin, and every statement run off the async
//! worker threads ([`Database::call`] hands the work to
//! tokio's blocking pool). Each part of the host opens its own connection, so a long queue transaction never makes
//! a cron write wait. Schema changes are numbered migrations applied in order at open (`PRAGMA user_version`).
//!
//! Errors are typed ([`StorageError`]); the layers above wrap them, and only the admin API turns them into a
//! status.

pub mod backends;
pub mod cron;
pub mod deployments;
pub mod kv;
pub mod objects;
pub mod queue;
pub mod sealing;
pub mod streams;
pub mod telemetry;
pub mod workflows;

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The database file in a data dir.
pub const DB_FILE: &str = "edgefn.db";

/// The schema, one entry per version. Never edit a released entry: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1. Round 1's record of `edgefn up` deployments; superseded by `versions` (migration 5), kept for old data dirs.
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
    // 2. Round 1's artifact checksums; superseded by `compiled_artifacts` (migration 5).
    "CREATE TABLE artifacts (
        component_hash TEXT NOT NULL,
        engine_hash TEXT NOT NULL,
        artifact_sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (component_hash, engine_hash)
    );",
    // 3. Durable queues (storage/queue.rs). One table for every queue, dead-letter queues included: a message is
    // ready when `visible_at` has passed; a lease pushes `visible_at` to the lease's end, so a lease that is never
    // settled (the host died) makes the message visible again by itself. AUTOINCREMENT: an id is never reused.
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
    // 4. Cron (storage/cron.rs): the last tick each schedule handled, and the history of runs.
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
    // 5. Live deployments (storage/deployments.rs): immutable versions of each component, what is live (with an
    // optional canary), and the compiled artifacts, content-addressed by what wasmtime compiles.
    "CREATE TABLE versions (
        component TEXT NOT NULL,
        version INTEGER NOT NULL,
        hash TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        config TEXT NOT NULL,
        functions TEXT NOT NULL,
        source TEXT NOT NULL,
        deployed_by TEXT NOT NULL,
        deployed_at INTEGER NOT NULL,
        PRIMARY KEY (component, version)
    );
    CREATE TABLE live (
        component TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        canary_version INTEGER,
        canary_percent INTEGER,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE compile_inputs (
        component_hash TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        input_sha256 TEXT NOT NULL,
        PRIMARY KEY (component_hash, config_hash)
    );
    CREATE TABLE compiled_artifacts (
        input_sha256 TEXT NOT NULL,
        engine_hash TEXT NOT NULL,
        artifact_sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (input_sha256, engine_hash)
    );",
    // 6. How much each queue holds, kept by triggers in the same transactions as the messages, so a send can be
    // refused at a queue's limits without counting its rows.
    "CREATE TABLE queue_sizes (
        queue TEXT PRIMARY KEY,
        messages INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO queue_sizes (queue, messages, bytes)
        SELECT queue, COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM queue_messages GROUP BY queue;
    CREATE TRIGGER queue_sizes_after_insert AFTER INSERT ON queue_messages BEGIN
        INSERT OR IGNORE INTO queue_sizes (queue) VALUES (NEW.queue);
        UPDATE queue_sizes SET messages = messages + 1, bytes = bytes + LENGTH(NEW.body) WHERE queue = NEW.queue;
    END;
    CREATE TRIGGER queue_sizes_after_delete AFTER DELETE ON queue_messages BEGIN
        UPDATE queue_sizes SET messages = messages - 1, bytes = bytes - LENGTH(OLD.body) WHERE queue = OLD.queue;
    END;
    CREATE TRIGGER queue_sizes_after_move AFTER UPDATE OF queue ON queue_messages WHEN OLD.queue <> NEW.queue BEGIN
        UPDATE queue_sizes SET messages = messages - 1, bytes = bytes - LENGTH(OLD.body) WHERE queue = OLD.queue;
        INSERT OR IGNORE INTO queue_sizes (queue) VALUES (NEW.queue);
        UPDATE queue_sizes SET messages = messages + 1, bytes = bytes + LENGTH(NEW.body) WHERE queue = NEW.queue;
    END;",
    // 7. Key-value stores (storage/kv.rs): one table for every store; versions from one counter that only grows;
    // sizes per store kept by triggers.
    "CREATE TABLE kv (
        store TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        version INTEGER NOT NULL,
        expires_at INTEGER,
        PRIMARY KEY (store, key)
    );
    CREATE INDEX kv_by_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE kv_clock (version INTEGER NOT NULL);
    INSERT INTO kv_clock (version) VALUES (0);
    CREATE TABLE kv_sizes (
        store TEXT PRIMARY KEY,
        keys INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0
    );
    CREATE TRIGGER kv_sizes_after_insert AFTER INSERT ON kv BEGIN
        INSERT OR IGNORE INTO kv_sizes (store) VALUES (NEW.store);
        UPDATE kv_sizes SET keys = keys + 1, bytes = bytes + LENGTH(NEW.value) WHERE store = NEW.store;
    END;
    CREATE TRIGGER kv_sizes_after_delete AFTER DELETE ON kv BEGIN
        UPDATE kv_sizes SET keys = keys - 1, bytes = bytes - LENGTH(OLD.value) WHERE store = OLD.store;
    END;
    CREATE TRIGGER kv_sizes_after_update AFTER UPDATE OF value ON kv BEGIN
        UPDATE kv_sizes SET bytes = bytes - LENGTH(OLD.value) + LENGTH(NEW.value) WHERE store = NEW.store;
    END;",
    // 8. The correlation id of the work that sent a message (telemetry/correlation.rs), handed to its delivery.
    "ALTER TABLE queue_messages ADD COLUMN correlation_id TEXT;",
    // 9. The deliveries a dead letter failed before it died (its `attempts` start over in the dead-letter queue):
    // what `dead-letters` shows, so it agrees with the log's "dead-lettered after N attempts".
    "ALTER TABLE queue_messages ADD COLUMN dead_after_attempts INTEGER;",
    // 10. The span that sent a message (telemetry/otel.rs), so its delivery's span continues the sender's trace.
    "ALTER TABLE queue_messages ADD COLUMN parent_span INTEGER;",
    // 11. Object storage (storage/objects.rs): metadata per object (its bytes are files), sizes per bucket kept by
    // triggers, and the outbox of changes for object triggers.
    "CREATE TABLE objects (
        bucket TEXT NOT NULL,
        key TEXT NOT NULL,
        blob TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        etag TEXT NOT NULL,
        content_type TEXT NOT NULL,
        metadata TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (bucket, key)
    );
    CREATE TABLE object_sizes (
        bucket TEXT PRIMARY KEY,
        objects INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0
    );
    CREATE TRIGGER object_sizes_after_insert AFTER INSERT ON objects BEGIN
        INSERT OR IGNORE INTO object_sizes (bucket) VALUES (NEW.bucket);
        UPDATE object_sizes SET objects = objects + 1, bytes = bytes + NEW.size WHERE bucket = NEW.bucket;
    END;
    CREATE TRIGGER object_sizes_after_delete AFTER DELETE ON objects BEGIN
        UPDATE object_sizes SET objects = objects - 1, bytes = bytes - OLD.size WHERE bucket = OLD.bucket;
    END;
    CREATE TRIGGER object_sizes_after_update AFTER UPDATE OF size ON objects BEGIN
        UPDATE object_sizes SET bytes = bytes - OLD.size + NEW.size WHERE bucket = NEW.bucket;
    END;
    CREATE TABLE object_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        body TEXT NOT NULL
    );",
    // 12. Ordered streams (storage/streams.rs): each stream's shard count (fixed when it is first used), each shard's
    // next sequence number and what it holds, the records, and each consumer's checkpoint per shard. `epoch` grows
    // with each replay, so a delivery that ran across a replay cannot move the checkpoint the replay set.
    "CREATE TABLE streams (
        name TEXT PRIMARY KEY,
        shards INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE stream_shards (
        stream TEXT NOT NULL,
        shard INTEGER NOT NULL,
        next_seq INTEGER NOT NULL,
        records INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (stream, shard)
    ) WITHOUT ROWID;
    CREATE TABLE stream_records (
        id INTEGER PRIMARY KEY,
        stream TEXT NOT NULL,
        shard INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        key TEXT NOT NULL,
        body BLOB NOT NULL,
        at INTEGER NOT NULL,
        correlation_id TEXT
    );
    CREATE UNIQUE INDEX stream_records_by_position ON stream_records (stream, shard, seq);
    CREATE TABLE stream_checkpoints (
        stream TEXT NOT NULL,
        consumer TEXT NOT NULL,
        shard INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        epoch INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (stream, consumer, shard)
    ) WITHOUT ROWID;",
    // 13. Durable workflows (storage/workflows.rs): each run (its state, when it is due, what it waits for, its
    // result), its journal (one row per entry, JSON), the failed attempts of its steps (for the timeline), and
    // signals that came before the run waited for them.
    "CREATE TABLE workflow_runs (
        id TEXT PRIMARY KEY,
        component TEXT NOT NULL,
        function TEXT NOT NULL,
        input TEXT NOT NULL,
        state TEXT NOT NULL,
        due_at INTEGER,
        waiting_for TEXT,
        retry_step TEXT,
        retry_attempts INTEGER NOT NULL DEFAULT 0,
        result TEXT,
        error TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX workflow_runs_due ON workflow_runs (due_at) WHERE due_at IS NOT NULL;
    CREATE TABLE workflow_journal (
        run TEXT NOT NULL,
        seq INTEGER NOT NULL,
        entry TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (run, seq)
    ) WITHOUT ROWID;
    CREATE TABLE workflow_attempts (
        run TEXT NOT NULL,
        step TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        status INTEGER NOT NULL,
        error TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX workflow_attempts_by_run ON workflow_attempts (run);
    CREATE TABLE workflow_signals (
        id INTEGER PRIMARY KEY,
        run TEXT NOT NULL,
        event TEXT NOT NULL,
        payload TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX workflow_signals_by_run ON workflow_signals (run, event);",
    // 14. Workflow runs keep the version they started on (they resume on it), and whether a failure happened outside
    // the workflow's own code (a crash, a non-deterministic replay), which `edgefn workflows retry` may resume.
    // Each run also counts its journal's entries and bytes, so that checking a resume against them costs the same
    // at the 10th step as at the 10,000th, and remembers a cancel (a retry of a run that failed while cancelling
    // goes on cancelling).
    "ALTER TABLE workflow_runs ADD COLUMN version INTEGER;
    ALTER TABLE workflow_runs ADD COLUMN retryable INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE workflow_runs ADD COLUMN journal_entries INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE workflow_runs ADD COLUMN journal_bytes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE workflow_runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    UPDATE workflow_runs SET
        journal_entries = (SELECT COUNT(*) FROM workflow_journal WHERE run = workflow_runs.id),
        journal_bytes = (SELECT COALESCE(SUM(LENGTH(CAST(entry AS BLOB))), 0) FROM workflow_journal
                         WHERE run = workflow_runs.id);
    CREATE INDEX workflow_runs_by_component ON workflow_runs (component) WHERE due_at IS NOT NULL;",
    // 15. Child workflow runs: the run that started one (`wf.child`), and the event it waits for, which the child's
    // end sends it.
    "ALTER TABLE workflow_runs ADD COLUMN parent TEXT;
    ALTER TABLE workflow_runs ADD COLUMN parent_event TEXT;
    CREATE INDEX workflow_runs_by_parent ON workflow_runs (parent) WHERE parent IS NOT NULL;",
    // 16. On a cluster: the last command of the cluster's workflow log this node's copy of the runs has applied.
    "CREATE TABLE workflow_log (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);",
];

/// What went wrong in the database.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("failed to open the database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("failed to create the secret file {path}: {source}")]
    SecretFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to create the data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the database has schema version {found}, newer than this host knows ({known}); upgrade edgefn")]
    NewerSchema { found: usize, known: usize },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The filesystem holding the database has no room: SQLite rolled the write back, so nothing of it was stored
    /// and nothing stored before was touched. It works again once space is freed.
    #[error("the disk holding {path} is full: nothing was written (free space there and it works again)")]
    DiskFull { path: PathBuf },
    #[error("a stored record is unreadable: {0}")]
    Corrupt(String),
    /// The blocking task running a statement panicked or was cancelled.
    #[error("the database task failed: {0}")]
    Task(String),
    /// The NATS JetStream server of a cluster refused or failed a request (`backends::jetstream`).
    #[error("the cluster's NATS JetStream server failed to {action}: {reason}")]
    Cluster { action: String, reason: String },
    /// A change too large for one message of the cluster's NATS server: refused every time it is tried, unlike a
    /// [`StorageError::Cluster`] failure, which may pass once the server is back.
    #[error(
        "the cluster cannot {action}: it is {size} bytes, and the cluster's NATS server takes messages of at most \
         {max} (its max_payload)"
    )]
    TooLargeForCluster { action: String, size: usize, max: usize },
}

/// How long a connection waits for another's write lock before it fails ("database is locked").
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// One SQLite connection, shared by the tasks of one part of the host behind a mutex; each method holds it for one
/// transaction. Cloning shares the connection.
#[derive(Clone)]
pub struct Database {
    conn: Arc<Mutex<Connection>>,
    path: Arc<Path>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Database {
    /// Opens (creating if needed) the database in `data_dir` and brings its schema up to date. The data dir is
    /// created owner-only: it holds the admin token and the versions' configuration, secrets included.
    pub fn open(data_dir: &Path) -> Result<Self, StorageError> {
        create_private_dir(data_dir)?;
        Self::open_file(&data_dir.join(DB_FILE), MIGRATIONS)
    }

    /// Another connection to the database of `data_dir`, which [`Database::open`] has already migrated.
    pub fn connect(data_dir: &Path) -> Result<Self, StorageError> {
        Self::connect_file(&data_dir.join(DB_FILE))
    }

    /// Opens (creating if needed) the database file `path`, with the same connection policy, and applies
    /// `migrations` (its own numbered schema).
    pub fn open_file(path: &Path, migrations: &'static [&'static str]) -> Result<Self, StorageError> {
        let db = Self::connect_file(path)?;
        db.with_blocking(|conn| migrate(conn, migrations))?;
        Ok(db)
    }

    /// Another connection to the database file `path`, which [`Database::open_file`] has already migrated.
    pub fn connect_file(path: &Path) -> Result<Self, StorageError> {
        let path = path.to_owned();
        let open = || -> rusqlite::Result<Connection> {
            let mut conn = Connection::open(&path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            // Transactions take the write lock when they begin. A deferred one that reads, then writes, fails at
            // once ("database is locked", without waiting) when another connection committed in between: the queue's
            // capacity check before an insert is such a transaction.
            conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
            Ok(conn)
        };
        let conn = open().map_err(|source| StorageError::Open { path: path.clone(), source })?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), path: path.into() })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `work` on the connection, on tokio's blocking pool: never on an async worker thread, where a slow
    /// statement (or a wait for the mutex) would stall every request scheduled on that thread.
    pub async fn call<R, F>(&self, work: F) -> Result<R, StorageError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StorageError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.with_blocking(work))
            .await
            .map_err(|join| StorageError::Task(join.to_string()))?
    }

    /// Runs `work` on the connection from async code, for writes of a few tens of microseconds on the hottest path
    /// (a workflow step's journal write), where a hand-off to another thread costs as much as the write. When the
    /// connection is free and SQLite's write lock can be had at once, `work` runs right here in the worker, held
    /// that long as by any guest code (a WAL checkpoint SQLite runs in a commit, every 1,000 pages of log, holds it
    /// for about one `fsync`; the other workers take its queued tasks meanwhile). Otherwise, another connection
    /// writing, it waits as usual without holding the worker: `block_in_place` on a multi-threaded runtime, else
    /// [`Database::call`]. `work` may so be called twice, the first time failing at its transaction's start.
    pub async fn call_in_place<R, F>(&self, mut work: F) -> Result<R, StorageError>
    where
        R: Send + 'static,
        F: FnMut(&mut Connection) -> Result<R, StorageError> + Send + 'static,
    {
        if let Ok(mut conn) = self.conn.try_lock() {
            // Transactions begin IMMEDIATE: with no wait allowed, one that cannot have the lock fails at its start.
            let _ = conn.busy_timeout(Duration::ZERO);
            let result = work(&mut conn);
            let _ = conn.busy_timeout(BUSY_TIMEOUT);
            let busy = matches!(&result, Err(StorageError::Sqlite(error))
                if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy));
            if !busy {
                return result.map_err(|error| error.naming_the_disk(&self.path));
            }
        }
        let multi_threaded = tokio::runtime::Handle::try_current()
            .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_threaded { tokio::task::block_in_place(|| self.with_blocking(work)) } else { self.call(work).await }
    }

    /// Runs `work` on the connection in the calling thread. Only for threads that may block: start-up before the
    /// servers run, the CLI, blocking-pool tasks, benchmarks.
    pub fn with_blocking<R>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        work(&mut self.lock()).map_err(|error| error.naming_the_disk(&self.path))
    }
}

impl StorageError {
    /// Whether the write failed for want of disk space (and works again once there is some).
    pub fn is_disk_full(&self) -> bool {
        match self {
            StorageError::DiskFull { .. } => true,
            StorageError::Sqlite(error) => error.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
            _ => false,
        }
    }

    /// SQLite's "database or disk is full" as [`StorageError::DiskFull`], naming the file `path` it failed to grow.
    fn naming_the_disk(self, path: &Path) -> Self {
        if self.is_disk_full() { StorageError::DiskFull { path: path.to_owned() } } else { self }
    }
}

fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), StorageError> {
    let version: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > migrations.len() {
        return Err(StorageError::NewerSchema { found: version, known: migrations.len() });
    }
    let tx = conn.transaction()?;
    for (index, migration) in migrations.iter().enumerate().skip(version) {
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", index + 1)?;
    }
    tx.commit()?;
    Ok(())
}

/// Creates `dir` (and its parents) readable by its owner only; an existing dir is left as it is.
pub fn create_private_dir(dir: &Path) -> Result<(), StorageError> {
    if dir.is_dir() {
        return Ok(());
    }
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StorageError::DataDir { path: dir.to_owned(), source })
}

/// Reads the secret in file `path`, creating it (random, 256 bits as hex, owner-only) if it is missing or empty.
/// Returns the secret and whether it was just created.
pub fn load_or_create_secret(path: &Path) -> Result<(String, bool), StorageError> {
    if let Ok(secret) = std::fs::read_to_string(path) {
        let secret = secret.trim().to_owned();
        if !secret.is_empty() {
            return Ok((secret, false));
        }
    }
    let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io_error = |source| StorageError::SecretFile { path: path.to_owned(), source };
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(io_error)?;
    writeln!(file, "{secret}").map_err(io_error)?;
    Ok((secret, true))
}

/// Milliseconds since the Unix epoch: the unit of every time the database stores.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_past_the_room_left_is_disk_full_naming_the_file_and_stores_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Database::open(dir.path()).expect("open");
        // SQLite answers a database at its page limit exactly as one on a full disk: SQLITE_FULL.
        let pages: i64 =
            db.with_blocking(|c| Ok(c.pragma_query_value(None, "page_count", |r| r.get(0))?)).expect("pages");
        db.with_blocking(|c| Ok(c.pragma_update(None, "max_page_count", pages)?)).expect("limit");
        let big = vec![7u8; 64 << 10];
        let error = db
            .with_blocking(|c| {
                c.execute("INSERT INTO kv (store, key, value, version) VALUES ('s', 'k', ?1, 1)", [&big])?;
                Ok(())
            })
            .expect_err("a write past the limit");
        assert!(error.is_disk_full(), "{error}");
        let text = error.to_string();
        assert!(text.contains(&dir.path().join(DB_FILE).display().to_string()) && text.contains("is full"), "{text}");
        let keys: i64 =
            db.with_blocking(|c| Ok(c.query_row("SELECT COUNT(*) FROM kv", [], |r| r.get(0))?)).expect("count");
        assert_eq!(keys, 0, "the refused write stored nothing");
    }

    #[test]
    fn a_write_in_place_waits_for_another_connections_write_without_failing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Database::open(dir.path()).expect("open");
        let other = Database::connect(dir.path()).expect("connect");
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        let insert = |conn: &mut Connection, key: &str| -> Result<(), StorageError> {
            let tx = conn.transaction()?;
            tx.execute("INSERT INTO kv (store, key, value, version) VALUES ('s', ?1, x'00', 1)", [key])?;
            tx.commit()?;
            Ok(())
        };
        // Free: it runs at once, in the calling worker.
        runtime.block_on(db.call_in_place(move |conn| insert(conn, "a"))).expect("a write in place");
        // Another connection holds SQLite's write lock for a while: the first try fails at its start, and the
        // write then waits for the lock as any other does, and lands once.
        let (locked, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let holder = std::thread::spawn(move || {
            other
                .with_blocking(|conn| {
                    let tx = conn.transaction()?;
                    tx.execute("INSERT INTO kv (store, key, value, version) VALUES ('s', 'held', x'00', 1)", [])?;
                    locked.0.send(()).expect("tell");
                    release.1.recv().expect("wait");
                    tx.commit()?;
                    Ok(())
                })
                .expect("the other write");
        });
        locked.1.recv().expect("the lock is held");
        let tries = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = tries.clone();
        let write = runtime.spawn({
            let db = db.clone();
            async move {
                db.call_in_place(move |conn| {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    insert(conn, "b")
                })
                .await
            }
        });
        // The write waits (it has not failed) until the lock is let go.
        std::thread::sleep(Duration::from_millis(300));
        assert!(!write.is_finished(), "the write waits for the lock");
        release.0.send(()).expect("let go");
        runtime.block_on(write).expect("join").expect("the write lands after the other");
        holder.join().expect("holder");
        assert_eq!(tries.load(std::sync::atomic::Ordering::SeqCst), 2, "tried at once, then waited");
        let keys: i64 =
            db.with_blocking(|c| Ok(c.query_row("SELECT COUNT(*) FROM kv", [], |r| r.get(0))?)).expect("count");
        assert_eq!(keys, 3);
    }

    #[test]
    fn migrations_apply_once_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let db = Database::open(&data).expect("open");
        let version: usize =
            db.with_blocking(|c| Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?)).expect("version");
        assert_eq!(version, MIGRATIONS.len());
        drop(db);
        // Opening again applies nothing and keeps working.
        let db = Database::open(&data).expect("reopen");
        db.with_blocking(|c| Ok(c.pragma_update(None, "user_version", MIGRATIONS.len() + 1)?)).expect("bump");
        drop(db);
        let error = Database::open(&data).expect_err("a newer schema");
        assert!(error.to_string().contains("newer than this host knows"), "{error}");
    }

    #[test]
    fn the_data_dir_is_created_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("a").join("data");
        Database::open(&data).expect("open");
        let mode = std::fs::metadata(&data).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
