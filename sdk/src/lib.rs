//! edgefn: write serverless functions in Rust, compile them to WebAssembly components, run them on the edgefn
//! host (or any `wasi:http` runtime).
//!
//! ```
//! use edgefn::prelude::*;
//!
//! #[function(trigger = http("/hello/{name}"))]
//! fn hello(req: Request) -> Response {
//!     Response::text(format!("Hello, {}!", req.param("name").unwrap_or("world")))
//! }
//!
//! # #[derive(serde::Deserialize, serde::Serialize)] struct Order { id: u32 }
//! #[function(trigger = http("/orders", method = "POST"))]
//! fn create_order(req: Request) -> Result<Response> {
//!     let order: Order = req.json()?; // bad JSON is a 400
//!     Ok(Response::json(&order)?.with_status(201))
//! }
//!
//! // Handlers are plain functions: test them natively, no wasm and no host needed.
//! let response = hello(edgefn::testing::get("/hello/ada"));
//! assert_eq!(response.text_body(), "Hello, ada!");
//! ```
//!
//! # How it fits together
//! - [`function`] registers the handler and writes its trigger into the component's `edgefn-manifest` custom
//!   section, which the host reads to build its route table.
//! - Built for `wasm32-wasip2`, this crate exports `wasi:http/incoming-handler`: every component is a standard
//!   `wasi:http/proxy` component. Its dispatcher routes each request to the right `#[function]` the same way the
//!   host does, so `wasmtime serve` answers exactly like `edgefn up`.
//! - An `Err` becomes a JSON error response carrying the request id: the error's status for client errors (a bad
//!   JSON body is a 400), 500 with the details logged (not sent) otherwise.
//! - Besides HTTP, a function can be triggered by a schedule (`cron("0 */5 * * * *", tz = "Europe/Berlin")`,
//!   taking a [`CronEvent`]), a durable queue (`queue("orders")`, taking a [`Batch`]), a topic (`topic("name")`)
//!   or by name (`invoke`, JSON in and out). Functions produce with [`queue::send`], [`topic::publish`] and
//!   [`invoke()`], and call out with [`fetch()`].
//! - [`config`] reads the configuration and secrets the host hands to the function.
//! - [`init`] marks a one-time initialization function. The host runs it once at deploy and snapshots the memory
//!   it leaves, so every invocation starts warm. [`random`] and [`collections`] stay random across such
//!   snapshots.
//! - `workflow` (async, the `wasip3` feature): `#[function(trigger = workflow)]` durable workflows whose steps are
//!   journaled once, with retries, durable sleeps and waits for events.

#[cfg(target_family = "wasm")]
mod abi;
mod dispatch;
mod error;
mod handlers;
mod host;
mod init;
mod request;
mod response;

#[cfg(edgefn_async)]
pub mod body;
pub mod cache;
pub mod collections;
pub mod config;
pub mod cron;
pub mod fetch;
pub mod invoke;
pub mod kv;
pub mod objects;
pub mod queue;
pub mod random;
pub mod ratelimit;
pub mod rt;
#[cfg(edgefn_async)]
pub mod sse;
pub mod stream;
pub mod testing;
pub mod topic;
pub mod trace;
pub mod websocket;
pub mod workflow;

pub use cron::CronEvent;
pub use dispatch::correlation_id;
pub use fetch::fetch;
/// `join!`, `select!` and friends, for awaiting several things at once in an `async fn` handler.
#[cfg(edgefn_async)]
pub use futures;
pub use invoke::invoke;
pub use queue::{Batch, Message};

/// Cookies for [`Request::cookie`] and [`Response::with_cookie`]: the `cookie` crate, with its `time` for
/// `Max-Age` and `Expires`.
pub use cookie;
pub use edgefn_macros::{function, init};
pub use error::{Error, Result};
pub use http;
pub use request::Request;
pub use response::{IntoResponse, Response};

/// The request header carrying the id of a request, set by the host and echoed in every response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Everything a function author usually needs: `use edgefn::prelude::*;`.
pub mod prelude {
    #[cfg(edgefn_async)]
    pub use crate::body::{BodyStream, BodyWriter};
    pub use crate::objects::ObjectEvent;
    #[cfg(edgefn_async)]
    pub use crate::sse::{Event, Events};
    pub use crate::{Batch, CronEvent, Error, IntoResponse, Message, Request, Response, Result, function};
}

/// Used by the code `#[function]` generates. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::dispatch::{Guard, HttpFunction, HttpHandler, host_verified};
    pub use crate::handlers::{
        CronFunction, CronHandler, Handler, IntoHandlerResult, IntoInvokeResult, InvokeFunction, InvokeHandler,
        MessageFunction, MessageHandler, Pending, decode_payload,
    };
    pub use crate::init::InitFunction;
    pub use crate::queue::{Batch, RawMessage};
    pub use inventory;

    #[cfg(edgefn_async)]
    pub use crate::workflow::{begin as workflow_begin, finish as workflow_finish};

    /// Boxes an async handler's future for the registry.
    pub fn boxed<'a, T>(future: impl Future<Output = T> + 'a) -> crate::rt::LocalBoxFuture<'a, T> {
        Box::pin(future)
    }
}
