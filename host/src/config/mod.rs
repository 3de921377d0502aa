//! The host's configuration file (`--config edgefn.toml`): limits, and per-component environment, secrets and
//! outbound allowlist.
//!
//! ```toml
//! snapshot = true             # run #[init] once at deploy, start instances from its snapshot
//!
//! [limits]
//! timeout_ms = 30000          # wall-clock deadline of one invocation
//! memory_mb = 128             # memory cap of one instance
//! max_body_bytes = 10485760   # request body cap (413 above it)
//! max_instances = 64          # instances running at once (pooling allocator slots)
//! queue_timeout_ms = 1000     # wait for a free slot before answering 503
//! max_loaded = 256            # components kept loaded; least recently used is unloaded first
//! idle_timeout_ms = 300000    # a component unused this long is unloaded
//! init_timeout_ms = 60000     # deadline of a component's one-time init at deploy
//! keep_resident_kib = 2048    # memory per pool slot reset in place between instances (speed vs resident memory)
//! max_timeout_ms = 900000     # the most a component or function may set as its timeout_ms
//! max_memory_mb = 512         # the most a component or function may set as its memory_mb
//! drain_timeout_ms = 30000    # how long a deploy waits for the old version's cron runs and deliveries
//! max_assets_mb = 256         # the most a deploy's static files may hold, unpacked
//! max_asset_files = 20000     # the most files they may have
//!
//! [components.webhook]        # a component, by name (crate name or .wasm file stem)
//! env = { GREETING = "hi" }   # handed to the function as its environment
//! env_from_host = ["REGION"]  # copied from the host's environment at start
//! secrets = { WEBHOOK_SECRET = "dev-only" }    # like env, and masked in everything the function prints
//! secrets_from_host = ["GITHUB_TOKEN"]         # like env_from_host, and masked too
//! allowed_outbound_hosts = ["api.github.com", "127.0.0.1:9000"]   # default: none
//!                             # a name resolving to loopback, private or metadata addresses is refused
//!                             # unless an entry names the address: "10.0.0.7", "10.0.0.0/8", "localhost:8080"
//! timeout_ms = 5000           # this component's deadline (default: limits.timeout_ms)
//! memory_mb = 64              # this component's memory cap (default: limits.memory_mb)
//! max_concurrency = 16        # invocations of each of its functions at once (default: half of max_instances)
//! key_value_stores = ["default"]   # the key-value stores it may open (default: none)
//! object_buckets = ["photos"]      # the object buckets it may use (default: none)
//! cors = { allowed_origins = ["https://app.example.com"] }   # browser origins that may call it (see config/cors.rs)
//! rate_limit = { requests = 10, burst = 20, key = "ip" }     # per client, 429 past it (see config/rate_limit.rs)
//! assets = { dir = "public", spa_fallback = "index.html" }  # static files the host serves (see config/assets.rs)
//!
//! [components.webhook.functions.github]   # one function's own settings, over the component's
//! timeout_ms = 1000
//!
//! [authorizers.main]          # a JWT authorizer, named by routes: http("/orders", auth = "main", scopes = [...])
//! issuer = "https://auth.example.com/"
//! audiences = ["orders-api"]
//! jwks_file = "keys.json"     # public keys by kid (RS256, ES256, EdDSA), relative to this file; reloaded on change
//! hs256_secret_from_host = "JWT_SECRET"    # or an HS256 shared secret from the host's environment
//! algorithms = ["RS256"]      # default: what the keys allow
//! leeway_s = 60               # clock skew allowed on exp and nbf
//!
//! [streams.clicks]           # an ordered stream (a stream not named here gets these defaults)
//! shards = 4                  # fixed when the stream is first used: a key always maps to the same shard
//! retention_hours = 24        # records older than this are dropped
//! max_mb = 1024               # the most the stream keeps; past it, each shard drops its oldest records
//!
//! [rate_limits.per-user]      # a limiter functions call: edgefn::ratelimit::check("per-user", key)
//! requests = 5
//! window_s = 60
//!
//! [cache]                     # the HTTP response cache (see config/cache.rs)
//! memory_mb = 64              # GET responses with Cache-Control s-maxage / max-age, in memory, LRU
//!
//! [outbound]
//! resolve = { "billing.internal" = ["10.0.0.7"] }   # names pinned to addresses, never looked up in DNS
//! ```

mod limits;

mod assets;
mod cache;
mod component;
mod cors;
mod rate_limit;

