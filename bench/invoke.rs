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
use edgefn_host::config::RuntimeLimits;
use edgefn_host::runtime::{RequestBody, Runtime, SlotKind};
use http_body_util::BodyExt as _;

#[path = "support.rs"]
mod support;

fn invoke(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    let _entered = tokio.enter();
    let limits = RuntimeLimits::default();
    let runtime = Runtime::new(limits.clone()).expect("runtime");
    let (prepared, invocation, _artifact) = support::loaded_misbehave(&runtime, &tokio, &limits);

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
