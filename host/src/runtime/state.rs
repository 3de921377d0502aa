//! Per-invocation state: what lives in one `wasmtime::Store`, and dies with it.

use super::FunctionEnv;
use super::redact;
use crate::config::Limits;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// The hosts a function may reach with outbound HTTP. Default: none.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    /// `host` or `host:port` entries; `*` allows every host.
    allowed_hosts: Arc<[String]>,
}

impl OutboundPolicy {
    pub fn allow(hosts: impl IntoIterator<Item = String>) -> Self {
        Self { allowed_hosts: hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect() }
    }

    /// Whether a request to `host` (and `port`, if the URI named one) may go out.
    pub fn allows(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.to_ascii_lowercase();
        self.allowed_hosts.iter().any(|allowed| {
            allowed == "*" || *allowed == host || port.is_some_and(|port| *allowed == format!("{host}:{port}"))
        })
    }
}

/// `wasi:http` hooks: outbound requests pass through the function's [`OutboundPolicy`].
struct PolicyHooks {
    policy: OutboundPolicy,
}

impl WasiHttpHooks for PolicyHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        let host = request.uri().host().unwrap_or_default().to_owned();
        let port = request.uri().port_u16();
        if !self.policy.allows(&host, port) {
            tracing::warn!(%host, "outbound request denied: host is not in the function's allowed_outbound_hosts");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let default: &mut dyn WasiHttpHooks = Default::default();
        default.send_request(request, options, fut)
    }
}

/// The data of one invocation's store.
pub(crate) struct InvocationState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: PolicyHooks,
    pub(crate) limits: StoreLimits,
    pub(crate) call: super::guest::CallContext,
}

impl InvocationState {
    pub(crate) fn new(function_env: &FunctionEnv, limits: &Limits) -> Self {
        Self::with_stderr(function_env, limits, None)
    }

    /// Like [`InvocationState::new`], with the guest's stderr captured in `stderr` instead of inherited.
    pub(crate) fn with_stderr(
        function_env: &FunctionEnv,
        limits: &Limits,
        stderr: Option<wasmtime_wasi::p2::pipe::MemoryOutputPipe>,
    ) -> Self {
        let mut wasi = WasiCtx::builder();
        if function_env.secrets.is_empty() {
            wasi.inherit_stdout();
        } else {
            wasi.stdout(redact::stream(redact::Target::Stdout, function_env.secrets.clone()));
        }
        match stderr {
            Some(pipe) => wasi.stderr(pipe),
            None if function_env.secrets.is_empty() => wasi.inherit_stderr(),
            None => wasi.stderr(redact::stream(redact::Target::Stderr, function_env.secrets.clone())),
        };
        for (key, value) in &function_env.env {
            wasi.env(key, value);
        }
        Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: PolicyHooks { policy: function_env.outbound.clone() },
            limits: StoreLimitsBuilder::new().memory_size(limits.memory_bytes()).trap_on_grow_failure(false).build(),
            call: super::guest::CallContext::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_is_denied_by_default_and_allowed_by_host_or_host_port() {
        assert!(!OutboundPolicy::default().allows("example.com", None));
        let policy = OutboundPolicy::allow(["Example.com".to_owned(), "127.0.0.1:9000".to_owned()]);
        assert!(policy.allows("example.com", Some(443)));
        assert!(policy.allows("127.0.0.1", Some(9000)));
        assert!(!policy.allows("127.0.0.1", Some(9001)));
        assert!(OutboundPolicy::allow(["*".to_owned()]).allows("anything", None));
    }
}