pub use assets::{AssetSettings, DEFAULT_ASSET_CACHE_CONTROL};
pub use cache::CacheSettings;
pub use component::{ComponentConfig, FunctionSettings, ReuseSettings};
pub use cors::{CorsHeaders, CorsPolicy, CorsSettings, DEFAULT_CORS_METHODS};
pub use limits::{DeployLimits, HttpLimits, KvLimits, Limits, ObjectLimits, QueueLimits, RuntimeLimits, SlotReset};
pub use rate_limit::{BucketRule, RateKey, RateLimitSettings};

use anyhow::Context as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// A JWT authorizer that routes name with `auth = "NAME"` (`[authorizers.NAME]`): which tokens it accepts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthorizerConfig {
    /// The `iss` a token must carry.
    pub issuer: String,
    /// A token's `aud` must name one of these.
    pub audiences: Vec<String>,
    /// A JWKS file (`{"keys": [...]}`) of public keys by `kid`; reloaded when it changes.
    pub jwks_file: Option<std::path::PathBuf>,
    /// An HS256 shared secret, read from this variable of the host's environment.
    pub hs256_secret_from_host: Option<String>,
    /// An HS256 shared secret, inline (for development; prefer `hs256_secret_from_host`).
    pub hs256_secret: Option<String>,
    /// The algorithms a token may be signed with (default: `RS256`, `ES256` and `EdDSA` with a JWKS file, `HS256`
    /// with a secret). `none` is never accepted.
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_s: Option<u64>,
}

/// `[logs]`: the log of what runs (guest output, invocations, host events) and its usage, in
/// `<data dir>/telemetry.db`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Keep logs and usage at all (default). Off, guest output still goes to the host's stderr.
    pub enabled: bool,
    /// Records older than this are deleted.
    pub retention_hours: u64,
    /// The log is kept under this size; the oldest records go first.
    pub max_mb: u64,
    /// Usage (per function and minute) older than this is deleted.
    pub usage_retention_days: u64,
    /// The largest input a failed invocation keeps for `edgefn replay` (components with `record_failures`).
    pub replay_input_max_kb: u64,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self { enabled: true, retention_hours: 72, max_mb: 256, usage_retention_days: 400, replay_input_max_kb: 1024 }
    }
}

impl LogsConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if self.retention_hours == 0 || self.max_mb == 0 || self.usage_retention_days == 0 {
            anyhow::bail!(
                "[logs] retention_hours, max_mb and usage_retention_days must be at least 1 (to keep nothing, set \
                 enabled = false)"
            );
        }
        Ok(())
    }
}

/// `[metrics]`: Prometheus metrics at `GET /metrics` on the admin listener.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Count invocations, durations, cold starts, queues and cron lag (default).
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `[otel]`: OpenTelemetry export of traces and metrics over OTLP/HTTP (protobuf). Off unless `endpoint` is set.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct OtelConfig {
    /// The collector's OTLP/HTTP base URL (`http://127.0.0.1:4318`): spans go to `/v1/traces`, metrics to
    /// `/v1/metrics` under it, as `OTEL_EXPORTER_OTLP_ENDPOINT` would have them.
    pub endpoint: Option<String>,
    /// The `service.name` of what is exported (default `edgefn`); the node's name is `service.instance.id`.
    pub service_name: String,
    /// Headers every export carries (an API key a hosted collector wants). Never logged.
    pub headers: BTreeMap<String, String>,
    /// How often batched spans and the metrics are sent, in milliseconds (default 5000).
    pub export_interval_ms: u64,
    /// How long one export may take before it is given up, in milliseconds (default 10000).
    pub timeout_ms: u64,
    /// Spans waiting to be sent at most; past it, new spans are dropped (the SDK logs how many) rather than
    /// growing the host's memory while a collector is down (default 16384: a span holds at most about 6 KiB).
    pub max_queued_spans: usize,
}

impl Default for OtelConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            service_name: "edgefn".to_owned(),
            headers: BTreeMap::new(),
            export_interval_ms: 5000,
            timeout_ms: 10_000,
            max_queued_spans: 16_384,
        }
    }
}

