//! One edgefn node, wired: storage, the runtime, the capabilities guests reach, the triggers, deployments and the
//! admin API. `edgefn up` starts one and serves it; the in-process benchmarks start one without listeners.
//!
//! This is the composition root, the one module that knows every other: each layer below only knows the layers
//! under it (cli -> admin -> deployments -> triggers -> runtime -> capabilities -> storage).

use crate::admin::{self, Admin};
use crate::auth::Authorizers;
use crate::capabilities::invoke::DeferredInvoker;
use crate::capabilities::kv::KvStores;
use crate::capabilities::messaging::{MessagingLimits, Queues, SendAllowance};
use crate::capabilities::objects::{Objects, UrlSigner};
use crate::capabilities::streams::Streams;
use crate::capabilities::{Capabilities, Invoker};
use crate::config::HostConfig;
use crate::deployments::{DeployError, Deployments};
use crate::live::LiveHandle;
use crate::runtime::{Loader, Runtime};
use crate::storage::backends::QueueBackend;
use crate::storage::backends::cron::CronBackend;
use crate::storage::backends::jetstream::deployments::{NodeComponent, NodeEntry};
use crate::storage::backends::jetstream::{
    Cluster, JetStreamCron, JetStreamDeployments, JetStreamObjects, JetStreamQueues, JetStreamStreams,
    JetStreamWorkflowLog,
};
use crate::storage::backends::objects::ObjectStore;
use crate::storage::backends::sqlite::SqliteQueues;
use crate::storage::backends::streams::StreamStore;
use crate::storage::cron::CronDb;
use crate::storage::deployments::DeploymentDb;
use crate::storage::kv::{KvDb, KvLimits};
use crate::storage::objects::ObjectDb;
use crate::storage::queue::QueueDb;
use crate::storage::streams::{StreamCatalog, StreamDb};
use crate::storage::{Database, create_private_dir, now_ms};
use crate::telemetry::alarms::Alarms;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::{Retention, Telemetry};
use crate::triggers::cron::CronTrigger;
use crate::triggers::http::HttpTrigger;
use crate::triggers::invoke::InvokeTrigger;
use crate::triggers::queue::QueueTrigger;
use crate::triggers::replay::Replayer;
use crate::triggers::stream::StreamTrigger;
use crate::triggers::{Runner, Trigger};
use anyhow::{Context as _, bail};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A started node. Keep it alive for as long as it should run.
#[derive(Debug)]
pub struct Node {
    pub deployments: Arc<Deployments>,
    pub http: Arc<HttpTrigger>,
    pub invoke: Arc<InvokeTrigger>,
    /// Durable workflow runs: started, signalled and resumed here.
    pub workflows: Arc<crate::triggers::workflow::WorkflowEngine>,
    pub cron: Arc<CronTrigger>,
    pub queue_trigger: Arc<QueueTrigger>,
    pub queues: Arc<Queues>,
    pub kv: Arc<KvStores>,
    /// This node's object store (functions reach it only when not on a cluster).
    pub objects: Arc<Objects>,
    pub streams: Arc<Streams>,
    pub stream_trigger: Arc<StreamTrigger>,
    pub authorizers: Arc<Authorizers>,
    /// The HTTP response cache.
    pub cache: Arc<crate::capabilities::cache::ResponseCache>,
    pub loader: Arc<Loader>,
    pub telemetry: Telemetry,
    pub replayer: Replayer,
    /// Components that were live when the host last ran and could not be brought back.
    pub restore_failures: Vec<DeployError>,
    /// On a cluster: its shared deployments and members.
    pub cluster: Option<Arc<JetStreamDeployments>>,
    _lock: std::fs::File,
}

