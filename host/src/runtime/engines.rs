//! The two wasmtime engines, one per guest ABI, and what each links.
//!
//! - **WASI 0.2** components (`wasi:http/incoming-handler@0.2`, `edgefn:function/handler`) run on an engine with
//!   the component model's concurrency support off. It costs nothing they use, and off it makes each fresh
//!   instance cheaper (measured in BENCHMARKS.md: a hello instance costs about a quarter more with it on).
//! - **WASI 0.3** components (`wasi:http/handler@0.3`, `edgefn:function/async-handler`, streams, futures) need it
//!   on, so they get an engine of their own.
//!
//! Which one a component needs is decided once, from its bytes ([`Abi::of`]); its compiled artifact then only
//! loads on that engine ([`Engines::deserialize`] finds which). Both engines share the host's limits: each has a
//! pool of `max_instances` slots, and one semaphore in front of both (see `Runtime::acquire_slot`) keeps the
//! instances of both together within `max_instances`.

use super::state::InvocationState;
use crate::capabilities::bindings;
use crate::config::{RuntimeLimits, SlotReset};
use anyhow::anyhow;
use std::hash::{Hash as _, Hasher as _};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Tables and host stacks of a guest are small: keep their first pages resident too.
const KEEP_RESIDENT_SMALL_BYTES: usize = 128 << 10;

/// How often the epoch advances: how long a guest computes before it yields (see `fairness`), and the
/// granularity of init's deadline. 1 ms keeps a neighbour's wait for a thread short; the ticker costs about a
/// thousand wake-ups a second.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The guest ABI a component speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Abi {
    /// WASI 0.2: sync exports, whole bodies.
    P2,
    /// WASI 0.3: async exports, streams and futures.
    P3,
}

impl Abi {
    /// What `wasm` needs: WASI 0.3 if it uses any of the component model's async features (an `async` export or
    /// import, a `stream` or `future`), else WASI 0.2. Something that is not a valid component either way is
    /// called WASI 0.3, and that engine's compile says what is wrong with it.
    pub fn of(wasm: &[u8]) -> Self {
        let mut features = wasmparser::WasmFeatures::default();
        features.remove(wasmparser::WasmFeatures::CM_ASYNC);
        match wasmparser::Validator::new_with_features(features).validate_all(wasm) {
            Ok(_) => Abi::P2,
            Err(_) => Abi::P3,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Abi::P2 => "WASI 0.2",
            Abi::P3 => "WASI 0.3",
        }
    }
}

/// One engine, and the linker of everything a guest of its ABI may import.
#[derive(Clone)]
pub(super) struct Backend {
    pub(super) abi: Abi,
    pub(super) engine: Engine,
    pub(super) linker: Arc<Linker<InvocationState>>,
}

/// Both engines.
#[derive(Clone)]
pub(super) struct Engines {
    pub(super) p2: Backend,
    pub(super) p3: Backend,
    /// Identifies both engines' code generation; see [`Engines::hash`].
    hash: Arc<str>,
}

impl Engines {
    /// Builds both engines and their linkers, and starts their epoch tickers.
    pub(super) fn new(limits: &RuntimeLimits) -> anyhow::Result<Self> {
        let p2 = Backend::new(Abi::P2, limits)?;
        let p3 = Backend::new(Abi::P3, limits)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        p2.engine.precompile_compatibility_hash().hash(&mut hasher);
        p3.engine.precompile_compatibility_hash().hash(&mut hasher);
        let hash = format!("{:016x}", hasher.finish()).into();
        Ok(Self { p2, p3, hash })
    }

    /// The engine for `abi`.
    pub(super) fn backend(&self, abi: Abi) -> &Backend {
        match abi {
            Abi::P2 => &self.p2,
            Abi::P3 => &self.p3,
        }
    }

    /// Identifies the engines' code generation (wasmtime version, target, flags, tunables such as the memory
    /// reservation): compiled artifacts are only valid for engines with the same hash.
    pub(super) fn hash(&self) -> &str {
        &self.hash
    }

