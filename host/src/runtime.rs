//! The one place that configures wasmtime: the engine, the linker, epochs and per-invocation limits.
//!
//! A [`Runtime`] is shared by every trigger. [`Runtime::prepare`] compiles a component and pre-links it once
//! ([`ProxyPre`]); every invocation then gets a fresh [`Store`] and instance from it, so nothing leaks between
//! requests, and runs under a wall-clock deadline (epoch interruption) and a memory cap.

mod state;

use state::InvocationState;
pub use state::OutboundPolicy;

use crate::config::Limits;
use anyhow::{Context as _, anyhow};
use bytes::Bytes;
use http_body_util::Full;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, Trap};
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// How often the epoch advances. The deadline of an invocation is counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The shared wasmtime engine and linker, plus the limits every invocation runs under.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<InvocationState>>,
    limits: Limits,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// What a function needs from the host at each invocation: its environment (config and secrets) and where it may
/// call out to.
#[derive(Debug, Clone, Default)]
pub struct FunctionEnv {
    pub env: Vec<(String, String)>,
    pub outbound: OutboundPolicy,
}

/// A component compiled and linked, ready to be instantiated once per invocation.
#[derive(Clone)]
pub struct PreparedComponent {
    pre: ProxyPre<InvocationState>,
}

impl std::fmt::Debug for PreparedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedComponent").finish_non_exhaustive()
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
    /// The host could not set the invocation up.
    #[error("the host failed to run the function: {0}")]
    Host(String),
}

impl Runtime {
    /// Builds the engine and linker. Starts the epoch ticker thread, which stops when the engine is dropped.
    pub fn new(limits: Limits) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| anyhow!("failed to configure wasmtime: {e}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow!("failed to link WASI: {e}"))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| anyhow!("failed to link wasi:http: {e}"))?;
        spawn_epoch_ticker(&engine);
        Ok(Self { engine, linker: Arc::new(linker), limits })
    }

    /// The limits invocations run under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles a component and checks that the host can satisfy its imports and that it exports
    /// `wasi:http/incoming-handler`. Errors say which import or export is the problem.
    pub fn prepare(&self, wasm: &[u8]) -> anyhow::Result<PreparedComponent> {
        let component = Component::new(&self.engine, wasm).map_err(|e| anyhow!("failed to compile: {e:#}"))?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("the host cannot satisfy its imports: {e:#}"))?;
        let pre = ProxyPre::new(instance_pre)
            .map_err(|e| anyhow!("it is not a wasi:http component (no `wasi:http/incoming-handler` export): {e:#}"))?;
        Ok(PreparedComponent { pre })
    }

    /// Runs one HTTP request through a fresh instance of `component`.
    pub async fn invoke_http(
        &self,
        component: &PreparedComponent,
        function_env: &FunctionEnv,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<HyperOutgoingBody>, InvokeError> {
        let timeout = self.limits.timeout();
        let mut store = Store::new(&self.engine, InvocationState::new(function_env, &self.limits));
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(deadline_ticks(timeout));
        store.epoch_deadline_trap();

        let request = request.map(Full::new);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let (incoming, outparam) = {
            let mut http = store.data_mut().http();
            let incoming = http.new_incoming_request(Scheme::Http, request).map_err(host_error)?;
            let outparam = http.new_response_outparam(sender).map_err(host_error)?;
            (incoming, outparam)
        };
        let pre = component.pre.clone();
        // The guest runs in its own task: it may keep streaming the body after it has set the response.
        let task = tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy.wasi_http_incoming_handler().call_handle(&mut store, incoming, outparam).await
        });

        // The epoch deadline stops a guest that computes forever; this timeout also covers a guest blocked in a
        // host call (epochs do not interrupt those).
        match tokio::time::timeout(timeout + EPOCH_TICK * 5, receiver).await {
            Ok(Ok(Ok(response))) => Ok(response),
            Ok(Ok(Err(code))) => Err(InvokeError::Trap(format!("the function answered with an error: {code:?}"))),
            Ok(Err(_dropped)) => Err(match task.await {
                Ok(Ok(())) => InvokeError::NoResponse,
                Ok(Err(error)) => classify_trap(error, timeout),
                Err(join) => InvokeError::Host(join.to_string()),
            }),
            Err(_elapsed) => {
                task.abort();
                Err(InvokeError::Timeout(timeout))
            }
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
    (timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
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

/// Loads `path` for the error messages of callers that want the file named.
pub fn read_wasm(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))
}
