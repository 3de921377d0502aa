//! The artifact cache: components stored by hash, snapshots taken, compiled ahead of time, written once, verified.
//!
//! - A component's bytes go to `<data>/components/<sha256>.wasm`.
//! - With snapshots on, its init runs once ([`Runtime::snapshot`]) with the version's configuration; what is then
//!   compiled is the snapshot. The pair (component hash, config hash) is recorded with the sha256 of what was
//!   compiled, so a rollback or a restart finds its artifact without running init again.
//! - Artifacts are content-addressed by what wasmtime compiles: `<data>/compiled/<input sha256>-<engine>.cwasm`.
//!   The same bytes deployed under another name or version are not compiled again. Each file is written under a
//!   temporary name and renamed, and its own sha256 is recorded: a corrupt or half-written artifact is rebuilt,
//!   never trusted.

use super::DeployError;
use super::version_config::VersionConfig;
use crate::runtime::{Artifact, FileIdentity, Runtime, background};
use crate::storage::deployments::DeploymentDb;
use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The artifact of a version, and whether getting it took a compile.
#[derive(Debug, Clone)]
pub struct Installed {
    pub artifact: Artifact,
    /// Something was compiled (or init run) for it, as opposed to reusing a verified artifact.
    pub compiled: bool,
    /// Time spent snapshotting and compiling.
    pub compile_ms: u64,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Artifacts {
    runtime: Runtime,
    db: DeploymentDb,
    components_dir: PathBuf,
    compiled_dir: PathBuf,
}

impl Artifacts {
    pub(crate) fn new(runtime: Runtime, db: DeploymentDb, data_dir: &Path) -> anyhow::Result<Self> {
        let components_dir = data_dir.join("components");
        let compiled_dir = data_dir.join("compiled");
        for dir in [&components_dir, &compiled_dir] {
            std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
        }
        Ok(Self { runtime, db, components_dir, compiled_dir })
    }

    /// Where the component with sha256 `hash` is stored.
    pub(crate) fn stored_component(&self, hash: &str) -> PathBuf {
        self.components_dir.join(format!("{hash}.wasm"))
    }

    fn artifact_path(&self, input_sha256: &str) -> PathBuf {
        self.compiled_dir.join(format!("{input_sha256}-{}.cwasm", self.runtime.engine_hash()))
    }

    /// Makes sure a verified artifact exists for component `hash` deployed with `config`, and returns it. `wasm`
    /// is the component when the caller has it; otherwise (a restart, a rollback) it is read from the store if a
    /// rebuild turns out to be needed. `label` names the component in logs.
    pub(crate) async fn ensure(
        &self,
        label: &str,
        hash: &str,
        config: &VersionConfig,
        wasm: Option<&[u8]>,
    ) -> Result<Installed, DeployError> {
        let stored = self.stored_component(hash);
        if let Some(wasm) = wasm
            && !stored.is_file()
        {
            let (path, bytes) = (stored.clone(), wasm.to_vec());
            blocking(move || write_atomically(&path, &bytes)).await?;
        }
        let config_hash = config.hash();
        // What gets compiled: the component itself, or its snapshot under this configuration.
        let known_input =
            if config.snapshot { self.db.compile_input(hash, &config_hash).await? } else { Some(hash.to_owned()) };
        if let Some(input) = &known_input
            && let Some(artifact) = self.verified(label, input).await?
        {
            tracing::info!(component = label, artifact = %artifact.path.display(), "reusing compiled artifact, no compile");
            return Ok(Installed { artifact, compiled: false, compile_ms: 0 });
        }
        let started = Instant::now();
        let wasm = match wasm {
            Some(wasm) => wasm.to_vec(),
            None => {
                let path = stored.clone();
                blocking(move || std::fs::read(&path).with_context(|| format!("failed to read {}", path.display())))
                    .await?
            }
        };
        let input = if config.snapshot {
            let env = config.init_env();
            let memory_bytes =
                usize::try_from(config.settings.memory_mb.unwrap_or(self.runtime.limits().memory_mb) << 20)
                    .unwrap_or(usize::MAX);
            let runtime = self.runtime.clone();
            // Snapshotting compiles the component and runs init: CPU-heavy, so it runs at the deploy priority on a
            // thread of its own (driving its future with a runtime handle), never on the threads that answer
            // requests.
            let handle = tokio::runtime::Handle::current();
            let snapshot = background::run(move || handle.block_on(runtime.snapshot(&wasm, &env, memory_bytes)))
                .await
                .map_err(|e| DeployError::Init(format!("{e:#}")))?;
            tracing::info!(
                component = label,
                duration_ms = started.elapsed().as_millis() as u64,
                "ran init and took the snapshot"
            );
            snapshot
        } else {
            wasm
        };
        let input_sha256 = sha256_hex(&input);
        if config.snapshot {
            self.db.record_compile_input(hash, &config_hash, &input_sha256).await?;
        }
        let (artifact, compiled) = match self.verified(label, &input_sha256).await? {
            // The same bytes were compiled for another name or version: content addressing spares the compile.
            Some(artifact) => {
                tracing::info!(component = label, artifact = %artifact.path.display(),
                    "reusing the artifact compiled for identical code, no compile");
                (artifact, false)
            }
            None => (self.compile(label, &input_sha256, input).await?, true),
        };
        let compile_ms = started.elapsed().as_millis() as u64;
        Ok(Installed { artifact, compiled: compiled || config.snapshot, compile_ms })
    }

