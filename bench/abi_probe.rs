//! Probe: what a fresh-instance hello costs on WASIp2 and WASIp3, with the engine's concurrency support off and on.
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2 -p plain -p plain-p3
//! cargo bench -p edgefn-host --bench abi_probe
//! ```

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt as _, Full};
use std::path::Path;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: Default::default() }
    }
}

fn new_state() -> State {
    State { wasi: WasiCtx::builder().build(), http: WasiHttpCtx::new(), table: ResourceTable::new() }
}

fn engine(concurrency: bool) -> Engine {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(64)
        .total_core_instances(256)
        .total_memories(128)
        .total_tables(128)
        .total_stacks(64)
        .max_memory_size(512 << 20)
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(128 << 10)
        .async_stack_keep_resident(128 << 10)
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_reservation(512 << 20)
        .memory_init_cow(true)
        .concurrency_support(concurrency);
    if concurrency {
        config.wasm_component_model_async(true);
    }
    Engine::new(&config).expect("engine")
}

fn wasm(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/wasm32-wasip2/release/{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn probe(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    for concurrency in [false, true] {
        let engine = engine(concurrency);
        let mut linker = Linker::<State>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("p2");
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).expect("http p2");
        if concurrency {
            wasmtime_wasi::p3::add_to_linker(&mut linker).expect("p3");
            wasmtime_wasi_http::p3::add_to_linker(&mut linker).expect("http p3");
        }
        let p2 = Component::new(&engine, wasm("plain")).expect("p2 component");
        let p2_pre = wasmtime_wasi_http::p2::bindings::ProxyPre::new(linker.instantiate_pre(&p2).expect("pre"))
            .expect("proxy pre");
        c.bench_function(&format!("p2 hello, concurrency_support={concurrency}"), |b| {
            b.to_async(&tokio).iter(|| async {
                let mut store = Store::new(&engine, new_state());
                let request = http::Request::builder()
                    .uri("http://localhost/")
                    .header("host", "localhost")
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                let (sender, receiver) = tokio::sync::oneshot::channel();
                let incoming = store
                    .data_mut()
                    .http()
                    .new_incoming_request(wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http, request)
                    .expect("incoming");
                let outparam = store.data_mut().http().new_response_outparam(sender).expect("out");
                let proxy = p2_pre.instantiate_async(&mut store).await.expect("instantiate");
                proxy.wasi_http_incoming_handler().call_handle(&mut store, incoming, outparam).await.expect("call");
                let response = receiver.await.expect("answer").expect("response");
                let body = response.into_body().collect().await.expect("body").to_bytes();
                assert!(body.starts_with(b"plain root"));
                drop(store);
            })
        });
        if !concurrency {
            continue;
        }
        let p3 = Component::new(&engine, wasm("plain_p3")).expect("p3 component");
        let p3_pre = wasmtime_wasi_http::p3::bindings::ServicePre::new(linker.instantiate_pre(&p3).expect("pre"))
            .expect("service pre");
        c.bench_function("p3 hello, concurrency_support=true", |b| {
            b.to_async(&tokio).iter(|| async {
                let mut store = Store::new(&engine, new_state());
                let service = p3_pre.instantiate_async(&mut store).await.expect("instantiate");
                let request = http::Request::builder()
                    .uri("http://localhost/")
                    .header("host", "localhost")
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                let (request, io) = wasmtime_wasi_http::p3::Request::from_http(Default::default(), request);
                let body = store
                    .run_concurrent(async |store| {
                        let response = service.handle(store, request).await?.expect("response");
                        let response = store.with(|store| response.into_http(store, async { Ok(()) }))?;
                        let body = response.into_body().collect().await.expect("body").to_bytes();
                        drop(io);
                        wasmtime::error::Ok(body)
                    })
                    .await
                    .expect("run")
                    .expect("ok");
                assert!(body.starts_with(b"plain p3 root"), "{body:?}");
                drop(store);
            })
        });
    }
}

criterion_group!(benches, probe);
criterion_main!(benches);
