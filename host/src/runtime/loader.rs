//! Loading compiled artifacts on demand: map, verify, pre-link, keep in an LRU bounded by `max_loaded`, and unload
//! what has been idle for `idle_timeout_ms`.

use super::state::InvocationState;
use super::{Abi, Runtime};
use crate::capabilities::bindings;
use anyhow::{Context as _, anyhow};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

/// The sha256 of the file at `path`, read in chunks.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// A compiled artifact on disk, and the sha256 recorded when it was written.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub path: PathBuf,
    pub sha256: String,
    /// The file as it was when its contents were last checked against `sha256` (or written), if they were: while
    /// it is unchanged, loading it needs no second read of the whole file.
    pub checked: Option<FileIdentity>,
}

/// Two artifacts are the same when they name the same file with the same recorded sha256, whoever checked them.
impl PartialEq for Artifact {
    fn eq(&self, other: &Self) -> bool {
        (&self.path, &self.sha256) == (&other.path, &other.sha256)
    }
}

impl Eq for Artifact {}

/// Which file a path held, and its size and modification time: a file renamed over it, rewritten or resized since
/// has another identity. Artifacts are never rewritten in place (a rebuild writes a new file and renames it), so
/// an unchanged identity means unchanged contents; changing them while keeping the identity takes someone who can
/// write to the owner-only data dir and set the time back on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    device: u64,
    inode: u64,
    len: u64,
    modified: std::time::SystemTime,
}

impl FileIdentity {
    pub fn of(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let metadata = std::fs::metadata(path)?;
        Ok(Self { device: metadata.dev(), inode: metadata.ino(), len: metadata.len(), modified: metadata.modified()? })
    }
}

/// A component compiled and linked, ready to be instantiated once per invocation.
#[derive(Clone)]
pub struct PreparedComponent {
    pub(super) http: HttpPre,
    /// The `edgefn:function` handler export, which every SDK component has (a mounted plain component does not).
    pub(super) guest: Option<GuestPre>,
}

/// The `wasi:http` export of a component, by ABI.
#[derive(Clone)]
pub(super) enum HttpPre {
    P2(ProxyPre<InvocationState>),
    P3(ServicePre<InvocationState>),
}

/// The `edgefn:function` handler export of a component, by ABI.
#[derive(Clone)]
pub(super) enum GuestPre {
    P2(bindings::p2::SdkPre<InvocationState>),
    P3(bindings::p3::SdkAsyncPre<InvocationState>),
}

impl PreparedComponent {
    /// The ABI the component speaks.
    pub fn abi(&self) -> Abi {
        match self.http {
            HttpPre::P2(_) => Abi::P2,
            HttpPre::P3(_) => Abi::P3,
        }
    }
}

impl std::fmt::Debug for PreparedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedComponent")
            .field("abi", &self.abi())
            .field("sdk", &self.guest.is_some())
            .finish_non_exhaustive()
    }
}

/// Whether an invocation had to load its component first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The component was not loaded: this invocation mapped and linked it.
    Cold,
    /// The component was already loaded.
    Warm,
}

impl Start {
    pub fn label(self) -> &'static str {
        match self {
            Start::Cold => "cold",
            Start::Warm => "warm",
        }
    }
}

struct Loaded {
    label: String,
    prepared: PreparedComponent,
    last_used: Instant,
}

/// The loaded components, by artifact. See the module docs.
pub struct Loader {
    runtime: Runtime,
    loaded: Mutex<HashMap<PathBuf, Loaded>>,
    /// One lock per artifact being loaded: concurrent cold starts of one component load it once, not once each
    /// (right after a deploy, hundreds of requests may arrive for a component nobody has loaded yet).
    loading: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader").field("loaded", &self.loaded_count()).finish_non_exhaustive()
    }
}