    /// Maps an artifact compiled by [`Backend::precompile`], on whichever engine compiled it.
    ///
    /// # Safety
    /// `path` must hold an artifact that one of these engines' `precompile_component` wrote, unchanged since: see
    /// `Loader::map`, the one caller, for why its artifacts are.
    pub(super) unsafe fn deserialize(&self, path: &Path) -> anyhow::Result<(Abi, Component)> {
        // SAFETY: the caller's contract. An artifact compiled by the other engine is refused by the compatibility
        // check in its header before anything of it is used.
        let on_p2 = unsafe { Component::deserialize_file(&self.p2.engine, path) };
        match on_p2 {
            Ok(component) => Ok((Abi::P2, component)),
            // SAFETY: as above.
            Err(p2_error) => match unsafe { Component::deserialize_file(&self.p3.engine, path) } {
                Ok(component) => Ok((Abi::P3, component)),
                Err(p3_error) => Err(anyhow!(
                    "failed to load compiled artifact {}: {p2_error:#} (as WASI 0.2); {p3_error:#} (as WASI 0.3)",
                    path.display()
                )),
            },
        }
    }
}

impl Backend {
    fn new(abi: Abi, limits: &RuntimeLimits) -> anyhow::Result<Self> {
        let engine =
            Engine::new(&engine_config(abi, limits)).map_err(|e| anyhow!("failed to configure wasmtime: {e}"))?;
        let mut linker = Linker::new(&engine);
        let link = |what: &str, result: wasmtime::Result<()>| result.map_err(|e| anyhow!("failed to link {what}: {e}"));
        // Rust's standard library imports WASI 0.2's cli interfaces in components of either ABI.
        link("WASI 0.2", wasmtime_wasi::p2::add_to_linker_async(&mut linker))?;
        link("wasi:http@0.2", wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))?;
        // The edgefn:function imports, one capability at a time: each gets its own view of the store's data.
        use bindings::p2::edgefn::function::{host, trace, types};
        type Whole = wasmtime::component::HasSelf<InvocationState>;
        link("edgefn:function/types", types::add_to_linker::<InvocationState, Whole>(&mut linker, |state| state))?;
        link("edgefn:function/host", host::add_to_linker::<InvocationState, Whole>(&mut linker, |state| state))?;
        link("edgefn:function/trace", trace::add_to_linker::<InvocationState, Whole>(&mut linker, |state| state))?;
        link("wasi:keyvalue", crate::capabilities::kv::add_to_linker(&mut linker, InvocationState::kv_view))?;
        link(
            "edgefn:function/objects",
            crate::capabilities::objects::add_to_linker(&mut linker, InvocationState::objects_view),
        )?;
        link(
            "edgefn:function/streams",
            crate::capabilities::streams::add_to_linker(&mut linker, InvocationState::streams_view),
        )?;
        link(
            "edgefn:function/ratelimit",
            crate::capabilities::ratelimit::add_to_linker(&mut linker, InvocationState::ratelimit_view),
        )?;
        link(
            "edgefn:function/cache",
            crate::capabilities::cache::add_to_linker(&mut linker, InvocationState::cache_view),
        )?;
        link(
            "edgefn:function/websocket",
            crate::capabilities::websocket::add_to_linker(&mut linker, InvocationState::websocket_view),
        )?;
        link(
            "edgefn:function/workflows",
            crate::capabilities::workflows::add_to_linker(&mut linker, InvocationState::workflows_view),
        )?;
        if abi == Abi::P3 {
            use bindings::p3::edgefn::function::async_host;
            link("WASI 0.3", wasmtime_wasi::p3::add_to_linker(&mut linker))?;
            link("wasi:http@0.3", wasmtime_wasi_http::p3::add_to_linker(&mut linker))?;
            link(
                "edgefn:function/async-host",
                async_host::add_to_linker::<InvocationState, Whole>(&mut linker, |state| state),
            )?;
        }
        spawn_epoch_ticker(&engine);
        Ok(Self { abi, engine, linker: Arc::new(linker) })
    }

    /// Compiles a component ahead of time. Blocking: call it off the async threads.
    pub(super) fn precompile(&self, wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.engine.precompile_component(wasm).map_err(|e| anyhow!("failed to compile ({}): {e:#}", self.abi.label()))
    }
}

