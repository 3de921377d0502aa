//! What a cluster shares of its deployments, and who its members are:
//!
//! - object store `edgefn_components`: each deployed component's bytes, named by their sha256;
//! - KV bucket `edgefn_live`: per component, what should be live ([`LiveEntry`]); every node watches it and
//!   converges on it, a node that joins later included (the watch starts with the current value of every key);
//! - KV bucket `edgefn_nodes`: one entry per node ([`NodeEntry`]), renewed every few seconds and gone a while after
//!   the node stopped renewing it.
//!
//! The buckets are made here, with the stream layout of the NATS KV and object store conventions (ADR-8, ADR-20),
//! because async-nats makes them only on servers newer than Debian's 2.9; `get_key_value` and `get_object_store`
//! then use them as any NATS client would.

use super::{Cluster, cluster_error};
use crate::storage::StorageError;
use async_nats::jetstream::kv::{self, Operation};
use async_nats::jetstream::object_store::ObjectStore;
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::AsyncReadExt as _;

const LIVE_BUCKET: &str = "edgefn_live";
const NODES_BUCKET: &str = "edgefn_nodes";
const COMPONENTS_BUCKET: &str = "edgefn_components";
/// A node that has not renewed its entry for this long is gone from `edgefn nodes`.
pub const NODE_TTL: Duration = Duration::from_secs(15);

/// What should be live of one component, cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveEntry {
    /// The version serving all traffic but the canary's share.
    pub active: LiveVersion,
    /// A canary and its share of traffic, in percent.
    pub canary: Option<(LiveVersion, u8)>,
    /// The node the change was made on.
    pub origin: String,
}

/// One version, as every node can deploy it: the component by its sha256, and what its deploy set over the host
/// config (each node resolves that against its own).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveVersion {
    pub hash: String,
    /// A `ComponentConfig`, as JSON; `None` when the deploy set nothing.
    pub overrides: Option<serde_json::Value>,
    /// A `Mount`, as JSON, for a plain wasi:http component.
    pub mount: Option<serde_json::Value>,
    pub deployed_by: String,
}

/// One member of the cluster, as it last described itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeEntry {
    pub node: String,
    /// Its HTTP and admin addresses.
    pub http: String,
    pub admin: String,
    pub started_at: i64,
    /// When it last renewed this entry (ms since the epoch).
    pub seen_at: i64,
    /// Live components: version (this node's number), component sha256, canary version if any.
    pub components: BTreeMap<String, NodeComponent>,
    /// Instances running an invocation now.
    pub running: u64,
    /// Components loaded in memory now.
    pub loaded: u64,
    /// Queue deliveries finished since it started.
    pub deliveries: u64,
}

/// A live component on one node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeComponent {
    pub version: u32,
    pub hash: String,
    pub canary: Option<(u32, u8)>,
}

/// A change to what should be live: `None` when the component was undeployed.
pub type LiveChange = (String, Option<LiveEntry>);

/// See the module docs.
pub struct JetStreamDeployments {
    cluster: Cluster,
    live: kv::Store,
    nodes: kv::Store,
    components: ObjectStore,
}

impl std::fmt::Debug for JetStreamDeployments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamDeployments").field("node", &self.cluster.node).finish_non_exhaustive()
    }
}

impl JetStreamDeployments {
    pub async fn open(cluster: Cluster) -> Result<Self, StorageError> {
        let live = super::bucket(&cluster, LIVE_BUCKET, Duration::ZERO).await?;
        let nodes = super::bucket(&cluster, NODES_BUCKET, NODE_TTL).await?;
        let components = super::object_store(&cluster, COMPONENTS_BUCKET).await?;
        Ok(Self { cluster, live, nodes, components })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.cluster.node
    }

    /// Whether the bytes of component `hash` are stored.
    pub async fn has_component(&self, hash: &str) -> bool {
        self.components.info(hash).await.is_ok()
    }

    /// Stores a component's bytes under their sha256 `hash`.
    pub async fn put_component(&self, hash: &str, wasm: Vec<u8>) -> Result<(), StorageError> {
        self.put_object(hash, "component", wasm).await
    }

    /// The bytes of component `hash`, checked against it.
    pub async fn component(&self, hash: &str) -> Result<Vec<u8>, StorageError> {
        self.checked_object(hash, hash, "component").await
    }

    /// The object name of the static files bundle `hash`, next to the components.
    fn assets_name(hash: &str) -> String {
        format!("assets-{hash}")
    }

    /// Whether the static files bundle `hash` is stored.
    pub async fn has_assets(&self, hash: &str) -> bool {
        self.components.info(&Self::assets_name(hash)).await.is_ok()
    }

