//! What is live: one immutable [`LiveSet`] of deployed component versions, with the route table across them.
//!
//! Deployments build a new set for every change (deploy, rollback, promote, undeploy) and swap it in atomically
//! ([`LiveHandle`]); a request or a delivery takes the set (and the [`ComponentVersion`]) it started with and keeps
//! it to its end, so switching versions never fails a request and never serves one by a mix of versions. Building
//! a set is where conflicts are refused: a route claimed by two components, a reserved route, a queue consumed by
//! two functions.
//!
//! A component may have a canary: a second version that gets a share of its traffic ([`LiveComponent::pick`]).

use crate::capabilities::FunctionEnv;
use crate::runtime::{Artifact, InvocationLimits};
use arc_swap::ArcSwap;
use edgefn_manifest::record::{FunctionRecord, RouteAuth, Trigger};
use edgefn_manifest::route::RoutePattern;
use edgefn_manifest::router::{Lookup, MethodFilter, Router};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Semaphore;

/// Routes the host answers itself; no function may claim them.
pub const RESERVED_ROUTES: &[&str] = &["/healthz"];
/// Paths the host answers itself (signed object URLs among them); no function route may start with it.
pub const RESERVED_PREFIX: &str = "/_edgefn/";

/// A plain wasi:http component served under a route prefix.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    /// `/sample`: the component answers it and everything below it, for any method.
    pub route: String,
    /// Whether the component sees paths with the prefix removed (`/sample/echo` arrives as `/echo`); the prefix
    /// then reaches it in the `x-forwarded-prefix` header.
    #[serde(default)]
    pub strip_prefix: bool,
}

/// The settings one function runs with, resolved and checked against the host's maximums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionLimits {
    pub invocation: InvocationLimits,
    pub max_concurrency: Option<u32>,
    /// Instance reuse, for a WASI 0.3 HTTP function that asks for it.
    pub reuse: Option<crate::runtime::Reuse>,
}