    /// The artifact compiled from `input_sha256`, if it exists and matches its recorded checksum.
    async fn verified(&self, label: &str, input_sha256: &str) -> Result<Option<Artifact>, DeployError> {
        let path = self.artifact_path(input_sha256);
        let recorded = self.db.artifact_sha256(input_sha256, self.runtime.engine_hash()).await?;
        let file = path.clone();
        let actual = blocking(move || {
            // The identity is kept only if the file stayed the same while it was read.
            let before = FileIdentity::of(&file).ok();
            let sha256 = std::fs::read(&file).ok().map(|bytes| sha256_hex(&bytes));
            let checked = before.filter(|before| FileIdentity::of(&file).ok().as_ref() == Some(before));
            Ok(sha256.map(|sha256| (sha256, checked)))
        })
        .await?;
        Ok(match (recorded, actual) {
            (Some(expected), Some((actual, checked))) if expected == actual => {
                Some(Artifact { path, sha256: actual, checked })
            }
            (Some(_), Some(_)) => {
                tracing::warn!(component = label, artifact = %path.display(),
                    "compiled artifact does not match its recorded checksum; rebuilding it");
                None
            }
            (None, Some(_)) => {
                tracing::warn!(component = label, artifact = %path.display(),
                    "compiled artifact has no recorded checksum; rebuilding it");
                None
            }
            (_, None) => None,
        })
    }

    /// Compiles `input` ahead of time (on the blocking pool), writes the artifact and records its checksum.
    async fn compile(&self, label: &str, input_sha256: &str, input: Vec<u8>) -> Result<Artifact, DeployError> {
        let started = Instant::now();
        let path = self.artifact_path(input_sha256);
        let (runtime, file) = (self.runtime.clone(), path.clone());
        // At the deploy priority: see runtime/background.rs.
        let (sha256, size) = background::run(move || -> anyhow::Result<(String, u64)> {
            let bytes = runtime.precompile(&input)?;
            write_atomically(&file, &bytes)?;
            Ok((sha256_hex(&bytes), bytes.len() as u64))
        })
        .await
        .map_err(|e| deploy_error(e, DeployError::Compile))?;
        self.db.record_artifact(input_sha256, self.runtime.engine_hash(), &sha256, size).await?;
        tracing::info!(component = label, artifact = %path.display(),
            duration_ms = started.elapsed().as_millis() as u64, "compiled component ahead of time");
        let checked = FileIdentity::of(&path).ok();
        Ok(Artifact { path, sha256, checked })
    }
}

/// Runs blocking file or compile work on the blocking pool.
async fn blocking<R: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<R> + Send + 'static,
) -> Result<R, DeployError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| DeployError::Io(format!("a blocking task failed: {join}")))?
        .map_err(|e| deploy_error(e, DeployError::Io))
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes `path` so that no reader ever sees a partial file: a temp file in the same directory, synced, then
/// renamed over the target. A failed write removes its temp file (a full disk must not stay fuller for having
/// been tried); one for want of space is a [`DiskFullAt`] naming the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().context("artifact path has a parent")?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    let Err(error) = written else { return Ok(()) };
    let _ = std::fs::remove_file(&tmp);
    if error.kind() == std::io::ErrorKind::StorageFull {
        return Err(DiskFullAt(dir.to_owned()).into());
    }
    Err(anyhow::Error::new(error).context(format!("failed to write {}", path.display())))
}

/// A deploy's file could not be written: the disk holding this directory is full.
#[derive(Debug, thiserror::Error)]
#[error("the disk holding {} is full", .0.display())]
pub(crate) struct DiskFullAt(pub(crate) std::path::PathBuf);

/// `error` as a [`DeployError`]: [`DeployError::DiskFull`] when a file could not be written for want of space,
/// else what `otherwise` makes of its text.
fn deploy_error(error: anyhow::Error, otherwise: fn(String) -> DeployError) -> DeployError {
    match error.chain().find_map(|cause| cause.downcast_ref::<DiskFullAt>()) {
        Some(DiskFullAt(path)) => DeployError::DiskFull { path: path.clone() },
        None => otherwise(format!("{error:#}")),
    }
}
