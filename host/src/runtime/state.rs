//! Per-invocation state: what lives in one `wasmtime::Store`, and dies with it.

use super::Invocation;
use super::fairness::Pace;
use super::guest::CallContext;
use super::memory::{Limiter, MemoryBudget};
use super::output::{self, Target};
use crate::capabilities::invoke::Caller;
use crate::capabilities::outbound::PolicyHooks;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// What every store of a runtime shares.
pub(crate) struct StoreParts {
    pub(crate) telemetry: crate::telemetry::Telemetry,
    pub(crate) budget: Arc<MemoryBudget>,
    /// What one invocation may print.
    pub(crate) output_cap: usize,
    /// What one invocation may send.
    pub(crate) sends: crate::capabilities::messaging::SendAllowance,
    pub(crate) max_error_bytes: usize,
}

/// The data of one invocation's store.
pub(crate) struct InvocationState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    pub(super) table: ResourceTable,
    /// What the function was deployed with (its granted key-value stores, among others).
    pub(super) env: Arc<crate::capabilities::FunctionEnv>,
    hooks: PolicyHooks,
    pub(crate) limits: Limiter,
    pub(crate) call: CallContext,
    /// The work its output is logged under.
    work: output::CurrentWork,
    /// What it may still print.
    allowance: output::Allowance,
    /// What one invocation may send, to start each request of a reused instance with.
    sends: crate::capabilities::messaging::SendAllowance,
    /// Object uploads it holds open (bounded: each holds a file open).
    open_uploads: usize,
}

