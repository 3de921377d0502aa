//! The one place that configures wasmtime: the engine, the linker, epochs, the instance pool and the limits of
//! each invocation.
//!
//! A [`Runtime`] is shared by every trigger. [`Runtime::precompile`] compiles a component ahead of time;
//! [`loader::Loader`] maps such an artifact and pre-links it once; every invocation then gets a fresh [`Store`] and
//! instance from it, so nothing leaks between requests, and runs under a wall-clock deadline (epoch interruption
//! plus a timer) and a memory cap, both per function ([`InvocationLimits`]). Instances come from the pooling
//! allocator (copy-on-write memory images); a semaphore in front of the pool ([`Runtime::acquire_slot`]) turns
//! "pool full" into a short wait and then a 503, never a failure inside wasmtime. Every executor ends an
//! invocation the same way, by `phases.rs`: how the run ended, its error text cleaned, what its report says.
//!
//! What a guest reaches beyond WASI comes in as [`Capabilities`] (trait objects); the runtime imports nothing
//! above it.

pub mod background;
mod contained;
mod engines;
pub mod fairness;
pub mod guest;
pub mod loader;
mod long_running;
pub mod memory;
mod metering;
pub mod output;
#[doc(hidden)]
pub mod phase_bench;
mod phases;
pub(crate) mod redact;
mod state;
mod wasip2;
mod wasip3;

pub use engines::Abi;
pub use guest::{CronEvent, Delivery, GuestCall, GuestOutcome, Message, Settlement};
pub use loader::{Artifact, FileIdentity, Loader, PreparedComponent, Start};
pub use wasip3::{ResponseBody as P3ResponseBody, ReusePool};

use crate::capabilities::invoke::Caller;
use crate::capabilities::messaging::SendAllowance;
use crate::capabilities::{Capabilities, FunctionEnv};
use crate::config::RuntimeLimits;
use crate::telemetry::{InvocationReport, Telemetry, Trace};
use bytes::Bytes;
use engines::{EPOCH_TICK, Engines};
use loader::{GuestPre, HttpPre};
use state::InvocationState;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store;

/// How far past its deadline a guest blocked in a host call (which epochs do not interrupt) is cut off.
const HARD_DEADLINE_SLACK: Duration = Duration::from_millis(50);

/// The shared wasmtime engines and linkers (one per guest ABI), plus the host-wide limits.
#[derive(Clone)]
pub struct Runtime {
    engines: Engines,
    limits: RuntimeLimits,
    /// What one invocation may send or publish (the messaging capability's allowance, from `[limits]`).
    sends: SendAllowance,
    /// One permit per pool slot: an invocation holds one from instantiation until its guest task ends.
    instance_slots: Arc<Semaphore>,
    /// Background triggers (cron, queues) may hold at most three quarters of the slots, so requests and the
    /// nested `invoke` calls of those very triggers always find one.
    background_slots: Arc<Semaphore>,
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
    pub fn defaults(limits: &RuntimeLimits) -> Self {
        Self { timeout: limits.timeout(), memory_bytes: limits.memory_bytes() }
    }

    /// The memory cap in MiB: what GB-seconds bill.
    pub fn memory_mb(&self) -> u64 {
        (self.memory_bytes >> 20) as u64
    }
}

