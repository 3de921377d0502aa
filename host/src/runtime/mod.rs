//! The one place that configures wasmtime: the engine, the linker, epochs, the instance pool and the limits of
//! each invocation.
//!
//! A [`Runtime`] is shared by every trigger. [`Runtime::precompile`] compiles a component ahead of time;
//! [`loader::Loader`] maps such an artifact and pre-links it once; every invocation then gets a fresh [`Store`] and
//! instance from it, so nothing leaks between requests, and runs under a wall-clock deadline (epoch interruption
//! plus a timer) and a memory cap, both per function ([`InvocationLimits`]). Instances come from the pooling
//! allocator (copy-on-write memory images); a semaphore in front of the pool ([`Runtime::acquire_slot`]) turns
//! "pool full" into a short wait and then a 503, never a failure inside wasmtime.
//!
//! What a guest reaches beyond WASI comes in as [`Capabilities`] (trait objects); the runtime imports nothing
//! above it.

pub mod background;
pub mod fairness;
pub mod guest;
pub mod kv;
pub mod loader;
pub mod memory;
mod metering;
pub mod output;
pub(crate) mod redact;
mod state;

pub use guest::{CronEvent, Delivery, GuestCall, GuestOutcome, Message, Settlement};
pub use loader::{Artifact, FileIdentity, Loader, PreparedComponent, Start};

use crate::capabilities::invoke::Caller;
use crate::capabilities::{Capabilities, FunctionEnv};
use crate::config::Limits;
use crate::telemetry::{InvocationReport, Outcome, Telemetry, Trace};
use anyhow::anyhow;
use bytes::Bytes;
use http_body_util::Full;
use state::InvocationState;
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Tables and host stacks of a guest are small: keep their first pages resident too.
const KEEP_RESIDENT_SMALL_BYTES: usize = 128 << 10;

/// How often the epoch advances: how long a guest computes before it yields (see [`fairness`]), and the
/// granularity of init's deadline. 1 ms keeps a neighbour's wait for a thread short; the ticker costs about a
/// thousand wake-ups a second.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// How far past its deadline a guest blocked in a host call (which epochs do not interrupt) is cut off.
const HARD_DEADLINE_SLACK: Duration = Duration::from_millis(50);

/// The shared wasmtime engine and linker, plus the host-wide limits.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<InvocationState>>,
    limits: Limits,
    /// One permit per pool slot: an invocation holds one from instantiation until its guest task ends.
    instance_slots: Arc<Semaphore>,
    /// Background triggers (cron, queues) may hold at most three quarters of the slots, so requests and the
    /// nested `invoke` calls of those very triggers always find one.
    background_slots: Arc<Semaphore>,
    /// See [`Runtime::engine_hash`]; fixed for the engine's life, so computed once.
    engine_hash: Arc<str>,
    /// Fair CPU between guests (see [`fairness`]).
    governor: fairness::Governor,
    /// The host-wide budget of guest memory (see [`memory`]).
    memory: Arc<memory::MemoryBudget>,
    /// Where guest output and invocation reports go.
    telemetry: Telemetry,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// The deadline and memory cap of one invocation: the function's own settings, within the host's maximums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvocationLimits {
    pub timeout: Duration,
    pub memory_bytes: usize,
}

impl InvocationLimits {
    /// The host's defaults.
    pub fn defaults(limits: &Limits) -> Self {
        Self { timeout: limits.timeout(), memory_bytes: limits.memory_bytes() }
    }

    /// The memory cap in MiB: what GB-seconds bill.
    pub fn memory_mb(&self) -> u64 {
        (self.memory_bytes >> 20) as u64
    }
}

/// Everything one invocation runs with, besides the component itself.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub env: Arc<FunctionEnv>,
    pub capabilities: Capabilities,
    pub limits: InvocationLimits,
    /// `component/function` labels, outermost first, this invocation last (the chain of `invoke` calls), and what
    /// this invocation runs as. Its correlation id is the trace's: the runtime sets it.
    pub caller: Caller,
    /// What work this invocation is part of, and who runs it: its output and report are logged under it.
    pub trace: Arc<Trace>,
    /// Whether its component had to be loaded for it.
    pub cold_start: bool,
}

