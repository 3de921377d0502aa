//! The `edgefn:function` side of a component (wit/world.wit, world `sdk`): the host functions it imports
//! (`settle`, `send`, `publish`, `invoke`), which forward to the invocation's [`Capabilities`], and the calls into
//! its `handler` export for cron, queue, topic and invoke triggers.

use super::state::InvocationState;
use crate::capabilities::invoke::Caller;
use crate::capabilities::{Capabilities, unavailable};
use crate::storage::queue::NewMessage;

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

/// What the host functions of one invocation act on: its capabilities, who it is (the chain of `invoke` calls
/// that led here), and the settlements of the delivery being handled.
#[derive(Debug, Default)]
pub struct CallContext {
    pub(crate) capabilities: Capabilities,
    pub(crate) caller: Caller,
    pub(crate) settlements: Vec<(String, Settlement)>,
    /// Set once the guest settled more than [`MAX_SETTLEMENTS`] times (the rest were ignored).
    pub(crate) settlements_overflowed: bool,
}

impl CallContext {
    pub fn new(capabilities: Capabilities, caller: Caller) -> Self {
        Self { capabilities, caller, settlements: Vec::new(), settlements_overflowed: false }
    }
}

/// A call into the component's `handler` export.
#[derive(Debug, Clone)]
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
            tracing::warn!(chain = ?self.call.caller.chain, "the function settled over {MAX_SETTLEMENTS} messages; ignoring the rest");
        }
    }

    async fn send(&mut self, queue: String, body: Vec<u8>, options: SendOptions) -> Result<String, String> {
        let messaging = self.call.capabilities.messaging.clone().ok_or_else(|| unavailable("send"))?;
        let message = NewMessage { body, delay_ms: options.delay_ms, priority: options.priority };
        messaging.send(queue, message).await.map(|id| id.to_string()).map_err(|e| e.to_string())
    }

    async fn publish(&mut self, topic: String, body: Vec<u8>) -> Result<u32, String> {
        let messaging = self.call.capabilities.messaging.clone().ok_or_else(|| unavailable("publish"))?;
        messaging.publish(topic, body).await.map_err(|e| e.to_string())
    }

    async fn invoke(&mut self, function: String, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        let invoker = self.call.capabilities.invoker.clone().ok_or_else(|| unavailable("invoke"))?;
        invoker.invoke(self.call.caller.clone(), function, payload).await
    }
}
