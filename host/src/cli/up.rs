//! `edgefn up`: bring back what was live in the data dir, deploy the given crates and components on top ("deploy
//! these at start"), print what is served, serve until Ctrl-C or SIGTERM. Deploys, rollbacks and undeploys then
//! go through the admin API while it runs.

use super::deploy::{deployer, resolve_component};
use crate::admin;
use crate::config::{ComponentConfig, HostConfig};
use crate::deployments::{DeployError, DeployRequest};
use crate::live::{LiveSet, LiveSetError, Mount};
use crate::node::Node;
use anyhow::{Context as _, bail};
use edgefn_manifest::record::Trigger;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    /// Function crate directories (built for wasm32-wasip2 with cargo) or .wasm components.
    paths: Vec<PathBuf>,
    /// Address to serve HTTP functions on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory for the host's state (SQLite database).
    #[arg(long, default_value = "./.edgefn")]
    data: PathBuf,
    /// Host config file: limits, per-component environment and secrets (see docs/src/operating.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serve a plain wasi:http component (no edgefn manifest) at a route and everything below it:
    /// `/legacy=app.wasm`; add `,strip-prefix` for a component that routes on `/` (it sees `/legacy/x` as `/x`).
    #[arg(long, value_name = "ROUTE=FILE[,strip-prefix]", value_parser = parse_mount)]
    mount: Vec<(Mount, PathBuf)>,
    /// Wall-clock deadline of one invocation, in milliseconds (overrides the config file).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Memory cap of one instance, in MiB (overrides the config file).
    #[arg(long)]
    memory_mb: Option<u64>,
    /// Request body cap in bytes (overrides the config file).
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// KiB of each pool slot's memory kept resident between instances (overrides the config file).
    #[arg(long)]
    keep_resident_kib: Option<usize>,
    /// Exit when standard input closes: lets a supervising process (the test suite) tie the host's life to its own.
    #[arg(long, hide = true)]
    exit_on_stdin_close: bool,
    /// Address of the admin API (queues, topics, cron history, manual fire; bearer token in the data dir).
    #[arg(long, default_value = "127.0.0.1:8081")]
    admin_listen: SocketAddr,
    /// Join the cluster whose NATS JetStream server is at this URL: queues, topics and cron are shared with the other
    /// nodes there (overrides `[cluster] nats`).
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// This node's name in the cluster (overrides `[cluster] node`).
    #[arg(long)]
    node: Option<String>,
    /// Do not snapshot #[init]: run it in every instance instead (for comparison and debugging).
    #[arg(long)]
    no_snapshot: bool,
    /// Instances that may run at once (overrides the config file).
    #[arg(long)]
    max_instances: Option<u32>,
    /// How long a request waits for a free instance before a 503, in milliseconds (overrides the config file).
    #[arg(long)]
    queue_timeout_ms: Option<u64>,
    /// Components kept loaded at once (overrides the config file).
    #[arg(long)]
    max_loaded: Option<usize>,
    /// Unload a component unused for this long, in milliseconds (overrides the config file).
    #[arg(long)]
    idle_timeout_ms: Option<u64>,
}

fn parse_mount(value: &str) -> Result<(Mount, PathBuf), String> {
    let (route, file) = value.split_once('=').ok_or("expected ROUTE=FILE, e.g. `/legacy=app.wasm`")?;
    let (file, strip_prefix) = match file.strip_suffix(",strip-prefix") {
        Some(file) => (file, true),
        None => (file, false),
    };
    let route = route.trim_end_matches('/');
    let route = if route.is_empty() { "/" } else { route };
    edgefn_manifest::route::RoutePattern::parse(route).map_err(|e| e.to_string())?;
    Ok((Mount { route: route.to_owned(), strip_prefix }, PathBuf::from(file)))
}

/// One thing `up` deploys at start.
struct Source {
    path: PathBuf,
    mount: Option<Mount>,
}

