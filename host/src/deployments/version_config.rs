//! The configuration a version is deployed with: part of the version, hashed, stored with it, and what its
//! snapshot and artifact are keyed by (a config change never reuses a stale snapshot).

use super::DeployError;
use crate::capabilities::FunctionEnv;
use crate::capabilities::outbound::OutboundPolicy;
use crate::config::{ComponentConfig, FunctionSettings, HostConfig, RuntimeLimits};
use crate::live::{FunctionLimits, Mount};
use crate::runtime::InvocationLimits;
use crate::storage::sealing::SecretsKey;
use edgefn_manifest::record::FunctionRecord;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// See the module docs. Serialized as JSON in the version's row; maps are ordered, so equal configs hash equally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionConfig {
    /// The environment, resolved at deploy (`*_from_host` variables read then), secrets included.
    pub env: BTreeMap<String, String>,
    /// Which entries of `env` are secret.
    pub secrets: BTreeSet<String>,
    pub allowed_outbound_hosts: Vec<String>,
    /// The component's own settings; unset ones come from the host's `[limits]`.
    pub settings: FunctionSettings,
    /// Settings of single functions, over the component's.
    pub functions: BTreeMap<String, FunctionSettings>,
    pub mount: Option<Mount>,
    /// Whether instances start from a snapshot taken after init at deploy.
    pub snapshot: bool,
    /// The key-value stores it may open. Left out of the JSON when empty, so versions recorded before it existed
    /// keep their hash.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub key_value_stores: BTreeSet<String>,
    /// The object buckets it may use. Left out of the JSON when empty, for the same reason.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub object_buckets: BTreeSet<String>,
    /// Keep failed invocations' input for replay. Left out of the JSON when off, for the same reason.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub record_failures: bool,
    /// Its static files: the bundle they were deployed in, where and how they are served. Left out when it has
    /// none, for the same reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assets: Option<crate::config::AssetSettings>,
    /// What the deploy set over the host's `[components.NAME]`, as given (JSON of a `ComponentConfig`), so that a
    /// cluster can deploy this version on nodes with their own host config. Left out when there were none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<serde_json::Value>,
}

impl VersionConfig {
    /// The configuration of a deploy of `name`: the host's `[components.NAME]`, with the deploy's `overrides` over it.
    pub fn resolve(
        name: &str,
        host: &HostConfig,
        overrides: &ComponentConfig,
        mount: Option<Mount>,
    ) -> Result<Self, DeployError> {
        let merged = host.component(name).cloned().unwrap_or_default().merged_with(overrides);
        let env = merged.resolve_env(name).map_err(|e| DeployError::Config(format!("{e:#}")))?;
        for store in &merged.key_value_stores {
            crate::capabilities::kv::validate_store_name(store).map_err(DeployError::Config)?;
        }
        for bucket in &merged.object_buckets {
            edgefn_manifest::record::validate_bucket_name(bucket).map_err(DeployError::Config)?;
        }
        if let Some(assets) = &merged.assets {
            assets.validate(&format!("component `{name}`")).map_err(DeployError::Config)?;
        }
        Ok(Self {
            env,
            secrets: merged.secret_names(),
            allowed_outbound_hosts: merged.allowed_outbound_hosts.clone(),
            settings: merged.settings(),
            functions: merged.functions,
            // A plain component has no SDK, so no init to snapshot.
            snapshot: host.snapshot && mount.is_none(),
            mount,
            key_value_stores: merged.key_value_stores.iter().cloned().collect(),
            object_buckets: merged.object_buckets.iter().cloned().collect(),
            record_failures: merged.record_failures,
            // Settings without deployed files serve nothing (a deploy with a folder sets the bundle).
            assets: merged.assets.filter(|assets| assets.bundle.is_some()).map(|assets| assets.for_version()),
            overrides: Self::overrides_json(overrides),
        })
    }

