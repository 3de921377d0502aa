//! Deployments across a cluster: a deploy, rollback, promote or undeploy on any node reaches every node.
//!
//! The node where a change is made applies it, then shares the result (`storage::backends::jetstream::
//! deployments`): the component's bytes in the object store, and what is live of it (active and canary, by
//! sha256) in the `edgefn_live` bucket. Every node watches that bucket, from the current value of each key on, and
//! converges: a component whose bytes it has as one of its versions becomes live by a rollback to that version
//! (nothing compiles); other bytes are fetched, checked against their hash and deployed (compiled, or the cached
//! artifact reused). A node that joins later catches up the same way.
//!
//! Version numbers are each node's own (its SQLite history); what is live is the same everywhere, by content.
//! Each node resolves the configuration against its own host config, with the deploy's overrides on top.

use super::{DeployError, DeployRequest, Deployments, VersionConfig};
use crate::config::ComponentConfig;
use crate::live::{ComponentVersion, LiveComponent, Mount};
use crate::storage::StorageError;
use crate::storage::backends::jetstream::deployments::{LiveEntry, LiveVersion};
use crate::storage::deployments::VersionRow;
use futures_util::StreamExt as _;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a change waits for the cluster's server to say what it records before the change is refused.
const CLUSTER_ANSWER: Duration = Duration::from_secs(5);

/// How often a change the cluster has not heard of is shared again.
const SHARE_AGAIN_EVERY: Duration = Duration::from_secs(2);

/// Changes made on this node that could not be shared (the server died or stalled between the change and its
/// share), by component: the record's revision the change expects to replace, and what was live here after it.
#[derive(Debug, Default)]
pub(super) struct Unshared(std::sync::Mutex<HashMap<String, UnsharedChange>>);

/// The record's revision a change expects to replace, and what was live here after it.
type UnsharedChange = (u64, Option<Arc<LiveComponent>>);

impl Unshared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, UnsharedChange>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Deployments {
    /// Before a change made on this node: on a cluster, the revision of `component`'s shared record, which the
    /// share afterwards expects to replace. When the cluster's server does not answer, the change is refused
    /// before anything changes here: a node must not serve what the others will never hear of.
    pub(super) async fn cluster_revision(&self, component: &str) -> Result<Option<u64>, DeployError> {
        let Some(cluster) = &self.cluster else { return Ok(None) };
        match tokio::time::timeout(CLUSTER_ANSWER, cluster.live_revision(component)).await {
            Ok(revision) => Ok(Some(revision?)),
            Err(_elapsed) => Err(DeployError::Storage(StorageError::Cluster {
                action: format!("read what is live of `{component}`"),
                reason: format!("no answer within {CLUSTER_ANSWER:?}"),
            })),
        }
    }

    /// After a change made on this node: records what is live of `component` now for the cluster, if its record
    /// is still at `revision`. When another node changed it meanwhile, theirs stands and this node follows it;
    /// when the server cannot be reached, the share is tried again every [`SHARE_AGAIN_EVERY`] until it is.
    pub(super) async fn share_live(&self, component: &str, revision: Option<u64>) {
        let Some(revision) = revision else { return };
        let live_here = self.live.load().component(component).cloned();
        match self.share_live_at(component, revision).await {
            Ok(true) => {}
            Ok(false) => self.follow_the_cluster_on(component).await,
            Err(error) => {
                tracing::error!(%component, %error,
                    "failed to share a deployment with the cluster; trying again until its server answers");
                self.unshared.lock().insert(component.to_owned(), (revision, live_here));
            }
        }
    }

    /// Shares what is live of `component` if the record is at `revision`; `Ok(false)` when another node changed it.
    async fn share_live_at(&self, component: &str, revision: u64) -> Result<bool, DeployError> {
        let Some(cluster) = &self.cluster else { return Ok(true) };
        let live = self.live.load().component(component).cloned();
        let entry = match live {
            None => None,
            Some(live) => {
                let rows = self.db.versions(component).await?;
                let active = self.shared_version(&live.active, &rows).await?;
                let canary = match &live.canary {
                    Some(canary) => Some((self.shared_version(&canary.version, &rows).await?, canary.percent)),
                    None => None,
                };
                Some(LiveEntry { active, canary, origin: cluster.node().to_owned() })
            }
        };
        let previous = cluster.live(component).await?;
        let unchanged = match (&previous, &entry) {
            (Some(previous), Some(entry)) => previous.active == entry.active && previous.canary == entry.canary,
            (None, None) => true,
            _ => false,
        };
        if unchanged {
            return Ok(true);
        }
        Ok(cluster.set_live_if(component, entry.as_ref(), revision).await?)
    }

