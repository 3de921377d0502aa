#![allow(dead_code, reason = "each benchmark uses a different part")]

//! Shared by the in-process benchmarks: start a node on a fresh data dir and deploy `bench-sink` to it, exactly as
//! `edgefn up` does (snapshot, ahead-of-time compile, SQLite state), minus the HTTP listeners.

use edgefn_host::config::{ComponentConfig, HostConfig};
use edgefn_host::deployments::DeployRequest;
use edgefn_host::node::Node;
use std::path::Path;

/// A started node; keep the whole value alive for as long as it should run.
pub(crate) struct Bench {
    pub(crate) node: Node,
    pub(crate) data: tempfile::TempDir,
    /// Runs the triggers; dropped last.
    pub(crate) tokio: tokio::runtime::Runtime,
}

pub(crate) fn start() -> Bench {
    start_with(HostConfig::default())
}

/// [`start`] with a host configuration of the benchmark's own.
pub(crate) fn start_with(config: HostConfig) -> Bench {
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release/bench_sink.wasm");
    assert!(
        wasm.is_file(),
        "{}: build it first: cargo build --release --target wasm32-wasip2 -p bench-sink",
        wasm.display()
    );
    let data = tempfile::tempdir().expect("temp dir");
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    let node = tokio.block_on(async {
        let node = Node::start(data.path(), config).await.expect("node");
        let request = DeployRequest {
            name: "bench_sink".into(),
            wasm: std::fs::read(&wasm).expect("read bench_sink.wasm"),
            source: wasm.display().to_string(),
            deployed_by: "bench".into(),
            overrides: ComponentConfig::default(),
            mount: None,
            canary_percent: None,
            assets: None,
        };
        node.deployments.deploy(request).await.expect("deploy bench_sink");
        node
    });
    Bench { node, data, tokio }
}

/// The value at quantile `q` (0..=1) of sorted `values`.
pub(crate) fn quantile<T: Copy>(sorted: &[T], q: f64) -> T {
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// `misbehave` as the host deploys it (snapshot, ahead-of-time compile) on `runtime`, loaded, with an invocation on
/// the defaults: what the in-process benchmarks of figure (c) call. Keep the artifact file alive while it runs.
pub(crate) fn loaded_misbehave(
    runtime: &edgefn_host::runtime::Runtime,
    tokio: &tokio::runtime::Runtime,
    limits: &edgefn_host::config::RuntimeLimits,
) -> (edgefn_host::runtime::PreparedComponent, edgefn_host::runtime::Invocation, tempfile::NamedTempFile) {
    use edgefn_host::runtime::{Artifact, Invocation, InvocationLimits, Loader};
    let wasm_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release/misbehave.wasm");
    let wasm = std::fs::read(&wasm_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build it first: cargo build --release --target wasm32-wasip2 -p misbehave",
            wasm_path.display()
        )
    });
    let env = edgefn_host::capabilities::FunctionEnv::default();
    let snapshot = tokio.block_on(runtime.snapshot(&wasm, &env, limits.memory_bytes())).expect("snapshot");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let compiled = runtime.precompile(&snapshot).expect("compile");
    std::fs::write(file.path(), &compiled).expect("write artifact");
    let sha256 = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&compiled))
    };
    let artifact = Artifact { path: file.path().to_owned(), sha256, checked: None };
    let prepared = Loader::new(runtime.clone()).load_verified(&artifact).expect("load");
    let invocation = Invocation {
        env: std::sync::Arc::new(env),
        capabilities: Default::default(),
        limits: InvocationLimits::defaults(limits),
        caller: Default::default(),
        trace: Default::default(),
        cold_start: false,
    };
    (prepared, invocation, file)
}
