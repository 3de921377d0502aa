//! Live deployments: deploy, version, roll back, promote a canary and undeploy on a running host.
//!
//! A deploy validates the component (a component, a readable manifest, routes and queues no other live component
//! claims, settings within the host's maximums), resolves its configuration ([`VersionConfig`]), takes its
//! snapshot and compiles it ahead of time ([`Artifacts`], cached), records it as an immutable numbered version in
//! SQLite and makes it live. Making something live builds a new [`LiveSet`] and swaps it in atomically: HTTP
//! requests and invokes in flight finish on the version they started on, new ones get the new version. Then every
//! trigger drains the component (cron schedules fire no more ticks, consumers lease no more messages, what they
//! hold finishes) and starts it again from the new set.
//!
//! A deploy that fails at any step leaves what was live as it was. Changes to what is live are serialized; the
//! expensive part of a deploy (snapshot, compile) runs before, so deploys of different components compile in
//! parallel.

mod api;
mod artifacts;
mod cluster;
mod plan;
mod switch;
pub mod version_config;

pub use api::{DeployError, DeployOutcome, DeployRequest, SwitchOutcome, VersionInfo};
pub use artifacts::Installed;
pub use version_config::VersionConfig;

use crate::assets::AssetStore;
use crate::assets::bundle::BundleLimits;
use crate::auth::{Authorizers, RouteTokens};
use crate::component;
use crate::config::{ComponentConfig, HostConfig};
use crate::live::{Canary, ComponentVersion, LiveComponent, LiveHandle, LiveSet, VersionParts};
use crate::runtime::{Artifact, Loader, PreparedComponent};
use crate::storage::backends::jetstream::JetStreamDeployments;
use crate::storage::deployments::{DeploymentDb, LiveRow, VersionRow};
use crate::storage::now_ms;
use crate::storage::sealing::SecretsKey;
use crate::storage::telemetry::Level;
use crate::triggers::Trigger;
use artifacts::Artifacts;
use edgefn_manifest::record::{FunctionRecord, HOST_AUTH_ENV, Trigger as TriggerKind};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// A deploy checked and compiled, ready to be made live.
#[derive(Debug)]
pub struct PreparedDeploy {
    name: String,
    hash: String,
    config: VersionConfig,
    functions: Vec<FunctionRecord>,
    installed: Installed,
    source: String,
    deployed_by: String,
    canary_percent: Option<u8>,
    /// The component, linked to check that the host can run it.
    linked: PreparedComponent,
    prepared_at: Instant,
}

/// See the module docs.
pub struct Deployments {
    config: HostConfig,
    /// Seals the secrets of every version stored (`storage::sealing`).
    secrets_key: SecretsKey,
    /// The static files of every version, by bundle.
    assets: AssetStore,
    artifacts: Artifacts,
    db: DeploymentDb,
    loader: Arc<Loader>,
    live: LiveHandle,
    triggers: Vec<Arc<dyn Trigger>>,
    /// What protected routes may name, and the tokens that tell their components a request was verified.
    authorizers: Arc<Authorizers>,
    route_tokens: RouteTokens,
    /// Held while what is live changes: one change at a time.
    switching: tokio::sync::Mutex<()>,
    /// On a cluster: where what is live is shared (see `cluster`).
    cluster: Option<Arc<JetStreamDeployments>>,
    /// On a cluster: changes made here that the cluster has not heard of yet, tried again until it has.
    unshared: cluster::Unshared,
}

impl std::fmt::Debug for Deployments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployments").field("live", &self.live.load().components().count()).finish_non_exhaustive()
    }
}

/// Milliseconds since `since`, to the microsecond: a switch takes well under one.
fn elapsed_ms(since: Instant) -> f64 {
    since.elapsed().as_micros() as f64 / 1000.0
}

/// Checks a component name.
pub fn validate_name(name: &str) -> Result<(), DeployError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid { Ok(()) } else { Err(DeployError::InvalidName(name.to_owned())) }
}