/// Without the headers' values (API keys) or the endpoint's credentials: a config may be printed with `{:?}`.
impl std::fmt::Debug for OtelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoint = self.endpoint.as_deref().map(|url| match url.split_once("://") {
            Some((scheme, rest)) => match rest.split_once('@') {
                Some((_credentials, host)) => format!("{scheme}://[credentials]@{host}"),
                None => url.to_owned(),
            },
            None => url.to_owned(),
        });
        f.debug_struct("OtelConfig")
            .field("endpoint", &endpoint)
            .field("service_name", &self.service_name)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("export_interval_ms", &self.export_interval_ms)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_queued_spans", &self.max_queued_spans)
            .finish()
    }
}

impl OtelConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if self.export_interval_ms == 0 || self.timeout_ms == 0 || self.max_queued_spans == 0 {
            anyhow::bail!("[otel] export_interval_ms, timeout_ms and max_queued_spans must be at least 1");
        }
        Ok(())
    }
}

/// `[outbound]`: how functions' outbound requests find their hosts.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Names pinned to addresses, never looked up in DNS (`{ "billing.internal" = ["10.0.0.7"] }`): for names
    /// only a private network knows, and for tests. A pinned address is checked like any other: a protected one
    /// is reachable only when the function's `allowed_outbound_hosts` names it.
    pub resolve: BTreeMap<String, Vec<std::net::IpAddr>>,
}

/// `[cluster]`: make this host a member of a cluster whose queues, topics, cron claims and deployments live in a
/// NATS JetStream server (see the book, `docs/src/clusters.md`). Without `nats`, the host runs alone on SQLite.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The NATS server, e.g. `nats://127.0.0.1:4222` (`--nats` overrides it).
    pub nats: Option<String>,
    /// This node's name in the cluster (`edgefn nodes`); the host name and the process id when not set.
    pub node: Option<String>,
    /// How long a delivery pulled by a node stays its own without news from it: a node that dies holds its
    /// messages (and the stream shards it delivers) this long before another node gets them. A running delivery
    /// renews it every third of it.
    pub ack_wait_ms: u64,
    /// JetStream replicas of each stream and bucket (1 for a single nats-server; 3 for a NATS cluster).
    pub replicas: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self { nats: None, node: None, ack_wait_ms: 30_000, replicas: 1 }
    }
}

impl ClusterConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.nats
            && !(url.starts_with("nats://") || url.starts_with("tls://") || url.starts_with("ws://"))
        {
            anyhow::bail!("cluster.nats: `{url}` is not a NATS URL; expected e.g. `nats://127.0.0.1:4222`");
        }
        if !(1_000..=3_600_000).contains(&self.ack_wait_ms) {
            anyhow::bail!("cluster.ack_wait_ms: {} is out of range; expected 1000 to 3600000", self.ack_wait_ms);
        }
        if !(1..=5).contains(&self.replicas) {
            anyhow::bail!("cluster.replicas: {} is out of range; expected 1 to 5", self.replicas);
        }
        if let Some(node) = &self.node
            && (node.is_empty()
                || node.len() > 64
                || !node.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)))
        {
            anyhow::bail!("cluster.node: `{node}` must be 1 to 64 characters of A-Z a-z 0-9 - _");
        }
        Ok(())
    }
}

/// One `[streams.NAME]` table (and the defaults of a stream that has none).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    pub shards: u32,
    pub retention_hours: u64,
    pub max_mb: u64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self { shards: 4, retention_hours: 24, max_mb: 1024 }
    }
}

impl StreamConfig {
    fn validate(&self, name: &str) -> anyhow::Result<()> {
        edgefn_manifest::record::validate_queue_name("stream", name)
            .map_err(|e| anyhow::anyhow!("[streams.{name}]: {e}"))?;
        if !(1..=256).contains(&self.shards) {
            anyhow::bail!("[streams.{name}]: shards must be 1 to 256, not {}", self.shards);
        }
        if !(1..=24 * 365).contains(&self.retention_hours) {
            anyhow::bail!("[streams.{name}]: retention_hours must be 1 to 8760 (a year), not {}", self.retention_hours);
        }
        if self.max_mb == 0 {
            anyhow::bail!("[streams.{name}]: max_mb must be at least 1");
        }
        Ok(())
    }

    /// As the stream store takes it.
    pub fn settings(&self) -> crate::storage::streams::StreamSettings {
        crate::storage::streams::StreamSettings {
            shards: self.shards,
            retention_ms: i64::try_from(self.retention_hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX),
            max_bytes: self.max_mb.saturating_mul(1 << 20),
        }
    }
}

