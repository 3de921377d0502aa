//! Procedural macros of edgefn: `#[function]`.
//!
//! Use them through the SDK (`use edgefn::prelude::*;`), never directly: the expansion names `::edgefn` paths.
//!
//! `#[function(trigger = http("/hello/{name}"))]` on a `fn(Request) -> impl IntoResponse` keeps the function as
//! written (so it stays callable from native unit tests) and adds three things next to it:
//!
//! 1. a registration of the handler with the SDK's dispatcher, so several functions in one crate share one
//!    component and each request reaches the right one;
//! 2. a record in the component's `edgefn-manifest` custom section (wasm targets only), from which the host learns
//!    every function and trigger without running the component;
//! 3. a marker item named after the route, so two functions on the same route in one module are a compile error.
//!
//! The work is split the way the data flows: [`parse`] reads the attribute, [`validate`] checks the handler's
//! signature, [`expand`] writes the code. Every mistake is a `syn::Error` on the offending token; the user's
//! function is still emitted next to the `compile_error!`, so the rest of the crate keeps type-checking.

use proc_macro::TokenStream;

mod expand;
mod parse;
mod validate;

/// Marks the crate's one-time initialization function; see `edgefn::init`.
#[proc_macro_attribute]
pub fn init(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::init(attr.into(), item.into()).into()
}

/// Declares an edgefn function and its trigger. See the `edgefn` crate for the full documentation.
#[proc_macro_attribute]
pub fn function(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::function(attr.into(), item.into()).into()
}