impl Loader {
    pub fn new(runtime: Runtime) -> Arc<Self> {
        Arc::new(Self { runtime, loaded: Mutex::default(), loading: Mutex::default() })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Loaded>> {
        self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Verifies `artifact` against its recorded checksum, maps it and pre-links it, without keeping it. Errors say
    /// which import or export is the problem. Blocking (it reads and hashes the file): off the async threads.
    pub fn load_verified(&self, artifact: &Artifact) -> anyhow::Result<PreparedComponent> {
        // Checked already and untouched since (the usual case: deployments check each artifact when they deploy or
        // restore it): a stat instead of reading and hashing the whole file on every cold start.
        if artifact.checked.is_some() && FileIdentity::of(&artifact.path).ok() == artifact.checked {
            return self.map(&artifact.path);
        }
        let actual = sha256_file(&artifact.path)
            .with_context(|| format!("failed to read compiled artifact {}", artifact.path.display()))?;
        if actual != artifact.sha256 {
            anyhow::bail!(
                "compiled artifact {} does not match its recorded checksum (it changed on disk)",
                artifact.path.display()
            );
        }
        self.map(&artifact.path)
    }

    fn map(&self, path: &Path) -> anyhow::Result<PreparedComponent> {
        // SAFETY: callers pass artifacts that deployments wrote with `Runtime::precompile` for these engines'
        // compatibility hash (it is part of the file name), and that were checked against the sha256 recorded
        // when they were written: just now, or earlier with the file's identity unchanged since (see
        // `FileIdentity`). Artifacts are never rewritten in place: a rebuild writes a new file and renames it over
        // the old one, which leaves existing mappings intact.
        let (abi, component) = unsafe { self.runtime.engines.deserialize(path) }?;
        let instance_pre = self
            .runtime
            .engines
            .backend(abi)
            .linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("the host cannot satisfy its imports ({}): {e:#}", abi.label()))?;
        let (http, guest) = match abi {
            Abi::P2 => {
                let guest = bindings::p2::SdkPre::new(instance_pre.clone()).ok().map(GuestPre::P2);
                let http = ProxyPre::new(instance_pre).map_err(|e| {
                    anyhow!("it is not a wasi:http component (no `wasi:http/incoming-handler@0.2` export): {e:#}")
                })?;
                (HttpPre::P2(http), guest)
            }
            Abi::P3 => {
                let guest = bindings::p3::SdkAsyncPre::new(instance_pre.clone()).ok().map(GuestPre::P3);
                let http = ServicePre::new(instance_pre).map_err(|e| {
                    anyhow!("it is not a wasi:http component (no `wasi:http/handler@0.3` export): {e:#}")
                })?;
                (HttpPre::P3(http), guest)
            }
        };
        Ok(PreparedComponent { http, guest })
    }

    /// The loaded component for `artifact`, loading (and verifying) it first if needed: a cold start. `label`
    /// names it in the logs.
    pub async fn get(self: &Arc<Self>, artifact: &Artifact, label: &str) -> anyhow::Result<(PreparedComponent, Start)> {
        if let Some(prepared) = self.warm(artifact) {
            return Ok((prepared, Start::Warm));
        }
        let gate = self
            .loading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(artifact.path.clone())
            .or_default()
            .clone();
        let _loading = gate.lock().await;
        // Whoever held the gate before may have loaded it meanwhile.
        let result = match self.warm(artifact) {
            Some(prepared) => Ok((prepared, Start::Warm)),
            None => self.load(artifact, label).await,
        };
        self.loading.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&artifact.path);
        result
    }

    fn warm(&self, artifact: &Artifact) -> Option<PreparedComponent> {
        let mut loaded = self.lock();
        let entry = loaded.get_mut(&artifact.path)?;
        entry.last_used = Instant::now();
        Some(entry.prepared.clone())
    }

    async fn load(self: &Arc<Self>, artifact: &Artifact, label: &str) -> anyhow::Result<(PreparedComponent, Start)> {
        let started = Instant::now();
        let (loader, to_load) = (self.clone(), artifact.clone());
        let prepared = tokio::task::spawn_blocking(move || loader.load_verified(&to_load))
            .await
            .map_err(|join| anyhow!("loading the component failed: {join}"))??;
        tracing::info!(component = %label, duration_us = started.elapsed().as_micros() as u64, "loaded component");
        self.insert(artifact, prepared.clone(), label);
        Ok((prepared, Start::Cold))
    }

    /// Keeps `prepared` loaded for `artifact`, evicting the least recently used component past `max_loaded`. A
    /// deploy that replaces a version serving traffic hands its new version over this way, so the switch is not
    /// followed by a cold start.
    pub fn insert(&self, artifact: &Artifact, prepared: PreparedComponent, label: &str) {
        let max_loaded = self.runtime.limits().max_loaded;
        let mut loaded = self.lock();
        while loaded.len() >= max_loaded && !loaded.contains_key(&artifact.path) {
            let Some(oldest) = loaded.iter().min_by_key(|(_, entry)| entry.last_used).map(|(path, _)| path.clone())
            else {
                break;
            };
            if let Some(evicted) = loaded.remove(&oldest) {
                tracing::info!(component = %evicted.label, max_loaded, "unloaded least recently used component");
            }
        }
        let entry = Loaded { label: label.to_owned(), prepared, last_used: Instant::now() };
        loaded.insert(artifact.path.clone(), entry);
    }

    /// Keeps `prepared` loaded for `artifact` if that unloads nothing: the LRU has room, or already holds it. A
    /// deploy links its component anyway (to refuse one whose imports the host cannot satisfy), so keeping it
    /// costs no work, and the function's first request is not a cold start. Returns whether it was kept.
    pub fn insert_if_room(&self, artifact: &Artifact, prepared: PreparedComponent, label: &str) -> bool {
        let max_loaded = self.runtime.limits().max_loaded;
        let mut loaded = self.lock();
        if loaded.len() >= max_loaded && !loaded.contains_key(&artifact.path) {
            return false;
        }
        let entry = Loaded { label: label.to_owned(), prepared, last_used: Instant::now() };
        loaded.insert(artifact.path.clone(), entry);
        true
    }

    /// Unloads `artifact` (a version that is no longer live).
    pub fn unload(&self, artifact: &Artifact) {
        if let Some(entry) = self.lock().remove(&artifact.path) {
            tracing::info!(component = %entry.label, "unloaded component that is no longer live");
        }
    }

    /// Unloads every component idle for longer than the idle timeout.
    pub fn unload_idle(&self) {
        let idle_timeout = self.runtime.limits().idle_timeout();
        self.lock().retain(|_, entry| {
            let keep = entry.last_used.elapsed() < idle_timeout;
            if !keep {
                tracing::info!(component = %entry.label, idle_timeout_ms = idle_timeout.as_millis() as u64,
                    "unloaded idle component");
            }
            keep
        });
    }

    /// How many components are loaded now.
    pub fn loaded_count(&self) -> usize {
        self.lock().len()
    }
}
