//! A WASI 0.3 component: `wasi:http/handler@0.3` ([`http`]), the `edgefn:function/async-handler` and
//! `wizer-initialize` exports ([`exports`]), bodies as component-model streams ([`body`]), outbound HTTP through
//! `wasi:http/client` ([`fetch`]), and the bindings of the `edgefn:function` imports ([`bindings`]).
//!
//! Every export call runs on wit-bindgen's executor: a handler's future, and the tasks it spawns (a response body
//! still being written), run concurrently on the component's one thread, and the call ends when all of them have.

pub(crate) mod bindings;
pub(crate) mod body;
mod exports;
pub(crate) mod fetch;
mod http;
