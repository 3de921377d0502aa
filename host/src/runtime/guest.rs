//! The `edgefn:function` side of a component (wit/world.wit, world `sdk`): the host functions it imports
//! (`settle`, `send`, `publish`, `invoke`), which forward to the invocation's [`Capabilities`], and the calls into
//! its `handler` export for cron, queue, topic and invoke triggers. The key-value imports are the capability's
//! own ([`crate::capabilities::kv`]).

use super::state::InvocationState;
use crate::capabilities::bindings::p2::edgefn;
use crate::capabilities::invoke::Caller;
use crate::capabilities::{Capabilities, unavailable};
use crate::storage::backends::NewMessage;

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
    /// What this invocation may still send or publish.
    pub(crate) sends: SendAllowance,
    /// The longest dead-letter reason kept: longer ones are cut as they are settled, not after.
    pub(crate) max_error_bytes: usize,
}

/// Messages and bytes one invocation may still send or publish.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SendAllowance {
    pub(crate) messages: u32,
    pub(crate) bytes: usize,
    /// The limits, for the error that says them.
    pub(crate) max_messages: u32,
    pub(crate) max_bytes: usize,
}

impl SendAllowance {
    pub(crate) fn new(max_messages: u32, max_bytes: usize) -> Self {
        Self { messages: max_messages, bytes: max_bytes, max_messages, max_bytes }
    }

    /// Takes one message of `len` bytes, or says which limit it would pass.
    fn take(&mut self, len: usize) -> Result<(), String> {
        if self.messages == 0 {
            return Err(format!(
                "this invocation already sent {} messages, the most one may (limits.max_sends_per_invocation); nothing \
                 was sent",
                self.max_messages
            ));
        }
        if len > self.bytes {
            return Err(format!(
                "this invocation may send {} bytes in all (limits.max_send_bytes_per_invocation) and has {} left; \
                 this message is {len} bytes; nothing was sent",
                self.max_bytes, self.bytes
            ));
        }
        self.messages -= 1;
        self.bytes -= len;
        Ok(())
    }
}

impl CallContext {
    pub(crate) fn new(
        capabilities: Capabilities,
        caller: Caller,
        sends: SendAllowance,
        max_error_bytes: usize,
    ) -> Self {
        Self { capabilities, caller, settlements: Vec::new(), settlements_overflowed: false, sends, max_error_bytes }
    }

    fn sender(&self) -> String {
        self.caller.chain.last().cloned().unwrap_or_default()
    }

    /// The id of the work this invocation does, which what it sends carries; `None` outside any (init).
    fn correlation_id(&self) -> Option<String> {
        (!self.caller.correlation_id.is_empty()).then(|| self.caller.correlation_id.to_string())
    }

    /// Counts a send of `len` bytes against this invocation's allowance; a refusal is logged as a warning.
    fn take_send(&mut self, len: usize) -> Result<(), String> {
        self.sends.take(len).inspect_err(|error| {
            tracing::warn!(function = %self.sender(), "a send was refused: {error}");
        })
    }
}

/// A call into the component's `handler` export.
#[derive(Debug, Clone)]
pub enum GuestCall {
    Cron(CronEvent),
    Messages(Delivery),
    Invoke { function: String, payload: Vec<u8>, correlation_id: String },
}

/// What the export returned: the function's own `Ok` (with the JSON result of an invoke) or its `Err` message.
pub type GuestOutcome = Result<Vec<u8>, String>;

impl edgefn::function::types::Host for InvocationState {}

impl edgefn::function::host::Host for InvocationState {
    async fn settle(&mut self, message_id: String, settlement: Settlement) {
        // A delivery holds at most MAX_BATCH_SIZE messages, and only the first settlement of each counts: a guest
        // settling in a loop must not grow host memory without bound, nor can its reasons.
        let settlement = match settlement {
            Settlement::DeadLetter(reason) => {
                Settlement::DeadLetter(super::redact::truncate(reason, self.call.max_error_bytes))
            }
            other => other,
        };
        if self.call.settlements.len() < MAX_SETTLEMENTS {
            self.call.settlements.push((message_id, settlement));
        } else if !self.call.settlements_overflowed {
            self.call.settlements_overflowed = true;
            tracing::warn!(chain = ?self.call.caller.chain, "the function settled over {MAX_SETTLEMENTS} messages; ignoring the rest");
        }
    }

    async fn send(&mut self, queue: String, body: Vec<u8>, options: SendOptions) -> Result<String, String> {
        let messaging = self.call.capabilities.messaging.clone().ok_or_else(|| unavailable("send"))?;
        self.call.take_send(body.len())?;
        let message = NewMessage {
            body,
            delay_ms: options.delay_ms,
            priority: options.priority,
            correlation_id: self.call.correlation_id(),
        };
        messaging.send(self.call.sender(), queue, message).await.map(|id| id.to_string()).map_err(|e| e.to_string())
    }

    async fn publish(&mut self, topic: String, body: Vec<u8>) -> Result<u32, String> {
        let messaging = self.call.capabilities.messaging.clone().ok_or_else(|| unavailable("publish"))?;
        self.call.take_send(body.len())?;
        messaging.publish(self.call.sender(), topic, body, self.call.correlation_id()).await.map_err(|e| e.to_string())
    }

    async fn invoke(&mut self, function: String, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        let invoker = self.call.capabilities.invoker.clone().ok_or_else(|| unavailable("invoke"))?;
        invoke_apart(invoker, self.call.caller.clone(), function, payload).await
    }
}

/// `edgefn:function/async-host`, for WASI 0.3 components: the call is awaited concurrently with the instance's other
/// tasks (its store is free meanwhile), instead of holding the whole instance as a sync import would.
impl crate::capabilities::bindings::p3::edgefn::function::async_host::HostWithStore<InvocationState>
    for wasmtime::component::HasSelf<InvocationState>
{
    async fn invoke(
        accessor: &wasmtime::component::Accessor<InvocationState, Self>,
        function: String,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let (invoker, caller) = accessor
            .with(|mut access| (access.get().call.capabilities.invoker.clone(), access.get().call.caller.clone()));
        let invoker = invoker.ok_or_else(|| unavailable("invoke"))?;
        invoke_apart(invoker, caller, function, payload).await
    }
}

/// Runs the called function in a task of its own: a WASI 0.3 caller's store is inside its event loop
/// (`run_concurrent`) while it waits, and a WASI 0.3 callee's must not run nested in it (wasmtime refuses).
async fn invoke_apart(
    invoker: std::sync::Arc<dyn crate::capabilities::Invoker>,
    caller: Caller,
    function: String,
    payload: Vec<u8>,
) -> Result<Vec<u8>, String> {
    tokio::spawn(async move { invoker.invoke(caller, function, payload).await })
        .await
        .unwrap_or_else(|join| Err(format!("the invoked function's task failed: {join}")))
}

impl crate::capabilities::bindings::p3::edgefn::function::async_host::Host for InvocationState {}