/// Who is asking for an instance slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// A request or a nested `invoke`, which someone waits on: waits `queue_timeout_ms`, then
    /// [`InvokeError::Busy`].
    Request,
    /// A cron run or a queue delivery: waits as long as it takes, and takes at most three quarters of the slots.
    Background,
}

/// A reserved pool slot: held from before instantiation until the guest is done.
#[derive(Debug)]
pub struct Slot {
    _instance: OwnedSemaphorePermit,
    _background: Option<OwnedSemaphorePermit>,
    /// Whatever else the invocation holds until the guest is done: the function's concurrency permit, the bytes
    /// of its request body.
    _held: Vec<OwnedSemaphorePermit>,
}

impl Slot {
    /// Holds `permit` for as long as the slot: until the guest is done.
    pub fn holding(mut self, permit: Option<OwnedSemaphorePermit>) -> Self {
        self._held.extend(permit);
        self
    }
}

/// Why an invocation produced no response.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The guest ran past its deadline (a loop, or a host call that never returned).
    #[error("the function ran past its {0:?} deadline")]
    Timeout(Duration),
    /// The guest trapped: a panic, an out-of-memory abort, or any other trap.
    #[error("the function trapped: {0}")]
    Trap(String),
    /// The guest returned without setting a response.
    #[error("the function returned without a response")]
    NoResponse,
    /// Every instance slot stayed busy for the whole queue timeout.
    #[error("all {0} instance slots stayed busy")]
    Busy(u32),
    /// The host's memory budget for guests stayed full (limits.memory_budget_mb).
    #[error("the host's memory budget for functions ({0} MiB) is full")]
    MemoryBudget(usize),
    /// The function's own `max_concurrency` invocations stayed busy for the whole queue timeout.
    #[error("the function's {0} concurrent invocations (max_concurrency) stayed busy")]
    Throttled(u32),
    /// The host could not set the invocation up.
    #[error("the host failed to run the function: {0}")]
    Host(String),
}

impl Runtime {
    /// Builds the engine and linker. Starts the epoch ticker thread, which stops when the engine is dropped.
    pub fn new(limits: Limits) -> anyhow::Result<Self> {
        // Each slot reserves the most any function may ask for; a function's own cap is its store's limiter.
        let memory_bytes = limits.max_memory_bytes();
        let mut pool = PoolingAllocationConfig::new();
        // A wasip2 Rust component uses about 3 core instances, 1 memory and 2 tables per component instance.
        pool.total_component_instances(limits.max_instances)
            .total_core_instances(limits.max_instances.saturating_mul(4))
            .total_memories(limits.max_instances.saturating_mul(2))
            .total_tables(limits.max_instances.saturating_mul(2))
            .total_stacks(limits.max_instances)
            .max_memory_size(memory_bytes)
            // Reset the first pages of a freed slot in place instead of with madvise: the next instance then takes
            // no page faults there, and the host sends no TLB-shootdown IPIs across cores. Before this, those took
            // about a third of the CPU time of a hello-world request. A Rust guest's stack (1 MiB), data and first
            // heap pages fit in the default 2 MiB (see BENCHMARKS.md for the cold-start cost of it).
            .linear_memory_keep_resident(limits.keep_resident_kib << 10)
            .table_keep_resident(KEEP_RESIDENT_SMALL_BYTES)
            .async_stack_keep_resident(KEEP_RESIDENT_SMALL_BYTES)
            // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), reset only the pages a guest actually touched instead
            // of memsetting the whole kept-resident region.
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            // Reserve only what an instance may use, not 4 GiB of address space per slot.
            .memory_reservation(memory_bytes as u64)
            .memory_init_cow(true)
            // No guest here uses the component model's async ABI (wasi:http is p2), and with it on, every store's
            // drop disposes of a parked worker fiber by building an error, which captures a backtrace when
            // RUST_BACKTRACE is set: about 15% of a hello-world request's CPU.
            .concurrency_support(false);
        let engine = Engine::new(&config).map_err(|e| anyhow!("failed to configure wasmtime: {e}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow!("failed to link WASI: {e}"))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| anyhow!("failed to link wasi:http: {e}"))?;
        guest::Sdk::add_to_linker::<InvocationState, wasmtime::component::HasSelf<InvocationState>>(
            &mut linker,
            |state| state,
        )
        .map_err(|e| anyhow!("failed to link edgefn:function/host: {e}"))?;
        spawn_epoch_ticker(&engine);
        background::configure_compile_pool();
        let instance_slots = Arc::new(Semaphore::new(limits.max_instances as usize));
        let background_slots = Arc::new(Semaphore::new((limits.max_instances as usize * 3 / 4).max(1)));
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = format!("{:016x}", hasher.finish()).into();
        let lanes = if limits.cpu_lanes == 0 { fairness::Governor::default_lanes() } else { limits.cpu_lanes };
        let governor = fairness::Governor::new(lanes);
        let memory = memory::MemoryBudget::new(limits.memory_budget_bytes());
        let pagemap_scan = wasmtime::PoolingAllocationConfig::is_pagemap_scan_available();
        tracing::info!(
            pagemap_scan,
            "a freed instance slot is reset by {}",
            if pagemap_scan {
                "resetting the pages it touched (PAGEMAP_SCAN)"
            } else {
                "resetting its first keep_resident_kib in place (this kernel has no PAGEMAP_SCAN)"
            }
        );
        tracing::info!(
            cpu_lanes = governor.lanes(),
            memory_budget_mb = memory.limit() >> 20,
            "guests that compute long share the CPU lanes; guest memory is bounded by the budget"
        );
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            limits,
            instance_slots,
            background_slots,
            engine_hash,
            governor,
            memory,
            telemetry: Telemetry::disabled(),
        })
    }