/// How far one instance of a WASI 0.3 HTTP function is reused (see [`crate::config::ReuseSettings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reuse {
    pub max_requests: u32,
    pub max_concurrent: u32,
    pub idle: Duration,
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
    /// Builds the engines and linkers. Starts the epoch ticker threads, which stop when the engines are dropped.
    pub fn new(limits: RuntimeLimits) -> anyhow::Result<Self> {
        let engines = Engines::new(&limits)?;
        background::configure_compile_pool();
        let instance_slots = Arc::new(Semaphore::new(limits.max_instances as usize));
        let background_slots = Arc::new(Semaphore::new((limits.max_instances as usize * 3 / 4).max(1)));
        let lanes = if limits.cpu_lanes == 0 { fairness::Governor::default_lanes() } else { limits.cpu_lanes };
        let governor = fairness::Governor::new(lanes);
        let memory = memory::MemoryBudget::new(limits.memory_budget_bytes());
        let pagemap_scan = engines::slots_reset_by_scan(&limits);
        tracing::info!(
            pagemap_scan,
            "a freed instance slot is reset by {}",
            if pagemap_scan {
                "resetting the pages it touched (PAGEMAP_SCAN)"
            } else {
                "resetting its first keep_resident_kib in place (slot_reset = in-place, swap is on, or this kernel \
                 has no PAGEMAP_SCAN)"
            }
        );
        tracing::info!(
            cpu_lanes = governor.lanes(),
            memory_budget_mb = memory.limit() >> 20,
            "guests that compute long share the CPU lanes; guest memory is bounded by the budget"
        );
        Ok(Self {
            engines,
            limits,
            sends: SendAllowance::default_for(&crate::config::QueueLimits::default()),
            instance_slots,
            background_slots,
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

    /// This runtime, giving each invocation `sends` to send and publish with.
    pub fn with_send_allowance(mut self, sends: SendAllowance) -> Self {
        self.sends = sends;
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

    /// The limits the runtime enforces.
    pub fn limits(&self) -> &RuntimeLimits {
        &self.limits
    }

    /// Identifies the engine's code generation (wasmtime version, target, flags, tunables such as the memory
    /// reservation): compiled artifacts are only valid for an engine with the same hash.
    pub fn engine_hash(&self) -> &str {
        self.engines.hash()
    }

    /// Compiles a component ahead of time into an artifact for [`Loader`], on the engine of its ABI. Blocking: call
    /// it off the async threads.
    pub fn precompile(&self, wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.engines.backend(Abi::of(wasm)).precompile(wasm)
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
        let backend = self.engines.backend(Abi::of(wasm));
        // Init is not governed (its deadline is a plain epoch trap): its pace is never read.
        let state = InvocationState::new(&invocation, self.store_parts(), Some(stderr.clone()), &Arc::default());
        let mut store = Store::new(&backend.engine, state);
        store.limiter(|state| &mut state.limits);
        let init_timeout = self.limits.init_timeout();
        store.set_epoch_deadline(phases::deadline_ticks(init_timeout, EPOCH_TICK));
        store.epoch_deadline_trap();
        let mut wizer = wasmtime_wizer::Wizer::new();
        // Required for wasip2 Rust components (wasmtime issue #13186); the export stays and is harmless.
        wizer.keep_init_func(true);
        let linker = backend.linker.clone();
        let run = wizer
            .run_component(&mut store, wasm, async |store, component| linker.instantiate_async(store, component).await);
        // Wizer unwraps some of its own steps (see contained.rs): a component that makes one fail is refused with
        // the panic's message instead of ending the deploy in a panic.
        let ran = match tokio::time::timeout(init_timeout + HARD_DEADLINE_SLACK, contained::Contained::new(run)).await {
            Ok(Err(panic)) => anyhow::bail!("the snapshot failed inside wasmtime-wizer: {panic}"),
            Ok(Ok(ran)) => Some(ran),
            Err(_elapsed) => None,
        };
        match phases::ended(ran, init_timeout, self.budget_state(&store)) {
            Ok((snapshot, _results)) => Ok(snapshot),
            Err(error) => {
                let printed = String::from_utf8_lossy(&stderr.contents()).trim().to_owned();
                let reason = match error {
                    InvokeError::Timeout(deadline) => format!("it ran past its {deadline:?} deadline"),
                    other => other.to_string(),
                };
                if printed.is_empty() {
                    anyhow::bail!("init failed: {reason}")
                }
                anyhow::bail!("init failed: {printed} ({reason})")
            }
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
                // Someone waits on this one: deploy work starting now keeps a core free (see background.rs).
                background::note_request();
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
            sends: self.sends,
            max_error_bytes: self.limits.max_error_bytes,
        }
    }

    fn new_store(&self, invocation: &Invocation, abi: Abi) -> (Store<InvocationState>, Arc<fairness::Pace>) {
        self.new_store_until(invocation, abi, std::time::Instant::now() + invocation.limits.timeout)
    }

    /// A store for `invocation` whose guest is trapped at `deadline` if it is still computing then, and its pace,
    /// which whoever drives the store tells when the store's future is pending (see `fairness`).
    fn new_store_until(
        &self,
        invocation: &Invocation,
        abi: Abi,
        deadline: std::time::Instant,
    ) -> (Store<InvocationState>, Arc<fairness::Pace>) {
        let pace = Arc::new(fairness::Pace::default());
        let state = InvocationState::new(invocation, self.store_parts(), None, &pace);
        let mut store = Store::new(&self.engines.backend(abi).engine, state);
        store.limiter(|state| &mut state.limits);
        self.governor.govern(&mut store, deadline, &pace);
        (store, pace)
    }

    /// Runs one cron, queue, topic or invoke function through an instance of `component` in `slot`. Returns the
    /// function's outcome and the messages it settled (kept even when it trapped or timed out, so that only the
    /// others are retried).
    pub async fn call_guest(
        &self,
        component: &PreparedComponent,
        invocation: &Invocation,
        slot: Slot,
        guest_call: GuestCall,
    ) -> (Result<GuestOutcome, InvokeError>, Vec<(String, Settlement)>) {
        match &component.guest {
            Some(GuestPre::P2(pre)) => self.call_guest_p2(pre, invocation, slot, guest_call).await,
            Some(GuestPre::P3(pre)) => self.call_guest_p3(pre, invocation, slot, guest_call).await,
            None => {
                let error = InvokeError::Host("the component has no `edgefn:function` handler export".into());
                (Err(error), Vec::new())
            }
        }
    }

    /// Runs one HTTP request through a fresh instance of `component` in `slot`. A WASI 0.2 component gets the body
    /// whole (`request` is read to its end first); a WASI 0.3 one reads it as it arrives.
    pub async fn invoke_http(
        &self,
        component: &PreparedComponent,
        invocation: &Invocation,
        slot: Slot,
        request: http::Request<RequestBody>,
    ) -> Result<http::Response<ResponseBody>, InvokeError> {
        match &component.http {
            HttpPre::P2(pre) => {
                let request = match request.into_parts() {
                    (parts, RequestBody::Whole(bytes)) => http::Request::from_parts(parts, bytes),
                    (_, RequestBody::Streaming(_)) => {
                        return Err(InvokeError::Host("a WASI 0.2 component needs its request body whole".into()));
                    }
                };
                let response = self.invoke_http_p2(pre, invocation, slot, request).await?;
                Ok(response.map(ResponseBody::P2))
            }
            HttpPre::P3(pre) => {
                let response = self.invoke_http_p3(pre, invocation, slot, request).await?;
                Ok(response.map(ResponseBody::P3))
            }
        }
    }

    /// Runs `call` (instantiate, then call one export) on a fresh store of `abi` in `slot`, under the invocation's
    /// deadline, and reports it. Returns the function's outcome and the messages it settled (kept even when it
    /// trapped or timed out, so that only the others are retried).
    async fn run_guest_call(
        &self,
        invocation: &Invocation,
        slot: Slot,
        abi: Abi,
        call: impl AsyncFnOnce(&mut Store<InvocationState>) -> wasmtime::Result<GuestOutcome>,
    ) -> (Result<GuestOutcome, InvokeError>, Vec<(String, Settlement)>) {
        let secrets = invocation.env.secrets.clone();
        let timeout = invocation.limits.timeout;
        let started = std::time::Instant::now();
        let mut busy = Duration::ZERO;
        let (mut store, pace) = self.new_store(invocation, abi);
        // The epoch deadline stops a guest that computes; this one also stops a guest blocked in a host call.
        let run = metering::timed(&mut busy, &pace, call(&mut store));
        let ran = tokio::time::timeout(timeout + HARD_DEADLINE_SLACK, run).await.ok();
        let max_error = self.limits.max_error_bytes;
        let outcome = phases::cleaned(phases::ended(ran, timeout, self.budget_state(&store)), &secrets, max_error);
        if self.telemetry.is_enabled() {
            let (outcome, error) = phases::guest_report(&outcome);
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
        let peak = store.data().limits.peak;
        phases::release(store, slot, peak);
        phases::cleaned_settlements(&mut settlements, &secrets, max_error);
        (outcome, settlements)
    }

    /// Whether the memory budget refused `store`'s guest memory: see [`phases::ended`].
    fn budget_state(&self, store: &Store<InvocationState>) -> phases::BudgetState {
        phases::BudgetState { refused: store.data().limits.refused_by_budget, limit_mb: self.memory.limit() >> 20 }
    }
}

fn host_error(error: wasmtime::Error) -> InvokeError {
    InvokeError::Host(format!("{error:#}"))
}

/// A request body as the HTTP trigger hands it to [`Runtime::invoke_http`].
pub enum RequestBody {
    /// Read whole before the call (what a WASI 0.2 component gets).
    Whole(Bytes),
    /// Still arriving, within the trigger's bounds (a WASI 0.3 component reads it as it comes).
    Streaming(wasmtime_wasi_http::WasiBody),
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestBody::Whole(bytes) => write!(f, "Whole({} bytes)", bytes.len()),
            RequestBody::Streaming(_) => f.write_str("Streaming"),
        }
    }
}

/// A function's response body, as the executor of its ABI produces it.
pub enum ResponseBody {
    P2(wasmtime_wasi_http::p2::body::HyperOutgoingBody),
    P3(wasip3::ResponseBody),
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResponseBody::P2(_) => "ResponseBody::P2",
            ResponseBody::P3(_) => "ResponseBody::P3",
        })
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ResponseBody::P2(body) => std::pin::Pin::new(body).poll_frame(cx).map_err(Into::into),
            ResponseBody::P3(body) => std::pin::Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::P2(body) => body.is_end_stream(),
            ResponseBody::P3(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            ResponseBody::P2(body) => body.size_hint(),
            ResponseBody::P3(body) => body.size_hint(),
        }
    }
}