/// The engine configuration for `abi`: the same pool, limits and tunables for both, concurrency support only where
/// it is needed.
fn engine_config(abi: Abi, limits: &RuntimeLimits) -> Config {
    // Each slot reserves the most any function may ask for; a function's own cap is its store's limiter.
    let memory_bytes = limits.max_memory_bytes();
    let mut pool = PoolingAllocationConfig::new();
    // A Rust component uses about 3 core instances, 1 memory and 2 tables per component instance.
    pool.total_component_instances(limits.max_instances)
        .total_core_instances(limits.max_instances.saturating_mul(4))
        .total_memories(limits.max_instances.saturating_mul(2))
        .total_tables(limits.max_instances.saturating_mul(2))
        .total_stacks(limits.max_instances)
        .max_memory_size(memory_bytes)
        // Reset the first pages of a freed slot in place instead of with madvise: the next instance then takes no
        // page faults there, and the host sends no TLB-shootdown IPIs across cores. Before this, those took about a
        // third of the CPU time of a hello-world request. A Rust guest's stack (1 MiB), data and first heap pages
        // fit in the default 2 MiB (see BENCHMARKS.md for the cold-start cost of it).
        .linear_memory_keep_resident(limits.keep_resident_kib << 10)
        .table_keep_resident(KEEP_RESIDENT_SMALL_BYTES)
        .async_stack_keep_resident(KEEP_RESIDENT_SMALL_BYTES)
        // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), reset only the pages a guest actually touched instead of
        // memsetting the whole kept-resident region; but not on a machine that swaps (see `SlotReset::Auto`).
        .pagemap_scan(if resets_by_scan(limits.slot_reset, &swaps()) {
            wasmtime::Enabled::Auto
        } else {
            wasmtime::Enabled::No
        });
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        // Reserve only what an instance may use, not 4 GiB of address space per slot.
        .memory_reservation(memory_bytes as u64)
        .memory_init_cow(true);
    match abi {
        // With concurrency support on, every store's drop also disposes of a parked worker fiber by building an
        // error (which captures a backtrace when RUST_BACKTRACE is set); a WASI 0.2 guest never needs it.
        Abi::P2 => config.concurrency_support(false),
        Abi::P3 => config.concurrency_support(true).wasm_component_model_async(true),
    };
    config
}

/// Whether a freed slot may be reset by PAGEMAP_SCAN (where the kernel has it), given the configured mode and the
/// text of `/proc/swaps`: not when asked for `in-place`, and not while any swap space is on.
pub(super) fn resets_by_scan(mode: SlotReset, swaps: &str) -> bool {
    let swap_on = swaps.lines().skip(1).any(|line| !line.trim().is_empty());
    mode == SlotReset::Auto && !swap_on
}

/// `/proc/swaps` (empty where it cannot be read: no swap to worry about there).
fn swaps() -> String {
    std::fs::read_to_string("/proc/swaps").unwrap_or_default()
}