/// What an alarm watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmMetric {
    /// Invocations that ran, in the window.
    Invocations,
    /// Invocations that failed (error, trap, timeout), in the window.
    Errors,
    /// Failed over ran, in the window (0 to 1).
    ErrorRate,
    /// Invocations refused (concurrency, instances, memory), in the window.
    Throttles,
    /// The 99th percentile of wall time, in milliseconds, in the window.
    P99Ms,
    /// Failed cron runs, in the window.
    CronFailures,
    /// Messages a queue holds (ready, in flight, delayed), now.
    QueueDepth,
    /// Dead letters of a queue, now.
    DeadLetters,
    /// The oldest iterator age of a stream's consumers (optionally only `function`), in milliseconds, now.
    StreamIteratorAgeMs,
    /// How long the workflow run waiting longest for an event has waited, in milliseconds, now.
    WorkflowOldestWaitMs,
    /// Workflow runs whose step is failing and waits for its next attempt, now.
    WorkflowRunsRetrying,
}

impl AlarmMetric {
    pub fn is_queue_metric(self) -> bool {
        matches!(self, Self::QueueDepth | Self::DeadLetters)
    }

    pub fn is_stream_metric(self) -> bool {
        self == Self::StreamIteratorAgeMs
    }

    pub fn is_workflow_metric(self) -> bool {
        matches!(self, Self::WorkflowOldestWaitMs | Self::WorkflowRunsRetrying)
    }
}

/// One `[[alarms]]` rule: in breach while the metric is above `threshold`; notified once on breach and once on
/// recovery, by a JSON POST to `notify_url` and/or a message in `notify_queue`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlarmConfig {
    /// Named in notifications; by default `metric function-or-queue`.
    #[serde(default)]
    pub name: String,
    pub metric: AlarmMetric,
    /// For function metrics: `component/function`, a component or a function name; none: every function.
    pub function: Option<String>,
    /// For queue metrics: the queue.
    pub queue: Option<String>,
    /// For stream metrics: the stream.
    pub stream: Option<String>,
    pub threshold: f64,
    /// The sliding window function metrics count over, in seconds.
    #[serde(default = "default_alarm_window")]
    pub window_s: u64,
    pub notify_url: Option<String>,
    pub notify_queue: Option<String>,
}

fn default_alarm_window() -> u64 {
    60
}

impl AlarmConfig {
    /// Checks the rule and names it if it has no name.
    fn validate(&mut self, index: usize) -> anyhow::Result<()> {
        let what = format!("[[alarms]] number {}", index + 1);
        if !self.threshold.is_finite() || self.threshold < 0.0 {
            anyhow::bail!("{what}: threshold must be a number >= 0, not {}", self.threshold);
        }
        if !(1..=86_400).contains(&self.window_s) {
            anyhow::bail!("{what}: window_s must be 1 to 86400 seconds, not {}", self.window_s);
        }
        if self.notify_url.is_none() && self.notify_queue.is_none() {
            anyhow::bail!("{what}: give notify_url, notify_queue or both: where the notification goes");
        }
        if let Some(url) = &self.notify_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            anyhow::bail!("{what}: notify_url must be an http:// or https:// URL, not `{url}`");
        }
        if let Some(queue) = &self.notify_queue {
            edgefn_manifest::record::validate_queue_name("queue", queue).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        }
        match (self.metric.is_queue_metric(), &self.queue, &self.function) {
            (true, None, _) => anyhow::bail!("{what}: metric {:?} needs `queue`", self.metric),
            (true, _, Some(_)) => anyhow::bail!("{what}: metric {:?} is about a queue, not a function", self.metric),
            (false, Some(_), _) => anyhow::bail!("{what}: metric {:?} is about functions, not a queue", self.metric),
            _ => {}
        }
        match (self.metric.is_stream_metric(), &self.stream) {
            (true, None) => anyhow::bail!("{what}: metric {:?} needs `stream`", self.metric),
            (false, Some(_)) => anyhow::bail!("{what}: metric {:?} is not about a stream", self.metric),
            _ => {}
        }
        if self.metric.is_workflow_metric() && self.function.is_some() {
            anyhow::bail!("{what}: metric {:?} is about every workflow run of the host, not one function", self.metric);
        }
        if self.name.is_empty() {
            let metric = serde_json::to_value(self.metric).ok().and_then(|v| v.as_str().map(str::to_owned));
            let subject = self
                .function
                .as_deref()
                .or(self.queue.as_deref())
                .or(self.stream.as_deref())
                .unwrap_or(if self.metric.is_workflow_metric() { "all workflows" } else { "all functions" });
            self.name = format!("{} {subject}", metric.unwrap_or_default());
        }
        Ok(())
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Run each component's `#[init]` once at deploy and start instances from its snapshot (default). When off,
    /// init runs in every instance before its first request, as under any other wasi:http host.
    pub snapshot: bool,
    pub limits: Limits,
    pub components: BTreeMap<String, ComponentConfig>,
    pub authorizers: BTreeMap<String, AuthorizerConfig>,
    pub logs: LogsConfig,
    pub metrics: MetricsConfig,
    pub alarms: Vec<AlarmConfig>,
    pub cluster: ClusterConfig,
    pub outbound: OutboundConfig,
    pub otel: OtelConfig,
    pub streams: BTreeMap<String, StreamConfig>,
    /// Named rate limiters functions call (`edgefn::ratelimit::check`); a `key` here is ignored (the function
    /// gives the key).
    pub rate_limits: BTreeMap<String, RateLimitSettings>,
    /// The HTTP response cache (see [`CacheSettings`]).
    pub cache: CacheSettings,
    /// Durable workflow runs (see [`WorkflowSettings`]).
    pub workflows: WorkflowSettings,
}