    /// This runtime, logging guest output and invocation reports to `telemetry`.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Where guest output and invocation reports go.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The host-wide budget of guest memory.
    pub fn memory_budget(&self) -> &Arc<memory::MemoryBudget> {
        &self.memory
    }

    /// Instance slots held by running invocations now.
    pub fn instances_in_use(&self) -> u64 {
        u64::from(self.limits.max_instances).saturating_sub(self.instance_slots.available_permits() as u64)
    }

    /// The host-wide limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Identifies the engine's code generation (wasmtime version, target, flags, tunables such as the memory
    /// reservation): compiled artifacts are only valid for an engine with the same hash.
    pub fn engine_hash(&self) -> &str {
        &self.engine_hash
    }

    /// Compiles a component ahead of time into an artifact for [`Loader`]. Blocking: call it off the async threads.
    pub fn precompile(&self, wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.engine.precompile_component(wasm).map_err(|e| anyhow!("failed to compile: {e:#}"))
    }

    /// Runs the component's `#[init]` once (its `wizer-initialize` export) and returns the component rewritten so
    /// that its memory starts as init left it. Init runs under its own deadline (`init_timeout_ms`, not a
    /// request's: init is expected to be slow, and the deadline also covers preparing the component) and under the
    /// function's memory cap; its failure (an `Err`, a panic, a trap, a timeout) is an error carrying what init
    /// printed on stderr.
    pub async fn snapshot(&self, wasm: &[u8], env: &FunctionEnv, memory_bytes: usize) -> anyhow::Result<Vec<u8>> {
        // Init instantiates from the pool like any invocation: it takes a slot, so a deploy under full load waits
        // for one instead of failing inside wasmtime (or making a request fail).
        let _slot = self.acquire_slot(SlotKind::Background, "init").await?;
        let stderr = wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(64 << 10);
        let invocation = Invocation {
            env: Arc::new(env.clone()),
            capabilities: Capabilities::default(),
            limits: InvocationLimits { timeout: self.limits.init_timeout(), memory_bytes },
            caller: Caller::default(),
            trace: Arc::default(),
            cold_start: false,
        };
        let state = InvocationState::new(&invocation, self.store_parts(), Some(stderr.clone()));
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        let init_timeout = self.limits.init_timeout();
        store.set_epoch_deadline(deadline_ticks(init_timeout));
        store.epoch_deadline_trap();
        let mut wizer = wasmtime_wizer::Wizer::new();
        // Required for wasip2 Rust components (wasmtime issue #13186); the export stays and is harmless.
        wizer.keep_init_func(true);
        let linker = self.linker.clone();
        let run = wizer
            .run_component(&mut store, wasm, async |store, component| linker.instantiate_async(store, component).await);
        match tokio::time::timeout(init_timeout + HARD_DEADLINE_SLACK, run).await {
            Ok(Ok((snapshot, _results))) => Ok(snapshot),
            Ok(Err(error)) => {
                let printed = String::from_utf8_lossy(&stderr.contents()).trim().to_owned();
                let reason = match classify_trap(error, init_timeout) {
                    InvokeError::Timeout(deadline) => format!("it ran past its {deadline:?} deadline"),
                    other => other.to_string(),
                };
                if printed.is_empty() {
                    anyhow::bail!("init failed: {reason}")
                }
                anyhow::bail!("init failed: {printed} ({reason})")
            }
            Err(_elapsed) => anyhow::bail!("init failed: it ran past its {init_timeout:?} deadline"),
        }
    }