impl Deployments {
    pub fn new(
        config: HostConfig,
        db: DeploymentDb,
        loader: Arc<Loader>,
        live: LiveHandle,
        triggers: Vec<Arc<dyn Trigger>>,
        authorizers: Arc<Authorizers>,
        data_dir: &Path,
    ) -> anyhow::Result<Self> {
        let artifacts = Artifacts::new(loader.runtime().clone(), db.clone(), data_dir)?;
        let route_tokens = RouteTokens::load_or_create(data_dir)?;
        let secrets_key = SecretsKey::load_or_create(data_dir)?;
        let assets = AssetStore::new(data_dir)?;
        Ok(Self {
            config,
            secrets_key,
            assets,
            artifacts,
            db,
            loader,
            live,
            triggers,
            authorizers,
            route_tokens,
            switching: tokio::sync::Mutex::new(()),
            cluster: None,
            unshared: cluster::Unshared::default(),
        })
    }

    /// Shares every change with a cluster and follows its changes ([`Deployments::follow_cluster`]).
    pub fn with_cluster(mut self, cluster: Option<Arc<JetStreamDeployments>>) -> Self {
        self.cluster = cluster;
        self
    }

    /// What is live now.
    pub fn live(&self) -> Arc<LiveSet> {
        self.live.load()
    }

    /// Brings back what was live when the host last ran, from SQLite, reusing the compiled artifacts (the log
    /// says so), and starts the triggers. A component that cannot be brought back is reported and left out; it
    /// stays recorded as live, so a host that can load it again restores it.
    pub async fn restore(&self) -> Result<Vec<DeployError>, DeployError> {
        let _switching = self.switching.lock().await;
        let mut set = LiveSet::default();
        let mut failed = Vec::new();
        for (name, live) in self.db.live().await? {
            // One at a time: a component that cannot come back (its artifact cannot be rebuilt, or it conflicts
            // with one restored before it, say after an upgrade reserved another route) is left out alone.
            let restored = match self.live_component(&name, live).await {
                Ok(component) => set.with(component).map_err(DeployError::from),
                Err(error) => Err(error),
            };
            match restored {
                Ok(with) => {
                    tracing::info!(component = %name, version = live.version, canary = ?live.canary,
                        "restored what was live");
                    set = with;
                }
                Err(error) => {
                    tracing::error!(component = %name, %error, "could not restore a live component");
                    failed.push(error);
                }
            }
        }
        self.live.store(set);
        let live = self.live.load();
        let names: Vec<String> = live.components().map(|c| c.name().to_owned()).collect();
        for name in names {
            for trigger in &self.triggers {
                trigger.start(&name, &live);
            }
        }
        Ok(failed)
    }

    /// Loads version `live` of `name` (and its canary) from the database, its artifact verified or rebuilt.
    async fn live_component(&self, name: &str, live: LiveRow) -> Result<LiveComponent, DeployError> {
        let active = Arc::new(self.load_version(name, live.version).await?);
        let canary = match live.canary {
            Some((version, percent)) => match self.load_version(name, version).await {
                Ok(canary) => Some(Canary { version: Arc::new(canary), percent }),
                // The live version still serves; the canary is what cannot come back.
                Err(error) => {
                    tracing::error!(component = %name, version, %error, "could not restore the canary; serving without it");
                    None
                }
            },
            None => None,
        };
        Ok(LiveComponent::new(active, canary))
    }

    /// Version `version` of `component` (its live version when `None`), ready to run: the live one as it is, a
    /// stored one loaded (from its cached artifact: nothing compiles unless the cache lost it).
    pub async fn find_version(
        &self,
        component: &str,
        version: Option<u32>,
    ) -> Result<Arc<ComponentVersion>, DeployError> {
        let live = self.live.load();
        let live = live.component(component);
        let found = match version {
            None => Some(live.ok_or_else(|| DeployError::NotLive(component.to_owned()))?.active.clone()),
            Some(wanted) => live.and_then(|l| l.versions().find(|v| v.version == wanted).cloned()),
        };
        match (found, version) {
            (Some(found), _) => Ok(found),
            (None, Some(wanted)) => Ok(Arc::new(self.load_version(component, wanted).await?)),
            (None, None) => Err(DeployError::NotLive(component.to_owned())),
        }
    }