impl Node {
    /// Opens the data dir (one host at a time), brings back what was live there, and starts its triggers. Must run
    /// inside a tokio runtime.
    pub async fn start(data_dir: &Path, config: HostConfig) -> anyhow::Result<Self> {
        create_private_dir(data_dir)?;
        let lock = lock_data_dir(data_dir)?;
        // Opening migrates the schema: SQLite work, so not on an async worker thread either.
        let dir = data_dir.to_owned();
        let object_limits = config.limits.objects.clone();
        let max_run_age_ms = config.workflows.max_run_age_s.saturating_mul(1000);
        let (db, queue_db, cron_db, kv_db, object_db, stream_dbs, workflow_db) =
            tokio::task::spawn_blocking(move || {
                let db = Database::open(&dir)?;
                let object_limits = crate::storage::objects::ObjectLimits {
                    max_object_bytes: object_limits.objects_max_object_mb.saturating_mul(1 << 20),
                    max_bucket_bytes: object_limits.objects_max_bucket_mb.saturating_mul(1 << 20),
                    max_objects: object_limits.objects_max_objects,
                };
                // Opening the object store removes what a crash left half-written: before anything can write.
                let objects = ObjectDb::open(&dir, Database::connect(&dir)?, object_limits)?;
                let (queue_db, cron_db, kv_db) =
                    (Database::connect(&dir)?, Database::connect(&dir)?, Database::connect(&dir)?);
                let stream_dbs = (Database::connect(&dir)?, Database::connect(&dir)?);
                let workflow_db = crate::storage::workflows::WorkflowDb::new(Database::connect(&dir)?)
                    .with_max_age(i64::try_from(max_run_age_ms).unwrap_or(i64::MAX));
                anyhow::Ok((db, queue_db, cron_db, kv_db, objects, stream_dbs, workflow_db))
            })
            .await??;
        let node_name = config.cluster.node.clone().unwrap_or_else(default_node_name);
        crate::telemetry::otel::install(&config.otel, &node_name)?;
        let mut telemetry = open_telemetry(data_dir, &config.logs).await?;
        if config.metrics.enabled {
            telemetry = telemetry.with_metrics(Arc::new(Metrics::new()));
        }
        let alarm_rules = (!config.alarms.is_empty()).then(|| Arc::new(Alarms::new(&config.alarms)));
        if let Some(rules) = &alarm_rules {
            telemetry = telemetry.with_alarms(rules.clone());
        }
        let runtime = Runtime::new(config.limits.runtime.clone())?
            .with_send_allowance(SendAllowance::default_for(&config.limits.queues))
            .with_telemetry(telemetry.clone());
        let loader = Loader::new(runtime);
        let messaging_limits = MessagingLimits::from_host(&config.limits.queues);
        let cluster = match &config.cluster.nats {
            None => None,
            Some(url) => {
                let node = config.cluster.node.clone().unwrap_or_else(default_node_name);
                let cluster = Cluster::connect(url, &node, config.cluster.replicas).await?;
                tracing::info!(%url, %node, "joined the cluster: queues, topics and cron are shared through its JetStream");
                Some(cluster)
            }
        };
        // Alone: SQLite for all of it. In a cluster: queues, cron claims and deployments shared through JetStream.
        let (backend, cron_backend, cluster_deployments): (Arc<dyn QueueBackend>, _, _) = match &cluster {
            None => (
                Arc::new(SqliteQueues::open(QueueDb::new(queue_db)).await?),
                CronBackend::local(CronDb::new(cron_db)),
                None,
            ),
            Some(cluster) => {
                let ack_wait = Duration::from_millis(config.cluster.ack_wait_ms);
                let (capacity, max_bytes) = (messaging_limits.capacity, messaging_limits.max_message_bytes);
                let cron = Arc::new(JetStreamCron::open(cluster.clone()).await?);
                (
                    Arc::new(JetStreamQueues::open(cluster.clone(), ack_wait, capacity, max_bytes).await?),
                    CronBackend::clustered(CronDb::new(cron_db), cron),
                    Some(Arc::new(JetStreamDeployments::open(cluster.clone()).await?)),
                )
            }
        };
        let queues = Arc::new(Queues::new(backend, messaging_limits));
        let limits = &config.limits.kv;
        let kv = Arc::new(KvStores::new(KvDb::new(
            kv_db,
            KvLimits {
                max_key_bytes: limits.kv_max_key_bytes,
                max_value_bytes: limits.kv_max_value_bytes,
                max_keys: limits.kv_max_keys,
                max_bytes: limits.kv_max_store_mb.saturating_mul(1 << 20),
            },
        )));
        spawn_kv_sweeper(kv.clone());
        let deferred = Arc::new(DeferredInvoker::default());
        let deferred_workflows = Arc::new(crate::capabilities::workflows::DeferredWorkflows::default());
        // Alone, object bytes are files on this node; on a cluster, JetStream object stores every node reads. A
        // cluster's nodes accept each other's signed URLs when they share EDGEFN_URL_SIGNING_KEY.
        let object_store = match &cluster {
            None => ObjectStore::Local(object_db),
            Some(cluster) => ObjectStore::Cluster(Box::new(JetStreamObjects::new(cluster.clone(), object_db))),
        };
        let objects = Arc::new(Objects::new(object_store, UrlSigner::load_or_create(data_dir)?));
        // Streams: SQLite alone; on a cluster, JetStream, each shard delivered by one node at a time (a dead node's
        // shards move to the others once its leases lapse, after `ack_wait_ms`).
        let stream_store = match &cluster {
            None => StreamStore::Local(StreamDb::new(stream_dbs.0, stream_dbs.1, stream_catalog(&config))),
            Some(cluster) => {
                let lease = Duration::from_millis(config.cluster.ack_wait_ms);
                StreamStore::Cluster(Box::new(
                    JetStreamStreams::open(cluster.clone(), stream_catalog(&config), lease).await?,
                ))
            }
        };
        let streams = Arc::new(Streams::new(stream_store));
        if cluster.is_none() {
            crate::capabilities::streams::spawn_sweeper(streams.clone());
        }
        // Workflow runs: SQLite alone; on a cluster each node's SQLite is a copy that runs the cluster's log of
        // changes, and the node holding the runs' lease resumes them (another takes over `ack_wait_ms` after it dies).
        let workflow_db = match &cluster {
            None => workflow_db,
            Some(cluster) => {
                let lease = Duration::from_millis(config.cluster.ack_wait_ms);
                let log = JetStreamWorkflowLog::open(cluster.clone(), lease).await?;
                log.spawn(workflow_db.clone());
                workflow_db.with_log(log)
            }
        };
        if let Some(rules) = alarm_rules {
            crate::alarms::spawn(rules, telemetry.clone(), queues.clone(), Some(streams.clone()), workflow_db.clone());
        }
        let response_cache = Arc::new(crate::capabilities::cache::ResponseCache::new(config.cache));
        if let Some(cluster) = &cluster {
            crate::capabilities::cache::peers::join(cluster.client.clone(), &response_cache)
                .await
                .map_err(anyhow::Error::msg)?;
        }
        let websockets = Arc::new(crate::capabilities::websocket::Connections::default());
        if let Some(cluster) = &cluster {
            let relay = crate::capabilities::websocket::relay::Relay::start(cluster.client.clone(), &websockets);
            websockets.set_relay(relay.await.map_err(anyhow::Error::msg)?);
        }
        let capabilities = Capabilities {
            messaging: Some(queues.clone()),
            invoker: Some(deferred.clone()),
            kv: Some(kv.clone()),
            objects: Some(objects.clone()),
            streams: Some(streams.clone()),
            limiters: Some(Arc::new(crate::capabilities::ratelimit::Limiters::new(
                config.rate_limits.iter().map(|(name, limit)| (name.clone(), limit.rule())).collect(),
            ))),
            cache: Some(response_cache.clone()),
            websockets: Some(websockets.clone()),
            workflows: Some(deferred_workflows.clone()),
        };
        let runner = Runner { loader: loader.clone(), capabilities };
        let live = LiveHandle::default();
        let invoke = InvokeTrigger::new(live.clone(), runner.clone());
        let workflows = crate::triggers::workflow::WorkflowEngine::new(workflow_db, live.clone(), runner.clone());
        deferred.set(&(invoke.clone() as Arc<dyn Invoker>));
        deferred_workflows.set(&(workflows.clone() as Arc<dyn crate::capabilities::workflows::Workflows>));
        let authorizers = Arc::new(Authorizers::from_config(&config.authorizers)?);
        authorizers.spawn_watcher();
        let http_limits = config.limits.http.clone();
        let http = HttpTrigger::new(
            live.clone(),
            runner.clone(),
            authorizers.clone(),
            http_limits,
            Some(objects.clone()),
            Some(response_cache.clone()),
            websockets.clone(),
        );
        let cron = CronTrigger::new(cron_backend, runner.clone(), live.clone());
        let replayer = Replayer::new(runner.clone());
        let queue_trigger = QueueTrigger::new(queues.clone(), runner.clone());
        let stream_trigger = StreamTrigger::new(streams.clone(), queues.clone(), runner);
        let triggers: Vec<Arc<dyn Trigger>> =
            vec![http.clone(), invoke.clone(), cron.clone(), queue_trigger.clone(), stream_trigger.clone()];
        let deployments = Arc::new(
            Deployments::new(
                config,
                DeploymentDb::new(db),
                loader.clone(),
                live,
                triggers,
                authorizers.clone(),
                data_dir,
            )?
            .with_cluster(cluster_deployments.clone()),
        );
        let restore_failures = deployments.restore().await?;
        // After the restore: changes waiting in the outbox go to the triggers that were live, not to none.
        crate::capabilities::objects::events::spawn_dispatcher(objects.clone(), queues.clone());
        if cluster_deployments.is_some() {
            // What the cluster has live comes on top of what this node had: it catches up, then follows.
            tokio::spawn(deployments.clone().follow_cluster());
        }
        spawn_idle_sweeper(loader.clone());
        // After the restore: runs resume on the functions that were live.
        workflows.set_stored_versions(Arc::new(crate::deployments::WorkflowVersions(deployments.clone())));
        workflows.spawn();
        Ok(Self {
            deployments,
            http,
            invoke,
            workflows,
            cron,
            queue_trigger,
            stream_trigger,
            queues,
            streams,
            kv,
            objects,
            authorizers,
            cache: response_cache,
            loader,
            telemetry,
            replayer,
            restore_failures,
            cluster: cluster_deployments,
            _lock: lock,
        })
    }

