//! The `edgefn:function` side of a component (wit/world.wit, world `sdk`): the host functions it imports, routed to
//! where each lives (`settle` records the delivery's outcome here; `send` and `publish` go to
//! [`crate::capabilities::messaging`], `invoke` to [`crate::capabilities::invoke`]), and the calls into its
//! `handler` export for cron, queue, topic and invoke triggers. The key-value imports are the capability's own
//! ([`crate::capabilities::kv`]).

use super::state::InvocationState;
use crate::capabilities::Capabilities;
use crate::capabilities::bindings::p2::edgefn;
use crate::capabilities::invoke::{Caller, invoke_apart};
use crate::capabilities::messaging::{MessagingView, SendAllowance};
use crate::capabilities::trace::GuestSpans;

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
    /// The spans the function opened (the `trace` import).
    pub(crate) spans: GuestSpans,
}

impl CallContext {
    pub(crate) fn new(
        capabilities: Capabilities,
        caller: Caller,
        sends: SendAllowance,
        max_error_bytes: usize,
    ) -> Self {
        let spans = GuestSpans::new(caller.span_id);
        Self {
            capabilities,
            caller,
            settlements: Vec::new(),
            settlements_overflowed: false,
            sends,
            max_error_bytes,
            spans,
        }
    }

    /// What the `send` and `publish` imports act on.
    fn messaging(&mut self) -> MessagingView<'_> {
        MessagingView { messaging: self.capabilities.messaging.as_ref(), caller: &self.caller, sends: &mut self.sends }
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
        self.call.messaging().send(queue, body, options).await
    }

    async fn publish(&mut self, topic: String, body: Vec<u8>) -> Result<u32, String> {
        self.call.messaging().publish(topic, body).await
    }

    async fn invoke(&mut self, function: String, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        invoke_apart(self.call.capabilities.invoker.clone(), self.call.caller.clone(), function, payload).await
    }
}

impl edgefn::function::trace::Host for InvocationState {
    async fn enter(&mut self, name: String) -> u64 {
        let span = self.call.spans.enter(&self.call.caller.correlation_id, name);
        self.follow_current_span();
        span
    }

    async fn exit(&mut self, span: u64, attributes: Vec<(String, String)>, error: Option<String>) {
        self.call.spans.exit(span, attributes, error);
        self.follow_current_span();
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
        invoke_apart(invoker, caller, function, payload).await
    }
}

impl crate::capabilities::bindings::p3::edgefn::function::async_host::Host for InvocationState {}