    /// Version `version` of `component` loaded from its kept artifact, whether or not it is live.
    pub async fn stored_version(&self, component: &str, version: u32) -> Result<Arc<ComponentVersion>, DeployError> {
        self.find_version(component, Some(version)).await
    }

    /// Logs a change of what is live in the host's log store, where `edgefn logs COMPONENT` finds it.
    fn event(&self, component: &str, version: Option<u32>, message: String) {
        self.loader.runtime().telemetry().component_event(Level::Info, component, version, message);
    }

    /// A stored version, ready to run.
    async fn load_version(&self, name: &str, version: u32) -> Result<ComponentVersion, DeployError> {
        let row = self
            .db
            .version(name, version)
            .await?
            .ok_or_else(|| DeployError::NoSuchVersion { component: name.to_owned(), version })?;
        let restore_error = |reason: String| DeployError::Restore { component: name.to_owned(), version, reason };
        let config = VersionConfig::from_stored_json(&row.config, &self.secrets_key).map_err(restore_error)?;
        let functions: Vec<FunctionRecord> = serde_json::from_str(&row.functions)
            .map_err(|e| restore_error(format!("its triggers are unreadable: {e}")))?;
        let installed = self.artifacts.ensure(&format!("{name} v{version}"), &row.hash, &config, None).await?;
        self.version(name, version, &row.hash, config, functions, installed.artifact)
    }

    fn version(
        &self,
        name: &str,
        version: u32,
        hash: &str,
        config: VersionConfig,
        functions: Vec<FunctionRecord>,
        artifact: Artifact,
    ) -> Result<ComponentVersion, DeployError> {
        let (limits, default_limits) = config.limits(name, &functions, self.loader.runtime().limits())?;
        let assets = match config.assets.as_ref() {
            Some(settings) => {
                let bundle = settings.bundle.as_deref().unwrap_or_default();
                Some(Arc::new(self.assets.site(bundle, settings).map_err(DeployError::Assets)?))
            }
            None => None,
        };
        let cors = config.cors(name, &functions)?;
        let rate_limits = config.rate_limits(name, &functions)?;
        let host_auth_token =
            plan::check_authorizers(&self.authorizers, name, &functions)?.then(|| self.route_tokens.token_for(name));
        let mut env = config.function_env();
        if let Some(token) = &host_auth_token {
            // A secret like any other: masked if the function ever prints it.
            env.env.push((HOST_AUTH_ENV.to_owned(), token.clone()));
            Arc::make_mut(&mut env.secrets).push((HOST_AUTH_ENV.to_owned(), token.clone()));
        }
        Ok(ComponentVersion::new(VersionParts {
            component: name.to_owned(),
            version,
            hash: hash.to_owned(),
            config_hash: config.hash(),
            artifact,
            functions,
            env,
            mount: config.mount.clone(),
            host_auth_token,
            limits,
            default_limits,
            cors,
            rate_limits,
            assets,
        }))
    }

