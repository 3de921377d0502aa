//! Per-invocation state: what lives in one `wasmtime::Store`, and dies with it.

use super::Invocation;
use super::guest::CallContext;
use super::redact;
use crate::capabilities::outbound::PolicyHooks;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The data of one invocation's store.
pub(crate) struct InvocationState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: PolicyHooks,
    pub(crate) limits: StoreLimits,
    pub(crate) call: CallContext,
}

impl InvocationState {
    /// The state of `invocation`; with `stderr`, the guest's stderr is captured there instead of printed.
    pub(crate) fn new(invocation: &Invocation, stderr: Option<wasmtime_wasi::p2::pipe::MemoryOutputPipe>) -> Self {
        let env = &invocation.env;
        let mut wasi = WasiCtx::builder();
        if env.secrets.is_empty() {
            wasi.inherit_stdout();
        } else {
            wasi.stdout(redact::stream(redact::Target::Stdout, env.secrets.clone()));
        }
        match stderr {
            Some(pipe) => wasi.stderr(pipe),
            None if env.secrets.is_empty() => wasi.inherit_stderr(),
            None => wasi.stderr(redact::stream(redact::Target::Stderr, env.secrets.clone())),
        };
        for (key, value) in &env.env {
            wasi.env(key, value);
        }
        Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: PolicyHooks::new(env.outbound.clone()),
            limits: StoreLimitsBuilder::new()
                .memory_size(invocation.limits.memory_bytes)
                .trap_on_grow_failure(false)
                .build(),
            call: CallContext::new(invocation.capabilities.clone(), invocation.caller.clone()),
        }
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