/// One immutable version of a component, ready to run.
pub struct ComponentVersion {
    pub component: String,
    pub version: u32,
    /// sha256 of the component.
    pub hash: String,
    /// sha256 of the configuration it was deployed with.
    pub config_hash: String,
    pub artifact: Artifact,
    pub functions: Vec<FunctionRecord>,
    pub env: Arc<FunctionEnv>,
    pub mount: Option<Mount>,
    /// With protected routes: the token the HTTP trigger sends to say it verified a request (see
    /// [`crate::auth::RouteTokens`]).
    pub host_auth_token: Option<String>,
    limits: HashMap<String, FunctionLimits>,
    default_limits: FunctionLimits,
    cors: HashMap<String, Arc<crate::config::CorsPolicy>>,
    rate_limits: HashMap<String, Arc<crate::config::RateLimitSettings>>,
    /// Its static files, served by the host when no function route matches.
    pub assets: Option<Arc<crate::assets::AssetSite>>,
    /// Per function with a `max_concurrency`: one permit per invocation that may run.
    concurrency: HashMap<String, Arc<Semaphore>>,
    /// Per HTTP function with `reuse`: its reused instances, started with its first request. They retire when this
    /// version is dropped (no longer live, and nothing in flight holds it).
    reuse_pools: std::sync::Mutex<HashMap<String, Arc<crate::runtime::ReusePool>>>,
    /// Set once the version is no longer live: a request that started on it still gets an instance, which retires
    /// with that request.
    reuse_retired: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for ComponentVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentVersion")
            .field("component", &self.component)
            .field("version", &self.version)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// The parts of a [`ComponentVersion`].
#[derive(Debug)]
pub struct VersionParts {
    pub component: String,
    pub version: u32,
    pub hash: String,
    pub config_hash: String,
    pub artifact: Artifact,
    pub functions: Vec<FunctionRecord>,
    pub env: FunctionEnv,
    pub mount: Option<Mount>,
    pub host_auth_token: Option<String>,
    /// Resolved settings by function name; functions not listed get `default_limits`.
    pub limits: HashMap<String, FunctionLimits>,
    pub default_limits: FunctionLimits,
    /// The CORS policy of each function that has one.
    pub cors: HashMap<String, Arc<crate::config::CorsPolicy>>,
    /// The rate limit of each function that has one.
    pub rate_limits: HashMap<String, Arc<crate::config::RateLimitSettings>>,
    pub assets: Option<Arc<crate::assets::AssetSite>>,
}

impl ComponentVersion {
    pub fn new(parts: VersionParts) -> Self {
        let concurrency = parts
            .limits
            .iter()
            .filter_map(|(name, limits)| {
                Some((name.clone(), Arc::new(Semaphore::new(limits.max_concurrency? as usize))))
            })
            .collect();
        Self {
            component: parts.component,
            version: parts.version,
            hash: parts.hash,
            config_hash: parts.config_hash,
            artifact: parts.artifact,
            functions: parts.functions,
            env: Arc::new(parts.env),
            mount: parts.mount,
            host_auth_token: parts.host_auth_token,
            limits: parts.limits,
            default_limits: parts.default_limits,
            cors: parts.cors,
            rate_limits: parts.rate_limits,
            assets: parts.assets,
            concurrency,
            reuse_pools: std::sync::Mutex::default(),
            reuse_retired: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The reused instances of `function`, made with `make` the first time.
    pub fn reuse_pool<E>(
        &self,
        function: &str,
        make: impl FnOnce() -> Result<crate::runtime::ReusePool, E>,
    ) -> Result<Arc<crate::runtime::ReusePool>, E> {
        let mut pools = self.reuse_pools.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(pool) = pools.get(function) {
            return Ok(pool.clone());
        }
        let pool = Arc::new(make()?);
        if !self.reuse_retired.load(std::sync::atomic::Ordering::Acquire) {
            pools.insert(function.to_owned(), pool.clone());
        }
        Ok(pool)
    }

    /// Retires this version's reused instances: it is no longer live. Each finishes what it is serving and ends.
    pub fn retire_reused_instances(&self) {
        let mut pools = self.reuse_pools.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.reuse_retired.store(true, std::sync::atomic::Ordering::Release);
        pools.clear();
    }

    /// How many reused instances `function` has running now.
    pub fn reused_instances(&self, function: &str) -> usize {
        let pools = self.reuse_pools.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        pools.get(function).map_or(0, |pool| pool.instances())
    }

    /// `component/function`, as logs show it; a mounted component is its own only function.
    pub fn label(&self, function: &str) -> String {
        if self.mount.is_some() { self.component.clone() } else { format!("{}/{function}", self.component) }
    }

    /// The settings `function` runs with.
    pub fn limits(&self, function: &str) -> FunctionLimits {
        self.limits.get(function).copied().unwrap_or(self.default_limits)
    }

    /// The CORS policy of `function`, if it has one (then the host answers its preflights).
    pub fn cors(&self, function: &str) -> Option<&Arc<crate::config::CorsPolicy>> {
        self.cors.get(function)
    }

    /// The rate limit of `function`, if it has one.
    pub fn rate_limit(&self, function: &str) -> Option<&Arc<crate::config::RateLimitSettings>> {
        self.rate_limits.get(function)
    }

    /// The permits of `function`'s `max_concurrency`, if it has one.
    pub fn concurrency(&self, function: &str) -> Option<&Arc<Semaphore>> {
        self.concurrency.get(function)
    }

    /// The authorizer and scopes that guard HTTP function `function`, if it is protected.
    pub fn route_auth(&self, function: &str) -> Option<&RouteAuth> {
        self.functions.iter().find(|f| f.name == function).and_then(|f| match &f.trigger {
            Trigger::Http { auth, .. } | Trigger::WebSocket { auth, .. } => auth.as_ref(),
            _ => None,
        })
    }

    /// Whether this version has a function named `name` whose trigger `accepts`.
    pub fn has(&self, name: &str, accepts: impl Fn(&Trigger) -> bool) -> bool {
        self.functions.iter().any(|f| f.name == name && accepts(&f.trigger))
    }
}

/// A canary: a version that gets `percent` of its component's traffic.
#[derive(Debug, Clone)]
pub struct Canary {
    pub version: Arc<ComponentVersion>,
    pub percent: u8,
}

/// What is live of one component: a version, and maybe a canary.
#[derive(Debug)]
pub struct LiveComponent {
    pub active: Arc<ComponentVersion>,
    pub canary: Option<Canary>,
    /// Invocations split so far: the canary's share is spread evenly, not left to chance.
    picks: AtomicU64,
}

impl LiveComponent {
    pub fn new(active: Arc<ComponentVersion>, canary: Option<Canary>) -> Self {
        Self { active, canary, picks: AtomicU64::new(0) }
    }

    pub fn name(&self) -> &str {
        &self.active.component
    }

    /// The live versions: the active one, then the canary.
    pub fn versions(&self) -> impl Iterator<Item = &Arc<ComponentVersion>> {
        std::iter::once(&self.active).chain(self.canary.as_ref().map(|c| &c.version))
    }

    /// Picks the version that serves the next invocation among those `eligible` accepts (e.g. those that have the
    /// function): with a canary among them, `percent` of the picks go to it, spread evenly.
    pub fn pick(&self, eligible: impl Fn(&ComponentVersion) -> bool) -> Option<&Arc<ComponentVersion>> {
        let canary = self.canary.as_ref().filter(|c| eligible(&c.version));
        match (eligible(&self.active), canary) {
            (true, Some(canary)) => {
                // Pick n goes to the canary when floor((n+1)p/100) > floor(np/100): exactly p of every 100, evenly.
                let n = self.picks.fetch_add(1, Ordering::Relaxed);
                let percent = u64::from(canary.percent);
                let to_canary = (n + 1) * percent / 100 > n * percent / 100;
                Some(if to_canary { &canary.version } else { &self.active })
            }
            (true, None) => Some(&self.active),
            (false, Some(canary)) => Some(&canary.version),
            (false, None) => None,
        }
    }
}

/// Where a route leads: a component, and per live version the function that answers it.
#[derive(Debug, Clone)]
struct RouteTarget {
    component: String,
    /// `(version, function)` for each live version that declares the route.
    functions: Vec<(u32, String)>,
}

/// What a request path found.
#[derive(Debug)]
pub enum RouteLookup {
    Found {
        version: Arc<ComponentVersion>,
        function: String,
        params: Vec<(String, String)>,
    },
    /// The path exists, but not for this method; `allowed` lists the methods that are.
    MethodNotAllowed {
        allowed: Vec<String>,
    },
    NotFound,
}

/// Why a set of versions cannot be live together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveSetError {
    #[error("route `{method} {route}` of `{claimant}` is already claimed by `{owner}`: give one of them another route")]
    RouteConflict { method: String, route: String, claimant: String, owner: String },
    #[error("route `{route}` of `{claimant}` is reserved for the host itself; give the function another route")]
    ReservedRoute { route: String, claimant: String },
    #[error(
        "{kind} `{queue}` is consumed by both `{owner}` and `{claimant}`: a queue has one consumer (use a topic to \
         give several functions a copy of each message)"
    )]
    QueueConflict { kind: &'static str, queue: String, claimant: String, owner: String },
    #[error("function `{function}`: {reason}")]
    Invalid { function: String, reason: String },
    /// A canary declares a route with other methods than the live version does for the same path: one table
    /// cannot split it. Deploy it as the live version instead.
    #[error(
        "the canary of `{component}` answers `{method} {route}` with other methods than its live version: deploy it \
         without --canary"
    )]
    CanaryRouteMismatch { route: String, method: String, component: String },
    #[error(
        "the static files of `{claimant}` would be served at `{route}`, where `{owner}` serves its own: give one \
             of them another assets.route"
    )]
    AssetRouteConflict { route: String, claimant: String, owner: String },
}

