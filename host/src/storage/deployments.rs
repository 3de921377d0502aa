//! The SQL of deployments: immutable versions of each component, the live pointer of each (with an optional
//! canary), and the compiled artifacts' checksums.
//!
//! A version is never changed once written: a deploy appends one, a rollback or promote only moves `live`.

use super::{Database, StorageError, now_ms};
use rusqlite::{Connection, OptionalExtension as _, Row, params};

/// One immutable version of a component, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub component: String,
    /// 1, 2, 3... per component.
    pub version: u32,
    /// sha256 of the component's bytes.
    pub hash: String,
    /// sha256 of `config`.
    pub config_hash: String,
    /// JSON of the configuration it was deployed with (see `deployments::VersionConfig`).
    pub config: String,
    /// JSON of the component's function records: its triggers.
    pub functions: String,
    /// Where it came from: a path, or `upload`.
    pub source: String,
    pub deployed_by: String,
    /// ms since the Unix epoch.
    pub deployed_at: i64,
}

/// What is live for one component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveRow {
    pub version: u32,
    /// A canary version and the share of traffic (1..=99 percent) it gets.
    pub canary: Option<(u32, u8)>,
}

/// The deployment tables, behind one connection.
#[derive(Debug, Clone)]
pub struct DeploymentDb {
    db: Database,
}

const VERSION_COLUMNS: &str =
    "component, version, hash, config_hash, config, functions, source, deployed_by, deployed_at";

fn version_row(row: &Row<'_>) -> rusqlite::Result<VersionRow> {
    Ok(VersionRow {
        component: row.get(0)?,
        version: row.get(1)?,
        hash: row.get(2)?,
        config_hash: row.get(3)?,
        config: row.get(4)?,
        functions: row.get(5)?,
        source: row.get(6)?,
        deployed_by: row.get(7)?,
        deployed_at: row.get(8)?,
    })
}

fn live_row(row: &Row<'_>) -> rusqlite::Result<LiveRow> {
    let canary_version: Option<u32> = row.get(1)?;
    let canary_percent: Option<u8> = row.get(2)?;
    Ok(LiveRow { version: row.get(0)?, canary: canary_version.zip(canary_percent) })
}

fn write_live(conn: &Connection, component: &str, live: &LiveRow) -> rusqlite::Result<()> {
    let (canary_version, canary_percent) = live.canary.unzip();
    conn.execute(
        "INSERT INTO live (component, version, canary_version, canary_percent, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (component) DO UPDATE SET version = ?2, canary_version = ?3, canary_percent = ?4, updated_at = ?5",
        params![component, live.version, canary_version, canary_percent, now_ms()],
    )?;
    Ok(())
}

impl DeploymentDb {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The number the next version of `component` gets: one past its highest.
    pub async fn next_version(&self, component: &str) -> Result<u32, StorageError> {
        let component = component.to_owned();
        self.db
            .call(move |conn| {
                let highest: Option<u32> = conn.query_row(
                    "SELECT MAX(version) FROM versions WHERE component = ?1",
                    params![component],
                    |r| r.get(0),
                )?;
                Ok(highest.unwrap_or(0) + 1)
            })
            .await
    }

