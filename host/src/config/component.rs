//! One component's settings (`[components.NAME]`, and what a deploy sets over them): environment, secrets,
//! outbound hosts, deadlines and memory, concurrency and instance reuse, per-function settings, and the key-value
//! stores and object buckets it is granted.

use anyhow::Context as _;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Per-function settings, as a component or function sets them; unset means "inherit" (function from component,
/// component from the host's `[limits]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FunctionSettings {
    /// Wall-clock deadline of one invocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Memory cap of one instance; what pay-per-use metering charges for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Invocations of the function that may run at once (the rest wait briefly, then are throttled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Let one instance serve several HTTP requests (WASI 0.3 components only); unset, each gets a fresh instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reuse: Option<ReuseSettings>,
    /// Which browser origins may call its HTTP functions (see [`super::CorsSettings`]); unset, the host adds no
    /// CORS headers and leaves `OPTIONS` to the function.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<super::CorsSettings>,
    /// How many requests a client may make to its HTTP functions (see [`super::RateLimitSettings`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<super::RateLimitSettings>,
}

/// How far one instance of a WASI 0.3 function may be reused: `reuse = { max_requests = 128, max_concurrent = 16,
/// idle_ms = 1000 }` (unset fields take these defaults, as Spin and `wasmtime serve` have them). What an instance
/// keeps in memory between requests (globals, caches) is then shared by the requests it serves, and one that traps
/// fails the requests it was serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReuseSettings {
    /// Requests one instance serves before it is retired.
    pub max_requests: u32,
    /// Requests one instance serves at once.
    pub max_concurrent: u32,
    /// An instance idle for this long is retired.
    pub idle_ms: u64,
}

impl Default for ReuseSettings {
    fn default() -> Self {
        Self { max_requests: 128, max_concurrent: 16, idle_ms: 1000 }
    }
}

impl std::str::FromStr for ReuseSettings {
    type Err = String;

    /// `max_requests=128,max_concurrent=16,idle_ms=1000`, any of them (the others take their defaults).
    fn from_str(text: &str) -> Result<Self, String> {
        let mut reuse = ReuseSettings::default();
        for pair in text.split(',').filter(|pair| !pair.trim().is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| format!("`{pair}` is not KEY=VALUE"))?;
            let number =
                |value: &str| value.trim().parse::<u64>().map_err(|_| format!("`{key}` takes a number, not `{value}`"));
            match key.trim() {
                "max_requests" => reuse.max_requests = u32::try_from(number(value)?).map_err(|e| e.to_string())?,
                "max_concurrent" => reuse.max_concurrent = u32::try_from(number(value)?).map_err(|e| e.to_string())?,
                "idle_ms" => reuse.idle_ms = number(value)?,
                other => {
                    return Err(format!(
                        "unknown reuse setting `{other}`; expected max_requests, max_concurrent or idle_ms"
                    ));
                }
            }
        }
        Ok(reuse)
    }
}

impl FunctionSettings {
    /// `self`, with every setting it leaves unset taken from `fallback`.
    pub fn or(&self, fallback: &FunctionSettings) -> FunctionSettings {
        FunctionSettings {
            timeout_ms: self.timeout_ms.or(fallback.timeout_ms),
            memory_mb: self.memory_mb.or(fallback.memory_mb),
            max_concurrency: self.max_concurrency.or(fallback.max_concurrency),
            reuse: self.reuse.or(fallback.reuse),
            cors: self.cors.clone().or_else(|| fallback.cors.clone()),
            rate_limit: self.rate_limit.clone().or_else(|| fallback.rate_limit.clone()),
        }
    }
}

