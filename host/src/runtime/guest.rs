//! The `edgefn:function` side of a component (wit/world.wit, world `sdk`): the host functions it imports
//! (`settle`, `send`, `publish`, `invoke`) and calls into its `handler` export for cron, queue, topic and invoke
//! triggers.

use super::state::InvocationState;
use std::sync::Arc;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "edgefn:function/sdk",
    imports: { default: async },
    exports: { default: async },
    require_store_data_send: true,
});

pub use edgefn::function::types::{CronEvent, Delivery, Message, SendOptions, Settlement};

/// The most settlements one invocation records (a batch has at most 1,000 messages).
const MAX_SETTLEMENTS: usize = 4 * edgefn_manifest::record::bounds::MAX_BATCH_SIZE as usize;

/// How deep `invoke` calls may nest: a cycle (`a` invokes `b` invokes `a` ...) stops here with an error.
pub const MAX_INVOKE_DEPTH: usize = 8;

/// What the host functions of one invocation act on: the platform (queues, topics, other functions), the chain
/// of `invoke` calls that led here, and the settlements of the delivery being handled.
#[derive(Default)]
pub struct CallContext {
    pub(crate) platform: Option<Arc<crate::platform::Platform>>,
    /// `component/function` labels, outermost first, this invocation last.
    pub(crate) chain: Vec<String>,
    pub(crate) settlements: Vec<(String, Settlement)>,
    /// Set once the guest settled more than [`MAX_SETTLEMENTS`] times (the rest were ignored).
    pub(crate) settlements_overflowed: bool,
}

impl CallContext {
    pub fn new(platform: Option<Arc<crate::platform::Platform>>, chain: Vec<String>) -> Self {
        Self { platform, chain, settlements: Vec::new(), settlements_overflowed: false }
    }
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext").field("chain", &self.chain).finish_non_exhaustive()
    }
}

/// A call into the component's `handler` export.
#[derive(Debug)]
pub enum GuestCall {
    Cron(CronEvent),
    Messages(Delivery),
    Invoke { function: String, payload: Vec<u8> },
}

/// What the export returned: the function's own `Ok` (with the JSON result of an invoke) or its `Err` message.
pub type GuestOutcome = Result<Vec<u8>, String>;

impl edgefn::function::types::Host for InvocationState {}

impl edgefn::function::host::Host for InvocationState {
    async fn settle(&mut self, message_id: String, settlement: Settlement) {
        // A delivery holds at most MAX_BATCH_SIZE messages, and only the first settlement of each counts: a guest
        // settling in a loop must not grow host memory without bound.
        if self.call.settlements.len() < MAX_SETTLEMENTS {
            self.call.settlements.push((message_id, settlement));
        } else if !self.call.settlements_overflowed {
            self.call.settlements_overflowed = true;
            tracing::warn!(chain = ?self.call.chain, "the function settled over {MAX_SETTLEMENTS} messages; ignoring the rest");
        }
    }

    async fn send(&mut self, queue: String, body: Vec<u8>, options: SendOptions) -> Result<String, String> {
        let platform = self.platform()?;
        let message = crate::queue::NewMessage { body, delay_ms: options.delay_ms, priority: options.priority };
        platform.send(&queue, vec![message]).map(|ids| ids.first().map(i64::to_string).unwrap_or_default())
    }

    async fn publish(&mut self, topic: String, body: Vec<u8>) -> Result<u32, String> {
        self.platform()?.publish(&topic, body)
    }

    async fn invoke(&mut self, function: String, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        let platform = self.platform()?;
        let chain = self.call.chain.clone();
        // Boxed: this future contains another invocation, which may call back here.
        let call: std::pin::Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>> =
            Box::pin(async move { platform.invoke(&chain, &function, payload).await });
        call.await
    }
}

impl InvocationState {
    fn platform(&self) -> Result<Arc<crate::platform::Platform>, String> {
        self.call.platform.clone().ok_or_else(|| "queues, topics and invoke are not available during init".to_owned())
    }
}