    /// Records a new version and points the component's live entry at `live`, in one transaction: a version is
    /// either recorded and live, or neither. A version number that exists already is an error.
    pub async fn record_version(&self, row: VersionRow, live: LiveRow) -> Result<(), StorageError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                tx.execute(
                    &format!("INSERT INTO versions ({VERSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                    params![
                        row.component,
                        row.version,
                        row.hash,
                        row.config_hash,
                        row.config,
                        row.functions,
                        row.source,
                        row.deployed_by,
                        row.deployed_at
                    ],
                )?;
                write_live(&tx, &row.component, &live)?;
                tx.commit()?;
                Ok(())
            })
            .await
    }

    /// Every version of every component, oldest first.
    pub async fn all_versions(&self) -> Result<Vec<VersionRow>, StorageError> {
        self.db
            .call(|conn| {
                let mut statement = conn
                    .prepare_cached(&format!("SELECT {VERSION_COLUMNS} FROM versions ORDER BY component, version"))?;
                let rows = statement.query_map([], version_row)?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// Replaces the stored configuration of each `(component, version)` with its new text, all in one transaction
    /// (re-sealing secrets under a new key: every row moves to it, or none).
    pub async fn replace_configs(&self, configs: Vec<(String, u32, String)>) -> Result<(), StorageError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                for (component, version, config) in configs {
                    tx.execute(
                        "UPDATE versions SET config = ?3 WHERE component = ?1 AND version = ?2",
                        params![component, version, config],
                    )?;
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    /// Points `component`'s live entry at `live`.
    pub async fn set_live(&self, component: &str, live: LiveRow) -> Result<(), StorageError> {
        let component = component.to_owned();
        self.db.call(move |conn| Ok(write_live(conn, &component, &live)?)).await
    }

    /// Takes `component` out of the live set (its versions stay).
    pub async fn remove_live(&self, component: &str) -> Result<bool, StorageError> {
        let component = component.to_owned();
        self.db
            .call(move |conn| Ok(conn.execute("DELETE FROM live WHERE component = ?1", params![component])? > 0))
            .await
    }

    /// What is live, by component.
    pub async fn live(&self) -> Result<Vec<(String, LiveRow)>, StorageError> {
        self.db
            .call(|conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT version, canary_version, canary_percent, component FROM live ORDER BY component",
                )?;
                let rows = statement.query_map([], |row| Ok((row.get::<_, String>(3)?, live_row(row)?)))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// One version of `component`.
    pub async fn version(&self, component: &str, version: u32) -> Result<Option<VersionRow>, StorageError> {
        let component = component.to_owned();
        self.db
            .call(move |conn| {
                Ok(conn
                    .query_row(
                        &format!("SELECT {VERSION_COLUMNS} FROM versions WHERE component = ?1 AND version = ?2"),
                        params![component, version],
                        version_row,
                    )
                    .optional()?)
            })
            .await
    }

    /// Every version of `component`, newest first.
    pub async fn versions(&self, component: &str) -> Result<Vec<VersionRow>, StorageError> {
        let component = component.to_owned();
        self.db
            .call(move |conn| {
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT {VERSION_COLUMNS} FROM versions WHERE component = ?1 ORDER BY version DESC"
                ))?;
                let rows = statement.query_map(params![component], version_row)?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// The newest version of every component ever deployed, live or not, by name.
    pub async fn latest_versions(&self) -> Result<Vec<VersionRow>, StorageError> {
        self.db
            .call(|conn| {
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT {VERSION_COLUMNS} FROM versions v WHERE version =
                     (SELECT MAX(version) FROM versions WHERE component = v.component) ORDER BY component"
                ))?;
                let rows = statement.query_map([], version_row)?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// The sha256 of what was compiled for `component_hash` deployed with `config_hash` (the snapshot, or the
    /// component itself), if it was recorded.
    pub async fn compile_input(&self, component_hash: &str, config_hash: &str) -> Result<Option<String>, StorageError> {
        let (component_hash, config_hash) = (component_hash.to_owned(), config_hash.to_owned());
        self.db
            .call(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT input_sha256 FROM compile_inputs WHERE component_hash = ?1 AND config_hash = ?2",
                        params![component_hash, config_hash],
                        |row| row.get(0),
                    )
                    .optional()?)
            })
            .await
    }

    pub async fn record_compile_input(
        &self,
        component_hash: &str,
        config_hash: &str,
        input_sha256: &str,
    ) -> Result<(), StorageError> {
        let values = (component_hash.to_owned(), config_hash.to_owned(), input_sha256.to_owned());
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT OR REPLACE INTO compile_inputs (component_hash, config_hash, input_sha256)
                     VALUES (?1, ?2, ?3)",
                    params![values.0, values.1, values.2],
                )?;
                Ok(())
            })
            .await
    }

    /// The recorded sha256 of the artifact compiled from `input_sha256` by an engine with `engine_hash`.
    pub async fn artifact_sha256(&self, input_sha256: &str, engine_hash: &str) -> Result<Option<String>, StorageError> {
        let (input, engine) = (input_sha256.to_owned(), engine_hash.to_owned());
        self.db
            .call(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT artifact_sha256 FROM compiled_artifacts WHERE input_sha256 = ?1 AND engine_hash = ?2",
                        params![input, engine],
                        |row| row.get(0),
                    )
                    .optional()?)
            })
            .await
    }

    /// Records the checksum of a compiled artifact (replacing an older record for the same key).
    pub async fn record_artifact(
        &self,
        input_sha256: &str,
        engine_hash: &str,
        artifact_sha256: &str,
        size: u64,
    ) -> Result<(), StorageError> {
        let values = (input_sha256.to_owned(), engine_hash.to_owned(), artifact_sha256.to_owned());
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT OR REPLACE INTO compiled_artifacts
                     (input_sha256, engine_hash, artifact_sha256, size, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![values.0, values.1, values.2, i64::try_from(size).unwrap_or(i64::MAX), now_ms()],
                )?;
                Ok(())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(component: &str, version: u32, hash: &str) -> VersionRow {
        VersionRow {
            component: component.into(),
            version,
            hash: hash.into(),
            config_hash: "c".into(),
            config: "{}".into(),
            functions: "[]".into(),
            source: "test".into(),
            deployed_by: "tester".into(),
            deployed_at: 1,
        }
    }

    #[tokio::test]
    async fn versions_are_numbered_per_component_and_live_moves_with_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = DeploymentDb::new(Database::open(dir.path()).expect("db"));
        assert_eq!(db.next_version("a").await.expect("next"), 1);
        db.record_version(row("a", 1, "h1"), LiveRow { version: 1, canary: None }).await.expect("a v1");
        db.record_version(row("b", 1, "h1"), LiveRow { version: 1, canary: None }).await.expect("b v1");
        assert_eq!(db.next_version("a").await.expect("next"), 2);
        db.record_version(row("a", 2, "h2"), LiveRow { version: 1, canary: Some((2, 10)) }).await.expect("a v2");
        assert!(db.record_version(row("a", 2, "h3"), LiveRow { version: 2, canary: None }).await.is_err());
        let live = db.live().await.expect("live");
        assert_eq!(live[0], ("a".to_owned(), LiveRow { version: 1, canary: Some((2, 10)) }));
        assert!(db.remove_live("a").await.expect("remove"));
        assert_eq!(db.live().await.expect("live").len(), 1);
        assert_eq!(db.versions("a").await.expect("versions").len(), 2, "undeploy keeps the versions");
        assert_eq!(db.version("a", 2).await.expect("v2").expect("exists").hash, "h2");
    }
}