/// Why a function could not be found by name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("no {kind} function `{name}` is deployed{}", known_list(.known))]
    NotFound { kind: &'static str, name: String, known: Vec<String> },
    #[error("`{name}` is ambiguous: {}; call it as `component/function`", .candidates.join(", "))]
    Ambiguous { name: String, candidates: Vec<String> },
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() { String::new() } else { format!(" (there are: {})", known.join(", ")) }
}

/// The queue a queue, topic or object function consumes: the queue itself, `<topic>@<function>` for a subscriber,
/// `objects.<bucket>@<component>.<function>` for an object trigger.
pub fn consumed_queue(component: &str, function: &FunctionRecord) -> Option<(String, &'static str)> {
    match &function.trigger {
        Trigger::Queue { queue, .. } => Some((queue.clone(), "queue")),
        Trigger::Topic { topic, .. } => Some((format!("{topic}@{}", function.name), "topic")),
        Trigger::Object { bucket, .. } => {
            Some((edgefn_manifest::record::object_queue(bucket, component, &function.name), "object"))
        }
        _ => None,
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct LiveSet {
    components: BTreeMap<String, Arc<LiveComponent>>,
    routes: Router<RouteTarget>,
    /// `(route, component)` of every component with static files, the longest route first.
    asset_routes: Vec<(String, String)>,
    /// WebSocket routes: which component's functions hold the connections made there.
    websocket_routes: Router<WebSocketTarget>,
}

/// Where a WebSocket connection goes: the component whose `websocket` functions hold it, the route they declare,
/// and the route's parameters in the path it was made to.
#[derive(Debug, Clone)]
pub struct WebSocketRoute {
    pub component: String,
    pub route: String,
    pub params: Vec<(String, String)>,
}

/// The component whose `websocket` functions declare a route, and the route as they write it.
#[derive(Debug, Clone)]
struct WebSocketTarget {
    component: String,
    route: String,
}

impl LiveSet {
    /// Checks that `components` can be live together and builds their route table.
    pub fn build(components: BTreeMap<String, Arc<LiveComponent>>) -> Result<Self, LiveSetError> {
        let mut routes: Router<RouteTarget> = Router::new();
        let mut queues: HashMap<String, String> = HashMap::new();
        let mut asset_routes: Vec<(String, String)> = Vec::new();
        let mut websocket_routes: Router<WebSocketTarget> = Router::new();
        // The guard of each (component, version, route) of websocket functions: they must agree, or a connection
        // could pass by the one event whose function names none.
        let mut websocket_guards: HashMap<(String, u32, String), Option<edgefn_manifest::record::RouteAuth>> =
            HashMap::new();
        for live in components.values() {
            for version in live.versions() {
                if let Some(site) = &version.assets {
                    match asset_routes.iter().find(|(route, _)| *route == site.route) {
                        Some((_, owner)) if *owner != version.component => {
                            return Err(LiveSetError::AssetRouteConflict {
                                route: site.route.clone(),
                                claimant: version.component.clone(),
                                owner: owner.clone(),
                            });
                        }
                        Some(_) => {}
                        None => asset_routes.push((site.route.clone(), version.component.clone())),
                    }
                }
                for function in &version.functions {
                    let label = version.label(&function.name);
                    if let Some((queue, kind)) = consumed_queue(&version.component, function) {
                        match queues.get(&queue) {
                            // The same function in the active version and its canary is one consumer.
                            Some(owner) if *owner != label => {
                                return Err(LiveSetError::QueueConflict {
                                    kind,
                                    queue,
                                    claimant: label,
                                    owner: owner.clone(),
                                });
                            }
                            _ => {
                                queues.insert(queue, label.clone());
                            }
                        }
                    }
                    if let Trigger::WebSocket { route, auth, .. } = &function.trigger {
                        let invalid = |reason: String| LiveSetError::Invalid { function: label.clone(), reason };
                        let key = (version.component.clone(), version.version, route.clone());
                        match websocket_guards.get(&key) {
                            Some(guard) if guard != auth => {
                                return Err(invalid(format!(
                                    "the websocket functions of route `{route}` name different `auth` or `scopes`: one \
                                     guard protects a connection, so give them all the same"
                                )));
                            }
                            Some(_) => {}
                            None => {
                                websocket_guards.insert(key, auth.clone());
                            }
                        }
                        let pattern = RoutePattern::parse(route).map_err(|e| invalid(e.to_string()))?;
                        let target = WebSocketTarget { component: version.component.clone(), route: route.clone() };
                        if let Err(conflict) = websocket_routes.insert(pattern, MethodFilter::Any, target) {
                            let owner = &conflict.existing.value;
                            if owner.component != version.component {
                                return Err(LiveSetError::RouteConflict {
                                    method: "WEBSOCKET".into(),
                                    route: route.clone(),
                                    claimant: label,
                                    owner: owner.component.clone(),
                                });
                            }
                        }
                        continue;
                    }
                    let Trigger::Http { route, method, .. } = &function.trigger else { continue };
                    let invalid = |reason: String| LiveSetError::Invalid { function: label.clone(), reason };
                    let pattern = RoutePattern::parse(route).map_err(|e| invalid(e.to_string()))?;
                    let filter = MethodFilter::parse(method).map_err(invalid)?;
                    if RESERVED_ROUTES
                        .iter()
                        .any(|reserved| RoutePattern::parse(reserved).is_ok_and(|r| r.shape() == pattern.shape()))
                        || route.starts_with(RESERVED_PREFIX)
                    {
                        return Err(LiveSetError::ReservedRoute { route: route.clone(), claimant: label });
                    }
                    let entry = (version.version, function.name.clone());
                    let target = RouteTarget { component: version.component.clone(), functions: vec![entry.clone()] };
                    if let Err(conflict) = routes.insert(pattern.clone(), filter.clone(), target) {
                        let existing = &conflict.existing.value;
                        if existing.component != version.component {
                            let owner_function = &existing.functions[0].1;
                            let owner = live_label(&components, &existing.component, owner_function);
                            return Err(LiveSetError::RouteConflict {
                                method: method.clone(),
                                route: route.clone(),
                                claimant: label,
                                owner,
                            });
                        }
                        // Two versions of one component declare the route: one entry, both versions behind it.
                        if !add_version(&mut routes, &pattern, &filter, entry) {
                            return Err(LiveSetError::CanaryRouteMismatch {
                                route: route.clone(),
                                method: method.clone(),
                                component: version.component.clone(),
                            });
                        }
                    }
                }
            }
        }
        asset_routes.sort_by_key(|(route, _)| std::cmp::Reverse(route.len()));
        Ok(Self { components, routes, asset_routes, websocket_routes })
    }

    /// This set with `live` in place of (or next to) what `live.name()` had.
    pub fn with(&self, live: LiveComponent) -> Result<Self, LiveSetError> {
        let mut components = self.components.clone();
        components.insert(live.name().to_owned(), Arc::new(live));
        Self::build(components)
    }

    /// This set without `component`.
    pub fn without(&self, component: &str) -> Self {
        let mut components = self.components.clone();
        components.remove(component);
        Self::build(components).unwrap_or_else(|_| unreachable!("removing a component cannot create a conflict"))
    }

    pub fn component(&self, name: &str) -> Option<&Arc<LiveComponent>> {
        self.components.get(name)
    }

    pub fn components(&self) -> impl Iterator<Item = &Arc<LiveComponent>> {
        self.components.values()
    }

    /// Routes a request to a version and a function.
    pub fn route(&self, method: &str, path: &str) -> RouteLookup {
        match self.routes.lookup(method, path) {
            Lookup::Found { route, params } => {
                let target = &route.value;
                let Some(live) = self.components.get(&target.component) else { return RouteLookup::NotFound };
                let Some(version) = live.pick(|v| target.functions.iter().any(|(n, _)| *n == v.version)) else {
                    return RouteLookup::NotFound;
                };
                let function = target
                    .functions
                    .iter()
                    .find(|(n, _)| *n == version.version)
                    .map(|(_, f)| f.clone())
                    .unwrap_or_default();
                RouteLookup::Found { version: version.clone(), function, params }
            }
            Lookup::MethodNotAllowed { allowed } => RouteLookup::MethodNotAllowed { allowed },
            Lookup::NotFound => RouteLookup::NotFound,
        }
    }

    /// The component whose `websocket` functions hold connections made to `path`, the route they declare, and the
    /// route's parameters.
    pub fn websocket_route(&self, path: &str) -> Option<WebSocketRoute> {
        match self.websocket_routes.lookup("GET", path) {
            Lookup::Found { route, params } => Some(WebSocketRoute {
                component: route.value.component.clone(),
                route: route.value.route.clone(),
                params,
            }),
            _ => None,
        }
    }

    /// The version whose static files answer `path`: the component with the longest assets route above it (its
    /// canary's files for the canary's share of requests).
    pub fn assets_for(&self, path: &str) -> Option<Arc<ComponentVersion>> {
        self.asset_routes.iter().find_map(|(route, component)| {
            let below = route == "/"
                || path.strip_prefix(route.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            if !below {
                return None;
            }
            self.components.get(component)?.pick(|version| version.assets.is_some()).cloned()
        })
    }

    /// Finds the function `name` (or `component/name`) whose trigger `accepts`, among every live version; `kind`
    /// names such functions in errors. Returns its component and the function's name.
    pub fn find(
        &self,
        name: &str,
        kind: &'static str,
        accepts: impl Fn(&Trigger) -> bool,
    ) -> Result<(Arc<LiveComponent>, String), LookupError> {
        let mut candidates: Vec<(Arc<LiveComponent>, String)> = Vec::new();
        let mut known = Vec::new();
        for live in self.components.values() {
            let mut names: Vec<&str> = live
                .versions()
                .flat_map(|v| v.functions.iter())
                .filter(|f| accepts(&f.trigger))
                .map(|f| f.name.as_str())
                .collect();
            names.sort_unstable();
            names.dedup();
            for function in names {
                let label = format!("{}/{function}", live.name());
                if function == name || label == name {
                    candidates.push((live.clone(), function.to_owned()));
                }
                known.push(label);
            }
        }
        match candidates.len() {
            1 => Ok(candidates.remove(0)),
            0 => Err(LookupError::NotFound { kind, name: name.to_owned(), known }),
            _ => Err(LookupError::Ambiguous {
                name: name.to_owned(),
                candidates: candidates.iter().map(|(live, f)| format!("`{}/{f}`", live.name())).collect(),
            }),
        }
    }
}

fn live_label(components: &BTreeMap<String, Arc<LiveComponent>>, component: &str, function: &str) -> String {
    match components.get(component) {
        Some(live) => live.active.label(function),
        None => format!("{component}/{function}"),
    }
}

/// Adds a version to the route with the same shape and method; false if the route there answers other methods.
fn add_version(
    routes: &mut Router<RouteTarget>,
    pattern: &RoutePattern,
    filter: &MethodFilter,
    entry: (u32, String),
) -> bool {
    match routes.routes().iter().position(|r| r.pattern.shape() == pattern.shape() && r.method == *filter) {
        Some(index) => {
            routes.value_mut(index).functions.push(entry);
            true
        }
        None => false,
    }
}

/// The live set as the triggers and the admin API read it: swapped whole, read without locks.
#[derive(Debug, Clone, Default)]
pub struct LiveHandle(Arc<ArcSwap<LiveSet>>);

impl LiveHandle {
    /// The set live now; keep it for the whole request or delivery.
    pub fn load(&self) -> Arc<LiveSet> {
        self.0.load_full()
    }

    /// Makes `set` live.
    pub fn store(&self, set: LiveSet) {
        self.0.store(Arc::new(set));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn version(component: &str, version: u32, functions: &[(&str, Trigger)]) -> Arc<ComponentVersion> {
        let limits = FunctionLimits {
            invocation: InvocationLimits { timeout: std::time::Duration::from_secs(1), memory_bytes: 1 << 20 },
            max_concurrency: None,
            reuse: None,
        };
        Arc::new(ComponentVersion::new(VersionParts {
            component: component.into(),
            version,
            hash: format!("{component}{version}"),
            config_hash: String::new(),
            artifact: Artifact { path: PathBuf::from("/nonexistent"), sha256: String::new(), checked: None },
            functions: functions
                .iter()
                .map(|(n, t)| FunctionRecord { name: (*n).into(), trigger: t.clone() })
                .collect(),
            env: FunctionEnv::default(),
            mount: None,
            host_auth_token: None,
            limits: HashMap::new(),
            default_limits: limits,
            cors: HashMap::new(),
            rate_limits: HashMap::new(),
            assets: None,
        }))
    }

    fn http(route: &str) -> Trigger {
        Trigger::Http { route: route.into(), method: "GET".into(), auth: None }
    }

    fn set(components: Vec<LiveComponent>) -> Result<LiveSet, LiveSetError> {
        LiveSet::build(components.into_iter().map(|c| (c.name().to_owned(), Arc::new(c))).collect())
    }

    #[test]
    fn a_route_claimed_by_two_components_is_refused_naming_both() {
        let a = LiveComponent::new(version("a", 1, &[("f", http("/x/{id}"))]), None);
        let b = LiveComponent::new(version("b", 1, &[("g", http("/x/{name}"))]), None);
        let error = set(vec![a, b]).unwrap_err();
        assert!(
            matches!(&error, LiveSetError::RouteConflict { claimant, owner, .. } if claimant == "b/g" && owner == "a/f"),
            "{error}"
        );
    }

    #[test]
    fn reserved_routes_and_shared_queues_are_refused() {
        let a = LiveComponent::new(version("a", 1, &[("health", http("/healthz"))]), None);
        assert!(matches!(set(vec![a]), Err(LiveSetError::ReservedRoute { .. })));
        let queue = || Trigger::Queue { queue: "orders".into(), delivery: Default::default() };
        let a = LiveComponent::new(version("a", 1, &[("p", queue())]), None);
        let b = LiveComponent::new(version("b", 1, &[("q", queue())]), None);
        assert!(matches!(set(vec![a, b]), Err(LiveSetError::QueueConflict { .. })));
        // The same consumer in a version and its canary is one consumer.
        let canary = Canary { version: version("a", 2, &[("p", queue())]), percent: 10 };
        assert!(set(vec![LiveComponent::new(version("a", 1, &[("p", queue())]), Some(canary))]).is_ok());
    }

    #[test]
    fn a_canary_gets_exactly_its_share_spread_evenly_and_routes_only_it_has() {
        let canary = Canary { version: version("a", 2, &[("f", http("/x")), ("new", http("/new"))]), percent: 10 };
        let live = set(vec![LiveComponent::new(version("a", 1, &[("f", http("/x"))]), Some(canary))]).expect("set");
        let mut to_canary = Vec::new();
        for n in 0..1_000 {
            let RouteLookup::Found { version, .. } = live.route("GET", "/x") else { panic!("/x routes") };
            if version.version == 2 {
                to_canary.push(n);
            }
        }
        assert_eq!(to_canary.len(), 100);
        assert!(to_canary.windows(2).all(|w| w[1] - w[0] == 10), "evenly spread: {to_canary:?}");
        // A route only the canary has always goes to the canary.
        for _ in 0..5 {
            let RouteLookup::Found { version, function, .. } = live.route("GET", "/new") else { panic!("/new") };
            assert_eq!((version.version, function.as_str()), (2, "new"));
        }
    }

    #[test]
    fn websocket_functions_of_one_route_must_share_their_guard() {
        use edgefn_manifest::record::{RouteAuth, WebSocketEventKind};
        let ws = |on, authorizer: Option<&str>| Trigger::WebSocket {
            route: "/chat".into(),
            on,
            auth: authorizer.map(|a| RouteAuth { authorizer: a.into(), scopes: Vec::new() }),
        };
        let guarded = [
            ("join", ws(WebSocketEventKind::Connect, Some("main"))),
            ("said", ws(WebSocketEventKind::Message, Some("main"))),
        ];
        assert!(set(vec![LiveComponent::new(version("a", 1, &guarded), None)]).is_ok());
        let open_message =
            [("join", ws(WebSocketEventKind::Connect, None)), ("said", ws(WebSocketEventKind::Message, Some("main")))];
        let error = set(vec![LiveComponent::new(version("a", 1, &open_message), None)]).unwrap_err();
        assert!(error.to_string().contains("name different `auth` or `scopes`"), "{error}");
        // Another component cannot hold connections on the same route.
        let other =
            LiveComponent::new(version("b", 1, &[("join", ws(WebSocketEventKind::Connect, Some("main")))]), None);
        let error = set(vec![LiveComponent::new(version("a", 1, &guarded), None), other]).unwrap_err();
        assert!(matches!(error, LiveSetError::RouteConflict { .. }), "{error}");
    }

    #[test]
    fn a_canary_that_changes_a_routes_methods_is_refused() {
        let any = Trigger::Http { route: "/x".into(), method: "*".into(), auth: None };
        let canary = Canary { version: version("a", 2, &[("f", any)]), percent: 10 };
        let error = set(vec![LiveComponent::new(version("a", 1, &[("f", http("/x"))]), Some(canary))]).unwrap_err();
        assert!(matches!(error, LiveSetError::CanaryRouteMismatch { .. }), "{error}");
    }

    #[test]
    fn functions_are_found_by_name_or_label_and_ambiguity_is_an_error() {
        let a = LiveComponent::new(version("a", 1, &[("tax", Trigger::Invoke)]), None);
        let b = LiveComponent::new(version("b", 1, &[("tax", Trigger::Invoke)]), None);
        let live = set(vec![a, b]).expect("set");
        let is_invoke = |t: &Trigger| matches!(t, Trigger::Invoke);
        assert!(matches!(live.find("tax", "invoke", is_invoke), Err(LookupError::Ambiguous { .. })));
        assert_eq!(live.find("b/tax", "invoke", is_invoke).expect("found").0.name(), "b");
        let error = live.find("nope", "invoke", is_invoke).unwrap_err().to_string();
        assert!(error.contains("`nope`") && error.contains("a/tax, b/tax"), "{error}");
    }
}
