//! `invoke`: a function calls another deployed `invoke` function by name, synchronously, JSON in and out.
//!
//! The invoke trigger implements [`Invoker`]; the runtime only sees the trait.

use super::BoxFuture;

/// Calls functions by name.
pub trait Invoker: Send + Sync + 'static {
    /// Calls the `invoke` function `function` (`name` or `component/name`) with a JSON `payload`. `chain` is who is
    /// calling, outermost first (`component/function` labels): the implementation refuses a chain that is too
    /// deep, which stops cycles. The error is a message for the calling guest.
    fn invoke(
        &self,
        chain: Vec<String>,
        function: String,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, String>>;
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
        chain: Vec<String>,
        function: String,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        match self.0.get().and_then(std::sync::Weak::upgrade) {
            Some(invoker) => invoker.invoke(chain, function, payload),
            None => Box::pin(async { Err("invoke is not available: the host is starting or stopping".to_owned()) }),
        }
    }
}