impl InvocationState {
    /// The state of `invocation`, whose guest is governed by `pace`; with `stderr`, the guest's stderr is captured
    /// there instead of printed.
    pub(crate) fn new(
        invocation: &Invocation,
        parts: StoreParts,
        stderr: Option<wasmtime_wasi::p2::pipe::MemoryOutputPipe>,
        pace: &Arc<Pace>,
    ) -> Self {
        let env = &invocation.env;
        let label = invocation.caller.chain.last().map_or("init", String::as_str);
        let mut wasi = WasiCtx::builder();
        // Never the host's own streams: a guest that prints must not be able to block the host (see output.rs).
        let allowance = output::Allowance::new(parts.output_cap);
        // Logged under the invocation's trace, unless there is none (a component's init at deploy). A reused
        // instance moves it to each request it takes (see `begin`).
        let work = output::CurrentWork::new(invocation.trace.clone());
        let log = (parts.telemetry.logs_enabled() && !invocation.trace.function.is_empty())
            .then(|| (parts.telemetry.clone(), work.clone()));
        let stream = |target, log| output::stream(target, env.secrets.clone(), allowance.clone(), label, log, pace);
        wasi.stdout(stream(Target::Stdout, log.clone()));
        match stderr {
            Some(pipe) => wasi.stderr(pipe),
            None => wasi.stderr(stream(Target::Stderr, log)),
        };
        for (key, value) in &env.env {
            wasi.env(key, value);
        }
        Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            env: invocation.env.clone(),
            hooks: PolicyHooks::new(
                env.outbound.clone(),
                invocation.trace.correlation_id.clone(),
                invocation.trace.span_id,
            ),
            limits: Limiter::new(invocation.limits.memory_bytes, parts.budget.clone(), parts.budget.function(label)),
            call: CallContext::new(
                invocation.capabilities.clone(),
                // What the function sends and invokes continues the work of its trace: the one place that says it.
                Caller {
                    correlation_id: invocation.trace.correlation_id.clone(),
                    span_id: invocation.trace.span_id,
                    ..invocation.caller.clone()
                },
                parts.sends,
                parts.max_error_bytes,
            ),
            work,
            allowance,
            sends: parts.sends,
            open_uploads: 0,
        }
    }

    /// What the key-value imports act on: see [`crate::capabilities::kv::KvView`].
    pub(crate) fn kv_view(&mut self) -> crate::capabilities::kv::KvView<'_> {
        crate::capabilities::kv::KvView {
            table: &mut self.table,
            kv: self.call.capabilities.kv.as_ref(),
            granted: &self.env.kv_stores,
            function: self.call.caller.chain.last().map(String::as_str),
            correlation_id: &self.call.caller.correlation_id,
            span: self.call.caller.span_id,
        }
    }

    /// What the object imports act on: see [`crate::capabilities::objects::ObjectsView`].
    pub(crate) fn objects_view(&mut self) -> crate::capabilities::objects::ObjectsView<'_> {
        crate::capabilities::objects::ObjectsView {
            table: &mut self.table,
            objects: self.call.capabilities.objects.as_ref(),
            granted: &self.env.object_buckets,
            open_uploads: &mut self.open_uploads,
            function: self.call.caller.chain.last().map(String::as_str),
            correlation_id: &self.call.caller.correlation_id,
        }
    }

    /// What the stream imports act on: see [`crate::capabilities::streams::StreamsView`].
    pub(crate) fn streams_view(&mut self) -> crate::capabilities::streams::StreamsView<'_> {
        crate::capabilities::streams::StreamsView {
            streams: self.call.capabilities.streams.as_ref(),
            caller: &self.call.caller,
            sends: &mut self.call.sends,
        }
    }

    /// What the rate-limit import acts on: see [`crate::capabilities::ratelimit::RateLimitView`].
    pub(crate) fn ratelimit_view(&mut self) -> crate::capabilities::ratelimit::RateLimitView<'_> {
        crate::capabilities::ratelimit::RateLimitView {
            limiters: self.call.capabilities.limiters.as_ref(),
            caller: self.call.caller.chain.last().map(String::as_str),
        }
    }

    /// What the response cache's purge import acts on: see [`crate::capabilities::cache::CacheView`].
    pub(crate) fn cache_view(&mut self) -> crate::capabilities::cache::CacheView<'_> {
        crate::capabilities::cache::CacheView {
            cache: self.call.capabilities.cache.as_ref(),
            caller: self.call.caller.chain.last().map(String::as_str),
        }
    }

    /// What the WebSocket imports act on: see [`crate::capabilities::websocket::WebSocketView`].
    pub(crate) fn websocket_view(&mut self) -> crate::capabilities::websocket::WebSocketView<'_> {
        crate::capabilities::websocket::WebSocketView {
            connections: self.call.capabilities.websockets.as_ref(),
            caller: self.call.caller.chain.last().map(String::as_str),
        }
    }

    /// What the workflow imports act on: see [`crate::capabilities::workflows::WorkflowsView`].
    pub(crate) fn workflows_view(&mut self) -> crate::capabilities::workflows::WorkflowsView<'_> {
        crate::capabilities::workflows::WorkflowsView {
            workflows: self.call.capabilities.workflows.as_ref(),
            caller: self.call.caller.chain.last().map(String::as_str),
        }
    }

    /// Moves a reused instance on to the work of `trace`: what it prints is logged under it, what it sends and
    /// fetches carries its correlation id, and its output and send allowances start again. With several requests
    /// on the instance at once, the one that started last is the instance's current work.
    pub(crate) fn begin(&mut self, trace: Arc<crate::telemetry::Trace>) {
        self.call.caller.correlation_id = trace.correlation_id.clone();
        self.call.caller.span_id = trace.span_id;
        self.call.spans.rebase(trace.span_id);
        self.call.sends = self.sends;
        self.hooks.set_work(trace.correlation_id.clone(), trace.span_id);
        self.allowance.reset();
        self.work.set(trace);
    }
}

impl InvocationState {
    /// Makes what the function does next a child of its innermost open span (or of the invocation's): what it
    /// sends and invokes, and the calls it makes out.
    pub(crate) fn follow_current_span(&mut self) {
        let current = self.call.spans.current();
        self.call.caller.span_id = current;
        self.hooks.set_work(self.call.caller.correlation_id.clone(), current);
    }
}

impl WasiView for InvocationState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for InvocationState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}