/// Settings of one component.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComponentConfig {
    pub env: BTreeMap<String, String>,
    pub env_from_host: Vec<String>,
    /// Environment entries whose values are secret: the host masks them in the function's stdout and stderr.
    pub secrets: BTreeMap<String, String>,
    pub secrets_from_host: Vec<String>,
    pub allowed_outbound_hosts: Vec<String>,
    pub timeout_ms: Option<u64>,
    pub memory_mb: Option<u64>,
    pub max_concurrency: Option<u32>,
    /// Instance reuse for every HTTP function of a WASI 0.3 component (see [`ReuseSettings`]).
    pub reuse: Option<ReuseSettings>,
    /// Which browser origins may call its HTTP functions (see [`super::CorsSettings`]).
    pub cors: Option<super::CorsSettings>,
    /// How many requests a client may make to its HTTP functions (see [`super::RateLimitSettings`]).
    pub rate_limit: Option<super::RateLimitSettings>,
    /// Settings of single functions, by function name, over the component's.
    pub functions: BTreeMap<String, FunctionSettings>,
    /// Its static files (see [`super::AssetSettings`]). Left out of the JSON when unset, so stored overrides from
    /// before it existed read the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assets: Option<super::AssetSettings>,
    /// The key-value stores the component may open.
    pub key_value_stores: Vec<String>,
    /// The object buckets the component may use (and whose changes its `object` triggers may follow).
    pub object_buckets: Vec<String>,
    /// Keep the input of each failed invocation (size-capped, credentials left out, with the log's retention), so
    /// that `edgefn replay ID` can run it again.
    pub record_failures: bool,
}

impl ComponentConfig {
    /// The component-wide settings.
    pub fn settings(&self) -> FunctionSettings {
        FunctionSettings {
            timeout_ms: self.timeout_ms,
            memory_mb: self.memory_mb,
            max_concurrency: self.max_concurrency,
            reuse: self.reuse,
            cors: self.cors.clone(),
            rate_limit: self.rate_limit.clone(),
        }
    }

    /// `self` with `overrides` applied: maps are merged (the override's entry wins), lists and settings the override
    /// sets replace this one's. Used for a deploy's flags over the host's `[components.NAME]`.
    pub fn merged_with(&self, overrides: &ComponentConfig) -> ComponentConfig {
        let mut merged = self.clone();
        merged.env.extend(overrides.env.clone());
        merged.secrets.extend(overrides.secrets.clone());
        for (list, extra) in [
            (&mut merged.env_from_host, &overrides.env_from_host),
            (&mut merged.secrets_from_host, &overrides.secrets_from_host),
        ] {
            for name in extra {
                if !list.contains(name) {
                    list.push(name.clone());
                }
            }
        }
        if !overrides.allowed_outbound_hosts.is_empty() {
            merged.allowed_outbound_hosts = overrides.allowed_outbound_hosts.clone();
        }
        for store in &overrides.key_value_stores {
            if !merged.key_value_stores.contains(store) {
                merged.key_value_stores.push(store.clone());
            }
        }
        for bucket in &overrides.object_buckets {
            if !merged.object_buckets.contains(bucket) {
                merged.object_buckets.push(bucket.clone());
            }
        }
        merged.assets = match (&self.assets, &overrides.assets) {
            (Some(host), Some(deploy)) => Some(host.merged_with(deploy)),
            (host, deploy) => deploy.clone().or_else(|| host.clone()),
        };
        // A deploy may turn recording on; it cannot turn off what the host's config asks for.
        merged.record_failures |= overrides.record_failures;
        let settings = overrides.settings().or(&self.settings());
        (merged.timeout_ms, merged.memory_mb, merged.max_concurrency, merged.reuse) =
            (settings.timeout_ms, settings.memory_mb, settings.max_concurrency, settings.reuse);
        (merged.cors, merged.rate_limit) = (settings.cors, settings.rate_limit);
        for (function, settings) in &overrides.functions {
            let base = merged.functions.get(function).cloned().unwrap_or_default();
            merged.functions.insert(function.clone(), settings.or(&base));
        }
        merged
    }

    /// The environment: `env`, `secrets`, and each `*_from_host` variable read from the host's environment. A
    /// listed variable that the host does not have is an error, not a silent empty secret.
    pub fn resolve_env(&self, component: &str) -> anyhow::Result<BTreeMap<String, String>> {
        let mut env = self.env.clone();
        env.extend(self.secrets.clone());
        for (list, key) in self
            .env_from_host
            .iter()
            .map(|k| ("env_from_host", k))
            .chain(self.secrets_from_host.iter().map(|k| ("secrets_from_host", k)))
        {
            let value = std::env::var(key).with_context(|| {
                format!(
                    "component `{component}` lists `{key}` in {list}, but the host has no such environment variable"
                )
            })?;
            env.insert(key.clone(), value);
        }
        Ok(env)
    }

    /// The names of the secret entries (`secrets` and `secrets_from_host`).
    pub fn secret_names(&self) -> std::collections::BTreeSet<String> {
        self.secrets.keys().chain(&self.secrets_from_host).cloned().collect()
    }
}
