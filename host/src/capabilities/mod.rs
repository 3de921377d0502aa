//! The host side of each `edgefn:function/host` import, one module per capability, each reached from an
//! invocation's state through a trait object in [`Capabilities`]:
//!
//! - [`messaging`]: `send` to a queue and `publish` to a topic ([`Messaging`]), over the node's queue backend, and
//!   the imports that reach it under a per-invocation allowance;
//! - [`invoke`]: `invoke` another function by name ([`Invoker`], implemented by the invoke trigger), and the import
//!   that runs the call apart from the caller's store;
//! - [`kv`]: key-value stores ([`KeyValue`]), `wasi:keyvalue` and edgefn's extension, over SQLite;
//! - [`objects`]: object buckets ([`objects::Objects`]) over files and SQLite, and signed URLs;
//! - [`streams`]: ordered streams ([`streams::Streams`]) over SQLite;
//! - [`ratelimit`]: token buckets in memory, for routes' rate limits and functions' named limiters;
//! - [`cache`]: the HTTP response cache's store, and the purges functions make;
//! - [`websocket`]: the WebSocket connections this node holds, and the sends and closes functions make;
//! - [`workflows`]: starting and signalling durable workflow runs of the caller's component ([`workflows::Workflows`],
//!   implemented by the workflow engine);
//! - [`environment`]: configuration and secrets, handed to the guest as its WASI environment;
//! - [`outbound`]: which hosts `wasi:http/outgoing-handler` may reach.
//!
//! Nothing here knows the runtime or the triggers: they import these traits, never the other way round. A new
//! capability is a new module here holding its trait, its imports (acting on a view the invocation's store lends
//! them, as [`kv::KvView`] and [`messaging::MessagingView`]) and its limits, a field of [`Capabilities`], and its
//! binding in the runtime (`runtime/engines.rs` links a whole interface; an import of the shared `host` interface
//! is one line in `runtime/guest.rs`).

pub mod bindings;
pub mod cache;
pub mod environment;
pub mod invoke;
pub mod kv;
pub mod messaging;
pub mod objects;
pub mod outbound;
pub mod ratelimit;
pub mod streams;
pub mod trace;
pub mod websocket;
pub mod workflows;

pub use environment::FunctionEnv;
pub use invoke::Invoker;
pub use kv::KeyValue;
pub use messaging::Messaging;

use std::pin::Pin;
use std::sync::Arc;

/// A boxed, sendable future: what the capability traits return, so they stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What one invocation can reach beyond WASI. Cheap to clone: every field is shared.
#[derive(Clone, Default)]
pub struct Capabilities {
    /// Queues and topics; `None` while a component's init runs at deploy, when there is nothing to send to yet.
    pub messaging: Option<Arc<dyn Messaging>>,
    /// Other functions; `None` during init.
    pub invoker: Option<Arc<dyn Invoker>>,
    /// Key-value stores; `None` during init.
    pub kv: Option<Arc<dyn KeyValue>>,
    /// Object buckets; `None` during init.
    pub objects: Option<Arc<objects::Objects>>,
    /// Ordered streams; `None` during init.
    pub streams: Option<Arc<streams::Streams>>,
    /// Named rate limiters; `None` during init.
    pub limiters: Option<Arc<ratelimit::Limiters>>,
    /// The response cache, for purges; `None` during init.
    pub cache: Option<Arc<cache::ResponseCache>>,
    /// The WebSocket connections, for sends and closes; `None` during init.
    pub websockets: Option<Arc<websocket::Connections>>,
    /// Durable workflows, to start and signal runs; `None` during init.
    pub workflows: Option<Arc<dyn workflows::Workflows>>,
}

impl std::fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capabilities")
            .field("messaging", &self.messaging.is_some())
            .field("invoker", &self.invoker.is_some())
            .field("kv", &self.kv.is_some())
            .field("objects", &self.objects.is_some())
            .field("streams", &self.streams.is_some())
            .field("limiters", &self.limiters.is_some())
            .field("cache", &self.cache.is_some())
            .field("websockets", &self.websockets.is_some())
            .field("workflows", &self.workflows.is_some())
            .finish()
    }
}

/// The component of a caller named `component/function`: what scopes its keys, cache entries and connections.
pub(crate) fn caller_component(caller: Option<&str>) -> &str {
    caller.and_then(|caller| caller.split('/').next()).unwrap_or_default()
}

/// The error a guest sees when it calls a capability that is not available where it runs.
pub(crate) fn unavailable(what: &str) -> String {
    format!("{what} is not available here (a function's init runs at deploy, before anything is live)")
}