    /// Stores the static files a deploy of `name` brings (the bundle it carries, or the folder the host config
    /// names) and records their bundle in `overrides`, so that the version, and every node of a cluster, serves
    /// exactly them. A deploy that names a bundle (a cluster's, a redeploy) needs it here or carried along.
    async fn take_assets(
        &self,
        name: &str,
        overrides: &mut ComponentConfig,
        carried: Option<Vec<u8>>,
    ) -> Result<(), DeployError> {
        let named = overrides.assets.as_ref().and_then(|assets| assets.bundle.clone());
        let bundle = match carried {
            Some(bytes) => bytes,
            None => match &named {
                Some(sha) if self.assets.has(sha) => return Ok(()),
                Some(sha) => {
                    return Err(DeployError::Assets(format!(
                        "bundle {sha} is not on this node, and the deploy did not carry it"
                    )));
                }
                None => {
                    let host_dir = self.config.component(name).and_then(|c| c.assets.as_ref()?.dir.clone());
                    let Some(dir) = host_dir else { return Ok(()) };
                    tokio::task::spawn_blocking(move || crate::assets::bundle::pack(&dir))
                        .await
                        .map_err(|join| DeployError::Io(join.to_string()))?
                        .map_err(|error| DeployError::Assets(format!("{error:#}")))?
                }
            },
        };
        let deploys = &self.config.limits.deploys;
        let limits = BundleLimits { max_bytes: deploys.max_assets_mb << 20, max_files: deploys.max_asset_files };
        let store = self.assets.clone();
        let sha = tokio::task::spawn_blocking(move || store.install(&bundle, limits))
            .await
            .map_err(|join| DeployError::Io(join.to_string()))?
            .map_err(DeployError::Assets)?;
        if named.as_ref().is_some_and(|named| *named != sha) {
            return Err(DeployError::Assets(format!("the files carried are bundle {sha}, not the one named")));
        }
        let settings = overrides.assets.get_or_insert_with(Default::default);
        (settings.bundle, settings.dir) = (Some(sha), None);
        Ok(())
    }

    /// Deploys: [`Deployments::prepare`], then [`Deployments::apply`].
    pub async fn deploy(&self, request: DeployRequest) -> Result<DeployOutcome, DeployError> {
        validate_name(&request.name)?;
        let revision = self.cluster_revision(&request.name).await?;
        let outcome = self.deploy_here(request).await?;
        self.share_live(&outcome.component, revision).await;
        Ok(outcome)
    }

    /// [`Deployments::deploy`] on this node alone.
    async fn deploy_here(&self, request: DeployRequest) -> Result<DeployOutcome, DeployError> {
        let prepared = self.prepare(request).await?;
        self.apply_here(prepared).await
    }