    /// On a cluster, keeps this node listed among its members (`edgefn nodes`) with what it serves and how busy it
    /// is, renewed every few seconds for as long as the node runs. Does nothing on a single node.
    pub fn announce(&self, http: std::net::SocketAddr, admin: std::net::SocketAddr) {
        let Some(cluster) = self.cluster.clone() else { return };
        let (deployments, loader, queue_trigger) =
            (self.deployments.clone(), self.loader.clone(), self.queue_trigger.clone());
        let started_at = now_ms();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(NODE_RENEWAL);
            loop {
                ticks.tick().await;
                let live = deployments.live();
                let components = live
                    .components()
                    .map(|c| {
                        let canary = c.canary.as_ref().map(|canary| (canary.version.version, canary.percent));
                        let described =
                            NodeComponent { version: c.active.version, hash: c.active.hash.clone(), canary };
                        (c.name().to_owned(), described)
                    })
                    .collect();
                let entry = NodeEntry {
                    node: cluster.node().to_owned(),
                    http: http.to_string(),
                    admin: admin.to_string(),
                    started_at,
                    seen_at: now_ms(),
                    components,
                    running: loader.runtime().instances_in_use(),
                    loaded: loader.loaded_count() as u64,
                    deliveries: queue_trigger.deliveries(),
                };
                if let Err(error) = cluster.announce(&entry).await {
                    tracing::warn!(%error, "failed to renew this node's entry in the cluster");
                }
            }
        });
    }

    /// What the admin API reaches.
    pub fn admin(&self) -> Admin {
        Admin {
            deployments: self.deployments.clone(),
            invoke: self.invoke.clone(),
            workflows: self.workflows.clone(),
            cron: self.cron.clone(),
            queue_trigger: self.queue_trigger.clone(),
            queues: self.queues.clone(),
            kv: self.kv.clone(),
            objects: Some(self.objects.clone()),
            streams: Some(self.streams.clone()),
            authorizers: self.authorizers.clone(),
            telemetry: self.telemetry.clone(),
            runtime: self.loader.runtime().clone(),
            replayer: self.replayer.clone(),
            cache: self.cache.clone(),
            sessions: Arc::default(),
            cluster: self.cluster.clone(),
        }
    }

    /// The admin API's router, behind `token`.
    pub fn admin_app(&self, token: String) -> axum::Router {
        admin::app(self.admin(), token)
    }
}

