//! The component's side of the ABI it is built for: its exports (HTTP, the `edgefn:function` handler,
//! `wizer-initialize`) and the bindings of its imports. One module per ABI, picked when the crate is built (the
//! `wasip3` feature):
//!
//! - [`p2`]: a WASI 0.2 component: `wasi:http/incoming-handler@0.2` and `edgefn:function/handler`, sync handlers over
//!   whole bodies;
//! - [`p3`]: a WASI 0.3 component: `wasi:http/handler@0.3` and `edgefn:function/async-handler`, async handlers,
//!   bodies as streams, outbound calls that run concurrently.
//!
//! The rest of the SDK reaches the host through [`bindings`] (the same `edgefn:function` imports in both) and, for
//! WASI 0.3, through [`body`] and [`fetch`].

/// The conversions from an ABI's `edgefn:function/types` records (the same records, generated once per ABI) into the
/// SDK's own types, written once: `wit_records!(crate::abi::bindings::edgefn::function::types)`.
#[cfg(target_family = "wasm")]
macro_rules! wit_records {
    ($($types:ident)::+) => {
        /// A cron event from the host, and the function it is for.
        fn cron_event(event: $($types)::+::CronEvent) -> (String, crate::cron::CronEvent) {
            let $($types)::+::CronEvent {
                function,
                expression,
                timezone,
                scheduled_at,
                fired_at,
                attempt,
                reason,
                correlation_id,
            } = event;
            let event = crate::cron::CronEvent {
                expression,
                timezone,
                scheduled_at_ms: scheduled_at,
                fired_at_ms: fired_at,
                attempt,
                reason,
                correlation_id,
            };
            (function, event)
        }

        /// A delivery's messages, before their bodies are decoded.
        fn raw_messages(messages: Vec<$($types)::+::Message>) -> Vec<crate::queue::RawMessage> {
            messages
                .into_iter()
                .map(|m| crate::queue::RawMessage {
                    id: m.id,
                    body: m.body,
                    attempts: m.attempts,
                    priority: m.priority,
                    enqueued_at_ms: m.enqueued_at,
                    correlation_id: m.correlation_id,
                })
                .collect()
        }
    };
}

#[cfg(edgefn_p2)]
mod p2;
#[cfg(edgefn_p3)]
mod p3;

#[cfg(edgefn_p2)]
pub(crate) use p2::bindings;
#[cfg(edgefn_p3)]
pub(crate) use p3::{bindings, body, fetch};

/// The URI of an incoming request from its `wasi:http` parts: absolute when the host names the authority (edgefn
/// and `wasmtime serve` do, from the client's `Host`), so [`Request::uri`] and [`Request::url`] carry it.
pub(crate) fn incoming_uri(scheme: Option<&str>, authority: Option<&str>, path_with_query: Option<String>) -> String {
    let path = path_with_query.unwrap_or_else(|| "/".to_owned());
    match authority.filter(|a| !a.is_empty()) {
        Some(authority) => format!("{}://{authority}{path}", scheme.unwrap_or("http")),
        None => path,
    }
}
