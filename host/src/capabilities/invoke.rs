//! `invoke`: a function calls another deployed `invoke` function by name, synchronously, JSON in and out.
//!
//! The invoke trigger implements [`Invoker`]; the runtime only sees the trait.

use super::BoxFuture;
use crate::telemetry::otel;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use std::any::Any;
use std::sync::Arc;

/// What the calling function runs as (its component version), opaque here: the runtime passes it through from
/// the trigger that started the invocation to the [`Invoker`], which knows what it is.
pub type Origin = Arc<dyn Any + Send + Sync>;

/// Who calls: the chain of `component/function` labels, outermost first, the caller's [`Origin`], and the id of
/// the work it does (which the call continues).
#[derive(Clone, Default)]
pub struct Caller {
    pub chain: Vec<String>,
    pub origin: Option<Origin>,
    pub correlation_id: Arc<str>,
    /// The span of the work this caller is doing now (see `telemetry::otel`): the parent of what it starts.
    pub span_id: u64,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("chain", &self.chain)
            .field("correlation_id", &self.correlation_id)
            .finish_non_exhaustive()
    }
}

/// Calls functions by name.
pub trait Invoker: Send + Sync + 'static {
    /// Calls the `invoke` function `function` (`name` or `component/name`) with a JSON `payload` for `caller`. The
    /// implementation refuses a chain that is too deep, which stops cycles. The error is a message for the calling
    /// guest.
    fn invoke(&self, caller: Caller, function: String, payload: Vec<u8>)
    -> BoxFuture<'static, Result<Vec<u8>, String>>;
}

/// An [`Invoker`] plugged in after it is built: the invoke trigger runs guests whose capabilities include the
/// invoke trigger itself, so the capabilities are built first with this, and the trigger is set into it.
#[derive(Default)]
pub struct DeferredInvoker(std::sync::OnceLock<std::sync::Weak<dyn Invoker>>);

impl std::fmt::Debug for DeferredInvoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferredInvoker").field("set", &self.0.get().is_some()).finish()
    }
}

impl DeferredInvoker {
    /// Plugs in the implementation (held weakly: it owns what holds this). Later calls change nothing.
    pub fn set(&self, invoker: &std::sync::Arc<dyn Invoker>) {
        let _ = self.0.set(std::sync::Arc::downgrade(invoker));
    }
}

impl Invoker for DeferredInvoker {
    fn invoke(
        &self,
        caller: Caller,
        function: String,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        match self.0.get().and_then(std::sync::Weak::upgrade) {
            Some(invoker) => invoker.invoke(caller, function, payload),
            None => Box::pin(async { Err("invoke is not available: the host is starting or stopping".to_owned()) }),
        }
    }
}

/// The `invoke` import: runs the called function in a task of its own, because a WASI 0.3 caller's store is inside
/// its event loop (`run_concurrent`) while it waits, and a WASI 0.3 callee's must not run nested in it (wasmtime
/// refuses). `None` where nothing can be invoked yet (a component's init at deploy).
pub async fn invoke_apart(
    invoker: Option<Arc<dyn Invoker>>,
    caller: Caller,
    function: String,
    payload: Vec<u8>,
) -> Result<Vec<u8>, String> {
    let invoker = invoker.ok_or_else(|| super::unavailable("invoke"))?;
    let span = otel::start(&caller.correlation_id, caller.span_id, SpanKind::Client, format!("invoke {function}"));
    let attributes = vec![KeyValue::new("edgefn.invoked", function.clone())];
    let caller = Caller { span_id: span.id(), ..caller };
    let result = tokio::spawn(async move { invoker.invoke(caller, function, payload).await })
        .await
        .unwrap_or_else(|join| Err(format!("the invoked function's task failed: {join}")));
    span.end(attributes, result.as_ref().err().cloned());
    result
}
