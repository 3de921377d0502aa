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
//!
//! [components.webhook]        # a component, by name (crate name or .wasm file stem)
//! env = { GREETING = "hi" }   # handed to the function as its environment
//! env_from_host = ["REGION"]  # copied from the host's environment at start
//! secrets = { WEBHOOK_SECRET = "dev-only" }    # like env, and masked in everything the function prints
//! secrets_from_host = ["GITHUB_TOKEN"]         # like env_from_host, and masked too
//! allowed_outbound_hosts = ["api.github.com", "127.0.0.1:9000"]   # default: none
//! ```

use anyhow::{Context as _, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Limits every invocation runs under.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub timeout_ms: u64,
    pub memory_mb: u64,
    pub max_body_bytes: usize,
    /// Instances that may run at once: the size of the pooling allocator's pool.
    pub max_instances: u32,
    /// How long a request waits for a free instance slot before it gets a 503.
    pub queue_timeout_ms: u64,
    /// Components kept loaded (compiled code mapped, pre-linked) at once; the least recently used goes first.
    pub max_loaded: usize,
    /// A loaded component unused for this long is unloaded.
    pub idle_timeout_ms: u64,
    /// KiB of each pool slot's memory reset in place between instances instead of being released: more makes
    /// warm requests faster (no page faults) and costs resident memory per slot and a little on cold starts.
    pub keep_resident_kib: usize,
    /// Deadline of a component's deploy-time init (`#[edgefn::init]` and the SDK's start-up), which runs once and
    /// may legitimately be far slower than a request; it includes preparing the component for the snapshot.
    pub init_timeout_ms: u64,
    /// The largest queue or topic message, in bytes; a bigger one is refused at send.
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout_ms: 30_000,
            memory_mb: 128,
            max_body_bytes: 10 << 20,
            max_instances: 64,
            queue_timeout_ms: 1_000,
            max_loaded: 256,
            idle_timeout_ms: 300_000,
            keep_resident_kib: 2048,
            init_timeout_ms: 60_000,
            max_message_bytes: 1 << 20,
        }
    }
}

impl Limits {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mb << 20).unwrap_or(usize::MAX)
    }

    pub fn init_timeout(&self) -> Duration {
        Duration::from_millis(self.init_timeout_ms)
    }

    pub fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.queue_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if self.timeout_ms == 0 || self.init_timeout_ms == 0 {
            bail!("limits.timeout_ms and limits.init_timeout_ms must be at least 1");
        }
        if self.memory_mb == 0 || self.memory_mb > 4096 {
            bail!("limits.memory_mb must be between 1 and 4096 (a wasm32 memory cannot exceed 4 GiB)");
        }
        if self.max_instances == 0 || self.max_loaded == 0 {
            bail!("limits.max_instances and limits.max_loaded must be at least 1");
        }
        Ok(())
    }
}

/// Settings of one component.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComponentConfig {
    pub env: BTreeMap<String, String>,
    pub env_from_host: Vec<String>,
    /// Environment entries whose values are secret: the host masks them in the function's stdout and stderr.
    pub secrets: BTreeMap<String, String>,
    pub secrets_from_host: Vec<String>,
    pub allowed_outbound_hosts: Vec<String>,
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
}

impl Default for HostConfig {
    fn default() -> Self {
        Self { snapshot: true, limits: Limits::default(), components: BTreeMap::new() }
    }
}

impl HostConfig {
    /// Reads and validates a config file; errors name the file and the offending key.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("failed to read config {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(text)?;
        config.limits.validate()?;
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

    /// The environment of component `name`: its `env`, plus each `env_from_host` variable read from the host's
    /// environment. A listed variable that the host does not have is an error, not a silent empty secret.
    pub fn component_env(&self, name: &str) -> anyhow::Result<Vec<(String, String)>> {
        let Some(component) = self.component(name) else { return Ok(Vec::new()) };
        let mut env: Vec<(String, String)> = component.env.clone().into_iter().collect();
        env.extend(component.secrets.clone());
        for key in component.env_from_host.iter().chain(&component.secrets_from_host) {
            let value = std::env::var(key).with_context(|| {
                format!(
                    "component `{name}` lists `{key}` in env_from_host, but the host has no such environment variable"
                )
            })?;
            env.push((key.clone(), value));
        }
        Ok(env)
    }

    /// Outbound hosts component `name` may call.
    /// The names of component `name`'s secret entries (`secrets` and `secrets_from_host`).
    pub fn secret_names(&self, name: &str) -> Vec<String> {
        let Some(component) = self.component(name) else { return Vec::new() };
        component.secrets.keys().chain(&component.secrets_from_host).cloned().collect()
    }

    pub fn allowed_outbound_hosts(&self, name: &str) -> Vec<String> {
        self.component(name).map(|c| c.allowed_outbound_hosts.clone()).unwrap_or_default()
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
        assert_eq!(config.limits.timeout_ms, 500);
        assert_eq!(config.limits.memory_mb, 128);
        assert_eq!(config.component_env("webhook").unwrap(), vec![("A".into(), "1".into())]);
        assert_eq!(config.allowed_outbound_hosts("webhook"), ["example.com"]);
        assert!(config.component_env("other").unwrap().is_empty());
        let dashed = HostConfig::parse("[components.order-pipeline]\nenv = { A = \"1\" }").unwrap();
        assert_eq!(dashed.component_env("order_pipeline").unwrap(), vec![("A".into(), "1".into())]);
    }

    #[test]
    fn unknown_keys_and_bad_limits_are_refused() {
        let e = HostConfig::parse("[limits]\ntimeout = 5").unwrap_err();
        assert!(format!("{e:#}").contains("unknown field `timeout`"), "{e:#}");
        assert!(HostConfig::parse("[limits]\nmemory_mb = 0").is_err());
    }

    #[test]
    fn missing_host_variable_is_an_error_that_names_it() {
        let config =
            HostConfig::parse("[components.x]\nenv_from_host = [\"EDGEFN_TEST_SURELY_UNSET_VARIABLE\"]").unwrap();
        let e = config.component_env("x").unwrap_err().to_string();
        assert!(e.contains("EDGEFN_TEST_SURELY_UNSET_VARIABLE"), "{e}");
    }
}