/// Whether freed slots are reset by PAGEMAP_SCAN on this machine with `limits`.
pub(super) fn slots_reset_by_scan(limits: &RuntimeLimits) -> bool {
    resets_by_scan(limits.slot_reset, &swaps()) && PoolingAllocationConfig::is_pagemap_scan_available()
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is gone.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("edgefn-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("failed to spawn the epoch thread");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_reset_by_scan_only_when_asked_to_and_nothing_swaps() {
        let no_swap = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
        let swapping = format!("{no_swap}/swapfile                               file\t\t1048572\t\t0\t\t-2\n");
        assert!(resets_by_scan(SlotReset::Auto, no_swap));
        assert!(resets_by_scan(SlotReset::Auto, ""), "no /proc/swaps: nothing swaps");
        assert!(!resets_by_scan(SlotReset::Auto, &swapping), "a swapped page escapes wasmtime 48's scan");
        assert!(!resets_by_scan(SlotReset::InPlace, no_swap));
    }

    /// A component whose one core instance has a mutable global and a table of 8 (growable to 16). `probe(marker)`
    /// answers what the instance found when it started (its global `<< 16`, its table's size `<< 8`, how many
    /// table entries were set), then leaves its mark everywhere: the global set to `marker`, every entry set, and
    /// the table grown by 8 set entries. A fresh instance answers `8 << 8`: global 0, size 8, nothing set.
    const MARKING_COMPONENT: &str = r#"
        (component
          (core module $m
            (global $marker (mut i64) (i64.const 0))
            (table $t 8 16 funcref)
            (func $noop)
            (elem declare func $noop)
            (func (export "probe") (param $new i64) (result i64)
              (local $i i32) (local $set i64) (local $found i64)
              (block $done
                (loop $each
                  (br_if $done (i32.ge_u (local.get $i) (table.size $t)))
                  (if (i32.eqz (ref.is_null (table.get $t (local.get $i))))
                    (then (local.set $set (i64.add (local.get $set) (i64.const 1)))))
                  (table.set $t (local.get $i) (ref.func $noop))
                  (local.set $i (i32.add (local.get $i) (i32.const 1)))
                  (br $each)))
              (local.set $found
                (i64.or (i64.shl (global.get $marker) (i64.const 16))
                  (i64.or (i64.shl (i64.extend_i32_u (table.size $t)) (i64.const 8)) (local.get $set))))
              (drop (table.grow $t (ref.func $noop) (i32.const 8)))
              (global.set $marker (local.get $new))
              (local.get $found)))
          (core instance $i (instantiate $m))
          (func (export "probe") (param "marker" u64) (result u64) (canon lift (core func $i "probe"))))
    "#;

    #[test]
    fn a_freed_slot_hands_the_next_instance_fresh_tables_and_globals_in_every_reset_mode() {
        // The pool the host configures, with two slots so they are reused instance after instance, in each mode a
        // slot can be reset by and with each amount kept resident.
        let mut runs = 0;
        for slot_reset in [SlotReset::Auto, SlotReset::InPlace] {
            for keep_resident_kib in [0, 2048, 65536] {
                let limits = RuntimeLimits { max_instances: 2, slot_reset, keep_resident_kib, ..Default::default() };
                let engine = Engine::new(&engine_config(Abi::P2, &limits)).expect("engine");
                let component =
                    wasmtime::component::Component::new(&engine, MARKING_COMPONENT).expect("the marking component");
                let linker = Linker::<()>::new(&engine);
                let pre = linker.instantiate_pre(&component).expect("pre-instance");
                for run in 1..=1000_u64 {
                    let mut store = wasmtime::Store::new(&engine, ());
                    store.set_epoch_deadline(1 << 20);
                    let instance = pre.instantiate(&mut store).expect("instantiate");
                    let probe =
                        instance.get_typed_func::<(u64,), (u64,)>(&mut store, "probe").expect("the probe export");
                    // A marker of this run, never 0: an earlier one found would say which run left it.
                    let marker = (run << 4) | 1;
                    let (found,) = probe.call(&mut store, (marker,)).expect("probe");
                    assert_eq!(
                        found,
                        8 << 8,
                        "run {run} ({slot_reset:?}, {keep_resident_kib} KiB kept) found an earlier instance's state: \
                         global {}, table size {}, {} entries set",
                        found >> 16,
                        (found >> 8) & 0xff,
                        found & 0xff
                    );
                    // The probe sees what it leaves: the same instance, probed again, finds all of it.
                    let (again,) = probe.call(&mut store, (marker,)).expect("probe again");
                    assert_eq!(again, (marker << 16) | (16 << 8) | 16, "run {run}: the probe reads its own marks");
                    runs += 1;
                }
            }
        }
        assert_eq!(runs, 6000);
    }
}
