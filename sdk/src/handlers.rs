//! The functions that are not HTTP: every `#[function]` with a cron, queue, topic or invoke trigger registers
//! itself here, and the component's `edgefn:function/handler` export finds them by name.

use crate::cron::CronEvent;
use crate::queue::RawMessage;
use crate::{Error, init};

/// A cron function, as registered by `#[function(trigger = cron(...))]`.
#[derive(Debug)]
pub struct CronFunction {
    pub name: &'static str,
    pub handler: fn(CronEvent) -> Result<(), Error>,
}

/// A queue consumer or topic subscriber.
#[derive(Debug)]
pub struct MessageFunction {
    pub name: &'static str,
    pub handler: fn(String, Vec<RawMessage>) -> Result<(), Error>,
}

/// An `invoke` function: JSON in, JSON out.
#[derive(Debug)]
pub struct InvokeFunction {
    pub name: &'static str,
    pub handler: fn(&[u8]) -> Result<Vec<u8>, Error>,
}

inventory::collect!(CronFunction);
inventory::collect!(MessageFunction);
inventory::collect!(InvokeFunction);

/// What `#[init]`, cron, queue and topic functions may return: nothing, or a `Result<(), E>`.
pub trait IntoHandlerResult {
    fn into_handler_result(self) -> Result<(), Error>;
}

impl IntoHandlerResult for () {
    fn into_handler_result(self) -> Result<(), Error> {
        Ok(())
    }
}

impl<E: Into<Error>> IntoHandlerResult for Result<(), E> {
    fn into_handler_result(self) -> Result<(), Error> {
        self.map_err(Into::into)
    }
}

/// What `invoke` functions may return: a serializable value, or a `Result` of one.
pub trait IntoInvokeResult {
    fn into_invoke_result(self) -> Result<Vec<u8>, Error>;
}

impl<T: serde::Serialize, E: Into<Error>> IntoInvokeResult for Result<T, E> {
    fn into_invoke_result(self) -> Result<Vec<u8>, Error> {
        let value = self.map_err(Into::into)?;
        serde_json::to_vec(&value).map_err(|e| Error::internal(format!("failed to encode the result: {e}")))
    }
}

/// Decodes an `invoke` payload; a payload that is not the expected JSON is the caller's error.
pub fn decode_payload<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(payload)
        .map_err(|e| Error::bad_request(format!("the payload is not a valid {}: {e}", std::any::type_name::<T>())))
}

fn not_found(kind: &str, function: &str) -> String {
    format!("this component has no {kind} function `{function}`")
}

fn failed(function: &str, error: &Error) -> String {
    format!("`{function}` failed: {}", error.message())
}

#[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
pub(crate) fn run_cron(function: &str, event: CronEvent) -> Result<(), String> {
    init::ensure()?;
    let found = inventory::iter::<CronFunction>.into_iter().find(|f| f.name == function);
    let cron = found.ok_or_else(|| not_found("cron", function))?;
    (cron.handler)(event).map_err(|e| failed(function, &e))
}

#[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
pub(crate) fn run_messages(function: &str, source: String, messages: Vec<RawMessage>) -> Result<(), String> {
    init::ensure()?;
    let found = inventory::iter::<MessageFunction>.into_iter().find(|f| f.name == function);
    let consumer = found.ok_or_else(|| not_found("queue or topic", function))?;
    (consumer.handler)(source, messages).map_err(|e| failed(function, &e))
}

pub(crate) fn run_invoke(function: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
    init::ensure()?;
    let found = inventory::iter::<InvokeFunction>.into_iter().find(|f| f.name == function);
    let command = found.ok_or_else(|| not_found("invoke", function))?;
    (command.handler)(payload).map_err(|e| failed(function, &e))
}