    /// `overrides` as stored: `None` when they set nothing.
    pub fn overrides_json(overrides: &ComponentConfig) -> Option<serde_json::Value> {
        let value = serde_json::to_value(overrides).ok()?;
        (value != serde_json::to_value(ComponentConfig::default()).ok()?).then_some(value)
    }

    /// The overrides it was deployed with.
    pub fn overrides(&self) -> ComponentConfig {
        self.overrides.clone().and_then(|value| serde_json::from_value(value).ok()).unwrap_or_default()
    }

    /// sha256 of the canonical JSON.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.to_json().as_bytes()))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| unreachable!("a VersionConfig always serializes"))
    }

    pub fn from_json(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|e| format!("stored version configuration is unreadable: {e}"))
    }

    /// The JSON a version's row stores: [`to_json`](Self::to_json) with every secret value sealed under `key`, in
    /// the environment and in the deploy's overrides (see `storage::sealing`). The hash stays that of the clear
    /// form, so sealing (a fresh nonce each time) never makes a version look changed.
    pub fn to_stored_json(&self, key: &SecretsKey) -> String {
        let mut stored = self.clone();
        for name in &self.secrets {
            if let Some(value) = stored.env.get_mut(name) {
                *value = key.seal(value);
            }
        }
        if let Some(secrets) = stored.override_secrets_mut() {
            for value in secrets.values_mut() {
                if let Some(text) = value.as_str() {
                    *value = serde_json::Value::String(key.seal(text));
                }
            }
        }
        stored.to_json()
    }

    /// The secrets the deploy's overrides set (`overrides.secrets`), to seal or open in place.
    fn override_secrets_mut(&mut self) -> Option<&mut serde_json::Map<String, serde_json::Value>> {
        self.overrides.as_mut()?.get_mut("secrets")?.as_object_mut()
    }

    /// A version's configuration from its row, its secrets opened with `key`. A row stored before secrets were
    /// sealed holds them in clear, and reads as it is.
    pub fn from_stored_json(json: &str, key: &SecretsKey) -> Result<Self, String> {
        let mut config = Self::from_json(json)?;
        let open = |name: &str, value: &mut String| -> Result<(), String> {
            if SecretsKey::is_sealed(value) {
                *value = key.unseal(value).map_err(|error| format!("secret `{name}` cannot be opened: {error}"))?;
            }
            Ok(())
        };
        for name in &config.secrets {
            if let Some(value) = config.env.get_mut(name) {
                open(name, value)?;
            }
        }
        if let Some(secrets) = config.override_secrets_mut() {
            for (name, value) in secrets.iter_mut() {
                if let Some(text) = value.as_str() {
                    let mut text = text.to_owned();
                    open(name, &mut text)?;
                    *value = serde_json::Value::String(text);
                }
            }
        }
        Ok(config)
    }

    /// What the function gets at each invocation: environment, secrets to mask, outbound allowlist.
    pub fn function_env(&self) -> FunctionEnv {
        let secrets = self
            .env
            .iter()
            .filter(|(key, value)| self.secrets.contains(*key) && !value.is_empty())
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        FunctionEnv {
            env: self.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            secrets: Arc::new(secrets),
            outbound: OutboundPolicy::allow(self.allowed_outbound_hosts.iter().cloned()),
            kv_stores: self.key_value_stores.iter().cloned().collect(),
            object_buckets: self.object_buckets.iter().cloned().collect(),
            record_failures: self.record_failures,
        }
    }

    /// What a component's deploy-time init gets: [`function_env`](Self::function_env) without the secret values.
    /// Init's memory is stored on disk as the snapshot every instance starts from, and a secret must never be
    /// (secrets are sealed at rest); a function reads its secrets when it runs.
    pub fn init_env(&self) -> FunctionEnv {
        let mut env = self.function_env();
        env.env.retain(|(name, _)| !self.secrets.contains(name));
        env
    }

    /// The settings each of `functions` runs with, checked against the host's maximums; and those of anything
    /// else (a mounted component). Errors name the component or function, the setting, and the allowed range.
    pub fn limits(
        &self,
        component: &str,
        functions: &[FunctionRecord],
        host: &RuntimeLimits,
    ) -> Result<(HashMap<String, FunctionLimits>, FunctionLimits), DeployError> {
        for name in self.functions.keys() {
            if self.mount.is_none() && !functions.iter().any(|f| &f.name == name) {
                let known: Vec<&str> = functions.iter().map(|f| f.name.as_str()).collect();
                return Err(DeployError::Settings(format!(
                    "settings for function `{name}`, but component `{component}` has no such function (it has: {})",
                    known.join(", ")
                )));
            }
        }
        let default = resolve(&format!("component `{component}`"), &self.settings, host)?;
        let mut limits = HashMap::new();
        for function in functions {
            if let edgefn_manifest::record::Trigger::Object { bucket, .. } = &function.trigger {
                let queue = edgefn_manifest::record::object_queue(bucket, component, &function.name);
                edgefn_manifest::record::validate_queue_name("object trigger queue", &queue).map_err(|error| {
                    DeployError::Config(format!("function `{component}/{}`: {error}", function.name))
                })?;
            }
            if let edgefn_manifest::record::Trigger::Object { bucket, .. } = &function.trigger
                && !self.object_buckets.contains(bucket)
            {
                return Err(DeployError::Config(format!(
                    "function `{component}/{}` follows object bucket `{bucket}`, which the component is not granted: \
                     add it to `object_buckets` in [components.{component}] (or `edgefn deploy --object-bucket {bucket}`)",
                    function.name
                )));
            }
            let own = self.functions.get(&function.name).cloned().unwrap_or_default();
            let settings = own.or(&self.settings);
            limits.insert(
                function.name.clone(),
                resolve(&format!("function `{component}/{}`", function.name), &settings, host)?,
            );
        }
        Ok((limits, default))
    }

    /// The CORS policy of each function that has one: its own `cors`, else the component's. Settings that do not
    /// hold (an origin that is not one, `*` with credentials) refuse the deploy, naming the function.
    pub fn cors(
        &self,
        component: &str,
        functions: &[FunctionRecord],
    ) -> Result<HashMap<String, Arc<crate::config::CorsPolicy>>, DeployError> {
        self.per_function(
            component,
            functions,
            |settings| settings.cors.as_ref(),
            |cors, what| {
                cors.validate(what)?;
                Ok(crate::config::CorsPolicy::new(cors))
            },
        )
    }

    /// The rate limit of each function that has one: its own, else the component's; settings that do not hold
    /// refuse the deploy, naming the function.
    pub fn rate_limits(
        &self,
        component: &str,
        functions: &[FunctionRecord],
    ) -> Result<HashMap<String, Arc<crate::config::RateLimitSettings>>, DeployError> {
        self.per_function(
            component,
            functions,
            |settings| settings.rate_limit.as_ref(),
            |limit, what| {
                limit.validate(what)?;
                Ok(limit.clone())
            },
        )
    }

    /// For each function with a `setting` (its own, else the component's): what `build` makes of it, or the deploy
    /// refused with `build`'s reason, naming the function.
    fn per_function<S, T>(
        &self,
        component: &str,
        functions: &[FunctionRecord],
        setting: impl Fn(&FunctionSettings) -> Option<&S>,
        build: impl Fn(&S, &str) -> Result<T, String>,
    ) -> Result<HashMap<String, Arc<T>>, DeployError> {
        let mut built = HashMap::new();
        for function in functions {
            let own = self.functions.get(&function.name).and_then(&setting);
            let Some(value) = own.or(setting(&self.settings)) else { continue };
            let what = format!("function `{component}/{}`", function.name);
            built.insert(function.name.clone(), Arc::new(build(value, &what).map_err(DeployError::Config)?));
        }
        Ok(built)
    }

    /// The configuration as an operator may see it: secret values replaced.
    pub fn redacted(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        // What was overridden shows in the resolved fields, redacted there; the overrides may hold secrets.
        if let Some(fields) = value.as_object_mut() {
            fields.remove("overrides");
        }
        if let Some(env) = value.get_mut("env").and_then(serde_json::Value::as_object_mut) {
            for (key, entry) in env.iter_mut() {
                if self.secrets.contains(key) {
                    *entry = serde_json::Value::String("[secret]".into());
                }
            }
        }
        value
    }
}