    /// Everything a deploy does before it changes what is live: validate, resolve the configuration, check for
    /// conflicts with what is live, snapshot and compile (or reuse the cached artifact), and check that the host
    /// can link it. Several run in parallel.
    pub async fn prepare(&self, request: DeployRequest) -> Result<PreparedDeploy, DeployError> {
        let DeployRequest { name, wasm, source, deployed_by, mut overrides, mount, canary_percent, assets } = request;
        validate_name(&name)?;
        self.take_assets(&name, &mut overrides, assets).await?;
        if let Some(percent) = canary_percent
            && !(1..=99).contains(&percent)
        {
            return Err(DeployError::CanaryPercent(percent));
        }
        // Parsing and hashing a component of megabytes is CPU work: not on the threads that answer requests.
        let (inspection, wasm) = tokio::task::spawn_blocking(move || (component::inspect(&wasm), wasm))
            .await
            .map_err(|join| DeployError::Io(join.to_string()))?;
        let inspection = inspection.map_err(|e| DeployError::NotAComponent(format!("{e:#}")))?;
        let functions = match &mount {
            Some(mount) => {
                let pattern = edgefn_manifest::route::RoutePattern::parse(&mount.route)
                    .map_err(|e| DeployError::InvalidMount { route: mount.route.clone(), reason: e.to_string() })?;
                if matches!(pattern.segments().last(), Some(edgefn_manifest::route::Segment::CatchAll(_))) {
                    return Err(DeployError::InvalidMount {
                        route: mount.route.clone(),
                        reason: "a mount is a prefix; it takes every path below it already".into(),
                    });
                }
                // A mounted component answers its route and everything below it, for any method.
                let route =
                    if mount.route == "/" { "/{*path}".to_owned() } else { format!("{}/{{*path}}", mount.route) };
                let trigger = TriggerKind::Http { route, method: "*".into(), auth: None };
                vec![FunctionRecord { name: name.clone(), trigger }]
            }
            None if inspection.functions.is_empty() => return Err(DeployError::NoManifest),
            None => inspection.functions,
        };
        let config = VersionConfig::resolve(&name, &self.config, &overrides, mount)?;
        // Refuse early what cannot be live next to the rest, before paying for a compile (checked again when it
        // is made live: another deploy may have changed the set meanwhile).
        let placeholder = Artifact { path: Default::default(), sha256: String::new(), checked: None };
        let candidate =
            Arc::new(self.version(&name, 0, &inspection.hash, config.clone(), functions.clone(), placeholder)?);
        plan::candidate_set(&self.live.load(), candidate.clone(), canary_percent)?;
        let installed = self.artifacts.ensure(&name, &inspection.hash, &config, Some(&wasm)).await?;
        // Link it once now so a component whose imports the host cannot satisfy is refused at deploy, not at its
        // first request. Once live it is kept loaded if that unloads nothing (see below), never beyond
        // `max_loaded`: a thousand deploys must not fill memory.
        let (loader, artifact) = (self.loader.clone(), installed.artifact.clone());
        let linked = tokio::task::spawn_blocking(move || loader.load_verified(&artifact))
            .await
            .map_err(|join| DeployError::Io(join.to_string()))?
            .map_err(|e| DeployError::Link(format!("{e:#}")))?;
        if linked.abi() == crate::runtime::Abi::P2
            && let Some(function) = functions.iter().find(|f| candidate.limits(&f.name).reuse.is_some())
        {
            return Err(DeployError::Settings(format!(
                "function `{name}/{}` asks for instance reuse, which needs a WASI 0.3 component: build it with the \
                 SDK's `wasip3` feature, or drop `reuse`",
                function.name
            )));
        }
        Ok(PreparedDeploy {
            name,
            hash: inspection.hash,
            config,
            functions,
            installed,
            source,
            deployed_by,
            canary_percent,
            linked,
            prepared_at: Instant::now(),
        })
    }

    /// Makes a prepared deploy live: numbers and records the version, swaps the live set, switches the triggers.
    /// On a cluster, every node follows.
    pub async fn apply(&self, prepared: PreparedDeploy) -> Result<DeployOutcome, DeployError> {
        let revision = self.cluster_revision(&prepared.name).await?;
        let outcome = self.apply_here(prepared).await?;
        self.share_live(&outcome.component, revision).await;
        Ok(outcome)
    }