/// `[workflows]`: limits of durable workflow runs.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkflowSettings {
    /// A run older than this (seconds since it started) fails, saying so, at its next resume or when it is due
    /// (its sleeps, waits and retries end no later). Default: 365 days.
    pub max_run_age_s: u64,
}

impl Default for WorkflowSettings {
    fn default() -> Self {
        Self { max_run_age_s: 365 * 86_400 }
    }
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            snapshot: true,
            limits: Limits::default(),
            components: BTreeMap::new(),
            authorizers: BTreeMap::new(),
            logs: LogsConfig::default(),
            metrics: MetricsConfig::default(),
            alarms: Vec::new(),
            cluster: ClusterConfig::default(),
            outbound: OutboundConfig::default(),
            otel: OtelConfig::default(),
            streams: BTreeMap::new(),
            rate_limits: BTreeMap::new(),
            cache: CacheSettings::default(),
            workflows: WorkflowSettings::default(),
        }
    }
}

impl HostConfig {
    /// Reads and validates a config file; errors name the file and the offending key.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("failed to read config {}", path.display()))?;
        let mut config = Self::parse(&text).with_context(|| format!("invalid config {}", path.display()))?;
        // A JWKS file named relative to the config is found next to it, wherever the host was started from.
        let base = path.parent().unwrap_or(Path::new("."));
        for authorizer in config.authorizers.values_mut() {
            if let Some(file) = authorizer.jwks_file.as_mut()
                && file.is_relative()
            {
                *file = base.join(&*file);
            }
        }
        // So is a component's folder of static files.
        for component in config.components.values_mut() {
            if let Some(dir) = component.assets.as_mut().and_then(|assets| assets.dir.as_mut())
                && dir.is_relative()
            {
                *dir = base.join(&*dir);
            }
        }
        Ok(config)
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut config: Self = toml::from_str(text)?;
        config.limits.validate()?;
        config.logs.validate()?;
        config.cluster.validate()?;
        config.otel.validate()?;
        if !(1..=100 * 365 * 86_400).contains(&config.workflows.max_run_age_s) {
            anyhow::bail!("[workflows] max_run_age_s must be 1 s to 100 years, not {}", config.workflows.max_run_age_s);
        }
        for (index, alarm) in config.alarms.iter_mut().enumerate() {
            alarm.validate(index)?;
        }
        for (name, stream) in &config.streams {
            stream.validate(name)?;
        }
        for (name, limit) in &config.rate_limits {
            limit.validate(&format!("[rate_limits.{name}]")).map_err(anyhow::Error::msg)?;
        }
        for (name, component) in &config.components {
            if let Some(assets) = &component.assets {
                assets.validate(&format!("[components.{name}]")).map_err(anyhow::Error::msg)?;
            }
            let own = std::iter::once((format!("[components.{name}]"), component.settings()));
            let functions = component
                .functions
                .iter()
                .map(|(function, settings)| (format!("[components.{name}.functions.{function}]"), settings.clone()));
            for (what, settings) in own.chain(functions) {
                if let Some(cors) = &settings.cors {
                    cors.validate(&what).map_err(anyhow::Error::msg)?;
                }
                if let Some(limit) = &settings.rate_limit {
                    limit.validate(&what).map_err(anyhow::Error::msg)?;
                }
            }
        }
        Ok(config)
    }

    /// The `[components.NAME]` table of component `name`. `-` and `_` match each other: cargo names the `.wasm`
    /// of crate `order-pipeline` `order_pipeline.wasm`, and either spelling should find its config.
    pub fn component(&self, name: &str) -> Option<&ComponentConfig> {
        let normalize = |s: &str| s.replace('-', "_");
        self.components.get(name).or_else(|| {
            let wanted = normalize(name);
            self.components.iter().find(|(key, _)| normalize(key) == wanted).map(|(_, config)| config)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_limits_and_components() {
        let config = HostConfig::parse(
            r#"
            [limits]
            timeout_ms = 500
            [components.webhook]
            env = { A = "1" }
            allowed_outbound_hosts = ["example.com"]
            "#,
        )
        .unwrap();
        assert_eq!(config.limits.runtime.timeout_ms, 500);
        assert_eq!(config.limits.runtime.memory_mb, 128);
        let webhook = config.component("webhook").unwrap();
        assert_eq!(webhook.resolve_env("webhook").unwrap(), BTreeMap::from([("A".into(), "1".into())]));
        assert_eq!(webhook.allowed_outbound_hosts, ["example.com"]);
        assert!(config.component("other").is_none());
        let dashed = HostConfig::parse("[components.order-pipeline]\nenv = { A = \"1\" }").unwrap();
        assert!(dashed.component("order_pipeline").is_some());
    }

    #[test]
    fn stream_tables_are_checked_and_named_in_their_errors() {
        let config = HostConfig::parse("[streams.clicks]\nshards = 8\n").unwrap();
        assert_eq!(config.streams["clicks"], StreamConfig { shards: 8, ..StreamConfig::default() });
        let e = HostConfig::parse("[streams.clicks]\nshards = 0\n").unwrap_err().to_string();
        assert!(e.contains("[streams.clicks]: shards"), "{e}");
        let e = HostConfig::parse("[streams.\"a b\"]\n").unwrap_err().to_string();
        assert!(e.contains("stream name"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_limits_are_refused() {
        let e = HostConfig::parse("[limits]\ntimeout = 5").unwrap_err();
        assert!(format!("{e:#}").contains("unknown field `timeout`"), "{e:#}");
        assert!(HostConfig::parse("[limits]\nmemory_mb = 0").is_err());
        let e = HostConfig::parse("[limits]\nmemory_mb = 1024").unwrap_err().to_string();
        assert!(e.contains("max_memory_mb"), "{e}");
        let e = HostConfig::parse("[components.a.functions.f]\ntimeout = 1").unwrap_err();
        assert!(format!("{e:#}").contains("unknown field `timeout`"), "{e:#}");
    }

    #[test]
    fn deploy_overrides_merge_over_the_host_config() {
        let config = HostConfig::parse(
            "[components.a]\nenv = { A = \"1\", B = \"2\" }\ntimeout_ms = 500\n[components.a.functions.f]\nmemory_mb = 32\n",
        )
        .unwrap();
        let overrides = ComponentConfig {
            env: BTreeMap::from([("B".into(), "3".into())]),
            max_concurrency: Some(4),
            functions: BTreeMap::from([("f".into(), FunctionSettings { timeout_ms: Some(10), ..Default::default() })]),
            ..Default::default()
        };
        let merged = config.component("a").unwrap().merged_with(&overrides);
        assert_eq!(merged.env, BTreeMap::from([("A".into(), "1".into()), ("B".into(), "3".into())]));
        assert_eq!((merged.timeout_ms, merged.max_concurrency), (Some(500), Some(4)));
        assert_eq!(
            merged.functions["f"],
            FunctionSettings { timeout_ms: Some(10), memory_mb: Some(32), ..FunctionSettings::default() }
        );
    }

    #[test]
    fn missing_host_variable_is_an_error_that_names_it() {
        let config =
            HostConfig::parse("[components.x]\nenv_from_host = [\"EDGEFN_TEST_SURELY_UNSET_VARIABLE\"]").unwrap();
        let e = config.component("x").unwrap().resolve_env("x").unwrap_err().to_string();
        assert!(e.contains("EDGEFN_TEST_SURELY_UNSET_VARIABLE"), "{e}");
    }
}
