//! A WASI 0.2 component: `wasi:http/incoming-handler@0.2` ([`http`]), the `edgefn:function/handler` and
//! `wizer-initialize` exports ([`exports`]), and the bindings of the `edgefn:function` imports ([`bindings`]).

pub(crate) mod bindings;
mod exports;
mod http;
