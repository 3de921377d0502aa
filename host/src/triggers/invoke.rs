//! The invoke trigger: calls an `invoke` function by name, synchronously, JSON in and out. Functions reach it as
//! the [`Invoker`] capability; the admin API (`edgefn invoke`) calls it directly.

use super::{Runner, Trigger, Work};
use crate::capabilities::invoke::Caller;
use crate::capabilities::{BoxFuture, Invoker};
use crate::live::{ComponentVersion, LiveHandle, LiveSet, LookupError};
use crate::runtime::{GuestCall, InvokeError, SlotKind};
use crate::storage::telemetry::FailedInput;
use crate::telemetry::otel;
use edgefn_manifest::record::Trigger as TriggerKind;
use std::sync::Arc;
use std::time::Instant;

/// How deep `invoke` calls may nest: a cycle (`a` invokes `b` invokes `a` ...) stops here with an error.
pub const MAX_INVOKE_DEPTH: usize = 8;

/// Why an invoke produced no result.
#[derive(Debug, thiserror::Error)]
pub enum InvokeFailure {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("invoke depth limit ({MAX_INVOKE_DEPTH}) reached: {chain}; is there a cycle?")]
    TooDeep { chain: String },
    /// The function could not run to its end (busy, throttled, a trap, a timeout).
    #[error("`{label}` {error}")]
    Run { label: String, error: InvokeError },
    /// The function ran and returned its own `Err`.
    #[error("`{label}` failed: {message}")]
    Failed { label: String, message: String },
}

fn is_invoke(trigger: &TriggerKind) -> bool {
    matches!(trigger, TriggerKind::Invoke)
}

/// See the module docs.
#[derive(Debug)]
pub struct InvokeTrigger {
    live: LiveHandle,
    runner: Runner,
}

impl InvokeTrigger {
    pub fn new(live: LiveHandle, runner: Runner) -> Arc<Self> {
        Arc::new(Self { live, runner })
    }

    /// Calls the `invoke` function `name` (or `component/name`). `chain` is who is calling (outermost first); past
    /// [`MAX_INVOKE_DEPTH`] the call fails, naming the chain, instead of running. A function calling another of its
    /// own component (`origin`) reaches the function of its own version: a request that started on version 1, or
    /// on a canary, never runs half its work on another version.
    ///
    /// The call continues the work `correlation_id` (the caller's).
    pub async fn invoke(
        &self,
        chain: &[String],
        name: &str,
        payload: Vec<u8>,
        origin: Option<&Arc<ComponentVersion>>,
        correlation_id: Arc<str>,
        parent: otel::Parent,
    ) -> Result<Vec<u8>, InvokeFailure> {
        let live = self.live.load();
        let (component, function) = live.find(name, "invoke", is_invoke)?;
        let label = format!("{}/{function}", component.name());
        if chain.len() >= MAX_INVOKE_DEPTH {
            let chain = format!("{} -> {label}", chain.join(" -> "));
            tracing::warn!(function = %label, "invoke depth limit reached: {chain}");
            return Err(InvokeFailure::TooDeep { chain });
        }
        let own_version = origin.filter(|o| o.component == component.name() && o.has(&function, is_invoke)).cloned();
        let version = match own_version {
            Some(version) => version,
            None => component.pick(|v| v.has(&function, is_invoke)).cloned().ok_or_else(|| InvokeFailure::Run {
                label: label.clone(),
                error: InvokeError::Host("no version has it".into()),
            })?,
        };
        drop(live);
        let started = Instant::now();
        let mut chain = chain.to_vec();
        chain.push(label.clone());
        let depth = chain.len();
        let caller = if depth > 1 { chain[depth - 2].clone() } else { "the admin API".to_owned() };
        let work = Work {
            correlation_id: correlation_id.clone(),
            trigger: "invoke",
            detail: format!("from {caller}"),
            parent,
        };
        let kept = version.env.record_failures.then(|| payload.clone());
        let run = async {
            let prepared = self.runner.prepare(&version, &function, SlotKind::Request, chain, work).await?;
            let call =
                GuestCall::Invoke { function: function.clone(), payload, correlation_id: correlation_id.to_string() };
            let (outcome, _) =
                self.runner.runtime().call_guest(&prepared.component, &prepared.invocation, prepared.slot, call).await;
            outcome
        };
        let result = match run.await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(message)) => Err(InvokeFailure::Failed { label: label.clone(), message }),
            Err(error) => Err(InvokeFailure::Run { label: label.clone(), error }),
        };
        if let (Some(payload), Err(error)) = (kept, &result) {
            let bytes = payload.len() as u64;
            let error = error.to_string();
            self.runner.record_failure(&version, &function, &correlation_id, "invoke", &error, bytes, || {
                Some(FailedInput::Invoke { payload })
            });
        }
        let duration_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(_) => tracing::info!(function = %label, version = version.version, depth, duration_ms, "invoke ok"),
            Err(error) => {
                tracing::warn!(function = %label, version = version.version, depth, duration_ms, %error, "invoke failed")
            }
        }
        result
    }
}

impl Invoker for InvokeTrigger {
    fn invoke(
        &self,
        caller: Caller,
        function: String,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        // The call may outlive this borrow (it is awaited inside a guest): run it on an owned handle.
        let this = Self { live: self.live.clone(), runner: self.runner.clone() };
        let origin = caller.origin.and_then(|origin| origin.downcast::<ComponentVersion>().ok());
        Box::pin(async move {
            let correlation_id = caller.correlation_id.clone();
            let parent = otel::Parent::local(caller.span_id);
            this.invoke(&caller.chain, &function, payload, origin.as_ref(), correlation_id, parent)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

impl Trigger for InvokeTrigger {
    fn kind(&self) -> &'static str {
        "invoke"
    }

    /// Nothing to start: each call reads the live set when it is made.
    fn start(&self, _component: &str, _live: &Arc<LiveSet>) {}

    /// Nothing to drain: a call in flight holds the version it started on until it ends.
    fn drain(&self, _component: &str, _deadline: Instant) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
