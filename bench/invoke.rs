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
use edgefn_host::config::Limits;
use edgefn_host::runtime::{FunctionEnv, Runtime};
use http_body_util::BodyExt as _;
use std::path::Path;

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
    let runtime = Runtime::new(Limits::default()).expect("runtime");
    let env = FunctionEnv::default();
    let snapshot = tokio.block_on(runtime.snapshot(&wasm, &env)).expect("snapshot");
    let artifact = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(artifact.path(), runtime.precompile(&snapshot).expect("compile")).expect("write artifact");
    let prepared = runtime.load(artifact.path()).expect("load");

    let request = || {
        http::Request::builder()
            .uri("http://localhost/ok")
            .header("host", "localhost")
            .body(Bytes::new())
            .expect("request")
    };
    c.bench_function("invoke no-op http function (instantiate + call + body)", |b| {
        b.to_async(&tokio).iter(|| async {
            let response = runtime.invoke_http(&prepared, &env, Default::default(), request()).await.expect("invoke");
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.expect("body").to_bytes()
        })
    });
}

criterion_group!(benches, invoke);
criterion_main!(benches);