    /// Another node changed `component` after this node read its record: its change stands, and this node
    /// serves it (the watch may have brought it before this node's own change, which then replaced it here).
    async fn follow_the_cluster_on(&self, component: &str) {
        tracing::warn!(%component, "another node changed this component meanwhile; its change stands, following it");
        let Some(cluster) = &self.cluster else { return };
        let converged = match cluster.live(component).await {
            Ok(entry) => self.converge(component, entry).await,
            Err(error) => Err(error.into()),
        };
        if let Err(error) = converged {
            tracing::error!(%component, %error, "could not make this node serve what the cluster deployed");
        }
    }

    /// Shares again, every [`SHARE_AGAIN_EVERY`], each change the cluster has not heard of, for as long as the node
    /// runs. A change replaced here since (its own share is tried on its own) is dropped.
    async fn share_again(self: Arc<Self>) {
        loop {
            tokio::time::sleep(SHARE_AGAIN_EVERY).await;
            let pending: Vec<_> = self.unshared.lock().drain().collect();
            for (component, (revision, live_then)) in pending {
                let live_now = self.live.load().component(&component).cloned();
                let same = match (&live_then, &live_now) {
                    (Some(then), Some(now)) => Arc::ptr_eq(then, now),
                    (None, None) => true,
                    _ => false,
                };
                if !same {
                    continue;
                }
                match self.share_live_at(&component, revision).await {
                    Ok(true) => tracing::info!(%component, "shared a deployment with the cluster after all"),
                    Ok(false) => self.follow_the_cluster_on(&component).await,
                    Err(_) => {
                        self.unshared.lock().entry(component).or_insert((revision, live_then));
                    }
                }
            }
        }
    }

    /// `version` (one of `rows`, its component's versions) as the cluster shares it, its bytes in the cluster's
    /// object store.
    async fn shared_version(
        &self,
        version: &ComponentVersion,
        rows: &[VersionRow],
    ) -> Result<LiveVersion, DeployError> {
        let cluster = self.cluster.as_ref().ok_or_else(|| DeployError::Io("not a cluster member".into()))?;
        let row = rows.iter().find(|row| row.version == version.version).ok_or_else(|| {
            DeployError::Io(format!("version {} of `{}` is not recorded", version.version, version.component))
        })?;
        let config = VersionConfig::from_stored_json(&row.config, &self.secrets_key).map_err(DeployError::Io)?;
        // Read from disk only the bytes the cluster does not have yet (a rollback or promote shares known ones).
        if !cluster.has_component(&version.hash).await {
            let path = self.artifacts.stored_component(&version.hash);
            let wasm = tokio::fs::read(&path)
                .await
                .map_err(|error| DeployError::Io(format!("failed to read {}: {error}", path.display())))?;
            cluster.put_component(&version.hash, wasm).await?;
        }
        if let Some(bundle) = config.assets.as_ref().and_then(|assets| assets.bundle.as_deref())
            && !cluster.has_assets(bundle).await
        {
            let store = self.assets.clone();
            let sha = bundle.to_owned();
            let bytes = tokio::task::spawn_blocking(move || store.bundle(&sha))
                .await
                .map_err(|join| DeployError::Io(join.to_string()))?
                .map_err(|error| DeployError::Io(format!("failed to read static files bundle {bundle}: {error}")))?;
            cluster.put_assets(bundle, bytes).await?;
        }
        Ok(LiveVersion {
            hash: version.hash.clone(),
            overrides: config.overrides.clone(),
            mount: config.mount.as_ref().and_then(|mount| serde_json::to_value(mount).ok()),
            deployed_by: row.deployed_by.clone(),
        })
    }

