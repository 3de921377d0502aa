#![allow(dead_code, reason = "each benchmark uses a different part")]

//! Shared by the in-process benchmarks: deploy `bench-sink` into a fresh data dir and start its triggers, exactly
//! as `edgefn up` does (snapshot, ahead-of-time compile, SQLite state), minus the HTTP listeners.

use edgefn_host::config::HostConfig;
use edgefn_host::deploy::{self, Source};
use edgefn_host::platform::Platform;
use edgefn_host::registry::Registry;
use edgefn_host::runtime::Runtime;
use edgefn_host::storage::Db;
use std::path::Path;
use std::sync::Arc;

/// A started platform; keep the whole value alive for as long as it should run.
pub(crate) struct Bench {
    pub(crate) platform: Arc<Platform>,
    pub(crate) data: tempfile::TempDir,
    /// Runs the triggers; dropped last.
    _tokio: tokio::runtime::Runtime,
}

pub(crate) fn start() -> Bench {
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release/bench_sink.wasm");
    assert!(
        wasm.is_file(),
        "{}: build it first: cargo build --release --target wasm32-wasip2 -p bench-sink",
        wasm.display()
    );
    let data = tempfile::tempdir().expect("temp dir");
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    let platform = {
        let _entered = tokio.enter();
        let config = HostConfig::default();
        let db = Db::open(data.path()).expect("db");
        let runtime = Runtime::new(config.limits.clone()).expect("runtime");
        let registry = Arc::new(Registry::new(runtime, data.path()).expect("registry"));
        let deployment = deploy::deploy_all(&registry, &config, &db, &[Source::Path(wasm)]);
        assert!(deployment.refused.is_empty(), "{:?}", deployment.refused);
        let platform = Arc::new(Platform::new(registry, data.path(), &deployment.components).expect("platform"));
        platform.start().expect("start");
        platform
    };
    Bench { platform, data, _tokio: tokio }
}

/// The value at quantile `q` (0..=1) of sorted `values`.
pub(crate) fn quantile<T: Copy>(sorted: &[T], q: f64) -> T {
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