pub(crate) fn run(args: UpArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => HostConfig::load(path)?,
        None => HostConfig::default(),
    };
    if args.no_snapshot {
        config.snapshot = false;
    }
    if let Some(url) = &args.nats {
        config.cluster.nats = Some(url.clone());
    }
    if let Some(node) = &args.node {
        config.cluster.node = Some(node.clone());
    }
    let limits = &mut config.limits.runtime;
    let overrides = [
        (args.timeout_ms, &mut limits.timeout_ms),
        (args.memory_mb, &mut limits.memory_mb),
        (args.queue_timeout_ms, &mut limits.queue_timeout_ms),
        (args.idle_timeout_ms, &mut limits.idle_timeout_ms),
    ];
    for (flag, setting) in overrides {
        if let Some(value) = flag {
            *setting = value;
        }
    }
    if let Some(value) = args.memory_mb {
        // A host-wide cap above the default maximum raises the maximum with it.
        limits.max_memory_mb = limits.max_memory_mb.max(value);
    }
    if let Some(value) = args.timeout_ms {
        limits.max_timeout_ms = limits.max_timeout_ms.max(value);
    }
    if let Some(value) = args.max_body_bytes {
        config.limits.http.max_body_bytes = value;
    }
    if let Some(value) = args.max_loaded {
        limits.max_loaded = value;
    }
    if let Some(value) = args.keep_resident_kib {
        limits.keep_resident_kib = value;
    }
    if let Some(value) = args.max_instances {
        limits.max_instances = value;
    }
    config.limits.validate()?;
    crate::capabilities::outbound::pin_names(config.outbound.resolve.clone());
    if args.exit_on_stdin_close {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            crate::telemetry::otel::flush();
            crate::logging::flush();
            std::process::exit(0);
        });
    }
    let mut sources: Vec<Source> = args.paths.iter().map(|path| Source { path: path.clone(), mount: None }).collect();
    sources.extend(args.mount.iter().map(|(mount, path)| Source { path: path.clone(), mount: Some(mount.clone()) }));

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(crate::priority::give_this_thread_a_serving_slice)
        .build()
        .context("failed to start tokio")?;
    tokio.block_on(async move {
        let node = Node::start(&args.data, config).await?;
        for error in &node.restore_failures {
            eprintln!("error: could not bring back a component that was live: {error}");
        }
        let deployed = deploy_sources(&node, sources).await?;
        crate::runtime::background::release_freed_heap();
        if deployed == Some(0) && node.deployments.live().components().next().is_none() {
            bail!("no component could be deployed");
        }
        let (token, created) = admin::load_or_create_token(&args.data)?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("failed to listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        let admin_listener = tokio::net::TcpListener::bind(args.admin_listen).await.with_context(|| {
            format!("failed to listen on {} (admin API; change it with --admin-listen)", args.admin_listen)
        })?;
        let admin_address = admin_listener.local_addr()?;
        // Functions reach the host's own listeners only when their allowlist names them with the port.
        crate::capabilities::outbound::protect(address);
        crate::capabilities::outbound::protect(admin_address);
        node.announce(address, admin_address);
        print_functions(&node.deployments.live(), address);
        let token_path = args.data.join(admin::TOKEN_FILE);
        if created {
            println!("admin token (new, saved in {}): {token}", token_path.display());
        } else {
            println!("admin token: {token} (from {})", token_path.display());
        }
        let admin_url = format!("http://{admin_address}");
        admin::write_url(&args.data, &admin_url).with_context(|| {
            format!("failed to write {} into the data dir {}", admin::URL_FILE, args.data.display())
        })?;
        println!("edgefn admin API on {admin_url}");
        println!("edgefn listening on http://{address} (data: {})", args.data.display());
        let admin_app = node.admin_app(token);
        let admin_limits = node.http.server_limits();
        tokio::spawn(async move {
            let serve =
                crate::triggers::http::server::serve(admin_listener, admin_app, admin_limits, std::future::pending());
            if let Err(error) = serve.await {
                tracing::error!(%error, "admin API failed");
            }
        });
        let limits = node.http.server_limits();
        let app = node.http.clone().app();
        let served = crate::triggers::http::server::serve(listener, app, limits, shutdown_signal())
            .await
            .context("server failed");
        // On a cluster, another node takes the workflow runs over now rather than once this one's lease lapses.
        node.workflows.db().step_down().await;
        // Spans and metrics still batched go out before the host does.
        tokio::task::spawn_blocking(crate::telemetry::otel::flush).await?;
        served
    })
}

