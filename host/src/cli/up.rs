//! `edgefn up`: deploy, print what is served, serve until Ctrl-C or SIGTERM.

use crate::config::HostConfig;
use crate::deploy::{self, Source};
use crate::runtime::Runtime;
use crate::storage::Db;
use crate::triggers::http::HttpTrigger;
use anyhow::{Context as _, bail};
use edgefn_manifest::record::Trigger;
use std::net::SocketAddr;
use std::path::PathBuf;

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
    if let Some(timeout_ms) = args.timeout_ms {
        config.limits.timeout_ms = timeout_ms;
    }
    if let Some(memory_mb) = args.memory_mb {
        config.limits.memory_mb = memory_mb;
    }
    if let Some(max_body_bytes) = args.max_body_bytes {
        config.limits.max_body_bytes = max_body_bytes;
    }
    let mut sources: Vec<Source> = args.paths.iter().cloned().map(Source::Path).collect();
    sources.extend(args.mount.iter().map(|(route, path)| Source::Mount { route: route.clone(), path: path.clone() }));
    if sources.is_empty() {
        bail!("nothing to serve: give function crate directories or .wasm files, e.g. `edgefn up examples/hello`");
    }

    let db = Db::open(&args.data)?;
    let runtime = Runtime::new(config.limits.clone())?;
    let deployment = deploy::deploy_all(&runtime, &config, &db, &sources);
    for (path, error) in &deployment.refused {
        eprintln!("error: refused {}: {error:#}", path.display());
    }
    if deployment.components.is_empty() {
        bail!("no component could be deployed");
    }
    let routes = deploy::route_table(&deployment.components)?;

    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("failed to start tokio")?;
    tokio.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("failed to listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        print_functions(&deployment.components, address);
        println!("edgefn listening on http://{address} (data: {})", args.data.display());
        let app = HttpTrigger::new(routes, runtime).into_app();
        axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await.context("server failed")
    })
}

fn print_functions(components: &[std::sync::Arc<deploy::Deployed>], address: SocketAddr) {
    for component in components {
        println!("{} ({}, sha256 {})", component.name, component.wasm_path.display(), &component.inspection.hash[..12]);
        for function in &component.inspection.functions {
            let Trigger::Http { route, method } = &function.trigger;
            let method = if method == "*" { "ANY" } else { method };
            println!("  {:24} {method:7} http://{address}{route}", function.name);
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
