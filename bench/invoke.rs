//! Benchmark (c) of issue 4: the in-process cost of one invocation, i.e. a fresh instance from the pool, the call
//! of a no-op HTTP function, and its whole response, with no network and no HTTP server in the way.
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2 -p misbehave
//! cargo bench -p edgefn-host --bench invoke
//! ```
//!
//! The function is `misbehave`'s `/ok`, which returns a constant string, measured from its snapshot as the host
//! deploys it.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use edgefn_host::capabilities::FunctionEnv;
use edgefn_host::config::RuntimeLimits;
use edgefn_host::runtime::{Artifact, Invocation, InvocationLimits, Loader, RequestBody, Runtime, SlotKind};
use http_body_util::BodyExt as _;
use std::path::Path;
use std::sync::Arc;

fn invoke(c: &mut Criterion) {
    let wasm_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release/misbehave.wasm");
    let wasm = std::fs::read(&wasm_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build it first: cargo build --release --target wasm32-wasip2 -p misbehave",
            wasm_path.display()
        )
    });
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    let _entered = tokio.enter();
    let limits = RuntimeLimits::default();
    let runtime = Runtime::new(limits.clone()).expect("runtime");
    let env = FunctionEnv::default();
    let snapshot = tokio.block_on(runtime.snapshot(&wasm, &env, limits.memory_bytes())).expect("snapshot");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let compiled = runtime.precompile(&snapshot).expect("compile");
    std::fs::write(file.path(), &compiled).expect("write artifact");
    let artifact = Artifact { path: file.path().to_owned(), sha256: sha256_hex(&compiled), checked: None };
    let prepared = Loader::new(runtime.clone()).load_verified(&artifact).expect("load");
    let invocation = Invocation {
        env: Arc::new(env),
        capabilities: Default::default(),
        limits: InvocationLimits::defaults(&limits),
        caller: Default::default(),
        trace: Default::default(),
        cold_start: false,
    };

    let request = || {
        http::Request::builder()
            .uri("http://localhost/ok")
            .header("host", "localhost")
            .body(RequestBody::Whole(Bytes::new()))
            .expect("request")
    };
    c.bench_function("invoke no-op http function (instantiate + call + body)", |b| {
        b.to_async(&tokio).iter(|| async {
            let slot = runtime.acquire_slot(SlotKind::Request, "misbehave/ok").await.expect("slot");
            let response = runtime.invoke_http(&prepared, &invocation, slot, request()).await.expect("invoke");
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.expect("body").to_bytes()
        })
    });
}

criterion_group!(benches, invoke);
criterion_main!(benches);

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}
