//! Deployed components on disk and in memory.
//!
//! On disk, under the data dir: every deployed `.wasm` stored by its sha256 (`components/<sha256>.wasm`), and its
//! ahead-of-time compiled artifact (`compiled/<sha256>-<engine hash>.cwasm`), written once by rename and recorded
//! with its own sha256 in SQLite. A restarted host verifies and maps existing artifacts and compiles nothing; an
//! artifact that is missing, unrecorded or does not match its checksum is rebuilt, never trusted.
//!
//! In memory: components are loaded (artifact mapped, imports pre-linked) on their first invocation, kept in an
//! LRU bounded by count, and unloaded after an idle timeout. Every invocation learns whether it was
//! [`Start::Cold`] (had to load) or [`Start::Warm`].

use crate::deploy::Deployed;
use crate::runtime::{FunctionEnv, PreparedComponent, Runtime};
use crate::storage::Db;
use anyhow::Context as _;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// Whether an invocation had to load its component first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Cold,
    Warm,
}

impl Start {
    /// `cold` or `warm`, as the request log shows it.
    pub fn label(self) -> &'static str {
        match self {
            Start::Cold => "cold",
            Start::Warm => "warm",
        }
    }
}

struct Loaded {
    name: String,
    prepared: PreparedComponent,
    last_used: Instant,
}

/// A component to install.
#[derive(Debug, Clone, Copy)]
pub struct InstallRequest<'a> {
    pub name: &'a str,
    pub wasm: &'a [u8],
    /// The component's sha256.
    pub hash: &'a str,
    /// The environment its `#[init]` runs with, if it has one.
    pub init_env: Option<&'a FunctionEnv>,
}

/// The components of one host: artifact cache plus the LRU of loaded components.
pub struct Registry {
    runtime: Runtime,
    components_dir: PathBuf,
    compiled_dir: PathBuf,
    /// Loaded components by component sha256.
    loaded: Mutex<HashMap<String, Loaded>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("compiled_dir", &self.compiled_dir).finish_non_exhaustive()
    }
}

impl Registry {
    pub fn new(runtime: Runtime, data_dir: &Path) -> anyhow::Result<Self> {
        let components_dir = data_dir.join("components");
        let compiled_dir = data_dir.join("compiled");
        for dir in [&components_dir, &compiled_dir] {
            std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
        }
        Ok(Self { runtime, components_dir, compiled_dir, loaded: Mutex::new(HashMap::new()) })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Stores `wasm` by its hash and makes sure a verified compiled artifact exists for this engine; checks that
    /// the host can link it. Returns the artifact's path. Blocking: call it off the async threads.
    ///
    /// With `init_env` (every SDK component, unless snapshots are off) the component is snapshotted first: its
    /// `wizer-initialize` (the SDK's start-up and any `#[init]`) runs once, here, and the artifact is compiled from
    /// the snapshot. The artifact stays keyed by the original component's hash, so a restart neither compiles nor
    /// re-runs init.
    pub fn install(&self, db: &Db, component: &InstallRequest<'_>) -> anyhow::Result<PathBuf> {
        let InstallRequest { name, wasm, hash, init_env } = *component;
        let stored = self.components_dir.join(format!("{hash}.wasm"));
        if !stored.is_file() {
            write_atomically(&stored, wasm)?;
        }
        let engine_hash = self.runtime.engine_hash();
        // A snapshot and a plain compile of the same component are different artifacts.
        let key = if init_env.is_some() { format!("{hash}-snapshot") } else { hash.to_owned() };
        let artifact = self.compiled_dir.join(format!("{key}-{engine_hash}.cwasm"));
        let recorded = db.artifact_sha256(&key, engine_hash)?;
        let reusable = match (&recorded, std::fs::read(&artifact)) {
            (Some(expected), Ok(bytes)) if *expected == sha256_hex(&bytes) => true,
            (Some(_), Ok(_)) => {
                tracing::warn!(component = name, artifact = %artifact.display(),
                    "compiled artifact does not match its recorded checksum; rebuilding it");
                false
            }
            (None, Ok(_)) => {
                tracing::warn!(component = name, artifact = %artifact.display(),
                    "compiled artifact has no recorded checksum; rebuilding it");
                false
            }
            (_, Err(_)) => false,
        };
        if reusable {
            tracing::info!(component = name, artifact = %artifact.display(), "reusing compiled artifact, no compile");
        } else {
            let started = Instant::now();
            let snapshot;
            let to_compile = match init_env {
                Some(env) => {
                    let handle = tokio::runtime::Handle::current();
                    snapshot = handle.block_on(self.runtime.snapshot(wasm, env))?;
                    tracing::info!(
                        component = name,
                        duration_ms = started.elapsed().as_millis() as u64,
                        "ran init and took the snapshot"
                    );
                    &snapshot[..]
                }
                None => wasm,
            };
            let bytes = self.runtime.precompile(to_compile)?;
            write_atomically(&artifact, &bytes)?;
            db.record_artifact(&key, engine_hash, &sha256_hex(&bytes), bytes.len() as u64)?;
            tracing::info!(component = name, artifact = %artifact.display(),
                duration_ms = started.elapsed().as_millis() as u64, "compiled component ahead of time");
        }
        // Link it once now so a component whose imports the host cannot satisfy is refused at deploy, not at its
        // first request. It is not kept: components load on demand.
        self.runtime.load(&artifact)?;
        Ok(artifact)
    }

    /// The loaded component, loading it first if needed (a cold start).
    pub fn get(&self, component: &Deployed) -> anyhow::Result<(PreparedComponent, Start)> {
        let limits = self.runtime.limits();
        let mut loaded = self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entry) = loaded.get_mut(&component.inspection.hash) {
            entry.last_used = Instant::now();
            return Ok((entry.prepared.clone(), Start::Warm));
        }
        // Loading maps the artifact and pre-links imports: well under a millisecond, so it is done under the lock,
        // which also keeps two concurrent cold requests from loading the same component twice.
        let started = Instant::now();
        let prepared = self.runtime.load(&component.artifact)?;
        tracing::info!(component = %component.name,
            duration_us = started.elapsed().as_micros() as u64, "loaded component");
        while loaded.len() >= limits.max_loaded {
            let Some(oldest) = loaded.iter().min_by_key(|(_, entry)| entry.last_used).map(|(hash, _)| hash.clone())
            else {
                break;
            };
            if let Some(evicted) = loaded.remove(&oldest) {
                tracing::info!(component = %evicted.name, max_loaded = limits.max_loaded,
                    "unloaded least recently used component");
            }
        }
        let entry = Loaded { name: component.name.clone(), prepared: prepared.clone(), last_used: Instant::now() };
        loaded.insert(component.inspection.hash.clone(), entry);
        Ok((prepared, Start::Cold))
    }

    /// Unloads every component idle for longer than the idle timeout.
    pub fn unload_idle(&self) {
        let idle_timeout = self.runtime.limits().idle_timeout();
        let mut loaded = self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        loaded.retain(|_, entry| {
            let keep = entry.last_used.elapsed() < idle_timeout;
            if !keep {
                tracing::info!(component = %entry.name, idle_timeout_ms = idle_timeout.as_millis() as u64,
                    "unloaded idle component");
            }
            keep
        });
    }

    /// How many components are loaded now.
    pub fn loaded_count(&self) -> usize {
        self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes `path` so that no reader ever sees a partial file: a temp file in the same directory, synced, then
/// renamed over the target.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().context("artifact path has a parent")?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    let mut file = std::fs::File::create(&tmp).with_context(|| format!("failed to create {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("failed to write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("failed to move {} into place", path.display()))?;
    Ok(())
}