    /// Reserves an instance slot for function `label`; see [`SlotKind`] for how long it waits. The memory budget
    /// (and the function's share of it) must also have room for a new instance: a request waits for it as long as
    /// for a slot, then gets [`InvokeError::MemoryBudget`].
    pub async fn acquire_slot(&self, kind: SlotKind, label: &str) -> Result<Slot, InvokeError> {
        let closed = |_| InvokeError::Host("the instance pool is shut down".into());
        let slot = match kind {
            SlotKind::Background => {
                let background = self.background_slots.clone().acquire_owned().await.map_err(closed)?;
                let instance = self.instance_slots.clone().acquire_owned().await.map_err(closed)?;
                Slot { _instance: instance, _background: Some(background), _held: Vec::new() }
            }
            SlotKind::Request => {
                let acquire = self.instance_slots.clone().acquire_owned();
                match tokio::time::timeout(self.limits.queue_timeout(), acquire).await {
                    Ok(instance) => Slot { _instance: instance.map_err(closed)?, _background: None, _held: Vec::new() },
                    Err(_elapsed) => return Err(InvokeError::Busy(self.limits.max_instances)),
                }
            }
        };
        let timeout = (kind == SlotKind::Request).then(|| self.limits.queue_timeout());
        let function = self.memory.function(label);
        if !self.memory.wait_for_room(&function, memory::ADMISSION_HEADROOM, timeout).await {
            return Err(InvokeError::MemoryBudget(self.memory.limit() >> 20));
        }
        Ok(slot)
    }

    fn store_parts(&self) -> state::StoreParts {
        state::StoreParts {
            telemetry: self.telemetry.clone(),
            budget: self.memory.clone(),
            output_cap: self.limits.max_output_bytes,
            sends: guest::SendAllowance::new(
                self.limits.max_sends_per_invocation,
                self.limits.max_send_bytes_per_invocation,
            ),
            max_error_bytes: self.limits.max_error_bytes,
        }
    }

    fn new_store(&self, invocation: &Invocation) -> Store<InvocationState> {
        let state = InvocationState::new(invocation, self.store_parts(), None);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        self.governor.govern(&mut store, std::time::Instant::now() + invocation.limits.timeout);
        store
    }

    /// An invocation that failed because the memory budget refused it memory is the host's capacity, not the
    /// function's fault.
    fn budget_error(&self, store: &Store<InvocationState>, error: InvokeError) -> InvokeError {
        match error {
            InvokeError::Trap(_) if store.data().limits.refused_by_budget => {
                InvokeError::MemoryBudget(self.memory.limit() >> 20)
            }
            other => other,
        }
    }