/// Deploys `sources` (building crates first): compiled in parallel, made live one by one. A source that is refused
/// is printed with its reason and the others go on; two of them claiming one route stops the start. Returns how
/// many were deployed, or `None` when none were given.
async fn deploy_sources(node: &Node, sources: Vec<Source>) -> anyhow::Result<Option<usize>> {
    if sources.is_empty() {
        return Ok(None);
    }
    let deployer = format!("{} (edgefn up)", deployer());
    let mut preparing = Vec::new();
    for source in sources {
        let path = source.path.clone();
        // Building is cargo's work, which prints its own progress; do it before compiling in parallel.
        let resolved = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || resolve_component(&path)).await?
        };
        let request = resolved.and_then(|(wasm_path, name)| {
            let wasm = std::fs::read(&wasm_path).with_context(|| format!("failed to read {}", wasm_path.display()))?;
            // A crate's own static files; the host config's `assets.dir` is read by the deploy itself.
            let mut overrides = ComponentConfig::default();
            let assets = super::deploy::static_files(&path, None, &mut overrides)?;
            Ok(DeployRequest {
                name,
                wasm,
                source: wasm_path.display().to_string(),
                deployed_by: deployer.clone(),
                overrides,
                mount: source.mount,
                canary_percent: None,
                assets,
            })
        });
        let deployments = node.deployments.clone();
        preparing.push((
            path,
            tokio::spawn(async move {
                match request {
                    Ok(request) => deployments.prepare(request).await.map_err(anyhow::Error::from),
                    Err(error) => Err(error),
                }
            }),
        ));
    }
    let mut deployed = 0;
    for (path, task) in preparing {
        let result = match task.await? {
            Ok(prepared) => node.deployments.apply(prepared).await.map_err(anyhow::Error::from),
            Err(error) => Err(error),
        };
        match result {
            Ok(_) => deployed += 1,
            Err(error) => {
                if let Some(DeployError::Conflict(conflict @ LiveSetError::RouteConflict { .. })) = error.downcast_ref()
                {
                    bail!("{}: {conflict}", path.display());
                }
                eprintln!("error: refused {}: {error:#}", path.display());
            }
        }
    }
    Ok(Some(deployed))
}

fn print_functions(live: &Arc<LiveSet>, address: SocketAddr) {
    for component in live.components() {
        let active = &component.active;
        println!("{} v{} (sha256 {})", active.component, active.version, &active.hash[..12]);
        for function in &active.functions {
            match &function.trigger {
                Trigger::Http { route, method, auth } => {
                    let method = if method == "*" { "ANY" } else { method };
                    let guard = match auth {
                        Some(auth) if auth.scopes.is_empty() => format!("  (auth: {}, any scope)", auth.authorizer),
                        Some(auth) => format!("  (auth: {}, scopes: {})", auth.authorizer, auth.scopes.join(" | ")),
                        None => String::new(),
                    };
                    println!("  {:24} {method:7} http://{address}{route}{guard}", function.name);
                }
                Trigger::Init => println!("  {:24} init    snapshot taken at deploy", function.name),
                Trigger::Cron { expression, timezone, .. } => {
                    println!("  {:24} cron    \"{expression}\" ({timezone})", function.name)
                }
                Trigger::Queue { queue, .. } => println!("  {:24} queue   {queue}", function.name),
                Trigger::Topic { topic, .. } => println!("  {:24} topic   {topic}", function.name),
                Trigger::Invoke => println!("  {:24} invoke  edgefn invoke {}", function.name, function.name),
                Trigger::Workflow => {
                    println!("  {:24} workflow  edgefn workflows start {} INPUT", function.name, function.name)
                }
                trigger @ (Trigger::Object { .. } | Trigger::Stream { .. } | Trigger::WebSocket { .. }) => {
                    println!("  {:24} {trigger}", function.name)
                }
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