/// The log and usage store of `data_dir`, as `[logs]` configures it (opened off the async threads).
async fn open_telemetry(data_dir: &Path, logs: &crate::config::LogsConfig) -> anyhow::Result<Telemetry> {
    if !logs.enabled {
        return Ok(Telemetry::disabled());
    }
    let retention = Retention {
        max_age: Duration::from_secs(logs.retention_hours.saturating_mul(3600)),
        max_bytes: logs.max_mb.saturating_mul(1 << 20),
        usage_max_age: Duration::from_secs(logs.usage_retention_days.saturating_mul(86_400)),
        replay_input_max_bytes: logs.replay_input_max_kb.saturating_mul(1024),
    };
    let dir = data_dir.to_owned();
    Ok(tokio::task::spawn_blocking(move || Telemetry::open(&dir, retention)).await??)
}

/// Holds `<data dir>/lock` for the life of the host: two hosts on one data dir would hand out each other's
/// queue messages and release each other's leases.
fn lock_data_dir(data: &Path) -> anyhow::Result<std::fs::File> {
    let path = data.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("failed to open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            bail!("another edgefn host is running on data dir {}: stop it, or use another --data", data.display())
        }
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("failed to lock {}", path.display()))
        }
    }
}

/// Deletes expired keys, a thousand at a time, every second: they are invisible from the moment they expire; this
/// only gives their space back.
fn spawn_kv_sweeper(kv: Arc<KvStores>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        loop {
            interval.tick().await;
            loop {
                match kv.db().sweep(now_ms(), 1_000).await {
                    Ok(1_000) => continue,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::error!(%error, "failed to sweep expired keys");
                        break;
                    }
                }
            }
        }
    });
}

/// Unloads idle components, checking a few times per idle timeout (at most once a second).
fn spawn_idle_sweeper(loader: Arc<Loader>) {
    let period =
        (loader.runtime().limits().idle_timeout() / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        loop {
            interval.tick().await;
            loader.unload_idle();
        }
    });
}

/// How often a cluster member renews its entry: well within `NODE_TTL`, so a live node never drops off the list.
const NODE_RENEWAL: Duration = Duration::from_secs(3);

/// A node's name when the config gives none: the machine's host name and this process's id.
fn default_node_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|name| name.trim().to_owned()).unwrap_or_default();
    let host = if host.is_empty() { "node".to_owned() } else { host };
    let host: String = host.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect();
    format!("{host}-{}", std::process::id())
}

/// The settings of every stream, from `[streams.NAME]` (and the defaults for the rest).
fn stream_catalog(config: &HostConfig) -> StreamCatalog {
    StreamCatalog {
        default: crate::config::StreamConfig::default().settings(),
        named: config.streams.iter().map(|(name, stream)| (name.clone(), stream.settings())).collect(),
        max_record_bytes: config.limits.queues.max_message_bytes,
    }
}
