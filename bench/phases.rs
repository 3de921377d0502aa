//! Issue 25's per-phase table: figure (c), one in-process invocation of a no-op WASI 0.2 HTTP function, cut into
//! its phases (`edgefn_host::runtime::phase_bench`), each timed on its own with the ones before it done untimed.
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2 -p misbehave
//! cargo bench -p edgefn-host --bench phases
//! ```
//!
//! The function is `misbehave`'s `/ok` (a constant string) from its snapshot, as in `bench/invoke.rs`, whose
//! figure is the whole of it: the phases add up to about that, plus what one pass through the whole does that no
//! phase sees (the detached-run wrapper, the metering report).

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use edgefn_host::config::RuntimeLimits;
use edgefn_host::runtime::Runtime;
use edgefn_host::runtime::phase_bench::Phases;
use std::time::{Duration, Instant};

#[path = "support.rs"]
mod support;

fn phases(c: &mut Criterion) {
    // One thread: the phases run where they are called, with no worker to wake (block_on costs well under 1 µs).
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    let _entered = tokio.enter();
    let limits = RuntimeLimits::default();
    let runtime = Runtime::new(limits.clone()).expect("runtime");
    let (prepared, invocation, _artifact) = support::loaded_misbehave(&runtime, &tokio, &limits);
    let phases = Phases::new(&runtime, &prepared, invocation).expect("a WASI 0.2 component");
    let request = || {
        http::Request::builder()
            .uri("http://localhost/ok")
            .header("host", "localhost")
            .body(Bytes::new())
            .expect("request")
    };

    let mut group = c.benchmark_group("phases");
    // Each phase: `iters` times, the phases before it untimed, this one timed, what it leaves released untimed.
    group.bench_function("0 instance slot", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let slot = tokio.block_on(phases.slot());
                total += started.elapsed();
                drop(slot);
            }
            total
        })
    });
    group.bench_function("1 store and contexts", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let stage = phases.store();
                total += started.elapsed();
                drop(stage);
            }
            total
        })
    });
    group.bench_function("2 wasi:http request and outparam", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let stage = phases.store();
                let request = request();
                let started = Instant::now();
                let stage = stage.request(request);
                total += started.elapsed();
                drop(stage);
            }
            total
        })
    });
    group.bench_function("3 instantiate from the pre-instance", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let slot = tokio.block_on(phases.slot());
                let stage = phases.store().request(request());
                let started = Instant::now();
                let stage = tokio.block_on(stage.instantiate());
                total += started.elapsed();
                let (released, _) = tokio.block_on(async { stage.call().await.response().await });
                released.release(slot);
            }
            total
        })
    });
    group.bench_function("4 call the guest's handle", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let slot = tokio.block_on(phases.slot());
                let stage = tokio.block_on(phases.store().request(request()).instantiate());
                let started = Instant::now();
                let stage = tokio.block_on(stage.call());
                total += started.elapsed();
                let (released, _) = tokio.block_on(stage.response());
                released.release(slot);
            }
            total
        })
    });
    group.bench_function("5 response taken over and its body read", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let slot = tokio.block_on(phases.slot());
                let stage =
                    tokio.block_on(async { phases.store().request(request()).instantiate().await.call().await });
                let started = Instant::now();
                let (released, body) = tokio.block_on(stage.response());
                total += started.elapsed();
                assert_eq!(body.as_ref(), b"still here");
                released.release(slot);
            }
            total
        })
    });
    group.bench_function("6 store dropped (slot reset) and slot given back", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let slot = tokio.block_on(phases.slot());
                let (released, _) = tokio.block_on(async {
                    phases.store().request(request()).instantiate().await.call().await.response().await
                });
                let started = Instant::now();
                released.release(slot);
                total += started.elapsed();
            }
            total
        })
    });
    group.bench_function("all six in a row", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                let slot = tokio.block_on(phases.slot());
                let (released, _) = tokio.block_on(async {
                    phases.store().request(request()).instantiate().await.call().await.response().await
                });
                released.release(slot);
            }
            started.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, phases);
criterion_main!(benches);
