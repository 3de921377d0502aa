//! `edgefn up`: deploy, print what is served, serve until Ctrl-C or SIGTERM.

use crate::admin;
use crate::config::HostConfig;
use crate::deploy::{self, Source};
use crate::platform::Platform;
use crate::registry::Registry;
use crate::runtime::Runtime;
use crate::storage::Db;
use crate::triggers::http::HttpTrigger;
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
    /// Host config file: limits, per-component environment and secrets (see the README).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serve a plain wasi:http component (no edgefn manifest) at a route and everything below it: `/legacy=app.wasm`.
    #[arg(long, value_name = "ROUTE=FILE", value_parser = parse_mount)]
    mount: Vec<(String, PathBuf)>,
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

fn parse_mount(value: &str) -> Result<(String, PathBuf), String> {
    let (route, file) = value.split_once('=').ok_or("expected ROUTE=FILE, e.g. `/legacy=app.wasm`")?;
    let route = route.trim_end_matches('/');
    let route = if route.is_empty() { "/" } else { route };
    edgefn_manifest::route::RoutePattern::parse(route).map_err(|e| e.to_string())?;
    Ok((route.to_owned(), PathBuf::from(file)))
}

pub(crate) fn run(args: UpArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => HostConfig::load(path)?,
        None => HostConfig::default(),
    };
    if args.no_snapshot {
        config.snapshot = false;
    }
    let limits = &mut config.limits;
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
    if let Some(value) = args.max_body_bytes {
        limits.max_body_bytes = value;
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
    limits.validate()?;
    if args.exit_on_stdin_close {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
    }
    let mut sources: Vec<Source> = args.paths.iter().cloned().map(Source::Path).collect();
    sources.extend(args.mount.iter().map(|(route, path)| Source::Mount { route: route.clone(), path: path.clone() }));
    if sources.is_empty() {
        bail!("nothing to serve: give function crate directories or .wasm files, e.g. `edgefn up examples/hello`");
    }

    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("failed to start tokio")?;
    // Deploying is blocking work (compiling), done here before serving; snapshots run init on the runtime.
    let entered = tokio.enter();
    let db = Db::open(&args.data)?;
    let _lock = lock_data_dir(&args.data)?;
    let registry = Arc::new(Registry::new(Runtime::new(config.limits.clone())?, &args.data)?);
    let deployment = deploy::deploy_all(&registry, &config, &db, &sources);
    for (path, error) in &deployment.refused {
        eprintln!("error: refused {}: {error:#}", path.display());
    }
    if deployment.components.is_empty() {
        bail!("no component could be deployed");
    }
    let routes = deploy::route_table(&deployment.components)?;
    let platform = Arc::new(Platform::new(registry.clone(), &args.data, &deployment.components)?);
    let (token, created) = admin::load_or_create_token(&args.data)?;
    drop(entered);

    tokio.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("failed to listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        let admin_listener = tokio::net::TcpListener::bind(args.admin_listen).await.with_context(|| {
            format!("failed to listen on {} (admin API; change it with --admin-listen)", args.admin_listen)
        })?;
        let admin_address = admin_listener.local_addr()?;
        print_functions(&deployment.components, address);
        let token_path = args.data.join(admin::TOKEN_FILE);
        if created {
            println!("admin token (new, saved in {}): {token}", token_path.display());
        } else {
            println!("admin token: {token} (from {})", token_path.display());
        }
        println!("edgefn admin API on http://{admin_address}");
        println!("edgefn listening on http://{address} (data: {})", args.data.display());
        spawn_idle_sweeper(registry.clone());
        platform.start()?;
        let admin_app = admin::app(platform.clone(), token);
        tokio::spawn(async move {
            if let Err(error) = axum::serve(admin_listener, admin_app).await {
                tracing::error!(%error, "admin API failed");
            }
        });
        let app = HttpTrigger::new(routes, registry, Some(platform)).into_app();
        axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await.context("server failed")
    })
}

fn print_functions(components: &[std::sync::Arc<deploy::Deployed>], address: SocketAddr) {
    for component in components {
        println!("{} ({}, sha256 {})", component.name, component.wasm_path.display(), &component.inspection.hash[..12]);
        for function in &component.inspection.functions {
            match &function.trigger {
                Trigger::Http { route, method } => {
                    let method = if method == "*" { "ANY" } else { method };
                    println!("  {:24} {method:7} http://{address}{route}", function.name);
                }
                Trigger::Init => println!("  {:24} init    snapshot taken at deploy", function.name),
                Trigger::Cron { expression, timezone, .. } => {
                    println!("  {:24} cron    \"{expression}\" ({timezone})", function.name)
                }
                Trigger::Queue { queue, .. } => println!("  {:24} queue   {queue}", function.name),
                Trigger::Topic { topic, .. } => println!("  {:24} topic   {topic}", function.name),
                Trigger::Invoke => println!("  {:24} invoke  edgefn invoke {}", function.name, function.name),
            }
        }
    }
}

/// Holds `<data dir>/lock` for the life of the host: two hosts on one data dir would hand out each other's
/// queue messages and release each other's leases.
fn lock_data_dir(data: &std::path::Path) -> anyhow::Result<std::fs::File> {
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

/// Unloads idle components, checking a few times per idle timeout (at most once a second).
fn spawn_idle_sweeper(registry: Arc<Registry>) {
    let period = (registry.runtime().limits().idle_timeout() / 4)
        .clamp(std::time::Duration::from_millis(10), std::time::Duration::from_secs(1));
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        loop {
            interval.tick().await;
            registry.unload_idle();
        }
    });
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