    /// Runs one cron, queue, topic or invoke function through a fresh instance of `component` in `slot`. Returns
    /// the function's outcome and the messages it settled (kept even when it trapped or timed out, so that only
    /// the others are retried).
    pub async fn call_guest(
        &self,
        component: &PreparedComponent,
        invocation: &Invocation,
        slot: Slot,
        guest_call: GuestCall,
    ) -> (Result<GuestOutcome, InvokeError>, Vec<(String, Settlement)>) {
        let _slot = slot;
        let Some(pre) = component.guest.clone() else {
            let error = InvokeError::Host("the component has no `edgefn:function/handler` export".into());
            return (Err(error), Vec::new());
        };
        let secrets = invocation.env.secrets.clone();
        let timeout = invocation.limits.timeout;
        let started = std::time::Instant::now();
        let mut busy = Duration::ZERO;
        let mut store = self.new_store(invocation);
        let run = async {
            let instance = pre.instantiate_async(&mut store).await?;
            let handler = instance.edgefn_function_handler();
            match &guest_call {
                GuestCall::Cron(event) => handler.call_on_cron(&mut store, event).await.map(|r| r.map(|()| Vec::new())),
                GuestCall::Messages(delivery) => {
                    handler.call_on_messages(&mut store, delivery).await.map(|r| r.map(|()| Vec::new()))
                }
                GuestCall::Invoke { function, payload, correlation_id } => {
                    handler.call_on_invoke(&mut store, function, payload, correlation_id).await
                }
            }
        };
        // The epoch deadline stops a guest that computes; this one also stops a guest blocked in a host call.
        // Error text is logged and stored (run history, dead-letter reasons): mask the secrets in it, and keep it
        // to limits.max_error_bytes.
        let max_error = self.limits.max_error_bytes;
        let clean = |message: &str| redact::truncate(redact::mask(message, &secrets), max_error);
        let outcome = match tokio::time::timeout(timeout + HARD_DEADLINE_SLACK, metering::timed(&mut busy, run)).await {
            Ok(Ok(outcome)) => Ok(outcome.map_err(|message| clean(&message))),
            Ok(Err(error)) => Err(match self.budget_error(&store, classify_trap(error, timeout)) {
                InvokeError::Trap(message) => InvokeError::Trap(clean(&message)),
                other => other,
            }),
            Err(_elapsed) => Err(InvokeError::Timeout(timeout)),
        };
        if self.telemetry.is_enabled() {
            let (outcome, error) = match &outcome {
                Ok(Ok(_)) => (Outcome::Ok, None),
                Ok(Err(message)) => (Outcome::Error, Some(message.clone())),
                Err(error) => (error.outcome(), Some(error.to_string())),
            };
            self.telemetry.invocation(InvocationReport {
                trace: invocation.trace.clone(),
                outcome,
                status: None,
                error,
                wall: started.elapsed(),
                guest_cpu: busy,
                memory_mb: invocation.limits.memory_mb(),
                peak_memory_bytes: store.data().limits.peak as u64,
                cold_start: invocation.cold_start,
            });
        }
        let mut settlements = std::mem::take(&mut store.data_mut().call.settlements);
        for (_, settlement) in &mut settlements {
            if let Settlement::DeadLetter(reason) = settlement {
                *reason = clean(reason);
            }
        }
        (outcome, settlements)
    }

    /// Runs one HTTP request through a fresh instance of `component` in `slot`.
    pub async fn invoke_http(
        &self,
        component: &PreparedComponent,
        invocation: &Invocation,
        slot: Slot,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<HyperOutgoingBody>, InvokeError> {
        let timeout = invocation.limits.timeout;
        let mut store = self.new_store(invocation);

        let request = request.map(Full::new);
        let (sender, mut receiver) = tokio::sync::oneshot::channel();
        let (incoming, outparam) = {
            let mut http = store.data_mut().http();
            let incoming = http.new_incoming_request(Scheme::Http, request).map_err(host_error)?;
            let outparam = http.new_response_outparam(sender).map_err(host_error)?;
            (incoming, outparam)
        };
        let pre = component.pre.clone();
        let runtime = self.clone();
        let report = self.telemetry.is_enabled().then(|| {
            let memory_mb = invocation.limits.memory_mb();
            metering::PendingReport::new(
                self.telemetry.clone(),
                invocation.trace.clone(),
                memory_mb,
                invocation.cold_start,
            )
        });
        let run_report = report.clone();
        // The epoch deadline stops a guest that computes forever; the hard deadline also stops a guest blocked in
        // a host call (epochs do not interrupt those), including after it has sent its response head.
        let hard_deadline = timeout + HARD_DEADLINE_SLACK;
        let run = async move {
            // The slot is held until the guest is done, body streaming included. The store is rebound after it
            // so it drops first: the pool slot is free before the permit lets the next request instantiate.
            let _slot = slot;
            let mut store = store;
            let started = std::time::Instant::now();
            let mut busy = Duration::ZERO;
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy.wasi_http_incoming_handler().call_handle(&mut store, incoming, outparam).await
            };
            let ended = match tokio::time::timeout(hard_deadline, metering::timed(&mut busy, run)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(runtime.budget_error(&store, classify_trap(error, timeout))),
                Err(_elapsed) => Err(InvokeError::Timeout(timeout)),
            };
            if let Some(report) = run_report {
                report.update(|report| {
                    report.wall = started.elapsed();
                    report.guest_cpu = busy;
                    report.peak_memory_bytes = store.data().limits.peak as u64;
                    if let Err(error) = &ended {
                        report.outcome = error.outcome();
                        report.error = Some(error.to_string());
                    }
                });
            }
            ended
        };
        // Most functions answer and return in one go: run them right here, on the request's own task, with no
        // task to spawn and no thread to wake. One that sets its response and keeps streaming the body goes on
        // in a task of its own; so does one whose caller goes away (the client hung up): a function always runs
        // to its end, as it would have with nobody waiting.
        let mut run = Detached::new(run);
        let answer = tokio::select! {
            biased;
            finished = &mut run => match receiver.try_recv() {
                Ok(answer) => answered_with(answer),
                Err(_none) => Err(finished.err().unwrap_or(InvokeError::NoResponse)),
            },
            answered = &mut receiver => {
                run.detach();
                match answered {
                    Ok(answer) => answered_with(answer),
                    // The guest dropped its response outparam without setting it: its own end tells why.
                    Err(_dropped) => Err(run.await.err().unwrap_or(InvokeError::NoResponse)),
                }
            }
        };
        if let Some(report) = report {
            report.update(|report| match &answer {
                Ok(response) => report.status = Some(response.status().as_u16()),
                Err(error) if report.outcome == Outcome::Ok => {
                    report.outcome = error.outcome();
                    report.error = Some(error.to_string());
                }
                Err(_) => {}
            });
        }
        answer
    }
}