    /// Follows what the cluster says should be live, for as long as the node runs: catches up first, then
    /// converges on every change. A change that cannot be applied here is logged and left; the next one is tried.
    pub async fn follow_cluster(self: Arc<Self>) {
        let Some(cluster) = self.cluster.clone() else { return };
        tokio::spawn(self.clone().share_again());
        loop {
            let mut changes = match cluster.watch_live().await {
                Ok(changes) => changes,
                Err(error) => {
                    tracing::error!(%error, "cannot watch the cluster's deployments; trying again in 5 s");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
            };
            while let Some(change) = changes.next().await {
                let (component, entry) = match change {
                    Ok(change) => change,
                    Err(error) => {
                        tracing::warn!(%error, "a change to the cluster's deployments could not be read");
                        continue;
                    }
                };
                if let Err(error) = self.converge(&component, entry).await {
                    tracing::error!(%component, %error, "could not make this node serve what the cluster deployed");
                }
            }
            tracing::warn!("the watch on the cluster's deployments ended; watching again");
        }
    }

    /// Makes what is live here of `component` what `entry` says.
    async fn converge(&self, component: &str, entry: Option<LiveEntry>) -> Result<(), DeployError> {
        let here = self.live.load().component(component).cloned();
        let Some(entry) = entry else {
            if here.is_some() {
                tracing::info!(%component, "undeployed on another node; undeploying here");
                self.undeploy_here(component).await?;
            }
            return Ok(());
        };
        // Each version as this node would deploy it: its bytes, and its configuration resolved here.
        let active = self.resolved(component, &entry.active)?;
        let canary = match &entry.canary {
            Some((version, percent)) => Some((self.resolved(component, version)?, *percent)),
            None => None,
        };
        let identity = |version: &ComponentVersion| (version.hash.clone(), version.config_hash.clone());
        let active_here = here.as_ref().map(|live| identity(&live.active));
        let canary_here =
            here.as_ref().and_then(|live| live.canary.as_ref().map(|c| (identity(&c.version), c.percent)));
        let canary_wanted = canary.as_ref().map(|(resolved, percent)| (resolved.identity(), *percent));
        if active_here.as_ref() == Some(&active.identity()) && canary_here == canary_wanted {
            return Ok(());
        }
        tracing::info!(%component, origin = %entry.origin, active = %entry.active.hash, "changed on another node; following");
        if active_here.as_ref() != Some(&active.identity()) {
            let versions = self.db.versions(component).await?;
            let known = versions.iter().find(|row| (row.hash.clone(), row.config_hash.clone()) == active.identity());
            match known {
                // Ours already (a rollback, a promote): switch to it, nothing compiles.
                Some(row) => {
                    self.rollback_here(component, Some(row.version)).await?;
                }
                None => {
                    self.deploy_here(self.request_from(component, &entry, &entry.active, None).await?).await?;
                }
            }
        }
        match (&entry.canary, &canary_wanted) {
            (Some((version, percent)), Some(wanted)) if canary_here.as_ref() != Some(wanted) => {
                self.deploy_here(self.request_from(component, &entry, version, Some(*percent)).await?).await?;
            }
            // Rolling back a canary ends it; the active version stays.
            (None, _) if canary_here.is_some() && active_here.as_ref() == Some(&active.identity()) => {
                self.rollback_here(component, None).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// `version` as this node would deploy it.
    fn resolved(&self, component: &str, version: &LiveVersion) -> Result<Resolved, DeployError> {
        let overrides = overrides_of(component, version)?;
        let mount = mount_of(component, version)?;
        let config = VersionConfig::resolve(component, &self.config, &overrides, mount)?;
        Ok(Resolved { hash: version.hash.clone(), config_hash: config.hash() })
    }

    /// A deploy of the cluster's `version` as `component`.
    async fn request_from(
        &self,
        component: &str,
        entry: &LiveEntry,
        version: &LiveVersion,
        canary_percent: Option<u8>,
    ) -> Result<DeployRequest, DeployError> {
        let cluster = self.cluster.as_ref().ok_or_else(|| DeployError::Io("not a cluster member".into()))?;
        let overrides = overrides_of(component, version)?;
        // Static files this node does not have yet come from the cluster too.
        let assets = match overrides.assets.as_ref().and_then(|assets| assets.bundle.as_deref()) {
            Some(bundle) if !self.assets.has(bundle) => Some(cluster.assets(bundle).await?),
            _ => None,
        };
        Ok(DeployRequest {
            name: component.to_owned(),
            wasm: cluster.component(&version.hash).await?,
            source: format!("cluster (deployed on node {})", entry.origin),
            deployed_by: version.deployed_by.clone(),
            overrides,
            mount: mount_of(component, version)?,
            canary_percent,
            assets,
        })
    }
}

/// A version's identity on this node: component sha256 and configuration hash.
#[derive(Debug)]
struct Resolved {
    hash: String,
    config_hash: String,
}

impl Resolved {
    fn identity(&self) -> (String, String) {
        (self.hash.clone(), self.config_hash.clone())
    }
}

fn overrides_of(component: &str, version: &LiveVersion) -> Result<ComponentConfig, DeployError> {
    match &version.overrides {
        None => Ok(ComponentConfig::default()),
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|error| DeployError::Config(format!("the cluster's settings of `{component}`: {error}"))),
    }
}

fn mount_of(component: &str, version: &LiveVersion) -> Result<Option<Mount>, DeployError> {
    match &version.mount {
        None => Ok(None),
        Some(value) => serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|error| DeployError::Config(format!("the cluster's mount of `{component}`: {error}"))),
    }
}
