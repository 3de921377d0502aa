//! Turning the paths given to `edgefn up` into deployed components and one route table.
//!
//! Each source is resolved (a crate is built, a file is read), inspected, compiled and pre-linked, and recorded
//! in the database. A source that fails is reported with its path and reason and skipped, so one bad component
//! does not take the others down; two components claiming one route is a configuration error and stops the start.

use crate::build;
use crate::component::{self, Inspection};
use crate::config::HostConfig;
use crate::registry::{InstallRequest, Registry};
use crate::runtime::{FunctionEnv, OutboundPolicy};
use crate::storage::Db;
use anyhow::{Context as _, anyhow, bail};
use edgefn_manifest::record::{FunctionRecord, Trigger};
use edgefn_manifest::router::Router;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What to deploy.
#[derive(Debug, Clone)]
pub enum Source {
    /// A function crate directory or a `.wasm` built with the SDK.
    Path(PathBuf),
    /// A plain wasi:http component, served under `route` and everything below it.
    Mount { route: String, path: PathBuf },
}

impl Source {
    fn path(&self) -> &Path {
        match self {
            Source::Path(path) | Source::Mount { path, .. } => path,
        }
    }
}

/// A component that is ready to serve.
#[derive(Debug)]
pub struct Deployed {
    /// Crate name or file stem; the key of its `[components.NAME]` config.
    pub name: String,
    pub wasm_path: PathBuf,
    pub inspection: Inspection,
    /// The compiled artifact, loaded on demand by the registry.
    pub artifact: PathBuf,
    pub env: FunctionEnv,
    /// Set for a plain wasi:http component mounted with `--mount`: it has no functions of its own.
    pub mounted: bool,
}

/// Where a route leads: a component, and the function inside it.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    pub component: Arc<Deployed>,
    /// The function's name, or `None` for a mounted plain component.
    pub function: Option<String>,
}

impl RouteTarget {
    /// `component/function`, as shown in logs.
    pub fn label(&self) -> String {
        match &self.function {
            Some(function) => format!("{}/{function}", self.component.name),
            None => self.component.name.clone(),
        }
    }
}

/// The outcome of deploying every source.
#[derive(Debug)]
pub struct Deployment {
    pub components: Vec<Arc<Deployed>>,
    /// Sources that were refused, with the reason; the host serves the rest.
    pub refused: Vec<(PathBuf, anyhow::Error)>,
}

/// Deploys every source; see the module docs for what happens on failure.
pub fn deploy_all(registry: &Registry, config: &HostConfig, db: &Db, sources: &[Source]) -> Deployment {
    let mut components = Vec::new();
    let mut refused = Vec::new();
    for source in sources {
        match deploy_one(registry, config, db, source) {
            Ok(deployed) => components.push(Arc::new(deployed)),
            Err(error) => refused.push((source.path().to_owned(), error)),
        }
    }
    Deployment { components, refused }
}

fn deploy_one(registry: &Registry, config: &HostConfig, db: &Db, source: &Source) -> anyhow::Result<Deployed> {
    let path = source.path();
    let (name, wasm_path) = if path.is_dir() {
        let wasm_path = build::build_crate(path)?;
        (crate_name(&wasm_path), wasm_path)
    } else {
        (crate_name(path), path.to_owned())
    };
    let wasm = std::fs::read(&wasm_path).with_context(|| format!("failed to read {}", wasm_path.display()))?;
    let mut inspection = component::inspect(&wasm)?;
    match source {
        Source::Path(_) if inspection.functions.is_empty() => bail!(
            "it has no edgefn manifest (no #[function] in it): to serve a plain wasi:http component, \
             mount it at a route with `--mount /route={}`",
            path.display()
        ),
        Source::Path(_) => {}
        Source::Mount { route, .. } => {
            // A mounted component answers its route and everything below it, for any method.
            let pattern = if route == "/" { "/{*path}".to_owned() } else { format!("{route}/{{*path}}") };
            inspection.functions = vec![FunctionRecord {
                name: name.clone(),
                trigger: Trigger::Http { route: pattern, method: "*".into() },
            }];
        }
    }
    let component_env = config.component_env(&name)?;
    let secret_names = config.secret_names(&name);
    let secrets = component_env
        .iter()
        .filter(|(key, value)| secret_names.contains(key) && !value.is_empty())
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let env = FunctionEnv {
        secrets: std::sync::Arc::new(secrets),
        env: component_env,
        outbound: OutboundPolicy::allow(config.allowed_outbound_hosts(&name)),
    };
    let request = InstallRequest {
        name: &name,
        wasm: &wasm,
        hash: &inspection.hash,
        // Every SDK component (it has a manifest; a mounted plain component has none of its own) exports
        // `wizer-initialize`: snapshotting it moves init and the SDK's own start-up (its route table) to deploy.
        init_env: (config.snapshot && matches!(source, Source::Path(_))).then_some(&env),
    };
    let artifact = registry.install(db, &request)?;
    let triggers = serde_json::to_string(&inspection.functions)?;
    db.record_deployment(&name, &inspection.hash, &wasm_path.to_string_lossy(), &triggers)
        .context("failed to record the deployment")?;
    let mounted = matches!(source, Source::Mount { .. });
    Ok(Deployed { name, wasm_path, inspection, artifact, env, mounted })
}

/// `hello` for `.../hello.wasm`: cargo names the artifact after the crate (with `-` turned into `_`).
fn crate_name(wasm_path: &Path) -> String {
    wasm_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "component".into())
}

/// Builds the route table across all components. A route claimed twice is an error naming both claimants.
pub fn route_table(components: &[Arc<Deployed>]) -> anyhow::Result<Router<RouteTarget>> {
    let mut router = Router::new();
    for component in components {
        for function in &component.inspection.functions {
            let Trigger::Http { route, method } = &function.trigger else { continue };
            let pattern = edgefn_manifest::route::RoutePattern::parse(route).map_err(|e| anyhow!("{e}"))?;
            let method_filter = edgefn_manifest::router::MethodFilter::parse(method).map_err(|e| anyhow!(e))?;
            let target = RouteTarget {
                component: component.clone(),
                function: (!component.mounted).then(|| function.name.clone()),
            };
            if let Err(conflict) = router.insert(pattern, method_filter, target) {
                let existing = &conflict.existing.value;
                bail!(
                    "route `{method} {route}` of `{}` ({}) is already claimed by `{}` ({}): \
                     give one of them another route",
                    RouteTarget { component: component.clone(), function: Some(function.name.clone()) }.label(),
                    component.wasm_path.display(),
                    existing.label(),
                    existing.component.wasm_path.display(),
                );
            }
        }
    }
    Ok(router)
}
