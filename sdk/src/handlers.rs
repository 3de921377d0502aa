//! The functions that are not HTTP: every `#[function]` with a cron, queue, topic or invoke trigger registers
//! itself here, and the component's `edgefn:function/handler` export finds them by name.

use crate::cron::CronEvent;
use crate::queue::RawMessage;
use crate::{Error, init};

/// A cron function, as registered by `#[function(trigger = cron(...))]`.
#[derive(Debug)]
pub struct CronFunction {
    pub name: &'static str,
    pub handler: CronHandler,
}

/// How a cron function is called.
pub type CronHandler = Handler<fn(CronEvent) -> Result<(), Error>, fn(CronEvent) -> Pending<()>>;

/// A queue consumer or topic subscriber.
#[derive(Debug)]
pub struct MessageFunction {
    pub name: &'static str,
    pub handler: MessageHandler,
}

/// How a queue consumer or topic subscriber is called: with the source and the raw messages.
pub type MessageHandler =
    Handler<fn(String, Vec<RawMessage>) -> Result<(), Error>, fn(String, Vec<RawMessage>) -> Pending<()>>;

/// An `invoke` function: JSON in, JSON out.
#[derive(Debug)]
pub struct InvokeFunction {
    pub name: &'static str,
    pub handler: InvokeHandler,
}

/// How an `invoke` function is called.
pub type InvokeHandler = Handler<fn(&[u8]) -> Result<Vec<u8>, Error>, fn(Vec<u8>) -> Pending<Vec<u8>>>;

/// What an async handler returns: its result, once it has one.
pub type Pending<T> = crate::rt::LocalBoxFuture<'static, Result<T, Error>>;

/// A handler as `#[function]` registered it: a plain `fn`, or an `async fn` (only with the `wasip3` feature, and
/// natively).
#[derive(Debug, Clone, Copy)]
pub enum Handler<S, A> {
    Sync(S),
    Async(A),
}

/// Waits for an async handler from sync code: natively (tests), and in a WASI 0.3 component's sync paths. A WASI
/// 0.2 component has no async handlers (the macro refuses them there).
#[cfg_attr(edgefn_p3, allow(dead_code))]
fn wait<T>(pending: Pending<T>) -> Result<T, Error> {
    #[cfg(edgefn_async)]
    return crate::rt::block_on(pending);
    #[cfg(not(edgefn_async))]
    {
        drop(pending);
        Err(Error::internal("an async handler in a WASI 0.2 component: build it with the `wasip3` feature"))
    }
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

/// A websocket function that returns nothing has handled its event.
impl IntoInvokeResult for () {
    fn into_invoke_result(self) -> Result<Vec<u8>, Error> {
        Ok(b"null".to_vec())
    }
}

/// Decodes an `invoke` payload; a payload that is not the expected JSON is the caller's error.
pub fn decode_payload<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, Error> {
    crate::error::from_json(payload)
        .map_err(|e| Error::bad_request(format!("the payload is not a valid {}: {e}", std::any::type_name::<T>())))
}

fn not_found(kind: &str, function: &str) -> String {
    format!("this component has no {kind} function `{function}`")
}

fn failed(function: &str, error: &Error) -> String {
    format!("`{function}` failed: {}", error.message())
}

fn find<F: 'static>(
    kind: &str,
    function: &str,
    functions: impl IntoIterator<Item = &'static F>,
    name: impl Fn(&F) -> &str,
) -> Result<&'static F, String> {
    init::ensure()?;
    functions.into_iter().find(|f| name(f) == function).ok_or_else(|| not_found(kind, function))
}

#[cfg_attr(any(not(target_family = "wasm"), edgefn_p3), allow(dead_code))]
pub(crate) fn run_cron(function: &str, event: CronEvent) -> Result<(), String> {
    let cron = find("cron", function, inventory::iter::<CronFunction>, |f| f.name)?;
    let result = match cron.handler {
        Handler::Sync(handler) => handler(event),
        Handler::Async(handler) => wait(handler(event)),
    };
    result.map_err(|e| failed(function, &e))
}

#[cfg_attr(any(not(target_family = "wasm"), edgefn_p3), allow(dead_code))]
pub(crate) fn run_messages(function: &str, source: String, messages: Vec<RawMessage>) -> Result<(), String> {
    let consumer = find("queue or topic", function, inventory::iter::<MessageFunction>, |f| f.name)?;
    let result = match consumer.handler {
        Handler::Sync(handler) => handler(source, messages),
        Handler::Async(handler) => wait(handler(source, messages)),
    };
    result.map_err(|e| failed(function, &e))
}

#[cfg_attr(edgefn_p3, allow(dead_code))]
pub(crate) fn run_invoke(function: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
    let command = find("invoke", function, inventory::iter::<InvokeFunction>, |f| f.name)?;
    let result = match command.handler {
        Handler::Sync(handler) => handler(payload),
        Handler::Async(handler) => wait(handler(payload.to_vec())),
    };
    result.map_err(|e| failed(function, &e))
}

/// Runs a cron function, awaiting an async one.
#[cfg(edgefn_async)]
#[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
pub(crate) async fn run_cron_async(function: String, event: CronEvent) -> Result<(), String> {
    let cron = find("cron", &function, inventory::iter::<CronFunction>, |f| f.name)?;
    let result = match cron.handler {
        Handler::Sync(handler) => handler(event),
        Handler::Async(handler) => handler(event).await,
    };
    result.map_err(|e| failed(&function, &e))
}

/// Runs a queue consumer or topic subscriber, awaiting an async one.
#[cfg(edgefn_async)]
#[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
pub(crate) async fn run_messages_async(
    function: String,
    source: String,
    messages: Vec<RawMessage>,
) -> Result<(), String> {
    let consumer = find("queue or topic", &function, inventory::iter::<MessageFunction>, |f| f.name)?;
    let result = match consumer.handler {
        Handler::Sync(handler) => handler(source, messages),
        Handler::Async(handler) => handler(source, messages).await,
    };
    result.map_err(|e| failed(&function, &e))
}

/// Runs an `invoke` function, awaiting an async one.
#[cfg(edgefn_async)]
pub(crate) async fn run_invoke_async(function: String, payload: Vec<u8>) -> Result<Vec<u8>, String> {
    let command = find("invoke", &function, inventory::iter::<InvokeFunction>, |f| f.name)?;
    let result = match command.handler {
        Handler::Sync(handler) => handler(&payload),
        Handler::Async(handler) => handler(payload).await,
    };
    result.map_err(|e| failed(&function, &e))
}