/// What the guest set its response outparam to, as the invocation's result.
fn answered_with(
    answer: Result<http::Response<HyperOutgoingBody>, ErrorCode>,
) -> Result<http::Response<HyperOutgoingBody>, InvokeError> {
    answer.map_err(|code| InvokeError::Trap(format!("the function answered with an error: {code:?}")))
}

/// A guest's HTTP run: it ends with the guest, after its response has been handed over.
type GuestRun = std::pin::Pin<Box<dyn Future<Output = Result<(), InvokeError>> + Send>>;

/// A guest's run, polled in place by whoever awaits it, that goes on in a task of its own once
/// [`Detached::detach`] is called, or when it is dropped before its end.
struct Detached(Stage);

/// Where a [`Detached`] run is.
enum Stage {
    /// Polled by whoever awaits it.
    Here(GuestRun),
    /// Running in a task of its own; awaiting it waits for the task.
    Elsewhere(tokio::task::JoinHandle<Result<(), InvokeError>>),
    /// Finished, and its outcome reported.
    Done,
}

impl Detached {
    fn new(run: impl Future<Output = Result<(), InvokeError>> + Send + 'static) -> Self {
        Self(Stage::Here(Box::pin(run)))
    }

    /// Hands the rest of the run to a task of its own.
    fn detach(&mut self) {
        if let Stage::Here(run) = std::mem::replace(&mut self.0, Stage::Done) {
            self.0 = Stage::Elsewhere(tokio::spawn(run));
        }
    }
}

impl Future for Detached {
    type Output = Result<(), InvokeError>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let stage = &mut self.get_mut().0;
        let outcome = match stage {
            Stage::Here(run) => std::task::ready!(run.as_mut().poll(cx)),
            Stage::Elsewhere(task) => std::task::ready!(std::pin::Pin::new(task).poll(cx))
                .unwrap_or_else(|join| Err(InvokeError::Host(join.to_string()))),
            Stage::Done => Ok(()),
        };
        *stage = Stage::Done;
        std::task::Poll::Ready(outcome)
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        // Dropped mid-run (the caller went away): the guest finishes anyway, so that what it started (messages
        // sent, state written) is not cut in half. Without a runtime (the host is shutting down) it stops here. A
        // run already in its own task goes on there.
        if let Stage::Here(run) = std::mem::replace(&mut self.0, Stage::Done)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(run);
        }
    }
}

fn host_error(error: wasmtime::Error) -> InvokeError {
    InvokeError::Host(format!("{error:#}"))
}

fn classify_trap(error: wasmtime::Error, timeout: Duration) -> InvokeError {
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return InvokeError::Timeout(timeout);
    }
    // The alternate form includes the trap code and the guest backtrace: what an operator needs.
    InvokeError::Trap(format!("{error:#}"))
}

fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64 + 1
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