    /// [`Deployments::apply`] on this node alone.
    async fn apply_here(&self, prepared: PreparedDeploy) -> Result<DeployOutcome, DeployError> {
        let _switching = self.switching.lock().await;
        let PreparedDeploy {
            name,
            hash,
            config,
            functions,
            installed,
            source,
            deployed_by,
            canary_percent,
            linked,
            prepared_at,
        } = prepared;
        let config_hash = config.hash();
        // The latest version has this very component and configuration: make it live, record nothing new. Read
        // under the switching lock: two deploys of the same bytes prepared side by side (a node's own at start and
        // the cluster's it follows) make one version, and the second switches nothing.
        let unchanged = match self.db.versions(&name).await?.first() {
            Some(latest) if latest.hash == hash && latest.config_hash == config_hash => Some(latest.version),
            _ => None,
        };
        let number = match unchanged {
            Some(version) => version,
            None => self.db.next_version(&name).await?,
        };
        let config_json = config.to_stored_json(&self.secrets_key);
        let version =
            Arc::new(self.version(&name, number, &hash, config, functions.clone(), installed.artifact.clone())?);
        let current = self.live.load();
        let (set, live_row) = plan::candidate_set(&current, version, canary_percent)?;
        let already_live =
            unchanged.is_some() && current.component(&name).map(|c| Self::live_row_of(c)) == Some(live_row);
        match unchanged {
            Some(_) if already_live => {}
            Some(_) => self.db.set_live(&name, live_row).await?,
            None => {
                let row = VersionRow {
                    component: name.clone(),
                    version: number,
                    hash: hash.clone(),
                    config_hash: config_hash.clone(),
                    config: config_json,
                    functions: serde_json::to_string(&functions).unwrap_or_default(),
                    source,
                    deployed_by,
                    deployed_at: now_ms(),
                };
                self.db.record_version(row, live_row).await?;
            }
        }
        if !already_live {
            // A version that takes over traffic is loaded before it gets any: no cold start right after the
            // switch. A new component is kept loaded too while that unloads nothing else (the loader has room):
            // its first request is then no cold start either. Past `max_loaded` it loads on demand.
            let label = format!("{name} v{number}");
            if current.component(&name).is_some() {
                self.loader.insert(&installed.artifact, linked, &label);
            } else if self.loader.insert_if_room(&installed.artifact, linked, &label) {
                self.event(
                    &name,
                    Some(number),
                    format!("loaded v{number} at deploy: its first request is no cold start"),
                );
            }
            self.switch(&name, &current, set).await;
        }
        let outcome = DeployOutcome {
            component: name,
            version: number,
            hash,
            config_hash,
            unchanged: unchanged.is_some(),
            canary_percent: live_row.canary.map(|(_, percent)| percent),
            compiled: installed.compiled,
            compile_ms: installed.compile_ms,
            switch_ms: elapsed_ms(prepared_at),
            functions,
        };
        tracing::info!(component = %outcome.component, version = outcome.version, unchanged = outcome.unchanged,
            canary = ?outcome.canary_percent, compiled = outcome.compiled, compile_ms = outcome.compile_ms,
            switch_ms = outcome.switch_ms, "deployed");
        let canary = outcome.canary_percent.map(|p| format!(" as a {p}% canary")).unwrap_or_default();
        let how = if outcome.compiled { format!("compiled in {} ms", outcome.compile_ms) } else { "cached".to_owned() };
        self.event(&outcome.component, Some(outcome.version), format!("deployed v{}{canary} ({how})", outcome.version));
        Ok(outcome)
    }

    /// Every version of `component`, newest first, with which is live.
    pub async fn versions(&self, component: &str) -> Result<Vec<VersionInfo>, DeployError> {
        let rows = self.db.versions(component).await?;
        if rows.is_empty() {
            return Err(DeployError::UnknownComponent(component.to_owned()));
        }
        let live = self.live.load().component(component).map(|c| Self::live_row_of(c));
        Ok(rows
            .into_iter()
            .map(|row| {
                let (status, canary_percent) = match live {
                    Some(live) if live.version == row.version => ("live", None),
                    Some(LiveRow { canary: Some((version, percent)), .. }) if version == row.version => {
                        ("canary", Some(percent))
                    }
                    _ => ("", None),
                };
                VersionInfo {
                    version: row.version,
                    status: status.to_owned(),
                    canary_percent,
                    config: VersionConfig::from_json(&row.config).map(|c| c.redacted()).unwrap_or_default(),
                    functions: serde_json::from_str(&row.functions).unwrap_or_default(),
                    hash: row.hash,
                    config_hash: row.config_hash,
                    deployed_at: row.deployed_at,
                    deployed_by: row.deployed_by,
                    source: row.source,
                }
            })
            .collect())
    }
}

/// Workflow runs stay on the version they started on: the deployments load it for them once it is no longer live.
/// Every version's artifact is kept (nothing deletes a version), so a run's version is always there to load.
#[derive(Debug, Clone)]
pub struct WorkflowVersions(pub Arc<Deployments>);

impl crate::triggers::workflow::StoredVersions for WorkflowVersions {
    fn load(
        &self,
        component: &str,
        version: u32,
    ) -> crate::capabilities::BoxFuture<'static, Result<Arc<ComponentVersion>, String>> {
        let (deployments, component) = (self.0.clone(), component.to_owned());
        Box::pin(async move { deployments.stored_version(&component, version).await.map_err(|e| e.to_string()) })
    }
}