/// `settings` with the host's defaults filled in, checked against its maximums.
fn resolve(what: &str, settings: &FunctionSettings, host: &RuntimeLimits) -> Result<FunctionLimits, DeployError> {
    let timeout_ms = settings.timeout_ms.unwrap_or(host.timeout_ms);
    if timeout_ms == 0 || timeout_ms > host.max_timeout_ms {
        return Err(DeployError::Settings(format!(
            "{what}: timeout_ms = {timeout_ms} is outside 1..={} (the host's limits.max_timeout_ms)",
            host.max_timeout_ms
        )));
    }
    let memory_mb = settings.memory_mb.unwrap_or(host.memory_mb);
    if memory_mb == 0 || memory_mb > host.max_memory_mb {
        return Err(DeployError::Settings(format!(
            "{what}: memory_mb = {memory_mb} is outside 1..={} (the host's limits.max_memory_mb)",
            host.max_memory_mb
        )));
    }
    if let Some(concurrency) = settings.max_concurrency
        && (concurrency == 0 || concurrency > host.max_instances)
    {
        return Err(DeployError::Settings(format!(
            "{what}: max_concurrency = {concurrency} is outside 1..={} (the host's limits.max_instances)",
            host.max_instances
        )));
    }
    let reuse = match settings.reuse {
        None => None,
        Some(reuse) => {
            let range = |name: &str, value: u64, max: u64| {
                if value == 0 || value > max {
                    return Err(DeployError::Settings(format!("{what}: reuse.{name} = {value} is outside 1..={max}")));
                }
                Ok(())
            };
            range("max_requests", reuse.max_requests.into(), 1_000_000)?;
            range("max_concurrent", reuse.max_concurrent.into(), 1024)?;
            range("idle_ms", reuse.idle_ms, 3_600_000)?;
            Some(crate::runtime::Reuse {
                max_requests: reuse.max_requests,
                max_concurrent: reuse.max_concurrent,
                idle: Duration::from_millis(reuse.idle_ms),
            })
        }
    };
    Ok(FunctionLimits {
        reuse,
        invocation: InvocationLimits {
            timeout: Duration::from_millis(timeout_ms),
            memory_bytes: usize::try_from(memory_mb << 20).unwrap_or(usize::MAX),
        },
        // Unless it says otherwise, one function runs in at most half the instance slots: busy or hostile, it
        // leaves the other half to its neighbours.
        max_concurrency: Some(settings.max_concurrency.unwrap_or((host.max_instances / 2).max(1))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgefn_manifest::record::Trigger;

    fn functions() -> Vec<FunctionRecord> {
        ["a", "b"]
            .iter()
            .map(|n| FunctionRecord {
                name: (*n).into(),
                trigger: Trigger::Http { route: format!("/{n}"), method: "GET".into(), auth: None },
            })
            .collect()
    }

    fn config(toml: &str, overrides: ComponentConfig) -> VersionConfig {
        VersionConfig::resolve("c", &HostConfig::parse(toml).unwrap(), &overrides, None).unwrap()
    }

    #[test]
    fn function_settings_override_the_component_which_overrides_the_host() {
        let config = config(
            "[components.c]\ntimeout_ms = 500\n[components.c.functions.a]\nmemory_mb = 32\n",
            ComponentConfig::default(),
        );
        let (limits, default) = config.limits("c", &functions(), &RuntimeLimits::default()).unwrap();
        assert_eq!(
            limits["a"].invocation,
            InvocationLimits { timeout: Duration::from_millis(500), memory_bytes: 32 << 20 }
        );
        assert_eq!(limits["b"].invocation.memory_bytes, 128 << 20);
        assert_eq!(default.invocation.timeout, Duration::from_millis(500));
    }

    #[test]
    fn settings_past_the_host_maximums_are_refused_with_the_range() {
        let overrides = ComponentConfig { memory_mb: Some(4096), ..Default::default() };
        let error = config("", overrides).limits("c", &functions(), &RuntimeLimits::default()).unwrap_err().to_string();
        assert!(error.contains("component `c`: memory_mb = 4096 is outside 1..=512"), "{error}");
        let overrides = ComponentConfig {
            functions: BTreeMap::from([(
                "a".into(),
                FunctionSettings { max_concurrency: Some(1000), ..Default::default() },
            )]),
            ..Default::default()
        };
        let error = config("", overrides).limits("c", &functions(), &RuntimeLimits::default()).unwrap_err().to_string();
        assert!(error.contains("function `c/a`: max_concurrency = 1000 is outside 1..=64"), "{error}");
        let overrides = ComponentConfig {
            functions: BTreeMap::from([("typo".into(), FunctionSettings::default())]),
            ..Default::default()
        };
        let error = config("", overrides).limits("c", &functions(), &RuntimeLimits::default()).unwrap_err().to_string();
        assert!(error.contains("no such function (it has: a, b)"), "{error}");
    }

    #[test]
    fn the_hash_follows_the_configuration_and_secrets_are_redacted() {
        let plain =
            config("[components.c]\nenv = { A = \"1\" }\nsecrets = { S = \"hunter2\" }\n", ComponentConfig::default());
        let changed =
            config("[components.c]\nenv = { A = \"2\" }\nsecrets = { S = \"hunter2\" }\n", ComponentConfig::default());
        assert_ne!(plain.hash(), changed.hash());
        assert_eq!(plain.hash(), VersionConfig::from_json(&plain.to_json()).unwrap().hash());
        let shown = plain.redacted().to_string();
        assert!(!shown.contains("hunter2") && shown.contains("[secret]"), "{shown}");
        assert_eq!(plain.function_env().secrets.as_slice(), [("S".to_owned(), "hunter2".to_owned())]);
    }

    #[test]
    fn stored_secrets_are_sealed_in_env_and_overrides_and_init_never_sees_them() {
        let overrides = ComponentConfig {
            secrets: BTreeMap::from([("T".to_owned(), "swordfish".to_owned())]),
            ..Default::default()
        };
        let config = config("[components.c]\nenv = { A = \"1\" }\nsecrets = { S = \"hunter2\" }\n", overrides);
        let key = SecretsKey::from_text("test key", "test".into());
        let stored = config.to_stored_json(&key);
        assert!(!stored.contains("hunter2") && !stored.contains("swordfish"), "{stored}");
        assert!(stored.contains("\"A\":\"1\""), "plain values stay readable: {stored}");
        let restored = VersionConfig::from_stored_json(&stored, &key).expect("opens with its key");
        assert_eq!(restored, config);
        assert_eq!(restored.hash(), config.hash(), "sealing never changes the hash");
        let other = SecretsKey::from_text("another key", "test".into());
        let refused = VersionConfig::from_stored_json(&stored, &other).unwrap_err();
        assert!(refused.contains("sealed under key"), "{refused}");
        // A row stored before sealing reads as it is.
        assert_eq!(VersionConfig::from_stored_json(&config.to_json(), &key).expect("clear"), config);
        let init = config.init_env();
        assert!(init.env.iter().all(|(name, _)| name != "S" && name != "T"), "{:?}", init.env);
        assert!(init.env.iter().any(|(name, value)| name == "A" && value == "1"));
    }
}