    /// Stores a static files bundle under its sha256 `hash`.
    pub async fn put_assets(&self, hash: &str, bundle: Vec<u8>) -> Result<(), StorageError> {
        self.put_object(&Self::assets_name(hash), "static files", bundle).await
    }

    /// The static files bundle `hash`, checked against it.
    pub async fn assets(&self, hash: &str) -> Result<Vec<u8>, StorageError> {
        self.checked_object(&Self::assets_name(hash), hash, "static files").await
    }

    async fn put_object(&self, name: &str, what: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.components
            .put(name, &mut bytes.as_slice())
            .await
            .map_err(|error| cluster_error(format!("store {what} {name}"), error))?;
        Ok(())
    }

    /// Object `name`, whose bytes must hash to `hash`.
    async fn checked_object(&self, name: &str, hash: &str, what: &str) -> Result<Vec<u8>, StorageError> {
        let action = || format!("read {what} {name}");
        let mut object = self.components.get(name).await.map_err(|error| cluster_error(action(), error))?;
        let mut bytes = Vec::new();
        object.read_to_end(&mut bytes).await.map_err(|error| cluster_error(action(), error))?;
        let found = hex::encode(Sha256::digest(&bytes));
        if found != hash {
            return Err(cluster_error(action(), format!("its bytes hash to {found}")));
        }
        Ok(bytes)
    }

    /// What should be live of `component`, if anything.
    pub async fn live(&self, component: &str) -> Result<Option<LiveEntry>, StorageError> {
        let action = || format!("read what is live of `{component}`");
        let Some(value) = self.live.get(component).await.map_err(|error| cluster_error(action(), error))? else {
            return Ok(None);
        };
        if value.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&value).map(Some).map_err(|error| cluster_error(action(), error))
    }

    /// The revision of `component`'s record (0 when none was ever written): what a change made on this node
    /// expects to replace ([`JetStreamDeployments::set_live_if`]). Reading it also proves the server answers.
    pub async fn live_revision(&self, component: &str) -> Result<u64, StorageError> {
        let entry = self
            .live
            .entry(component)
            .await
            .map_err(|error| cluster_error(format!("read what is live of `{component}`"), error))?;
        Ok(entry.map_or(0, |entry| entry.revision))
    }

    /// Records what should be live of `component` (`None`: nothing), only if `component`'s record is still at `revision`: `Ok(false)` when
    /// another node changed it since, and its change stands.
    pub async fn set_live_if(
        &self,
        component: &str,
        entry: Option<&LiveEntry>,
        revision: u64,
    ) -> Result<bool, StorageError> {
        let action = || format!("record what is live of `{component}`");
        let written = match entry {
            Some(entry) => {
                let value = serde_json::to_vec(entry).map_err(|error| cluster_error(action(), error))?;
                self.live.update(component, value.into(), revision).await.map(drop)
            }
            None => self.live.delete_expect_revision(component, Some(revision)).await,
        };
        match written {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(error) => Err(cluster_error(action(), error)),
        }
    }

    /// Every change to what should be live, starting with the current value of each component.
    pub async fn watch_live(
        &self,
    ) -> Result<impl futures_util::Stream<Item = Result<LiveChange, StorageError>> + use<>, StorageError> {
        let watch =
            self.live.watch_with_history(">").await.map_err(|error| cluster_error("watch what is live", error))?;
        Ok(watch.map(|entry| {
            let entry = entry.map_err(|error| cluster_error("watch what is live", error))?;
            let value = match entry.operation {
                Operation::Put if !entry.value.is_empty() => Some(
                    serde_json::from_slice(&entry.value)
                        .map_err(|error| cluster_error(format!("read what is live of `{}`", entry.key), error))?,
                ),
                _ => None,
            };
            Ok((entry.key, value))
        }))
    }

    /// Renews this node's entry.
    pub async fn announce(&self, entry: &NodeEntry) -> Result<(), StorageError> {
        let value = serde_json::to_vec(entry).map_err(|error| cluster_error("describe this node", error))?;
        self.nodes.put(&entry.node, value.into()).await.map_err(|error| cluster_error("announce this node", error))?;
        Ok(())
    }

    /// The members that renewed their entry within [`NODE_TTL`], by name.
    pub async fn nodes(&self) -> Result<Vec<NodeEntry>, StorageError> {
        let mut nodes = Vec::new();
        for key in super::bucket_keys(&self.nodes, "nodes").await? {
            let value = self.nodes.get(&key).await.map_err(|error| cluster_error("read a node", error))?;
            if let Some(node) = value.and_then(|value| serde_json::from_slice::<NodeEntry>(&value).ok()) {
                nodes.push(node);
            }
        }
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(nodes)
    }
}
